//! [`SharedThreadRepository`]: a [`ThreadRepository`] for async code. libgit2 blocks and
//! a repository handle is not `Sync`, so each call takes the repository's lock on a
//! blocking thread (`spawn_blocking`); steps for different threads queue rather than
//! interleave inside one clone.

use std::sync::{Arc, Mutex, PoisonError};

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::record::{Approval, Completion, Manifest};
use crate::repo::{Recorded, ThreadRepository};

/// A cloneable, `Send + Sync` handle on one [`ThreadRepository`], with async methods.
#[derive(Debug, Clone)]
pub struct SharedThreadRepository {
    name: Arc<str>,
    inner: Arc<Mutex<ThreadRepository>>,
}

impl SharedThreadRepository {
    /// Wraps an opened repository.
    pub fn new(repository: ThreadRepository) -> Self {
        Self {
            name: repository.name().into(),
            inner: Arc::new(Mutex::new(repository)),
        }
    }

    /// The repository's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// [`ThreadRepository::record_approval`] on a blocking thread.
    pub async fn record_approval(&self, thread: Uuid, approval: Approval) -> Result<Recorded> {
        self.run(move |repo| repo.record_approval(thread, &approval))
            .await
    }

    /// [`ThreadRepository::record_completion`] on a blocking thread.
    pub async fn record_completion(
        &self,
        thread: Uuid,
        completion: Completion,
    ) -> Result<Recorded> {
        self.run(move |repo| repo.record_completion(thread, &completion))
            .await
    }

    /// [`ThreadRepository::read_manifests`] on a blocking thread.
    pub async fn read_manifests(&self, thread: Uuid) -> Result<Vec<Manifest>> {
        self.run(move |repo| repo.read_manifests(thread)).await
    }

    async fn run<T: Send + 'static>(
        &self,
        step: impl FnOnce(&ThreadRepository) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // A step that panicked left no half-written state behind (trees are built in
            // memory, refs move last), so the lock stays usable.
            let repo = inner.lock().unwrap_or_else(PoisonError::into_inner);
            step(&repo)
        })
        .await
        .map_err(|source| Error::Blocking {
            repository: self.name.to_string(),
            source,
        })?
    }
}
