//! Folders on the shared volume (`storage.shared_dir`): the volume is shared with other
//! programs, so Ferry takes nothing on it for granted. A folder is created one level at a
//! time from its owner's area (`{shared_dir}/{owner}`), and an existing component is followed
//! only when it is a folder, or a symbolic link to a folder, that resolves inside the limit
//! (the area for a profile's folder, the folder for a job's files): nothing is created, written
//! or read through a link that leads elsewhere.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use ferry_application::ports::StoreError;
use ferry_domain::OwnerId;

fn refused(what: impl std::fmt::Display) -> StoreError {
    StoreError::FolderRefused(what.to_string())
}

/// Whether `segment` is one plain file name (no separator, `.`, `..` or root): the domain
/// validated it already, but a profile read back from the database is checked again here.
fn is_name(segment: &str) -> bool {
    let mut parts = Path::new(segment).components();
    matches!(parts.next(), Some(Component::Normal(_))) && parts.next().is_none()
}

/// Checks (and creates) a folder profile's folder, `{shared_dir}/{owner}/{path}`, and returns
/// its canonical path.
///
/// # Errors
/// `Unreachable` when the shared folder is not there; `FolderRefused` when the owner's area
/// is not a plain folder of the shared folder, or `path` leads outside the area.
pub(crate) async fn prepare(
    shared_dir: &Path,
    owner: &OwnerId,
    path: &str,
) -> Result<PathBuf, StoreError> {
    let shared = tokio::fs::canonicalize(shared_dir).await.map_err(|e| {
        StoreError::Unreachable(format!("the shared folder {}: {e}", shared_dir.display()))
    })?;
    // The area must be `{shared}/{owner}` itself: a link from there to another folder of the
    // volume (another owner's area) would hand this owner someone else's files.
    let area = create_within(&shared, &shared, [owner.as_str()]).await?;
    if area != shared.join(owner.as_str()) {
        return Err(refused(format!(
            "the area {} is a link to {}",
            shared.join(owner.as_str()).display(),
            area.display()
        )));
    }
    // Collected first: a closure held across an await would make the future not `Send`.
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    create_within(&area, &area, segments).await
}

/// Walks `segments` down from `base` (a canonical folder inside `limit`), creating the
/// folders that are missing, and returns the canonical folder reached.
///
/// # Errors
/// `FolderRefused` for a segment that is not a plain name, a component that is a file, or a
/// link that is dangling or resolves outside `limit`; I/O errors otherwise.
pub(crate) async fn create_within<'a>(
    limit: &Path,
    base: &Path,
    segments: impl IntoIterator<Item = &'a str>,
) -> Result<PathBuf, StoreError> {
    let mut at = base.to_path_buf();
    for segment in segments {
        if !is_name(segment) {
            return Err(refused(format!("{segment:?} is not a file name")));
        }
        at = step(limit, &at.join(segment)).await?;
    }
    // Something may have been swapped in while the walk went on.
    let real = tokio::fs::canonicalize(&at).await.map_err(crate::io)?;
    if !real.starts_with(limit) {
        return Err(refused(format!("{} leads outside", at.display())));
    }
    Ok(real)
}

/// One component: an existing folder, a link to a folder inside `limit`, or a folder created.
async fn step(limit: &Path, next: &Path) -> Result<PathBuf, StoreError> {
    let mut created = false;
    loop {
        match tokio::fs::symlink_metadata(next).await {
            Ok(m) if m.is_dir() => return Ok(next.to_path_buf()),
            Ok(m) if m.file_type().is_symlink() => {
                let real = tokio::fs::canonicalize(next)
                    .await
                    .map_err(|_| refused(format!("{} is a dangling link", next.display())))?;
                let is_dir = tokio::fs::metadata(&real).await.is_ok_and(|m| m.is_dir());
                if !real.starts_with(limit) || !is_dir {
                    return Err(refused(format!(
                        "{} is a link to {}",
                        next.display(),
                        real.display()
                    )));
                }
                return Ok(real);
            }
            Ok(_) => return Err(refused(format!("{} is not a folder", next.display()))),
            Err(e) if e.kind() == ErrorKind::NotFound && !created => {
                // A folder made meanwhile by someone else is judged like any other.
                match tokio::fs::create_dir(next).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(crate::io(e)),
                }
                created = true;
            }
            Err(e) => return Err(crate::io(e)),
        }
    }
}

/// The canonical path of an existing file under `limit` (reads go through here, so a link
/// planted in a folder never serves a file from elsewhere).
///
/// # Errors
/// `NotFound` when there is nothing at `path`; `FolderRefused` when it resolves outside.
pub(crate) async fn resolve_within(limit: &Path, path: &Path) -> Result<PathBuf, StoreError> {
    let real = tokio::fs::canonicalize(path).await.map_err(crate::io)?;
    if real.starts_with(limit) {
        Ok(real)
    } else {
        Err(refused(format!(
            "{} leads to {}",
            path.display(),
            real.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn owner(name: &str) -> OwnerId {
        OwnerId::parse(name).unwrap()
    }

    #[tokio::test]
    async fn folders_are_made_inside_the_area_and_links_out_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let real_shared = std::fs::canonicalize(&shared).unwrap();

        let tv = prepare(&shared, &owner("alice"), "tv/shows").await.unwrap();
        assert_eq!(tv, real_shared.join("alice/tv/shows"));
        assert!(tv.is_dir());
        // The area itself.
        assert_eq!(
            prepare(&shared, &owner("alice"), "").await.unwrap(),
            real_shared.join("alice")
        );

        // Links planted in the area: to `/`, to another owner's area, dangling, a file.
        std::fs::create_dir_all(shared.join("bob/tv")).unwrap();
        let area = shared.join("alice");
        std::os::unix::fs::symlink("/", area.join("root")).unwrap();
        std::os::unix::fs::symlink(shared.join("bob"), area.join("bobs")).unwrap();
        std::os::unix::fs::symlink("../bob/tv", area.join("relative")).unwrap();
        std::os::unix::fs::symlink(&outside, area.join("out")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("gone"), area.join("dangling")).unwrap();
        std::fs::write(area.join("file"), b"x").unwrap();
        for path in [
            "root",
            "root/etc",
            "bobs",
            "bobs/tv",
            "relative/new",
            "out/new/deeper",
            "dangling",
            "dangling/x",
            "file",
            "file/x",
        ] {
            match prepare(&shared, &owner("alice"), path).await {
                Err(StoreError::FolderRefused(_)) => {}
                other => panic!("{path}: {other:?}"),
            }
        }
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "nothing was created outside"
        );
        assert!(!shared.join("bob/tv/new").exists());
        // Segments that are not names (a profile altered in the database) are refused too.
        for path in ["..", "a/../../x", "./a"] {
            match prepare(&shared, &owner("alice"), path).await {
                Err(StoreError::FolderRefused(_)) => {}
                other => panic!("{path}: {other:?}"),
            }
        }

        // A link that stays inside the area is followed.
        std::os::unix::fs::symlink(area.join("tv"), area.join("series")).unwrap();
        assert_eq!(
            prepare(&shared, &owner("alice"), "series/shows")
                .await
                .unwrap(),
            real_shared.join("alice/tv/shows")
        );

        // An owner's area that is a link (to another area, or anywhere) is refused.
        std::os::unix::fs::symlink(shared.join("bob"), shared.join("mallory")).unwrap();
        std::os::unix::fs::symlink(&outside, shared.join("eve")).unwrap();
        for name in ["mallory", "eve"] {
            match prepare(&shared, &owner(name), "tv").await {
                Err(StoreError::FolderRefused(_)) => {}
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(!outside.join("tv").exists() && !shared.join("bob/tv/tv").exists());

        // No shared folder at all.
        assert!(matches!(
            prepare(&tmp.path().join("missing"), &owner("alice"), "tv").await,
            Err(StoreError::Unreachable(_))
        ));
    }
}
