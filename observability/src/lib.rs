//! Telemetry setup: logs on stdout (JSON for collectors, human-readable lines on a terminal).
//!
//! Every log line carries the span fields of where it happened (`job_id` in stages,
//! the method and path in HTTP requests).

mod metrics;
mod probes;

pub use metrics::{init_metrics, meter, render as render_metrics};
pub use probes::{HealthFn, serve_probes};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `filter`.
///
/// # Errors
/// When `filter` is not a valid tracing filter or a subscriber is already installed.
pub fn init_logging(json: bool, filter: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::try_new(env)?,
        _ => EnvFilter::try_new(filter)?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        .with_writer(std::io::stdout);
    let installed = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.with_target(false).try_init()
    };
    installed.map_err(|e| anyhow::anyhow!("could not install the log subscriber: {e}"))
}
