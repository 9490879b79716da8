//! Knowledge entries and their full-text search: FTS5 (BM25) on SQLite, a generated
//! `tsvector` with a GIN index (`ts_rank_cd`) on PostgreSQL. Both rank with the formula
//! of [`deckhand_runtime::knowledge`], computed in SQL so only the best rows leave the
//! database.

use crate::conversation::{json_column, thread_column, uuid_column};
use crate::database::{now_micros, timestamp, Backend, Database};
use crate::error::{Error, Result};
use crate::replicated::Replicated;
use deckhand_runtime::knowledge::{query_terms, KnowledgeEntry, KnowledgeHit, KnowledgeStore};
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

const MICROS_PER_DAY: f64 = 86_400_000_000.0;

/// At most this many matching entries, the newest, are ranked per search: it bounds a
/// search's cost when a query's words are common (a million entries mentioning "pod")
/// at the price of never offering an older match beyond them.
pub const RANKED_CANDIDATES: i64 = 2_000;

/// `score` as in the runtime's formula, over `text_rank` (≥ 0), `k.rating` and
/// `k.created_at`, with `$2` now (µs) and `$3` the half-life (µs).
const SCORE: &str = "(m.text_rank / (1.0 + m.text_rank)) * k.rating / 100.0 \
     * (0.5 + 0.5 / (1.0 + (CASE WHEN $2 > k.created_at THEN $2 - k.created_at ELSE 0 END) / $3))";

pub(crate) const ENTRY_COLUMNS: &str = "k.id, k.thread_id, k.cluster_id, k.request, k.response, \
     k.resolution_summary, k.resolution_steps, k.tags, k.keywords, k.rating, k.created_at";

/// Inserts or replaces `entry` (by id) in `executor`'s database.
pub(crate) async fn upsert_knowledge_with<'e, E>(executor: E, entry: &KnowledgeEntry) -> Result<()>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let encode = |source| Error::Encode {
        what: "a knowledge entry",
        source,
    };
    sqlx::query(
        "INSERT INTO knowledge (id, thread_id, cluster_id, request, response, \
         resolution_summary, resolution_steps, tags, keywords, rating, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (id) DO UPDATE SET thread_id = excluded.thread_id, \
         cluster_id = excluded.cluster_id, request = excluded.request, \
         response = excluded.response, resolution_summary = excluded.resolution_summary, \
         resolution_steps = excluded.resolution_steps, tags = excluded.tags, \
         keywords = excluded.keywords, rating = excluded.rating, \
         created_at = excluded.created_at, updated_at = excluded.updated_at",
    )
    .bind(entry.id.to_string())
    .bind(entry.thread_id.to_string())
    .bind(&entry.cluster_id)
    .bind(&entry.request)
    .bind(&entry.response)
    .bind(&entry.resolution_summary)
    .bind(serde_json::to_string(&entry.resolution_steps).map_err(encode)?)
    .bind(serde_json::to_string(&entry.tags).map_err(encode)?)
    .bind(serde_json::to_string(&entry.keywords).map_err(encode)?)
    .bind(entry.rating.map(i64::from))
    .bind(entry.created_at.timestamp_micros())
    .bind(now_micros().timestamp_micros())
    .execute(executor)
    .await
    .map_err(|source| Error::Query {
        context: "storing a knowledge entry",
        source,
    })?;
    Ok(())
}

impl Database {
    /// Stores a knowledge entry, or replaces the one with the same id.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::Encode`].
    pub async fn upsert_knowledge_entry(&self, entry: &KnowledgeEntry) -> Result<()> {
        const CONTEXT: &str = "storing a knowledge entry";
        let mut transaction = self.begin_write(CONTEXT).await?;
        upsert_knowledge_with(&mut *transaction, entry).await?;
        self.commit_write(transaction, CONTEXT, || {
            vec![Replicated::Knowledge(entry.clone())]
        })
        .await
    }

    /// Stores many entries in one transaction (bulk loads: imports, the benchmark).
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::Encode`]; nothing is stored then.
    pub async fn upsert_knowledge_batch(&self, entries: &[KnowledgeEntry]) -> Result<()> {
        const CONTEXT: &str = "storing knowledge entries";
        let mut transaction = self.begin_write(CONTEXT).await?;
        for entry in entries {
            upsert_knowledge_with(&mut *transaction, entry).await?;
        }
        self.commit_write(transaction, CONTEXT, || {
            entries.iter().cloned().map(Replicated::Knowledge).collect()
        })
        .await
    }

    /// The thread's knowledge entries.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::CorruptRow`].
    pub async fn knowledge_of_thread(
        &self,
        thread: deckhand_runtime::ThreadId,
    ) -> Result<Vec<KnowledgeEntry>> {
        sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM knowledge k WHERE k.thread_id = $1 ORDER BY k.created_at"
        ))
        .bind(thread.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(|source| Error::Query {
            context: "reading knowledge",
            source,
        })?
        .iter()
        .map(entry_from_row)
        .collect()
    }

    /// The best knowledge entries for `query` (user text, taken literally: only its
    /// words are searched for), at most `limit`: entries matching every word first, by
    /// score, then (when they are fewer than `limit`) entries matching any word, by
    /// score. Entries rated below the store's threshold, or unrated, are never
    /// returned.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::CorruptRow`].
    pub async fn search_knowledge(&self, query: &str, limit: u32) -> Result<Vec<KnowledgeHit>> {
        if self.is_replicated() {
            return Ok(self.search_knowledge_sourced(query, limit).await?.0);
        }
        let terms = query_terms(query);
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let mut hits = self.ranked_matches(&terms, Matching::All, limit).await?;
        if terms.len() > 1 && hits.len() < limit as usize {
            // Entries matching every word stay first, whatever the limit.
            for hit in self.ranked_matches(&terms, Matching::Any, limit).await? {
                if !hits.iter().any(|seen| seen.entry.id == hit.entry.id) {
                    hits.push(hit);
                }
            }
            hits.truncate(limit as usize);
        }
        Ok(hits)
    }

    /// Ranks the newest [`RANKED_CANDIDATES`] eligible entries matching the terms.
    async fn ranked_matches(
        &self,
        terms: &[String],
        matching: Matching,
        limit: u32,
    ) -> Result<Vec<KnowledgeHit>> {
        const CONTEXT: &str = "searching knowledge";
        let options = self.search_options;
        let (sql, text_query) = match self.backend() {
            Backend::Sqlite => (
                // FTS5 walks its doclists newest rowid first; bm25 is computed only for
                // the candidates kept.
                format!(
                    "SELECT {ENTRY_COLUMNS}, m.text_rank, {SCORE} AS score FROM \
                     (SELECT f.rowid AS seq, -bm25(knowledge_fts, 3.0, 1.0, 2.0, 2.0) AS text_rank \
                      FROM knowledge_fts f JOIN knowledge c ON c.seq = f.rowid \
                      WHERE knowledge_fts MATCH $1 AND c.rating >= $4 \
                      ORDER BY f.rowid DESC LIMIT $6) m \
                     JOIN knowledge k ON k.seq = m.seq \
                     ORDER BY score DESC LIMIT $5"
                ),
                // Each term a quoted FTS5 string: its syntax cannot be reached.
                terms
                    .iter()
                    .map(|term| format!("\"{}\"", term.replace('"', "\"\"")))
                    .collect::<Vec<_>>()
                    .join(match matching {
                        Matching::All => " AND ",
                        Matching::Any => " OR ",
                    }),
            ),
            Backend::Postgres => (
                // Candidates first (index only), then ts_rank_cd for those alone.
                format!(
                    "SELECT {ENTRY_COLUMNS}, m.text_rank, {SCORE} AS score FROM \
                     (SELECT k.seq, CAST(ts_rank_cd(k.search, q.query) AS DOUBLE PRECISION) \
                      AS text_rank FROM \
                      (SELECT c.seq FROM knowledge c WHERE c.search @@ to_tsquery('english', $1) \
                       AND c.rating >= $4 ORDER BY c.seq DESC LIMIT $6) candidates \
                      JOIN knowledge k ON k.seq = candidates.seq, \
                      to_tsquery('english', $1) AS q(query)) m \
                     JOIN knowledge k ON k.seq = m.seq \
                     ORDER BY score DESC LIMIT $5"
                ),
                // Terms are letters and digits only (query_terms), so joining them with
                // & or | cannot form any other tsquery syntax.
                terms.join(match matching {
                    Matching::All => " & ",
                    Matching::Any => " | ",
                }),
            ),
        };
        let rows = sqlx::query(&sql)
            .bind(text_query)
            .bind(now_micros().timestamp_micros())
            .bind(options.recency_half_life_days * MICROS_PER_DAY)
            .bind(i64::from(options.min_rating))
            .bind(i64::from(limit))
            .bind(RANKED_CANDIDATES)
            .fetch_all(&self.pool)
            .await
            .map_err(|source| Error::Query {
                context: CONTEXT,
                source,
            })?;
        rows.iter()
            .map(|row| {
                let query = |source| Error::Query {
                    context: CONTEXT,
                    source,
                };
                let text_rank: f64 = row.try_get("text_rank").map_err(query)?;
                Ok(KnowledgeHit {
                    entry: entry_from_row(row)?,
                    relevance: text_rank / (1.0 + text_rank),
                    score: row.try_get("score").map_err(query)?,
                })
            })
            .collect()
    }
}

/// Whether an entry must match every query term or any of them.
#[derive(Debug, Clone, Copy)]
enum Matching {
    All,
    Any,
}

pub(crate) fn entry_from_row(row: &AnyRow) -> Result<KnowledgeEntry> {
    const CONTEXT: &str = "reading knowledge";
    let query = |source| Error::Query {
        context: CONTEXT,
        source,
    };
    let text = |column: &str| -> Result<String> { row.try_get(column).map_err(query) };
    let rating: Option<i64> = row.try_get("rating").map_err(query)?;
    Ok(KnowledgeEntry {
        id: uuid_column(row, "id", CONTEXT)?,
        thread_id: thread_column(row, "thread_id", CONTEXT)?,
        cluster_id: text("cluster_id")?,
        request: text("request")?,
        response: text("response")?,
        resolution_summary: text("resolution_summary")?,
        resolution_steps: json_column(&text("resolution_steps")?, CONTEXT)?,
        tags: json_column(&text("tags")?, CONTEXT)?,
        keywords: json_column(&text("keywords")?, CONTEXT)?,
        rating: rating
            .map(|score| {
                u8::try_from(score).map_err(|_| Error::CorruptRow {
                    context: CONTEXT,
                    message: format!("rating {score}"),
                })
            })
            .transpose()?,
        created_at: timestamp(row.try_get("created_at").map_err(query)?, CONTEXT)?,
    })
}

impl KnowledgeStore for Database {
    async fn upsert_knowledge(&self, entry: &KnowledgeEntry) -> deckhand_runtime::Result<()> {
        Ok(self.upsert_knowledge_entry(entry).await?)
    }

    async fn search(&self, query: &str, limit: u32) -> deckhand_runtime::Result<Vec<KnowledgeHit>> {
        Ok(self.search_knowledge(query, limit).await?)
    }
}
