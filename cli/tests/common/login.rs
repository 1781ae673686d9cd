//! Signing in as a browser would, for the end-to-end tests: the first admin's setup link,
//! local users added with `ferry user add`, session cookies, and error answers.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::Ferry;

/// Every test user's password.
pub const PASSWORD: &str = "correct horse battery";

/// The one-time setup link a server printed at its start.
pub fn setup_link(f: &Ferry) -> String {
    let said = f.proc.log_text();
    let at = said
        .find("\"link\": \"")
        .unwrap_or_else(|| panic!("no setup link in the start-up message:\n{said}"));
    said[at + 9..at + 9 + 64].to_owned()
}

/// The value of cookie `name` a response sets, and the whole `Set-Cookie` line.
pub fn set_cookie(r: &reqwest::Response, name: &str) -> Option<(String, String)> {
    let line = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))?;
    let value = line[name.len() + 1..].split(';').next().unwrap().to_owned();
    Some((value, line))
}

/// The session cookie a login answer sets, checked for its attributes.
pub fn session_cookie(r: &reqwest::Response) -> String {
    let (value, line) = set_cookie(r, "ferry_session")
        .unwrap_or_else(|| panic!("no session cookie: {:?}", r.headers()));
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(line.contains(attribute), "{attribute} missing: {line}");
    }
    value
}

/// A client that holds a session cookie, as a browser on Ferry's own pages would (it sends
/// its `Origin` with every request that changes something), and the other cookies Ferry
/// set for it, each sent only under its path.
#[derive(Clone)]
pub struct Browser {
    pub base: String,
    /// The session cookie's value (empty: a browser with no session).
    pub cookie: String,
    /// Other cookies: (name, value, the path they are sent under).
    pub cookies: Vec<(String, String, String)>,
    pub http: reqwest::Client,
}

impl Browser {
    pub fn new(f: &Ferry, cookie: String) -> Self {
        Self {
            base: f.base.clone(),
            cookie,
            cookies: Vec::new(),
            http: reqwest::Client::new(),
        }
    }

    /// A browser that has not signed in.
    pub fn signed_out(f: &Ferry) -> Self {
        Self::new(f, String::new())
    }

    /// The same browser, following no redirect on its own (to look at each one).
    pub fn manual_redirects(mut self) -> Self {
        self.http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        self
    }

    /// Holds cookie `name` with `value`, sent under `path`; `None` (or an empty value, as
    /// a cookie being cleared has) drops it.
    pub fn hold_cookie(&mut self, name: &str, path: &str, value: Option<String>) {
        self.cookies.retain(|c| c.0 != name);
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            self.cookies.push((name.to_owned(), value, path.to_owned()));
        }
    }

    /// The value of cookie `name`, if held.
    pub fn held_cookie(&self, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .find(|c| c.0 == name)
            .map(|c| c.1.clone())
    }

    /// Keeps what a response's `Set-Cookie` says of cookie `name` (sent under `path`), if
    /// it says anything.
    pub fn remember(&mut self, r: &reqwest::Response, name: &str, path: &str) {
        if let Some((value, _)) = set_cookie(r, name) {
            self.hold_cookie(name, path, Some(value));
        }
    }

    /// The `Cookie` header this browser sends with a request for `path` (on Ferry).
    pub fn cookie_header(&self, path: &str) -> Option<String> {
        let session = (!self.cookie.is_empty()).then(|| format!("ferry_session={}", self.cookie));
        let others = self
            .cookies
            .iter()
            .filter(|(_, _, under)| path.starts_with(under.as_str()))
            .map(|(name, value, _)| format!("{name}={value}"));
        let all: Vec<String> = session.into_iter().chain(others).collect();
        (!all.is_empty()).then(|| all.join("; "))
    }

    /// A page load of `path_and_query` on Ferry (any path, not only the API's): a GET with
    /// the cookies for that path.
    pub fn visit(&self, path_and_query: &str) -> reqwest::RequestBuilder {
        let path = path_and_query.split('?').next().unwrap_or_default();
        let r = self.http.get(format!("{}{path_and_query}", self.base));
        match self.cookie_header(path) {
            Some(cookies) => r.header("Cookie", cookies),
            None => r,
        }
    }

    /// A request to the API (`/api/v1{path}`) as Ferry's own pages make it.
    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}/api/v1{path}", self.base);
        let under = format!("/api/v1{}", path.split('?').next().unwrap_or_default());
        let mut r = self.http.request(method.clone(), url);
        if let Some(cookies) = self.cookie_header(&under) {
            r = r.header("Cookie", cookies);
        }
        if method == Method::GET {
            r
        } else {
            r.header("Origin", &self.base)
        }
    }

    /// (status, JSON body or null).
    pub async fn json(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.req(method, path);
        if let Some(body) = body {
            r = r.json(&body);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The signed-in user's id.
    pub async fn user_id(&self) -> String {
        let (_, me) = self.json(Method::GET, "/me", None).await;
        me["user"]["id"].as_str().unwrap().to_owned()
    }

    /// Submits a URL job and waits until it is completed; returns its id.
    pub async fn completed_url_job(&self, url: &str, extra: Value) -> String {
        let mut body = json!({"source": {"url": url}});
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        let (status, job) = self.json(Method::POST, "/jobs", Some(body)).await;
        assert_eq!(status, 201, "{job}");
        let id = job["id"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, job) = self.json(Method::GET, &format!("/jobs/{id}"), None).await;
            match job["status"].as_str() {
                Some("completed") => return id,
                Some("failed") => panic!("job failed: {job}"),
                _ => {}
            }
            assert!(Instant::now() < deadline, "job never completed: {job}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET /jobs/{id}/files/{index}/link`: (status, body).
    pub async fn link(&self, id: &str, index: u32) -> (u16, Value) {
        self.json(Method::GET, &format!("/jobs/{id}/files/{index}/link"), None)
            .await
    }

    /// A link that must be made: its URL.
    pub async fn link_url(&self, id: &str, index: u32) -> String {
        let (status, link) = self.link(id, index).await;
        assert_eq!(status, 200, "{link}");
        link["url"].as_str().unwrap().to_owned()
    }
}

/// `POST /auth/login` with a name and password.
pub async fn login(f: &Ferry, name: &str, password: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(f.url("/auth/login"))
        .json(&json!({"username": name, "password": password}))
        .send()
        .await
        .unwrap()
}

/// User `name` (with [`PASSWORD`]), signed in.
pub async fn browser(f: &Ferry, name: &str) -> Browser {
    let r = login(f, name, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    Browser::new(f, session_cookie(&r))
}

/// The first admin (`root`), set up with the start-up link, signed in.
pub async fn admin(f: &Ferry) -> Browser {
    let r = reqwest::Client::new()
        .post(f.url("/auth/setup"))
        .json(&json!({"link": setup_link(f), "username": "root", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    Browser::new(f, session_cookie(&r))
}

/// `ferry user add NAME [--admin]` with [`PASSWORD`] on stdin, as an operator would.
pub fn add_user(f: &Ferry, name: &str, admin: bool) {
    use std::io::Write;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["user", "add", name, "--password-stdin", "--data-dir"])
        .arg(&f.data_dir)
        .env("FERRY_LOG__LEVEL", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if admin {
        cmd.arg("--admin");
    }
    let mut child = cmd.spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ferry user add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts an error answer's status, code and that it says something; returns its body.
pub async fn expect(resp: reqwest::Response, status: u16, code: &str) -> Value {
    let got = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}
