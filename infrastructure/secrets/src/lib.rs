//! `AesGcmBox`: stored credentials sealed with AES-256-GCM under the server's key.
//!
//! Sealed form: `1` (format version) ‖ 12-byte random nonce ‖ ciphertext ‖ 16-byte tag.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use anyhow::Context;
use ferry_application::ports::{SecretBox, SecretError};
use rand::RngCore;

const VERSION: u8 = 1;
const NONCE: usize = 12;

pub struct AesGcmBox {
    cipher: Aes256Gcm,
}

impl AesGcmBox {
    /// A box for a 32-byte key.
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key)),
        }
    }

    /// A box for a key written as 64 hex digits.
    ///
    /// # Errors
    /// When the text is not 32 bytes of hex.
    pub fn from_hex(text: &str) -> anyhow::Result<Self> {
        let bytes = hex::decode(text.trim()).context("the secret key must be 64 hex digits")?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("the secret key must be 32 bytes (64 hex digits)"))?;
        Ok(Self::new(&key))
    }

    /// A fresh random key, as hex.
    pub fn generate_hex() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        hex::encode(key)
    }
}

impl SecretBox for AesGcmBox {
    fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        rand::rng().fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce size cannot fail.
        let sealed = self
            .cipher
            .encrypt(&Nonce::from(nonce), plain)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        let (&version, rest) = sealed.split_first().ok_or(SecretError)?;
        if version != VERSION || rest.len() < NONCE + 16 {
            return Err(SecretError);
        }
        let (nonce, body) = rest.split_at(NONCE);
        let nonce: [u8; NONCE] = nonce.try_into().map_err(|_| SecretError)?;
        self.cipher
            .decrypt(&Nonce::from(nonce), body)
            .map_err(|_| SecretError)
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
    }

    #[test]
    fn another_key_cannot_open_and_nonces_differ() {
        let a = AesGcmBox::new(&[1; 32]);
        let b = AesGcmBox::new(&[2; 32]);
        let sealed = a.seal(b"x");
        assert!(b.open(&sealed).is_err());
        assert_ne!(a.seal(b"x"), sealed);
        assert!(AesGcmBox::from_hex("abcd").is_err());
        assert!(AesGcmBox::from_hex(&"zz".repeat(32)).is_err());
    }
}
