//! In-process adapters for the one-box mode: the job queue and the progress bus.
//!
//! Nothing here survives a restart; that is fine because the database is the source of
//! truth: at start, unfinished jobs are queued again from it (see `Recovery`), and a
//! watcher that reconnects gets the job's current state from the database first.

mod bus;
mod queue;

pub use bus::EmbeddedBus;
pub use queue::EmbeddedQueue;
