//! API tokens: stored by hash, looked up on every request, listed and revoked by the CLI.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{TokenHash, TokenScope};
use crate::error::Result;

/// A stored token, as `webhookd token list` shows it (never the token itself).
#[derive(Debug, Clone)]
pub struct TokenRecord {
    /// The token's id, used to revoke it.
    pub id: Uuid,
    /// What the token may manage.
    pub scope: TokenScope,
    /// When it was created.
    pub create_time: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoke_time: Option<DateTime<Utc>>,
}

/// Stores a new token's hash and scope; returns its id.
pub async fn insert(conn: &mut PgConnection, hash: TokenHash, scope: &TokenScope) -> Result<Uuid> {
    let id = Uuid::new_v4();
    sqlx::query!(
        r#"
        INSERT INTO api_tokens (id, token_hash, owners, all_owners)
        VALUES ($1, $2, $3, $4)
        "#,
        id,
        &hash.0[..],
        &scope.owners,
        scope.all_owners,
    )
    .execute(conn)
    .await?;
    Ok(id)
}

/// What the database knows of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A live token, and what it may do.
    Live(TokenScope),
    /// A token that was revoked.
    Revoked,
    /// No such token: it was never made (a random token is never made later).
    Unknown,
}

/// Looks a token up by its hash.
pub async fn find(conn: &mut PgConnection, hash: TokenHash) -> Result<Lookup> {
    let row = sqlx::query!(
        r#"
        SELECT owners, all_owners, revoke_time IS NOT NULL AS "revoked!"
        FROM api_tokens
        WHERE token_hash = $1
        "#,
        &hash.0[..],
    )
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        None => Lookup::Unknown,
        Some(r) if r.revoked => Lookup::Revoked,
        Some(r) => Lookup::Live(TokenScope {
            owners: r.owners,
            all_owners: r.all_owners,
        }),
    })
}

/// Every token, oldest first.
pub async fn list(conn: &mut PgConnection) -> Result<Vec<TokenRecord>> {
    let rows = sqlx::query!(
        r#"
        SELECT id, owners, all_owners, create_time, revoke_time
        FROM api_tokens
        ORDER BY create_time, id
        "#
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| TokenRecord {
            id: r.id,
            scope: TokenScope {
                owners: r.owners,
                all_owners: r.all_owners,
            },
            create_time: r.create_time,
            revoke_time: r.revoke_time,
        })
        .collect())
}

/// The NOTIFY channel a revocation is announced on (serve processes empty their token
/// caches when it fires).
pub const REVOKED_CHANNEL: &str = "webhookd_token_revoked";

/// Revokes a live token and announces it on [`REVOKED_CHANNEL`] in the same statement;
/// false when no live token has this id.
pub async fn revoke(conn: &mut PgConnection, id: Uuid) -> Result<bool> {
    let revoked = sqlx::query_scalar!(
        r#"
        WITH revoked AS (
            UPDATE api_tokens
            SET revoke_time = now()
            WHERE id = $1 AND revoke_time IS NULL
            RETURNING id
        )
        SELECT pg_notify($2, id::text) AS "notified!" FROM revoked
        "#,
        id,
        REVOKED_CHANNEL,
    )
    .fetch_optional(conn)
    .await?;
    Ok(revoked.is_some())
}
