//! How configuration values parse: choices into enums, URLs of the schemes a key allows,
//! non-zero intervals and counts; and a load error told as `key: what is wrong (where the
//! value came from)`. Messages never repeat a URL (it may hold a password), only its scheme.

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use url::Url;

/// Who resolves names when a proxy is configured (`fetch.proxy_dns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyDns {
    /// The proxy (`socks5h`, HTTP proxies): no DNS query leaves without it.
    #[default]
    Proxy,
    /// This server, which checks what a name resolves to first.
    Local,
}

impl<'de> Deserialize<'de> for ProxyDns {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        one_of(d, &[("proxy", Self::Proxy), ("local", Self::Local)])
    }
}

/// One of a fixed set of words, or an error listing them.
pub(super) fn one_of<'de, D: Deserializer<'de>, T: Copy>(
    d: D,
    choices: &[(&str, T)],
) -> Result<T, D::Error> {
    let given = String::deserialize(d)?;
    choices
        .iter()
        .find(|(word, _)| *word == given)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let words: Vec<String> = choices.iter().map(|(w, _)| format!("{w:?}")).collect();
            D::Error::custom(format!(
                "expected one of {}, got {given:?}",
                words.join(", ")
            ))
        })
}

/// `database_url`: a PostgreSQL or SQLite URL, kept as written (a SQLite path is handed to
/// the driver untouched). `Debug` hides a password.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    const SCHEMES: &[&str] = &["postgres", "postgresql", "sqlite"];

    /// # Errors
    /// When `text` is not a URL of one of the schemes above.
    pub fn parse(text: &str) -> Result<Self, String> {
        checked(text, Self::SCHEMES, false)?;
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::redact(&self.0))
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// `text` as a URL of one of `schemes` (with a host when `host` is set), or a message that
/// names the schemes and repeats nothing of the value but its scheme.
fn checked(text: &str, schemes: &[&str], host: bool) -> Result<Url, String> {
    let wanted = {
        let names: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
        let list = match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        // "an http://…", "a redis://…".
        let article = if list.starts_with(['h', 'a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        format!("expected {article} {list} URL")
    };
    let url = Url::parse(text).map_err(|e| format!("{wanted}, got no URL ({e})"))?;
    if !schemes.contains(&url.scheme()) {
        return Err(format!("{wanted}, got the scheme {:?}", url.scheme()));
    }
    if host && url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{wanted}, got one without a host"));
    }
    Ok(url)
}

fn optional<'de, D: Deserializer<'de>>(
    d: D,
    schemes: &[&str],
    host: bool,
) -> Result<Option<Url>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|text| checked(&text, schemes, host).map_err(D::Error::custom))
        .transpose()
}

/// `fetch.proxy`.
pub(super) fn proxy_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
    optional(d, &["http", "https", "socks5", "socks5h"], true)
}

/// `torrent.proxy`: SOCKS5 only (peer connections are TCP streams through it).
pub(super) fn socks_proxy_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
    optional(d, &["socks5", "socks5h"], true)
}

/// `redis_url`: the schemes the Redis client knows.
pub(super) fn redis_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
    optional(
        d,
        &[
            "redis",
            "rediss",
            "redis+unix",
            "unix",
            "valkey",
            "valkeys",
            "valkey+unix",
        ],
        false,
    )
}

/// `google.token_url`, `google.api_url`.
pub(super) fn http_url<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
    checked(&String::deserialize(d)?, &["http", "https"], true).map_err(D::Error::custom)
}

/// `auth.public_url`.
pub(super) fn optional_http_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
    optional(d, &["http", "https"], true)
}

/// `package.trackers`: announce URLs.
pub(super) fn announce_urls<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Url>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| checked(text, &["http", "https", "udp"], true).map_err(D::Error::custom))
        .collect()
}

/// A URL written in this file: parsed once, by a test as well.
#[allow(clippy::expect_used)]
pub(super) fn known_url(text: &'static str) -> Url {
    Url::parse(text).expect("a constant URL")
}

/// A duration longer than zero, written like `500ms`, `30s`, `10m` or `7d`.
pub(super) mod interval {
    use std::time::Duration;

    use serde::de::Error as _;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        humantime_serde::serialize(value, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let value: Duration = humantime_serde::deserialize(d)?;
        if value.is_zero() {
            return Err(D::Error::custom(
                "expected a duration longer than zero (such as \"500ms\", \"30s\" or \"10m\")",
            ));
        }
        Ok(value)
    }
}

pub(super) const fn non_zero_usize(n: usize) -> NonZeroUsize {
    match NonZeroUsize::new(n) {
        Some(v) => v,
        None => NonZeroUsize::MIN,
    }
}

pub(super) const fn non_zero_u64(n: u64) -> NonZeroU64 {
    match NonZeroU64::new(n) {
        Some(v) => v,
        None => NonZeroU64::MIN,
    }
}

pub(super) const fn non_zero_u32(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(v) => v,
        None => NonZeroU32::MIN,
    }
}

/// What kind of value was found, without the value.
fn kind_of(actual: &figment::error::Actual) -> &'static str {
    use figment::error::Actual;
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "a number",
        Actual::Float(_) => "a decimal number",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit | Actual::Option => "nothing",
        Actual::Seq => "a list",
        Actual::Map => "a table",
        _ => "another kind of value",
    }
}

/// Figment's errors as `key: what is wrong (where it came from)`, one per value.
pub(super) fn explain(errors: figment::Error) -> anyhow::Error {
    let lines: Vec<String> = errors
        .into_iter()
        .map(|e| {
            // `fetch.allow[1]`: list entries by position, everything else by name.
            let key = e.path.iter().fold(String::new(), |mut key, part| {
                if part.bytes().all(|b| b.is_ascii_digit()) {
                    key.push_str(&format!("[{part}]"));
                } else {
                    if !key.is_empty() {
                        key.push('.');
                    }
                    key.push_str(part);
                }
                key
            });
            let what = match &e.kind {
                figment::error::Kind::InvalidValue(actual, expected)
                    if expected.starts_with("a nonzero") =>
                {
                    format!("expected a whole number of at least 1, got {actual}")
                }
                // Other values found are left out: they may be secrets (a key, a token).
                figment::error::Kind::InvalidType(actual, expected)
                | figment::error::Kind::InvalidValue(actual, expected) => {
                    format!("expected {expected}, got {}", kind_of(actual))
                }
                kind => kind.to_string(),
            };
            let from = match &e.metadata {
                Some(md) if md.name.contains("environment") => {
                    env_var(&e.path).map_or_else(String::new, |name| format!(" (from {name})"))
                }
                Some(md) => match &md.source {
                    Some(source) => format!(" (from {source})"),
                    None => format!(" (from {})", md.name),
                },
                None => String::new(),
            };
            if key.is_empty() {
                format!("{what}{from}")
            } else {
                format!("{key}: {what}{from}")
            }
        })
        .collect();
    anyhow::anyhow!(lines.join("; "))
}

/// The `FERRY_…` variable that set the value at `path`: the longest leading part of the
/// path that names a variable in the environment (`FERRY_FETCH__ALLOW` for an entry of
/// that list, `FERRY_HOSTS` for one of its names).
fn env_var(path: &[String]) -> Option<String> {
    (1..=path.len()).rev().find_map(|n| {
        let parts: Vec<String> = path[..n].iter().map(|k| k.to_ascii_uppercase()).collect();
        let name = format!("FERRY_{}", parts.join("__"));
        std::env::var_os(&name).map(|_| name)
    })
}
