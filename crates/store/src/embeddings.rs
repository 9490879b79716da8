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
//!
//! Those candidates are kept in memory between searches ([`VectorCache`], unit-length
//! vectors end to end in one `Vec<f32>`), so a search compares them without reading them:
//! it reads one counter row, `knowledge_vectors_generation`, that triggers move whenever
//! a vector, or the rating of an entry with one, changes in any process, and reads the
//! candidates again only when it moved. This process's own vector writes update the
//! copy in place.

use crate::database::{now_micros, Database};
use crate::error::{Error, Result};
use crate::knowledge::{entry_from_row, ENTRY_COLUMNS};
use crate::replicated::Replicated;
use deckhand_runtime::knowledge::{KnowledgeEntry, SearchOptions};
use sqlx::{Any, Row};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
        match self.upsert_embeddings(&[(id, embedding)]).await? {
            1 => Ok(()),
            _ => Err(Error::KnowledgeNotFound { id }),
        }
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
        let embeddings: Vec<(uuid::Uuid, &Embedding)> = embeddings
            .iter()
            .map(|(id, embedding)| (*id, embedding))
            .collect();
        self.upsert_embeddings(&embeddings).await
    }

    /// Stores `embeddings` in one transaction and brings this process's candidate
    /// vectors up to date with them, when nobody else changed any since they were read.
    async fn upsert_embeddings(&self, embeddings: &[(uuid::Uuid, &Embedding)]) -> Result<usize> {
        const CONTEXT: &str = "storing knowledge embeddings";
        let query = |source| Error::Query {
            context: CONTEXT,
            source,
        };
        for (_, embedding) in embeddings {
            embedding.check()?;
        }
        let mut transaction = self.begin_write(CONTEXT).await?;
        // Moving the counter first takes the write lock (SQLite) or the counter row's
        // lock (PostgreSQL) before anything else is written: no other writer can move it
        // until this commits, so `before` is exactly the state this write starts from.
        let before = sqlx::query(
            "UPDATE knowledge_vectors_generation SET generation = generation + 1 \
             WHERE id = 1 RETURNING generation",
        )
        .fetch_optional(&mut *transaction)
        .await
        .map_err(query)?
        .map(|row| row.try_get::<i64, _>(0).map(|moved| moved - 1))
        .transpose()
        .map_err(query)?;
        let mut changes = Vec::new();
        // Each stored vector is queued for the shared database in the same transaction.
        let mut replicated = Vec::new();
        for (id, embedding) in embeddings {
            if !upsert_embedding_with(&mut *transaction, *id, embedding).await? {
                continue;
            }
            replicated.push(Replicated::embedding(*id, embedding));
            let row = sqlx::query("SELECT seq, rating, created_at FROM knowledge WHERE id = $1")
                .bind(id.to_string())
                .fetch_one(&mut *transaction)
                .await
                .map_err(query)?;
            changes.push(Change {
                id: id.to_string(),
                seq: row.try_get("seq").map_err(query)?,
                rating: row.try_get("rating").map_err(query)?,
                created_at: row.try_get("created_at").map_err(query)?,
                embedding,
            });
        }
        let after: Option<i64> =
            sqlx::query("SELECT generation FROM knowledge_vectors_generation WHERE id = 1")
                .fetch_optional(&mut *transaction)
                .await
                .map_err(query)?
                .map(|row| row.try_get(0))
                .transpose()
                .map_err(query)?;
        self.commit_write(transaction, CONTEXT, || replicated)
            .await?;
        let stored = changes.len();
        match (before, after) {
            (Some(before), Some(after)) => self.vector_cache.apply(before, after, &changes),
            _ => self.vector_cache.clear(),
        }
        Ok(stored)
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
        let Some(vector) = vector else {
            let text = self.search_knowledge(query, depth).await?;
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
        // Two connections: the full-text query and the counter check run side by side.
        let (text, similar) = tokio::try_join!(
            self.search_knowledge(query, depth),
            self.most_similar(vector, depth)
        )?;

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
        let options = self.search_options;
        let hybrid = self.hybrid_options;
        let candidates = self.candidates(vector).await?;
        let query = unit(&vector.vector);
        let now = now_micros().timestamp_micros();
        let mut similar = Vec::new();
        for (slot, stored) in candidates
            .vectors
            .chunks_exact(candidates.key.dimensions)
            .enumerate()
        {
            // Both are unit length: their dot product is their cosine.
            let similarity = dot(&query, stored).clamp(-1.0, 1.0);
            if similarity < hybrid.min_similarity {
                continue;
            }
            let age_days =
                now.saturating_sub(candidates.created_at[slot]).max(0) as f64 / MICROS_PER_DAY;
            similar.push(Similar {
                id: candidates.ids[slot].clone(),
                similarity,
                score: score(
                    f64::from(similarity),
                    candidates.ratings[slot],
                    age_days,
                    &options,
                ),
            });
        }
        similar.sort_by(|a, b| b.score.total_cmp(&a.score));
        similar.truncate(depth as usize);
        Ok(similar)
    }

    /// The candidates for a query vector like `vector`: this process's copy when the
    /// counter says it is current, else read again (and kept).
    async fn candidates(&self, vector: &Embedding) -> Result<Arc<Candidates>> {
        let key = CandidateKey {
            model: vector.model.clone(),
            dimensions: vector.vector.len(),
            min_rating: i64::from(self.search_options.min_rating),
            limit: self.hybrid_options.vector_candidates as usize,
        };
        let generation: Option<i64> =
            sqlx::query("SELECT generation FROM knowledge_vectors_generation WHERE id = 1")
                .fetch_optional(&self.pool)
                .await
                .and_then(|row| row.map(|row| row.try_get(0)).transpose())
                .map_err(|source| Error::Query {
                    context: "reading the knowledge vectors' generation",
                    source,
                })?;
        if let Some(current) =
            generation.and_then(|generation| self.vector_cache.get(&key, generation))
        {
            return Ok(current);
        }
        // Read after the counter: a write in between leaves the copy labelled older than
        // it is, which only costs another read, never a stale answer.
        let loaded = Arc::new(self.load_candidates(key, generation.unwrap_or(-1)).await?);
        if generation.is_some() {
            self.vector_cache.put(Arc::clone(&loaded));
        }
        Ok(loaded)
    }

    /// Reads the newest eligible entries with a vector of `key`'s model and length.
    async fn load_candidates(&self, key: CandidateKey, generation: i64) -> Result<Candidates> {
        const CONTEXT: &str = "comparing knowledge embeddings";
        let query = |source| Error::Query {
            context: CONTEXT,
            source,
        };
        // CROSS JOIN makes SQLite walk knowledge newest first (its primary key) and look
        // each vector up by its key, stopping at the limit; PostgreSQL plans the same
        // walk on its own.
        let rows = sqlx::query(
            "SELECT k.id, k.seq, k.rating, k.created_at, e.vector \
             FROM knowledge k CROSS JOIN knowledge_embeddings e \
             WHERE e.knowledge_id = k.id AND k.rating >= $1 AND e.model = $2 \
             AND e.dimensions = $3 ORDER BY k.seq DESC LIMIT $4",
        )
        .bind(key.min_rating)
        .bind(&key.model)
        .bind(i64::try_from(key.dimensions).unwrap_or(i64::MAX))
        .bind(i64::try_from(key.limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(query)?;
        let mut candidates = Candidates::empty(key, generation, rows.len());
        for row in &rows {
            let bytes: Vec<u8> = row.try_get("vector").map_err(query)?;
            let stored = vector_from_bytes(&bytes)
                .filter(|stored| stored.len() == candidates.key.dimensions)
                .ok_or_else(|| Error::CorruptRow {
                    context: CONTEXT,
                    message: format!("a vector of {} bytes", bytes.len()),
                })?;
            candidates.push(
                row.try_get("id").map_err(query)?,
                row.try_get("seq").map_err(query)?,
                row.try_get("rating").map_err(query)?,
                row.try_get("created_at").map_err(query)?,
                &stored,
            );
        }
        Ok(candidates)
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

/// A vector this process wrote, with what decides whether its entry is a candidate.
struct Change<'a> {
    id: String,
    seq: i64,
    rating: Option<i64>,
    created_at: i64,
    embedding: &'a Embedding,
}

/// What a set of candidates was read for; another model, length, rating threshold or
/// count is another set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CandidateKey {
    model: String,
    dimensions: usize,
    min_rating: i64,
    limit: usize,
}

/// The newest `key.limit` entries rated at least `key.min_rating` with a vector of
/// `key.model` and `key.dimensions` (all of them when there are fewer), as of
/// `generation`, in no particular order: one slot per entry across the columns.
#[derive(Debug, Clone)]
struct Candidates {
    key: CandidateKey,
    generation: i64,
    ids: Vec<String>,
    seqs: Vec<i64>,
    ratings: Vec<i64>,
    created_at: Vec<i64>,
    /// Unit-length vectors (a zero vector stays zero), `key.dimensions` components per
    /// slot, end to end: one pass over contiguous memory per search.
    vectors: Vec<f32>,
}

impl Candidates {
    fn empty(key: CandidateKey, generation: i64, capacity: usize) -> Self {
        let dimensions = key.dimensions;
        Self {
            key,
            generation,
            ids: Vec::with_capacity(capacity),
            seqs: Vec::with_capacity(capacity),
            ratings: Vec::with_capacity(capacity),
            created_at: Vec::with_capacity(capacity),
            vectors: Vec::with_capacity(capacity * dimensions),
        }
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn push(&mut self, id: String, seq: i64, rating: i64, created_at: i64, vector: &[f32]) {
        self.ids.push(id);
        self.seqs.push(seq);
        self.ratings.push(rating);
        self.created_at.push(created_at);
        self.vectors.extend(unit(vector));
    }

    fn set(&mut self, slot: usize, change: &Change<'_>, rating: i64) {
        let dimensions = self.key.dimensions;
        self.ids[slot].clone_from(&change.id);
        self.seqs[slot] = change.seq;
        self.ratings[slot] = rating;
        self.created_at[slot] = change.created_at;
        self.vectors[slot * dimensions..(slot + 1) * dimensions]
            .copy_from_slice(&unit(&change.embedding.vector));
    }

    fn swap_remove(&mut self, slot: usize) {
        let dimensions = self.key.dimensions;
        let last = self.len() - 1;
        self.ids.swap_remove(slot);
        self.seqs.swap_remove(slot);
        self.ratings.swap_remove(slot);
        self.created_at.swap_remove(slot);
        self.vectors.copy_within(
            last * dimensions..(last + 1) * dimensions,
            slot * dimensions,
        );
        self.vectors.truncate(last * dimensions);
    }

    /// Takes in one written vector; `false` when the set can no longer be known without
    /// reading (a full set lost an entry: the next older one would take its place).
    fn apply(&mut self, change: &Change<'_>) -> bool {
        let eligible = change.embedding.model == self.key.model
            && change.embedding.vector.len() == self.key.dimensions;
        let rating = change
            .rating
            .filter(|rating| eligible && *rating >= self.key.min_rating);
        let slot = self.ids.iter().position(|id| *id == change.id);
        match (slot, rating) {
            (Some(slot), Some(rating)) => self.set(slot, change, rating),
            (Some(_), None) if self.len() >= self.key.limit => return false,
            (Some(slot), None) => self.swap_remove(slot),
            (None, Some(rating)) if self.len() < self.key.limit => self.push(
                change.id.clone(),
                change.seq,
                rating,
                change.created_at,
                &change.embedding.vector,
            ),
            (None, Some(rating)) => {
                // Full: it takes the oldest one's place if it is newer.
                let oldest = self
                    .seqs
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, seq)| **seq)
                    .map(|(slot, seq)| (slot, *seq));
                if let Some((slot, _)) = oldest.filter(|(_, seq)| *seq < change.seq) {
                    self.set(slot, change, rating);
                }
            }
            (None, None) => {}
        }
        true
    }
}

/// This process's copy of the hybrid search's candidates (one set: the model and options
/// in use), shared by a [`Database`]'s clones.
#[derive(Default)]
pub struct VectorCache {
    current: Mutex<Option<Arc<Candidates>>>,
}

impl std::fmt::Debug for VectorCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the vectors: megabytes of numbers.
        let held = self.lock().as_ref().map(|current| current.len());
        f.debug_struct("VectorCache")
            .field("candidates", &held)
            .finish()
    }
}

impl VectorCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<Candidates>>> {
        // A panic while holding it cannot leave a half-written set behind that matters:
        // the set is only ever replaced whole or dropped below.
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, key: &CandidateKey, generation: i64) -> Option<Arc<Candidates>> {
        self.lock()
            .as_ref()
            .filter(|current| current.generation == generation && current.key == *key)
            .cloned()
    }

    fn put(&self, candidates: Arc<Candidates>) {
        *self.lock() = Some(candidates);
    }

    fn clear(&self) {
        *self.lock() = None;
    }

    /// This process moved the counter from `before` to `after` writing `changes`: when
    /// the copy is of `before`, it takes them in and becomes the copy of `after`; when
    /// it is older, the next search reads the candidates again anyway.
    fn apply(&self, before: i64, after: i64, changes: &[Change<'_>]) {
        let mut current = self.lock();
        let Some(candidates) = current.as_mut().filter(|held| held.generation == before) else {
            return;
        };
        // Copies the set only when a search still holds it.
        let candidates = Arc::make_mut(candidates);
        for change in changes {
            if !candidates.apply(change) {
                *current = None;
                return;
            }
        }
        candidates.generation = after;
    }
}

/// `vector` scaled to length 1 (a zero vector stays zero: its cosine with anything is 0).
fn unit(vector: &[f32]) -> Vec<f32> {
    let norm = vector.iter().map(|value| value * value).sum::<f32>().sqrt();
    if norm == 0.0 {
        return vec![0.0; vector.len()];
    }
    vector.iter().map(|value| value / norm).collect()
}

/// The dot product of two vectors of one length, eight lanes at a time so the compiler
/// can use SIMD (a single running sum would force one addition after the other).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut lanes = [0.0f32; LANES];
    for (x, y) in a_chunks.zip(b_chunks) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
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
    fn unit_vectors_dot_to_the_cosine() {
        // 19 components: two full lanes of 8 and a tail of 3.
        let a: Vec<f32> = (0..19).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..19).map(|i| (i as f32 * 0.11).cos() * 3.0).collect();
        assert!((dot(&unit(&a), &unit(&b)) - cosine(&a, &b)).abs() < 1e-5);
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-4);
        assert_eq!(unit(&[0.0, 0.0]), vec![0.0, 0.0]);
        assert!((unit(&[3.0, 4.0])[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn a_full_set_keeps_the_newest_and_gives_up_on_losing_one() {
        let key = CandidateKey {
            model: "m".into(),
            dimensions: 2,
            min_rating: 60,
            limit: 2,
        };
        let mut set = Candidates::empty(key, 7, 2);
        set.push("a".into(), 1, 90, 0, &[1.0, 0.0]);
        set.push("b".into(), 2, 90, 0, &[0.0, 2.0]);
        let vector = Embedding::new("m", vec![5.0, 0.0]);
        let change = |id: &str, seq, rating, embedding| Change {
            id: id.into(),
            seq,
            rating,
            created_at: 0,
            embedding,
        };
        // Older than both: stays out.
        assert!(set.apply(&change("old", 0, Some(90), &vector)));
        assert_eq!(set.ids, ["a", "b"]);
        // Newer: takes the oldest's place, stored at unit length.
        assert!(set.apply(&change("c", 3, Some(80), &vector)));
        assert_eq!(set.ids, ["c", "b"]);
        assert_eq!(set.ratings, [80, 90]);
        assert_eq!(&set.vectors[..2], &[1.0, 0.0]);
        // Below the threshold, or another model: not a candidate.
        assert!(set.apply(&change("d", 4, Some(59), &vector)));
        assert!(set.apply(&change("e", 5, None, &vector)));
        let other = Embedding::new("n", vec![1.0, 0.0]);
        assert!(set.apply(&change("f", 6, Some(90), &other)));
        assert_eq!(set.ids, ["c", "b"]);
        // A candidate of a full set leaving: the next older one is unknown here.
        assert!(!set.apply(&change("b", 2, Some(90), &other)));
        // Of a set that holds every eligible entry, it just leaves.
        set.key.limit = 3;
        assert!(set.apply(&change("c", 3, Some(10), &vector)));
        assert_eq!(set.ids, ["b"]);
        assert_eq!(set.vectors, [0.0, 1.0]);
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
