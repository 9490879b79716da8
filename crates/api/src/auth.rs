//! Who is calling, and whether they may.
//!
//! Callers present `Authorization: Bearer <token>`: either an API token (`dh_...`,
//! looked up by its SHA-256 in the [`TokenStore`]) or, when OIDC is
//! configured, a JWT from the provider. Browsers cannot set headers on a WebSocket, so
//! `/ws/` also accepts the token as the subprotocol `bearer.<token>`. Each handler
//! names the scope it needs by its extractor: [`Viewer`], [`Operator`] or [`Admin`].
//! Missing or invalid credentials are 401, too small a scope 403, too many requests
//! 429: in that order, before the body is read.

use crate::error::{Error, Result};
use crate::model::{AuthSource, CreatedToken, Identity, NewToken, Scope, TokenRecord};
use crate::service::TokenStore;
use crate::ApiState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::time::Instant;

/// What every API token starts with, so leaked tokens are easy to scan for.
pub const TOKEN_PREFIX: &str = "dh_";

/// The WebSocket subprotocol prefix that carries a token.
pub const WS_TOKEN_PROTOCOL_PREFIX: &str = "bearer.";

/// A new API token: the prefix and 32 random bytes, base64url.
///
/// # Errors
/// [`Error::Internal`] when the operating system has no randomness to give.
pub fn generate_token() -> Result<String> {
    let mut secret = [0_u8; 32];
    getrandom::fill(&mut secret).map_err(|error| {
        Error::internal(
            "generating a token",
            std::io::Error::other(error.to_string()),
        )
    })?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    ))
}

/// Makes a token for `request`, stores its hash, and returns the token (shown once) with
/// its record. `POST /api/tokens` uses it; so can `deckhand serve` for the first admin
/// token.
///
/// # Errors
/// [`Error::Invalid`] for an empty name or subject or an expiry out of range; the
/// store's errors.
pub async fn issue_token(
    tokens: &dyn TokenStore,
    request: NewToken,
    created_by: &str,
) -> Result<CreatedToken> {
    if request.name.trim().is_empty() || request.subject.trim().is_empty() {
        return Err(Error::invalid("a token needs a name and a subject"));
    }
    let now = chrono::Utc::now();
    let expires_at = match request.expires_in_secs {
        None => None,
        Some(secs) => Some(
            i64::try_from(secs)
                .ok()
                .and_then(chrono::TimeDelta::try_seconds)
                .and_then(|lifetime| now.checked_add_signed(lifetime))
                .ok_or_else(|| Error::invalid(format!("expires_in_secs {secs} is too large")))?,
        ),
    };
    let token = generate_token()?;
    let record = TokenRecord {
        id: uuid::Uuid::new_v4(),
        name: request.name,
        subject: request.subject,
        groups: request.groups,
        scope: request.scope,
        created_by: created_by.to_owned(),
        created_at: now,
        expires_at,
        revoked: false,
    };
    tokens.create(&hash_token(&token), &record).await?;
    Ok(CreatedToken { token, record })
}

/// The SHA-256 of a token, lower-case hex: what the token store keys tokens by.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The bearer token of a request: the `Authorization` header, else (WebSockets) a
/// `bearer.<token>` subprotocol.
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?.trim();
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned())
            .filter(|token| !token.is_empty());
    }
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|protocol| protocol.trim().strip_prefix(WS_TOKEN_PROTOCOL_PREFIX))
        .map(str::to_owned)
}

/// Compares two secrets in time that does not depend on where they differ (both are
/// hashed first, so their lengths do not leak either).
pub fn secrets_match(presented: &[u8], expected: &[u8]) -> bool {
    let presented = Sha256::digest(presented);
    let expected = Sha256::digest(expected);
    presented
        .iter()
        .zip(expected.iter())
        .fold(0_u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}

impl ApiState {
    /// Authenticates a request and takes one from the caller's rate limit.
    ///
    /// # Errors
    /// 401, 403 (OIDC without a scope) or 429 as [`Error`]s.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Identity> {
        let token = bearer_token(headers).ok_or_else(|| Error::Unauthenticated {
            reason: "no bearer token (Authorization: Bearer <token>)".to_owned(),
        })?;
        let (identity, caller) = match &self.inner.oidc {
            Some(oidc) if crate::oidc::OidcValidator::looks_like_jwt(&token) => {
                let identity = oidc.validate(&token).await?;
                let caller = format!("oidc:{}", identity.subject);
                (identity, caller)
            }
            _ => {
                let record = self
                    .inner
                    .tokens
                    .lookup(&hash_token(&token))
                    .await?
                    .ok_or_else(|| Error::Unauthenticated {
                        reason: "unknown token".to_owned(),
                    })?;
                if record.revoked {
                    return Err(Error::Unauthenticated {
                        reason: format!("token {:?} was revoked", record.name),
                    });
                }
                if record
                    .expires_at
                    .is_some_and(|expiry| expiry <= chrono::Utc::now())
                {
                    return Err(Error::Unauthenticated {
                        reason: format!("token {:?} expired", record.name),
                    });
                }
                let caller = format!("token:{}", record.id);
                let identity = Identity {
                    subject: record.subject,
                    groups: record.groups,
                    scope: record.scope,
                    source: AuthSource::Token { id: record.id },
                };
                (identity, caller)
            }
        };
        self.inner
            .limiter
            .check(&caller, Instant::now())
            .map_err(|wait| Error::RateLimited {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            })?;
        Ok(identity)
    }

    async fn require(&self, parts: &Parts, scope: Scope) -> Result<Identity> {
        let identity = self.authenticate(&parts.headers).await?;
        tracing::Span::current().record("subject", identity.subject.as_str());
        if identity.scope < scope {
            return Err(Error::Forbidden {
                reason: format!(
                    "{} has scope {}, this needs {}",
                    identity.subject,
                    identity.scope.as_str(),
                    scope.as_str()
                ),
            });
        }
        Ok(identity)
    }
}

macro_rules! scoped_extractor {
    ($(#[$doc:meta])* $name:ident, $scope:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Identity);

        impl FromRequestParts<ApiState> for $name {
            type Rejection = Error;

            async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self> {
                state.require(parts, $scope).await.map(Self)
            }
        }
    };
}

scoped_extractor!(
    /// A caller with at least the viewer scope (reads).
    Viewer,
    Scope::Viewer
);
scoped_extractor!(
    /// A caller with at least the operator scope (asks, approves their own plans).
    Operator,
    Scope::Operator
);
scoped_extractor!(
    /// An admin.
    Admin,
    Scope::Admin
);

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn tokens_are_random_prefixed_and_hash_to_hex() {
        let one = generate_token().expect("token");
        let two = generate_token().expect("token");
        assert!(one.starts_with(TOKEN_PREFIX));
        assert_ne!(one, two);
        assert_eq!(one.len(), TOKEN_PREFIX.len() + 43);
        // sha256("abc"), the FIPS 180-2 test vector.
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_bearer_token_comes_from_the_header_or_the_websocket_protocol() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("deckhand, bearer.dh_abc"),
        );
        assert_eq!(bearer_token(&headers).as_deref(), Some("dh_abc"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bEaReR  dh_xyz "),
        );
        assert_eq!(bearer_token(&headers).as_deref(), Some("dh_xyz"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dh_xyz"),
        );
        assert_eq!(bearer_token(&headers), None);
    }
}
