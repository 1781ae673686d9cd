//! What Ferry accepts from a torrent's metadata: safe relative file paths and sane totals.
//!
//! A torrent is untrusted input. Its file names are checked before anything is written, and
//! a torrent with a name that could escape the job's folder, or that names a device, is
//! refused rather than silently renamed, so the paths a user sees are the paths on disk.

use std::fmt;

/// Deepest directory nesting accepted in a torrent.
pub const MAX_DEPTH: usize = 64;
/// Longest relative path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 4096;
/// Longest single path component, in bytes (the common file-system limit).
pub const MAX_COMPONENT_LEN: usize = 255;

/// A relative path made of safe components, joined with `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct SafePath(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SafePathError {
    #[error("a file has an empty path")]
    Empty,
    #[error("path {path:?} has an empty, '.' or '..' component")]
    Traversal { path: String },
    #[error("path {path:?} contains a separator, NUL or control character inside a name")]
    BadCharacter { path: String },
    #[error("path {path:?} names a reserved device or drive ({component:?})")]
    Reserved { path: String, component: String },
    #[error("path {path:?} is too long or too deep")]
    TooLong { path: String },
}

impl SafePath {
    /// Builds a path from a torrent's name components.
    ///
    /// # Errors
    /// [`SafePathError`] naming the first rule the path breaks.
    pub fn from_components<S: AsRef<str>>(components: &[S]) -> Result<Self, SafePathError> {
        if components.is_empty() {
            return Err(SafePathError::Empty);
        }
        let joined = components
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join("/");
        let display = || joined.chars().take(300).collect::<String>();
        if components.len() > MAX_DEPTH || joined.len() > MAX_PATH_LEN {
            return Err(SafePathError::TooLong { path: display() });
        }
        for c in components.iter().map(AsRef::as_ref) {
            if c.is_empty() || c == "." || c == ".." {
                return Err(SafePathError::Traversal { path: display() });
            }
            if c.len() > MAX_COMPONENT_LEN {
                return Err(SafePathError::TooLong { path: display() });
            }
            if c.chars()
                .any(|ch| ch == '/' || ch == '\\' || ch.is_control())
            {
                return Err(SafePathError::BadCharacter { path: display() });
            }
            if is_reserved(c) {
                return Err(SafePathError::Reserved {
                    path: display(),
                    component: c.to_owned(),
                });
            }
        }
        Ok(Self(joined))
    }

    /// Parses a `/`-joined relative path with the same rules.
    ///
    /// # Errors
    /// As [`SafePath::from_components`].
    pub fn parse(text: &str) -> Result<Self, SafePathError> {
        Self::from_components(&text.split('/').collect::<Vec<_>>())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

/// Windows device names (with or without an extension) and drive prefixes such as `C:`.
fn is_reserved(component: &str) -> bool {
    let stem = component.split('.').next().unwrap_or(component).trim_end();
    let upper = stem.to_ascii_uppercase();
    let device = matches!(
        upper.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
    ) || ((upper.starts_with("COM") || upper.starts_with("LPT"))
        && upper.len() == 4
        && upper.as_bytes()[3].is_ascii_digit());
    let bytes = component.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    device || drive
}

impl fmt::Display for SafePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Operator caps on what one torrent may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TorrentLimits {
    pub max_files: usize,
    pub max_total_bytes: u64,
}

impl Default for TorrentLimits {
    fn default() -> Self {
        Self {
            max_files: 20_000,
            max_total_bytes: 4 << 40,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TorrentLimitError {
    #[error("the torrent has {count} files; at most {max} are accepted")]
    TooManyFiles { count: usize, max: usize },
    #[error("the torrent holds {total} bytes; at most {max} are accepted")]
    TooLarge { total: u64, max: u64 },
}

impl TorrentLimits {
    /// # Errors
    /// [`TorrentLimitError`] when a cap is exceeded.
    pub fn check(&self, file_count: usize, total_bytes: u64) -> Result<(), TorrentLimitError> {
        if file_count > self.max_files {
            return Err(TorrentLimitError::TooManyFiles {
                count: file_count,
                max: self.max_files,
            });
        }
        if total_bytes > self.max_total_bytes {
            return Err(TorrentLimitError::TooLarge {
                total: total_bytes,
                max: self.max_total_bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_names() {
        let p = SafePath::from_components(&["Album", "01 - Intro: Part 1.flac"]).unwrap();
        assert_eq!(p.as_str(), "Album/01 - Intro: Part 1.flac");
        assert_eq!(p.file_name(), "01 - Intro: Part 1.flac");
        assert!(
            SafePath::parse("console/file.con").is_ok(),
            "only exact device stems are reserved"
        );
        assert!(SafePath::parse("COM10").is_ok());
    }

    #[test]
    fn refuses_hostile_names() {
        let bad: &[&[&str]] = &[
            &[],
            &[""],
            &[".."],
            &["a", "..", "b"],
            &["."],
            &["/etc", "passwd"],
            &["a/b"],
            &["a\\..\\b"],
            &["nul\0byte"],
            &["line\nbreak"],
            &["CON"],
            &["dir", "aux.txt"],
            &["lpt1"],
            &["C:", "Windows"],
            &["c:evil"],
        ];
        for comps in bad {
            assert!(SafePath::from_components(comps).is_err(), "{comps:?}");
        }
        let deep = vec!["d"; MAX_DEPTH + 1];
        assert!(matches!(
            SafePath::from_components(&deep),
            Err(SafePathError::TooLong { .. })
        ));
        let long = "x".repeat(MAX_COMPONENT_LEN + 1);
        assert!(SafePath::from_components(&[long]).is_err());
    }

    #[test]
    fn limits_cap_count_and_size() {
        let l = TorrentLimits {
            max_files: 2,
            max_total_bytes: 100,
        };
        assert!(l.check(2, 100).is_ok());
        assert!(matches!(
            l.check(3, 1),
            Err(TorrentLimitError::TooManyFiles { .. })
        ));
        assert!(matches!(
            l.check(1, 101),
            Err(TorrentLimitError::TooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn safe_paths_stay_inside(comps in proptest::collection::vec("\\PC{0,12}", 0..6)) {
            if let Ok(p) = SafePath::from_components(&comps) {
                prop_assert!(!p.as_str().starts_with('/'));
                prop_assert!(p.components().all(|c| !c.is_empty() && c != "." && c != ".."));
                prop_assert_eq!(SafePath::parse(p.as_str()).unwrap(), p.clone());
                let joined = std::path::Path::new("/root").join(p.as_str());
                prop_assert!(joined.starts_with("/root"));
            }
        }
    }
}
