//! A stand-in for Grafana Loki that takes what Loki's push API takes: `POST
//! /loki/api/v1/push` with a protobuf `logproto.PushRequest` compressed in snappy's block
//! format (`Content-Type: application/x-protobuf`, as promtail and `tracing-loki` send it).
//! Anything else is refused and counted, so a client that speaks JSON, or frames snappy
//! wrongly, fails the test. It can be stopped (its port then refuses connections) and
//! started again on the same port, keeping what it took.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::http::StatusCode;
use poem::listener::TcpAcceptor;
use poem::web::Data;
use poem::{Body, EndpointExt, Request, Route, Server, handler};
use prost::Message;
use serde_json::Value;

/// Loki's `logproto.PushRequest` (pkg/push/push.proto), written out so no protoc is needed.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// The stream's labels in PromQL form: `{service="ferry", role="serve"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// One line as Loki stored it: its stream's labels, its time, and the line (Ferry's lines
/// are JSON objects).
#[derive(Debug, Clone)]
pub struct Line {
    pub labels: BTreeMap<String, String>,
    /// Seconds since the epoch.
    pub time: f64,
    pub json: Value,
    /// The line's length as sent.
    pub bytes: usize,
}

impl Line {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.json.get(name).and_then(Value::as_str)
    }
}

#[derive(Clone, Default)]
struct Store {
    lines: Arc<Mutex<Vec<Line>>>,
    pushes: Arc<AtomicUsize>,
    refused: Arc<Mutex<Vec<String>>>,
}

pub struct Loki {
    pub addr: SocketAddr,
    store: Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Loki {
    /// A receiver on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut loki = Self {
            addr: listener.local_addr().unwrap(),
            store: Store::default(),
            stop: None,
            server: None,
        };
        loki.serve(listener);
        loki
    }

    /// The URL to give Ferry (`log.loki.url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Route::new()
            .at("/loki/api/v1/push", poem::post(push))
            .at("/ready", poem::get(ready))
            .data(self.store.clone());
        let server = Server::new_with_acceptor(TcpAcceptor::from_tokio(listener).unwrap());
        self.server = Some(tokio::spawn(async move {
            let _ = server
                .run_with_graceful_shutdown(
                    app,
                    async move {
                        let _ = stopped.await;
                    },
                    Some(Duration::from_millis(200)),
                )
                .await;
        }));
        self.stop = Some(stop);
    }

    /// Stops answering: from now on the port refuses connections.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
        assert!(
            tokio::net::TcpStream::connect(self.addr).await.is_err(),
            "the stopped receiver still takes connections"
        );
    }

    /// Answers again, on the same port, keeping what it took before.
    pub async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    pub fn lines(&self) -> Vec<Line> {
        self.store.lines.lock().unwrap().clone()
    }

    /// Push requests taken.
    pub fn pushes(&self) -> usize {
        self.store.pushes.load(Ordering::SeqCst)
    }

    /// Why each refused push was refused.
    pub fn refused(&self) -> Vec<String> {
        self.store.refused.lock().unwrap().clone()
    }

    /// Waits until a line matches `wanted` and returns it, or fails after `timeout` saying
    /// `what` was missing.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        wanted: impl Fn(&Line) -> bool,
    ) -> Line {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| wanted(l)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "Loki never got {what} ({} lines, refused: {:?})",
                self.lines().len(),
                self.refused()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[handler]
fn ready() -> &'static str {
    "ready"
}

#[handler]
async fn push(req: &Request, body: Body, Data(store): Data<&Store>) -> StatusCode {
    match take(req, body).await {
        Ok(lines) => {
            store.pushes.fetch_add(1, Ordering::SeqCst);
            store.lines.lock().unwrap().extend(lines);
            StatusCode::NO_CONTENT
        }
        Err(why) => {
            store.refused.lock().unwrap().push(why);
            StatusCode::BAD_REQUEST
        }
    }
}

/// Decodes a push as Loki does, or says why it would not take it.
async fn take(req: &Request, body: Body) -> Result<Vec<Line>, String> {
    let content_type = req.content_type().unwrap_or_default();
    if content_type != "application/x-protobuf" {
        return Err(format!("content type {content_type:?}"));
    }
    let compressed = body.into_vec().await.map_err(|e| e.to_string())?;
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&compressed)
        .map_err(|e| format!("not snappy (block format): {e}"))?;
    let request =
        PushRequest::decode(raw.as_slice()).map_err(|e| format!("not a PushRequest: {e}"))?;
    let mut lines = Vec::new();
    for stream in request.streams {
        let labels = parse_labels(&stream.labels)
            .ok_or_else(|| format!("labels {:?} do not parse", stream.labels))?;
        for entry in stream.entries {
            let ts = entry.timestamp.ok_or("an entry without a timestamp")?;
            let json = serde_json::from_str(&entry.line)
                .map_err(|e| format!("line {:?} is not JSON: {e}", entry.line))?;
            lines.push(Line {
                labels: labels.clone(),
                time: ts.seconds as f64 + f64::from(ts.nanos) / 1e9,
                json,
                bytes: entry.line.len(),
            });
        }
    }
    Ok(lines)
}

/// `{a="x", b="y \"quoted\""}` → {a: x, b: y "quoted"}; `None` when it is not that form.
pub fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut rest = text
        .trim()
        .strip_prefix('{')?
        .strip_suffix('}')?
        .chars()
        .peekable();
    let mut labels = BTreeMap::new();
    loop {
        while rest.next_if(|c| c.is_whitespace()).is_some() {}
        if rest.peek().is_none() {
            return Some(labels);
        }
        let mut key = String::new();
        while let Some(c) = rest.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
            key.push(c);
        }
        if key.is_empty() || rest.next()? != '=' || rest.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match rest.next()? {
                '"' => break,
                '\\' => value.push(match rest.next()? {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                }),
                c => value.push(c),
            }
        }
        if labels.insert(key, value).is_some() {
            return None;
        }
        while rest.next_if(|c| c.is_whitespace()).is_some() {}
        match rest.next() {
            None => return Some(labels),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}
