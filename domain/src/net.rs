//! Which network addresses a server may be made to contact on a user's behalf (SSRF rules),
//! and URLs users hand Ferry to fetch.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use url::Url;

/// IPv4 ranges no user may make the server contact: (first, last, why).
const INTERNAL_V4: &[(u32, u32, &str)] = &[
    (0x0000_0000, 0x00ff_ffff, "unspecified"),
    (0x0a00_0000, 0x0aff_ffff, "private"),
    (0x6440_0000, 0x647f_ffff, "shared address space (CGNAT)"),
    (0x7f00_0000, 0x7fff_ffff, "loopback"),
    (
        0xa9fe_0000,
        0xa9fe_ffff,
        "link-local (cloud metadata lives here)",
    ),
    (0xac10_0000, 0xac1f_ffff, "private"),
    (0xc000_0000, 0xc000_00ff, "IETF protocol assignments"),
    (0xc0a8_0000, 0xc0a8_ffff, "private"),
    (0xe000_0000, 0xefff_ffff, "multicast or reserved"),
    (0xffff_ffff, 0xffff_ffff, "broadcast"),
    (0xf000_0000, 0xffff_fffe, "multicast or reserved"),
];

/// IPv6 ranges refused outright: (first, last, why). IPv4-mapped (`::ffff:0:0/96`) and
/// NAT64 (`64:ff9b::/96`) addresses are judged by the IPv4 address they carry.
const INTERNAL_V6: &[(u128, u128, &str)] = &[
    (0, 0, "unspecified"),
    (1, 1, "loopback"),
    (
        0x0064_ff9b_0001_0000_0000_0000_0000_0000,
        0x0064_ff9b_0001_ffff_ffff_ffff_ffff_ffff,
        "NAT64 for local use",
    ),
    (
        0xfc00_0000_0000_0000_0000_0000_0000_0000,
        0xfdff_ffff_ffff_ffff_ffff_ffff_ffff_ffff,
        "unique-local",
    ),
    (
        0xfe80_0000_0000_0000_0000_0000_0000_0000,
        0xfebf_ffff_ffff_ffff_ffff_ffff_ffff_ffff,
        "link-local",
    ),
    (
        0xff00_0000_0000_0000_0000_0000_0000_0000,
        u128::MAX,
        "multicast",
    ),
];

const MAPPED_V4: u128 = 0xffff_0000_0000;
const NAT64: u128 = 0x0064_ff9b_0000_0000_0000_0000_0000_0000;

/// Why an address is refused, or `None` when it is public.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let a = u32::from(v4);
            INTERNAL_V4
                .iter()
                .find(|(first, last, _)| (*first..=*last).contains(&a))
                .map(|(_, _, why)| *why)
        }
        IpAddr::V6(v6) => {
            let a = u128::from(v6);
            // IPv4-mapped, and NAT64 of an IPv4 address: judge the embedded address.
            if a >> 32 == MAPPED_V4 >> 32 || a >> 32 == NAT64 >> 32 {
                return forbidden_reason(IpAddr::V4(std::net::Ipv4Addr::from(a as u32)));
            }
            INTERNAL_V6
                .iter()
                .find(|(first, last, _)| (*first..=*last).contains(&a))
                .map(|(_, _, why)| *why)
        }
    }
}

/// A URL as it may appear in a log: without credentials, query or fragment (signed links,
/// tokens and passkeys live there). Text that is not a URL is cut at its first `?` or `#`.
pub fn loggable_url(text: &str) -> String {
    match Url::parse(text) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => text.split(['?', '#']).next().unwrap_or_default().to_owned(),
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
    /// The first and last address of the range, as numbers (IPv4 in the low 32 bits).
    fn bounds(&self) -> (u128, u128) {
        let (bits, value) = match self.network {
            IpAddr::V4(v4) => (32u32, u128::from(u32::from(v4))),
            IpAddr::V6(v6) => (128u32, u128::from(v6)),
        };
        let host_bits = bits - u32::from(self.prefix);
        let span = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let first = value & !span;
        (first, first | span)
    }

    /// The first and last address of the range.
    pub fn first_last(&self) -> (IpAddr, IpAddr) {
        let (first, last) = self.bounds();
        match self.network {
            // IPv4 bounds are in the low 32 bits.
            IpAddr::V4(_) => (
                IpAddr::V4(std::net::Ipv4Addr::from(first as u32)),
                IpAddr::V4(std::net::Ipv4Addr::from(last as u32)),
            ),
            IpAddr::V6(_) => (
                IpAddr::V6(std::net::Ipv6Addr::from(first)),
                IpAddr::V6(std::net::Ipv6Addr::from(last)),
            ),
        }
    }

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

/// Written and read as its text (`10.0.0.0/8`), as operators write it in a configuration.
impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The operator's rule for addresses Ferry may fetch from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Ranges allowed even though they are internal.
    pub allow: Vec<Cidr>,
}

/// Inclusive ranges minus `holes` (all in one numbering), sorted, non-overlapping.
fn subtract(ranges: &[(u128, u128)], holes: &[(u128, u128)]) -> Vec<(u128, u128)> {
    let mut out: Vec<(u128, u128)> = ranges.to_vec();
    for &(h0, h1) in holes {
        let mut next = Vec::with_capacity(out.len() + 1);
        for (r0, r1) in out {
            if h1 < r0 || h0 > r1 {
                next.push((r0, r1));
                continue;
            }
            if h0 > r0 {
                next.push((r0, h0 - 1));
            }
            if h1 < r1 {
                next.push((h1 + 1, r1));
            }
        }
        out = next;
    }
    out.sort_unstable();
    out
}

impl AddressPolicy {
    /// A policy that refuses nothing (an operator who allows every internal address).
    pub fn allow_all() -> Self {
        Self {
            allow: vec![
                Cidr {
                    network: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                    prefix: 0,
                },
                Cidr {
                    network: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                    prefix: 0,
                },
            ],
        }
    }

    /// Every address [`AddressPolicy::check`] refuses, as inclusive ranges: for engines that
    /// take a block list rather than a rule (IPv4-mapped and NAT64 forms included).
    pub fn refused_ranges(&self) -> Vec<(IpAddr, IpAddr)> {
        let v4: Vec<(u128, u128)> = INTERNAL_V4
            .iter()
            .map(|(a, b, _)| (u128::from(*a), u128::from(*b)))
            .collect();
        let (allow_v4, allow_v6): (Vec<&Cidr>, Vec<&Cidr>) =
            self.allow.iter().partition(|c| c.network.is_ipv4());
        let allow_v4: Vec<(u128, u128)> = allow_v4.iter().map(|c| c.bounds()).collect();
        let allow_v6: Vec<(u128, u128)> = allow_v6.iter().map(|c| c.bounds()).collect();
        let refused_v4 = subtract(&v4, &allow_v4);
        // An allowed IPv4 range is allowed in its IPv4-mapped form too; NAT64 forms are
        // judged as IPv6 (only an IPv6 range opens them).
        let mut v6: Vec<(u128, u128)> = INTERNAL_V6.iter().map(|(a, b, _)| (*a, *b)).collect();
        v6.extend(
            refused_v4
                .iter()
                .map(|(a, b)| (MAPPED_V4 | a, MAPPED_V4 | b)),
        );
        v6.extend(v4.iter().map(|(a, b)| (NAT64 | a, NAT64 | b)));
        let refused_v6 = subtract(&v6, &allow_v6);
        let as_v4 = |n: u128| IpAddr::V4(std::net::Ipv4Addr::from(n as u32));
        let as_v6 = |n: u128| IpAddr::V6(std::net::Ipv6Addr::from(n));
        refused_v4
            .into_iter()
            .map(|(a, b)| (as_v4(a), as_v4(b)))
            .chain(refused_v6.into_iter().map(|(a, b)| (as_v6(a), as_v6(b))))
            .collect()
    }

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

    /// The URL without its query, for logs (see [`loggable_url`]).
    pub fn for_log(&self) -> String {
        loggable_url(self.0.as_str())
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
            "64:ff9b:1::8.8.8.8",
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

    fn in_ranges(ranges: &[(IpAddr, IpAddr)], ip: IpAddr) -> bool {
        ranges.iter().any(|(a, b)| match (a, b, ip) {
            (IpAddr::V4(a), IpAddr::V4(b), IpAddr::V4(x)) => (*a..=*b).contains(&x),
            (IpAddr::V6(a), IpAddr::V6(b), IpAddr::V6(x)) => (*a..=*b).contains(&x),
            _ => false,
        })
    }

    #[test]
    fn ranges_read_and_write_as_their_text() {
        let ranges: Vec<Cidr> = serde_json::from_str(r#"["10.0.0.0/8", "::1"]"#).unwrap();
        assert_eq!(
            serde_json::to_string(&ranges).unwrap(),
            r#"["10.0.0.0/8","::1/128"]"#
        );
        let err = serde_json::from_str::<Vec<Cidr>>(r#"["10.0.0/8"]"#).unwrap_err();
        assert!(err.to_string().contains("not an address range"), "{err}");
    }

    #[test]
    fn logged_urls_carry_no_query() {
        assert_eq!(
            loggable_url("https://u:p@x.example/a/b?X-Amz-Signature=abc&t=1#f"),
            "https://x.example/a/b"
        );
        assert_eq!(loggable_url("not a url?token=1"), "not a url");
        assert_eq!(
            FetchUrl::parse("http://x/f.iso?sig=s").unwrap().for_log(),
            "http://x/f.iso"
        );
    }

    #[test]
    fn refused_ranges_follow_the_allow_list() {
        let closed = AddressPolicy::default().refused_ranges();
        for s in [
            "127.0.0.1",
            "::ffff:127.0.0.1",
            "64:ff9b::7f00:1",
            "169.254.169.254",
            "fd00::1",
        ] {
            assert!(in_ranges(&closed, ip(s)), "{s}");
        }
        let open = AddressPolicy {
            allow: vec!["127.0.0.1/32".parse().unwrap()],
        }
        .refused_ranges();
        assert!(!in_ranges(&open, ip("127.0.0.1")));
        assert!(!in_ranges(&open, ip("::ffff:127.0.0.1")));
        assert!(in_ranges(&open, ip("127.0.0.2")));
        assert!(in_ranges(&open, ip("127.0.0.0")));
        assert!(AddressPolicy::allow_all().refused_ranges().is_empty());
    }

    /// Addresses near the edges of the internal ranges, and random ones.
    fn interesting_ip() -> impl Strategy<Value = IpAddr> {
        let edges: Vec<u32> = INTERNAL_V4
            .iter()
            .flat_map(|(a, b, _)| [*a, *b, a.wrapping_sub(1), b.wrapping_add(1)])
            .collect();
        let v4 = prop_oneof![
            any::<u32>(),
            (proptest::sample::select(edges), -3i64..3)
                .prop_map(|(e, d)| (i64::from(e) + d).clamp(0, i64::from(u32::MAX)) as u32),
        ]
        .prop_map(|n| IpAddr::V4(std::net::Ipv4Addr::from(n)));
        let v6 = prop_oneof![
            any::<u128>(),
            any::<u32>().prop_map(|n| MAPPED_V4 | u128::from(n)),
            any::<u32>().prop_map(|n| NAT64 | u128::from(n)),
            (0u128..4),
            any::<u64>().prop_map(|n| 0xfe80_0000_0000_0000_0000_0000_0000_0000 | u128::from(n)),
        ]
        .prop_map(|n| IpAddr::V6(std::net::Ipv6Addr::from(n)));
        prop_oneof![v4, v6]
    }

    proptest! {
        #[test]
        fn the_ranges_refuse_exactly_what_check_refuses(
            x in interesting_ip(),
            allow in proptest::collection::vec(
                prop_oneof![
                    Just("127.0.0.0/8"), Just("127.0.0.1/32"), Just("10.1.0.0/16"),
                    Just("::1/128"), Just("fd00::/8"), Just("0.0.0.0/0"), Just("64:ff9b::/96"),
                ],
                0..3,
            ),
        ) {
            let policy = AddressPolicy {
                allow: allow.iter().map(|c| c.parse().unwrap()).collect(),
            };
            prop_assert_eq!(in_ranges(&policy.refused_ranges(), x), policy.check(x).is_err(), "{}", x);
        }
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
