//! API tokens, stored by the SHA-256 of the token (the token itself never reaches the
//! database) and looked up by that hash.

use crate::conversation::{json_column, uuid_column};
use crate::database::{now_micros, timestamp, Database};
use crate::error::{Error, Result};
use deckhand_runtime::token::{ApiToken, TokenStore};
use sqlx::any::AnyRow;
use sqlx::Row;

const COLUMNS: &str =
    "SELECT id, name, token_hash, scopes, created_at, revoked_at, subject, groups, \
     created_by, expires_at FROM api_tokens";

impl Database {
    /// Stores an issued token.
    ///
    /// # Errors
    /// [`Error::Query`] (also for a hash already stored), [`Error::Encode`].
    pub async fn insert_token(&self, token: &ApiToken) -> Result<()> {
        let scopes = serde_json::to_string(&token.scopes).map_err(|source| Error::Encode {
            what: "a token's scopes",
            source,
        })?;
        let groups = serde_json::to_string(&token.groups).map_err(|source| Error::Encode {
            what: "a token's groups",
            source,
        })?;
        sqlx::query(
            "INSERT INTO api_tokens (id, name, token_hash, scopes, created_at, revoked_at, \
             subject, groups, created_by, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(token.id.to_string())
        .bind(&token.name)
        .bind(&token.token_hash)
        .bind(scopes)
        .bind(token.created_at.timestamp_micros())
        .bind(token.revoked_at.map(|at| at.timestamp_micros()))
        .bind(&token.subject)
        .bind(groups)
        .bind(&token.created_by)
        .bind(token.expires_at.map(|at| at.timestamp_micros()))
        .execute(&self.pool)
        .await
        .map_err(|source| Error::Query {
            context: "storing an API token",
            source,
        })?;
        Ok(())
    }

    /// The token with this hash, revoked or not.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::CorruptRow`].
    pub async fn find_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        sqlx::query(&format!("{COLUMNS} WHERE token_hash = $1"))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(|source| Error::Query {
                context: "looking up an API token",
                source,
            })?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }

    /// Revokes a token now; `false` when there is none or it already was.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn revoke_token_now(&self, id: uuid::Uuid) -> Result<bool> {
        let revoked = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now_micros().timestamp_micros())
        .bind(id.to_string())
        .execute(&self.pool)
        .await
        .map_err(|source| Error::Query {
            context: "revoking an API token",
            source,
        })?;
        Ok(revoked.rows_affected() > 0)
    }

    /// Every token, newest first.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::CorruptRow`].
    pub async fn all_tokens(&self) -> Result<Vec<ApiToken>> {
        sqlx::query(&format!("{COLUMNS} ORDER BY created_at DESC, id"))
            .fetch_all(&self.pool)
            .await
            .map_err(|source| Error::Query {
                context: "listing API tokens",
                source,
            })?
            .iter()
            .map(token_from_row)
            .collect()
    }
}

fn token_from_row(row: &AnyRow) -> Result<ApiToken> {
    const CONTEXT: &str = "reading an API token";
    let query = |source| Error::Query {
        context: CONTEXT,
        source,
    };
    let scopes: String = row.try_get("scopes").map_err(query)?;
    let revoked_at: Option<i64> = row.try_get("revoked_at").map_err(query)?;
    let groups: String = row.try_get("groups").map_err(query)?;
    let expires_at: Option<i64> = row.try_get("expires_at").map_err(query)?;
    Ok(ApiToken {
        id: uuid_column(row, "id", CONTEXT)?,
        name: row.try_get("name").map_err(query)?,
        token_hash: row.try_get("token_hash").map_err(query)?,
        scopes: json_column(&scopes, CONTEXT)?,
        created_at: timestamp(row.try_get("created_at").map_err(query)?, CONTEXT)?,
        revoked_at: revoked_at
            .map(|micros| timestamp(micros, CONTEXT))
            .transpose()?,
        subject: row.try_get("subject").map_err(query)?,
        groups: json_column(&groups, CONTEXT)?,
        created_by: row.try_get("created_by").map_err(query)?,
        expires_at: expires_at
            .map(|micros| timestamp(micros, CONTEXT))
            .transpose()?,
    })
}

impl TokenStore for Database {
    async fn create_token(&self, token: &ApiToken) -> deckhand_runtime::Result<()> {
        Ok(self.insert_token(token).await?)
    }

    async fn token_by_hash(&self, token_hash: &str) -> deckhand_runtime::Result<Option<ApiToken>> {
        Ok(self.find_token_by_hash(token_hash).await?)
    }

    async fn revoke_token(&self, id: uuid::Uuid) -> deckhand_runtime::Result<bool> {
        Ok(self.revoke_token_now(id).await?)
    }

    async fn tokens(&self) -> deckhand_runtime::Result<Vec<ApiToken>> {
        Ok(self.all_tokens().await?)
    }
}
