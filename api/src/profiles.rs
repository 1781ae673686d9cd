//! `/api/v1/storage-profiles`: where a user's jobs can be delivered. Credentials go in, and
//! never come back out.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ferry_domain::{Credentials, ErrorCode, ProfileId, StorageBackend, StorageProfile};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Tags, Union};
use uuid::Uuid;

use crate::ApiState;
use crate::auth::Caller;
use crate::dto::Text;
use crate::error::{ApiError, Fails, statuses};
use ferry_application::StorageProfiles;

#[derive(Tags)]
enum Tag {
    /// Storage profiles: S3 buckets, Google Drive folders and folders on the server's shared
    /// volume to deliver to.
    StorageProfiles,
}

pub struct ProfilesApi {
    pub state: Arc<ApiState>,
}

// What each operation can fail with (see `jobs.rs`); 502 is the user's storage not answering.
statuses! {
    CreateFails: 400, 401, 403, 413, 415, 422, 429, 500, 502, 503;
    ListFails: 401, 403, 429, 500, 503;
    ReadFails: 401, 403, 404, 429, 500, 503;
    DefaultFails: 400, 401, 403, 404, 413, 415, 429, 500, 503;
    TestFails: 400, 401, 403, 404, 422, 429, 500, 502, 503;
}

/// An S3-compatible bucket.
#[derive(Debug, Object)]
pub struct S3Request {
    /// `https://s3.eu-west-1.amazonaws.com`, `http://minio:9000`, …
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Keys start with `{prefix}/`.
    pub prefix: Option<String>,
    /// Path-style addressing (default true: what self-hosted servers need).
    pub path_style: Option<bool>,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// A Google Drive folder.
#[derive(Debug, Object)]
pub struct DriveRequest {
    pub folder_id: String,
    /// An OAuth refresh token with the `drive.file` scope.
    pub refresh_token: String,
}

/// A new profile: a name and exactly one of `s3` or `google_drive`, or a folder on the
/// shared volume (`"kind": "folder"`).
#[derive(Debug, Union)]
#[oai(one_of)]
pub enum ProfileRequest {
    S3(S3Profile),
    GoogleDrive(DriveProfile),
    Folder(FolderProfile),
}

/// A folder on the server's shared volume (`storage.shared_dir`), which other programs
/// (Sonarr, Radarr) mounting the same volume read directly: each job's files go to
/// `{location}/{job id}/…` and stay there. Refused with `422 shared_dir_unset` on a server
/// without a shared volume.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct FolderProfile {
    pub name: Text,
    pub kind: FolderKind,
    /// The folder, relative to your area of the shared volume: `/`-separated file names
    /// (`tv`, `media/films`); `""` is the area itself.
    pub path: Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum FolderKind {
    Folder,
}

#[derive(Debug, Object)]
pub struct S3Profile {
    pub name: String,
    pub s3: S3Request,
}

#[derive(Debug, Object)]
pub struct DriveProfile {
    pub name: String,
    pub google_drive: DriveRequest,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct S3Dto {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub prefix: Option<String>,
    pub path_style: bool,
}

#[derive(Debug, Object)]
pub struct DriveDto {
    pub folder_id: String,
}

/// A saved profile, without its credentials.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ProfileDto {
    pub id: Uuid,
    pub name: String,
    /// `s3`, `google_drive` or `folder`.
    pub kind: String,
    pub s3: Option<S3Dto>,
    pub google_drive: Option<DriveDto>,
    /// `folder`: the folder, relative to the owner's area of the shared volume (`""`: the
    /// area itself).
    pub path: Option<String>,
    /// `folder`: the absolute directory on the server's shared volume it maps to; a job's
    /// files are in `{location}/{job id}/`. Absent when this server has no shared volume.
    pub location: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Jobs that name no destination are delivered here.
    #[oai(rename = "default")]
    pub is_default: bool,
}

/// The caller's default destination.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct DefaultProfile {
    /// The profile jobs that name no destination are delivered to; absent or `null`: this
    /// server's own storage.
    #[oai(nullable)]
    pub profile: Option<Uuid>,
}

impl ProfileDto {
    /// `p` as the API shows it to its owner, whose default profile is `default`.
    fn of(p: &StorageProfile, default: Option<ProfileId>, profiles: &StorageProfiles) -> Self {
        Self {
            is_default: default == Some(p.id),
            location: profiles
                .location(p)
                .map(|dir| dir.to_string_lossy().into_owned()),
            ..p.into()
        }
    }
}

impl From<&StorageProfile> for ProfileDto {
    fn from(p: &StorageProfile) -> Self {
        let (s3, google_drive, path) = match &p.backend {
            StorageBackend::S3 {
                endpoint,
                region,
                bucket,
                prefix,
                path_style,
            } => (
                Some(S3Dto {
                    endpoint: endpoint.to_string(),
                    region: region.clone(),
                    bucket: bucket.clone(),
                    prefix: prefix.clone(),
                    path_style: *path_style,
                }),
                None,
                None,
            ),
            StorageBackend::GoogleDrive { folder_id } => (
                None,
                Some(DriveDto {
                    folder_id: folder_id.clone(),
                }),
                None,
            ),
            StorageBackend::Folder { path } => (None, None, Some(path.clone())),
        };
        Self {
            id: p.id.as_uuid(),
            name: p.name.clone(),
            kind: p.backend.kind().to_owned(),
            s3,
            google_drive,
            path,
            location: None,
            created_at: p.created_at,
            is_default: false,
        }
    }
}

#[derive(Debug, Object)]
pub struct TestResult {
    pub ok: bool,
}

#[derive(ApiResponse)]
pub enum Created {
    /// The profile was checked (a connection to the storage succeeded) and saved.
    #[oai(status = 201)]
    Created(Json<ProfileDto>),
}

#[derive(ApiResponse)]
pub enum Deleted {
    /// The profile was deleted.
    #[oai(status = 204)]
    Deleted,
}

fn parse_id(id: &str) -> Result<ProfileId, ApiError> {
    id.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::StorageProfileNotFound,
            format!("no storage profile {id:?}"),
        )
    })
}

#[OpenApi(prefix_path = "/api/v1")]
impl ProfilesApi {
    /// Save a storage profile. The connection is tested first; credentials are sealed at
    /// rest and never returned.
    #[oai(
        path = "/storage-profiles",
        method = "post",
        tag = "Tag::StorageProfiles",
        operation_id = "createStorageProfile"
    )]
    async fn create(
        &self,
        req: &poem::Request,
        caller: Caller,
        body: Json<ProfileRequest>,
    ) -> Result<Created, Fails<CreateFails>> {
        let invalid = |m: String| ApiError::new(ErrorCode::InvalidStorageProfile, m);
        let (name, backend, credentials) = match body.0 {
            ProfileRequest::S3(S3Profile { name, s3 }) => (
                name,
                StorageBackend::s3(
                    &s3.endpoint,
                    &s3.region,
                    &s3.bucket,
                    s3.prefix.as_deref(),
                    s3.path_style.unwrap_or(true),
                )
                .map_err(|e| invalid(e.to_string()))?,
                Credentials::S3 {
                    access_key_id: s3.access_key_id,
                    secret_access_key: s3.secret_access_key,
                },
            ),
            ProfileRequest::GoogleDrive(DriveProfile {
                name,
                google_drive: d,
            }) => (
                name,
                StorageBackend::google_drive(&d.folder_id).map_err(|e| invalid(e.to_string()))?,
                Credentials::GoogleDrive {
                    refresh_token: d.refresh_token,
                },
            ),
            ProfileRequest::Folder(FolderProfile {
                name: Text(name),
                kind: _,
                path: Text(path),
            }) => {
                // The domain trims a leading '/' for programs; a person who types one
                // means an absolute path, which is not what they would get.
                if path.starts_with('/') {
                    return Err(invalid(
                        "the folder path is relative to your area of the shared volume: it may not start with '/'"
                            .to_owned(),
                    )
                    .into());
                }
                (
                    name,
                    StorageBackend::folder(&path).map_err(|e| invalid(e.to_string()))?,
                    Credentials::None,
                )
            }
        };
        let profile = self
            .state
            .profiles
            .create(caller.owner().clone(), &name, backend, credentials)
            .await?;
        caller
            .audit(&self.state, req, "profile.create", profile.id.to_string())
            .await;
        Ok(Created::Created(Json(ProfileDto::of(
            &profile,
            None,
            &self.state.profiles,
        ))))
    }

    /// The caller's storage profiles.
    #[oai(
        path = "/storage-profiles",
        method = "get",
        tag = "Tag::StorageProfiles",
        operation_id = "listStorageProfiles"
    )]
    async fn list(&self, caller: Caller) -> Result<Json<Vec<ProfileDto>>, Fails<ListFails>> {
        let all = self.state.profiles.list(caller.owner()).await?;
        let default = self.state.profiles.default_of(caller.owner()).await?;
        Ok(Json(
            all.iter()
                .map(|p| ProfileDto::of(p, default, &self.state.profiles))
                .collect(),
        ))
    }

    /// The caller's default destination: where jobs that name none are delivered.
    #[oai(
        path = "/me/default-storage-profile",
        method = "get",
        tag = "Tag::StorageProfiles",
        operation_id = "getDefaultStorageProfile"
    )]
    async fn get_default(&self, caller: Caller) -> Result<Json<DefaultProfile>, Fails<ListFails>> {
        let id = self.state.profiles.default_of(caller.owner()).await?;
        Ok(Json(DefaultProfile {
            profile: id.map(|p| p.as_uuid()),
        }))
    }

    /// Choose the caller's default destination (`null`: this server's own storage).
    #[oai(
        path = "/me/default-storage-profile",
        method = "put",
        tag = "Tag::StorageProfiles",
        operation_id = "setDefaultStorageProfile"
    )]
    async fn set_default(
        &self,
        req: &poem::Request,
        caller: Caller,
        body: Json<DefaultProfile>,
    ) -> Result<Json<DefaultProfile>, Fails<DefaultFails>> {
        let id = body.0.profile.map(ProfileId::from_uuid);
        self.state.profiles.set_default(caller.owner(), id).await?;
        caller
            .audit(
                &self.state,
                req,
                "profile.default",
                id.map_or_else(|| "server".to_owned(), |id| id.to_string()),
            )
            .await;
        Ok(Json(DefaultProfile {
            profile: id.map(|p| p.as_uuid()),
        }))
    }

    /// One storage profile.
    #[oai(
        path = "/storage-profiles/:id",
        method = "get",
        tag = "Tag::StorageProfiles",
        operation_id = "getStorageProfile"
    )]
    async fn get(
        &self,
        caller: Caller,
        id: Path<String>,
    ) -> Result<Json<ProfileDto>, Fails<ReadFails>> {
        let p = self
            .state
            .profiles
            .get(caller.owner(), parse_id(&id)?)
            .await?;
        let default = self.state.profiles.default_of(caller.owner()).await?;
        Ok(Json(ProfileDto::of(&p, default, &self.state.profiles)))
    }

    /// Delete a storage profile (jobs already delivered keep their files).
    #[oai(
        path = "/storage-profiles/:id",
        method = "delete",
        tag = "Tag::StorageProfiles",
        operation_id = "deleteStorageProfile"
    )]
    async fn delete(
        &self,
        req: &poem::Request,
        caller: Caller,
        id: Path<String>,
    ) -> Result<Deleted, Fails<ReadFails>> {
        let id = parse_id(&id)?;
        self.state.profiles.delete(caller.owner(), id).await?;
        caller
            .audit(&self.state, req, "profile.delete", id.to_string())
            .await;
        Ok(Deleted::Deleted)
    }

    /// Connect to the storage with the saved credentials.
    #[oai(
        path = "/storage-profiles/:id/test",
        method = "post",
        tag = "Tag::StorageProfiles",
        operation_id = "testStorageProfile"
    )]
    async fn test(
        &self,
        caller: Caller,
        id: Path<String>,
    ) -> Result<Json<TestResult>, Fails<TestFails>> {
        self.state
            .profiles
            .test(caller.owner(), parse_id(&id)?)
            .await?;
        Ok(Json(TestResult { ok: true }))
    }
}
