//! The thread store: where threads (and, as the store grows, their messages, plans and
//! audit log) are kept. The runtime only sees this trait.

use crate::error::Result;
use crate::thread::{Thread, ThreadId};
use std::future::Future;

/// Persistent storage of threads.
pub trait ThreadStore: Send + Sync {
    /// Stores a new thread. Storing the same id twice is an error.
    fn create_thread(&self, thread: &Thread) -> impl Future<Output = Result<()>> + Send;

    /// The thread with `id`, if there is one.
    fn thread(&self, id: ThreadId) -> impl Future<Output = Result<Option<Thread>>> + Send;

    /// Threads, newest first, at most `limit`.
    fn recent_threads(&self, limit: u32) -> impl Future<Output = Result<Vec<Thread>>> + Send;
}
