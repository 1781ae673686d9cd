//! Ferry's Rust benchmarks (driven by `bench/queue.sh`):
//!
//! - `queue`: jobs per second through enqueue → claim → ack on the Redis queue, with a no-op
//!   stage, `W` producers and `W` workers.
//! - `package`: torrent creation for one file by Ferry's packager (or librqbit's, for
//!   reference), driven by `bench/package.sh` against mktorrent.
//! - `fanout`: latency from publishing a progress event to its arrival at each of `S`
//!   subscribers of `ferry-api`'s Server-Sent Events stream for one job.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};

mod auth;
use ferry_application::ports::{EventKind, JobEvent, JobQueue, ProgressBus, Stage};
use ferry_domain::{JobId, JobStatus, Progress};
use ferry_redis::{Redis, RedisBus, RedisQueue};
use futures::StreamExt;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Queue throughput.
    Queue {
        #[arg(long, default_value = "redis://127.0.0.1:6379")]
        redis: String,
        #[arg(long, default_value_t = 20_000)]
        jobs: u64,
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
    /// One file to an S3-compatible server through Ferry's S3 adapter.
    Upload {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        access_key: String,
        #[arg(long)]
        secret_key: String,
        #[arg(long)]
        file: std::path::PathBuf,
        /// Ferry's default `storage.part_size`.
        #[arg(long, default_value_t = 8 << 20)]
        part_size: u64,
        /// Ferry's default `storage.upload_concurrency`.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Torrent creation for one file.
    Package {
        #[arg(long)]
        file: std::path::PathBuf,
        /// Piece length in bytes (default: Ferry's choice for the size).
        #[arg(long)]
        piece_length: Option<u32>,
        /// `ferry` (the packager Ferry uses) or `librqbit` (its `create_torrent`, for reference).
        #[arg(long, default_value = "ferry")]
        engine: String,
        /// Where to write the .torrent.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Requests/s of authenticated `GET /jobs` (session, PAT, JWT, bootstrap token) vs the
    /// open `/health` and `/version` of a real `ferry serve`, with a real OIDC provider.
    Auth {
        /// The `ferry` binary (release).
        #[arg(long)]
        ferry: std::path::PathBuf,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Requests/s of `GET url` over keep-alive connections; every answer must be 200.
    Http {
        #[arg(long)]
        url: String,
        /// A request header, `Name: value`.
        #[arg(long)]
        header: Option<String>,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value_t = 16)]
        connections: usize,
    },
    /// The raw poem ceiling: `GET /` answers `hello` (the same server stack Ferry's API runs
    /// on, with nothing behind it), on `--listen` until killed.
    Hello {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
    /// SSE fan-out latency.
    Fanout {
        #[arg(long)]
        api: String,
        #[arg(long)]
        token: String,
        #[arg(long)]
        job: String,
        #[arg(long)]
        redis: String,
        #[arg(long)]
        prefix: String,
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        #[arg(long, default_value_t = 40)]
        events: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Queue {
                redis,
                jobs,
                workers,
            } => queue(&redis, jobs, workers).await,
            Command::Auth {
                ferry,
                seconds,
                connections,
                rounds,
            } => auth::auth(&ferry, seconds, connections, rounds).await,
            Command::Upload {
                endpoint,
                bucket,
                access_key,
                secret_key,
                file,
                part_size,
                concurrency,
            } => {
                upload(
                    endpoint,
                    bucket,
                    access_key,
                    secret_key,
                    &file,
                    part_size,
                    concurrency,
                )
                .await
            }
            Command::Package {
                file,
                piece_length,
                engine,
                out,
            } => package(&file, piece_length, &engine, out.as_deref()).await,
            Command::Http {
                url,
                header,
                seconds,
                connections,
            } => {
                let header = header
                    .as_deref()
                    .map(|h| h.split_once(':').map(|(k, v)| (k.trim(), v.trim())))
                    .map(|h| h.context("--header is `Name: value`"))
                    .transpose()?;
                let rps = auth::load(&url, header, connections, seconds).await?;
                println!("{rps:.1}");
                Ok(())
            }
            Command::Hello { listen } => {
                #[poem::handler]
                fn hello() -> &'static str {
                    "hello"
                }
                poem::Server::new(poem::listener::TcpListener::bind(listen))
                    .run(poem::Route::new().at("/", poem::get(hello)))
                    .await?;
                Ok(())
            }
            Command::Fanout {
                api,
                token,
                job,
                redis,
                prefix,
                subscribers,
                events,
            } => fanout(&api, &token, &job, &redis, &prefix, subscribers, events).await,
        }
    })
}

#[allow(clippy::too_many_arguments)]
async fn upload(
    endpoint: String,
    bucket: String,
    access_key_id: String,
    secret_access_key: String,
    file: &std::path::Path,
    part_size: u64,
    concurrency: usize,
) -> anyhow::Result<()> {
    use ferry_application::ports::{ObjectStore, PutRequest};
    let store = ferry_s3::S3Store::new(
        ferry_s3::S3Settings {
            endpoint,
            region: "us-east-1".into(),
            bucket,
            prefix: Some("bench".into()),
            path_style: true,
            access_key_id,
            secret_access_key,
            part_size,
            concurrency,
            presign_ttl: Duration::from_secs(60),
        },
        Arc::new(ferry_application::testing::MemorySessions::default()),
        // The benchmark's S3 server is the operator's own, on loopback.
        Arc::new(ferry_net::NetGuard::allow_all()),
    )?;
    let size = std::fs::metadata(file)?.len();
    let key = ferry_domain::StorageKey::parse("ferry/upload.bin")?;
    let started = Instant::now();
    let stored = store
        .put_file(PutRequest {
            job: JobId::new(),
            key: &key,
            source: file,
            size,
            progress: &|_| {},
        })
        .await?;
    let secs = started.elapsed().as_secs_f64();
    let rss_kib = peak_rss_kib()?;
    println!(
        "upload bytes={} seconds={secs:.3} peak_rss_kib={rss_kib} sha256={}",
        stored.size, stored.sha256
    );
    Ok(())
}

/// This process's peak resident set size, in KiB.
fn peak_rss_kib() -> anyhow::Result<String> {
    Ok(std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmHWM:")
                .map(|v| v.trim().trim_end_matches(" kB").trim().to_owned())
        })
        .unwrap_or_default())
}

async fn package(
    file: &std::path::Path,
    piece_length: Option<u32>,
    engine: &str,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .context("the file needs a UTF-8 name")?
        .to_owned();
    let sha1 = ferry_torrent::Sha1Path::fastest();
    // Each SHA-1 path's single-thread rate on 64 MiB, for the report.
    let sample = vec![0x5au8; 1 << 20];
    let rates: Vec<String> = ferry_torrent::Sha1Path::ALL
        .iter()
        .map(|path| {
            let t = Instant::now();
            for _ in 0..64 {
                std::hint::black_box(path.digest(std::hint::black_box(&sample)));
            }
            format!("{}:{:.0}", path.name(), 64.0 / t.elapsed().as_secs_f64())
        })
        .collect();
    let started = Instant::now();
    let (bytes, info_hash, piece_length) = match engine {
        "ferry" => {
            let packager = ferry_torrent::Packager {
                private: true,
                trackers: vec!["http://127.0.0.1:6969/announce".into()],
                piece_length,
                ..Default::default()
            };
            let path = file.to_owned();
            let bytes =
                tokio::task::spawn_blocking(move || packager.create(&path, &name)).await??;
            let meta = ferry_torrent::inspect(&bytes)?;
            (bytes, meta.info_hash.to_hex(), meta.piece_length)
        }
        "librqbit" => {
            let spawner = librqbit::spawn_utils::BlockingSpawner::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            );
            let made = librqbit::create_torrent(
                file,
                librqbit::CreateTorrentOptions {
                    name: Some(&name),
                    trackers: vec!["http://127.0.0.1:6969/announce".into()],
                    piece_length,
                },
                &spawner,
            )
            .await?;
            let hash = made.info_hash().as_string();
            // Not inspected: for a size that is an exact multiple of the piece length,
            // librqbit 9.1 writes one piece hash too many, which Ferry's checks refuse.
            (
                made.as_bytes()?.to_vec(),
                hash,
                piece_length.unwrap_or_default(),
            )
        }
        other => anyhow::bail!("unknown engine {other}: ferry or librqbit"),
    };
    let secs = started.elapsed().as_secs_f64();
    if let Some(out) = out {
        std::fs::write(out, &bytes)?;
    }
    println!(
        "package engine={engine} seconds={secs:.3} peak_rss_kib={} info_hash={info_hash} piece_length={piece_length} sha1={} sha1_mib_s={}",
        peak_rss_kib()?,
        sha1.name(),
        rates.join(",")
    );
    Ok(())
}

async fn queue(url: &str, jobs: u64, workers: usize) -> anyhow::Result<()> {
    let prefix = format!("ferry-bench-{}", std::process::id());
    let redis = Redis::connect(url, &prefix).await?;
    let queue = Arc::new(RedisQueue::new(
        redis.clone(),
        "bench",
        Duration::from_secs(60),
    ));
    // Warm up: the group exists and connections are open.
    queue.enqueue(Stage::Download, JobId::new()).await?;
    if let Some(l) = queue.claim(Stage::Download, Duration::from_secs(1)).await? {
        queue.ack(&l).await?;
    }
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    let per = jobs / workers as u64;
    for _ in 0..workers {
        let q = queue.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per {
                q.enqueue(Stage::Download, JobId::new()).await?;
            }
            anyhow::Ok(())
        }));
        let (q, done) = (queue.clone(), done.clone());
        let total = per * workers as u64;
        tasks.push(tokio::spawn(async move {
            while done.load(Ordering::Relaxed) < total {
                if let Some(lease) = q.claim(Stage::Download, Duration::from_millis(200)).await? {
                    q.ack(&lease).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "queue workers={workers} jobs={n} seconds={secs:.3} jobs_per_second={:.0}",
        n as f64 / secs
    );
    redis.delete_all().await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn fanout(
    api: &str,
    token: &str,
    job: &str,
    url: &str,
    prefix: &str,
    subscribers: usize,
    events: u64,
) -> anyhow::Result<()> {
    let job_id: JobId = job.parse().context("job id")?;
    let bus = RedisBus::new(Redis::connect(url, prefix).await?);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..events).map(|_| AtomicU64::new(0)).collect());
    let origin = Instant::now();
    let ready = Arc::new(AtomicU64::new(0));
    let mut subs = Vec::new();
    for _ in 0..subscribers {
        let (client, sent, ready) = (client.clone(), sent.clone(), ready.clone());
        let url = format!("{api}/api/v1/jobs/{job}/events");
        let token = token.to_owned();
        subs.push(tokio::spawn(async move {
            let resp = client.get(&url).bearer_auth(&token).send().await?;
            anyhow::ensure!(resp.status().is_success(), "SSE answered {}", resp.status());
            let mut stream = resp.bytes_stream();
            let mut buf = String::new();
            let mut latencies = Vec::new();
            let mut seen_snapshot = false;
            while latencies.len() < events as usize {
                let Some(chunk) = stream.next().await else {
                    break;
                };
                let arrived = origin.elapsed().as_micros() as u64;
                buf.push_str(&String::from_utf8_lossy(&chunk?));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    if block.contains("event: snapshot") {
                        if !seen_snapshot {
                            seen_snapshot = true;
                            ready.fetch_add(1, Ordering::Relaxed);
                        }
                        continue;
                    }
                    let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                        continue;
                    };
                    let v: serde_json::Value = serde_json::from_str(data)?;
                    let i = v["progress"]["bytes_done"].as_u64().unwrap_or(0) as usize;
                    let at = sent[i].load(Ordering::Acquire);
                    latencies.push(arrived.saturating_sub(at));
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while (ready.load(Ordering::Relaxed) as usize) < subscribers {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} subscribers connected",
            ready.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..events {
        let event = JobEvent {
            job_id,
            owner: ferry_domain::OwnerId::local(),
            kind: EventKind::Progress,
            status: JobStatus::Downloading,
            progress: Progress {
                bytes_done: i,
                bytes_total: events,
                ..Progress::default()
            },
            error: None,
            at: chrono::Utc::now(),
        };
        sent[i as usize].store(origin.elapsed().as_micros() as u64, Ordering::Release);
        bus.publish(&event).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut all = Vec::new();
    for s in subs {
        all.extend(tokio::time::timeout(Duration::from_secs(30), s).await???);
    }
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0;
    println!(
        "fanout subscribers={subscribers} events={events} deliveries={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        all.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}
