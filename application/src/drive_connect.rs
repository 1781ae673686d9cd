//! Connecting a Google Drive folder without pasting tokens: a user starts a connection (the
//! profile's name and folder are checked then), consents on Google's page, and the browser's
//! return finishes it. The pending connection travels in the browser (the API seals it into
//! a short-lived cookie); finishing it requires the same `state`, a connection younger than
//! [`CONNECT_TTL`], an owner who is still an enabled user, and, if the browser is logged
//! in, the same user. Only then is the code exchanged and the profile created, exactly as
//! a pasted refresh token would be (connection test, sealed credentials).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ferry_domain::{Credentials, OwnerId, ProfileError, StorageBackend, StorageProfile};

use crate::ports::{Clock, ConsentError, DriveConsent, UserRepository};
use crate::{ProfilesError, StorageProfiles};

/// How long a started connection may take to come back.
pub const CONNECT_TTL: chrono::TimeDelta = chrono::TimeDelta::minutes(10);
/// Clocks of API instances may differ this much.
const SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// A connection between its start and Google's redirect back, kept by the browser (sealed):
/// nothing in it may be shown to anyone.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingConnect {
    /// Whose profile it becomes.
    pub owner: OwnerId,
    pub name: String,
    pub folder_id: String,
    pub state: String,
    pub pkce_verifier: String,
    pub redirect_uri: String,
    /// A path on Ferry to send the browser to afterwards.
    pub return_to: Option<String>,
    pub started_at: DateTime<Utc>,
}

impl std::fmt::Debug for PendingConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingConnect")
            .field("owner", &self.owner)
            .field("folder_id", &self.folder_id)
            .field("started_at", &self.started_at)
            .finish_non_exhaustive()
    }
}

/// A started connection: the consent page, and what the browser keeps.
#[derive(Debug, Clone)]
pub struct ConnectStart {
    pub authorize_url: String,
    pub pending: PendingConnect,
}

#[derive(Debug, thiserror::Error)]
pub enum DriveConnectError {
    /// The profile's name or folder id is not valid.
    #[error(transparent)]
    Invalid(#[from] ProfileError),
    #[error("this Google Drive connection was started too long ago; start it again")]
    Expired,
    #[error("this browser did not start this Google Drive connection; start it again")]
    StateMismatch,
    #[error("this browser is logged in as another user than the one who started the connection")]
    OtherUser,
    #[error("the account that started the connection is disabled")]
    OwnerDisabled,
    #[error(transparent)]
    Consent(#[from] ConsentError),
    /// Creating the profile failed (the connection test, the repository).
    #[error(transparent)]
    Profile(#[from] ProfilesError),
}

pub struct DriveConnect {
    pub consent: Arc<dyn DriveConsent>,
    pub profiles: Arc<StorageProfiles>,
    pub users: Arc<dyn UserRepository>,
    pub clock: Arc<dyn Clock>,
}

impl DriveConnect {
    /// Starts connecting `folder_id` as `owner`'s profile `name`: checks both (a connection
    /// that cannot succeed is refused before the user goes to Google) and returns Google's
    /// consent URL, coming back to `redirect_uri`.
    ///
    /// # Errors
    /// `Invalid` for a bad name or folder id.
    pub fn begin(
        &self,
        owner: &OwnerId,
        name: &str,
        folder_id: &str,
        redirect_uri: &str,
        return_to: Option<String>,
    ) -> Result<ConnectStart, DriveConnectError> {
        let now = self.clock.now();
        let backend = StorageBackend::google_drive(folder_id)?;
        let profile = StorageProfile::new(owner.clone(), name, backend, now)?;
        let start = self.consent.begin(redirect_uri);
        Ok(ConnectStart {
            authorize_url: start.authorize_url,
            pending: PendingConnect {
                owner: owner.clone(),
                name: profile.name,
                folder_id: folder_id.to_owned(),
                state: start.state,
                pkce_verifier: start.pkce_verifier,
                redirect_uri: redirect_uri.to_owned(),
                return_to,
                started_at: now,
            },
        })
    }

    /// Finishes a connection with the callback's `code` and `state`. `browser_user` is the
    /// user the browser's session belongs to, if it has one.
    ///
    /// # Errors
    /// `Expired`, `StateMismatch`, `OtherUser`, `OwnerDisabled` (nothing is sent to Google
    /// then); `Consent` when Google refuses the code or grants no refresh token; `Profile`
    /// when the profile cannot be created (Drive refuses the token, the folder is not there).
    pub async fn finish(
        &self,
        pending: &PendingConnect,
        code: &str,
        state: &str,
        browser_user: Option<&OwnerId>,
    ) -> Result<StorageProfile, DriveConnectError> {
        let age = self.clock.now() - pending.started_at;
        if age > CONNECT_TTL || age < -SKEW {
            return Err(DriveConnectError::Expired);
        }
        if !crate::accounts::same(state.as_bytes(), pending.state.as_bytes()) {
            return Err(DriveConnectError::StateMismatch);
        }
        if browser_user.is_some_and(|u| u != &pending.owner) {
            return Err(DriveConnectError::OtherUser);
        }
        let user = self
            .users
            .get(&pending.owner)
            .await
            .map_err(ProfilesError::from)?;
        if user.is_none_or(|u| u.disabled) {
            return Err(DriveConnectError::OwnerDisabled);
        }
        let refresh_token = self
            .consent
            .exchange(code, &pending.redirect_uri, &pending.pkce_verifier)
            .await?;
        let backend = StorageBackend::google_drive(&pending.folder_id)?;
        let profile = self
            .profiles
            .create(
                pending.owner.clone(),
                &pending.name,
                backend,
                Credentials::GoogleDrive { refresh_token },
            )
            .await?;
        Ok(profile)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use ferry_domain::{Role, User};

    use super::*;
    use crate::ports::{ProfileRepository, SecretBox, UserRepository, credentials_context};
    use crate::testing::{FakeAddressGuard, FakeConsent, Fakes, MemoryUsers, PlainBox};

    const REDIRECT: &str = "https://ferry.example/api/v1/storage-profiles/google-drive/callback";

    struct World {
        f: Fakes,
        consent: Arc<FakeConsent>,
        users: Arc<MemoryUsers>,
        connect: DriveConnect,
        alice: User,
        bob: User,
    }

    async fn world() -> World {
        let f = Fakes::new();
        let consent = Arc::new(FakeConsent::default());
        let users = Arc::new(MemoryUsers::default());
        let alice = User::new("alice", None, Role::User, f.clock.now()).unwrap();
        let bob = User::new("bob", None, Role::User, f.clock.now()).unwrap();
        users.insert(&alice, None).await.unwrap();
        users.insert(&bob, None).await.unwrap();
        let profiles = Arc::new(StorageProfiles {
            profiles: f.profiles.clone(),
            secrets: Arc::new(PlainBox),
            resolver: f.resolver.clone(),
            clock: f.clock.clone(),
            endpoints: Arc::new(FakeAddressGuard::default()),
            shared_dir: None,
        });
        let connect = DriveConnect {
            consent: consent.clone(),
            profiles,
            users: users.clone(),
            clock: f.clock.clone(),
        };
        World {
            f,
            consent,
            users,
            connect,
            alice,
            bob,
        }
    }

    impl World {
        /// Alice starts a connection and agrees: (pending, code, state).
        fn consented(&self) -> (PendingConnect, String, String) {
            let start = self
                .connect
                .begin(&self.alice.id, "My Drive", "folder-1", REDIRECT, None)
                .unwrap();
            let back = self.consent.consent(&start.authorize_url);
            let q: std::collections::HashMap<String, String> = url::Url::parse(&back)
                .unwrap()
                .query_pairs()
                .into_owned()
                .collect();
            (start.pending, q["code"].clone(), q["state"].clone())
        }

        async fn profiles(&self, owner: &OwnerId) -> usize {
            self.connect.profiles.list(owner).await.unwrap().len()
        }
    }

    #[tokio::test]
    async fn the_fake_consent_passes_the_contract() {
        let consent = Arc::new(FakeConsent::default());
        let agree = {
            let consent = consent.clone();
            move |url: String| {
                let back = consent.consent(&url);
                Box::pin(async move { back }) as futures::future::BoxFuture<'static, String>
            }
        };
        crate::testing::contracts::drive_consent_contract(consent.as_ref(), &agree, REDIRECT).await;
    }

    #[tokio::test]
    async fn a_consent_becomes_the_owners_profile_with_the_refresh_token_sealed() {
        let w = world().await;
        let (pending, code, state) = w.consented();
        let browser = w.alice.id.clone();
        let profile = w
            .connect
            .finish(&pending, &code, &state, Some(&browser))
            .await
            .unwrap();
        assert_eq!(profile.owner, w.alice.id);
        assert_eq!(profile.name, "My Drive");
        assert_eq!(
            profile.backend,
            StorageBackend::google_drive("folder-1").unwrap()
        );
        let sealed =
            w.f.profiles
                .get(&w.alice.id, profile.id)
                .await
                .unwrap()
                .unwrap();
        let plain = PlainBox
            .open(&sealed.credentials, &credentials_context(&profile))
            .unwrap();
        let plain = String::from_utf8_lossy(&plain).into_owned();
        assert!(plain.contains(&format!("refresh-for-{code}")), "{plain}");
        // The same callback again: Google refuses the used code; no second profile.
        let again = w.connect.finish(&pending, &code, &state, None).await;
        assert!(
            matches!(
                again,
                Err(DriveConnectError::Consent(ConsentError::Refused(_)))
            ),
            "{again:?}"
        );
        assert_eq!(w.profiles(&w.alice.id).await, 1);
    }

    #[tokio::test]
    async fn bad_names_and_folders_are_refused_before_the_consent() {
        let w = world().await;
        for (name, folder) in [("", "folder-1"), ("ok", "../x"), ("ok", ""), ("a\nb", "f")] {
            let r = w.connect.begin(&w.alice.id, name, folder, REDIRECT, None);
            assert!(
                matches!(r, Err(DriveConnectError::Invalid(_))),
                "{name:?} {folder:?}"
            );
        }
    }

    #[tokio::test]
    async fn refused_callbacks_send_nothing_to_google_and_create_nothing() {
        let w = world().await;
        let (pending, code, state) = w.consented();

        let r = w.connect.finish(&pending, &code, "state-other", None).await;
        assert!(matches!(r, Err(DriveConnectError::StateMismatch)), "{r:?}");
        let longer = format!("{state}0");
        let r = w.connect.finish(&pending, &code, &longer, None).await;
        assert!(matches!(r, Err(DriveConnectError::StateMismatch)), "{r:?}");

        let bob = w.bob.id.clone();
        let r = w.connect.finish(&pending, &code, &state, Some(&bob)).await;
        assert!(matches!(r, Err(DriveConnectError::OtherUser)), "{r:?}");

        w.f.clock
            .advance(CONNECT_TTL + chrono::TimeDelta::seconds(1));
        let r = w.connect.finish(&pending, &code, &state, None).await;
        assert!(matches!(r, Err(DriveConnectError::Expired)), "{r:?}");

        assert_eq!(w.consent.exchanges(), 0, "nothing reached Google");
        assert_eq!(w.profiles(&w.alice.id).await, 0);
        assert_eq!(w.profiles(&w.bob.id).await, 0);
    }

    #[tokio::test]
    async fn a_disabled_owner_cannot_finish_and_a_grant_without_refresh_token_is_refused() {
        let w = world().await;
        let (pending, code, state) = w.consented();
        let mut alice = w.alice.clone();
        alice.disabled = true;
        w.users.update(&alice).await.unwrap();
        let r = w.connect.finish(&pending, &code, &state, None).await;
        assert!(matches!(r, Err(DriveConnectError::OwnerDisabled)), "{r:?}");
        assert_eq!(w.consent.exchanges(), 0);

        alice.disabled = false;
        w.users.update(&alice).await.unwrap();
        w.consent.withhold_refresh_tokens();
        let r = w.connect.finish(&pending, &code, &state, None).await;
        assert!(
            matches!(
                r,
                Err(DriveConnectError::Consent(ConsentError::NoRefreshToken))
            ),
            "{r:?}"
        );
        assert_eq!(w.profiles(&w.alice.id).await, 0);
    }
}
