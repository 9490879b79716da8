//! The change journal: where the gate keeps each object's state from before a thread
//! first changed it, so the thread can be restored later.
//!
//! The gate writes to the journal *before* it writes to the cluster; when the journal
//! cannot take the record, the write does not happen (a change that could not be undone
//! is worse than a change that waits). `deckhand` backs the journal with the thread
//! store; [`MemoryJournal`] keeps it in memory for tests and one-shot commands.

use super::ObjectRef;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

/// The future a journal returns: whether this was the thread's first touch of the object.
pub type JournalFuture<'a> =
    Pin<Box<dyn Future<Output = std::result::Result<bool, String>> + Send + 'a>>;

/// Where prior states go.
pub trait ChangeJournal: Send + Sync {
    /// Records `prior`, the object before `thread` first changes it (`None`: the thread
    /// creates it). Only the first record per thread and object counts; later ones are
    /// no-ops that return `Ok(false)`. Errors are messages for the person.
    fn record_prior<'a>(
        &'a self,
        thread: &'a str,
        object: &'a ObjectRef,
        prior: Option<&'a Value>,
    ) -> JournalFuture<'a>;
}

/// One object's state from before a thread touched it, in the order objects were first
/// touched.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorState {
    /// The object.
    pub object: ObjectRef,
    /// Its state before the thread (see [`snapshot_of`]); `None` when the thread created it.
    pub prior: Option<Value>,
}

/// A journal in memory.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    records: Mutex<Vec<(String, PriorState)>>,
}

impl MemoryJournal {
    /// The prior states recorded for `thread`, first touched first.
    pub fn priors(&self, thread: &str) -> Vec<PriorState> {
        self.records
            .lock()
            .map(|records| {
                records
                    .iter()
                    .filter(|(owner, _)| owner == thread)
                    .map(|(_, state)| state.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl ChangeJournal for MemoryJournal {
    fn record_prior<'a>(
        &'a self,
        thread: &'a str,
        object: &'a ObjectRef,
        prior: Option<&'a Value>,
    ) -> JournalFuture<'a> {
        Box::pin(async move {
            let mut records = self
                .records
                .lock()
                .map_err(|_| "the journal's lock is poisoned".to_owned())?;
            if records
                .iter()
                .any(|(owner, state)| owner == thread && &state.object == object)
            {
                return Ok(false);
            }
            records.push((
                thread.to_owned(),
                PriorState {
                    object: object.clone(),
                    prior: prior.cloned(),
                },
            ));
            Ok(true)
        })
    }
}

/// The object as a restore needs it: without `status` and the bookkeeping the API server
/// keeps (`managedFields`, `resourceVersion`, `uid`, `creationTimestamp`, `generation`,
/// `selfLink`), which a write must not carry back.
pub fn snapshot_of(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(fields) = object.as_object_mut() {
        fields.remove("status");
        if let Some(metadata) = fields.get_mut("metadata").and_then(Value::as_object_mut) {
            for bookkeeping in [
                "managedFields",
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "generation",
                "selfLink",
            ] {
                metadata.remove(bookkeeping);
            }
        }
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snapshots_drop_status_and_bookkeeping_but_keep_content() {
        let live = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u", "resourceVersion": "7",
                         "managedFields": [{}], "labels": {"app": "web"}},
            "spec": {"replicas": 2},
            "status": {"readyReplicas": 2}
        });
        assert_eq!(
            snapshot_of(&live),
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
                "spec": {"replicas": 2}
            })
        );
    }

    #[tokio::test]
    async fn the_first_touch_per_thread_and_object_wins() {
        let journal = MemoryJournal::default();
        let web = ObjectRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some("shop".into()),
            name: "web".into(),
        };
        let before = json!({"spec": {"replicas": 2}});
        let after = json!({"spec": {"replicas": 5}});
        assert!(journal
            .record_prior("t1", &web, Some(&before))
            .await
            .unwrap());
        assert!(!journal
            .record_prior("t1", &web, Some(&after))
            .await
            .unwrap());
        assert!(journal
            .record_prior("t2", &web, Some(&after))
            .await
            .unwrap());
        assert_eq!(journal.priors("t1")[0].prior, Some(before));
        assert_eq!(journal.priors("t2")[0].prior, Some(after));
    }
}
