//! Signing secrets, sealed (see `secret_box`): the current one per webhook, plus the one it
//! replaced until that one's overlap ends (never more: a rotation deletes any older one).

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

/// Makes `sealed` the current secret; the previous one keeps signing for `overlap_secs`,
/// and any older one (still in its own overlap, or expired) is deleted: a webhook never has
/// more than two live secrets. Returns when the previous one expires, or `None` if the
/// webhook no longer exists. Runs in its own transaction (or savepoint), holding the
/// webhook row (FOR KEY SHARE) so that a concurrent DeleteWebhook waits for it and then
/// deletes the new secret too.
pub async fn rotate(
    conn: &mut PgConnection,
    webhook: WebhookId,
    sealed: &[u8],
    overlap_secs: f64,
) -> Result<Option<DateTime<Utc>>> {
    use sqlx::Acquire as _;
    let mut tx = conn.begin().await?;
    let Some(expire_time) = sqlx::query_scalar!(
        r#"
        WITH hook AS (SELECT id FROM webhooks WHERE id = $1 FOR KEY SHARE),
        ended AS (
            DELETE FROM webhook_secrets s
            USING hook
            WHERE s.webhook_id = hook.id AND s.expire_time IS NOT NULL
        )
        UPDATE webhook_secrets s
        SET expire_time = now() + make_interval(secs => $2)
        FROM hook
        WHERE s.webhook_id = hook.id AND s.expire_time IS NULL
        RETURNING s.expire_time AS "expire_time!"
        "#,
        webhook.0,
        overlap_secs,
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    insert(&mut tx, webhook, sealed).await?;
    tx.commit().await?;
    Ok(Some(expire_time))
}
