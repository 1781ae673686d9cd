//! A real OpenID Connect provider on loopback: npm `oidc-provider` 9.x run by node from
//! `testkit/oidc` (installed there by `scripts/test-deps.sh` with `npm ci`), with one
//! confidential client, two users and JWT access tokens for Ferry's API; and [`login`], which
//! signs a user in through the provider's own login and consent forms as a browser would.
//!
//! Users: `alice` (groups `ferry-admins`, `staff`) and `bob` (`staff`), emails
//! `{user}@example.test`; any other login name is refused. PKCE (S256) is required. Signing keys
//! are RSA, written to the server's folder, and can be rotated ([`OidcServer::rotate_keys`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::Digest as _;

use crate::Proc;

/// The client registered at the provider (a confidential client, `client_secret_basic`).
pub const CLIENT_ID: &str = "ferry-test";
pub const CLIENT_SECRET: &str = "ferry-test-secret";
/// The API that JWT access tokens are for: the resource indicator and their `aud`.
pub const RESOURCE: &str = "urn:ferry:api";
/// The users who can sign in, and the groups the provider gives them.
pub const ALICE: &str = "alice";
pub const BOB: &str = "bob";
pub const ADMIN_GROUP: &str = "ferry-admins";

/// The provider's current signing key, for tests that make tokens the IdP did not issue
/// (expired, for another audience…) with a valid signature.
#[derive(Debug, Clone)]
pub struct SigningKey {
    pub kid: String,
    /// The RSA private key, PKCS#1 DER (`jsonwebtoken::EncodingKey::from_rsa_der`).
    pub pkcs1_der: Vec<u8>,
}

/// A running provider; stopped on drop.
#[derive(Debug)]
pub struct OidcServer {
    pub port: u16,
    redirect_uris: Vec<String>,
    /// Whether a loopback redirect URI matches on any port.
    any_port: bool,
    /// Incremented by each key rotation: names the key file in use.
    generation: u32,
    dir: PathBuf,
    proc: Option<Proc>,
    _scratch: Option<tempfile::TempDir>,
}

impl OidcServer {
    /// Starts the provider on a free port with a client that may be sent back to
    /// `redirect_uris` exactly; `None` when node or the npm package is missing outside CI.
    pub fn start(redirect_uris: &[&str]) -> Option<Self> {
        Self::launch(redirect_uris, false)
    }

    /// Like [`Self::start`], but a loopback redirect URI matches whatever its port (RFC 8252
    /// §7.3, a "native" client): register `http://127.0.0.1/auth/callback/x` before Ferry has
    /// bound its port, and come back to `http://127.0.0.1:PORT/auth/callback/x`.
    pub fn start_any_port(redirect_uris: &[&str]) -> Option<Self> {
        Self::launch(redirect_uris, true)
    }

    fn launch(redirect_uris: &[&str], any_port: bool) -> Option<Self> {
        let script = provider_dir().join("provider.mjs");
        if !crate::require(&["node"]) {
            return None;
        }
        if !provider_dir().join("node_modules/oidc-provider").is_dir() {
            crate::unavailable(
                "oidc-provider (npm)",
                "testkit/oidc/node_modules is missing (npm ci --prefix testkit/oidc)",
            );
            return None;
        }
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let (scratch, dir) = crate::scratch();
        let mut server = Self {
            port: 0,
            redirect_uris: redirect_uris.iter().map(|u| (*u).to_owned()).collect(),
            any_port,
            generation: 0,
            dir,
            proc: None,
            _scratch: scratch,
        };
        let (proc, port) = crate::spawn_on_free_port("oidc-provider", &server.log(), |port| {
            server.command(&script, port)
        });
        server.port = port;
        server.proc = Some(proc);
        Some(server)
    }

    /// `http://127.0.0.1:PORT` (no trailing slash), exactly as the tokens' `iss`.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer())
    }

    /// Stops the provider (the port stays reserved for [`Self::restart`]). Its state — sessions,
    /// codes, grants — is lost; its keys are kept.
    pub fn stop(&mut self) {
        self.proc = None;
    }

    /// Starts the provider again on the same port with the same keys.
    pub fn restart(&mut self) {
        self.stop();
        let script = provider_dir().join("provider.mjs");
        let mut proc = Proc::spawn(
            "oidc-provider",
            self.command(&script, self.port),
            self.log(),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                proc.child.try_wait().unwrap().is_none(),
                "oidc-provider exited on restart (port {} taken?):\n{}",
                self.port,
                proc.log_text()
            );
            assert!(Instant::now() < deadline, "oidc-provider did not restart");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.proc = Some(proc);
    }

    /// Restarts the provider with a new signing key; the old key is no longer published.
    pub fn rotate_keys(&mut self) {
        self.generation += 1;
        self.restart();
    }

    /// Restarts the provider with a client that may be sent back to these URIs instead.
    pub fn set_redirect_uris(&mut self, redirect_uris: &[&str]) {
        self.redirect_uris = redirect_uris.iter().map(|u| (*u).to_owned()).collect();
        self.restart();
    }

    /// The key the provider signs with now.
    pub fn signing_key(&self) -> SigningKey {
        let jwks: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.keys_file()).unwrap()).unwrap();
        let mut der = self.keys_file().into_os_string();
        der.push(".der");
        SigningKey {
            kid: jwks["keys"][0]["kid"].as_str().unwrap().to_owned(),
            pkcs1_der: std::fs::read(der).unwrap(),
        }
    }

    /// What the provider logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// A JWT access token for [`RESOURCE`] issued to `user` (`sub` = user, with `email`, `name`
    /// and `groups`), through a full code + PKCE login at the first redirect URI.
    pub async fn access_token(&self, user: &str) -> String {
        let redirect_uri = self
            .redirect_uris
            .first()
            .expect("the server has no redirect URI");
        let verifier = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(&verifier));
        let state = uuid::Uuid::new_v4().simple().to_string();
        let mut authorize = url::Url::parse(&format!("{}/auth", self.issuer())).unwrap();
        authorize
            .query_pairs_mut()
            .append_pair("client_id", CLIENT_ID)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid ferry")
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("resource", RESOURCE);
        let callback = url::Url::parse(&login(authorize.as_str(), user).await).unwrap();
        let query: HashMap<String, String> = callback.query_pairs().into_owned().collect();
        assert_eq!(query.get("state"), Some(&state), "callback: {callback}");
        let code = query
            .get("code")
            .unwrap_or_else(|| panic!("no code: {callback}"));
        self.token_request(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &verifier),
            ("resource", RESOURCE),
        ])
        .await
    }

    /// A JWT access token for [`RESOURCE`] issued to the client itself (`sub` = [`CLIENT_ID`]),
    /// by the client-credentials grant.
    pub async fn client_credentials_token(&self) -> String {
        self.token_request(&[
            ("grant_type", "client_credentials"),
            ("scope", "ferry"),
            ("resource", RESOURCE),
        ])
        .await
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> String {
        let response = reqwest::Client::new()
            .post(format!("{}/token", self.issuer()))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(form)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(status.is_success(), "token request refused: {body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    fn command(&self, script: &Path, port: u16) -> Command {
        let mut cmd = Command::new("node");
        cmd.arg(script)
            .current_dir(&self.dir)
            .env("OIDC_PORT", port.to_string())
            .env("OIDC_KEYS", self.keys_file())
            .env("OIDC_REDIRECT_URIS", self.redirect_uris.join(" "))
            .env("OIDC_RESOURCE", RESOURCE)
            .env("OIDC_CLIENT_ID", CLIENT_ID)
            .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .env(
                "OIDC_APPLICATION_TYPE",
                if self.any_port { "native" } else { "web" },
            );
        cmd
    }

    fn keys_file(&self) -> PathBuf {
        self.dir.join(format!("keys-{}.json", self.generation))
    }

    fn log(&self) -> PathBuf {
        self.dir.join("oidc-provider.log")
    }
}

/// Where `provider.mjs`, its `package.json` and `node_modules` are.
pub fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// Signs `user` in at the provider, starting from `authorize_url` (what a relying party sends
/// the browser to): follows the provider's redirects, fills its login form (any password) and
/// presses its consent button, keeping cookies as a browser does, and stops at the redirect
/// to the `redirect_uri` named in `authorize_url`. Returns that callback URL (with `code` and
/// `state`, or `error`).
pub async fn login(authorize_url: &str, user: &str) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut url = url::Url::parse(authorize_url).unwrap();
    let redirect_uri = url
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned())
        .expect("the authorize URL has no redirect_uri");
    let mut jar = CookieJar::default();
    let mut form: Option<Vec<(&str, &str)>> = None;
    for _ in 0..12 {
        let request = match form.take() {
            Some(fields) => client.post(url.clone()).form(&fields),
            None => client.get(url.clone()),
        };
        let request = match jar.header(&url) {
            Some(cookies) => request.header(reqwest::header::COOKIE, cookies),
            None => request,
        };
        let response = request.send().await.unwrap();
        jar.store(&response);
        if response.status().is_redirection() {
            let location = response.headers()[reqwest::header::LOCATION]
                .to_str()
                .unwrap();
            let next = url.join(location).unwrap();
            let mut bare = next.clone();
            bare.set_query(None);
            if bare.as_str() == redirect_uri {
                return next.to_string();
            }
            url = next;
            continue;
        }
        let status = response.status();
        let page = response.text().await.unwrap();
        assert!(status.is_success(), "{status} at {url}:\n{page}");
        let action = attribute(&page, "action=\"").expect("a page without a form");
        form = Some(match attribute(&page, "name=\"prompt\" value=\"") {
            Some("login") => vec![("prompt", "login"), ("login", user), ("password", "any")],
            Some("consent") => vec![("prompt", "consent")],
            other => panic!("unexpected page ({other:?}) at {url}:\n{page}"),
        });
        url = url.join(action).unwrap();
    }
    panic!("the login did not come back to {redirect_uri}");
}

/// The value after `prefix` up to the next `"` (the provider's pages escape `"` in values).
fn attribute<'p>(page: &'p str, prefix: &str) -> Option<&'p str> {
    let start = page.find(prefix)? + prefix.len();
    let len = page[start..].find('"')?;
    Some(&page[start..start + len])
}

/// Cookies for one host, by name and path, as a browser keeps them (only what the provider
/// uses: `Path`, and deletion by an expiry in the past or `Max-Age=0`).
#[derive(Default)]
struct CookieJar {
    cookies: HashMap<(String, String), String>,
}

impl CookieJar {
    fn store(&mut self, response: &reqwest::Response) {
        for header in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let Ok(header) = header.to_str() else {
                continue;
            };
            let mut parts = header.split(';').map(str::trim);
            let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let mut path = "/".to_owned();
            let mut deleted = value.is_empty();
            for attr in parts {
                let (key, val) = attr.split_once('=').unwrap_or((attr, ""));
                match key.to_ascii_lowercase().as_str() {
                    "path" => val.clone_into(&mut path),
                    "max-age" => deleted |= val.trim() == "0",
                    "expires" => deleted |= val.contains("1970"),
                    _ => {}
                }
            }
            let key = (name.to_owned(), path);
            if deleted {
                self.cookies.remove(&key);
            } else {
                self.cookies.insert(key, value.to_owned());
            }
        }
    }

    fn header(&self, url: &url::Url) -> Option<String> {
        let cookies: Vec<String> = self
            .cookies
            .iter()
            .filter(|((_, path), _)| {
                url.path() == path
                    || url
                        .path()
                        .starts_with(&format!("{}/", path.trim_end_matches('/')))
            })
            .map(|((name, _), value)| format!("{name}={value}"))
            .collect();
        (!cookies.is_empty()).then(|| cookies.join("; "))
    }
}
