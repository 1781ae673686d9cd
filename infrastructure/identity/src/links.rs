//! `LinkSigner` as JWTs (`jsonwebtoken`, HS256 on aws-lc-rs): a file link's token carries
//! the job, the file's index, the owner (`sub`), the expiry (`exp`), the audience
//! `ferry-file-link` and a random `jti`.
//!
//! The HMAC key is derived from Ferry's `secret_key` — HMAC-SHA256 keyed with the secret key
//! over a fixed label — so the sealing key itself never signs anything, a token of another
//! purpose signed some other way cannot pass for a link, and every process configured with
//! the same `secret_key` verifies every other's links. Only HS256 is accepted: the token's
//! header cannot choose `none`, another HMAC or a public-key algorithm. The expiry is checked
//! against the caller's `now`, with no leeway (the same clock made it).

use aws_lc_rs::hmac;
use chrono::{DateTime, Utc};
use ferry_application::ports::{LinkClaims, LinkError, LinkSigner};
use ferry_domain::{JobId, OwnerId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// The `aud` of every file link.
pub const LINK_AUDIENCE: &str = "ferry-file-link";

/// What the link key is derived for; changing it invalidates every link.
const KEY_LABEL: &[u8] = b"ferry/file-links/hs256/v1";

#[derive(Serialize, Deserialize)]
struct Claims {
    aud: String,
    /// The owner.
    sub: String,
    job: String,
    file: u64,
    exp: i64,
    jti: String,
}

/// Signs and verifies file links with a key derived from `secret_key`.
pub struct JwtLinkSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtLinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtLinkSigner").finish_non_exhaustive()
    }
}

/// The link key of a `secret_key` (its text, trimmed, case-insensitive like its hex).
fn derive_key(secret_key: &str) -> [u8; 32] {
    let secret = secret_key.trim().to_ascii_lowercase();
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, KEY_LABEL);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

fn invalid(e: impl std::fmt::Display) -> LinkError {
    LinkError::Invalid(e.to_string())
}

impl JwtLinkSigner {
    /// The signer of every process configured with `secret_key`.
    pub fn new(secret_key: &str) -> Self {
        // As in `JwtVerifier::new`: the provider the crate features name.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let key = derive_key(secret_key);
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[LINK_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        // Checked in `verify` against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            validation,
        }
    }
}

impl LinkSigner for JwtLinkSigner {
    fn sign(&self, claims: &LinkClaims) -> Result<String, LinkError> {
        let mut jti = [0u8; 16];
        rand::rng().fill_bytes(&mut jti);
        let body = Claims {
            aud: LINK_AUDIENCE.to_owned(),
            sub: claims.owner.as_str().to_owned(),
            job: claims.job.to_string(),
            file: claims.file as u64,
            exp: claims.expires_at.timestamp(),
            jti: jti.iter().map(|b| format!("{b:02x}")).collect(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &body, &self.encoding)
            .map_err(|e| LinkError::Unexpected(anyhow::anyhow!("signing a file link: {e}")))
    }

    fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<LinkClaims, LinkError> {
        // The signature, the algorithm and the audience; then the claims' own shapes.
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(invalid)?;
        let c = data.claims;
        let expires_at = DateTime::from_timestamp(c.exp, 0).ok_or_else(|| invalid("exp"))?;
        if now >= expires_at {
            return Err(LinkError::Expired);
        }
        Ok(LinkClaims {
            job: c.job.parse::<JobId>().map_err(|_| invalid("job"))?,
            file: usize::try_from(c.file).map_err(|_| invalid("file"))?,
            owner: OwnerId::parse(&c.sub).ok_or_else(|| invalid("sub"))?,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use base64::Engine as _;
    use ferry_application::testing::contracts::link_signer_contract;
    use ferry_application::testing::epoch;
    use serde_json::{Value, json};

    use super::*;

    const KEY: &str = "7f3a0c1e9b2d4f6a8c0e2b4d6f8a0c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a";
    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn claims() -> LinkClaims {
        LinkClaims {
            job: JobId::new(),
            file: 0,
            owner: OwnerId::parse("owner-1").unwrap(),
            expires_at: epoch() + chrono::Duration::seconds(600),
        }
    }

    fn payload(token: &str) -> Value {
        serde_json::from_slice(&B64.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
    }

    /// A token of `header` and `payload`, HMAC-signed with `key` by `alg` (`None`: no
    /// signature at all).
    fn forge(header: &Value, payload: &Value, key: &[u8], alg: Option<hmac::Algorithm>) -> String {
        let message = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(payload.to_string())
        );
        let signature = alg.map_or_else(String::new, |alg| {
            B64.encode(hmac::sign(&hmac::Key::new(alg, key), message.as_bytes()))
        });
        format!("{message}.{signature}")
    }

    fn refused(signer: &JwtLinkSigner, token: &str) -> bool {
        matches!(signer.verify(token, epoch()), Err(LinkError::Invalid(_)))
    }

    #[test]
    fn the_contract_holds() {
        let upper = KEY.to_ascii_uppercase();
        link_signer_contract(
            &JwtLinkSigner::new(KEY),
            &JwtLinkSigner::new(&format!(" {upper}\n")),
            &JwtLinkSigner::new(&"0".repeat(64)),
        );
    }

    #[test]
    fn a_link_carries_its_claims_an_audience_and_a_fresh_id() {
        let signer = JwtLinkSigner::new(KEY);
        let c = claims();
        let token = signer.sign(&c).unwrap();
        let p = payload(&token);
        assert_eq!(p["aud"], LINK_AUDIENCE);
        assert_eq!(p["sub"], "owner-1");
        assert_eq!(p["job"], c.job.to_string());
        assert_eq!(p["file"], 0);
        assert_eq!(p["exp"], c.expires_at.timestamp());
        assert_eq!(p["jti"].as_str().unwrap().len(), 32);
        let again = payload(&signer.sign(&c).unwrap());
        assert_ne!(p["jti"], again["jti"]);
        assert!(token.len() < 512, "{}", token.len());
    }

    #[test]
    fn a_changed_payload_with_its_old_signature_is_refused() {
        let signer = JwtLinkSigner::new(KEY);
        let token = signer.sign(&claims()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        for (field, value) in [
            ("file", json!(1)),
            ("job", json!(JobId::new().to_string())),
            ("sub", json!("someone-else")),
            ("exp", json!(epoch().timestamp() + 999_999)),
        ] {
            let mut p = payload(&token);
            p[field] = value;
            let tampered = format!("{}.{}.{}", parts[0], B64.encode(p.to_string()), parts[2]);
            assert!(refused(&signer, &tampered), "{field}");
        }
    }

    #[test]
    fn only_hs256_with_the_derived_key_and_the_link_audience_passes() {
        let signer = JwtLinkSigner::new(KEY);
        let key = derive_key(KEY);
        let good = payload(&signer.sign(&claims()).unwrap());
        let hs256 = json!({"alg": "HS256", "typ": "JWT"});
        // The derived key, forged by hand: accepted (the forger below is faithful).
        let genuine = forge(&hs256, &good, &key, Some(hmac::HMAC_SHA256));
        assert_eq!(signer.verify(&genuine, epoch()).unwrap().file, 0);

        // `alg: none`, with and without a signature.
        for alg in ["none", "None", "NONE"] {
            let header = json!({"alg": alg, "typ": "JWT"});
            assert!(
                refused(&signer, &forge(&header, &good, &key, None)),
                "{alg}"
            );
            assert!(
                refused(
                    &signer,
                    &forge(&header, &good, &key, Some(hmac::HMAC_SHA256))
                ),
                "{alg} signed"
            );
        }
        // Other HMACs with the right key.
        for (name, alg) in [("HS384", hmac::HMAC_SHA384), ("HS512", hmac::HMAC_SHA512)] {
            let header = json!({"alg": name, "typ": "JWT"});
            assert!(
                refused(&signer, &forge(&header, &good, &key, Some(alg))),
                "{name}"
            );
        }
        // HS256 with another key, and with the secret key itself (never the link key).
        for other in [&b"another key"[..], KEY.as_bytes()] {
            assert!(refused(
                &signer,
                &forge(&hs256, &good, other, Some(hmac::HMAC_SHA256))
            ));
        }
        // Another audience, none, or a list without ours; no owner; no expiry.
        let changes: [fn(&mut Value); 9] = [
            |p| p["aud"] = json!("ferry-something-else"),
            |p| p["aud"] = json!(["ferry-something-else"]),
            |p| drop(p.as_object_mut().unwrap().remove("aud")),
            |p| drop(p.as_object_mut().unwrap().remove("sub")),
            |p| drop(p.as_object_mut().unwrap().remove("exp")),
            |p| p["exp"] = json!("tomorrow"),
            |p| p["file"] = json!(-1),
            |p| p["sub"] = json!("../../etc"),
            |p| p["job"] = json!("not-a-uuid"),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut p = good.clone();
            change(&mut p);
            let token = forge(&hs256, &p, &key, Some(hmac::HMAC_SHA256));
            assert!(refused(&signer, &token), "change {i}: {p}");
        }
    }

    #[test]
    fn a_link_expires_at_its_second() {
        let signer = JwtLinkSigner::new(KEY);
        let c = claims();
        let token = signer.sign(&c).unwrap();
        let end = c.expires_at;
        assert!(
            signer
                .verify(&token, end - chrono::Duration::milliseconds(1))
                .is_ok()
        );
        assert!(matches!(
            signer.verify(&token, end),
            Err(LinkError::Expired)
        ));
        // An expired forgery is refused as forged, not reported expired.
        let forged = forge(
            &json!({"alg": "HS256"}),
            &payload(&token),
            b"another key",
            Some(hmac::HMAC_SHA256),
        );
        assert!(matches!(
            signer.verify(&forged, end + chrono::Duration::days(1)),
            Err(LinkError::Invalid(_))
        ));
    }
}
