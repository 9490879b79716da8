//! Knowledge: what resolved threads taught, searchable by later threads on any cluster.
//!
//! A search ranks each full-text match by
//!
//! ```text
//! score = relevance × rating / 100 × (½ + ½ × recency)
//! relevance = r / (1 + r)                          r: the backend's text rank (BM25, ts_rank_cd)
//! recency   = 1 / (1 + age_days / half_life_days)  1 today, ½ after one half-life
//! ```
//!
//! and never returns an entry rated below [`SearchOptions::min_rating`] (or unrated): a
//! thread the person did not find resolved is not offered as a resolution.

use crate::error::Result;
use crate::thread::ThreadId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::future::Future;

/// Entries rated below this are never returned, unless configured otherwise.
pub const DEFAULT_MIN_RATING: u8 = 60;
/// Age at which recency halves its weight in the score, unless configured otherwise.
pub const DEFAULT_RECENCY_HALF_LIFE_DAYS: f64 = 90.0;
/// At most this many words of a query are searched for (bounds the cost of a query).
pub const MAX_QUERY_TERMS: usize = 16;

/// What one resolved thread taught.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeEntry {
    /// The entry's id (a UUID: copies to the shared store are never doubled).
    pub id: uuid::Uuid,
    /// The thread it came from.
    pub thread_id: ThreadId,
    /// The cluster that thread worked on.
    pub cluster_id: String,
    /// What the person asked.
    pub request: String,
    /// What deckhand answered.
    pub response: String,
    /// The resolution in a sentence or two.
    pub resolution_summary: String,
    /// The resolution's steps, in order.
    pub resolution_steps: Vec<String>,
    /// Tags, e.g. `crashloop`, `ingress`.
    pub tags: Vec<String>,
    /// Keywords, e.g. resource names and error strings.
    pub keywords: Vec<String>,
    /// The thread's latest rating, once rated.
    pub rating: Option<u8>,
    /// When the entry was made.
    pub created_at: DateTime<Utc>,
}

impl KnowledgeEntry {
    /// An entry for `thread_id` made now, with no resolution, tags or rating yet.
    pub fn new(
        thread_id: ThreadId,
        cluster_id: impl Into<String>,
        request: impl Into<String>,
        response: impl Into<String>,
    ) -> Self {
        Self {
            id: uuid::Uuid::new_v4(),
            thread_id,
            cluster_id: cluster_id.into(),
            request: request.into(),
            response: response.into(),
            resolution_summary: String::new(),
            resolution_steps: Vec::new(),
            tags: Vec::new(),
            keywords: Vec::new(),
            rating: None,
            created_at: Utc::now(),
        }
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeHit {
    /// The entry found; it names its cluster and thread.
    pub entry: KnowledgeEntry,
    /// Text relevance alone, 0 to 1.
    pub relevance: f64,
    /// The combined score the hits are ordered by (see the module docs).
    pub score: f64,
}

/// How searches rank and filter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchOptions {
    /// Entries rated below this (and unrated ones) are never returned.
    pub min_rating: u8,
    /// See the recency term of the score.
    pub recency_half_life_days: f64,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            min_rating: DEFAULT_MIN_RATING,
            recency_half_life_days: DEFAULT_RECENCY_HALF_LIFE_DAYS,
        }
    }
}

/// Words that match nearly everything and so only cost time.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how",
    "i", "in", "is", "it", "my", "of", "on", "or", "the", "this", "to", "was", "what", "when",
    "where", "which", "why", "with",
];

/// The words of a query as searched for: lowercase runs of letters and digits, stop
/// words and repeats dropped, at most [`MAX_QUERY_TERMS`]. Nothing else of the user's
/// text reaches the full-text engine, so its query syntax cannot be injected.
pub fn query_terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in query.split(|c: char| !c.is_alphanumeric()) {
        let word = word.to_lowercase();
        if word.is_empty() || STOP_WORDS.contains(&word.as_str()) || terms.contains(&word) {
            continue;
        }
        terms.push(word);
        if terms.len() == MAX_QUERY_TERMS {
            break;
        }
    }
    terms
}

/// The combined score (the formula of the module docs); stores compute the same in SQL.
pub fn score(text_rank: f64, rating: u8, age_days: f64, options: &SearchOptions) -> f64 {
    let relevance = text_rank / (1.0 + text_rank);
    let recency = 1.0 / (1.0 + age_days.max(0.0) / options.recency_half_life_days);
    relevance * f64::from(rating) / 100.0 * (0.5 + 0.5 * recency)
}

/// Where knowledge is kept and searched.
pub trait KnowledgeStore: Send + Sync {
    /// Stores an entry, or replaces the one with the same id.
    fn upsert_knowledge(&self, entry: &KnowledgeEntry) -> impl Future<Output = Result<()>> + Send;

    /// The best matches for `query` (user text, taken literally), best first.
    fn search(
        &self,
        query: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<KnowledgeHit>>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_syntax_is_reduced_to_words() {
        assert_eq!(
            query_terms(r#"why is "checkout" crash-looping in shop? NEAR(a b) OR col:x* -- ' ; "#),
            vec!["checkout", "crash", "looping", "shop", "near", "b", "col", "x"]
        );
        assert!(query_terms("?!* \" ' () -").is_empty());
        assert_eq!(query_terms("Pod pod POD"), vec!["pod"]);
        assert_eq!(query_terms(&"w ".repeat(100)).len(), 1);
        let many: String = (0..40).map(|i| format!("word{i} ")).collect();
        assert_eq!(query_terms(&many).len(), MAX_QUERY_TERMS);
    }

    #[test]
    fn the_score_prefers_relevant_well_rated_recent_entries() {
        let options = SearchOptions::default();
        let base = score(2.0, 80, 10.0, &options);
        assert!(score(4.0, 80, 10.0, &options) > base);
        assert!(score(2.0, 100, 10.0, &options) > base);
        assert!(score(2.0, 80, 1.0, &options) > base);
        // One half-life old: recency ½, so the last factor is ¾.
        let fresh = score(1.0, 100, 0.0, &options);
        let old = score(1.0, 100, options.recency_half_life_days, &options);
        assert!((old / fresh - 0.75).abs() < 1e-9);
    }
}
