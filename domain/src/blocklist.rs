//! The operator's block lists: torrents and URLs refused at submission, and peer addresses
//! the engine never connects to.
//!
//! Submission list (`blocklist.info_hashes`, `blocklist.urls`, `blocklist.file`): one entry
//! per line — an info-hash (40 hex digits or 32 base32 characters), or a URL pattern where
//! `*` stands for any run of characters (`*://tracker.bad.example/*`, `https://*.exe`),
//! matched without regard to case against the whole URL as Ferry normalises it. `#` starts
//! a comment line.
//!
//! Peer list (`blocklist.peers`): the P2P (`.p2p`, PeerGuardian: `name:first-last`) and
//! eMule (`.dat`, `ipfilter.dat`: `first - last , level , name`, octets possibly
//! zero-padded; a level of 128 or more means "allowed" and the line is skipped) formats,
//! and plain addresses or CIDR ranges, one per line.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use crate::{Cidr, InfoHash};

/// Longest pattern accepted (matching is linear in the pattern times the URL).
pub const MAX_PATTERN_CHARS: usize = 2048;

/// Torrents and URLs refused at submission.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmissionBlocklist {
    hashes: HashSet<InfoHash>,
    patterns: Vec<UrlPattern>,
}

/// A line of a list that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct BlocklistError {
    pub line: usize,
    pub reason: String,
}

impl SubmissionBlocklist {
    /// Parses `entries`, one per item (lines of a file, or config values); blank lines and
    /// lines starting with `#` are skipped.
    ///
    /// # Errors
    /// The first entry that is neither an info-hash nor a URL pattern.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, BlocklistError> {
        let mut list = Self::default();
        for (i, raw) in entries.into_iter().enumerate() {
            let entry = raw.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let error = |reason: String| BlocklistError {
                line: i + 1,
                reason,
            };
            if entry.contains("://") || entry.contains('*') {
                list.patterns.push(UrlPattern::parse(entry).map_err(error)?);
            } else {
                let hash = InfoHash::parse(entry).map_err(|e| {
                    error(format!(
                        "{e} (an entry is an info-hash, or a URL pattern with :// or *)"
                    ))
                })?;
                list.hashes.insert(hash);
            }
        }
        Ok(list)
    }

    /// `self` and `other` together.
    #[must_use]
    pub fn merged(mut self, other: Self) -> Self {
        self.hashes.extend(other.hashes);
        self.patterns.extend(other.patterns);
        self
    }

    pub fn len(&self) -> usize {
        self.hashes.len() + self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn blocks_hash(&self, hash: &InfoHash) -> bool {
        self.hashes.contains(hash)
    }

    /// The pattern that refuses `url`, if any: matched against the URL as given and as
    /// canonical text (percent-escapes of printable ASCII decoded, the host's trailing dot
    /// dropped), so `setup%2Eexe` is `setup.exe`.
    pub fn blocking_pattern(&self, url: &str) -> Option<&str> {
        let canonical = canonical(url);
        self.patterns
            .iter()
            .find(|p| p.matches(url) || p.matches(&canonical))
            .map(|p| p.text.as_str())
    }
}

/// `url` with percent-escapes of printable ASCII decoded (repeatedly, so `%252E` too) and
/// the dot that may end its host removed.
fn canonical(url: &str) -> String {
    let mut text = url.to_owned();
    for _ in 0..3 {
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        while i < bytes.len() {
            let decoded = (bytes[i] == b'%' && i + 2 < bytes.len())
                .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
                .flatten()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .filter(|b| (0x21..0x7f).contains(b));
            match decoded {
                Some(b) => {
                    out.push(char::from(b));
                    i += 3;
                }
                None => {
                    let c = text[i..].chars().next().unwrap_or_default();
                    out.push(c);
                    i += c.len_utf8().max(1);
                }
            }
        }
        if out == text {
            break;
        }
        text = out;
    }
    // `scheme://host./path` → `scheme://host/path`.
    if let Some((scheme, rest)) = text.split_once("://") {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let host_end = authority
            .rfind(':')
            .filter(|&c| !authority[c..].contains(']'))
            .unwrap_or(authority.len());
        let (host, port) = authority.split_at(host_end);
        if let Some(host) = host.strip_suffix('.') {
            return format!("{scheme}://{host}{port}{tail}");
        }
    }
    text
}

/// A URL pattern: literal text and `*` wildcards, compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UrlPattern {
    text: String,
    /// The literal pieces between the `*`s, lower-cased.
    pieces: Vec<String>,
}

impl UrlPattern {
    fn parse(text: &str) -> Result<Self, String> {
        if text.chars().count() > MAX_PATTERN_CHARS {
            return Err(format!(
                "a URL pattern is at most {MAX_PATTERN_CHARS} characters"
            ));
        }
        if text.chars().any(char::is_control) || text.contains(' ') {
            return Err("a URL pattern has no spaces or control characters".to_owned());
        }
        if text.chars().all(|c| c == '*') {
            return Err("a pattern of only * would refuse every URL".to_owned());
        }
        Ok(Self {
            text: text.to_owned(),
            pieces: text.to_lowercase().split('*').map(str::to_owned).collect(),
        })
    }

    /// Glob matching with `*` only: the first piece is a prefix, the last a suffix, the
    /// others found in order in between (greedy-leftmost is exact for `*`-only globs).
    fn matches(&self, url: &str) -> bool {
        let url = url.to_lowercase();
        let (first, rest) = match self.pieces.split_first() {
            Some(split) => split,
            None => return false,
        };
        let Some(mut tail) = url.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            // No `*`: the whole URL.
            return tail.is_empty();
        };
        for piece in middle {
            match tail.find(piece.as_str()) {
                Some(at) => tail = &tail[at + piece.len()..],
                None => return false,
            }
        }
        tail.ends_with(last.as_str())
    }
}

/// Inclusive address ranges of a peer block list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerBlocklist {
    pub ranges: Vec<(IpAddr, IpAddr)>,
}

impl PeerBlocklist {
    /// Parses a list in the P2P or eMule format, or of addresses and CIDR ranges.
    ///
    /// # Errors
    /// The first line that is none of these, or a range whose ends are of different
    /// families or in the wrong order.
    pub fn parse(text: &str) -> Result<Self, BlocklistError> {
        let mut ranges = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with("//") {
                continue;
            }
            let error = |reason: &str| BlocklistError {
                line: i + 1,
                reason: format!("{reason}: {:?}", truncated(line)),
            };
            if let Some(range) = emule_line(line) {
                // `None`: a level that allows.
                if let Some(r) = range {
                    ranges.push(checked(r).ok_or_else(|| error("a reversed range"))?);
                }
            } else if let Some(r) = p2p_line(line) {
                ranges.push(checked(r).ok_or_else(|| error("a reversed range"))?);
            } else if let Ok(cidr) = line.parse::<Cidr>() {
                ranges.push(cidr.first_last());
            } else if let Ok(ip) = line.parse::<IpAddr>() {
                ranges.push((ip, ip));
            } else {
                return Err(error(
                    "not a P2P (name:first-last), eMule (first - last , level , name), address or CIDR line",
                ));
            }
        }
        Ok(Self { ranges })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|(a, b)| *a <= ip && ip <= *b)
    }
}

fn truncated(line: &str) -> String {
    line.chars().take(80).collect()
}

fn checked((a, b): (IpAddr, IpAddr)) -> Option<(IpAddr, IpAddr)> {
    (a.is_ipv4() == b.is_ipv4() && a <= b).then_some((a, b))
}

/// An address with zero-padded IPv4 octets allowed (`001.002.004.000`).
fn address(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    let octets: Vec<u8> = text
        .split('.')
        .map(|o| {
            (!o.is_empty() && o.len() <= 3 && o.bytes().all(|b| b.is_ascii_digit()))
                .then(|| o.parse::<u8>().ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    let [a, b, c, d] = octets[..] else {
        return None;
    };
    Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
}

/// `first - last , level , name`: `Some(None)` for a level that allows.
#[allow(clippy::option_option)]
fn emule_line(line: &str) -> Option<Option<(IpAddr, IpAddr)>> {
    let mut fields = line.splitn(3, ',');
    let range = fields.next()?;
    let level = fields.next()?;
    let (first, last) = range.split_once('-')?;
    let range = (address(first)?, address(last)?);
    let level: u32 = level.trim().parse().ok()?;
    Some((level < 128).then_some(range))
}

/// `name:first-last` (the name may contain `:`; the range is after the last one for
/// IPv4, and IPv6 ranges are not in this format).
fn p2p_line(line: &str) -> Option<(IpAddr, IpAddr)> {
    let (_, range) = line.rsplit_once(':')?;
    let (first, last) = range.split_once('-')?;
    Some((address(first)?, address(last)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hashes_and_patterns_parse_and_refuse() {
        let hash = "0123456789abcdef0123456789abcdef01234567";
        let list = SubmissionBlocklist::parse([
            "# refused",
            "",
            hash,
            "*://tracker.bad.example/*",
            "https://*.EXE",
        ])
        .unwrap();
        assert_eq!(list.len(), 3);
        assert!(list.blocks_hash(&InfoHash::parse(&hash.to_uppercase()).unwrap()));
        assert!(!list.blocks_hash(&InfoHash::parse(&"0".repeat(40)).unwrap()));
        assert_eq!(
            list.blocking_pattern("http://tracker.bad.example/announce"),
            Some("*://tracker.bad.example/*")
        );
        assert_eq!(
            list.blocking_pattern("https://cdn.example/setup.exe"),
            Some("https://*.EXE")
        );
        assert_eq!(
            list.blocking_pattern("https://cdn.example/setup.exe.txt"),
            None
        );
        // Respelled: escapes, a trailing dot on the host.
        for respelled in [
            "https://cdn.example/setup%2Eexe",
            "https://cdn.example/setup.%65xe",
            "https://cdn.example/setup%252Eexe",
            "http://tracker.bad.example./announce",
        ] {
            assert!(list.blocking_pattern(respelled).is_some(), "{respelled}");
        }
        assert_eq!(list.blocking_pattern("http://tracker.good.example/a"), None);

        let err = SubmissionBlocklist::parse(["# c", "not-a-hash"]).unwrap_err();
        assert_eq!(err.line, 2);
        for bad in ["*", "**", "http://a b/*", "http://a/\u{7}*"] {
            assert!(SubmissionBlocklist::parse([bad]).is_err(), "{bad:?}");
        }
        let long = format!("http://{}*", "a".repeat(MAX_PATTERN_CHARS));
        assert!(SubmissionBlocklist::parse([long.as_str()]).is_err());
    }

    #[test]
    fn patterns_without_a_star_match_the_whole_url() {
        let list = SubmissionBlocklist::parse(["https://x.example/a"]).unwrap();
        assert!(list.blocking_pattern("https://x.example/a").is_some());
        assert!(list.blocking_pattern("https://x.example/ab").is_none());
        let list = SubmissionBlocklist::parse(["*a*a*"]).unwrap();
        assert!(list.blocking_pattern("xaxa").is_some());
        assert!(list.blocking_pattern("xa").is_none());
    }

    #[test]
    fn peer_lists_in_p2p_emule_and_cidr_form() {
        let list = PeerBlocklist::parse(
            "# comment\n\
             Some Org:1.2.4.0-1.2.4.255\n\
             name: with colons:5.6.7.8-5.6.7.9\n\
             001.002.008.000 - 001.002.008.255 , 000 , China Internet\n\
             010.000.000.000 - 010.255.255.255 , 200 , allowed by level\n\
             192.168.7.0/24\n\
             2001:db8::/32\n\
             9.9.9.9\n",
        )
        .unwrap();
        for blocked in [
            "1.2.4.0",
            "1.2.4.255",
            "5.6.7.9",
            "1.2.8.77",
            "192.168.7.200",
            "2001:db8::1",
            "9.9.9.9",
        ] {
            assert!(list.contains(ip(blocked)), "{blocked}");
        }
        for open in ["1.2.5.0", "5.6.7.10", "10.1.1.1", "192.168.8.1", "9.9.9.8"] {
            assert!(!list.contains(ip(open)), "{open}");
        }
        let err = PeerBlocklist::parse("1.2.3.4\nnonsense\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(
            PeerBlocklist::parse("x:1.2.3.9-1.2.3.1").is_err(),
            "reversed"
        );
        assert!(
            PeerBlocklist::parse("x:1.2.3.4-::1").is_err(),
            "mixed families"
        );
        assert!(PeerBlocklist::parse("x:1.2.3.256-1.2.3.4").is_err());
    }

    proptest! {
        #[test]
        fn pattern_matching_agrees_with_a_regex(
            pieces in proptest::collection::vec("[ab/:.]{0,3}", 1..5),
            url in "[ab/:.]{0,12}",
        ) {
            let pattern = pieces.join("*");
            prop_assume!(!pattern.chars().all(|c| c == '*') && !pattern.is_empty());
            let list = SubmissionBlocklist::parse([pattern.as_str()]);
            let Ok(list) = list else { return Ok(()); };
            let regex = format!(
                "^{}$",
                pieces.iter().map(|p| regex_escape(p)).collect::<Vec<_>>().join(".*")
            );
            let re = regex::Regex::new(&regex).unwrap();
            prop_assert_eq!(list.blocking_pattern(&url).is_some(), re.is_match(&url));
        }

        #[test]
        fn peer_list_parsing_never_panics(text in "\\PC{0,200}") {
            let _ = PeerBlocklist::parse(&text);
        }
    }

    fn regex_escape(s: &str) -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_string()
                } else {
                    format!("\\{c}")
                }
            })
            .collect()
    }
}
