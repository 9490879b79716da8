//! Threads: one conversation between a person and deckhand, from request to rating.

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A thread's identifier: a UUID, so threads from many clusters never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ThreadId(uuid::Uuid);

impl ThreadId {
    /// A new random thread id.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    /// The id as a UUID.
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl Default for ThreadId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<uuid::Uuid> for ThreadId {
    fn from(uuid: uuid::Uuid) -> Self {
        Self(uuid)
    }
}

impl fmt::Display for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ThreadId {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        uuid::Uuid::parse_str(input.trim())
            .map(Self)
            .map_err(|source| Error::InvalidThreadId {
                input: input.to_owned(),
                source,
            })
    }
}

/// Where a thread is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadStatus {
    /// The conversation goes on.
    Open,
    /// The person rated it 100: resolved, and a candidate for the knowledge base.
    Closed,
    /// Its changes were undone: the objects it touched were put back as they were before.
    Restored,
}

impl ThreadStatus {
    /// The name stored in databases and shown in APIs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Restored => "restored",
        }
    }
}

impl FromStr for ThreadStatus {
    type Err = Error;

    fn from_str(status: &str) -> Result<Self> {
        match status {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            "restored" => Ok(Self::Restored),
            other => Err(Error::UnknownThreadStatus {
                status: other.to_owned(),
            }),
        }
    }
}

/// One conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    /// The thread's id.
    pub id: ThreadId,
    /// The cluster the thread works on (threads from many clusters share a store).
    pub cluster_id: String,
    /// Who asked.
    pub user: String,
    /// A short title, from the first request.
    pub title: String,
    /// Open or closed.
    pub status: ThreadStatus,
    /// When it was started.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Thread {
    /// A new open thread started now.
    pub fn new(
        cluster_id: impl Into<String>,
        user: impl Into<String>,
        title: impl Into<String>,
    ) -> Self {
        let now = Utc::now();
        Self {
            id: ThreadId::new(),
            cluster_id: cluster_id.into(),
            user: user.into(),
            title: title.into(),
            status: ThreadStatus::Open,
            created_at: now,
            updated_at: now,
        }
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageRole {
    /// The person.
    User,
    /// deckhand answering the person (Jamie's replies, reports).
    Assistant,
    /// One of the agents, while working (Scarlet's plan, an analyzer's finding).
    Agent,
    /// deckhand itself: approvals, errors, restores.
    System,
}

impl MessageRole {
    /// The name stored in databases and shown in APIs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Agent => "agent",
            Self::System => "system",
        }
    }

    /// The role named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "user" => Some(Self::User),
            "assistant" => Some(Self::Assistant),
            "agent" => Some(Self::Agent),
            "system" => Some(Self::System),
            _ => None,
        }
    }
}

/// One message of a thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The message's id: a UUID, so a message copied to the shared store is never doubled.
    pub id: uuid::Uuid,
    /// The thread it belongs to.
    pub thread_id: ThreadId,
    /// Who wrote it, by kind.
    pub role: MessageRole,
    /// Who wrote it, by name: the person's user name, or the agent's name.
    pub author: String,
    /// The text (Markdown).
    pub text: String,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

impl Message {
    /// A new message written now.
    pub fn new(
        thread_id: ThreadId,
        role: MessageRole,
        author: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        Self {
            id: uuid::Uuid::new_v4(),
            thread_id,
            role,
            author: author.into(),
            text: text.into(),
            created_at: Utc::now(),
        }
    }
}

/// The score that closes a thread: the person says it is fully resolved.
pub const CLOSING_SCORE: u8 = 100;

/// A score outside 0–100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a rating is a score from 0 to 100, not {score}")]
pub struct ScoreOutOfRange {
    /// The score given.
    pub score: i64,
}

/// A person's rating of a thread: how well deckhand resolved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rating {
    /// The rating's id (a thread may be rated more than once; the latest counts).
    pub id: uuid::Uuid,
    /// The thread rated.
    pub thread_id: ThreadId,
    /// 0 (useless) to 100 (resolved: closes the thread).
    pub score: u8,
    /// What the person said about it.
    pub comment: String,
    /// Who rated it.
    pub rated_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl Rating {
    /// A rating made now.
    ///
    /// # Errors
    /// [`ScoreOutOfRange`] unless `0 <= score <= 100`.
    pub fn new(
        thread_id: ThreadId,
        score: i64,
        comment: impl Into<String>,
        rated_by: impl Into<String>,
    ) -> std::result::Result<Self, ScoreOutOfRange> {
        let score = u8::try_from(score)
            .ok()
            .filter(|score| *score <= CLOSING_SCORE)
            .ok_or(ScoreOutOfRange { score })?;
        Ok(Self {
            id: uuid::Uuid::new_v4(),
            thread_id,
            score,
            comment: comment.into(),
            rated_by: rated_by.into(),
            created_at: Utc::now(),
        })
    }

    /// Whether this rating closes the thread.
    pub fn closes_thread(&self) -> bool {
        self.score == CLOSING_SCORE
    }
}

/// One entry of a thread's event log: what a WebSocket client is sent, and what it asks
/// for again after a reconnect ("everything after event 41").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadEvent {
    /// The thread.
    pub thread_id: ThreadId,
    /// Increases by one with each event of the thread, from 1.
    pub id: i64,
    /// What happened, e.g. `message`, `plan`, `step`, `approval`, `rating`.
    pub kind: String,
    /// The event's data.
    pub payload: serde_json::Value,
    /// When it was appended.
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_ids_round_trip_through_text() {
        let id = ThreadId::new();
        assert_eq!(id.to_string().parse::<ThreadId>().unwrap(), id);
        assert!(matches!(
            "not-a-uuid".parse::<ThreadId>(),
            Err(Error::InvalidThreadId { .. })
        ));
    }

    #[test]
    fn statuses_round_trip_and_unknown_ones_are_errors() {
        for status in [
            ThreadStatus::Open,
            ThreadStatus::Closed,
            ThreadStatus::Restored,
        ] {
            assert_eq!(status.as_str().parse::<ThreadStatus>().unwrap(), status);
        }
        assert!(matches!(
            "archived".parse::<ThreadStatus>(),
            Err(Error::UnknownThreadStatus { .. })
        ));
    }

    #[test]
    fn roles_round_trip() {
        for role in [
            MessageRole::User,
            MessageRole::Assistant,
            MessageRole::Agent,
            MessageRole::System,
        ] {
            assert_eq!(MessageRole::parse(role.as_str()), Some(role));
        }
        assert_eq!(MessageRole::parse("root"), None);
    }

    #[test]
    fn scores_outside_0_to_100_are_refused() {
        let thread = ThreadId::new();
        assert_eq!(Rating::new(thread, 0, "", "ana").unwrap().score, 0);
        assert!(Rating::new(thread, 100, "", "ana").unwrap().closes_thread());
        assert!(!Rating::new(thread, 99, "", "ana").unwrap().closes_thread());
        for score in [-1, 101, 256, i64::MAX] {
            assert_eq!(
                Rating::new(thread, score, "", "ana"),
                Err(ScoreOutOfRange { score })
            );
        }
    }
}
