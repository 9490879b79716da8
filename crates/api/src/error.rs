//! The crate's error type, and how each error becomes an HTTP response.
//!
//! The service behind the API ([`crate::Deckhand`], [`crate::TokenStore`]) returns these
//! errors too, so a "not found" in the store reaches the client as a 404 without the
//! API guessing. Internal causes are logged, never sent: the client gets a generic
//! message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// What can go wrong serving a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No credentials, or credentials that are not valid (401).
    #[error("unauthenticated: {reason}")]
    Unauthenticated {
        /// Why the credentials were refused.
        reason: String,
    },
    /// Valid credentials without the scope the route needs, or acting on someone else's
    /// thread (403).
    #[error("forbidden: {reason}")]
    Forbidden {
        /// What was missing.
        reason: String,
    },
    /// Too many requests for this token (429).
    #[error("rate limited: retry after {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a request will be accepted again.
        retry_after_secs: u64,
    },
    /// The thing named does not exist (404).
    #[error("{what} {id} not found")]
    NotFound {
        /// What kind of thing (`thread`, `plan`, `token`).
        what: &'static str,
        /// Its id as given.
        id: String,
    },
    /// The request is malformed or its values are out of range (400).
    #[error("invalid request: {message}")]
    Invalid {
        /// What is wrong, for the client.
        message: String,
    },
    /// The request body is larger than the configured limit (413).
    #[error("request body too large: {message}")]
    PayloadTooLarge {
        /// What the server said about it.
        message: String,
    },
    /// The request conflicts with the current state: a plan hash that does not match, a
    /// plan already running, a closed thread (409).
    #[error("conflict: {message}")]
    Conflict {
        /// What conflicts, for the client.
        message: String,
    },
    /// A policy refused the operation (403, with the policy's reasons).
    #[error("denied by policy: {message}")]
    PolicyDenied {
        /// The policies' reasons.
        message: String,
    },
    /// A component the request needs (the cluster, the LLM, the store) is down (503).
    #[error("unavailable: {message}")]
    Unavailable {
        /// Which component and why.
        message: String,
    },
    /// A Slack Web API call failed (Slack's own `{ok: false, error}` or a transport error).
    #[error("slack {method}: {error}")]
    Slack {
        /// The Web API method (`chat.postMessage`).
        method: &'static str,
        /// Slack's error code, or the transport error.
        error: String,
    },
    /// Fetching or reading the OIDC provider's keys failed.
    #[error("OIDC keys from {url}: {message}")]
    Jwks {
        /// The JWKS URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// Anything else; the cause is logged, the client sees a generic message (500).
    #[error("internal error: {context}")]
    Internal {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// Results of this crate and of the services it serves.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An internal error with its cause.
    pub fn internal(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Internal {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A 400 with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } | Self::PolicyDenied { .. } => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Invalid { .. } => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Slack { .. } | Self::Jwks { .. } => StatusCode::BAD_GATEWAY,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code in the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated { .. } => "unauthenticated",
            Self::Forbidden { .. } => "forbidden",
            Self::RateLimited { .. } => "rate_limited",
            Self::NotFound { .. } => "not_found",
            Self::Invalid { .. } => "invalid_request",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Conflict { .. } => "conflict",
            Self::PolicyDenied { .. } => "policy_denied",
            Self::Unavailable { .. } => "unavailable",
            Self::Slack { .. } => "slack_error",
            Self::Jwks { .. } => "oidc_unavailable",
            Self::Internal { .. } => "internal",
        }
    }
}

impl From<deckhand_runtime::Error> for Error {
    fn from(error: deckhand_runtime::Error) -> Self {
        use deckhand_runtime::Error as Runtime;
        match error {
            Runtime::ApprovalMismatch { reason } => Self::Conflict { message: reason },
            Runtime::InvalidPlan { .. } | Runtime::InvalidThreadId { .. } => {
                Self::invalid(error.to_string())
            }
            other => Self::internal("runtime", other),
        }
    }
}

/// The JSON body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code: `unauthenticated`, `forbidden`, `rate_limited`, `not_found`,
    /// `invalid_request`, `conflict`, `policy_denied`, `unavailable`, `internal`, ...
    pub error: String,
    /// A sentence for a person.
    pub message: String,
    /// For `rate_limited`: seconds to wait (also in `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Self::Internal { context, source } => {
                tracing::error!(%context, source = ?source, "request failed");
                "internal error; the server log has the details".to_owned()
            }
            Self::Slack { .. } | Self::Jwks { .. } => {
                tracing::warn!(error = %self, "upstream failed");
                self.to_string()
            }
            other => other.to_string(),
        };
        let retry_after_secs = match self {
            Self::RateLimited { retry_after_secs } => Some(retry_after_secs),
            _ => None,
        };
        let body = ErrorBody {
            error: self.code().to_owned(),
            message,
            retry_after_secs,
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after_secs {
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"deckhand\""),
            );
        }
        response
    }
}
