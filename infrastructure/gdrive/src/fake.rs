//! A local stand-in for Google's OAuth token endpoint and the Drive v3 API, for tests (the
//! real one cannot be reached here). It speaks the same wire protocol Ferry uses: refresh-token
//! grants, file search with `q`, folder creation, get/delete (recursive for folders), and
//! resumable uploads (`uploadType=resumable`, `Content-Range` chunks, `308 Resume Incomplete`
//! with `Range`, status queries with `bytes */total`). It checks bearer tokens and refuses
//! chunks that do not continue where the session is.

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

#[derive(Default)]
struct State {
    files: HashMap<String, FakeFile>,
    sessions: HashMap<String, Session>,
    tokens: Vec<String>,
    refresh_token: String,
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

#[handler]
fn grant(Data(d): Data<&FakeDrive>, Form(form): Form<HashMap<String, String>>) -> Response {
    let mut st = d.state.lock().unwrap();
    if form.get("grant_type").map(String::as_str) != Some("refresh_token")
        || form.get("refresh_token") != Some(&st.refresh_token)
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
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
    /// Starts the server on a free loopback port; accepts `refresh_token` only.
    pub async fn start(refresh_token: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut state = State {
            refresh_token: refresh_token.to_owned(),
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
