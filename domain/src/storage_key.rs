//! Keys of delivered objects: `{owner}/{job}/{relative path}`, never escaping their prefix.

use std::fmt;

use crate::{JobId, OwnerId, SafePath};

/// A `/`-separated object key whose every segment is safe to use as a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StorageKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid storage key {0:?}: segments must be non-empty, not '.' or '..', without '\\\\' or NUL"
)]
pub struct StorageKeyError(pub String);

impl StorageKey {
    /// The key of a job's file.
    pub fn for_file(owner: &OwnerId, job: JobId, path: &SafePath) -> Self {
        Self(format!("{}/{}/{}", owner.as_str(), job, path.as_str()))
    }

    /// The prefix under which all of a job's files live.
    pub fn job_prefix(owner: &OwnerId, job: JobId) -> Self {
        Self(format!("{}/{}", owner.as_str(), job))
    }

    /// # Errors
    /// [`StorageKeyError`] when a segment could escape the key's prefix.
    pub fn parse(text: &str) -> Result<Self, StorageKeyError> {
        let ok = !text.is_empty()
            && text.split('/').all(|seg| {
                !seg.is_empty() && seg != "." && seg != ".." && !seg.contains(['\\', '\0'])
            });
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(StorageKeyError(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_never_escape() {
        for bad in ["", "/a", "a/", "a//b", "a/../b", "..", "./a", "a\\b", "a\0"] {
            assert!(StorageKey::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            StorageKey::parse("u/j/dir/f.bin").unwrap().as_str(),
            "u/j/dir/f.bin"
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(s in "\\PC{0,80}") {
            if let Ok(k) = StorageKey::parse(&s) {
                prop_assert_eq!(StorageKey::parse(k.as_str()).unwrap(), k.clone());
                prop_assert!(k.segments().all(|seg| seg != ".."));
            }
        }
    }
}
