//! `AesGcmBox`: stored credentials sealed with AES-256-GCM under the server's keys.
//!
//! Sealed form (version 2): `2` ‖ 8-byte key id ‖ 12-byte random nonce ‖ ciphertext ‖ 16-byte
//! tag. The associated data is the version, the key id and the caller's context (a profile's
//! id and owner), so sealed bytes open only with the key that sealed them and only for the
//! context they were sealed for: copied onto another profile, they do not open. The key id is
//! derived from the key (SHA-256), so no key needs a name; several keys can be configured (the
//! current one seals, older ones still open) and `ferry keys rotate` re-seals with the current.
//!
//! Version 1 (`1` ‖ nonce ‖ ciphertext ‖ tag, no key id, no associated data) is still read,
//! with any configured key, and is never written: rotation upgrades it.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use anyhow::Context;
use ferry_application::ports::{SecretBox, SecretError};
use rand::RngCore;
use sha2::{Digest, Sha256};

const VERSION: u8 = 2;
const LEGACY: u8 = 1;
const ID: usize = 8;
const NONCE: usize = 12;
const TAG: usize = 16;

struct SealingKey {
    id: [u8; ID],
    cipher: Aes256Gcm,
}

impl SealingKey {
    fn new(key: &[u8; 32]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"ferry secret key id\0")
            .chain_update(key)
            .finalize();
        let mut id = [0u8; ID];
        id.copy_from_slice(&digest[..ID]);
        Self {
            id,
            cipher: Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key)),
        }
    }
}

pub struct AesGcmBox {
    current: SealingKey,
    /// Keys that no longer seal but still open what they sealed.
    old: Vec<SealingKey>,
}

fn parse_hex(text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(text.trim()).context("a secret key must be 64 hex digits")?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("a secret key must be 32 bytes (64 hex digits)"))
}

impl AesGcmBox {
    /// A box for a 32-byte key.
    pub fn new(key: &[u8; 32]) -> Self {
        Self::with_old_keys(key, &[])
    }

    /// A box that seals with `current` and also opens what `old` keys sealed.
    pub fn with_old_keys(current: &[u8; 32], old: &[[u8; 32]]) -> Self {
        Self {
            current: SealingKey::new(current),
            old: old.iter().map(SealingKey::new).collect(),
        }
    }

    /// A box for a key written as 64 hex digits.
    ///
    /// # Errors
    /// When the text is not 32 bytes of hex.
    pub fn from_hex(text: &str) -> anyhow::Result<Self> {
        Self::from_hex_keys(text, &[])
    }

    /// A box for the current key and older ones, each as 64 hex digits.
    ///
    /// # Errors
    /// When a key is not 32 bytes of hex.
    pub fn from_hex_keys(current: &str, old: &[&str]) -> anyhow::Result<Self> {
        let current = parse_hex(current)?;
        let old = old
            .iter()
            .map(|k| parse_hex(k))
            .collect::<anyhow::Result<Vec<_>>>()
            .context("an old secret key")?;
        Ok(Self::with_old_keys(&current, &old))
    }

    /// A fresh random key, as hex.
    pub fn generate_hex() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        hex::encode(key)
    }

    /// The current key's id, as hex (safe to log: it reveals nothing about the key).
    pub fn key_id(&self) -> String {
        hex::encode(self.current.id)
    }

    fn keys(&self) -> impl Iterator<Item = &SealingKey> {
        std::iter::once(&self.current).chain(&self.old)
    }

    fn open_legacy(&self, rest: &[u8]) -> Result<Vec<u8>, SecretError> {
        if rest.len() < NONCE + TAG {
            return Err(SecretError);
        }
        let (nonce, body) = rest.split_at(NONCE);
        let nonce: [u8; NONCE] = nonce.try_into().map_err(|_| SecretError)?;
        self.keys()
            .find_map(|k| k.cipher.decrypt(&Nonce::from(nonce), body).ok())
            .ok_or(SecretError)
    }
}

/// The associated data: the header (version and key id) and the caller's context.
fn associated(header: &[u8], context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + context.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(context);
    aad
}

impl SecretBox for AesGcmBox {
    fn seal(&self, plain: &[u8], context: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        rand::rng().fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(1 + ID + NONCE + plain.len() + TAG);
        out.push(VERSION);
        out.extend_from_slice(&self.current.id);
        let aad = associated(&out, context);
        // Encryption with a valid key and nonce size cannot fail.
        let sealed = self
            .current
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, SecretError> {
        let (&version, rest) = sealed.split_first().ok_or(SecretError)?;
        match version {
            VERSION => {
                if rest.len() < ID + NONCE + TAG {
                    return Err(SecretError);
                }
                let (id, rest) = rest.split_at(ID);
                let (nonce, body) = rest.split_at(NONCE);
                let nonce: [u8; NONCE] = nonce.try_into().map_err(|_| SecretError)?;
                let key = self.keys().find(|k| k.id == id).ok_or(SecretError)?;
                let aad = associated(&sealed[..1 + ID], context);
                key.cipher
                    .decrypt(
                        &Nonce::from(nonce),
                        Payload {
                            msg: body,
                            aad: &aad,
                        },
                    )
                    .map_err(|_| SecretError)
            }
            LEGACY => self.open_legacy(rest),
            _ => Err(SecretError),
        }
    }

    fn is_current(&self, sealed: &[u8]) -> bool {
        sealed.first() == Some(&VERSION)
            && sealed
                .get(1..1 + ID)
                .is_some_and(|id| id == self.current.id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn passes_the_contract() {
        let b = AesGcmBox::from_hex(&AesGcmBox::generate_hex()).unwrap();
        ferry_application::testing::contracts::secret_box_contract(&b);
        let rotated = AesGcmBox::with_old_keys(&[3; 32], &[[4; 32]]);
        ferry_application::testing::contracts::secret_box_contract(&rotated);
    }

    #[test]
    fn another_key_cannot_open_and_nonces_differ() {
        let a = AesGcmBox::new(&[1; 32]);
        let b = AesGcmBox::new(&[2; 32]);
        let sealed = a.seal(b"x", b"ctx");
        assert!(b.open(&sealed, b"ctx").is_err());
        assert_ne!(a.seal(b"x", b"ctx"), sealed);
        assert!(AesGcmBox::from_hex("abcd").is_err());
        assert!(AesGcmBox::from_hex(&"zz".repeat(32)).is_err());
        assert_ne!(a.key_id(), b.key_id());
    }

    #[test]
    fn old_keys_open_until_rotated_and_the_key_id_cannot_be_swapped() {
        let old = AesGcmBox::new(&[1; 32]);
        let sealed = old.seal(b"secret", b"p1");
        let both = AesGcmBox::with_old_keys(&[2; 32], &[[1; 32]]);
        assert_eq!(both.open(&sealed, b"p1").unwrap(), b"secret");
        assert!(!both.is_current(&sealed), "sealed with an old key");
        let again = both.seal(b"secret", b"p1");
        assert!(both.is_current(&again));
        let new_only = AesGcmBox::new(&[2; 32]);
        assert!(new_only.open(&sealed, b"p1").is_err(), "old key removed");
        assert_eq!(new_only.open(&again, b"p1").unwrap(), b"secret");
        // The key id is authenticated: relabelling sealed bytes does not open them.
        let mut relabelled = sealed.clone();
        relabelled[1..1 + ID].copy_from_slice(&both.current.id);
        assert!(both.open(&relabelled, b"p1").is_err());
    }

    #[test]
    fn the_first_format_is_still_read_with_any_configured_key() {
        // Version 1: no key id, no associated data.
        let key = [5u8; 32];
        let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(key));
        let nonce = [9u8; NONCE];
        let mut legacy = vec![LEGACY];
        legacy.extend_from_slice(&nonce);
        legacy.extend(cipher.encrypt(&Nonce::from(nonce), &b"v1"[..]).unwrap());
        let rotated = AesGcmBox::with_old_keys(&[6; 32], &[key]);
        assert_eq!(rotated.open(&legacy, b"any").unwrap(), b"v1");
        assert!(!rotated.is_current(&legacy), "rotation upgrades it");
        assert!(AesGcmBox::new(&[6; 32]).open(&legacy, b"any").is_err());
    }
}
