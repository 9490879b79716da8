//! Snapshots for restore: before a thread first changes a cluster object, the object as
//! it was is kept, so "restore" can put every object back (or delete those the thread
//! created), newest first.

use crate::error::Result;
use crate::thread::ThreadId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;

/// Names one Kubernetes object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    /// `v1`, `apps/v1`, ...
    pub api_version: String,
    /// `Deployment`, `ConfigMap`, ...
    pub kind: String,
    /// The namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(
                f,
                "{} {} {namespace}/{}",
                self.api_version, self.kind, self.name
            ),
            None => write!(f, "{} {} {}", self.api_version, self.kind, self.name),
        }
    }
}

/// An object as it was before a thread first touched it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The thread that touched it.
    pub thread_id: ThreadId,
    /// Order of first touch within the thread, ascending (restore walks it backwards).
    pub seq: i64,
    /// The object.
    pub object: ObjectKey,
    /// The object before the thread first touched it (status, managedFields,
    /// resourceVersion, uid already removed by the caller); None when the thread created it.
    pub prior: Option<serde_json::Value>,
    /// When the snapshot was taken.
    pub taken_at: DateTime<Utc>,
}

/// Where snapshots are kept.
pub trait SnapshotStore: Send + Sync {
    /// Records `prior` as the state of `object` before `thread` touched it. The first
    /// call per (thread, object) wins: later calls change nothing and return `false`.
    /// Safe to call concurrently.
    fn record_snapshot(
        &self,
        thread: ThreadId,
        object: &ObjectKey,
        prior: Option<&serde_json::Value>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// The thread's snapshots in the order the objects were first touched.
    fn snapshots(&self, thread: ThreadId) -> impl Future<Output = Result<Vec<Snapshot>>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_like_kubectl() {
        let mut key = ObjectKey {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some("shop".into()),
            name: "web".into(),
        };
        assert_eq!(key.to_string(), "apps/v1 Deployment shop/web");
        key.namespace = None;
        assert_eq!(key.to_string(), "apps/v1 Deployment web");
    }
}
