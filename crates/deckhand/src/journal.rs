//! The cluster gate's journal and audit log, kept in the thread store: prior states of
//! objects go to the thread's snapshots (what `deckhand threads restore` reads back, in
//! any later process), and every policy decision and cluster write to the hash-chained
//! audit log.

use deckhand_runtime::audit::{AuditEntry, AuditLog};
use deckhand_runtime::restore::{ObjectKey, SnapshotStore};
use deckhand_runtime::ThreadId;
use deckhand_store::Database;
use deckhand_tools::cluster::journal::JournalFuture;
use deckhand_tools::cluster::{AuditRecord, AuditSink, ChangeJournal, PriorState, Stage};
use deckhand_tools::ObjectRef;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Prior states in the store's snapshots table.
#[derive(Debug, Clone)]
pub struct StoreJournal {
    database: Database,
}

impl StoreJournal {
    /// A journal writing to `database`.
    pub fn new(database: Database) -> Self {
        Self { database }
    }
}

impl ChangeJournal for StoreJournal {
    fn record_prior<'a>(
        &'a self,
        thread: &'a str,
        object: &'a ObjectRef,
        prior: Option<&'a Value>,
    ) -> JournalFuture<'a> {
        Box::pin(async move {
            let thread: ThreadId = thread
                .parse()
                .map_err(|error| format!("not a thread id: {error}"))?;
            self.database
                .record_snapshot(thread, &key_of(object), prior)
                .await
                .map_err(|error| format!("{error:#}"))
        })
    }
}

/// The thread's prior states, first touched first, as the gate's restore wants them.
///
/// # Errors
/// The store's error, as a message.
pub async fn priors_of(database: &Database, thread: ThreadId) -> Result<Vec<PriorState>, String> {
    let snapshots = database
        .snapshots(thread)
        .await
        .map_err(|error| format!("{error:#}"))?;
    Ok(snapshots
        .into_iter()
        .map(|snapshot| PriorState {
            object: ObjectRef {
                api_version: snapshot.object.api_version,
                kind: snapshot.object.kind,
                namespace: snapshot.object.namespace,
                name: snapshot.object.name,
            },
            prior: snapshot.prior,
        })
        .collect())
}

fn key_of(object: &ObjectRef) -> ObjectKey {
    ObjectKey {
        api_version: object.api_version.clone(),
        kind: object.kind.clone(),
        namespace: object.namespace.clone(),
        name: object.name.clone(),
    }
}

/// The gate's audit records, appended to the store's hash-chained audit log in the
/// order they were made, by one writer task (the gate's sink must not block).
#[derive(Debug, Clone)]
pub struct StoreAudit {
    sender: mpsc::UnboundedSender<AuditEntry>,
    /// Where policy decisions are counted, once `deckhand serve` sets it.
    metrics: MetricsCell,
}

/// The metrics deckhand counts in, set once by `deckhand serve` (the CLI counts nothing).
pub type MetricsCell = std::sync::Arc<std::sync::OnceLock<deckhand_api::Metrics>>;

/// Waits until every audit record sent before it was written.
pub struct AuditFlush(tokio::task::JoinHandle<()>);

impl AuditFlush {
    /// Waits for the writer to finish (after every [`StoreAudit`] clone is dropped).
    pub async fn finish(self) {
        let _ = self.0.await;
    }
}

impl StoreAudit {
    /// A sink writing to `database`; await the [`AuditFlush`] after dropping the sink
    /// (and the gates holding it) so nothing is lost at exit.
    pub fn start(database: Database, metrics: MetricsCell) -> (Self, AuditFlush) {
        let (sender, mut receiver) = mpsc::unbounded_channel::<AuditEntry>();
        let writer = tokio::spawn(async move {
            while let Some(entry) = receiver.recv().await {
                if let Err(error) = database.append_audit(entry).await {
                    tracing::error!(error = %format!("{error:#}"), "an audit record was not stored");
                }
            }
        });
        (Self { sender, metrics }, AuditFlush(writer))
    }
}

impl AuditSink for StoreAudit {
    fn record(&self, record: &AuditRecord) {
        if let (Some(metrics), false) = (self.metrics.get(), record.stage == Stage::Write) {
            // One count per objecting policy; an allowed decision counts once as `all`.
            for violation in &record.violations {
                metrics.policy_decision(&violation.policy, "denied");
            }
            for warning in &record.warnings {
                metrics.policy_decision(&warning.policy, "warned");
            }
            if record.allowed && record.violations.is_empty() {
                metrics.policy_decision("all", "allowed");
            }
        }
        let action = match (record.stage, record.allowed) {
            (Stage::Write, true) => "cluster.write",
            (Stage::Write, false) => "cluster.write_failed",
            (_, true) => "policy.allowed",
            (_, false) => "policy.denied",
        };
        let actor = record
            .approved_by
            .clone()
            .unwrap_or_else(|| record.requested_by.clone());
        let entry =
            AuditEntry::new(actor, action, None, record.object.clone()).with_details(json!({
                "requested_by": record.requested_by,
                "approved_by": record.approved_by,
                "verb": record.verb,
                "stage": record.stage,
                "violations": record.violations,
                "warnings": record.warnings,
                "error": record.error,
            }));
        if self.sender.send(entry).is_err() {
            tracing::error!("the audit writer has stopped; a record was not stored");
        }
    }
}
