//! Event streams (`GET /jobs/{id}/events`): how many may be open, per owner and in all, and
//! the stream a client reads. Everything a stream holds (its place under the caps, the bus
//! subscription) is owned by the stream itself, so a client that leaves releases it the
//! moment its connection ends; no task outlives it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_application::ports::{EventKind, PublishedEvent};
use ferry_domain::OwnerId;
use futures::StreamExt;
use futures::stream::BoxStream;
use opentelemetry::metrics::UpDownCounter;
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

use crate::dto::{FeedEventDto, JobEventDto};

/// The caps on open event streams.
pub struct StreamLimits {
    per_owner: usize,
    total: usize,
    open: Mutex<Open>,
    gauge: UpDownCounter<i64>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_owner: HashMap<OwnerId, usize>,
}

/// Which cap refused a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Owner(usize),
    Server(usize),
}

impl StreamLimits {
    pub fn new(per_owner: usize, total: usize) -> Arc<Self> {
        Arc::new(Self {
            per_owner,
            total,
            open: Mutex::default(),
            gauge: ferry_observability::meter()
                .i64_up_down_counter("ferry_sse_streams")
                .with_description("Event streams open")
                .build(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place for one more stream of `owner`, held until the permit is dropped.
    ///
    /// # Errors
    /// [`Refused`] when the owner or the server has as many streams open as allowed.
    pub fn admit(self: &Arc<Self>, owner: &OwnerId) -> Result<StreamPermit, Refused> {
        let mut open = self.lock();
        if open.total >= self.total {
            return Err(Refused::Server(self.total));
        }
        let mine = open.by_owner.entry(owner.clone()).or_default();
        if *mine >= self.per_owner {
            return Err(Refused::Owner(self.per_owner));
        }
        *mine += 1;
        open.total += 1;
        self.gauge.add(1, &[]);
        Ok(StreamPermit {
            limits: self.clone(),
            owner: owner.clone(),
        })
    }

    /// Streams open now.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.lock().total
    }
}

/// One open stream's place under the caps.
pub struct StreamPermit {
    limits: Arc<StreamLimits>,
    owner: OwnerId,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.limits.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(mine) = open.by_owner.get_mut(&self.owner) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                open.by_owner.remove(&self.owner);
            }
        }
        self.limits.gauge.add(-1, &[]);
    }
}

/// The snapshot, then bus events until a final status (or, for a job that had already
/// finished, whatever the bus still holds for a resuming client), or until the server is
/// `stopping` (the client resumes elsewhere with `Last-Event-ID`). Dropping the stream drops
/// the bus subscription and the permit with it.
pub fn job_events(
    snapshot: JobEventDto,
    finished: bool,
    rx: Receiver<PublishedEvent>,
    permit: StreamPermit,
    stopping: CancellationToken,
) -> BoxStream<'static, JobEventDto> {
    let live = futures::stream::unfold(
        (rx, permit, false),
        move |(mut rx, permit, ended)| async move {
            if ended {
                return None;
            }
            let next = if finished {
                tokio::time::timeout(Duration::from_millis(200), rx.recv())
                    .await
                    .unwrap_or_default()
            } else {
                rx.recv().await
            };
            let event = next?;
            let last = event.event.kind == EventKind::Status && event.event.status.is_terminal();
            Some((JobEventDto::from(event), (rx, permit, last)))
        },
    );
    futures::stream::once(async move { snapshot })
        .chain(live)
        .take_until(stopping.cancelled_owned())
        .boxed()
}

/// The jobs feed: `ready`, then every event of the owner's jobs, until the server is
/// `stopping`. Dropping the stream drops the subscription and the permit with it.
pub fn owner_feed(
    ready: FeedEventDto,
    rx: Receiver<PublishedEvent>,
    permit: StreamPermit,
    stopping: CancellationToken,
) -> BoxStream<'static, FeedEventDto> {
    let live = futures::stream::unfold((rx, permit), |(mut rx, permit)| async move {
        let event = rx.recv().await?;
        Some((FeedEventDto::from(event), (rx, permit)))
    });
    futures::stream::once(async move { ready })
        .chain(live)
        .take_until(stopping.cancelled_owned())
        .boxed()
}

/// How often a stream checks that the credential it was opened with still holds.
pub const REVALIDATE_EVERY: Duration = Duration::from_secs(5);

/// Ends `stream` at the first check (every `every`) that `valid` fails: a stream opened with
/// a session or a token stops soon after a logout, a revocation, an expiry or its user's
/// disabling, and the client that reconnects is refused.
pub fn while_valid<T: Send + 'static, F>(
    stream: BoxStream<'static, T>,
    valid: F,
    every: Duration,
) -> BoxStream<'static, T>
where
    F: Fn() -> futures::future::BoxFuture<'static, bool> + Send + Sync + 'static,
{
    let revoked = async move {
        loop {
            tokio::time::sleep(every).await;
            if !valid().await {
                return;
            }
        }
    };
    stream.take_until(revoked).boxed()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn caps_hold_per_owner_and_in_all_and_a_dropped_permit_frees_its_place() {
        let limits = StreamLimits::new(2, 3);
        let (alice, bob) = (
            OwnerId::parse("alice").unwrap(),
            OwnerId::parse("bob").unwrap(),
        );
        let a1 = limits.admit(&alice).unwrap();
        let _a2 = limits.admit(&alice).unwrap();
        assert_eq!(limits.admit(&alice).err(), Some(Refused::Owner(2)));
        let _b1 = limits.admit(&bob).unwrap();
        assert_eq!(limits.admit(&bob).err(), Some(Refused::Server(3)));
        assert_eq!(limits.open(), 3);
        drop(a1);
        assert_eq!(limits.open(), 2);
        let _b2 = limits.admit(&bob).unwrap();
        assert_eq!(limits.admit(&alice).err(), Some(Refused::Server(3)));
    }

    #[tokio::test]
    async fn a_stream_ends_at_the_first_failed_check_and_not_before() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let checks = Arc::new(AtomicUsize::new(0));
        let counted = checks.clone();
        let valid = move || -> futures::future::BoxFuture<'static, bool> {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { n < 2 })
        };
        let stream = while_valid(
            futures::stream::pending::<u8>().boxed(),
            valid,
            Duration::from_millis(10),
        );
        let items: Vec<u8> = tokio::time::timeout(Duration::from_secs(5), stream.collect())
            .await
            .unwrap();
        assert!(items.is_empty());
        assert_eq!(
            checks.load(Ordering::SeqCst),
            3,
            "two checks passed, the third ended it"
        );
    }
}
