//! Magnet links (BEP 9): the info-hash plus the optional name, trackers and peer addresses.

use std::fmt;
use std::net::SocketAddr;

use url::Url;

use crate::InfoHash;

/// Longest magnet link Ferry accepts; real ones with dozens of trackers stay far below.
pub const MAX_MAGNET_LEN: usize = 16 * 1024;
/// Most trackers (`tr=`) and peers (`x.pe=`) one link may carry.
pub const MAX_MAGNET_ENTRIES: usize = 200;

/// A parsed `magnet:?xt=urn:btih:…` link. Only BitTorrent v1 (btih) links are accepted.
#[derive(Clone, PartialEq, Eq)]
pub struct MagnetLink {
    info_hash: InfoHash,
    display_name: Option<String>,
    trackers: Vec<Url>,
    peers: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MagnetError {
    #[error("a magnet link must start with \"magnet:?\"")]
    NotAMagnet,
    #[error("the magnet link is longer than {MAX_MAGNET_LEN} bytes")]
    TooLong,
    #[error("the magnet link has no \"xt=urn:btih:<info-hash>\" parameter")]
    MissingInfoHash,
    #[error("the magnet link names more than one info-hash")]
    SeveralInfoHashes,
    #[error("the magnet link's info-hash is invalid: {0}")]
    InfoHash(#[from] crate::InfoHashError),
    #[error("tracker {0:?} is not an http, https or udp URL")]
    Tracker(String),
    #[error("peer {0:?} is not an IP address with a port")]
    Peer(String),
    #[error("the magnet link carries more than {MAX_MAGNET_ENTRIES} trackers or peers")]
    TooManyEntries,
}

impl MagnetLink {
    /// Parses a magnet link.
    ///
    /// # Errors
    /// [`MagnetError`] names what is wrong; unknown parameters are ignored as BEP 9 asks.
    pub fn parse(text: &str) -> Result<Self, MagnetError> {
        let text = text.trim();
        if text.len() > MAX_MAGNET_LEN {
            return Err(MagnetError::TooLong);
        }
        let Some(query) = text
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("magnet:?"))
            .map(|_| &text[8..])
        else {
            return Err(MagnetError::NotAMagnet);
        };

        let mut info_hash = None;
        let mut display_name = None;
        let mut trackers = Vec::new();
        let mut peers = Vec::new();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "xt" => {
                    let Some(hash) = strip_prefix_ignore_case(&value, "urn:btih:") else {
                        // Other exact topics (btmh for v2, ed2k, …) are not BitTorrent v1.
                        continue;
                    };
                    if info_hash.is_some() {
                        return Err(MagnetError::SeveralInfoHashes);
                    }
                    info_hash = Some(InfoHash::parse(hash)?);
                }
                "dn" => display_name = Some(value.into_owned()).filter(|n| !n.is_empty()),
                "tr" => trackers.push(parse_tracker(&value)?),
                "x.pe" => peers.push(
                    value
                        .parse::<SocketAddr>()
                        .map_err(|_| MagnetError::Peer(value.clone().into_owned()))?,
                ),
                _ => {}
            }
            if trackers.len() + peers.len() > MAX_MAGNET_ENTRIES {
                return Err(MagnetError::TooManyEntries);
            }
        }
        let info_hash = info_hash.ok_or(MagnetError::MissingInfoHash)?;
        Ok(Self {
            info_hash,
            display_name,
            trackers,
            peers,
        })
    }

    /// A magnet link for a torrent Ferry knows: its hash, name and trackers (those that are
    /// valid tracker URLs).
    pub fn new(info_hash: InfoHash, name: Option<&str>, trackers: &[String]) -> Self {
        Self {
            info_hash,
            display_name: name.map(str::to_owned).filter(|n| !n.is_empty()),
            trackers: trackers
                .iter()
                .filter_map(|t| parse_tracker(t).ok())
                .take(MAX_MAGNET_ENTRIES)
                .collect(),
            peers: Vec::new(),
        }
    }

    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    pub fn display_name(&self) -> Option<&str> {
        self.display_name.as_deref()
    }

    pub fn trackers(&self) -> &[Url] {
        &self.trackers
    }

    pub fn peers(&self) -> &[SocketAddr] {
        &self.peers
    }
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

fn parse_tracker(value: &str) -> Result<Url, MagnetError> {
    Url::parse(value)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https" | "udp") && u.host().is_some())
        .ok_or_else(|| MagnetError::Tracker(value.to_owned()))
}

impl fmt::Display for MagnetLink {
    /// The canonical form: `xt` first, then `dn`, every `tr`, every `x.pe`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hex hash needs no escaping; writing `xt` raw keeps the link readable.
        let mut query = url::form_urlencoded::Serializer::new(format!(
            "xt=urn:btih:{}",
            self.info_hash.to_hex()
        ));
        if let Some(name) = &self.display_name {
            query.append_pair("dn", name);
        }
        for tracker in &self.trackers {
            query.append_pair("tr", tracker.as_str());
        }
        for peer in &self.peers {
            query.append_pair("x.pe", &peer.to_string());
        }
        write!(f, "magnet:?{}", query.finish())
    }
}

impl fmt::Debug for MagnetLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MagnetLink({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HASH: &str = "6e66cd5b6d13827df56add6069693192e4e09c1b";

    #[test]
    fn parses_a_typical_link() {
        let m = MagnetLink::parse(&format!(
            "magnet:?xt=urn:btih:{HASH}&dn=My+File%20.bin&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce&tr=udp://t.example:1337&x.pe=127.0.0.1:6882"
        ))
        .unwrap();
        assert_eq!(m.info_hash().to_hex(), HASH);
        assert_eq!(m.display_name(), Some("My File .bin"));
        assert_eq!(m.trackers().len(), 2);
        assert_eq!(m.trackers()[0].as_str(), "http://127.0.0.1:6969/announce");
        assert_eq!(
            m.peers(),
            &["127.0.0.1:6882".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn accepts_base32_and_upper_case_scheme() {
        let h = InfoHash::parse(HASH).unwrap();
        let m = MagnetLink::parse(&format!("MAGNET:?xt=urn:BTIH:{}", h.to_base32())).unwrap();
        assert_eq!(m.info_hash(), h);
    }

    #[test]
    fn rejects_malformed_links() {
        use MagnetError::*;
        let cases: &[(&str, MagnetError)] = &[
            ("http://example.com", NotAMagnet),
            ("magnet:", NotAMagnet),
            ("magnet:?dn=x", MissingInfoHash),
            ("magnet:?xt=urn:btmh:1220abcd", MissingInfoHash),
            (
                "magnet:?xt=urn:btih:zz",
                InfoHash(crate::InfoHashError::Length(2)),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(MagnetLink::parse(text).unwrap_err(), *want, "{text}");
        }
        let two = format!("magnet:?xt=urn:btih:{HASH}&xt=urn:btih:{HASH}");
        assert_eq!(MagnetLink::parse(&two).unwrap_err(), SeveralInfoHashes);
        let bad_tr = format!("magnet:?xt=urn:btih:{HASH}&tr=file:///etc/passwd");
        assert!(matches!(MagnetLink::parse(&bad_tr), Err(Tracker(_))));
        let bad_peer = format!("magnet:?xt=urn:btih:{HASH}&x.pe=nowhere");
        assert!(matches!(MagnetLink::parse(&bad_peer), Err(Peer(_))));
        let long = format!(
            "magnet:?xt=urn:btih:{HASH}&dn={}",
            "a".repeat(MAX_MAGNET_LEN)
        );
        assert_eq!(MagnetLink::parse(&long).unwrap_err(), TooLong);
        let many = format!(
            "magnet:?xt=urn:btih:{HASH}{}",
            "&tr=http://t.example/a".repeat(MAX_MAGNET_ENTRIES + 1)
        );
        assert_eq!(MagnetLink::parse(&many).unwrap_err(), TooManyEntries);
    }

    fn arb_magnet() -> impl Strategy<Value = MagnetLink> {
        (
            proptest::array::uniform20(any::<u8>()),
            proptest::option::of("\\PC{1,40}"),
            proptest::collection::vec("[a-z]{1,10}", 0..4),
            proptest::collection::vec((any::<[u8; 4]>(), 1u16..), 0..4),
        )
            .prop_map(|(hash, name, hosts, peers)| MagnetLink {
                info_hash: InfoHash::from_bytes(hash),
                display_name: name,
                trackers: hosts
                    .iter()
                    .map(|h| {
                        Url::parse(&format!("http://{h}.example:6969/announce?x=1&y")).unwrap()
                    })
                    .collect(),
                peers: peers
                    .into_iter()
                    .map(|(ip, port)| SocketAddr::from((ip, port)))
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,300}") {
            let _ = MagnetLink::parse(&s);
            let _ = MagnetLink::parse(&format!("magnet:?{s}"));
            let _ = MagnetLink::parse(&format!("magnet:?xt=urn:btih:{s}"));
        }

        #[test]
        fn round_trips(m in arb_magnet()) {
            let text = m.to_string();
            prop_assert_eq!(MagnetLink::parse(&text).unwrap(), m);
        }
    }
}
