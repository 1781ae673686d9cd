//! The test's own origin web server (on loopback), which records where requests came from,
//! and the proxies a fetch goes through: microsocks (SOCKS5) and tinyproxy (HTTP), each
//! binding its outgoing connections to an address of its own so the origin can tell.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use poem::http::StatusCode;
use poem::web::{Data, Query, RemoteAddr};
use poem::{EndpointExt, FromRequest, Request, Response, Route, Server, handler};

use super::*;

/// A request's peer address and its Via header.
type SeenRequest = (IpAddr, Option<String>);

#[derive(Clone, Default)]
pub struct Seen {
    /// (peer address, Via header) of every request.
    pub requests: Arc<Mutex<Vec<SeenRequest>>>,
    /// The Range header of every request for the file (`None`: the whole file).
    pub ranges: Arc<Mutex<Vec<Option<String>>>>,
}

impl Seen {
    pub fn peers(&self) -> Vec<IpAddr> {
        self.requests.lock().unwrap().iter().map(|r| r.0).collect()
    }

    pub fn vias(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| r.1.clone())
            .collect()
    }
}

/// How the origin misbehaves, switchable while a test runs.
#[derive(Clone)]
pub struct Control {
    /// When not 0, every request for the file is answered with this status.
    fail: Arc<AtomicU16>,
    /// Each response stops after this many body bytes until the limit is raised.
    hold_at: Arc<AtomicU64>,
    /// Responses whose body is being sent (a client that hangs up ends its response).
    sending: Arc<AtomicUsize>,
}

/// Counts a response as sending until its body is dropped.
struct Sending(Arc<AtomicUsize>);

impl Sending {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count.clone())
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Default for Control {
    fn default() -> Self {
        Self {
            fail: Arc::new(AtomicU16::new(0)),
            hold_at: Arc::new(AtomicU64::new(u64::MAX)),
            sending: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Control {
    /// Answers `status` to every request for the file (`None`: serve it again).
    pub fn fail(&self, status: Option<u16>) {
        self.fail.store(status.unwrap_or(0), Ordering::SeqCst);
    }

    /// Each response sends `bytes` of the body and then trickles (a byte every 50 ms) until
    /// the limit is lifted (`None`), so a download stays in flight for as long as the test
    /// wants, without a timing guess.
    pub fn hold_at(&self, bytes: Option<u64>) {
        self.hold_at
            .store(bytes.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Waits until no response is being sent: every client that fetched has hung up.
    pub async fn wait_idle(&self) {
        for _ in 0..600 {
            if self.sending.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("a client kept its download open for 30 s");
    }
}

#[derive(Clone)]
struct State {
    file: PathBuf,
    seen: Seen,
    control: Control,
}

fn peer_ip(remote: &RemoteAddr) -> IpAddr {
    remote
        .as_socket_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

#[handler]
async fn serve_file(
    req: &Request,
    remote: &RemoteAddr,
    Data(s): Data<&State>,
) -> poem::Result<Response> {
    s.seen.requests.lock().unwrap().push((
        peer_ip(remote),
        req.headers()
            .get("via")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    ));
    s.seen.ranges.lock().unwrap().push(
        req.headers()
            .get("range")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    );
    let fail = s.control.fail.load(Ordering::SeqCst);
    if fail != 0 {
        return Ok(Response::builder()
            .status(StatusCode::from_u16(fail).unwrap())
            .finish());
    }
    let static_file = poem::web::StaticFileRequest::from_request_without_body(req).await?;
    let resp = static_file.create_response(&s.file, false, true)?;
    let mut resp = poem::IntoResponse::into_response(resp);
    let body = resp.take_body();
    let sending = Sending::new(&s.control.sending);
    resp.set_body(held(body, s.control.hold_at.clone(), sending));
    Ok(resp)
}

/// The body, paused whenever it has sent `hold_at` bytes until the limit rises.
fn held(body: poem::Body, hold_at: Arc<AtomicU64>, sending: Sending) -> poem::Body {
    let inner = Box::pin(body.into_bytes_stream());
    let stream = futures::stream::unfold((inner, 0u64, None), move |(mut inner, sent, pending)| {
        let _sending = &sending;
        let hold_at = hold_at.clone();
        async move {
            let chunk = match pending {
                Some(c) => c,
                None => match inner.next().await? {
                    Ok(c) => c,
                    Err(e) => return Some((Err(e), (inner, sent, None))),
                },
            };
            // Held: a byte every 50 ms, so a client that hung up is noticed at the next
            // write (an idle response would never learn it).
            let mut room = hold_at.load(Ordering::SeqCst).saturating_sub(sent);
            if room == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                room = hold_at.load(Ordering::SeqCst).saturating_sub(sent).max(1);
            }
            let room = usize::try_from(room).unwrap_or(usize::MAX);
            let (now, later) = if room < chunk.len() {
                (chunk.slice(..room), Some(chunk.slice(room..)))
            } else {
                (chunk, None)
            };
            let sent = sent + now.len() as u64;
            Some((Ok::<_, std::io::Error>(now), (inner, sent, later)))
        }
    });
    poem::Body::from_bytes_stream(stream)
}

#[handler]
fn redirect(Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    Response::builder()
        .status(StatusCode::FOUND)
        .header("Location", q.get("to").cloned().unwrap_or_default())
        .finish()
}

pub struct Origin {
    pub addr: SocketAddr,
    pub seen: Seen,
    pub control: Control,
}

impl Origin {
    /// Serves `file` at `/{name}` on 127.0.0.1, and `/redirect?to=…`.
    pub async fn start(file: &Path, name: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Seen::default();
        let control = Control::default();
        let app = Route::new()
            .at(format!("/{name}"), serve_file)
            .at("/redirect", redirect)
            .data(State {
                file: file.to_owned(),
                seen: seen.clone(),
                control: control.clone(),
            });
        tokio::spawn(
            Server::new_with_acceptor(poem::listener::TcpAcceptor::from_tokio(listener).unwrap())
                .run(app),
        );
        Self {
            addr,
            seen,
            control,
        }
    }
}

/// Writes `size` random bytes to `path`; returns their SHA-256 (hex).
pub fn random_file(path: &Path, size: u64) -> String {
    use rand::RngCore;
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rand::rng().fill_bytes(&mut buf[..n]);
        sha2::Digest::update(&mut hasher, &buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    hex::encode(sha2::Digest::finalize(hasher))
}

/// An opentracker for the private torrent Ferry will package of `file` (named `name`): the
/// tracker must know a hash before it starts, so the test makes the same torrent Ferry will
/// (same bytes, name, announce URL, private flag and piece size). Returns the tracker and the
/// torrent's info hash (hex).
pub fn tracker_for_packaged(root: &Path, file: &Path, name: &str) -> (Tracker, String) {
    let port = free_port();
    let torrent = ferry_torrent::Packager {
        private: true,
        trackers: vec![format!("http://127.0.0.1:{port}/announce")],
        ..Default::default()
    }
    .create(file, name)
    .unwrap();
    let info_hash = ferry_torrent::inspect(&torrent).unwrap().info_hash.to_hex();
    (Tracker::start_on(root, port, &[&info_hash]), info_hash)
}

/// A listener that only counts connections: a target no request may reach.
pub async fn tripwire(ip: &str) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = hits.clone();
    tokio::spawn(async move {
        while let Ok(_conn) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    (addr, hits)
}

/// microsocks on 127.0.0.1, its outgoing connections from `bind`.
pub fn microsocks(dir: &Path, bind: &str) -> (u16, Proc) {
    let port = free_port();
    let mut cmd = Command::new("microsocks");
    cmd.args(["-i", "127.0.0.1", "-p", &port.to_string(), "-b", bind]);
    let proc = Proc::spawn("microsocks", cmd, dir.join("microsocks.log"));
    wait_for_port_pub(port, "microsocks");
    (port, proc)
}

/// tinyproxy on 127.0.0.1, its outgoing connections from `bind`.
pub fn tinyproxy(dir: &Path, bind: &str) -> (u16, Proc) {
    let port = free_port();
    let conf = dir.join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nBind {bind}\nTimeout 60\nMaxClients 20\nAllow 127.0.0.1\nLogLevel Info\nLogFile \"{}\"\nViaProxyName \"tinyproxy\"\n",
            dir.join("tinyproxy-activity.log").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("tinyproxy");
    cmd.arg("-d").arg("-c").arg(&conf);
    let proc = Proc::spawn("tinyproxy", cmd, dir.join("tinyproxy.log"));
    wait_for_port_pub(port, "tinyproxy");
    (port, proc)
}

/// qbittorrent-nox on loopback, driven through its Web API.
pub struct Qbt {
    pub url: String,
    http: reqwest::Client,
    _proc: Proc,
}

impl Qbt {
    pub async fn start(dir: &Path) -> Self {
        let profile = dir.join("qbt");
        let config = profile.join("qBittorrent/config");
        std::fs::create_dir_all(&config).unwrap();
        let (web, peer) = (free_port(), free_port());
        let save = dir.join("qbt-downloads");
        std::fs::write(
            config.join("qBittorrent.conf"),
            format!(
                "[LegalNotice]\nAccepted=true\n\n[BitTorrent]\nSession\\Port={peer}\nSession\\Interface=lo\nSession\\InterfaceName=lo\nSession\\InterfaceAddress=127.0.0.1\nSession\\DHTEnabled=false\nSession\\LSDEnabled=false\nSession\\PeXEnabled=false\nSession\\BTProtocol=TCP\nSession\\QueueingSystemEnabled=false\nSession\\MultiConnectionsPerIp=true\nSession\\DefaultSavePath={}\n\n[Network]\nPortForwardingEnabled=false\n\n[Preferences]\nConnection\\ResolvePeerCountries=false\nWebUI\\Address=127.0.0.1\nWebUI\\Port={web}\nWebUI\\LocalHostAuth=false\nGeneral\\Locale=en\n",
                save.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("qbittorrent-nox");
        cmd.arg(format!("--profile={}", profile.display()));
        let proc = Proc::spawn("qbittorrent-nox", cmd, dir.join("qbt.log"));
        wait_for_port_pub(web, "qbittorrent-nox");
        Self {
            url: format!("http://127.0.0.1:{web}"),
            http: reqwest::Client::new(),
            _proc: proc,
        }
    }

    pub async fn add_magnet(&self, magnet: &str, save: &Path) {
        let r = self
            .http
            .post(format!("{}/api/v2/torrents/add", self.url))
            .form(&[("urls", magnet), ("savepath", &save.display().to_string())])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "qbt add: {}", r.status());
    }

    /// Waits until the torrent is complete.
    pub async fn wait_complete(&self, info_hash: &str, timeout: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let v: serde_json::Value = self
                .http
                .get(format!(
                    "{}/api/v2/torrents/info?hashes={info_hash}",
                    self.url
                ))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap_or_default();
            if v[0]["progress"].as_f64() == Some(1.0) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "qBittorrent did not finish: {v}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }
}
