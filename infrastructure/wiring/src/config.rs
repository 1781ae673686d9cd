//! Ferry's configuration: defaults → optional TOML file → `FERRY_…` environment variables
//! (`__` separates nesting: `FERRY_TORRENT__DHT=false`). Secrets can also be read from a
//! file named by `…_FILE` (`FERRY_API_TOKEN_FILE=/run/secrets/token`), and never print.
//!
//! Every value is parsed into its type when the configuration loads: choices into enums,
//! address ranges into [`Cidr`]s, URLs into [`Url`]s of the schemes the key allows, counts
//! and limits into non-zero integers, intervals into non-zero [`Duration`]s. A value that
//! does not parse stops the start with its key's name (and where it came from), so a typo
//! never waits to fail a user's job.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use ferry_domain::Cidr;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};
use url::Url;

mod parse;

pub use parse::{DatabaseUrl, ProxyDns};

/// A secret value: `Debug`/`Display` print `***`.
#[derive(Clone, PartialEq, Eq, Serialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

/// Accepts any scalar: an all-digit token set in the environment arrives as a number.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// Database, staging, storage and the generated API token live here.
    pub data_dir: PathBuf,
    /// `postgres://…` or `sqlite://…`; default: `sqlite://{data_dir}/ferry.db`.
    pub database_url: Option<DatabaseUrl>,
    /// Bearer token every `/api/v1` call must carry. `ferry serve` generates one into the
    /// data dir when none is configured.
    pub api_token: Option<Secret>,
    pub api_token_file: Option<PathBuf>,
    /// 64 hex digits: the key that seals stored credentials (AES-256-GCM). `ferry serve`
    /// generates one into the data dir; the distributed processes must all be given the same.
    pub secret_key: Option<Secret>,
    pub secret_key_file: Option<PathBuf>,
    /// Earlier secret keys (64 hex digits each), still accepted to open credentials sealed
    /// with them until `ferry keys rotate` has re-sealed everything with `secret_key`.
    pub old_secret_keys: Vec<Secret>,
    /// Fixed name → address mappings (like /etc/hosts) for every connection a user's input
    /// decides (URL jobs, storage endpoints, trackers), checked like resolved addresses.
    pub hosts: std::collections::BTreeMap<String, std::net::IpAddr>,
    /// `redis://host:port/db`: the queue and progress bus of the distributed mode
    /// (`ferry-api` and the worker binaries). `ferry serve` does not use it.
    #[serde(deserialize_with = "parse::redis_url")]
    pub redis_url: Option<Url>,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub redis_prefix: String,
    /// Downloads in progress; default `{data_dir}/staging`. Shared by download and upload
    /// workers in the distributed mode.
    pub staging_dir: Option<PathBuf>,
    /// Delivered files (local storage); default `{data_dir}/storage`. Shared by upload
    /// workers and the API in the distributed mode.
    pub storage_dir: Option<PathBuf>,
    pub torrent: TorrentConfig,
    pub storage: StorageConfig,
    pub google: GoogleConfig,
    pub fetch: FetchConfig,
    pub package: PackageConfig,
    pub seed: SeedConfig,
    pub feeds: FeedsConfig,
    pub limits: LimitsConfig,
    pub workers: WorkersConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub webhooks: WebhooksConfig,
    pub blocklist: BlocklistConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("ferry-data"),
            database_url: None,
            api_token: None,
            api_token_file: None,
            secret_key: None,
            secret_key_file: None,
            old_secret_keys: Vec::new(),
            hosts: std::collections::BTreeMap::new(),
            redis_url: None,
            redis_prefix: "ferry".to_owned(),
            staging_dir: None,
            storage_dir: None,
            torrent: TorrentConfig::default(),
            storage: StorageConfig::default(),
            google: GoogleConfig::default(),
            fetch: FetchConfig::default(),
            package: PackageConfig::default(),
            seed: SeedConfig::default(),
            feeds: FeedsConfig::default(),
            limits: LimitsConfig::default(),
            workers: WorkersConfig::default(),
            log: LogConfig::default(),
            auth: AuthConfig::default(),
            webhooks: WebhooksConfig::default(),
            blocklist: BlocklistConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TorrentConfig {
    /// Address for incoming peer connections (`off` disables listening).
    #[serde(with = "optional_addr")]
    pub listen: Option<SocketAddr>,
    /// The DHT finds peers for trackerless magnets.
    pub dht: bool,
    /// Local service discovery (LAN multicast).
    pub lsd: bool,
    /// Ask the router to forward the listening port.
    pub upnp: bool,
    /// Bytes per second across all torrents; unset means unlimited.
    pub download_limit: Option<NonZeroU32>,
    pub upload_limit: Option<NonZeroU32>,
    /// Connected peers per torrent; unset is librqbit's default, 128.
    pub peer_limit: Option<NonZeroUsize>,
    /// Peer connections across every torrent of the engine (downloads, seeds and magnets
    /// being resolved), each held for its connection's life: an outgoing one waits for a
    /// free slot, an incoming one is refused while there is none. Unset: no cap beyond
    /// `peer_limit` per torrent. Slots go first come, first served: seeds keep theirs while
    /// their peers stay, so a cap below what the seeds use can hold downloads (and magnets'
    /// metadata) back; leave room for `workers.downloads` × `peer_limit`.
    pub max_connections: Option<NonZeroUsize>,
    /// How long to wait for a magnet's metadata before the attempt counts as failed.
    #[serde(with = "parse::interval")]
    pub resolve_timeout: Duration,
    /// Internal ranges (`10.0.0.0/8`, `127.0.0.1/32`) trackers and peers may be at anyway.
    /// Otherwise trackers at loopback, private, link-local, CGNAT, unique-local or multicast
    /// addresses are refused at submission, and the engine neither connects to nor accepts
    /// peers there.
    pub allow: Vec<Cidr>,
    /// A SOCKS5 proxy for peer connections and HTTP(S) tracker announces
    /// (`socks5h://host:port` resolves tracker names through the proxy). While proxied, UDP
    /// trackers, the DHT, LSD and UPnP are off (SOCKS5 over TCP cannot carry them), and so
    /// is listening unless `proxy_incoming`.
    #[serde(deserialize_with = "parse::socks_proxy_url")]
    pub proxy: Option<Url>,
    /// Without `proxy`, use `fetch.proxy` (which must then be a SOCKS5 one).
    pub proxy_follows_fetch: bool,
    /// Fail closed: refuse to start the engine without a proxy, and fail a job
    /// (`proxy_unavailable`) as soon as its proxy is down.
    pub proxy_required: bool,
    /// Keep accepting incoming peer connections (on `listen`) while proxied.
    pub proxy_incoming: bool,
    /// How long a read of a file streamed while it downloads waits for its data: past it
    /// the answer is `504 stream_timeout` (or, once bytes were sent, the connection ends).
    #[serde(with = "parse::interval")]
    pub stream_timeout: Duration,
}

impl Default for TorrentConfig {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([0, 0, 0, 0], 6881))),
            dht: true,
            lsd: false,
            upnp: false,
            download_limit: None,
            upload_limit: None,
            peer_limit: None,
            max_connections: None,
            resolve_timeout: Duration::from_secs(600),
            allow: Vec::new(),
            proxy: None,
            proxy_follows_fetch: false,
            proxy_required: false,
            proxy_incoming: false,
            stream_timeout: Duration::from_secs(60),
        }
    }
}

/// How the engine reaches the swarm, from `torrent.*` and `fetch.proxy`: what a proxy
/// turns off, in one place (the engine is started with it, the API shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentNetwork {
    /// The SOCKS5 proxy every peer connection and tracker announce goes through.
    pub proxy: Option<Url>,
    pub proxy_required: bool,
    pub listen: Option<SocketAddr>,
    pub dht: bool,
    pub lsd: bool,
    pub upnp: bool,
    /// Whether `udp://` trackers are announced to.
    pub udp_trackers: bool,
}

impl TorrentConfig {
    /// The network the engine runs with.
    ///
    /// # Errors
    /// `proxy_follows_fetch` with an HTTP `fetch.proxy` (it cannot carry peer connections),
    /// or `proxy_required` without any proxy.
    pub fn network(&self, fetch: &FetchConfig) -> anyhow::Result<TorrentNetwork> {
        let proxy = match (&self.proxy, self.proxy_follows_fetch, &fetch.proxy) {
            (Some(p), _, _) => Some(p.clone()),
            (None, true, Some(p)) => {
                anyhow::ensure!(
                    matches!(p.scheme(), "socks5" | "socks5h"),
                    "torrent.proxy_follows_fetch: fetch.proxy is an {} proxy, and BitTorrent peers need a SOCKS5 one (set torrent.proxy)",
                    p.scheme()
                );
                Some(p.clone())
            }
            _ => None,
        };
        if let Some(p) = &proxy {
            anyhow::ensure!(
                p.port().is_some(),
                "torrent.proxy: the proxy URL needs a port (socks5h://host:1080)"
            );
            // Peer connections would send the escapes as they are written (the trackers'
            // HTTP client decodes them): the two would log in differently.
            anyhow::ensure!(
                !p.username().contains('%') && !p.password().unwrap_or_default().contains('%'),
                "torrent.proxy: a user name or password that needs %-escapes in the URL is not supported; choose one of letters, digits and -._~"
            );
        }
        anyhow::ensure!(
            proxy.is_some() || !self.proxy_required,
            "torrent.proxy_required is set but there is no torrent.proxy (nor fetch.proxy with torrent.proxy_follows_fetch): refusing to connect to peers directly"
        );
        let proxied = proxy.is_some();
        Ok(TorrentNetwork {
            listen: self.listen.filter(|_| !proxied || self.proxy_incoming),
            dht: self.dht && !proxied,
            lsd: self.lsd && !proxied,
            upnp: self.upnp && !proxied,
            udp_trackers: !proxied,
            proxy_required: self.proxy_required,
            proxy,
        })
    }
}

mod optional_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(a) => s.serialize_str(&a.to_string()),
            None => s.serialize_str("off"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        if text == "off" {
            return Ok(None);
        }
        text.parse().map(Some).map_err(serde::de::Error::custom)
    }
}

/// Delivery to users' storage (S3, Google Drive).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageConfig {
    /// How long a presigned S3 download link stays valid.
    #[serde(with = "parse::interval")]
    pub presign_ttl: Duration,
    /// Bytes per multipart part (at least 5 MiB).
    pub part_size: u64,
    /// Parts uploaded at once per file.
    pub upload_concurrency: NonZeroUsize,
    /// Whether users may point profiles at loopback, private or link-local endpoints.
    /// Off by default: a user could otherwise make the server talk to internal services.
    pub allow_private_endpoints: bool,
    /// Internal ranges storage endpoints may be at anyway (`10.1.0.0/16`), when
    /// `allow_private_endpoints` is off.
    pub allow: Vec<Cidr>,
    /// The shared volume folder profiles deliver into, `{shared_dir}/{user}/{path}/{job}/…`,
    /// for other programs (Sonarr, Radarr) that mount it too. `ferry serve` defaults it to
    /// `{data_dir}/shared`; the distributed processes have none unless it is set, and then the
    /// API and the upload workers must see the same volume at this path. Without it, folder
    /// profiles are refused (`shared_dir_unset`).
    pub shared_dir: Option<PathBuf>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            presign_ttl: Duration::from_secs(3600),
            part_size: 8 << 20,
            upload_concurrency: parse::non_zero_usize(8),
            allow_private_endpoints: false,
            allow: Vec::new(),
            shared_dir: None,
        }
    }
}

/// HTTP(S) fetching: the proxy, the address policy, the limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FetchConfig {
    /// `http://host:port`, `socks5h://host:port` (names resolved by the proxy) or
    /// `socks5://host:port`.
    #[serde(deserialize_with = "parse::proxy_url")]
    pub proxy: Option<Url>,
    /// Refuse to fetch at all without `proxy` (fail closed).
    pub proxy_required: bool,
    /// With a proxy, who resolves names: `proxy` (no DNS query leaves without it; only
    /// literal addresses and names that also resolve locally to internal ranges can be
    /// refused, so the proxy's own egress policy matters) or `local` (names must resolve
    /// here and are checked; the proxy may resolve them again).
    pub proxy_dns: ProxyDns,
    /// Internal ranges users may fetch from anyway (`10.0.0.0/8`, `127.0.0.1/32`). Loopback,
    /// private, link-local (cloud metadata), unique-local and multicast are refused otherwise.
    pub allow: Vec<Cidr>,
    /// Fixed name → address mappings (like /etc/hosts), checked like any other address.
    pub hosts: std::collections::BTreeMap<String, std::net::IpAddr>,
    /// Largest download, in bytes.
    pub max_bytes: NonZeroU64,
    /// Allowed content types (`video/`, `application/zip`); empty allows any.
    pub allowed_types: Vec<String>,
    #[serde(with = "parse::interval")]
    pub connect_timeout: Duration,
    #[serde(with = "parse::interval")]
    pub read_timeout: Duration,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            proxy: None,
            proxy_required: false,
            proxy_dns: ProxyDns::Proxy,
            allow: Vec::new(),
            hosts: std::collections::BTreeMap::new(),
            max_bytes: parse::non_zero_u64(50 << 30),
            allowed_types: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// Torrents made of fetched content.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PackageConfig {
    /// Set the private flag: peers come from the trackers only (no DHT, no PEX).
    pub private: bool,
    /// Announce URLs written into the torrents (`http(s)://` or `udp://`).
    #[serde(deserialize_with = "parse::announce_urls")]
    pub trackers: Vec<Url>,
}

impl Default for PackageConfig {
    fn default() -> Self {
        Self {
            private: true,
            trackers: Vec::new(),
        }
    }
}

/// Seeding finished jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SeedConfig {
    /// Seed every job unless it says otherwise.
    pub default: bool,
    /// Default limits (a job may set its own); seeding stops at the first reached.
    pub ratio: Option<f64>,
    #[serde(with = "humantime_serde")]
    pub time: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub idle: Option<Duration>,
}

impl Default for SeedConfig {
    fn default() -> Self {
        Self {
            default: false,
            ratio: Some(2.0),
            time: Some(Duration::from_secs(7 * 24 * 3600)),
            idle: None,
        }
    }
}

/// RSS feeds and download rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FeedsConfig {
    /// A feed's poll interval when it names none.
    #[serde(with = "parse::interval")]
    pub default_interval: Duration,
    /// The shortest poll interval a feed may ask for.
    #[serde(with = "parse::interval")]
    pub min_interval: Duration,
    /// How often a process looks for feeds that are due.
    #[serde(with = "parse::interval")]
    pub check_every: Duration,
    /// Largest feed document, in bytes.
    pub max_bytes: NonZeroU64,
    /// Items read from one feed (the first ones).
    pub max_items: NonZeroUsize,
    /// Feeds, and rules, per user.
    pub max_per_user: NonZeroUsize,
    pub max_rules_per_user: NonZeroUsize,
}

impl Default for FeedsConfig {
    fn default() -> Self {
        Self {
            default_interval: Duration::from_secs(15 * 60),
            min_interval: Duration::from_secs(5 * 60),
            check_every: Duration::from_secs(5),
            max_bytes: parse::non_zero_u64(8 << 20),
            max_items: parse::non_zero_usize(500),
            max_per_user: parse::non_zero_usize(100),
            max_rules_per_user: parse::non_zero_usize(100),
        }
    }
}

/// The operator's Google OAuth client: users connect their Drive through its consent page,
/// and their refresh tokens become access tokens for Drive delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GoogleConfig {
    pub client_id: String,
    pub client_secret: Secret,
    /// Google's consent page, where "connect Google Drive" sends the browser.
    #[serde(deserialize_with = "parse::http_url")]
    pub auth_url: Url,
    #[serde(deserialize_with = "parse::http_url")]
    pub token_url: Url,
    /// Drive's API root (`rootUrl`); tests point it at a local server.
    #[serde(deserialize_with = "parse::http_url")]
    pub api_url: Url,
    /// Bytes per resumable-upload request (a multiple of 256 KiB).
    pub chunk_size: u64,
}

impl Default for GoogleConfig {
    fn default() -> Self {
        Self {
            client_id: String::new(),
            client_secret: Secret::default(),
            auth_url: parse::known_url("https://accounts.google.com/o/oauth2/v2/auth"),
            token_url: parse::known_url("https://oauth2.googleapis.com/token"),
            api_url: parse::known_url("https://www.googleapis.com/"),
            chunk_size: 8 << 20,
        }
    }
}

/// Accounts: logins, sessions, limits and quotas.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// Ferry's address as browsers reach it (`https://ferry.example.org`): identity
    /// providers send users back to `{public_url}/api/v1/auth/callback/{provider}`, cookies
    /// are `Secure` when it is https, and it is the origin browser changes must come from.
    /// Default: `http://{listen}`.
    #[serde(deserialize_with = "parse::optional_http_url")]
    pub public_url: Option<Url>,
    /// Reverse proxies (`["10.0.0.5/32"]`) whose `X-Forwarded-For` header names the client
    /// for login limits and the audit log; from anyone else the header is ignored.
    pub trusted_proxies: Vec<Cidr>,
    /// A browser session ends this long after its last use…
    #[serde(with = "parse::interval")]
    pub session_idle: Duration,
    /// …and this long after login, however much it is used.
    #[serde(with = "parse::interval")]
    pub session_absolute: Duration,
    /// How long a setup link (first admin, `ferry user add` without a password) works.
    #[serde(with = "parse::interval")]
    pub setup_link_ttl: Duration,
    /// How long a signed link to a finished file (`GET /jobs/{id}/files/{n}/link`) works.
    #[serde(with = "parse::interval")]
    pub link_ttl: Duration,
    /// API requests per second per user (or per personal token), sustained…
    pub api_rate: NonZeroU32,
    /// …and at once.
    pub api_burst: NonZeroU32,
    /// Login attempts per minute from one address, and at once.
    pub login_ip_per_minute: NonZeroU32,
    pub login_ip_burst: NonZeroU32,
    /// Login attempts per minute for one account name, and at once.
    pub login_account_per_minute: NonZeroU32,
    pub login_account_burst: NonZeroU32,
    /// Every user's quotas unless an admin sets theirs (absent: no limit).
    pub quotas: QuotasConfig,
    /// OpenID Connect providers by name (`auth.oidc.company.issuer = …`); the name is the
    /// one in `/api/v1/auth/login/{name}`.
    pub oidc: std::collections::BTreeMap<String, OidcConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            trusted_proxies: Vec::new(),
            session_idle: Duration::from_secs(7 * 24 * 3600),
            session_absolute: Duration::from_secs(30 * 24 * 3600),
            setup_link_ttl: Duration::from_secs(24 * 3600),
            link_ttl: Duration::from_secs(3600),
            api_rate: parse::non_zero_u32(100),
            api_burst: parse::non_zero_u32(300),
            login_ip_per_minute: parse::non_zero_u32(20),
            login_ip_burst: parse::non_zero_u32(20),
            login_account_per_minute: parse::non_zero_u32(5),
            login_account_burst: parse::non_zero_u32(5),
            quotas: QuotasConfig::default(),
            oidc: std::collections::BTreeMap::new(),
        }
    }
}

/// Per-user limits (absent: none).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct QuotasConfig {
    /// Jobs queued, downloading, paused or uploading at once.
    pub active_jobs: Option<u64>,
    /// Bytes one job may fetch.
    pub job_bytes: Option<u64>,
    /// Bytes of delivered files kept in all.
    pub stored_bytes: Option<u64>,
    /// Jobs seeding at once.
    pub seeding_jobs: Option<u64>,
}

/// One OpenID Connect provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OidcConfig {
    /// The issuer (`https://accounts.google.com`); discovery is at
    /// `{issuer}/.well-known/openid-configuration`.
    #[serde(deserialize_with = "parse::http_url")]
    pub issuer: Url,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// Default `openid email profile`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The claim that lists a user's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Members of this group are admins, others users (the role follows the group at each
    /// login). Absent: admins set roles.
    #[serde(default)]
    pub admin_group: Option<String>,
    /// Create a user at their first login; `false` (default): only users who already exist
    /// may log in (with a public provider such as Google, anyone could otherwise).
    #[serde(default)]
    pub auto_provision: bool,
    /// Accept this provider's JWT access tokens as bearer tokens when their `aud` is this
    /// value (absent: access tokens are not accepted).
    #[serde(default)]
    pub access_token_audience: Option<String>,
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(str::to_owned).to_vec()
}

fn default_groups_claim() -> String {
    "groups".to_owned()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Largest .torrent upload, in bytes.
    pub max_torrent_file_bytes: NonZeroU64,
    /// Most files one torrent may have.
    pub max_files: NonZeroUsize,
    /// Largest torrent content, in bytes.
    pub max_total_bytes: NonZeroU64,
    /// Event streams one owner may have open at once (more: 429).
    pub max_streams_per_owner: NonZeroUsize,
    /// Event streams the process keeps open at once, for everyone (more: 429).
    pub max_streams: NonZeroUsize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_torrent_file_bytes: parse::non_zero_u64(10 << 20),
            max_files: parse::non_zero_usize(20_000),
            max_total_bytes: parse::non_zero_u64(4 << 40),
            max_streams_per_owner: parse::non_zero_usize(64),
            max_streams: parse::non_zero_usize(1024),
        }
    }
}

impl LimitsConfig {
    /// Largest JSON request body: 64 KiB, plus room for a file selection naming every file
    /// a torrent may have (up to 8 bytes an index).
    pub fn max_json_bytes(&self) -> u64 {
        64 * 1024 + 8 * self.max_files.get() as u64
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkersConfig {
    /// Torrents downloading at once.
    pub downloads: NonZeroUsize,
    /// Deliveries running at once.
    pub uploads: NonZeroUsize,
    /// URL fetches running at once.
    pub fetches: NonZeroUsize,
    /// Jobs seeding at once (each holds a worker slot while it seeds).
    pub seeds: NonZeroUsize,
    /// Attempts per stage before a job fails.
    pub max_attempts: NonZeroU32,
    /// Zero retries at once.
    #[serde(with = "humantime_serde")]
    pub retry_base_delay: Duration,
    #[serde(with = "parse::interval")]
    pub retry_max_delay: Duration,
    /// How often progress is published to watchers.
    #[serde(with = "parse::interval")]
    pub progress_interval: Duration,
    /// How long a silent worker keeps its jobs before another takes them over (Redis).
    #[serde(with = "parse::interval")]
    pub lease: Duration,
    /// How often workers look for unfinished jobs whose queue message was lost.
    #[serde(with = "parse::interval")]
    pub reconcile_every: Duration,
    /// Where a worker process serves `/health` and `/metrics`.
    pub probe_listen: SocketAddr,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            downloads: parse::non_zero_usize(4),
            uploads: parse::non_zero_usize(2),
            fetches: parse::non_zero_usize(4),
            seeds: parse::non_zero_usize(64),
            max_attempts: parse::non_zero_u32(5),
            retry_base_delay: Duration::from_secs(5),
            retry_max_delay: Duration::from_secs(600),
            progress_interval: Duration::from_millis(500),
            lease: Duration::from_secs(60),
            reconcile_every: Duration::from_secs(30),
            probe_listen: SocketAddr::from(([127, 0, 0, 1], 9100)),
        }
    }
}

/// The operator's block lists.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BlocklistConfig {
    /// Info-hashes refused at submission (`422 blocked`).
    pub info_hashes: Vec<String>,
    /// URL patterns (`*` for any run of characters) refused at submission, for URL jobs and
    /// .torrent files fetched by URL.
    pub urls: Vec<String>,
    /// A file of more entries (info-hashes and URL patterns, one per line), re-read when it
    /// changes.
    pub file: Option<PathBuf>,
    /// Peer addresses the engine never connects to nor accepts: a P2P (`.p2p`) or eMule
    /// (`.dat`) list, or addresses and CIDR ranges; re-read when it changes.
    pub peers: Option<PathBuf>,
    /// How often the files are checked for changes.
    #[serde(with = "parse::interval")]
    pub reload_every: Duration,
}

impl Default for BlocklistConfig {
    fn default() -> Self {
        Self {
            info_hashes: Vec::new(),
            urls: Vec::new(),
            file: None,
            peers: None,
            reload_every: Duration::from_secs(30),
        }
    }
}

/// Webhooks: users' endpoints told when their jobs complete, fail or finish seeding.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhooksConfig {
    /// Webhooks one user may have.
    pub max_per_user: NonZeroUsize,
    /// The wait after a delivery's first failed attempt; it doubles after each further one
    /// (plus up to a quarter of jitter, at most 6 h).
    #[serde(with = "parse::interval")]
    pub retry_base: Duration,
    /// Attempts before a delivery is given up.
    pub max_attempts: NonZeroU32,
    /// How long one attempt may take (connect, send, the answer's status).
    #[serde(with = "parse::interval")]
    pub timeout: Duration,
    /// How often the dispatcher looks for due deliveries (a job's change in this process
    /// wakes it at once).
    #[serde(with = "parse::interval")]
    pub poll: Duration,
    /// How long delivered and failed deliveries stay in the history.
    #[serde(with = "parse::interval")]
    pub keep: Duration,
    /// Most attempts one API process has in flight at once (a place that frees is taken
    /// by the next due delivery at once).
    pub concurrency: NonZeroUsize,
    /// Most of those places one user's deliveries may take, so a user whose endpoints do
    /// not answer holds up no one else's.
    pub concurrency_per_user: NonZeroUsize,
    /// The shortest time between two pings of one webhook (a quicker one is answered 429
    /// `rate_limited`).
    #[serde(with = "parse::interval")]
    pub ping_interval: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            max_per_user: parse::non_zero_usize(20),
            retry_base: Duration::from_secs(30),
            max_attempts: parse::non_zero_u32(8),
            timeout: Duration::from_secs(10),
            poll: Duration::from_secs(1),
            keep: Duration::from_secs(30 * 86_400),
            concurrency: parse::non_zero_usize(16),
            concurrency_per_user: parse::non_zero_usize(4),
            ping_interval: Duration::from_secs(10),
        }
    }
}

/// How log lines are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable when stdout is a terminal, JSON when it is a file, pipe or collector.
    #[default]
    Auto,
    Json,
    Pretty,
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse::one_of(
            d,
            &[
                ("auto", Self::Auto),
                ("json", Self::Json),
                ("pretty", Self::Pretty),
            ],
        )
    }
}

impl LogFormat {
    /// Whether to write JSON, given whether stdout is a terminal; a format set explicitly
    /// wins over the guess.
    pub fn json(self, stdout_is_terminal: bool) -> bool {
        match self {
            Self::Auto => !stdout_is_terminal,
            Self::Json => true,
            Self::Pretty => false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter (`info`, `ferry=debug,librqbit=warn`); `RUST_LOG` overrides it.
    /// The default keeps libraries (OpenTelemetry, librqbit, sea-orm, sqlx, hyper, …) to
    /// warnings, and Ferry's own lines and the HTTP request log at `info`.
    pub level: String,
    pub loki: LokiConfig,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            level: "warn,ferry=info".to_owned(),
            loki: LokiConfig::default(),
        }
    }
}

/// The same lines, also sent to Grafana Loki (stdout keeps them either way).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LokiConfig {
    /// Loki's base URL (`http://loki:3100`); unset, nothing is sent.
    #[serde(deserialize_with = "parse::optional_http_url")]
    pub url: Option<Url>,
    /// Lines held at most while Loki is slow or away; past that they are dropped and
    /// counted (`ferry_log_lines_dropped_total`).
    pub buffer_lines: NonZeroUsize,
}

impl Default for LokiConfig {
    fn default() -> Self {
        Self {
            url: None,
            buffer_lines: parse::non_zero_usize(10_000),
        }
    }
}

/// A loaded configuration and the keys it did not recognise.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub unknown_keys: Vec<String>,
}

impl Config {
    /// Loads defaults, then `file` (if given and present), then the `FERRY_` environment.
    ///
    /// # Errors
    /// When the file is unreadable or a value does not parse into its type; the message
    /// names the key and where the value came from.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Loaded> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            anyhow::ensure!(
                path.exists(),
                "config file {} does not exist",
                path.display()
            );
            figment = figment.merge(Toml::file(path));
        }
        Self::settle(figment)
    }

    /// As [`load`](Self::load), with the config file's text given instead of its path.
    ///
    /// # Errors
    /// As `load`: the text is not TOML, or a value does not parse into its type.
    pub fn load_toml(text: &str) -> anyhow::Result<Loaded> {
        Self::settle(
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text)),
        )
    }

    /// Defaults and file merged: the environment on top, then checked.
    fn settle(mut figment: Figment) -> anyhow::Result<Loaded> {
        figment = figment.merge(
            Env::prefixed("FERRY_")
                .split("__")
                // FERRY_CONFIG names the file; FERRY_URL, FERRY_TOKEN and FERRY_CONFIG_DIR
                // are the command-line client's (`ferry login`, `ferry add`, …).
                .ignore(&["config", "url", "token", "config_dir"])
                .map(|k| k.as_str().to_ascii_lowercase().into()),
        );
        let mut config: Config = figment
            .extract()
            .map_err(parse::explain)
            .context("invalid configuration")?;
        let unknown_keys = unknown_keys(&figment)?;
        config.read_secret_files()?;
        config.check_values()?;
        Ok(Loaded {
            config,
            unknown_keys,
        })
    }

    /// Values that parse but make no sense, refused at start with the key's name.
    fn check_values(&self) -> anyhow::Result<()> {
        self.torrent.network(&self.fetch)?;
        if let Some(n) = self.torrent.max_connections {
            // The engine's semaphore cannot hold more; no machine holds that many sockets.
            anyhow::ensure!(
                n.get() <= 1_000_000,
                "torrent.max_connections is {n}; it must be at most 1000000"
            );
        }
        for (key, limit) in [
            ("torrent.download_limit", self.torrent.download_limit),
            ("torrent.upload_limit", self.torrent.upload_limit),
        ] {
            if let Some(bps) = limit {
                // The engine moves 16 KiB blocks; a smaller budget could never pass one.
                anyhow::ensure!(
                    bps.get() >= ferry_domain::SpeedLimits::MIN_BPS,
                    "{key} is {bps} bytes per second; it must be at least {} (one 16 KiB block per second)",
                    ferry_domain::SpeedLimits::MIN_BPS
                );
            }
        }
        if let Some(r) = self.seed.ratio {
            anyhow::ensure!(
                r.is_finite() && r > 0.0,
                "seed.ratio must be a positive number, not {r}"
            );
        }
        for name in self.auth.oidc.keys() {
            anyhow::ensure!(
                !name.is_empty()
                    && name.len() <= 32
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "auth.oidc: a provider's name is 1 to 32 of a-z, 0-9 and '-' (it is a URL segment), not {name:?}"
            );
        }
        for key in &self.old_secret_keys {
            let k = key.expose().trim();
            anyhow::ensure!(
                k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()),
                "old_secret_keys: every key must be 64 hex digits"
            );
        }
        Ok(())
    }

    fn read_secret_files(&mut self) -> anyhow::Result<()> {
        if self.secret_key.is_none()
            && let Some(path) = &self.secret_key_file
        {
            self.secret_key = Some(read_secret_file("secret_key_file", path)?);
        }
        if self.api_token.is_none()
            && let Some(path) = &self.api_token_file
        {
            self.api_token = Some(read_secret_file("api_token_file", path)?);
        }
        Ok(())
    }

    /// Ferry's public base URL, without a trailing slash.
    pub fn public_url(&self) -> String {
        self.auth.public_url.as_ref().map_or_else(
            || format!("http://{}", self.listen),
            |u| u.as_str().trim_end_matches('/').to_owned(),
        )
    }

    /// The database URL, defaulting to SQLite in the data dir.
    pub fn database_url(&self) -> String {
        self.database_url.as_ref().map_or_else(
            || {
                format!(
                    "sqlite://{}?mode=rwc",
                    self.data_dir.join("ferry.db").display()
                )
            },
            |url| url.as_str().to_owned(),
        )
    }

    pub fn staging_dir(&self) -> PathBuf {
        self.staging_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("staging"))
    }

    pub fn storage_dir(&self) -> PathBuf {
        self.storage_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("storage"))
    }

    /// The shared volume of folder profiles (`storage.shared_dir`), if there is one; made
    /// absolute (against the working directory), since the folders under it are shown to
    /// users and other programs as the place to find a job's files.
    pub fn shared_dir(&self) -> Option<PathBuf> {
        let dir = self.storage.shared_dir.as_ref()?;
        Some(std::path::absolute(dir).unwrap_or_else(|_| dir.clone()))
    }

    /// The configuration as `ferry serve` runs it: the one-box defaults the distributed
    /// processes cannot have are filled in (`storage.shared_dir`: `{data_dir}/shared`).
    pub fn for_serve(&self) -> Self {
        let mut config = self.clone();
        if config.storage.shared_dir.is_none() {
            config.storage.shared_dir = Some(config.data_dir.join("shared"));
        }
        config
    }
}

/// The most a secret file may hold: keys and tokens are short, and a path such as
/// `/dev/zero` must not be read until memory runs out.
const MAX_SECRET_FILE: u64 = 64 << 10;

/// A secret from the file `key` names: its text, trimmed; refused when it is not UTF-8 text
/// of at most [`MAX_SECRET_FILE`] bytes.
fn read_secret_file(key: &str, path: &Path) -> anyhow::Result<Secret> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SECRET_FILE + 1).read_to_end(&mut bytes))
        .with_context(|| format!("reading {key} {}", path.display()))?;
    anyhow::ensure!(
        bytes.len() as u64 <= MAX_SECRET_FILE,
        "{key} {} is larger than {MAX_SECRET_FILE} bytes; it must hold only the secret",
        path.display()
    );
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{key} {} is not UTF-8 text", path.display()))?;
    Ok(Secret::new(text.trim()))
}

/// Dotted paths present in the merged configuration but not in [`Config`].
fn unknown_keys(figment: &Figment) -> anyhow::Result<Vec<String>> {
    let known = serde_json::to_value(Config::default())?;
    let given: serde_json::Value = figment.extract().unwrap_or(serde_json::Value::Null);
    let mut out = BTreeSet::new();
    walk(&given, &known, String::new(), &mut out);
    Ok(out.into_iter().collect())
}

fn walk(
    given: &serde_json::Value,
    known: &serde_json::Value,
    prefix: String,
    out: &mut BTreeSet<String>,
) {
    let (Some(given), Some(known)) = (given.as_object(), known.as_object()) else {
        return;
    };
    // An empty object in the defaults is a free-form map (such as `fetch.hosts`).
    if known.is_empty() {
        return;
    }
    for (key, value) in given {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match known.get(key) {
            None => {
                out.insert(path);
            }
            Some(k) => walk(value, k, path, out),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::result_large_err)]
    use super::*;

    #[test]
    fn a_torrent_proxy_turns_off_what_it_cannot_carry() {
        let direct = TorrentConfig::default()
            .network(&FetchConfig::default())
            .unwrap();
        assert_eq!(
            (direct.proxy, direct.dht, direct.udp_trackers),
            (None, true, true)
        );
        assert!(direct.listen.is_some());

        let socks: Url = "socks5h://127.0.0.1:1080".parse().unwrap();
        let t = TorrentConfig {
            proxy: Some(socks.clone()),
            lsd: true,
            upnp: true,
            ..TorrentConfig::default()
        };
        let n = t.network(&FetchConfig::default()).unwrap();
        assert_eq!(n.proxy.as_ref(), Some(&socks));
        assert!(!n.dht && !n.lsd && !n.upnp && !n.udp_trackers);
        assert_eq!(n.listen, None, "no listening while proxied");
        let incoming = TorrentConfig {
            proxy_incoming: true,
            ..t.clone()
        };
        assert!(
            incoming
                .network(&FetchConfig::default())
                .unwrap()
                .listen
                .is_some()
        );

        // Following fetch.proxy: only a SOCKS5 one can carry peers.
        let follows = TorrentConfig {
            proxy_follows_fetch: true,
            ..TorrentConfig::default()
        };
        let fetch = FetchConfig {
            proxy: Some(socks.clone()),
            ..FetchConfig::default()
        };
        assert_eq!(follows.network(&fetch).unwrap().proxy, Some(socks));
        let http = FetchConfig {
            proxy: Some("http://127.0.0.1:3128".parse().unwrap()),
            ..FetchConfig::default()
        };
        let err = follows.network(&http).unwrap_err().to_string();
        assert!(err.contains("need a SOCKS5 one"), "{err}");
        // Without following, fetch.proxy does not touch the torrent traffic.
        assert_eq!(
            TorrentConfig::default().network(&fetch).unwrap().proxy,
            None
        );

        // Fail closed: required without any proxy refuses to start.
        let required = TorrentConfig {
            proxy_required: true,
            ..TorrentConfig::default()
        };
        let err = required
            .network(&FetchConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("proxy_required"), "{err}");
        let no_port = TorrentConfig {
            proxy: Some("socks5://proxy".parse().unwrap()),
            ..TorrentConfig::default()
        };
        assert!(no_port.network(&FetchConfig::default()).is_err());
        let escaped = TorrentConfig {
            proxy: Some("socks5://user:p%40ss@proxy:1080".parse().unwrap()),
            ..TorrentConfig::default()
        };
        let err = escaped
            .network(&FetchConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("%-escapes"), "{err}");
        let plain = TorrentConfig {
            proxy: Some("socks5://user:pass-1@proxy:1080".parse().unwrap()),
            ..TorrentConfig::default()
        };
        assert!(plain.network(&FetchConfig::default()).is_ok());
    }

    #[test]
    fn logs_are_for_humans_on_a_terminal_and_json_elsewhere_unless_set() {
        assert_eq!(LogConfig::default().format, LogFormat::Auto);
        assert!(
            !LogFormat::Auto.json(true),
            "a terminal gets readable lines"
        );
        assert!(LogFormat::Auto.json(false), "a pipe or file gets JSON");
        assert!(LogFormat::Json.json(true), "json set explicitly wins");
        assert!(!LogFormat::Pretty.json(false), "pretty set explicitly wins");
        for (value, want) in [
            ("auto", LogFormat::Auto),
            ("json", LogFormat::Json),
            ("pretty", LogFormat::Pretty),
        ] {
            figment::Jail::expect_with(|jail| {
                jail.set_env("FERRY_LOG__FORMAT", value);
                assert_eq!(Config::load(None).unwrap().config.log.format, want);
                Ok(())
            });
        }
    }

    #[test]
    fn loki_is_off_by_default_and_set_by_its_url() {
        let defaults = Config::default().log.loki;
        assert!(defaults.url.is_none(), "no Loki unless one is named");
        assert_eq!(defaults.buffer_lines.get(), 10_000);
        figment::Jail::expect_with(|jail| {
            jail.set_env("FERRY_LOG__LOKI__URL", "http://loki:3100");
            jail.set_env("FERRY_LOG__LOKI__BUFFER_LINES", "500");
            let loaded = Config::load(None).unwrap();
            let loki = loaded.config.log.loki;
            assert_eq!(loki.url.unwrap().as_str(), "http://loki:3100/");
            assert_eq!(loki.buffer_lines.get(), 500);
            assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
            Ok(())
        });
    }

    #[test]
    fn a_secret_of_the_wrong_shape_is_never_echoed() {
        let key = "ab".repeat(32);
        for (var, value) in [
            ("FERRY_OLD_SECRET_KEYS", key.clone()),
            ("FERRY_API_TOKEN", "[\"tok3n-value-123\"]".to_owned()),
        ] {
            figment::Jail::expect_with(|jail| {
                jail.set_env(var, &value);
                let err = format!("{:#}", Config::load(None).err().unwrap());
                assert!(
                    !err.contains(&key) && !err.contains("tok3n"),
                    "{var}: {err}"
                );
                Ok(())
            });
        }
    }

    #[test]
    fn nonsense_values_are_refused_with_the_key() {
        for (key, value, says) in [
            ("FERRY_SEED__RATIO", "-2", "seed.ratio"),
            ("FERRY_SEED__RATIO", "0", "seed.ratio"),
            (
                "FERRY_PACKAGE__TRACKERS",
                "[\"javascript:alert(1)\"]",
                "package.trackers",
            ),
            (
                "FERRY_PACKAGE__TRACKERS",
                "[\"ftp://t.example/a\"]",
                "package.trackers",
            ),
            ("FERRY_WORKERS__SEEDS", "0", "workers.seeds"),
        ] {
            figment::Jail::expect_with(|jail| {
                jail.set_env(key, value);
                let err = format!("{:#}", Config::load(None).err().unwrap());
                assert!(err.contains(says), "{key}={value}: {err}");
                Ok(())
            });
        }
    }

    /// Load with one variable set; the error's text, or `None` when it loads.
    fn load_with(key: &str, value: &str) -> Option<String> {
        let mut out = None;
        figment::Jail::expect_with(|jail| {
            jail.set_env(key, value);
            out = Config::load(None).err().map(|e| format!("{e:#}"));
            Ok(())
        });
        out
    }

    #[test]
    fn every_kind_of_value_is_parsed_at_load_and_a_bad_one_names_its_key() {
        for (key, value, says) in [
            // Choices.
            (
                "FERRY_FETCH__PROXY_DNS",
                "remot",
                r#"fetch.proxy_dns: expected one of "proxy", "local", got "remot" (from FERRY_FETCH__PROXY_DNS)"#,
            ),
            ("FERRY_LOG__FORMAT", "jsno", "log.format: expected one of"),
            (
                "FERRY_LOG__LOKI__URL",
                "loki:3100",
                "log.loki.url: expected an http:// or https:// URL",
            ),
            ("FERRY_LOG__LOKI__URL", "udp://loki:3100", "log.loki.url"),
            (
                "FERRY_LOG__LOKI__BUFFER_LINES",
                "0",
                "log.loki.buffer_lines",
            ),
            // Address ranges and addresses.
            (
                "FERRY_FETCH__ALLOW",
                r#"["10.0.0.0/8", "10.0.0/8"]"#,
                r#"fetch.allow[1]: "10.0.0/8" is not an address range like 10.0.0.0/8 or ::1/128 (from FERRY_FETCH__ALLOW)"#,
            ),
            (
                "FERRY_STORAGE__ALLOW",
                r#"["10.0.0.0/33"]"#,
                "storage.allow",
            ),
            ("FERRY_TORRENT__ALLOW", r#"["lan"]"#, "torrent.allow"),
            (
                "FERRY_HOSTS",
                r#"{files = "10.0.0"}"#,
                "hosts.files: invalid IP address syntax (from FERRY_HOSTS)",
            ),
            (
                "FERRY_WORKERS__PROBE_LISTEN",
                "localhost",
                "workers.probe_listen",
            ),
            // URLs.
            (
                "FERRY_FETCH__PROXY",
                "socks://127.0.0.1:1080",
                r#"fetch.proxy: expected an http://, https://, socks5:// or socks5h:// URL, got the scheme "socks""#,
            ),
            ("FERRY_FETCH__PROXY", "127.0.0.1:1080", "fetch.proxy"),
            (
                "FERRY_TORRENT__PROXY",
                "http://127.0.0.1:3128",
                r#"torrent.proxy: expected a socks5:// or socks5h:// URL, got the scheme "http""#,
            ),
            ("FERRY_REDIS_URL", "http://redis:6379", "redis_url"),
            ("FERRY_DATABASE_URL", "mysql://db/ferry", "database_url"),
            (
                "FERRY_GOOGLE__TOKEN_URL",
                "oauth2.googleapis.com/token",
                "google.token_url",
            ),
            ("FERRY_GOOGLE__API_URL", "file:///etc/", "google.api_url"),
            (
                "FERRY_GOOGLE__AUTH_URL",
                "javascript:alert(1)",
                "google.auth_url",
            ),
            (
                "FERRY_PACKAGE__TRACKERS",
                r#"["udp:///announce"]"#,
                "package.trackers",
            ),
            // Speed limits below one 16 KiB block per second.
            (
                "FERRY_TORRENT__DOWNLOAD_LIMIT",
                "1000",
                "torrent.download_limit is 1000 bytes per second; it must be at least 16384",
            ),
            (
                "FERRY_TORRENT__UPLOAD_LIMIT",
                "16383",
                "torrent.upload_limit",
            ),
            // Counts and limits that must not be zero.
            (
                "FERRY_WORKERS__DOWNLOADS",
                "0",
                "workers.downloads: expected a whole number of at least 1, got unsigned int `0`",
            ),
            ("FERRY_WORKERS__UPLOADS", "0", "workers.uploads"),
            ("FERRY_WORKERS__FETCHES", "0", "workers.fetches"),
            ("FERRY_WORKERS__MAX_ATTEMPTS", "0", "workers.max_attempts"),
            ("FERRY_LIMITS__MAX_FILES", "0", "limits.max_files"),
            (
                "FERRY_LIMITS__MAX_TOTAL_BYTES",
                "0",
                "limits.max_total_bytes",
            ),
            (
                "FERRY_LIMITS__MAX_TORRENT_FILE_BYTES",
                "0",
                "limits.max_torrent_file_bytes",
            ),
            ("FERRY_LIMITS__MAX_STREAMS", "0", "limits.max_streams"),
            (
                "FERRY_LIMITS__MAX_STREAMS_PER_OWNER",
                "0",
                "limits.max_streams_per_owner",
            ),
            (
                "FERRY_STORAGE__UPLOAD_CONCURRENCY",
                "0",
                "storage.upload_concurrency",
            ),
            ("FERRY_FETCH__MAX_BYTES", "0", "fetch.max_bytes"),
            ("FERRY_TORRENT__PEER_LIMIT", "0", "torrent.peer_limit"),
            (
                "FERRY_TORRENT__MAX_CONNECTIONS",
                "0",
                "torrent.max_connections",
            ),
            (
                "FERRY_TORRENT__MAX_CONNECTIONS",
                "1000001",
                "torrent.max_connections is 1000001; it must be at most 1000000",
            ),
            (
                "FERRY_TORRENT__MAX_CONNECTIONS",
                "-3",
                "torrent.max_connections",
            ),
            ("FERRY_WORKERS__DOWNLOADS", "-1", "workers.downloads"),
            // Intervals.
            (
                "FERRY_WORKERS__PROGRESS_INTERVAL",
                "0s",
                "workers.progress_interval: expected a duration longer than zero",
            ),
            ("FERRY_WORKERS__LEASE", "soon", "workers.lease"),
            (
                "FERRY_WORKERS__RECONCILE_EVERY",
                "0ms",
                "workers.reconcile_every",
            ),
            (
                "FERRY_TORRENT__RESOLVE_TIMEOUT",
                "0m",
                "torrent.resolve_timeout",
            ),
            (
                "FERRY_TORRENT__STREAM_TIMEOUT",
                "0s",
                "torrent.stream_timeout",
            ),
            ("FERRY_FETCH__READ_TIMEOUT", "0s", "fetch.read_timeout"),
            ("FERRY_STORAGE__PRESIGN_TTL", "0s", "storage.presign_ttl"),
            ("FERRY_AUTH__LINK_TTL", "0s", "auth.link_ttl"),
            ("FERRY_AUTH__LINK_TTL", "-5m", "auth.link_ttl"),
        ] {
            let err = load_with(key, value).unwrap_or_else(|| panic!("{key}={value} was accepted"));
            assert!(err.contains(says), "{key}={value}: {err}");
        }
    }

    #[test]
    fn the_shared_dir_is_set_or_defaulted_by_serve_only() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("FERRY_DATA_DIR", "/srv/ferry");
            let c = Config::load(None).unwrap().config;
            assert_eq!(c.shared_dir(), None, "distributed: none unless set");
            let mut relative = c.for_serve();
            relative.data_dir = PathBuf::from("ferry-data");
            relative.storage.shared_dir = None;
            assert!(
                relative
                    .for_serve()
                    .shared_dir()
                    .is_some_and(|d| d.is_absolute()),
                "shown to users, so absolute"
            );
            assert_eq!(
                c.for_serve().shared_dir(),
                Some(PathBuf::from("/srv/ferry/shared"))
            );
            jail.set_env("FERRY_STORAGE__SHARED_DIR", "/mnt/media");
            let loaded = Config::load(None).unwrap();
            assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
            let c = loaded.config;
            assert_eq!(c.shared_dir(), Some(PathBuf::from("/mnt/media")));
            assert_eq!(c.for_serve().shared_dir(), c.shared_dir());
            Ok(())
        });
    }

    #[test]
    fn a_refused_url_is_not_repeated_in_the_message() {
        for (key, value) in [
            ("FERRY_DATABASE_URL", "mysql://ferry:hunter2@db/ferry"),
            ("FERRY_REDIS_URL", "http://:hunter2@redis:6379"),
            ("FERRY_FETCH__PROXY", "ftp://user:hunter2@proxy:21"),
            ("FERRY_LOG__LOKI__URL", "tcp://user:hunter2@loki:3100"),
        ] {
            let err = load_with(key, value).unwrap_or_else(|| panic!("{key} accepted"));
            assert!(!err.contains("hunter2"), "{key}: {err}");
        }
    }

    #[test]
    fn typed_values_load_from_their_usual_spellings() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("FERRY_FETCH__PROXY_DNS", "local");
            jail.set_env("FERRY_FETCH__PROXY", "socks5h://127.0.0.1:1080");
            jail.set_env("FERRY_FETCH__ALLOW", r#"["10.0.0.0/8", "127.0.0.1"]"#);
            jail.set_env("FERRY_REDIS_URL", "redis://:pw@redis:6379/0");
            jail.set_env(
                "FERRY_DATABASE_URL",
                "sqlite:///srv/my data/ferry.db?mode=rwc",
            );
            jail.set_env(
                "FERRY_PACKAGE__TRACKERS",
                r#"["udp://t.example:6969/announce"]"#,
            );
            jail.set_env("FERRY_WORKERS__MAX_ATTEMPTS", "3");
            jail.set_env("FERRY_AUTH__LINK_TTL", "2s");
            let c = Config::load(None).unwrap().config;
            assert_eq!(c.auth.link_ttl, Duration::from_secs(2));
            assert_eq!(c.fetch.proxy_dns, ProxyDns::Local);
            assert_eq!(c.fetch.proxy.as_ref().unwrap().scheme(), "socks5h");
            let allow: Vec<String> = c.fetch.allow.iter().map(ToString::to_string).collect();
            assert_eq!(allow, ["10.0.0.0/8", "127.0.0.1/32"]);
            assert_eq!(c.redis_url.as_ref().unwrap().host_str(), Some("redis"));
            // A SQLite path reaches the driver as written.
            assert_eq!(c.database_url(), "sqlite:///srv/my data/ferry.db?mode=rwc");
            assert_eq!(
                format!("{:?}", c.database_url),
                "Some(sqlite:///srv/my data/ferry.db?mode=rwc)"
            );
            assert_eq!(
                c.package.trackers[0].as_str(),
                "udp://t.example:6969/announce"
            );
            assert_eq!(c.workers.max_attempts.get(), 3);
            Ok(())
        });
        // In a jail of its own: other tests' jails set bad values in this process's
        // environment, and only the jail's lock keeps them out meanwhile.
        figment::Jail::expect_with(|_| {
            let defaults = Config::load(None);
            assert!(defaults.is_ok(), "the defaults load: {defaults:?}");
            Ok(())
        });
        assert_eq!(
            Config::default().auth.link_ttl,
            Duration::from_secs(3600),
            "links work an hour by default"
        );
        assert_eq!(
            (
                Config::default().torrent.peer_limit,
                Config::default().torrent.max_connections
            ),
            (None, None),
            "librqbit's 128 peers per torrent, no cap in all"
        );
    }

    #[test]
    fn a_bad_value_in_the_file_names_the_key_and_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "ferry.toml",
                r#"
                [fetch]
                proxy_dns = "remote"
                "#,
            )?;
            let err = format!(
                "{:#}",
                Config::load(Some(Path::new("ferry.toml"))).unwrap_err()
            );
            assert!(err.contains("fetch.proxy_dns: expected one of"), "{err}");
            assert!(err.contains("ferry.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn file_then_environment_override_defaults_and_unknown_keys_are_reported() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "ferry.toml",
                r#"
                listen = "127.0.0.1:9999"
                data_dir = "/srv/ferry"
                colour = "blue"
                [torrent]
                dht = false
                resolve_timeout = "2m"
                listen = "off"
                peer_limit = 40
                max_connections = 300
                [workers]
                downloads = 7
                "#,
            )?;
            jail.set_env("FERRY_WORKERS__DOWNLOADS", "9");
            jail.set_env("FERRY_TORRENT__MAX_CONNECTIONS", "200");
            jail.set_env("FERRY_API_TOKEN", "12345");
            jail.set_env("FERRY_TORRENT__NONSENSE", "1");
            jail.set_env("FERRY_FETCH__HOSTS", "{files-internal = \"10.0.0.7\"}");
            let loaded = Config::load(Some(Path::new("ferry.toml"))).unwrap();
            let c = loaded.config;
            assert_eq!(c.listen.port(), 9999);
            assert_eq!(c.data_dir, PathBuf::from("/srv/ferry"));
            assert!(!c.torrent.dht);
            assert_eq!(c.torrent.listen, None);
            assert_eq!(c.torrent.resolve_timeout, Duration::from_secs(120));
            assert_eq!(c.torrent.peer_limit.map(NonZeroUsize::get), Some(40));
            assert_eq!(c.torrent.max_connections.map(NonZeroUsize::get), Some(200));
            assert_eq!(c.workers.downloads.get(), 9);
            assert_eq!(c.api_token.as_ref().unwrap().expose(), "12345");
            assert_eq!(format!("{:?}", c.api_token), "Some(***)");
            assert_eq!(c.database_url(), "sqlite:///srv/ferry/ferry.db?mode=rwc");
            assert_eq!(c.fetch.hosts["files-internal"].to_string(), "10.0.0.7");
            assert_eq!(loaded.unknown_keys, vec!["colour", "torrent.nonsense"]);
            Ok(())
        });
    }

    #[test]
    fn a_secret_can_come_from_a_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("token.txt", "s3cret\n")?;
            jail.set_env("FERRY_API_TOKEN_FILE", "token.txt");
            let c = Config::load(None).unwrap().config;
            assert_eq!(c.api_token.unwrap().expose(), "s3cret");
            Ok(())
        });
    }

    #[test]
    fn a_wrong_type_names_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("FERRY_WORKERS__DOWNLOADS", "many");
            let err = format!("{:#}", Config::load(None).unwrap_err());
            assert!(err.to_lowercase().contains("downloads"), "{err}");
            Ok(())
        });
    }
}
