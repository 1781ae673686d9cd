//! Telemetry setup: logs on stdout (JSON for collectors, human-readable lines on a terminal)
//! and, when configured, to Grafana Loki.
//!
//! Every log line carries the span fields of where it happened (`job_id` in stages,
//! the method and path in HTTP requests).

mod loki;
mod metrics;
mod probes;

pub use loki::Loki;
pub use metrics::{init_metrics, meter, render as render_metrics};
pub use probes::{HealthFn, serve_probes};

use std::time::Duration;

use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use loki::LokiCourier;

/// The installed logging; [`Logs::flush`] before the process ends.
#[derive(Debug)]
pub struct Logs {
    loki: Option<LokiCourier>,
}

impl Logs {
    /// Sends what is still waiting for Loki, for up to `within`.
    pub async fn flush(&self, within: Duration) {
        if let Some(loki) = &self.loki {
            loki.flush(within).await;
        }
    }
}

type Stdout = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the global subscriber: stdout, and Loki when `loki` is given (its courier runs on
/// the current async runtime; call [`init_metrics`] first so its counter is exported).
/// `RUST_LOG`, when set, overrides `filter`, for both.
///
/// # Errors
/// When `filter` is not a valid tracing filter, Loki's URL is unusable, `loki` is given
/// outside an async runtime, or a subscriber is already installed.
pub fn init_logging(json: bool, filter: &str, loki: Option<&Loki>) -> anyhow::Result<Logs> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::try_new(env)?,
        _ => EnvFilter::try_new(filter)?,
    };
    let stdout = tracing_subscriber::fmt::layer()
        .with_span_events(FmtSpan::NONE)
        .with_writer(std::io::stdout);
    let stdout: Stdout = if json {
        stdout
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        stdout.with_target(false).boxed()
    };
    let (shipper, courier) = match loki {
        Some(loki) => {
            let (layer, courier) = loki::layer(loki)?;
            (Some(layer), Some(courier))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(stdout)
        .with(shipper)
        .with(filter)
        .try_init()
        .map_err(|e| anyhow::anyhow!("could not install the log subscriber: {e}"))?;
    if let Some(courier) = &courier {
        loki::count_dropped(courier);
    }
    Ok(Logs { loki: courier })
}
