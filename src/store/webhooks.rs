//! Webhook subscriptions: create (with the per-repository cap), list a page, delete.

use sqlx::{Acquire as _, PgConnection};
use uuid::Uuid;

use super::is_unique_violation;
use crate::domain::{NewWebhook, PageCursor, TokenScope, Webhook, WebhookId};
use crate::error::{Error, Result};

/// Stores a new subscription with its first (sealed) signing secret, enforcing uniqueness of
/// (owner, repository, event, URL) and at most `max_per_repository` per repository.
///
/// The cap is checked under a transaction-scoped advisory lock on the repository, so two
/// concurrent creates cannot both take the last slot; a failed check rolls everything back.
///
/// # Errors
/// `AlreadyExists`, `ResourceExhausted`, or a database error.
pub async fn insert(
    conn: &mut PgConnection,
    new: &NewWebhook,
    max_per_repository: i64,
    sealed_secret: &[u8],
) -> Result<Webhook> {
    let mut tx = conn.begin().await?;
    let (owner, repository) = (new.owner.as_str(), new.repository.as_str());
    sqlx::query!(
        r#"SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))"#,
        owner,
        repository,
    )
    .execute(&mut *tx)
    .await?;
    let id = WebhookId::generate();
    let row = sqlx::query!(
        r#"
        INSERT INTO webhooks (id, owner_name, repository_name, event, callback_url, create_time, update_time)
        VALUES ($1, $2, $3, $4, $5, now(), now())
        RETURNING create_time, update_time
        "#,
        id.0,
        owner,
        repository,
        new.event.number(),
        new.callback_url.as_str(),
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e, "webhooks_subscription_key") {
            Error::AlreadyExists(format!(
                "{owner}/{repository} already has a webhook for this event and callback_url"
            ))
        } else {
            e.into()
        }
    })?;
    let count = sqlx::query_scalar!(
        r#"
        SELECT count(*) AS "count!"
        FROM webhooks
        WHERE owner_name = $1 AND repository_name = $2
        "#,
        owner,
        repository,
    )
    .fetch_one(&mut *tx)
    .await?;
    if count > max_per_repository {
        return Err(Error::ResourceExhausted(format!(
            "{owner}/{repository} already has {max_per_repository} webhooks, the most allowed \
             (--max-webhooks-per-repository); delete one first"
        )));
    }
    super::secrets::insert(&mut tx, id, sealed_secret).await?;
    tx.commit().await?;
    Ok(Webhook {
        id,
        owner: owner.to_owned(),
        repository: repository.to_owned(),
        event: new.event.number(),
        callback_url: new.callback_url.as_str().to_owned(),
        create_time: row.create_time,
        update_time: row.update_time,
    })
}

/// Up to `limit` subscriptions of one repository after `after`, in (create_time, id) order.
pub async fn list_page(
    conn: &mut PgConnection,
    owner: &str,
    repository: &str,
    after: Option<PageCursor>,
    limit: i64,
) -> Result<Vec<Webhook>> {
    let (after_time, after_id) = match after {
        Some(c) => (Some(c.create_time), Some(c.id)),
        None => (None, None),
    };
    let rows = sqlx::query!(
        r#"
        SELECT id, owner_name, repository_name, event, callback_url, create_time, update_time
        FROM webhooks
        WHERE owner_name = $1
          AND repository_name = $2
          AND ($3::timestamptz IS NULL OR (create_time, id) > ($3, $4::uuid))
        ORDER BY create_time, id
        LIMIT $5
        "#,
        owner,
        repository,
        after_time,
        after_id,
        limit,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Webhook {
            id: WebhookId(r.id),
            owner: r.owner_name,
            repository: r.repository_name,
            event: r.event,
            callback_url: r.callback_url,
            create_time: r.create_time,
            update_time: r.update_time,
        })
        .collect())
}

/// Deletes the subscription if it exists and `scope` covers its owner. Returns false
/// otherwise, without saying which: a caller must not learn of other owners' webhooks.
pub async fn delete(conn: &mut PgConnection, id: WebhookId, scope: &TokenScope) -> Result<bool> {
    let deleted: Option<Uuid> = sqlx::query_scalar!(
        r#"
        DELETE FROM webhooks
        WHERE id = $1 AND ($2 OR owner_name = ANY($3))
        RETURNING id
        "#,
        id.0,
        scope.all_owners,
        &scope.owners,
    )
    .fetch_optional(conn)
    .await?;
    Ok(deleted.is_some())
}

/// The owner of a webhook, if it exists.
pub async fn owner_of(conn: &mut PgConnection, id: WebhookId) -> Result<Option<String>> {
    let owner = sqlx::query_scalar!(r#"SELECT owner_name FROM webhooks WHERE id = $1"#, id.0)
        .fetch_optional(conn)
        .await?;
    Ok(owner)
}
