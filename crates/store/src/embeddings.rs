//! Knowledge by meaning: one embedding vector per knowledge entry (with the model that
//! made it), and a hybrid search that fuses the full-text ranking with cosine similarity,
//! so a paraphrase that shares no word with an entry still finds it.
//!
//! Vectors are stored as little-endian f32 (`BLOB` on SQLite, `bytea` on PostgreSQL) and
//! compared here, in Rust: no vector extension is needed on either database. To keep a
//! search's cost bounded, only the newest [`HybridOptions::vector_candidates`] entries
//! that are rated above the threshold and carry a vector of the query's model are
//! compared (the full-text side bounds itself the same way,
//! [`crate::knowledge::RANKED_CANDIDATES`]).

use crate::database::{now_micros, Database};
use crate::error::{Error, Result};
use crate::knowledge::{entry_from_row, ENTRY_COLUMNS};
use crate::replicated::Replicated;
use deckhand_runtime::knowledge::{KnowledgeEntry, SearchOptions};
use sqlx::{Any, Row};
use std::collections::HashMap;

/// Default of [`HybridOptions::vector_candidates`].
pub const DEFAULT_VECTOR_CANDIDATES: u32 = 10_000;
/// Default of [`HybridOptions::fusion_depth`].
pub const DEFAULT_FUSION_DEPTH: u32 = 50;
/// Default of [`HybridOptions::min_similarity`].
pub const DEFAULT_MIN_SIMILARITY: f32 = 0.5;
/// The constant of reciprocal-rank fusion: an entry ranked `r` in a list adds
/// `1 / (RRF_K + r)`. 60 is the value of the paper that introduced the method (Cormack
/// et al., 2009): it keeps one list's first place from outweighing agreement of both.
pub const RRF_K: f64 = 60.0;

const MICROS_PER_DAY: f64 = 86_400_000_000.0;

/// An embedding vector and the model that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// The model's name as configured (`nomic-embed-text`).
    pub model: String,
    /// The vector.
    pub vector: Vec<f32>,
}

impl Embedding {
    /// `vector`, made by `model`.
    pub fn new(model: impl Into<String>, vector: Vec<f32>) -> Self {
        Self {
            model: model.into(),
            vector,
        }
    }

    /// Refuses what can never be compared: no model, no components, or a component that
    /// is not a finite number.
    ///
    /// # Errors
    /// [`Error::InvalidEmbedding`].
    pub fn check(&self) -> Result<()> {
        let invalid = |message: &str| {
            Err(Error::InvalidEmbedding {
                model: self.model.clone(),
                message: message.to_owned(),
            })
        };
        if self.model.trim().is_empty() {
            return invalid("no model named");
        }
        if self.vector.is_empty() {
            return invalid("no components");
        }
        if self.vector.iter().any(|value| !value.is_finite()) {
            return invalid("a component is not a finite number");
        }
        Ok(())
    }

    /// The vector as stored: each component's 4 bytes, little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.vector
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect()
    }
}

/// A stored vector back from its bytes; `None` when they are not whole f32s.
pub fn vector_from_bytes(bytes: &[u8]) -> Option<Vec<f32>> {
    if bytes.len() % 4 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
            .collect(),
    )
}

/// The cosine similarity of two vectors of one length, in [-1, 1]; 0 when either is all
/// zeros or the lengths differ.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut norm_a, mut norm_b) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        norm_a += x * x;
        norm_b += y * y;
    }
    if norm_a == 0.0 || norm_b == 0.0 {
        return 0.0;
    }
    (dot / (norm_a.sqrt() * norm_b.sqrt())).clamp(-1.0, 1.0)
}

/// How the hybrid search compares vectors and fuses the two rankings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HybridOptions {
    /// At most this many eligible entries, the newest, are compared with the query
    /// vector: it bounds a search's cost (and the bytes read) at the price of never
    /// finding an older entry by meaning alone (its words still find it).
    pub vector_candidates: u32,
    /// How many of each ranking (full text, similarity) are fused.
    pub fusion_depth: u32,
    /// Entries less similar than this (cosine) are not offered on similarity alone:
    /// every entry has a nearest neighbour, related or not. Depends on the model; 0.5
    /// suits sentence-embedding models such as nomic-embed-text and bge.
    pub min_similarity: f32,
}

impl Default for HybridOptions {
    fn default() -> Self {
        Self {
            vector_candidates: DEFAULT_VECTOR_CANDIDATES,
            fusion_depth: DEFAULT_FUSION_DEPTH,
            min_similarity: DEFAULT_MIN_SIMILARITY,
        }
    }
}

/// One result of a hybrid search.
#[derive(Debug, Clone, PartialEq)]
pub struct HybridHit {
    /// The entry found; it names its cluster and thread.
    pub entry: KnowledgeEntry,
    /// The full-text score (relevance × rating × recency), when its words matched.
    pub text_score: Option<f64>,
    /// The cosine similarity with the query, when it was among the most similar.
    pub similarity: Option<f32>,
    /// The fused score the hits are ordered by: the sum over both rankings of
    /// `1 / (RRF_K + rank)`.
    pub score: f64,
}

/// Stores `embedding` for entry `id` in `executor`'s database, replacing any earlier one;
/// `false` when there is no such entry (nothing is stored).
pub(crate) async fn upsert_embedding_with<'e, E>(
    executor: E,
    id: uuid::Uuid,
    embedding: &Embedding,
) -> Result<bool>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    embedding.check()?;
    let dimensions = i64::try_from(embedding.vector.len()).unwrap_or(i64::MAX);
    // The WHERE also resolves SQLite's parsing ambiguity of INSERT … SELECT … ON CONFLICT.
    let stored = sqlx::query(
        "INSERT INTO knowledge_embeddings (knowledge_id, model, dimensions, vector, updated_at) \
         SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM knowledge WHERE id = $1) \
         ON CONFLICT (knowledge_id) DO UPDATE SET model = excluded.model, \
         dimensions = excluded.dimensions, vector = excluded.vector, \
         updated_at = excluded.updated_at",
    )
    .bind(id.to_string())
    .bind(&embedding.model)
    .bind(dimensions)
    .bind(embedding.to_bytes())
    .bind(now_micros().timestamp_micros())
    .execute(executor)
    .await
    .map_err(|source| Error::Query {
        context: "storing a knowledge entry's embedding",
        source,
    })?
    .rows_affected();
    Ok(stored > 0)
}

/// One entry compared with the query vector.
struct Similar {
    id: String,
    similarity: f32,
    score: f64,
}

impl Database {
    /// The same store, with other hybrid search settings.
    #[must_use]
    pub fn with_hybrid_options(mut self, options: HybridOptions) -> Self {
        self.hybrid_options = options;
        self
    }

    /// How hybrid searches compare and fuse.
    pub fn hybrid_options(&self) -> HybridOptions {
        self.hybrid_options
    }

    /// Stores the embedding of knowledge entry `id` (replacing the one it had, whatever
    /// its model).
    ///
    /// # Errors
    /// [`Error::KnowledgeNotFound`], [`Error::InvalidEmbedding`], [`Error::Query`].
    pub async fn upsert_knowledge_embedding(
        &self,
        id: uuid::Uuid,
        embedding: &Embedding,
    ) -> Result<()> {
        const CONTEXT: &str = "storing a knowledge entry's embedding";
        let mut transaction = self.begin_write(CONTEXT).await?;
        if !upsert_embedding_with(&mut *transaction, id, embedding).await? {
            return Err(Error::KnowledgeNotFound { id });
        }
        self.commit_write(transaction, CONTEXT, || {
            vec![Replicated::embedding(id, embedding)]
        })
        .await
    }

    /// Stores many entries' embeddings in one transaction (re-embedding what was stored
    /// before a model was configured, the benchmark); ids without an entry are skipped.
    /// Returns how many were stored.
    ///
    /// # Errors
    /// [`Error::InvalidEmbedding`], [`Error::Query`]; nothing is stored then.
    pub async fn upsert_knowledge_embeddings(
        &self,
        embeddings: &[(uuid::Uuid, Embedding)],
    ) -> Result<usize> {
        const CONTEXT: &str = "storing knowledge embeddings";
        let mut transaction = self.begin_write(CONTEXT).await?;
        let mut stored = Vec::new();
        for (id, embedding) in embeddings {
            if upsert_embedding_with(&mut *transaction, *id, embedding).await? {
                stored.push(Replicated::embedding(*id, embedding));
            }
        }
        let count = stored.len();
        self.commit_write(transaction, CONTEXT, || stored).await?;
        Ok(count)
    }

    /// The embedding stored for entry `id`, if any.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::CorruptRow`].
    pub async fn knowledge_embedding(&self, id: uuid::Uuid) -> Result<Option<Embedding>> {
        const CONTEXT: &str = "reading a knowledge entry's embedding";
        let query = |source| Error::Query {
            context: CONTEXT,
            source,
        };
        let Some(row) =
            sqlx::query("SELECT model, vector FROM knowledge_embeddings WHERE knowledge_id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(query)?
        else {
            return Ok(None);
        };
        let bytes: Vec<u8> = row.try_get("vector").map_err(query)?;
        Ok(Some(Embedding {
            model: row.try_get("model").map_err(query)?,
            vector: vector_from_bytes(&bytes).ok_or_else(|| Error::CorruptRow {
                context: CONTEXT,
                message: format!("a vector of {} bytes", bytes.len()),
            })?,
        }))
    }

    /// The best knowledge entries for `query` (user text) and, when given, its
    /// embedding: the full-text ranking of [`Database::search_knowledge`] and the ranking
    /// by similarity (cosine × rating × recency, among the newest
    /// [`HybridOptions::vector_candidates`] entries with a vector of the same model and
    /// similarity at least [`HybridOptions::min_similarity`]) fused by reciprocal rank,
    /// at most `limit`. Without a vector it is the full-text search alone. Entries rated
    /// below the store's threshold, or unrated, are never returned.
    ///
    /// # Errors
    /// [`Error::InvalidEmbedding`], [`Error::Query`], [`Error::CorruptRow`].
    pub async fn search_knowledge_hybrid(
        &self,
        query: &str,
        vector: Option<&Embedding>,
        limit: u32,
    ) -> Result<Vec<HybridHit>> {
        if self.is_replicated() {
            return Ok(self
                .search_knowledge_hybrid_sourced(query, vector, limit)
                .await?
                .0);
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        let depth = self.hybrid_options.fusion_depth.max(limit);
        let text = self.search_knowledge(query, depth).await?;
        let Some(vector) = vector else {
            return Ok(text
                .into_iter()
                .take(limit as usize)
                .enumerate()
                .map(|(rank, hit)| HybridHit {
                    score: rrf(rank),
                    text_score: Some(hit.score),
                    similarity: None,
                    entry: hit.entry,
                })
                .collect());
        };
        vector.check()?;
        let similar = self.most_similar(vector, depth).await?;

        // Reciprocal-rank fusion, keyed by entry id.
        let mut fused: HashMap<String, HybridHit> = HashMap::new();
        for (rank, hit) in text.into_iter().enumerate() {
            fused.insert(
                hit.entry.id.to_string(),
                HybridHit {
                    score: rrf(rank),
                    text_score: Some(hit.score),
                    similarity: None,
                    entry: hit.entry,
                },
            );
        }
        let mut only_similar = Vec::new();
        for (rank, candidate) in similar.iter().enumerate() {
            match fused.get_mut(&candidate.id) {
                Some(hit) => {
                    hit.score += rrf(rank);
                    hit.similarity = Some(candidate.similarity);
                }
                None => only_similar.push((rank, candidate)),
            }
        }
        let mut hits: Vec<HybridHit> = fused.into_values().collect();
        // Entries found by similarity alone: their rows are read only if they can make
        // the cut, so rank them against the text hits before reading anything.
        let mut pending: Vec<(f64, &Similar)> = only_similar
            .into_iter()
            .map(|(rank, candidate)| (rrf(rank), candidate))
            .collect();
        hits.sort_by(order);
        let cut = hits
            .get(limit as usize - 1)
            .map_or(f64::NEG_INFINITY, |hit| hit.score);
        pending.retain(|(score, _)| *score >= cut);
        pending.truncate(limit as usize);
        let entries = self
            .entries_by_id(pending.iter().map(|(_, candidate)| candidate.id.as_str()))
            .await?;
        for (score, candidate) in pending {
            if let Some(entry) = entries.get(&candidate.id) {
                hits.push(HybridHit {
                    entry: entry.clone(),
                    text_score: None,
                    similarity: Some(candidate.similarity),
                    score,
                });
            }
        }
        hits.sort_by(order);
        hits.truncate(limit as usize);
        Ok(hits)
    }

    /// The `depth` eligible entries most like `vector`, best first, by similarity ×
    /// rating × recency.
    async fn most_similar(&self, vector: &Embedding, depth: u32) -> Result<Vec<Similar>> {
        const CONTEXT: &str = "comparing knowledge embeddings";
        let query = |source| Error::Query {
            context: CONTEXT,
            source,
        };
        let options = self.search_options;
        let hybrid = self.hybrid_options;
        // CROSS JOIN makes SQLite walk knowledge newest first (its primary key) and look
        // each vector up by its key, stopping at the limit; PostgreSQL plans the same
        // walk on its own.
        let rows = sqlx::query(
            "SELECT k.id, k.rating, k.created_at, e.vector \
             FROM knowledge k CROSS JOIN knowledge_embeddings e \
             WHERE e.knowledge_id = k.id AND k.rating >= $1 AND e.model = $2 \
             AND e.dimensions = $3 ORDER BY k.seq DESC LIMIT $4",
        )
        .bind(i64::from(options.min_rating))
        .bind(&vector.model)
        .bind(i64::try_from(vector.vector.len()).unwrap_or(i64::MAX))
        .bind(i64::from(hybrid.vector_candidates))
        .fetch_all(&self.pool)
        .await
        .map_err(query)?;
        let now = now_micros().timestamp_micros();
        let mut similar = Vec::new();
        for row in &rows {
            let bytes: Vec<u8> = row.try_get("vector").map_err(query)?;
            let stored = vector_from_bytes(&bytes).ok_or_else(|| Error::CorruptRow {
                context: CONTEXT,
                message: format!("a vector of {} bytes", bytes.len()),
            })?;
            let similarity = cosine(&vector.vector, &stored);
            if similarity < hybrid.min_similarity {
                continue;
            }
            let rating: i64 = row.try_get("rating").map_err(query)?;
            let created_at: i64 = row.try_get("created_at").map_err(query)?;
            let age_days = now.saturating_sub(created_at).max(0) as f64 / MICROS_PER_DAY;
            similar.push(Similar {
                id: row.try_get("id").map_err(query)?,
                similarity,
                score: score(f64::from(similarity), rating, age_days, &options),
            });
        }
        similar.sort_by(|a, b| b.score.total_cmp(&a.score));
        similar.truncate(depth as usize);
        Ok(similar)
    }

    /// The entries with these ids, by id.
    async fn entries_by_id<'a>(
        &self,
        ids: impl Iterator<Item = &'a str>,
    ) -> Result<HashMap<String, KnowledgeEntry>> {
        let ids: Vec<&str> = ids.collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let placeholders: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM knowledge k WHERE k.id IN ({})",
            placeholders.join(", ")
        );
        let mut statement = sqlx::query(&sql);
        for id in &ids {
            statement = statement.bind(*id);
        }
        statement
            .fetch_all(&self.pool)
            .await
            .map_err(|source| Error::Query {
                context: "reading knowledge",
                source,
            })?
            .iter()
            .map(|row| entry_from_row(row).map(|entry| (entry.id.to_string(), entry)))
            .collect()
    }
}

/// Reciprocal-rank fusion's share of the entry at `rank` (0 for the first).
fn rrf(rank: usize) -> f64 {
    1.0 / (RRF_K + rank as f64 + 1.0)
}

/// The runtime's ranking formula with `relevance` (0–1) given directly.
fn score(relevance: f64, rating: i64, age_days: f64, options: &SearchOptions) -> f64 {
    let recency = 1.0 / (1.0 + age_days.max(0.0) / options.recency_half_life_days);
    relevance.max(0.0) * rating as f64 / 100.0 * (0.5 + 0.5 * recency)
}

/// Best fused score first; ties go to the better text score, then the more similar.
fn order(a: &HybridHit, b: &HybridHit) -> std::cmp::Ordering {
    b.score
        .total_cmp(&a.score)
        .then_with(|| {
            b.text_score
                .unwrap_or(0.0)
                .total_cmp(&a.text_score.unwrap_or(0.0))
        })
        .then_with(|| {
            b.similarity
                .unwrap_or(0.0)
                .total_cmp(&a.similarity.unwrap_or(0.0))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_through_their_bytes() {
        let embedding = Embedding::new("m", vec![0.1, -2.5, f32::MIN_POSITIVE, 1e30]);
        let bytes = embedding.to_bytes();
        assert_eq!(bytes.len(), 16);
        assert_eq!(&bytes[4..8], &(-2.5f32).to_le_bytes());
        assert_eq!(vector_from_bytes(&bytes), Some(embedding.vector));
        assert_eq!(vector_from_bytes(&bytes[..5]), None);
    }

    #[test]
    fn unusable_vectors_are_refused() {
        assert!(Embedding::new("m", vec![]).check().is_err());
        assert!(Embedding::new("", vec![1.0]).check().is_err());
        assert!(Embedding::new("m", vec![1.0, f32::NAN]).check().is_err());
        assert!(Embedding::new("m", vec![1.0, f32::INFINITY])
            .check()
            .is_err());
        assert!(Embedding::new("m", vec![0.0, 1.0]).check().is_ok());
    }

    #[test]
    fn cosine_of_known_vectors() {
        assert!((cosine(&[1.0, 0.0], &[3.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 2.0]).abs() < 1e-6);
        assert!((cosine(&[1.0, 2.0], &[-1.0, -2.0]) + 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
        assert_eq!(cosine(&[1.0], &[1.0, 1.0]), 0.0);
    }

    #[test]
    fn fusion_prefers_agreement_and_keeps_first_places_apart() {
        // First in both beats first in one; first in one beats a low place in both.
        assert!(rrf(0) + rrf(0) > rrf(0) + rrf(5));
        assert!(rrf(0) + rrf(1) > rrf(0));
        assert!(rrf(0) > rrf(1));
        let options = SearchOptions::default();
        // The similarity score follows the runtime's formula for relevance r/(1+r).
        let runtime = deckhand_runtime::knowledge::score(1.0, 80, 30.0, &options);
        assert!((score(0.5, 80, 30.0, &options) - runtime).abs() < 1e-12);
        assert_eq!(score(-0.3, 80, 0.0, &options), 0.0);
    }
}
