//! Categories and tags: how the *arr apps sort their downloads (through the
//! qBittorrent-compatible API). A category is also a destination: with a shared volume
//! configured (`storage.shared_dir`), each category delivers into a folder of the user's
//! area on it, `{shared_dir}/{user}/{save path}`, where the app that asked finds the files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_domain::{Credentials, JobId, OwnerId, ProfileId, StorageBackend};

use crate::ports::{Category, JobLabels, LabelRepository, RepoError};
use crate::{ProfilesError, StorageProfiles};

/// Longest category or tag name.
pub const MAX_LABEL_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum CategoriesError {
    #[error("{0}")]
    Invalid(String),
    #[error("the category already exists")]
    Exists,
    #[error("no such category")]
    NotFound,
    #[error(transparent)]
    Folder(#[from] ProfilesError),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<RepoError> for CategoriesError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::NotFound => Self::NotFound,
            RepoError::AlreadyExists => Self::Exists,
            RepoError::Unavailable(m) => Self::Unavailable(m),
            other => Self::Unexpected(other.into()),
        }
    }
}

pub struct Categories {
    pub labels: Arc<dyn LabelRepository>,
    pub profiles: Arc<StorageProfiles>,
    /// The shared volume (`storage.shared_dir`); `None`: categories deliver where jobs
    /// without one go.
    pub shared_dir: Option<PathBuf>,
}

/// A category name as qBittorrent allows it (`/` separates subcategories).
///
/// # Errors
/// `Invalid` with the reason.
pub fn check_category_name(name: &str) -> Result<(), CategoriesError> {
    let bad = name.is_empty()
        || name.chars().count() > MAX_LABEL_CHARS
        || name.starts_with('/')
        || name.ends_with('/')
        || name.contains("//")
        || name.contains('\\')
        || name.chars().any(char::is_control);
    if bad {
        return Err(CategoriesError::Invalid(format!(
            "a category name is 1 to {MAX_LABEL_CHARS} characters, without '\\', control \
             characters, or '/' at either end or twice in a row"
        )));
    }
    Ok(())
}

/// Tags from a comma-separated list (blank ones dropped).
///
/// # Errors
/// `Invalid` for a tag too long or with control characters.
pub fn parse_tags(list: &str) -> Result<Vec<String>, CategoriesError> {
    let mut tags = Vec::new();
    for tag in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if tag.chars().count() > MAX_LABEL_CHARS || tag.chars().any(char::is_control) {
            return Err(CategoriesError::Invalid(format!(
                "a tag is at most {MAX_LABEL_CHARS} characters, without control characters"
            )));
        }
        tags.push(tag.to_owned());
    }
    Ok(tags)
}

impl Categories {
    /// The owner's area on the shared volume.
    pub fn area(&self, owner: &OwnerId) -> Option<PathBuf> {
        self.shared_dir.as_ref().map(|d| d.join(owner.as_str()))
    }

    /// The directory a category delivers to, as clients are shown it.
    pub fn folder_of(&self, owner: &OwnerId, category: &Category) -> Option<PathBuf> {
        let area = self.area(owner)?;
        let relative = folder_path(category);
        Some(if relative.is_empty() {
            area
        } else {
            area.join(relative)
        })
    }

    /// # Errors
    /// `Unavailable`.
    pub async fn list(&self, owner: &OwnerId) -> Result<Vec<Category>, CategoriesError> {
        Ok(self.labels.categories(owner).await?)
    }

    /// The category called `name`, if the owner has one.
    ///
    /// # Errors
    /// `Unavailable`.
    pub async fn get(
        &self,
        owner: &OwnerId,
        name: &str,
    ) -> Result<Option<Category>, CategoriesError> {
        Ok(self.list(owner).await?.into_iter().find(|c| c.name == name))
    }

    /// Adds a category delivering to `save_path` (relative to the owner's area, or an
    /// absolute path inside it; empty: a folder named after the category).
    ///
    /// # Errors
    /// `Invalid`, `Exists`, `Folder` (the folder cannot be made a destination).
    pub async fn create(
        &self,
        owner: &OwnerId,
        name: &str,
        save_path: &str,
    ) -> Result<Category, CategoriesError> {
        check_category_name(name)?;
        let save_path = self.relative(owner, save_path)?;
        let mut category = Category {
            name: name.to_owned(),
            save_path,
            profile: None,
        };
        self.labels.create_category(owner, &category).await?;
        if let Err(e) = self.attach_folder(owner, &mut category).await {
            let _ = self
                .labels
                .remove_categories(owner, std::slice::from_ref(&category.name))
                .await;
            return Err(e);
        }
        Ok(category)
    }

    /// Changes a category's save path.
    ///
    /// # Errors
    /// `Invalid`, `NotFound`, `Folder`.
    pub async fn edit(
        &self,
        owner: &OwnerId,
        name: &str,
        save_path: &str,
    ) -> Result<Category, CategoriesError> {
        check_category_name(name)?;
        let Some(mut category) = self.get(owner, name).await? else {
            return Err(CategoriesError::NotFound);
        };
        category.save_path = self.relative(owner, save_path)?;
        self.attach_folder(owner, &mut category).await?;
        Ok(category)
    }

    /// Removes categories; their jobs keep their files where they are.
    ///
    /// # Errors
    /// `Unavailable`.
    pub async fn remove(&self, owner: &OwnerId, names: &[String]) -> Result<(), CategoriesError> {
        Ok(self.labels.remove_categories(owner, names).await?)
    }

    /// Where a job of `category` is delivered: its folder profile (`None`: no category
    /// folder; the caller chooses).
    ///
    /// # Errors
    /// `NotFound` for a category the owner does not have.
    pub async fn destination(
        &self,
        owner: &OwnerId,
        category: &str,
    ) -> Result<Option<ProfileId>, CategoriesError> {
        let Some(mut category) = self.get(owner, category).await? else {
            return Err(CategoriesError::NotFound);
        };
        if let Some(profile) = category.profile {
            match self.profiles.get(owner, profile).await {
                Ok(_) => {}
                // Its folder profile was deleted (on the storage page): made again.
                Err(ProfilesError::NotFound) => self.attach_folder(owner, &mut category).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(category.profile)
    }

    /// The folder profile of the owner for `save_path` (one made on first use), for a job
    /// added with an explicit save path; `None` without a shared volume.
    ///
    /// # Errors
    /// `Invalid` (outside the owner's area), `Folder`.
    pub async fn folder_for(
        &self,
        owner: &OwnerId,
        save_path: &str,
    ) -> Result<Option<ProfileId>, CategoriesError> {
        if self.shared_dir.is_none() {
            return Err(CategoriesError::Invalid(
                "no shared volume is configured (storage.shared_dir): torrents cannot be given \
                 a save path"
                    .to_owned(),
            ));
        }
        let relative = self.relative(owner, save_path)?;
        self.folder_profile(owner, &relative).await.map(Some)
    }

    /// # Errors
    /// `Unavailable`.
    pub async fn labels(
        &self,
        owner: &OwnerId,
    ) -> Result<std::collections::HashMap<JobId, JobLabels>, CategoriesError> {
        Ok(self.labels.labels(owner).await?)
    }

    /// Puts the owner's `jobs` in `category` (`""`: none).
    ///
    /// # Errors
    /// `NotFound` (qBittorrent's 409) for a category the owner does not have.
    pub async fn set_category(
        &self,
        owner: &OwnerId,
        jobs: &[JobId],
        category: &str,
    ) -> Result<(), CategoriesError> {
        let category = if category.is_empty() {
            None
        } else {
            if self.get(owner, category).await?.is_none() {
                return Err(CategoriesError::NotFound);
            }
            Some(category)
        };
        Ok(self.labels.set_category(owner, jobs, category).await?)
    }

    /// Takes the owner's `jobs` off the qBittorrent client's list, their files kept, or
    /// (`removed = false`) puts them back on it.
    ///
    /// # Errors
    /// `Unavailable`.
    pub async fn set_removed(
        &self,
        owner: &OwnerId,
        jobs: &[JobId],
        removed: bool,
    ) -> Result<(), CategoriesError> {
        Ok(self.labels.set_removed(owner, jobs, removed).await?)
    }

    /// Adds or removes tags on the owner's `jobs`.
    ///
    /// # Errors
    /// `Invalid` tags, `Unavailable`.
    pub async fn tag(
        &self,
        owner: &OwnerId,
        jobs: &[JobId],
        tags: &str,
        add: bool,
    ) -> Result<(), CategoriesError> {
        let tags = parse_tags(tags)?;
        if tags.is_empty() {
            return Ok(());
        }
        Ok(self.labels.tag(owner, jobs, &tags, add).await?)
    }

    /// `save_path` relative to the owner's area: an absolute path must lie inside it.
    fn relative(&self, owner: &OwnerId, save_path: &str) -> Result<String, CategoriesError> {
        let save_path = save_path.trim();
        let outside = || {
            CategoriesError::Invalid(match self.area(owner) {
                Some(area) => format!("the save path must be inside {}", area.display()),
                None => "no shared volume is configured (storage.shared_dir): categories \
                         cannot have save paths of their own"
                    .to_owned(),
            })
        };
        if !save_path.starts_with('/') {
            if !save_path.is_empty() && self.shared_dir.is_none() {
                return Err(outside());
            }
            return Ok(save_path.trim_end_matches('/').to_owned());
        }
        let area = self.area(owner).ok_or_else(outside)?;
        let inside = Path::new(save_path)
            .strip_prefix(&area)
            .map_err(|_| outside())?;
        let text = inside.to_str().ok_or_else(outside)?;
        Ok(text.trim_end_matches('/').to_owned())
    }

    async fn attach_folder(
        &self,
        owner: &OwnerId,
        category: &mut Category,
    ) -> Result<(), CategoriesError> {
        if self.shared_dir.is_none() {
            return Ok(());
        }
        let folder = folder_path(category);
        category.profile = Some(self.folder_profile(owner, &folder).await?);
        Ok(self.labels.edit_category(owner, category).await?)
    }

    /// The owner's folder profile for `path`, made when there is none.
    async fn folder_profile(
        &self,
        owner: &OwnerId,
        path: &str,
    ) -> Result<ProfileId, CategoriesError> {
        let backend = StorageBackend::folder(path)
            .map_err(|e| CategoriesError::Invalid(format!("save path: {e}")))?;
        let existing = self.profiles.list(owner).await?;
        if let Some(profile) = existing.iter().find(|p| p.backend == backend) {
            return Ok(profile.id);
        }
        // Profile names are at most 100 characters; the path is shown in full elsewhere.
        let name: String = if path.is_empty() {
            "Shared folder".to_owned()
        } else {
            format!("Shared folder {path}").chars().take(100).collect()
        };
        let profile = self
            .profiles
            .create(owner.clone(), &name, backend, Credentials::None)
            .await?;
        Ok(profile.id)
    }
}

/// The folder of a category, relative to its owner's area.
fn folder_path(category: &Category) -> String {
    if category.save_path.is_empty() {
        category.name.clone()
    } else {
        category.save_path.clone()
    }
}
