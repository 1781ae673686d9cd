//! In-process adapters for the one-box mode: the job queue, the progress bus and the rate
//! limiter.
//!
//! Nothing here survives a restart; that is fine because the database is the source of
//! truth: at start, unfinished jobs are queued again from it (see `Recovery`), and a
//! watcher that reconnects gets the job's current state from the database first.

mod bus;
mod queue;
mod rate;

pub use bus::EmbeddedBus;
pub use queue::EmbeddedQueue;
pub use rate::{DEFAULT_MAX_KEYS, GovernorLimiter};
