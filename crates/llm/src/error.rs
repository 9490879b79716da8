//! Errors of the LLM layer, classified so the router knows whether to retry the same
//! backend, fall back to the next one, or stop.

use std::time::Duration;

/// Which deadline ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutPhase {
    /// Opening the connection.
    Connect,
    /// Waiting for the first event of a streamed answer.
    FirstToken,
    /// The whole request.
    Total,
}

impl std::fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect",
            Self::FirstToken => "first token",
            Self::Total => "total",
        })
    }
}

/// One backend that failed while a route was tried, as [`Error::AllFailed`] lists them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FailedAttempt {
    /// The backend's name in the configuration.
    pub backend: String,
    /// The model it serves.
    pub model: String,
    /// [`Error::kind`] of what went wrong.
    pub kind: String,
    /// The error's message.
    pub message: String,
}

impl std::fmt::Display for FailedAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.backend, self.model, self.message)
    }
}

/// Everything that can go wrong talking to a model. [`Error::kind`] gives each a stable
/// machine-readable name; [`Error::is_retryable`] says whether the same backend may be
/// asked again.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backend could not be reached (refused, DNS, TLS, reset).
    #[error("cannot reach backend {backend}: {message}")]
    Connect {
        /// The backend's name.
        backend: String,
        /// What the HTTP client said.
        message: String,
        /// The cause.
        #[source]
        source: Option<reqwest::Error>,
    },
    /// A deadline ran out.
    #[error("backend {backend}: {phase} timeout after {after:?}")]
    Timeout {
        /// The backend's name.
        backend: String,
        /// Which deadline.
        phase: TimeoutPhase,
        /// How long it was.
        after: Duration,
    },
    /// The backend said to slow down (HTTP 429).
    #[error("backend {backend} is rate limiting{}: {message}", retry_after.map(|d| format!(" (retry after {d:?})")).unwrap_or_default())]
    RateLimited {
        /// The backend's name.
        backend: String,
        /// How long the backend asked us to wait, from `Retry-After`.
        retry_after: Option<Duration>,
        /// What it said.
        message: String,
    },
    /// The backend failed on its side (HTTP 5xx, or Anthropic's 529 overloaded).
    #[error("backend {backend} failed with HTTP {status}: {message}")]
    Server {
        /// The backend's name.
        backend: String,
        /// The HTTP status.
        status: u16,
        /// What it said.
        message: String,
    },
    /// The credentials were refused (HTTP 401/403) or are missing.
    #[error("backend {backend} refused the credentials: {message}")]
    Auth {
        /// The backend's name.
        backend: String,
        /// What it said.
        message: String,
    },
    /// The backend rejected the request itself (another 4xx, such as an unknown model).
    #[error("backend {backend} rejected the request with HTTP {status}: {message}")]
    BadRequest {
        /// The backend's name.
        backend: String,
        /// The HTTP status.
        status: u16,
        /// What it said.
        message: String,
    },
    /// The prompt does not fit the model's context window, even after trimming.
    #[error("the prompt for backend {backend} ({model}) needs about {needed} tokens, above its context window of {window}")]
    ContextTooLong {
        /// The backend's name.
        backend: String,
        /// The model.
        model: String,
        /// The tokens the prompt needs (an estimate, or what the backend reported; 0 when
        /// the backend did not say).
        needed: usize,
        /// The model's context window (0 when unknown).
        window: usize,
    },
    /// The backend answered something that is not its wire format: malformed JSON, a
    /// stream that ended before it finished, an unexpected shape.
    #[error("backend {backend} sent a bad response: {message}")]
    BadResponse {
        /// The backend's name.
        backend: String,
        /// What was wrong.
        message: String,
    },
    /// The model refused to answer (a safety refusal or a content filter).
    #[error("the model behind backend {backend} refused: {message}")]
    Refused {
        /// The backend's name.
        backend: String,
        /// The refusal text or the filter's reason.
        message: String,
    },
    /// The model's structured answer still broke the schema after the allowed repairs.
    #[error("backend {backend} did not produce valid output after {attempts} attempt(s): {}", problems.join("; "))]
    SchemaInvalid {
        /// The backend's name.
        backend: String,
        /// How many answers were tried.
        attempts: u32,
        /// What was wrong with the last answer.
        problems: Vec<String>,
        /// The last answer's text.
        last_output: String,
    },
    /// The schema the caller asked for is not a valid JSON Schema.
    #[error("the requested output schema is invalid: {message}")]
    InvalidSchema {
        /// What the validator said.
        message: String,
    },
    /// The offline backend cannot do this: there is no model behind it.
    #[error("backend {backend} is the offline backend and has no model: it cannot {what}")]
    Offline {
        /// The backend's name.
        backend: String,
        /// What was asked of it.
        what: String,
    },
    /// The caller cancelled the request.
    #[error("the request was cancelled")]
    Cancelled,
    /// The configuration is wrong.
    #[error("LLM configuration is invalid: {}", problems.join("; "))]
    Config {
        /// Every problem found.
        problems: Vec<String>,
    },
    /// A usage sink could not store a record (the router logs this and carries on:
    /// accounting never fails a request).
    #[error("usage sink {sink} could not store a record")]
    UsageSink {
        /// The sink's name.
        sink: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Every backend of a route failed.
    #[error("every backend for {route} failed: {}", attempts.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    AllFailed {
        /// The route (an agent's name or `default`).
        route: String,
        /// Each backend tried, in order, and what went wrong.
        attempts: Vec<FailedAttempt>,
    },
}

impl Error {
    /// A stable machine-readable name for this error.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::Timeout { .. } => "timeout",
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "server",
            Self::Auth { .. } => "auth",
            Self::BadRequest { .. } => "bad_request",
            Self::ContextTooLong { .. } => "context_too_long",
            Self::BadResponse { .. } => "bad_response",
            Self::Refused { .. } => "refused",
            Self::SchemaInvalid { .. } => "schema_invalid",
            Self::InvalidSchema { .. } => "invalid_schema",
            Self::Offline { .. } => "offline",
            Self::Cancelled => "cancelled",
            Self::Config { .. } => "config",
            Self::UsageSink { .. } => "usage_sink",
            Self::AllFailed { .. } => "all_failed",
        }
    }

    /// Whether asking the same backend again may succeed: connection failures, timeouts,
    /// rate limits, server errors and broken streams.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::Timeout { .. }
                | Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::BadResponse { .. }
        )
    }

    /// Whether the router should try the next backend of the route. Everything but a
    /// cancellation, a bad schema from the caller, or a broken configuration.
    pub fn should_fall_back(&self) -> bool {
        !matches!(
            self,
            Self::Cancelled | Self::InvalidSchema { .. } | Self::Config { .. }
        )
    }

    /// Whether the answer came down to the offline backend: it was asked (alone, or as
    /// the last resort of a route whose models all failed) for something only a model can
    /// do. Agents take their rule-based path on this.
    pub fn is_offline(&self) -> bool {
        match self {
            Self::Offline { .. } => true,
            Self::AllFailed { attempts, .. } => attempts
                .last()
                .is_some_and(|attempt| attempt.kind == "offline"),
            _ => false,
        }
    }

    /// How long the backend asked us to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The LLM layer's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let rate = Error::RateLimited {
            backend: "b".into(),
            retry_after: Some(Duration::from_secs(2)),
            message: "slow down".into(),
        };
        assert!(rate.is_retryable());
        assert_eq!(rate.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(rate.kind(), "rate_limited");
        let auth = Error::Auth {
            backend: "b".into(),
            message: "no".into(),
        };
        assert!(!auth.is_retryable());
        assert!(auth.should_fall_back());
        assert!(!Error::Cancelled.should_fall_back());
        let offline = |kind: &str| Error::AllFailed {
            route: "planner".into(),
            attempts: vec![FailedAttempt {
                backend: "x".into(),
                model: "m".into(),
                kind: kind.into(),
                message: String::new(),
            }],
        };
        assert!(offline("offline").is_offline());
        assert!(!offline("timeout").is_offline());
    }
}
