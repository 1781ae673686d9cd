//! `NetGuard`: the one resolver of every connection Ferry makes because a user named a host
//! (URL jobs, storage endpoints, trackers), refusing internal addresses after resolution.
//!
//! A name is resolved (or taken from the operator's fixed `hosts` mappings) and every address
//! it resolves to must pass the [`AddressPolicy`]; an HTTP client that connects only to the
//! addresses this resolver returned cannot be steered to an internal one by DNS, whatever
//! the name. Literal addresses in URLs never reach a resolver (HTTP connectors skip it), so
//! clients check them with [`NetGuard::check_ip`] before sending anything.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use ferry_application::ports::{AddressError, AddressGuard};
use ferry_domain::AddressPolicy;

/// How long a name may take to resolve before it counts as unresolved.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// An address refused by the policy. Adapters look for it in an error's source chain
/// ([`refusal`]) to tell "not allowed" from "unreachable".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Why a name gave no usable address.
#[derive(Debug)]
pub enum GuardError {
    Refused(Refused),
    /// No answer (unknown name, DNS down, too slow).
    Lookup(std::io::Error),
}

impl std::fmt::Display for GuardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(r) => r.fmt(f),
            Self::Lookup(e) => write!(f, "cannot resolve the name: {e}"),
        }
    }
}

impl std::error::Error for GuardError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Refused(r) => Some(r),
            Self::Lookup(e) => Some(e),
        }
    }
}

/// The refusal somewhere in `error`'s source chain, if the guard refused the connection.
pub fn refusal<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<Refused>() {
            return Some(r);
        }
        next = e.source();
    }
    None
}

/// The policy and the fixed name mappings a family of connections resolves with.
#[derive(Debug, Clone, Default)]
pub struct NetGuard {
    policy: AddressPolicy,
    hosts: HashMap<String, IpAddr>,
}

/// A name as the hosts table and the policy see it: lower case, no trailing dot.
fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl NetGuard {
    /// `hosts`: fixed name → address mappings (like /etc/hosts), checked like resolved ones.
    pub fn new(policy: AddressPolicy, hosts: HashMap<String, IpAddr>) -> Self {
        let hosts = hosts.into_iter().map(|(k, v)| (normalise(&k), v)).collect();
        Self { policy, hosts }
    }

    /// A guard that allows every address (for tests and trusted, operator-set hosts).
    pub fn allow_all() -> Self {
        Self::new(AddressPolicy::allow_all(), HashMap::new())
    }

    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// Whether `name` has a fixed mapping.
    pub fn is_mapped(&self, name: &str) -> bool {
        self.hosts.contains_key(&normalise(name))
    }

    /// # Errors
    /// [`Refused`] when the policy refuses `ip`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        self.policy.check(ip).map_err(Refused)
    }

    /// The addresses of `name`, unchecked.
    ///
    /// # Errors
    /// When the name does not resolve within the lookup timeout.
    pub async fn lookup(&self, name: &str) -> std::io::Result<Vec<IpAddr>> {
        if let Some(ip) = self.hosts.get(&normalise(name)) {
            return Ok(vec![*ip]);
        }
        let found = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name, 0)))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "DNS lookup timed out")
            })??;
        let ips: Vec<IpAddr> = found.map(|a| a.ip()).collect();
        if ips.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the name has no address",
            ));
        }
        Ok(ips)
    }

    /// The addresses of `name`, every one allowed by the policy.
    ///
    /// # Errors
    /// `Refused` when any address is internal (one bad answer is enough: a client may pick
    /// any of them); `Lookup` when the name does not resolve.
    pub async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, GuardError> {
        let ips = self.lookup(name).await.map_err(GuardError::Lookup)?;
        for ip in &ips {
            self.check_ip(*ip).map_err(|why| {
                GuardError::Refused(Refused(format!(
                    "{name} resolves to an internal address: {why}"
                )))
            })?;
        }
        Ok(ips)
    }

    /// Checks a host as written in a URL: a literal address (`10.0.0.1`, `[::1]`) against
    /// the policy, a name by resolving it.
    ///
    /// # Errors
    /// As [`NetGuard::resolve`].
    pub async fn check_host(&self, host: &str) -> Result<(), GuardError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.check_ip(ip).map_err(GuardError::Refused);
        }
        self.resolve(host).await.map(|_| ())
    }
}

#[async_trait]
impl AddressGuard for NetGuard {
    async fn check_host(&self, host: &str) -> Result<(), AddressError> {
        match NetGuard::check_host(self, host).await {
            Ok(()) => Ok(()),
            Err(GuardError::Refused(r)) => Err(AddressError::NotAllowed(r.0)),
            Err(GuardError::Lookup(e)) => Err(AddressError::Unresolved(format!(
                "cannot resolve {host}: {e}"
            ))),
        }
    }
}

#[cfg(feature = "reqwest")]
mod http {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use reqwest::dns::{Addrs, Name, Resolve, Resolving};

    use super::{GuardError, NetGuard};

    /// The guard as reqwest's resolver: a refused name fails the request with [`super::Refused`]
    /// in its source chain.
    #[derive(Debug, Clone)]
    pub struct ReqwestResolver(pub Arc<NetGuard>);

    impl Resolve for ReqwestResolver {
        fn resolve(&self, name: Name) -> Resolving {
            let guard = self.0.clone();
            let name = name.as_str().to_owned();
            Box::pin(async move {
                let ips = guard.resolve(&name).await.map_err(|e| match e {
                    GuardError::Refused(r) => {
                        Box::new(r) as Box<dyn std::error::Error + Send + Sync>
                    }
                    GuardError::Lookup(e) => Box::new(e),
                })?;
                let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
                Ok(addrs)
            })
        }
    }
}

#[cfg(feature = "reqwest")]
pub use http::ReqwestResolver;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn guard(allow: &[&str], hosts: &[(&str, &str)]) -> NetGuard {
        NetGuard::new(
            AddressPolicy {
                allow: allow.iter().map(|c| c.parse().unwrap()).collect(),
            },
            hosts
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.parse().unwrap()))
                .collect(),
        )
    }

    #[tokio::test]
    async fn names_are_judged_by_what_they_resolve_to() {
        let g = guard(
            &[],
            &[("Files.Example", "10.0.0.7"), ("pub.example", "8.8.8.8")],
        );
        assert!(matches!(
            g.check_host("files.example.").await,
            Err(GuardError::Refused(_))
        ));
        assert!(g.check_host("PUB.example").await.is_ok());
        assert!(matches!(
            g.check_host("localhost").await,
            Err(GuardError::Refused(_))
        ));
        assert!(matches!(
            g.check_host("[::1]").await,
            Err(GuardError::Refused(_))
        ));
        assert!(matches!(
            g.check_host("169.254.169.254").await,
            Err(GuardError::Refused(_))
        ));
        assert!(g.check_host("8.8.4.4").await.is_ok());
        let open = guard(&["10.0.0.0/8"], &[("files.example", "10.0.0.7")]);
        assert!(open.check_host("files.example").await.is_ok());
        assert!(NetGuard::allow_all().check_host("127.0.0.1").await.is_ok());
    }

    #[tokio::test]
    async fn passes_the_contract() {
        let g = guard(
            &[],
            &[
                ("internal.example", "192.168.1.5"),
                ("public.example", "93.184.216.34"),
            ],
        );
        ferry_application::testing::contracts::address_guard_contract(&g).await;
    }
}
