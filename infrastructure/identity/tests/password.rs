//! `Argon2Hasher`: round trip, wrong passwords, and stored hashes that are malformed or ask
//! for too much work (false, never a panic).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ferry_application::ports::PasswordHasher;
use ferry_identity::{Argon2Hasher, Argon2Params};
use proptest::prelude::*;

fn cheap() -> Argon2Hasher {
    Argon2Hasher::new(Argon2Params::CHEAP).unwrap()
}

#[test]
fn a_password_matches_its_hash_and_no_other_password() {
    let hasher = cheap();
    let hash = hasher.hash("correct horse battery staple").unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{hash}");
    assert!(hasher.verify("correct horse battery staple", &hash));
    for wrong in [
        "",
        "correct horse battery stapl",
        "Correct horse battery staple",
        "correct horse battery staple ",
    ] {
        assert!(!hasher.verify(wrong, &hash), "{wrong:?}");
    }
    // A fresh salt each time.
    assert_ne!(hasher.hash("same").unwrap(), hasher.hash("same").unwrap());
    // Unicode and empty passwords are passwords too.
    let hash = hasher.hash("pässwörd 🔑").unwrap();
    assert!(hasher.verify("pässwörd 🔑", &hash));
    assert!(!hasher.verify("passwort 🔑", &hash));
    let empty = hasher.hash("").unwrap();
    assert!(hasher.verify("", &empty) && !hasher.verify(" ", &empty));
}

#[test]
fn the_owasp_parameters_are_the_default_and_hashes_of_other_parameters_still_verify() {
    let strong = Argon2Hasher::new(Argon2Params::default()).unwrap();
    let hash = strong.hash("pw").unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    // The parameters travel in the hash: a hasher with other ones verifies it.
    assert!(cheap().verify("pw", &hash));
    assert!(strong.verify("pw", &cheap().hash("pw").unwrap()));
    assert!(
        Argon2Hasher::new(Argon2Params {
            memory_kib: 1,
            iterations: 0,
            parallelism: 0
        })
        .is_err()
    );
}

#[test]
fn malformed_hashes_never_match() {
    let hasher = cheap();
    let good = hasher.hash("pw").unwrap();
    let mut cases = vec![
        String::new(),
        "pw".into(),
        "$".into(),
        "$argon2id$".into(),
        "$argon2id$v=19$m=8,t=1,p=1$".into(),
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$".into(),
        "$argon2id$v=19$m=8,t=1,p=1$!!!$!!!".into(),
        "$argon2id$v=99$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        "$argon2id$v=19$m=0,t=0,p=0$c2FsdHNhbHQ$aGFzaA".into(),
        "$bcrypt$2b$12$abcdefghijklmnopqrstuuFbQ7OUAmGnC0RmZKUDF6FHQCDIpPS".into(),
        "$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA".into(),
        good[..good.len() - 1].to_owned(),
        format!("{good}x"),
        good.replace("argon2id", "argon2x"),
        good.replace('$', "$$"),
        // Asking for more work than a login may cost (4 GiB, 2^32-1 passes, 255 lanes).
        good.replace("m=8,", "m=4194304,"),
        good.replace("t=1,", "t=4294967295,"),
        good.replace("p=1$", "p=255$"),
    ];
    // One character of the digest changed.
    let mut flipped = good.clone().into_bytes();
    let at = flipped.len() - 5;
    flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
    cases.push(String::from_utf8(flipped).unwrap());
    for hash in &cases {
        assert!(!hasher.verify("pw", hash), "{hash:?}");
    }
    assert!(hasher.verify("pw", &good));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_string_as_a_hash_is_false_not_a_panic(hash in any::<String>(), phc in "\\$argon2(id|i|d)\\$v=(16|19)\\$m=[0-9]{1,6},t=[0-9]{1,3},p=[0-9]{1,2}\\$[A-Za-z0-9+/]{0,30}\\$[A-Za-z0-9+/]{0,50}") {
        let hasher = cheap();
        prop_assert!(!hasher.verify("pw", &hash));
        prop_assert!(!hasher.verify("pw", &phc));
    }
}
