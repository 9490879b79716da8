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
}

impl ThreadStatus {
    /// The name stored in databases and shown in APIs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

impl FromStr for ThreadStatus {
    type Err = Error;

    fn from_str(status: &str) -> Result<Self> {
        match status {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
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
        for status in [ThreadStatus::Open, ThreadStatus::Closed] {
            assert_eq!(status.as_str().parse::<ThreadStatus>().unwrap(), status);
        }
        assert!(matches!(
            "archived".parse::<ThreadStatus>(),
            Err(Error::UnknownThreadStatus { .. })
        ));
    }
}
