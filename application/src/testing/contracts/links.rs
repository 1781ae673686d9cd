//! The `LinkSigner` contract: links round-trip until they expire, are new each time, fit a
//! URL path segment, and any change to one — a character anywhere, another key — is refused.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use ferry_domain::{JobId, OwnerId};

use crate::ports::*;
use crate::testing::epoch;

fn at(secs: i64) -> DateTime<Utc> {
    epoch() + ChronoDuration::seconds(secs)
}

fn refused(result: Result<LinkClaims, LinkError>) -> bool {
    matches!(result, Err(LinkError::Invalid(_)))
}

/// `signer` and `same_key` share a key; `other_key` has another.
pub fn link_signer_contract(
    signer: &dyn LinkSigner,
    same_key: &dyn LinkSigner,
    other_key: &dyn LinkSigner,
) {
    let claims = LinkClaims {
        job: JobId::new(),
        file: 3,
        owner: OwnerId::parse("0198f0a2-user_1").unwrap(),
        expires_at: at(3600),
    };
    let token = signer.sign(&claims).unwrap();

    // Round trip, on this signer and on another process's with the same key.
    assert_eq!(signer.verify(&token, at(0)).unwrap(), claims);
    assert_eq!(same_key.verify(&token, at(3599)).unwrap(), claims);
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)),
        "a link must fit a URL path segment unescaped: {token}"
    );
    assert_ne!(
        signer.sign(&claims).unwrap(),
        token,
        "two links for the same file differ"
    );
    let other_file = LinkClaims {
        file: 4,
        ..claims.clone()
    };
    assert_eq!(
        signer
            .verify(&signer.sign(&other_file).unwrap(), at(0))
            .unwrap()
            .file,
        4
    );

    // Expiry: at the instant and after.
    assert!(matches!(
        signer.verify(&token, at(3600)),
        Err(LinkError::Expired)
    ));
    assert!(matches!(
        signer.verify(&token, at(86_400)),
        Err(LinkError::Expired)
    ));

    // Another key.
    assert!(refused(other_key.verify(&token, at(0))), "another key");
    let foreign = other_key.sign(&claims).unwrap();
    assert!(
        refused(signer.verify(&foreign, at(0))),
        "another key's link"
    );

    // Any one character changed, anywhere.
    let bytes = token.as_bytes();
    for i in 0..bytes.len() {
        let mut changed = bytes.to_vec();
        changed[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(changed).unwrap();
        assert!(
            refused(signer.verify(&changed, at(0))),
            "changed at {i}: {changed}"
        );
    }
    // Cut short, extended, garbage.
    for bad in [
        String::new(),
        ".".to_owned(),
        "..".to_owned(),
        "a.b.c".to_owned(),
        token[..token.len() - 1].to_owned(),
        format!("{token}A"),
        format!("{token}.{token}"),
        "x".repeat(5000),
        "\u{1F600}.\u{0}.%00".to_owned(),
    ] {
        assert!(refused(signer.verify(&bad, at(0))), "{bad:?}");
    }
}
