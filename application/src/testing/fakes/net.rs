//! `AddressGuard` with a name table of its own.

use super::*;

/// A guard with a fixed name table: names it does not know do not resolve.
#[derive(Default)]
pub struct FakeAddressGuard {
    pub policy: ferry_domain::AddressPolicy,
    names: Mutex<HashMap<String, std::net::IpAddr>>,
}

impl FakeAddressGuard {
    pub fn new(policy: ferry_domain::AddressPolicy) -> Self {
        Self {
            policy,
            names: Mutex::default(),
        }
    }

    /// `name` resolves to `ip`.
    pub fn map(&self, name: &str, ip: &str) {
        let ip = ip.parse().unwrap();
        lock(&self.names).insert(name.to_ascii_lowercase(), ip);
    }
}

#[async_trait]
impl AddressGuard for FakeAddressGuard {
    async fn check_host(&self, host: &str) -> Result<(), AddressError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let ip = match bare.parse::<std::net::IpAddr>() {
            Ok(ip) => ip,
            Err(_) => *lock(&self.names)
                .get(&host.trim_end_matches('.').to_ascii_lowercase())
                .ok_or_else(|| AddressError::Unresolved(format!("{host} does not resolve")))?,
        };
        self.policy.check(ip).map_err(AddressError::NotAllowed)
    }
}
