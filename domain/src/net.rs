//! Which network addresses a server may be made to contact on a user's behalf (SSRF rules),
//! and URLs users hand Ferry to fetch.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use url::Url;

/// Why an address is refused, or `None` when it is public.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local (cloud metadata lives here)")
            } else if v4.is_unspecified() || a == 0 {
                Some("unspecified")
            } else if v4.is_broadcast() {
                Some("broadcast")
            } else if v4.is_multicast() || a >= 240 {
                Some("multicast or reserved")
            } else if a == 100 && (64..128).contains(&b) {
                Some("shared address space (CGNAT)")
            } else if a == 192 && b == 0 && v4.octets()[2] == 0 {
                Some("IETF protocol assignments")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_reason(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if (first & 0xfe00) == 0xfc00 {
                Some("unique-local")
            } else if (first & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if first == 0x64 && v6.segments()[1] == 0xff9b {
                // NAT64 of an IPv4 address: judge the embedded address.
                let s = v6.segments();
                let v4 = std::net::Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                );
                forbidden_reason(IpAddr::V4(v4))
            } else {
                None
            }
        }
    }
}

/// Whether a host name is a local one (`localhost`, `*.localhost`, `*.internal`, …).
pub fn local_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost"
        || h.ends_with(".localhost")
        || h.ends_with(".internal")
        || h.ends_with(".local")
}

/// An address range in CIDR form (`10.0.0.0/8`, `::1/128`), for operator allow-lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address range like 10.0.0.0/8 or ::1/128")]
pub struct CidrError(pub String);

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CidrError(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?,
            None => max,
        };
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The operator's rule for addresses Ferry may fetch from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Ranges allowed even though they are internal.
    pub allow: Vec<Cidr>,
}

impl AddressPolicy {
    /// `Err(reason)` when `ip` may not be contacted.
    ///
    /// # Errors
    /// The reason the address is internal.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        match forbidden_reason(ip) {
            Some(_) if self.allow.iter().any(|c| c.contains(ip)) => Ok(()),
            Some(reason) => Err(format!("{ip} is {reason}")),
            None => Ok(()),
        }
    }
}

/// An HTTP(S) URL a user asks Ferry to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchUrl(Url);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchUrlError {
    #[error("not a URL: {0}")]
    Syntax(String),
    #[error("only http and https URLs can be fetched")]
    Scheme,
    #[error("the URL has no host")]
    Host,
    #[error("credentials in the URL are not accepted")]
    Credentials,
    #[error("the URL is longer than 4096 bytes")]
    TooLong,
}

impl FetchUrl {
    /// Parses and normalises (WHATWG rules: `http://2130706433/` is `http://127.0.0.1/`).
    ///
    /// # Errors
    /// [`FetchUrlError`].
    pub fn parse(text: &str) -> Result<Self, FetchUrlError> {
        let text = text.trim();
        if text.len() > 4096 {
            return Err(FetchUrlError::TooLong);
        }
        let mut url = Url::parse(text).map_err(|e| FetchUrlError::Syntax(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchUrlError::Scheme);
        }
        if url.host().is_none() {
            return Err(FetchUrlError::Host);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FetchUrlError::Credentials);
        }
        url.set_fragment(None);
        Ok(Self(url))
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }

    /// The literal address in the URL, if its host is one.
    pub fn literal_ip(&self) -> Option<IpAddr> {
        match self.0.host()? {
            url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            url::Host::Domain(_) => None,
        }
    }

    /// A file name for what the URL points at: the last path segment, else the host.
    pub fn file_name(&self) -> String {
        let last = self
            .0
            .path_segments()
            .and_then(|mut s| s.next_back().map(str::to_owned))
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode(&s));
        let name = last.unwrap_or_else(|| self.0.host_str().unwrap_or("download").to_owned());
        let cleaned: String = name
            .chars()
            .map(|c| {
                if c == '/' || c == '\\' || c.is_control() || c == ':' {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        let cleaned = cleaned.trim_matches(|c| c == '.' || c == ' ').to_owned();
        if cleaned.is_empty() || crate::SafePath::from_components(&[cleaned.as_str()]).is_err() {
            "download".to_owned()
        } else {
            cleaned.chars().take(200).collect()
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (
                (bytes[i + 1] as char).to_digit(16),
                bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl fmt::Display for FetchUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "ff02::1",
            "::",
        ] {
            assert!(forbidden_reason(ip(s)).is_some(), "{s}");
        }
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "2001:4860:4860::8888",
            "93.184.216.34",
        ] {
            assert!(forbidden_reason(ip(s)).is_none(), "{s}");
        }
    }

    #[test]
    fn allow_lists_open_ranges() {
        let p = AddressPolicy {
            allow: vec!["127.0.0.1/32".parse().unwrap()],
        };
        assert!(p.check(ip("127.0.0.1")).is_ok());
        assert!(p.check(ip("::ffff:127.0.0.1")).is_ok());
        assert!(p.check(ip("127.0.0.2")).is_err());
        assert!(p.check(ip("8.8.8.8")).is_ok());
        let wide: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(wide.contains(ip("10.200.1.1")) && !wide.contains(ip("11.0.0.1")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope".parse::<Cidr>().is_err());
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
    }

    #[test]
    fn urls_are_normalised_and_checked() {
        assert_eq!(
            FetchUrl::parse("http://2130706433:8080/x")
                .unwrap()
                .literal_ip(),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(
            FetchUrl::parse("http://0177.0.0.1/").unwrap().literal_ip(),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(
            FetchUrl::parse("http://0x7f.1/").unwrap().literal_ip(),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(
            FetchUrl::parse("http://[::1]/").unwrap().literal_ip(),
            Some(ip("::1"))
        );
        assert_eq!(FetchUrl::parse("ftp://x/y"), Err(FetchUrlError::Scheme));
        assert_eq!(
            FetchUrl::parse("file:///etc/passwd"),
            Err(FetchUrlError::Scheme)
        );
        assert_eq!(
            FetchUrl::parse("http://u:p@x/"),
            Err(FetchUrlError::Credentials)
        );
        assert!(matches!(
            FetchUrl::parse("not a url"),
            Err(FetchUrlError::Syntax(_))
        ));
        assert_eq!(
            FetchUrl::parse("https://x/a#frag").unwrap().to_string(),
            "https://x/a"
        );
        assert_eq!(
            FetchUrl::parse("https://x/dir/My%20File.iso?x=1")
                .unwrap()
                .file_name(),
            "My File.iso"
        );
        assert_eq!(
            FetchUrl::parse("https://example.com/").unwrap().file_name(),
            "example.com"
        );
        assert_eq!(
            FetchUrl::parse("https://x/%2e%2e").unwrap().file_name(),
            "x",
            "dot segments are normalised away"
        );
        assert_eq!(
            FetchUrl::parse("https://x/a/..%2F..%2Fetc")
                .unwrap()
                .file_name(),
            ".._.._etc".trim_matches('.')
        );
        assert_eq!(
            FetchUrl::parse("https://x/CON").unwrap().file_name(),
            "download"
        );
        assert_eq!(
            FetchUrl::parse("https://x/a%2Fb").unwrap().file_name(),
            "a_b"
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_names_are_safe(s in "\\PC{0,200}") {
            if let Ok(u) = FetchUrl::parse(&format!("http://x/{s}")) {
                let name = u.file_name();
                prop_assert!(crate::SafePath::from_components(&[name.as_str()]).is_ok(), "{name:?}");
            }
            let _ = FetchUrl::parse(&s);
        }
    }
}
