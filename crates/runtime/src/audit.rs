//! The audit log: an append-only, hash-chained record of every decision and operation
//! (plans, policy decisions, approvals, tool calls, cluster writes, restores, ratings).
//!
//! Each record holds the hash of the one before it, and its own hash is SHA-256 over a
//! canonical encoding of all its fields including that previous hash, so changing,
//! removing or reordering any record breaks every link after it. [`ChainVerifier`] is the
//! check; stores feed it their records in order.

use crate::error::Result;
use crate::plan::canonical_json;
use crate::thread::ThreadId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::future::Future;

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What to append: the store adds the sequence number, time and hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Who did it: a person (`ana`), an agent (`scarlet`), or deckhand itself.
    pub actor: String,
    /// What was done, dotted: `plan.approved`, `cluster.write`, `thread.rated`, ...
    pub action: String,
    /// The thread it happened in, if any.
    pub thread_id: Option<ThreadId>,
    /// What it was done to: a plan hash, an object (`apps/v1 Deployment shop/web`), ...
    pub subject: String,
    /// Everything else worth keeping.
    pub details: serde_json::Value,
}

impl AuditEntry {
    /// An entry with empty details.
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        thread_id: Option<ThreadId>,
        subject: impl Into<String>,
    ) -> Self {
        Self {
            actor: actor.into(),
            action: action.into(),
            thread_id,
            subject: subject.into(),
            details: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    /// The same entry with `details`.
    #[must_use]
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// When it was appended (microsecond precision).
    pub at: DateTime<Utc>,
    /// See [`AuditEntry::actor`].
    pub actor: String,
    /// See [`AuditEntry::action`].
    pub action: String,
    /// See [`AuditEntry::thread_id`].
    pub thread_id: Option<ThreadId>,
    /// See [`AuditEntry::subject`].
    pub subject: String,
    /// See [`AuditEntry::details`].
    pub details: serde_json::Value,
    /// The previous record's hash ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// Lowercase hex SHA-256 over [`AuditRecord::canonical_encoding`].
    pub hash: String,
}

impl AuditRecord {
    /// Builds record `seq` after `prev_hash` and seals it with its hash.
    pub fn seal(entry: AuditEntry, seq: i64, at: DateTime<Utc>, prev_hash: String) -> Self {
        let mut record = Self {
            seq,
            at,
            actor: entry.actor,
            action: entry.action,
            thread_id: entry.thread_id,
            subject: entry.subject,
            details: entry.details,
            prev_hash,
            hash: String::new(),
        };
        record.hash = record.compute_hash();
        record
    }

    /// The bytes the hash covers: a version tag, then canonical JSON (keys sorted, no
    /// whitespace) of every field but `hash`, with the time as integer microseconds.
    pub fn canonical_encoding(&self) -> String {
        let fields = serde_json::json!({
            "seq": self.seq,
            "at": self.at.timestamp_micros(),
            "actor": self.actor,
            "action": self.action,
            "thread_id": self.thread_id.map(|id| id.to_string()),
            "subject": self.subject,
            "details": self.details,
            "prev_hash": self.prev_hash,
        });
        format!("deckhand-audit-v1\n{}", canonical_json(&fields))
    }

    /// The hash this record should carry.
    pub fn compute_hash(&self) -> String {
        format!("{:x}", Sha256::digest(self.canonical_encoding().as_bytes()))
    }
}

/// The first place the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenLink {
    /// The record at fault (for a missing record, the sequence number expected there).
    pub seq: i64,
    /// What is wrong, in words.
    pub problem: String,
}

/// The result of checking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerification {
    /// How many records were read.
    pub records: u64,
    /// The first broken link; `None` when the chain is whole.
    pub first_broken: Option<BrokenLink>,
}

impl AuditVerification {
    /// Whether the chain is whole.
    pub fn is_intact(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// Checks records fed to it in ascending `seq` order; stores stream their rows into it.
#[derive(Debug)]
pub struct ChainVerifier {
    records: u64,
    expected_seq: i64,
    prev_hash: String,
    first_broken: Option<BrokenLink>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            records: 0,
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            first_broken: None,
        }
    }
}

impl ChainVerifier {
    /// A verifier expecting record 1 first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next record. After the first broken link, records are only counted.
    pub fn push(&mut self, record: &AuditRecord) {
        self.records += 1;
        if self.first_broken.is_some() {
            return;
        }
        let problem = if record.seq != self.expected_seq {
            Some((
                self.expected_seq,
                format!(
                    "record {} is missing (the next record is {})",
                    self.expected_seq, record.seq
                ),
            ))
        } else if record.prev_hash != self.prev_hash {
            Some((
                record.seq,
                format!(
                    "prev_hash {} does not match the hash of record {} ({})",
                    record.prev_hash,
                    record.seq - 1,
                    self.prev_hash
                ),
            ))
        } else {
            let computed = record.compute_hash();
            (computed != record.hash).then(|| {
                (
                    record.seq,
                    format!(
                        "the record's content does not match its hash (stored {}, computed {computed})",
                        record.hash
                    ),
                )
            })
        };
        match problem {
            Some((seq, problem)) => self.first_broken = Some(BrokenLink { seq, problem }),
            None => {
                self.expected_seq += 1;
                self.prev_hash = record.hash.clone();
            }
        }
    }

    /// Notes a record that could not be read at all (say, its details are not JSON):
    /// it breaks the chain there.
    pub fn push_unreadable(&mut self, seq: i64, problem: impl Into<String>) {
        self.records += 1;
        if self.first_broken.is_none() {
            self.first_broken = Some(BrokenLink {
                seq,
                problem: format!("the record cannot be read: {}", problem.into()),
            });
        }
    }

    /// The result, given the last sequence number the store says it appended (so
    /// records cut off the end are noticed too).
    pub fn finish(mut self, last_appended_seq: i64) -> AuditVerification {
        let last_seen = self.expected_seq - 1;
        if self.first_broken.is_none() && last_seen != last_appended_seq {
            self.first_broken = Some(BrokenLink {
                seq: last_seen + 1,
                problem: format!(
                    "the chain ends at record {last_seen} but {last_appended_seq} were appended"
                ),
            });
        }
        AuditVerification {
            records: self.records,
            first_broken: self.first_broken,
        }
    }
}

/// Where the audit log is kept.
pub trait AuditLog: Send + Sync {
    /// Appends a record at the end of the chain. Concurrent appends are serialised, so
    /// the chain never forks.
    fn append_audit(&self, entry: AuditEntry) -> impl Future<Output = Result<AuditRecord>> + Send;

    /// Records with `seq` above `after_seq`, ascending, at most `limit`.
    fn audit_records(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AuditRecord>>> + Send;

    /// Recomputes the whole chain.
    fn verify_audit(&self) -> impl Future<Output = Result<AuditVerification>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(length: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=length)
            .map(|seq| {
                let entry = AuditEntry::new("ana", "thread.rated", None, format!("t{seq}"))
                    .with_details(serde_json::json!({"score": seq, "b": [1, 2], "a": null}));
                let record = AuditRecord::seal(
                    entry,
                    seq,
                    DateTime::from_timestamp_micros(1_700_000_000_000_000 + seq).unwrap(),
                    prev.clone(),
                );
                prev = record.hash.clone();
                record
            })
            .collect()
    }

    fn verify(records: &[AuditRecord], last: i64) -> AuditVerification {
        let mut verifier = ChainVerifier::new();
        records.iter().for_each(|record| verifier.push(record));
        verifier.finish(last)
    }

    #[test]
    fn a_whole_chain_verifies() {
        let records = chain(5);
        assert_eq!(records[0].prev_hash, GENESIS_HASH);
        assert_eq!(records[1].prev_hash, records[0].hash);
        let result = verify(&records, 5);
        assert!(result.is_intact(), "{result:?}");
        assert_eq!(result.records, 5);
        assert!(verify(&[], 0).is_intact());
    }

    #[test]
    fn the_hash_does_not_depend_on_key_order() {
        let mut record = chain(1).remove(0);
        record.details = serde_json::json!({"a": null, "score": 1, "b": [1, 2]});
        assert_eq!(record.compute_hash(), record.hash);
    }

    #[test]
    fn each_kind_of_damage_names_its_record() {
        let mut edited = chain(5);
        edited[2].details = serde_json::json!({"score": 99});
        let broken = verify(&edited, 5).first_broken.unwrap();
        assert_eq!(broken.seq, 3);
        assert!(broken.problem.contains("content"), "{broken:?}");

        // Rewriting a record with a fresh hash still breaks the next record's link.
        let mut resealed = chain(5);
        resealed[2].actor = "mallory".into();
        resealed[2].hash = resealed[2].compute_hash();
        let broken = verify(&resealed, 5).first_broken.unwrap();
        assert_eq!(broken.seq, 4);
        assert!(broken.problem.contains("prev_hash"), "{broken:?}");

        let mut removed = chain(5);
        removed.remove(1);
        let broken = verify(&removed, 5).first_broken.unwrap();
        assert_eq!(broken.seq, 2);
        assert!(broken.problem.contains("missing"), "{broken:?}");

        let truncated = chain(3);
        let broken = verify(&truncated, 5).first_broken.unwrap();
        assert_eq!(broken.seq, 4);
        assert!(broken.problem.contains("ends at record 3"), "{broken:?}");
    }
}
