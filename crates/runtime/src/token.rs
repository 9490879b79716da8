//! API tokens: what a client presents to the HTTP API. Only a token's SHA-256 is ever
//! stored; the token itself is shown once, when it is issued.

use crate::error::Result;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::future::Future;

/// What every token starts with, so a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "dh_";

/// A stored API token (without the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// The token's id.
    pub id: uuid::Uuid,
    /// A name for people: who or what uses it.
    pub name: String,
    /// Lowercase hex SHA-256 of the token.
    pub token_hash: String,
    /// What it may do, e.g. `threads:read`, `plans:approve`.
    pub scopes: Vec<String>,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked token is refused.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The identity it authenticates as: the user deckhand impersonates on the cluster
    /// for its requests.
    #[serde(default)]
    pub subject: String,
    /// The identity's groups (`Impersonate-Group`).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Who issued it.
    #[serde(default)]
    pub created_by: String,
    /// When it stops working, if ever.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

impl ApiToken {
    /// Issues a new token: the record to store and the token to hand over once.
    /// The token carries 244 random bits (two v4 UUIDs) from the OS generator.
    pub fn issue(name: impl Into<String>, scopes: Vec<String>) -> (Self, String) {
        let secret = format!(
            "{TOKEN_PREFIX}{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let record = Self {
            id: uuid::Uuid::new_v4(),
            name: name.into(),
            token_hash: hash_token(&secret),
            scopes,
            created_at: Utc::now(),
            revoked_at: None,
            subject: String::new(),
            groups: Vec::new(),
            created_by: String::new(),
            expires_at: None,
        };
        (record, secret)
    }

    /// The token for `subject` in `groups`, issued by `created_by`.
    #[must_use]
    pub fn for_identity(
        mut self,
        subject: impl Into<String>,
        groups: Vec<String>,
        created_by: impl Into<String>,
    ) -> Self {
        self.subject = subject.into();
        self.groups = groups;
        self.created_by = created_by.into();
        self
    }

    /// Whether the token may still be used: not revoked, not expired.
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expiry| expiry > Utc::now())
    }

    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|granted| granted == scope)
    }
}

/// The stored form of a token: lowercase hex SHA-256.
pub fn hash_token(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

/// Persistent storage of API tokens.
pub trait TokenStore: Send + Sync {
    /// Stores a newly issued token.
    fn create_token(&self, token: &ApiToken) -> impl Future<Output = Result<()>> + Send;

    /// The token whose hash is `token_hash` (revoked or not: the caller checks).
    fn token_by_hash(
        &self,
        token_hash: &str,
    ) -> impl Future<Output = Result<Option<ApiToken>>> + Send;

    /// Revokes a token; `false` when there is no such token or it was already revoked.
    fn revoke_token(&self, id: uuid::Uuid) -> impl Future<Output = Result<bool>> + Send;

    /// Every token, newest first.
    fn tokens(&self) -> impl Future<Output = Result<Vec<ApiToken>>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_is_stored_only_as_its_hash() {
        let (record, secret) = ApiToken::issue("ci", vec!["threads:read".into()]);
        assert!(secret.starts_with(TOKEN_PREFIX));
        assert_eq!(secret.len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(record.token_hash, hash_token(&secret));
        assert_eq!(record.token_hash.len(), 64);
        assert!(!serde_json::to_string(&record).unwrap().contains(&secret));
        assert!(record.has_scope("threads:read") && !record.has_scope("plans:approve"));
        let (_, other) = ApiToken::issue("ci", vec![]);
        assert_ne!(secret, other);
    }

    #[test]
    fn the_hash_is_sha256_hex() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
