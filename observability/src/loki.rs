//! Log lines to Grafana Loki, within a fixed budget of memory.
//!
//! Every line goes into the open [`Batch`]; a courier task closes it every second (sooner
//! when it fills) and pushes it, once. At most `buffer_lines` lines are held at once, open,
//! kept or being pushed. While Loki is away (a push failed) the courier keeps the batches it
//! closes and asks Loki's `/ready` every second, and pushes them when it answers; a line past
//! the budget is dropped, and so are the lines of a push that fails, all counted in
//! `ferry_log_lines_dropped_total`. Ferry never waits for Loki: a line is queued or dropped,
//! and a push that hangs is given up after ten seconds. When a push succeeds after losses,
//! one warning says how many lines were lost.
//!
//! Streams are labelled `service="ferry"`, `role`, `instance` (and the `level` that
//! `tracing-loki` adds): few streams, as Loki wants. Everything else — `job_id`,
//! `request_id`, `user_id`, the span and event fields — is in the line, as JSON.

mod batch;
mod courier;

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_loki::url::Url;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use batch::Batch;
use courier::Courier;

/// Where and as whom a process sends its log lines to Loki.
#[derive(Debug, Clone)]
pub struct Loki {
    /// Loki's base URL (`http://loki:3100`); a full push URL (`…/loki/api/v1/push`) works too.
    pub url: Url,
    /// The `role` label: `serve`, `api`, `torrent-worker`, `upload-worker`, `fetch-worker`, …
    pub role: String,
    /// The `instance` label: this process (`hostname-pid`).
    pub instance: String,
    /// Lines held at most while they wait for Loki.
    pub buffer_lines: NonZeroUsize,
}

impl Loki {
    /// The URL `tracing-loki` appends `loki/api/v1/push` to.
    fn push_base(&self) -> Url {
        let mut url = self.url.clone();
        let path = url.path().trim_end_matches('/');
        let base = path.strip_suffix("/loki/api/v1/push").unwrap_or(path);
        url.set_path(&format!("{base}/"));
        url
    }

    fn builder(&self) -> Result<tracing_loki::Builder, tracing_loki::Error> {
        tracing_loki::builder()
            .label("service", "ferry")?
            .label("role", &self.role)?
            .label("instance", &self.instance)
    }
}

/// The tracing layer that hands lines to the courier: it never blocks on the network and
/// never holds more than the budget.
pub struct LokiLayer {
    shared: Arc<Shared>,
    /// Keeps the span fields `tracing-loki` puts in each line (every batch's layer reads
    /// the same span extensions).
    spans: tracing_loki::Layer,
}

/// The courier's handle: closes the open batch and waits for the pushes at shutdown.
#[derive(Debug, Clone)]
pub struct LokiCourier {
    flush: mpsc::Sender<oneshot::Sender<()>>,
    shared: Arc<Shared>,
}

struct Shared {
    builder: tracing_loki::Builder,
    push_base: Url,
    open: Mutex<Batch>,
    /// Lines in the open batch, in batches kept while Loki is away, and in pushes under way.
    held: AtomicUsize,
    limit: usize,
    /// Lines dropped since the process started, and since the last report.
    dropped: AtomicU64,
    unreported: AtomicU64,
    /// Asks the courier to close the open batch now.
    close_now: Notify,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("push_base", &self.push_base.as_str())
            .field("held", &self.held)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

/// The layer and the courier for `loki`; the courier runs on the current async runtime.
///
/// # Errors
/// When `loki`'s URL cannot take the push path, or there is no async runtime.
pub fn layer(loki: &Loki) -> anyhow::Result<(LokiLayer, LokiCourier)> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| anyhow::anyhow!("Loki's courier needs the async runtime"))?;
    let builder = loki
        .builder()
        .map_err(|e| anyhow::anyhow!("log.loki: {e}"))?;
    let push_base = loki.push_base();
    let ready = push_base
        .join("ready")
        .map_err(|e| anyhow::anyhow!("log.loki.url: {e}"))?;
    let open = Batch::new(&builder, &push_base).map_err(|e| anyhow::anyhow!("log.loki: {e}"))?;
    let spans = Batch::new(&builder, &push_base)
        .map_err(|e| anyhow::anyhow!("log.loki: {e}"))?
        .layer;
    let shared = Arc::new(Shared {
        builder,
        push_base,
        open: Mutex::new(open),
        held: AtomicUsize::new(0),
        limit: loki.buffer_lines.get(),
        dropped: AtomicU64::new(0),
        unreported: AtomicU64::new(0),
        close_now: Notify::new(),
    });
    let http = reqwest::Client::builder()
        .build()
        .map_err(|e| anyhow::anyhow!("log.loki: {e}"))?;
    let (flush, requests) = mpsc::channel(1);
    runtime.spawn(Courier::new(shared.clone(), http, ready).run(requests));
    let layer = LokiLayer {
        shared: shared.clone(),
        spans,
    };
    Ok((layer, LokiCourier { flush, shared }))
}

impl LokiCourier {
    /// Lines dropped since the process started.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Pushes the open batch and waits for every push under way, for up to `within` (while
    /// Loki is away, the lines stay kept).
    pub async fn flush(&self, within: Duration) {
        let (done, flushed) = oneshot::channel();
        if self.flush.send(done).await.is_ok() {
            let _ = tokio::time::timeout(within, flushed).await;
        }
    }
}

impl Shared {
    fn open(&self) -> MutexGuard<'_, Batch> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn drop_lines(&self, lines: u64) {
        self.dropped.fetch_add(lines, Ordering::Relaxed);
        self.unreported.fetch_add(lines, Ordering::Relaxed);
    }

    /// Takes the open batch if it holds lines, leaving an empty one.
    fn close(&self) -> Option<Batch> {
        if self.open().lines == 0 {
            return None;
        }
        // Built outside the lock: nothing that could log runs while a line is being queued.
        let fresh = Batch::new(&self.builder, &self.push_base).ok()?;
        Some(std::mem::replace(&mut *self.open(), fresh))
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for LokiLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.spans.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.spans.on_record(id, values, ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let shared = &*self.shared;
        // A line logged while this thread queues one (a field's `Debug` that logs) would
        // wait for the lock it holds: it is dropped instead.
        let Some(_queueing) = Queueing::enter() else {
            shared.drop_lines(1);
            return;
        };
        let queued = {
            let mut open = shared.open();
            let room =
                open.lines < batch::CAPACITY && shared.held.load(Ordering::Relaxed) < shared.limit;
            if room {
                open.layer.on_event(event, ctx);
                open.lines += 1;
                shared.held.fetch_add(1, Ordering::Relaxed);
            }
            room.then_some(open.lines)
        };
        match queued {
            // Half full: closed early, so a burst has the other half while the courier wakes.
            Some(lines) if lines == batch::CAPACITY / 2 => shared.close_now.notify_one(),
            Some(_) => {}
            None => {
                shared.drop_lines(1);
                shared.close_now.notify_one();
            }
        }
    }
}

thread_local! {
    static QUEUEING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// This thread is queueing a line.
struct Queueing;

impl Queueing {
    fn enter() -> Option<Self> {
        (!QUEUEING.with(|q| q.replace(true))).then_some(Self)
    }
}

impl Drop for Queueing {
    fn drop(&mut self) {
        QUEUEING.with(|q| q.set(false));
    }
}

/// `ferry_log_lines_dropped_total`, read from `courier` whenever metrics are rendered.
pub(crate) fn count_dropped(courier: &LokiCourier) {
    let courier = courier.clone();
    // Kept by the meter provider for its life, like the runtime gauges.
    let _ = crate::meter()
        .u64_observable_counter("ferry_log_lines_dropped")
        .with_description(
            "Log lines not delivered to Loki (it was unreachable or the buffer was full)",
        )
        .with_callback(move |observer| {
            observer.observe(courier.dropped(), &[]);
        })
        .build();
}

#[cfg(test)]
mod tests;
