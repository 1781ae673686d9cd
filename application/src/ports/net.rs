//! `AddressGuard`: whether the server may contact a host a user named (a tracker, a peer),
//! decided after DNS resolution by the same rule as every other outgoing connection.

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    /// The host is, or resolves to, an address the operator's policy refuses.
    #[error("{0}")]
    NotAllowed(String),
    /// The name cannot be resolved now (no answer, or too slow).
    #[error("{0}")]
    Unresolved(String),
}

#[async_trait]
pub trait AddressGuard: Send + Sync + 'static {
    /// Checks `host` as it appears in a URL (`tracker.example`, `10.0.0.1`, `[::1]`): a
    /// literal address against the policy, a name by resolving it and checking every
    /// address it resolves to.
    ///
    /// # Errors
    /// `NotAllowed` with the reason (for the log); `Unresolved` when a name has no answer.
    async fn check_host(&self, host: &str) -> Result<(), AddressError>;
}
