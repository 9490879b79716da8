//! OIDC: a bearer JWT signed by the configured provider (RS256 or ES256), checked
//! against the provider's JWKS, its issuer, audience and expiry. A claim names the
//! person, another their groups; groups map to a scope.

use crate::config::OidcConfig;
use crate::error::{Error, Result};
use crate::model::{AuthSource, Identity, Scope};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

/// Refetching on an unknown `kid` (the provider rotated its keys) happens at most this
/// often, so forged `kid`s cannot make deckhand hammer the provider.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// Fetches the JWKS at most this long.
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// A validator of one provider's tokens.
#[derive(Debug)]
pub struct OidcValidator {
    config: OidcConfig,
    http: reqwest::Client,
    keys: RwLock<Option<(JwkSet, Instant)>>,
}

impl OidcValidator {
    /// A validator; keys are fetched on first use.
    pub fn new(config: OidcConfig, http: reqwest::Client) -> Self {
        Self {
            config,
            http,
            keys: RwLock::new(None),
        }
    }

    /// Whether `token` looks like a JWT (three base64url parts), not an API token.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3 && token.starts_with("eyJ")
    }

    /// Validates `token` and maps it to an identity.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] for a token that is not valid, [`Error::Forbidden`] for
    /// a valid one whose groups grant no scope, [`Error::Jwks`] when the keys cannot be
    /// fetched.
    pub async fn validate(&self, token: &str) -> Result<Identity> {
        let header = jsonwebtoken::decode_header(token).map_err(|error| unauthenticated(&error))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(Error::Unauthenticated {
                reason: format!(
                    "JWT algorithm {:?} is not accepted (RS256, ES256)",
                    header.alg
                ),
            });
        }
        let kid = header.kid.clone().unwrap_or_default();
        let jwk = match self.find_key(&kid, false).await? {
            Some(jwk) => jwk,
            None => self
                .find_key(&kid, true)
                .await?
                .ok_or_else(|| Error::Unauthenticated {
                    reason: format!("no key {kid:?} in the provider's JWKS"),
                })?,
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|error| Error::Jwks {
            url: self.config.jwks_url.clone(),
            message: format!("key {kid:?}: {error}"),
        })?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|error| unauthenticated(&error))?
            .claims;
        self.identity(&claims)
    }

    fn identity(&self, claims: &Value) -> Result<Identity> {
        let subject = claims
            .get(&self.config.subject_claim)
            .and_then(Value::as_str)
            .filter(|subject| !subject.is_empty())
            .ok_or_else(|| Error::Unauthenticated {
                reason: format!("the token has no {:?} claim", self.config.subject_claim),
            })?
            .to_owned();
        let groups: Vec<String> = match claims.get(&self.config.groups_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        let member = |names: &[String]| groups.iter().any(|group| names.contains(group));
        let scope = if member(&self.config.admin_groups) {
            Some(Scope::Admin)
        } else if member(&self.config.operator_groups) {
            Some(Scope::Operator)
        } else if member(&self.config.viewer_groups) {
            Some(Scope::Viewer)
        } else {
            self.config.default_scope
        };
        let scope = scope.ok_or_else(|| Error::Forbidden {
            reason: format!("{subject} is in no group that grants access to deckhand"),
        })?;
        Ok(Identity {
            subject,
            groups,
            scope,
            source: AuthSource::Oidc {
                issuer: self.config.issuer.clone(),
            },
        })
    }

    async fn find_key(&self, kid: &str, refetch: bool) -> Result<Option<jsonwebtoken::jwk::Jwk>> {
        let cache_for = Duration::from_secs(self.config.jwks_cache_secs);
        {
            let keys = self.keys.read().await;
            if let Some((set, fetched)) = keys.as_ref() {
                let fresh = fetched.elapsed() < cache_for;
                let may_refetch = fetched.elapsed() >= MIN_REFETCH_INTERVAL;
                if fresh && !(refetch && may_refetch) {
                    return Ok(pick(set, kid));
                }
            }
        }
        let mut keys = self.keys.write().await;
        // Another request may have fetched while this one waited for the lock.
        if let Some((set, fetched)) = keys.as_ref() {
            if fetched.elapsed() < MIN_REFETCH_INTERVAL {
                return Ok(pick(set, kid));
            }
        }
        let set = self.fetch().await?;
        let found = pick(&set, kid);
        *keys = Some((set, Instant::now()));
        Ok(found)
    }

    async fn fetch(&self) -> Result<JwkSet> {
        let jwks_error = |message: String| Error::Jwks {
            url: self.config.jwks_url.clone(),
            message,
        };
        let response = self
            .http
            .get(&self.config.jwks_url)
            .timeout(JWKS_FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|error| jwks_error(error.to_string()))?;
        if !response.status().is_success() {
            return Err(jwks_error(format!("HTTP {}", response.status())));
        }
        response
            .json::<JwkSet>()
            .await
            .map_err(|error| jwks_error(format!("not a JWKS: {error}")))
    }
}

fn pick(set: &JwkSet, kid: &str) -> Option<jsonwebtoken::jwk::Jwk> {
    if kid.is_empty() && set.keys.len() == 1 {
        return set.keys.first().cloned();
    }
    set.find(kid).cloned()
}

fn unauthenticated(error: &jsonwebtoken::errors::Error) -> Error {
    Error::Unauthenticated {
        reason: format!("invalid JWT: {error}"),
    }
}
