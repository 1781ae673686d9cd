//! BitTorrent v1 info-hashes: 20 bytes, written as 40 hex digits or 32 base32 letters.

use std::fmt;
use std::str::FromStr;

/// A SHA-1 info-hash identifying a BitTorrent v1 torrent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash([u8; 20]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoHashError {
    #[error("an info-hash is 40 hex digits or 32 base32 characters, got {0} characters")]
    Length(usize),
    #[error("the info-hash contains a character that is not valid in its encoding")]
    Character,
}

impl InfoHash {
    pub const fn from_bytes(bytes: [u8; 20]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// Parses 40 hex digits (any case) or 32 RFC 4648 base32 characters (any case).
    ///
    /// # Errors
    /// [`InfoHashError`] when the text is neither.
    pub fn parse(text: &str) -> Result<Self, InfoHashError> {
        match text.len() {
            40 => decode_hex(text).map(Self),
            32 => decode_base32(text).map(Self),
            n => Err(InfoHashError::Length(n)),
        }
    }

    /// Lower-case hex, the form trackers, clients and Ferry's API use.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(40);
        for b in self.0 {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
        out
    }

    /// Upper-case RFC 4648 base32 without padding (32 characters).
    pub fn to_base32(&self) -> String {
        const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut out = String::with_capacity(32);
        let mut buffer: u64 = 0;
        let mut bits = 0u32;
        for b in self.0 {
            buffer = (buffer << 8) | u64::from(b);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                let index = ((buffer >> bits) & 0x1f) as usize;
                out.push(char::from(ALPHABET[index]));
            }
        }
        out
    }
}

fn decode_hex(text: &str) -> Result<[u8; 20], InfoHashError> {
    let mut out = [0u8; 20];
    let bytes = text.as_bytes();
    for (i, slot) in out.iter_mut().enumerate() {
        let hi = hex_value(bytes[2 * i])?;
        let lo = hex_value(bytes[2 * i + 1])?;
        *slot = (hi << 4) | lo;
    }
    Ok(out)
}

fn hex_value(c: u8) -> Result<u8, InfoHashError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(InfoHashError::Character),
    }
}

fn decode_base32(text: &str) -> Result<[u8; 20], InfoHashError> {
    let mut out = [0u8; 20];
    let mut buffer: u64 = 0;
    let mut bits = 0u32;
    let mut at = 0usize;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return Err(InfoHashError::Character),
        };
        buffer = (buffer << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            // 32 characters carry exactly 160 bits, so `at` never passes 19.
            out[at] = ((buffer >> bits) & 0xff) as u8;
            at += 1;
        }
    }
    Ok(out)
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

impl FromStr for InfoHash {
    type Err = InfoHashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for InfoHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for InfoHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hex_and_base32_name_the_same_hash() {
        let hex = "6e66cd5b6d13827df56add6069693192e4e09c1b";
        let h = InfoHash::parse(hex).unwrap();
        assert_eq!(h.to_hex(), hex);
        let b32 = h.to_base32();
        assert_eq!(b32.len(), 32);
        assert_eq!(InfoHash::parse(&b32).unwrap(), h);
        assert_eq!(InfoHash::parse(&b32.to_lowercase()).unwrap(), h);
        assert_eq!(InfoHash::parse(&hex.to_uppercase()).unwrap(), h);
    }

    #[test]
    fn rejects_wrong_length_and_characters() {
        assert_eq!(InfoHash::parse("abc"), Err(InfoHashError::Length(3)));
        assert_eq!(
            InfoHash::parse(&"g".repeat(40)),
            Err(InfoHashError::Character)
        );
        assert_eq!(
            InfoHash::parse(&"1".repeat(32)),
            Err(InfoHashError::Character)
        );
        // Multi-byte characters must not be sliced into a panic.
        assert!(InfoHash::parse(&"é".repeat(20)).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,64}") {
            let _ = InfoHash::parse(&s);
        }

        #[test]
        fn round_trips(bytes in proptest::array::uniform20(any::<u8>())) {
            let h = InfoHash::from_bytes(bytes);
            prop_assert_eq!(InfoHash::parse(&h.to_hex()).unwrap(), h);
            prop_assert_eq!(InfoHash::parse(&h.to_base32()).unwrap(), h);
        }
    }
}
