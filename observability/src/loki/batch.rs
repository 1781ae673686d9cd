//! One batch of log lines for Loki, and its single push.
//!
//! `tracing-loki` formats the lines (span and event fields as JSON) and speaks the push
//! protocol (snappy-compressed protobuf to `/loki/api/v1/push`), but it keeps every line it
//! could not send, without limit (its `SendQueue` says "TODO: Add limit"), and retries for
//! ever. So Ferry uses one `tracing-loki` layer and task per batch: the layer collects the
//! lines into the task's channel (512 places) while the batch is open, and the task is first
//! polled once the batch is closed, with its end mark already queued, so it makes exactly
//! one request and ends. Whether that request failed is read from the error event the task
//! logs, which [`Push`] catches with a dispatcher of its own.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tracing::Dispatch;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::{Interest, Subscriber};
use tracing::{Event, Metadata};
use tracing_loki::url::Url;
use tracing_loki::{BackgroundTask, BackgroundTaskController, Builder};

/// Lines a batch may hold: `tracing-loki`'s channel has 512 places, and one stays free for
/// the end mark, so closing a batch never waits and no line is lost to a full channel.
pub(super) const CAPACITY: usize = 511;

/// Lines collected for one push: the `tracing-loki` layer they go through, the task that
/// will send them, and the handle that ends it.
pub(super) struct Batch {
    pub(super) layer: tracing_loki::Layer,
    controller: BackgroundTaskController,
    task: BackgroundTask,
    pub(super) lines: usize,
}

impl Batch {
    /// An empty batch for Loki at `push_base`, labelled by `builder`.
    pub(super) fn new(builder: &Builder, push_base: &Url) -> Result<Self, tracing_loki::Error> {
        let (layer, controller, task) = builder.clone().build_controller_url(push_base.clone())?;
        Ok(Self {
            layer,
            controller,
            task,
            lines: 0,
        })
    }

    /// Sends the batch's lines in one request: `Err` with the reason when it failed.
    pub(super) async fn send(self) -> Result<(), String> {
        let Self {
            layer,
            controller,
            task,
            ..
        } = self;
        drop(layer);
        // The channel has a place for it (see `CAPACITY`), so this does not wait.
        controller.shutdown().await;
        // Unconstrained: under tokio's budget the task would take only part of its channel
        // on its first poll, send that, and send the rest in a second request.
        let outcome = tokio::task::unconstrained(Push {
            task: Box::pin(task),
            error: None,
        })
        .await;
        // Only now: with every sender gone, the task would spin on its closed channel.
        drop(controller);
        outcome
    }
}

/// Polls a closed batch's task under [`Catch`], so the error event `tracing-loki` logs when
/// its request fails is seen here (and not on stdout).
struct Push {
    task: Pin<Box<BackgroundTask>>,
    error: Option<String>,
}

impl Future for Push {
    type Output = Result<(), String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let polled = tracing::dispatcher::with_default(catcher(), || this.task.as_mut().poll(cx));
        if let Some(error) = CAUGHT.with(RefCell::take) {
            this.error.get_or_insert(error);
        }
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(this.error.take().map_or(Ok(()), Err)),
        }
    }
}

thread_local! {
    /// The `error` of the last failure `tracing-loki` reported on this thread.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// One dispatcher for all pushes: creating one re-registers every call site.
fn catcher() -> &'static Dispatch {
    static CATCH: OnceLock<Dispatch> = OnceLock::new();
    CATCH.get_or_init(|| Dispatch::new(Catch))
}

/// Takes `tracing-loki`'s own error events and nothing else.
struct Catch;

fn from_tracing_loki(meta: &Metadata<'_>) -> bool {
    meta.target().starts_with("tracing_loki") && *meta.level() <= LevelFilter::WARN
}

impl Subscriber for Catch {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if from_tracing_loki(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        from_tracing_loki(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::WARN)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut reason = Reason(None);
        event.record(&mut reason);
        let text = reason
            .0
            .unwrap_or_else(|| "Loki did not take the lines".to_owned());
        CAUGHT.with(|caught| *caught.borrow_mut() = Some(text));
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// The `error` field of an event.
struct Reason(Option<String>);

impl Visit for Reason {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "error" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}
