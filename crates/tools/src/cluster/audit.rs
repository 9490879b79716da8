//! The audit trail of cluster operations: every decision of the policy gate and every
//! write, with who asked, what, at which checkpoint and with what outcome.

use deckhand_policy::Violation;
use serde::Serialize;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where in its life an operation was when the record was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The policy engine judged the operation as asked.
    Requested,
    /// The policy engine judged the API server's dry-run result.
    DryRun,
    /// The real write was sent (after both checkpoints and an approval).
    Write,
    /// A read was judged (and, when allowed, sent).
    Read,
}

/// One audited event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// Microseconds since the Unix epoch.
    pub at_micros: i64,
    /// The person the operation is done for.
    pub requested_by: String,
    /// Who approved the write (for [`Stage::Write`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// The verb: get, list, create, patch, delete.
    pub verb: String,
    /// The object, e.g. `apps/v1 Deployment shop/web`.
    pub object: String,
    /// The stage.
    pub stage: Stage,
    /// Whether the operation may go on (for a write: whether it succeeded).
    pub allowed: bool,
    /// The policies that objected.
    pub violations: Vec<Violation>,
    /// The policies' warnings.
    pub warnings: Vec<Violation>,
    /// The API server's error, when a write or dry run failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AuditRecord {
    /// The current time in the records' unit.
    pub fn now_micros() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// Receives audit records. The gate calls it synchronously, in order; a sink that
/// persists should hand records to a background writer rather than block.
pub trait AuditSink: Send + Sync {
    /// Records one event.
    fn record(&self, record: &AuditRecord);
}

/// Writes records as JSON to the `deckhand::audit` tracing target (the default sink).
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingAudit;

impl AuditSink for TracingAudit {
    fn record(&self, record: &AuditRecord) {
        let json = serde_json::to_string(record).unwrap_or_default();
        tracing::info!(target: "deckhand::audit", record = %json, "audit");
    }
}

/// Keeps records in memory: for tests and for callers that persist them in batches.
#[derive(Debug, Default)]
pub struct MemoryAudit {
    records: Mutex<Vec<AuditRecord>>,
}

impl MemoryAudit {
    /// The records so far, oldest first.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl AuditSink for MemoryAudit {
    fn record(&self, record: &AuditRecord) {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(record.clone());
    }
}
