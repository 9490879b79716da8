//! Searching the knowledge base the way the configuration allows: by words and meaning
//! (hybrid) when an embedding model is configured (`[knowledge.embeddings]`) and answers,
//! by words alone otherwise. One path for `deckhand knowledge search`, `GET
//! /api/knowledge` and the similar threads the planner is shown.

use crate::config::KnowledgeConfig;
use deckhand_llm::Embedder;
use deckhand_store::{Database, Embedding, HybridHit, HybridOptions};

/// How a search was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// Full text fused with similarity to the query's embedding.
    Hybrid,
    /// Full text alone: no embedding model is configured, or it did not answer.
    FullText,
}

impl SearchMode {
    /// The mode's name in JSON output (`hybrid`, `full_text`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hybrid => "hybrid",
            Self::FullText => "full_text",
        }
    }
}

/// The hits of one search and how it was answered.
#[derive(Debug, Clone)]
pub struct KnowledgeSearch {
    /// Best first. In [`SearchMode::Hybrid`] `score` is the fused score; in
    /// [`SearchMode::FullText`] it is the full-text score, as
    /// [`Database::search_knowledge`] gives it.
    pub hits: Vec<HybridHit>,
    /// How the search was answered.
    pub mode: SearchMode,
    /// Why the search is full text although a model is configured (the embedding
    /// request's error).
    pub fallback: Option<String>,
}

/// The embedding model of `config`, if one is configured and usable; one that is not
/// (its key variable unset) is logged and leaves full text alone.
pub fn embedder(config: &KnowledgeConfig) -> Option<Embedder> {
    let embeddings = config.embeddings.as_ref()?;
    let env = |name: &str| std::env::var(name).ok();
    Embedder::new(embeddings, &env)
        .map_err(|error| tracing::warn!(%error, "knowledge search by full text only"))
        .ok()
}

/// The hybrid search settings `config` asks for.
pub fn hybrid_options(config: &KnowledgeConfig) -> HybridOptions {
    HybridOptions {
        min_similarity: config.min_similarity,
        ..HybridOptions::default()
    }
}

/// `text`'s embedding, with the model's name, as the store compares it.
///
/// # Errors
/// The model's error (down, slow, a bad answer), as text.
pub async fn embed(embedder: &Embedder, text: &str) -> Result<Embedding, String> {
    embedder
        .embed_one(text)
        .await
        .map(|vector| Embedding::new(embedder.model(), vector))
        .map_err(|error| error.to_string())
}

/// The best `limit` entries for `text`: hybrid when `embedder` is given and answers;
/// when it fails, full text with a logged warning, so the person still gets results.
///
/// # Errors
/// The store's.
pub async fn search(
    database: &Database,
    embedder: Option<&Embedder>,
    text: &str,
    limit: u32,
) -> deckhand_store::Result<KnowledgeSearch> {
    let fallback = match embedder {
        None => None,
        Some(embedder) => match embed(embedder, text).await {
            Ok(vector) => {
                return Ok(KnowledgeSearch {
                    hits: database
                        .search_knowledge_hybrid(text, Some(&vector), limit)
                        .await?,
                    mode: SearchMode::Hybrid,
                    fallback: None,
                });
            }
            Err(error) => {
                tracing::warn!(model = embedder.model(), %error, "embedding model unavailable; knowledge search by full text only");
                Some(error)
            }
        },
    };
    let hits = database
        .search_knowledge(text, limit)
        .await?
        .into_iter()
        .map(|hit| HybridHit {
            text_score: Some(hit.score),
            similarity: None,
            score: hit.score,
            entry: hit.entry,
        })
        .collect();
    Ok(KnowledgeSearch {
        hits,
        mode: SearchMode::FullText,
        fallback,
    })
}
