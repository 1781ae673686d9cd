//! Prometheus metrics through OpenTelemetry: one registry per process, rendered at `/metrics`.
//!
//! Instruments are created where they are used, from [`meter`]; names follow Prometheus
//! conventions once exported (`ferry_stage_runs_total`, `ferry_http_request_duration_seconds`).

use std::sync::OnceLock;

use opentelemetry::global;
use opentelemetry::metrics::Meter;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder, TextEncoder};

static REGISTRY: OnceLock<prometheus::Registry> = OnceLock::new();

/// The meter all of Ferry's instruments come from.
pub fn meter() -> Meter {
    global::meter("ferry")
}

/// Installs the Prometheus exporter as the global meter provider (once per process).
///
/// # Errors
/// When the exporter cannot be built.
pub fn init_metrics() -> anyhow::Result<()> {
    if REGISTRY.get().is_some() {
        return Ok(());
    }
    let registry = prometheus::Registry::new();
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .scope_info_enabled(false)
        .without_target_info()
        .build()?;
    let provider = SdkMeterProvider::builder().with_reader(exporter).build();
    global::set_meter_provider(provider);
    let _ = REGISTRY.set(registry);
    runtime_gauges();
    Ok(())
}

/// Gauges read from the async runtime when metrics are rendered (on one of its threads): a
/// leak of spawned work shows as `ferry_runtime_tasks` growing without coming back.
fn runtime_gauges() {
    // The SDK keeps the callback for the life of the meter provider; the handle is not needed.
    let _ = meter()
        .u64_observable_gauge("ferry_runtime_tasks")
        .with_description("Tasks alive on the async runtime")
        .with_callback(|observer| {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                observer.observe(runtime.metrics().num_alive_tasks() as u64, &[]);
            }
        })
        .build();
}

/// The current metrics in the Prometheus text format.
pub fn render() -> String {
    let Some(registry) = REGISTRY.get() else {
        return String::new();
    };
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::warn!(error = %e, "could not encode metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}
