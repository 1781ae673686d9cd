//! A local stand-in for Google's OAuth endpoints and the Drive v3 API, for tests (the real
//! ones cannot be reached here). It speaks the same wire protocol Ferry uses: the consent page
//! (it agrees at once, for the one client and redirect URI registered at start, and records
//! the PKCE challenge), authorization-code grants (each code once, with its redirect URI and
//! S256 verifier), refresh-token grants, file search with `q`, folder creation, get/delete
//! (recursive for folders), and resumable uploads (`uploadType=resumable`, `Content-Range`
//! chunks, `308 Resume Incomplete` with `Range`, status queries with `bytes */total`). It
//! checks bearer tokens and refuses chunks that do not continue where the session is.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use poem::http::{HeaderMap, StatusCode};
use poem::listener::TcpAcceptor;
use poem::web::{Data, Form, Json, Path, Query};
use poem::{EndpointExt, IntoResponse, Response, Route, Server, handler};
use serde_json::{Value, json};

const FOLDER: &str = "application/vnd.google-apps.folder";

#[derive(Debug, Clone)]
pub struct FakeFile {
    pub id: String,
    pub name: String,
    pub mime: String,
    pub parents: Vec<String>,
    pub content: Vec<u8>,
}

struct Session {
    name: String,
    parent: String,
    total: u64,
    received: Vec<u8>,
    done: Option<String>,
}

/// The operator's OAuth client, as registered with Google.
#[derive(Debug, Clone)]
pub struct FakeClient {
    pub client_id: String,
    pub client_secret: String,
    /// The one redirect URI the consent page sends browsers back to.
    pub redirect_uri: String,
}

/// An authorization code the consent page issued.
struct IssuedCode {
    redirect_uri: String,
    challenge: String,
    offline: bool,
    used: bool,
}

#[derive(Default)]
struct State {
    files: HashMap<String, FakeFile>,
    sessions: HashMap<String, Session>,
    tokens: Vec<String>,
    /// Refresh tokens accepted: the one given at start and those granted since.
    refresh_tokens: Vec<String>,
    client: Option<FakeClient>,
    codes: HashMap<String, IssuedCode>,
    challenges: Vec<String>,
    deny_consent: bool,
    withhold_refresh_tokens: bool,
    next: u64,
    chunks: u64,
}

impl State {
    fn id(&mut self, kind: &str) -> String {
        self.next += 1;
        format!("{kind}{:06}", self.next)
    }

    fn json(f: &FakeFile, base: &str) -> Value {
        json!({
            "id": f.id, "name": f.name, "mimeType": f.mime, "parents": f.parents,
            "size": f.content.len().to_string(),
            "webViewLink": format!("{base}/file/{}/view", f.id),
        })
    }
}

#[derive(Clone)]
pub struct FakeDrive {
    state: Arc<Mutex<State>>,
    /// The API root (`api_url`), ending in `/`.
    pub url: String,
    /// The profile's folder.
    pub root_folder: String,
}

fn authorized(state: &Mutex<State>, headers: &HeaderMap) -> bool {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer.is_some_and(|t| state.lock().unwrap().tokens.iter().any(|k| k == t))
}

fn error(status: StatusCode, reason: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": status.as_u16(), "message": reason}})),
    )
        .into_response()
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({"error": error}))).into_response()
}

/// The consent page: refuses an unknown client, another redirect URI, a request without an
/// S256 challenge or the Drive scope; otherwise the user agrees (or, when told, declines)
/// at once and the browser goes back with a code.
#[handler]
fn authorize(Data(d): Data<&FakeDrive>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut st = d.state.lock().unwrap();
    let param = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let Some(client) = st.client.clone() else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client");
    };
    if param("client_id") != client.client_id {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if param("redirect_uri") != client.redirect_uri {
        return oauth_error(StatusCode::BAD_REQUEST, "redirect_uri_mismatch");
    }
    if param("response_type") != "code" {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_response_type");
    }
    if param("code_challenge_method") != "S256" || param("code_challenge").len() < 43 {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    if !param("scope").split(' ').any(|s| s == crate::DRIVE_SCOPE) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
    }
    let mut back = url::Url::parse(&client.redirect_uri).unwrap();
    if st.deny_consent {
        back.query_pairs_mut().append_pair("error", "access_denied");
    } else {
        let code = st.id("code-");
        st.challenges.push(param("code_challenge").to_owned());
        let issued = IssuedCode {
            redirect_uri: client.redirect_uri.clone(),
            challenge: param("code_challenge").to_owned(),
            offline: param("access_type") == "offline",
            used: false,
        };
        st.codes.insert(code.clone(), issued);
        back.query_pairs_mut().append_pair("code", &code);
    }
    if let Some(state) = q.get("state") {
        back.query_pairs_mut().append_pair("state", state);
    }
    Response::builder()
        .status(StatusCode::FOUND)
        .header("Location", back.as_str())
        .finish()
}

/// An authorization-code grant: the code once, for its redirect URI, client and verifier.
fn code_grant(st: &mut State, form: &HashMap<String, String>) -> Response {
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let Some(client) = st.client.clone() else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    if field("client_id") != client.client_id || field("client_secret") != client.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let Some(issued) = st.codes.get_mut(field("code")) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    let fresh = !std::mem::replace(&mut issued.used, true);
    let verified = crate::consent::s256(field("code_verifier")) == issued.challenge;
    if !fresh || !verified || field("redirect_uri") != issued.redirect_uri {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let offline = issued.offline && !st.withhold_refresh_tokens;
    let access = st.id("access-");
    st.tokens.push(access.clone());
    let mut answer = json!({
        "access_token": access, "expires_in": 3599, "token_type": "Bearer",
        "scope": crate::DRIVE_SCOPE,
    });
    if offline {
        let refresh = st.id("refresh-");
        st.refresh_tokens.push(refresh.clone());
        answer["refresh_token"] = json!(refresh);
    }
    Json(answer).into_response()
}

#[handler]
fn grant(Data(d): Data<&FakeDrive>, Form(form): Form<HashMap<String, String>>) -> Response {
    let mut st = d.state.lock().unwrap();
    if form.get("grant_type").map(String::as_str) == Some("authorization_code") {
        return code_grant(&mut st, &form);
    }
    if let Some(client) = &st.client
        && (form.get("client_id") != Some(&client.client_id)
            || form.get("client_secret") != Some(&client.client_secret))
    {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if form.get("grant_type").map(String::as_str) != Some("refresh_token")
        || !form
            .get("refresh_token")
            .is_some_and(|t| st.refresh_tokens.contains(t))
    {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let t = st.id("access-");
    st.tokens.push(t.clone());
    Json(json!({"access_token": t, "expires_in": 3600, "token_type": "Bearer"})).into_response()
}

/// The clauses Ferry sends: `name = '…'`, `'…' in parents`, `trashed = false`, `mimeType = '…'`.
fn matches(f: &FakeFile, q: &str) -> bool {
    let unquote = |s: &str| {
        s.trim()
            .trim_start_matches('\'')
            .trim_end_matches('\'')
            .replace("\\'", "'")
            .replace("\\\\", "\\")
    };
    q.split(" and ").all(|clause| {
        let c = clause.trim();
        if let Some(v) = c.strip_prefix("name = ") {
            f.name == unquote(v)
        } else if let Some(v) = c.strip_suffix(" in parents") {
            f.parents.contains(&unquote(v))
        } else if let Some(v) = c.strip_prefix("mimeType = ") {
            f.mime == unquote(v)
        } else {
            c == "trashed = false"
        }
    })
}

#[handler]
fn list(
    Data(d): Data<&FakeDrive>,
    headers: &HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&d.state, headers) {
        return error(StatusCode::UNAUTHORIZED, "bad token");
    }
    let st = d.state.lock().unwrap();
    let query = q.get("q").cloned().unwrap_or_default();
    let base = d.url.trim_end_matches('/');
    let files: Vec<Value> = st
        .files
        .values()
        .filter(|f| matches(f, &query))
        .map(|f| State::json(f, base))
        .collect();
    Json(json!({ "files": files })).into_response()
}

#[handler]
fn create(Data(d): Data<&FakeDrive>, headers: &HeaderMap, Json(meta): Json<Value>) -> Response {
    if !authorized(&d.state, headers) {
        return error(StatusCode::UNAUTHORIZED, "bad token");
    }
    let mut st = d.state.lock().unwrap();
    let parents: Vec<String> = meta["parents"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if parents.iter().any(|p| !st.files.contains_key(p)) {
        return error(StatusCode::NOT_FOUND, "parent not found");
    }
    let id = st.id("f");
    let f = FakeFile {
        id: id.clone(),
        name: meta["name"].as_str().unwrap_or("untitled").to_owned(),
        mime: meta["mimeType"]
            .as_str()
            .unwrap_or("application/octet-stream")
            .to_owned(),
        parents,
        content: Vec::new(),
    };
    let out = State::json(&f, d.url.trim_end_matches('/'));
    st.files.insert(id, f);
    Json(out).into_response()
}

#[handler]
fn get(
    Data(d): Data<&FakeDrive>,
    headers: &HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&d.state, headers) {
        return error(StatusCode::UNAUTHORIZED, "bad token");
    }
    let st = d.state.lock().unwrap();
    let Some(f) = st.files.get(&id) else {
        return error(StatusCode::NOT_FOUND, "file not found");
    };
    if q.get("alt").map(String::as_str) == Some("media") {
        return f.content.clone().into_response();
    }
    Json(State::json(f, d.url.trim_end_matches('/'))).into_response()
}

#[handler]
fn delete(Data(d): Data<&FakeDrive>, headers: &HeaderMap, Path(id): Path<String>) -> Response {
    if !authorized(&d.state, headers) {
        return error(StatusCode::UNAUTHORIZED, "bad token");
    }
    let mut st = d.state.lock().unwrap();
    if !st.files.contains_key(&id) {
        return error(StatusCode::NOT_FOUND, "file not found");
    }
    let mut gone = vec![id];
    while let Some(next) = gone.pop() {
        let children: Vec<String> = st
            .files
            .values()
            .filter(|f| f.parents.contains(&next))
            .map(|f| f.id.clone())
            .collect();
        st.files.remove(&next);
        gone.extend(children);
    }
    StatusCode::NO_CONTENT.into_response()
}

#[handler]
fn upload_start(
    Data(d): Data<&FakeDrive>,
    headers: &HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    Json(meta): Json<Value>,
) -> Response {
    if !authorized(&d.state, headers) {
        return error(StatusCode::UNAUTHORIZED, "bad token");
    }
    if q.get("uploadType").map(String::as_str) != Some("resumable") {
        return error(StatusCode::BAD_REQUEST, "only resumable uploads");
    }
    let Some(total) = headers
        .get("x-upload-content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "X-Upload-Content-Length is required",
        );
    };
    let mut st = d.state.lock().unwrap();
    let parent = meta["parents"][0].as_str().unwrap_or_default().to_owned();
    if !st.files.contains_key(&parent) {
        return error(StatusCode::NOT_FOUND, "parent not found");
    }
    let sid = st.id("session-");
    st.sessions.insert(
        sid.clone(),
        Session {
            name: meta["name"].as_str().unwrap_or("untitled").to_owned(),
            parent,
            total,
            received: Vec::new(),
            done: None,
        },
    );
    let location = format!(
        "{}upload/drive/v3/files?uploadType=resumable&upload_id={sid}",
        d.url
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("Location", location)
        .finish()
}

fn incomplete(received: usize) -> Response {
    let mut r = Response::builder().status(StatusCode::PERMANENT_REDIRECT);
    if received > 0 {
        r = r.header("Range", format!("bytes=0-{}", received - 1));
    }
    r.finish()
}

#[handler]
fn upload_chunk(
    Data(d): Data<&FakeDrive>,
    headers: &HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Vec<u8>,
) -> Response {
    if !authorized(&d.state, headers) {
        return error(StatusCode::UNAUTHORIZED, "bad token");
    }
    let Some(sid) = q.get("upload_id") else {
        return error(StatusCode::BAD_REQUEST, "no upload_id");
    };
    let range = headers
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut st = d.state.lock().unwrap();
    let base = d.url.trim_end_matches('/').to_owned();
    let Some(session) = st.sessions.get_mut(sid) else {
        return error(StatusCode::NOT_FOUND, "no such upload session");
    };
    if let Some(done) = &session.done {
        let done = done.clone();
        let f = st.files.get(&done).cloned();
        return match f {
            Some(f) => Json(State::json(&f, &base)).into_response(),
            None => error(StatusCode::NOT_FOUND, "gone"),
        };
    }
    let spec = range.strip_prefix("bytes ").unwrap_or_default();
    let (span, total) = spec.split_once('/').unwrap_or(("", ""));
    if total.parse::<u64>().ok() != Some(session.total) {
        return error(
            StatusCode::BAD_REQUEST,
            "Content-Range total does not match the session",
        );
    }
    if span != "*" {
        let Some((first, last)) = span
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        else {
            return error(StatusCode::BAD_REQUEST, "bad Content-Range");
        };
        if first != session.received.len() as u64
            || last + 1 - first != body.len() as u64
            || last >= session.total
        {
            return error(
                StatusCode::BAD_REQUEST,
                "chunk does not continue the upload",
            );
        }
        session.received.extend_from_slice(&body);
    }
    let (len, total) = (session.received.len() as u64, session.total);
    if len < total {
        let n = session.received.len();
        st.chunks += u64::from(span != "*");
        return incomplete(n);
    }
    st.chunks += u64::from(span != "*");
    let session = st.sessions.get_mut(sid).unwrap();
    let (name, parent, content) = (
        session.name.clone(),
        session.parent.clone(),
        std::mem::take(&mut session.received),
    );
    let id = st.id("f");
    st.sessions.get_mut(sid).unwrap().done = Some(id.clone());
    let f = FakeFile {
        id: id.clone(),
        name,
        mime: "application/octet-stream".into(),
        parents: vec![parent],
        content,
    };
    let out = State::json(&f, &base);
    st.files.insert(id, f);
    (StatusCode::OK, Json(out)).into_response()
}

#[handler]
fn upload_cancel(Data(d): Data<&FakeDrive>, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Some(sid) = q.get("upload_id") {
        d.state.lock().unwrap().sessions.remove(sid);
    }
    StatusCode::from_u16(499)
        .unwrap_or(StatusCode::NO_CONTENT)
        .into_response()
}

impl FakeDrive {
    /// Starts the server on a free loopback port; accepts `refresh_token` only, from any
    /// client, and has no consent page (no client is registered).
    pub async fn start(refresh_token: &str) -> Self {
        Self::launch(refresh_token, None).await
    }

    /// Starts the server with the operator's OAuth `client` registered: the consent page
    /// works for it, and token grants must name it.
    pub async fn start_with_client(refresh_token: &str, client: FakeClient) -> Self {
        Self::launch(refresh_token, Some(client)).await
    }

    async fn launch(refresh_token: &str, client: Option<FakeClient>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut state = State {
            refresh_tokens: vec![refresh_token.to_owned()],
            client,
            ..State::default()
        };
        let root = "root-folder".to_owned();
        state.files.insert(
            root.clone(),
            FakeFile {
                id: root.clone(),
                name: "Ferry".into(),
                mime: FOLDER.into(),
                parents: vec![],
                content: vec![],
            },
        );
        let drive = Self {
            state: Arc::new(Mutex::new(state)),
            url: format!("http://127.0.0.1:{port}/"),
            root_folder: root,
        };
        let app = Route::new()
            .at("/token", poem::post(grant))
            .at("/o/oauth2/v2/auth", poem::get(authorize))
            .at("/drive/v3/files", poem::get(list).post(create))
            .at("/drive/v3/files/:id", poem::get(get).delete(delete))
            .at(
                "/upload/drive/v3/files",
                poem::post(upload_start)
                    .put(upload_chunk)
                    .delete(upload_cancel),
            )
            .data(drive.clone());
        let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        drive
    }

    pub fn token_url(&self) -> String {
        format!("{}token", self.url)
    }

    /// The consent page (Google's `…/o/oauth2/v2/auth`).
    pub fn auth_url(&self) -> String {
        format!("{}o/oauth2/v2/auth", self.url)
    }

    /// The PKCE challenges of the consents given so far, oldest first.
    pub fn challenges(&self) -> Vec<String> {
        self.state.lock().unwrap().challenges.clone()
    }

    /// Whether the user declines on the consent page (`error=access_denied`).
    pub fn deny_consent(&self, deny: bool) {
        self.state.lock().unwrap().deny_consent = deny;
    }

    /// Whether code grants leave out the refresh token (as Google does for a consent
    /// given before, without `prompt=consent`).
    pub fn withhold_refresh_tokens(&self, withhold: bool) {
        self.state.lock().unwrap().withhold_refresh_tokens = withhold;
    }

    /// The refresh tokens granted for codes so far.
    pub fn granted_refresh_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().refresh_tokens[1..].to_vec()
    }

    /// The content of the file at `path` (names from the root folder down).
    pub fn content(&self, path: &[&str]) -> Option<Vec<u8>> {
        let st = self.state.lock().unwrap();
        let mut parent = self.root_folder.clone();
        for (i, name) in path.iter().enumerate() {
            let f = st
                .files
                .values()
                .find(|f| f.name == *name && f.parents.contains(&parent))?;
            if i + 1 == path.len() {
                return Some(f.content.clone());
            }
            parent = f.id.clone();
        }
        None
    }

    /// Files (not folders) anywhere in the drive.
    pub fn file_count(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .files
            .values()
            .filter(|f| f.mime != FOLDER)
            .count()
    }

    /// Upload sessions not finished yet.
    pub fn open_sessions(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .sessions
            .values()
            .filter(|s| s.done.is_none())
            .count()
    }

    /// Chunks received so far.
    pub fn chunks(&self) -> u64 {
        self.state.lock().unwrap().chunks
    }
}
