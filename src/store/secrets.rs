//! Signing secrets, sealed (see `secret_box`): the current one per webhook, plus rotated-out
//! ones until they expire.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::WebhookId;
use crate::error::Result;

/// Stores `sealed` as the webhook's current secret.
pub async fn insert(conn: &mut PgConnection, webhook: WebhookId, sealed: &[u8]) -> Result<()> {
    sqlx::query!(
        r#"INSERT INTO webhook_secrets (webhook_id, secret) VALUES ($1, $2)"#,
        webhook.0,
        sealed,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The webhook's current sealed secret.
pub async fn current(conn: &mut PgConnection, webhook: WebhookId) -> Result<Option<Vec<u8>>> {
    let secret = sqlx::query_scalar!(
        r#"SELECT secret FROM webhook_secrets WHERE webhook_id = $1 AND expire_time IS NULL"#,
        webhook.0,
    )
    .fetch_optional(conn)
    .await?;
    Ok(secret)
}

/// Makes `sealed` the current secret; the previous one keeps signing for `overlap_secs`.
/// Returns when the previous one expires. Runs in its own transaction (or savepoint).
pub async fn rotate(
    conn: &mut PgConnection,
    webhook: WebhookId,
    sealed: &[u8],
    overlap_secs: f64,
) -> Result<DateTime<Utc>> {
    use sqlx::Acquire as _;
    let mut tx = conn.begin().await?;
    let expire_time = sqlx::query_scalar!(
        r#"
        UPDATE webhook_secrets
        SET expire_time = now() + make_interval(secs => $2)
        WHERE webhook_id = $1 AND expire_time IS NULL
        RETURNING expire_time AS "expire_time!"
        "#,
        webhook.0,
        overlap_secs,
    )
    .fetch_one(&mut *tx)
    .await?;
    insert(&mut tx, webhook, sealed).await?;
    tx.commit().await?;
    Ok(expire_time)
}
