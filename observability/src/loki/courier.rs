//! The courier: closes batches and pushes them while Loki takes lines; while it does not,
//! keeps the closed batches (within the budget the layer enforces) and asks Loki's `/ready`
//! every second, then pushes what it kept, oldest first, once Loki answers again.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing_loki::url::Url;

use super::Shared;
use super::batch::{self, Batch};

/// How long lines wait to be batched, and how often an absent Loki is asked again.
const BATCH_WAIT: Duration = Duration::from_secs(1);
/// A push or a readiness check not answered after this is given up (Loki or the network
/// hangs).
pub(super) const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// What the courier holds and watches.
pub(super) struct Courier {
    shared: Arc<Shared>,
    /// Whether the last push (or readiness check) failed.
    down: bool,
    /// Batches closed while Loki was away, oldest first.
    kept: VecDeque<Batch>,
    pushes: JoinSet<Result<(), String>>,
    /// The lines of each push under way, by task (a push that panicked gives them back too).
    pushing: HashMap<tokio::task::Id, usize>,
    asking: JoinSet<bool>,
    ready: Url,
    http: reqwest::Client,
    waiting: Vec<oneshot::Sender<()>>,
}

impl Courier {
    /// `ready` is Loki's `/ready`, asked with `http` while Loki is away.
    pub(super) fn new(shared: Arc<Shared>, http: reqwest::Client, ready: Url) -> Self {
        Self {
            shared,
            down: false,
            kept: VecDeque::new(),
            pushes: JoinSet::new(),
            pushing: HashMap::new(),
            asking: JoinSet::new(),
            ready,
            http,
            waiting: Vec::new(),
        }
    }

    /// Runs for the life of the process (a flush handle dropped does not stop it).
    pub(super) async fn run(mut self, mut flushes: mpsc::Receiver<oneshot::Sender<()>>) {
        let mut tick = tokio::time::interval(BATCH_WAIT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut flushable = true;
        loop {
            tokio::select! {
                _ = tick.tick() => self.on_tick(),
                () = self.shared.close_now.notified() => self.close(),
                Some(done) = self.pushes.join_next_with_id() => {
                    let (id, outcome) = match done {
                        Ok((id, outcome)) => (id, outcome),
                        Err(e) => (e.id(), Err(format!("the push failed: {e}"))),
                    };
                    let lines = self.pushing.remove(&id).unwrap_or_default();
                    self.settle(lines, outcome);
                }
                Some(answered) = self.asking.join_next() => {
                    if answered.unwrap_or(false) {
                        self.back();
                    }
                }
                request = flushes.recv(), if flushable => match request {
                    Some(done) => {
                        self.waiting.push(done);
                        self.close();
                    }
                    None => flushable = false,
                },
            }
            if self.pushes.is_empty() {
                for done in self.waiting.drain(..) {
                    let _ = done.send(());
                }
            }
        }
    }

    /// Every second: the open batch goes out (or, while Loki is away, is kept once it is
    /// half full), and an absent Loki is asked whether it is back.
    fn on_tick(&mut self) {
        if !self.down {
            self.close();
            return;
        }
        if self.shared.open().lines >= batch::CAPACITY / 2 {
            self.close();
        }
        if self.asking.is_empty() {
            let (http, ready) = (self.http.clone(), self.ready.clone());
            self.asking.spawn(async move {
                let answer = tokio::time::timeout(PUSH_TIMEOUT, http.get(ready).send()).await;
                // Any answer but "not ready" or "too busy": a gateway may not route /ready.
                matches!(answer, Ok(Ok(r)) if !r.status().is_server_error() && r.status() != 429)
            });
        }
    }

    /// Closes the open batch (if it holds lines) and pushes it, or keeps it while Loki is
    /// away.
    fn close(&mut self) {
        if let Some(batch) = self.shared.close() {
            if self.down {
                self.kept.push_back(batch);
            } else {
                self.push(batch);
            }
        }
    }

    fn push(&mut self, batch: Batch) {
        let lines = batch.lines;
        let push = self.pushes.spawn(async move {
            tokio::time::timeout(PUSH_TIMEOUT, batch.send())
                .await
                .unwrap_or_else(|_| Err(format!("no answer in {PUSH_TIMEOUT:?}")))
        });
        self.pushing.insert(push.id(), lines);
    }

    /// Loki answers again: what was kept goes out, oldest first.
    fn back(&mut self) {
        self.down = false;
        while let Some(batch) = self.kept.pop_front() {
            self.push(batch);
        }
    }

    /// Gives a finished push's lines back to the budget, counting them as dropped if it
    /// failed; says once when Loki stops taking lines, and once, with the count, when it
    /// takes them again.
    fn settle(&mut self, lines: usize, outcome: Result<(), String>) {
        self.shared.held.fetch_sub(lines, Ordering::Relaxed);
        match outcome {
            Ok(()) => {
                if self.down {
                    self.back();
                }
                let dropped = self.shared.unreported.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    tracing::warn!(
                        dropped,
                        "Loki takes log lines again; {dropped} were dropped meanwhile"
                    );
                }
            }
            Err(error) => {
                self.shared.drop_lines(lines as u64);
                if !self.down {
                    self.down = true;
                    tracing::warn!(
                        %error,
                        "cannot send log lines to Loki; keeping up to log.loki.buffer_lines \
                         until it is back, dropping (and counting) the rest"
                    );
                }
            }
        }
    }
}
