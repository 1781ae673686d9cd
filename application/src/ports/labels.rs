//! Categories and tags, per user, as qBittorrent's API gives them to the *arr apps.

use std::collections::HashMap;

use async_trait::async_trait;
use ferry_domain::{JobId, OwnerId, ProfileId};

use super::RepoError;

/// A user's category: a name, the save path clients see, and where its jobs are delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    pub name: String,
    /// The folder as the client gave it (relative to the user's area on the shared volume;
    /// empty: a folder named after the category).
    pub save_path: String,
    /// The folder profile its jobs are delivered to (`None`: the user's default
    /// destination, when no shared volume is configured).
    pub profile: Option<ProfileId>,
}

/// A job's category and tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobLabels {
    pub category: Option<String>,
    /// Sorted, without duplicates.
    pub tags: Vec<String>,
    /// Removed from the qBittorrent client's list (its files kept, the job still Ferry's).
    pub removed: bool,
}

#[async_trait]
pub trait LabelRepository: Send + Sync + 'static {
    /// The owner's categories, by name.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn categories(&self, owner: &OwnerId) -> Result<Vec<Category>, RepoError>;

    /// Adds a category.
    ///
    /// # Errors
    /// `AlreadyExists` when the owner has one by that name.
    async fn create_category(&self, owner: &OwnerId, category: &Category) -> Result<(), RepoError>;

    /// Changes an existing category's save path and profile.
    ///
    /// # Errors
    /// `NotFound` when the owner has none by that name.
    async fn edit_category(&self, owner: &OwnerId, category: &Category) -> Result<(), RepoError>;

    /// Removes categories (unknown names are ignored); their jobs keep no category.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn remove_categories(&self, owner: &OwnerId, names: &[String]) -> Result<(), RepoError>;

    /// The labels of every labelled job of the owner.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn labels(&self, owner: &OwnerId) -> Result<HashMap<JobId, JobLabels>, RepoError>;

    /// Sets the category of the owner's `jobs` (`None`: none). Jobs of other owners are
    /// left alone.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn set_category(
        &self,
        owner: &OwnerId,
        jobs: &[JobId],
        category: Option<&str>,
    ) -> Result<(), RepoError>;

    /// Takes the owner's `jobs` off the qBittorrent client's list (their files stay), or
    /// (`removed = false`) puts them back on it.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn set_removed(
        &self,
        owner: &OwnerId,
        jobs: &[JobId],
        removed: bool,
    ) -> Result<(), RepoError>;

    /// Adds (`add = true`) or removes `tags` on the owner's `jobs`.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn tag(
        &self,
        owner: &OwnerId,
        jobs: &[JobId],
        tags: &[String],
        add: bool,
    ) -> Result<(), RepoError>;
}
