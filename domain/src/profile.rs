//! Storage profiles: where a user wants a job's files delivered.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use url::Url;
use uuid::Uuid;

use crate::{OwnerId, SafePath};

/// Longest folder path accepted, in bytes (each segment is also held to [`SafePath`]'s
/// limits: at most 255 bytes, no device names).
pub const MAX_FOLDER_PATH_LEN: usize = 1024;

#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ProfileId(Uuid);

impl ProfileId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for ProfileId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProfileId({})", self.0)
    }
}

impl FromStr for ProfileId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Where files go. Credentials are not here: they are sealed separately and never leave
/// the server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StorageBackend {
    /// Any S3-compatible endpoint.
    S3 {
        endpoint: Url,
        region: String,
        bucket: String,
        /// Keys start with `{prefix}/` when set.
        prefix: Option<String>,
        /// Path-style addressing (`endpoint/bucket/key`), what most self-hosted servers need.
        path_style: bool,
    },
    /// A Google Drive folder; each job gets a folder of its own under it.
    GoogleDrive { folder_id: String },
    /// A folder on the server's shared volume (`storage.shared_dir`) that other programs
    /// read directly: `{shared_dir}/{owner}/{path}`, each job in a folder of its own under it.
    Folder {
        /// Relative to the owner's area of the shared volume: `/`-separated safe file names;
        /// empty for the area itself.
        path: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("the profile name must be 1 to 100 printable characters")]
    Name,
    #[error("the endpoint must be an http or https URL without credentials, query or fragment")]
    Endpoint,
    #[error("the bucket name is not a valid S3 bucket name")]
    Bucket,
    #[error("the region must be 1 to 64 letters, digits or dashes")]
    Region,
    #[error("the key prefix may only hold letters, digits and -_./ segments (no '..')")]
    Prefix,
    #[error("the Drive folder id must be 1 to 128 letters, digits, '-' or '_'")]
    Folder,
    #[error(
        "the folder path must be relative to your area of the shared volume: '/'-separated file names (1 to 255 bytes each, not '.' or '..', no '\\', NUL or control characters), 1024 bytes at most"
    )]
    FolderPath,
    #[error("{0} is required")]
    Missing(&'static str),
}

impl StorageBackend {
    /// A validated S3 backend.
    ///
    /// # Errors
    /// [`ProfileError`] naming the bad field.
    pub fn s3(
        endpoint: &str,
        region: &str,
        bucket: &str,
        prefix: Option<&str>,
        path_style: bool,
    ) -> Result<Self, ProfileError> {
        let endpoint = Url::parse(endpoint)
            .ok()
            .filter(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.username().is_empty()
                    && u.password().is_none()
                    && u.query().is_none()
                    && u.fragment().is_none()
            })
            .ok_or(ProfileError::Endpoint)?;
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.'])
            && !bucket.contains("..");
        if !bucket_ok {
            return Err(ProfileError::Bucket);
        }
        let region_ok = !region.is_empty()
            && region.len() <= 64
            && region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !region_ok {
            return Err(ProfileError::Region);
        }
        let prefix = match prefix
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty())
        {
            None => None,
            Some(p) => {
                let ok = p.len() <= 512
                    && p.split('/').all(|seg| {
                        !seg.is_empty()
                            && seg != "."
                            && seg != ".."
                            && seg.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
                            })
                    });
                if !ok {
                    return Err(ProfileError::Prefix);
                }
                Some(p.to_owned())
            }
        };
        Ok(Self::S3 {
            endpoint,
            region: region.to_owned(),
            bucket: bucket.to_owned(),
            prefix,
            path_style,
        })
    }

    /// A validated Google Drive backend.
    ///
    /// # Errors
    /// [`ProfileError::Folder`] for a malformed folder id.
    pub fn google_drive(folder_id: &str) -> Result<Self, ProfileError> {
        let ok = !folder_id.is_empty()
            && folder_id.len() <= 128
            && folder_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self::GoogleDrive {
                folder_id: folder_id.to_owned(),
            })
        } else {
            Err(ProfileError::Folder)
        }
    }

    /// A validated folder on the shared volume. Leading and trailing `/` are trimmed; the
    /// empty path is the owner's area itself.
    ///
    /// # Errors
    /// [`ProfileError::FolderPath`] for a segment that is not a safe file name, or a path
    /// that is too long.
    pub fn folder(path: &str) -> Result<Self, ProfileError> {
        let path = path.trim_matches('/');
        let ok =
            path.is_empty() || (path.len() <= MAX_FOLDER_PATH_LEN && SafePath::parse(path).is_ok());
        if ok {
            Ok(Self::Folder {
                path: path.to_owned(),
            })
        } else {
            Err(ProfileError::FolderPath)
        }
    }

    /// The kind as the API names it (`s3`, `google_drive`, `folder`), also the `backend`
    /// label of delivery metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::S3 { .. } => "s3",
            Self::GoogleDrive { .. } => "google_drive",
            Self::Folder { .. } => "folder",
        }
    }
}

/// The owner's area of the shared volume: `{shared_dir}/{owner}`. Owner ids are safe file
/// names ([`OwnerId::parse`]), so the area is always directly under `shared_dir`.
pub fn shared_area(shared_dir: &Path, owner: &OwnerId) -> PathBuf {
    shared_dir.join(owner.as_str())
}

/// Where a folder profile's files go: `{shared_dir}/{owner}/{path}`.
pub fn folder_dir(shared_dir: &Path, owner: &OwnerId, path: &str) -> PathBuf {
    path.split('/')
        .filter(|seg| !seg.is_empty())
        .fold(shared_area(shared_dir, owner), |dir, seg| dir.join(seg))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageProfile {
    pub id: ProfileId,
    pub owner: OwnerId,
    pub name: String,
    pub backend: StorageBackend,
    pub created_at: DateTime<Utc>,
}

impl StorageProfile {
    /// # Errors
    /// [`ProfileError::Name`] for an empty, too long or non-printable name.
    pub fn new(
        owner: OwnerId,
        name: &str,
        backend: StorageBackend,
        now: DateTime<Utc>,
    ) -> Result<Self, ProfileError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(ProfileError::Name);
        }
        Ok(Self {
            id: ProfileId::new(),
            owner,
            name: name.to_owned(),
            backend,
            created_at: now,
        })
    }

    /// The directory a folder profile delivers into (`None` for other kinds).
    pub fn folder_dir(&self, shared_dir: &Path) -> Option<PathBuf> {
        match &self.backend {
            StorageBackend::Folder { path } => Some(folder_dir(shared_dir, &self.owner, path)),
            _ => None,
        }
    }
}

/// Credentials of a profile, sealed at rest. `Debug` never prints them.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Credentials {
    S3 {
        access_key_id: String,
        secret_access_key: String,
    },
    GoogleDrive {
        refresh_token: String,
    },
    /// No credentials: a folder on the shared volume needs none. Sealed like the others,
    /// so every profile is stored, listed and re-sealed the same way.
    None,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::S3 { .. } => f.write_str("Credentials::S3(***)"),
            Self::GoogleDrive { .. } => f.write_str("Credentials::GoogleDrive(***)"),
            Self::None => f.write_str("Credentials::None"),
        }
    }
}

impl Credentials {
    pub fn matches(&self, backend: &StorageBackend) -> bool {
        matches!(
            (self, backend),
            (Self::S3 { .. }, StorageBackend::S3 { .. })
                | (Self::GoogleDrive { .. }, StorageBackend::GoogleDrive { .. })
                | (Self::None, StorageBackend::Folder { .. })
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn s3_backends_are_validated() {
        assert!(
            StorageBackend::s3(
                "http://127.0.0.1:9000",
                "us-east-1",
                "ferry-data",
                Some("/a/b/"),
                true
            )
            .is_ok()
        );
        let bad = [
            ("ftp://x", "r", "bucket", None, ProfileError::Endpoint),
            (
                "http://user:pw@x",
                "r",
                "bucket",
                None,
                ProfileError::Endpoint,
            ),
            ("http://x?y=1", "r", "bucket", None, ProfileError::Endpoint),
            ("http://x", "r", "UPPER", None, ProfileError::Bucket),
            ("http://x", "r", "ab", None, ProfileError::Bucket),
            ("http://x", "r", "a..b", None, ProfileError::Bucket),
            ("http://x", "", "bucket", None, ProfileError::Region),
            (
                "http://x",
                "r",
                "bucket",
                Some("a/../b"),
                ProfileError::Prefix,
            ),
            ("http://x", "r", "bucket", Some("a b"), ProfileError::Prefix),
        ];
        for (e, r, b, p, want) in bad {
            assert_eq!(
                StorageBackend::s3(e, r, b, p, true),
                Err(want),
                "{e} {r} {b} {p:?}"
            );
        }
        match StorageBackend::s3("https://s3.example", "eu-1", "bkt", Some("/x/y/"), false) {
            Ok(StorageBackend::S3 { prefix, .. }) => assert_eq!(prefix.as_deref(), Some("x/y")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_and_folders_are_validated_and_secrets_do_not_print() {
        let now = Utc::now();
        let b = StorageBackend::google_drive("0AbC-d_1").unwrap_or_else(|e| panic!("{e}"));
        assert!(StorageProfile::new(OwnerId::local(), "  ", b.clone(), now).is_err());
        assert!(StorageProfile::new(OwnerId::local(), "a\nb", b.clone(), now).is_err());
        assert!(StorageProfile::new(OwnerId::local(), "Drive", b, now).is_ok());
        assert!(StorageBackend::google_drive("../x").is_err());
        let c = Credentials::S3 {
            access_key_id: "AK".into(),
            secret_access_key: "SECRET".into(),
        };
        assert!(!format!("{c:?}").contains("SECRET"));
    }

    #[test]
    fn folders_are_relative_safe_names_and_trimmed() {
        for (given, want) in [
            ("tv", "tv"),
            ("/tv/", "tv"),
            ("/etc", "etc"),
            ("", ""),
            ("/", ""),
            ("Series/Some Show (2024)", "Series/Some Show (2024)"),
            ("films/été", "films/été"),
        ] {
            assert_eq!(
                StorageBackend::folder(given),
                Ok(StorageBackend::Folder { path: want.into() }),
                "{given:?}"
            );
        }
        let long = "x".repeat(300);
        let deep = vec!["abcdefghij"; 100].join("/");
        for bad in [
            "..",
            "../x",
            "a/../../b",
            "a/./b",
            "a//b",
            "a\\b",
            "a\0b",
            "a\nb",
            "tv/\u{7f}",
            "C:",
            "nul",
            long.as_str(),
            deep.as_str(),
        ] {
            assert_eq!(
                StorageBackend::folder(bad),
                Err(ProfileError::FolderPath),
                "{bad:?}"
            );
        }
        let owner = OwnerId::parse("alice").unwrap_or_else(OwnerId::local);
        let folder = StorageBackend::folder("tv/new").unwrap_or_else(|e| panic!("{e}"));
        let p =
            StorageProfile::new(owner, "TV", folder, Utc::now()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            p.folder_dir(Path::new("/srv/shared")),
            Some(PathBuf::from("/srv/shared/alice/tv/new"))
        );
        assert_eq!(
            folder_dir(Path::new("/srv/shared"), &p.owner, ""),
            PathBuf::from("/srv/shared/alice")
        );
        assert!(Credentials::None.matches(&p.backend));
        assert!(
            !Credentials::None
                .matches(&StorageBackend::google_drive("x").unwrap_or_else(|e| panic!("{e}")))
        );
        assert_eq!(
            serde_json::to_value(&p.backend).unwrap_or_default(),
            serde_json::json!({"kind": "folder", "path": "tv/new"})
        );
    }

    proptest! {
        #[test]
        fn validation_never_panics(e in "\\PC{0,40}", b in "\\PC{0,70}", p in "\\PC{0,30}") {
            let _ = StorageBackend::s3(&e, "r", &b, Some(&p), true);
            let _ = StorageBackend::google_drive(&b);
            let _ = StorageBackend::folder(&b);
        }

        #[test]
        fn a_folder_never_leaves_the_owners_area(p in "[a./\\\\\\x00-]{0,12}") {
            if let Ok(StorageBackend::Folder { path }) = StorageBackend::folder(&p) {
                let dir = folder_dir(Path::new("/s"), &OwnerId::local(), &path);
                prop_assert!(dir.starts_with("/s/local"));
                prop_assert!(dir.components().all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_))));
            }
        }
    }
}
