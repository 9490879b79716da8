//! The hash-chained audit log. Appends bump the `audit` counter first, which serialises
//! them on both backends (SQLite's write lock, PostgreSQL's row lock on the counter), so
//! each append reads the true last hash and the chain never forks. Rows cannot be
//! updated or deleted (triggers); [`Database::verify_audit_chain`] finds tampering
//! done around them.

use crate::conversation::thread_column;
use crate::database::{next_counter, now_micros, timestamp, Database};
use crate::error::{Error, Result};
use deckhand_runtime::audit::{
    AuditEntry, AuditLog, AuditRecord, AuditVerification, ChainVerifier, GENESIS_HASH,
};
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

/// Rows read per query while verifying (bounds memory on long chains).
const VERIFY_PAGE: i64 = 1_000;
const COUNTER: &str = "audit";
const COLUMNS: &str =
    "SELECT seq, at, actor, action, thread_id, subject, details, prev_hash, hash FROM audit_log";

/// Appends `entry` inside `transaction` (which then holds the audit lock until it ends).
pub(crate) async fn append_audit_in(
    transaction: &mut sqlx::Transaction<'_, Any>,
    entry: AuditEntry,
) -> Result<AuditRecord> {
    const CONTEXT: &str = "appending to the audit log";
    let query = |source| Error::Query {
        context: CONTEXT,
        source,
    };
    let seq = next_counter(transaction, COUNTER, CONTEXT).await?;
    let prev_hash = if seq == 1 {
        GENESIS_HASH.to_owned()
    } else {
        sqlx::query("SELECT hash FROM audit_log WHERE seq = $1")
            .bind(seq - 1)
            .fetch_optional(&mut **transaction)
            .await
            .map_err(query)?
            .map(|row| row.try_get::<String, _>(0))
            .transpose()
            .map_err(query)?
            .ok_or_else(|| Error::CorruptRow {
                context: CONTEXT,
                message: format!("audit record {} is missing", seq - 1),
            })?
    };
    let record = AuditRecord::seal(entry, seq, now_micros(), prev_hash);
    let details = serde_json::to_string(&record.details).map_err(|source| Error::Encode {
        what: "audit details",
        source,
    })?;
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, thread_id, subject, details, \
         prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(record.seq)
    .bind(record.at.timestamp_micros())
    .bind(&record.actor)
    .bind(&record.action)
    .bind(record.thread_id.map(|id| id.to_string()))
    .bind(&record.subject)
    .bind(details)
    .bind(&record.prev_hash)
    .bind(&record.hash)
    .execute(&mut **transaction)
    .await
    .map_err(query)?;
    Ok(record)
}

fn record_from_row(row: &AnyRow) -> Result<AuditRecord> {
    const CONTEXT: &str = "reading the audit log";
    let query = |source| Error::Query {
        context: CONTEXT,
        source,
    };
    let thread_id: Option<String> = row.try_get("thread_id").map_err(query)?;
    let details: String = row.try_get("details").map_err(query)?;
    Ok(AuditRecord {
        seq: row.try_get("seq").map_err(query)?,
        at: timestamp(row.try_get("at").map_err(query)?, CONTEXT)?,
        actor: row.try_get("actor").map_err(query)?,
        action: row.try_get("action").map_err(query)?,
        thread_id: match thread_id {
            Some(_) => Some(thread_column(row, "thread_id", CONTEXT)?),
            None => None,
        },
        subject: row.try_get("subject").map_err(query)?,
        details: serde_json::from_str(&details).map_err(|error| Error::CorruptRow {
            context: CONTEXT,
            message: format!("details: {error}"),
        })?,
        prev_hash: row.try_get("prev_hash").map_err(query)?,
        hash: row.try_get("hash").map_err(query)?,
    })
}

impl Database {
    /// Appends a record at the end of the audit chain, in its own transaction.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::Encode`], [`Error::CorruptRow`] when the previous
    /// record is gone.
    pub async fn append_audit_record(&self, entry: AuditEntry) -> Result<AuditRecord> {
        let query = |source| Error::Query {
            context: "appending to the audit log",
            source,
        };
        let mut transaction = self.pool.begin().await.map_err(query)?;
        let record = append_audit_in(&mut transaction, entry).await?;
        transaction.commit().await.map_err(query)?;
        Ok(record)
    }

    /// Audit records after `after_seq`, ascending, at most `limit`.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::CorruptRow`].
    pub async fn audit_records_after(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>> {
        sqlx::query(&format!("{COLUMNS} WHERE seq > $1 ORDER BY seq LIMIT $2"))
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|source| Error::Query {
                context: "reading the audit log",
                source,
            })?
            .iter()
            .map(record_from_row)
            .collect()
    }

    /// Recomputes the audit chain from the first record to the last appended (records
    /// appended while it runs are left for the next check) and reports the first broken
    /// link. A row that cannot even be read is reported as the broken link.
    ///
    /// # Errors
    /// [`Error::Query`] when the database cannot be read.
    pub async fn verify_audit_chain(&self) -> Result<AuditVerification> {
        const CONTEXT: &str = "verifying the audit log";
        let query = |source| Error::Query {
            context: CONTEXT,
            source,
        };
        // The counter first: every record up to it is committed.
        let last_appended: i64 = sqlx::query("SELECT value FROM counters WHERE name = $1")
            .bind(COUNTER)
            .fetch_optional(&self.pool)
            .await
            .map_err(query)?
            .map(|row| row.try_get::<i64, _>(0))
            .transpose()
            .map_err(query)?
            .unwrap_or(0);
        let mut verifier = ChainVerifier::new();
        let mut after = 0_i64;
        loop {
            let rows = sqlx::query(&format!(
                "{COLUMNS} WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3"
            ))
            .bind(after)
            .bind(last_appended)
            .bind(VERIFY_PAGE)
            .fetch_all(&self.pool)
            .await
            .map_err(query)?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("seq").map_err(query)?;
            for row in &rows {
                match record_from_row(row) {
                    Ok(record) => verifier.push(&record),
                    Err(error) => {
                        let seq: i64 = row.try_get("seq").map_err(query)?;
                        verifier.push_unreadable(seq, error.to_string());
                    }
                }
            }
        }
        Ok(verifier.finish(last_appended))
    }
}

impl AuditLog for Database {
    async fn append_audit(&self, entry: AuditEntry) -> deckhand_runtime::Result<AuditRecord> {
        Ok(self.append_audit_record(entry).await?)
    }

    async fn audit_records(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> deckhand_runtime::Result<Vec<AuditRecord>> {
        Ok(self.audit_records_after(after_seq, limit).await?)
    }

    async fn verify_audit(&self) -> deckhand_runtime::Result<AuditVerification> {
        Ok(self.verify_audit_chain().await?)
    }
}
