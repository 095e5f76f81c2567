//! Webhook subscriptions: create (with the per-repository cap), list a page, delete.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::is_unique_violation;
use crate::domain::{NewWebhook, PageCursor, TokenScope, Webhook, WebhookId};
use crate::error::{Error, Result};

/// The NOTIFY channel changes to repositories' webhooks are announced on, with
/// `owner/repository` lines as the payload (serve processes drop those repositories' cached
/// ListWebhooks pages when it fires). Whatever changes what ListWebhooks returns must
/// announce it ([`announce_changes`]).
pub const CHANGED_CHANNEL: &str = "webhookd_webhooks_changed";

/// Announces on [`CHANGED_CHANNEL`] that these repositories' (`owner/repository`) webhooks
/// changed, in as few notifications as fit PostgreSQL's payload limit.
///
/// A transaction that NOTIFYs holds a database-wide lock through its commit, so NOTIFY
/// inside CreateWebhook's own statement serialised every create's WAL flush (about 1,700
/// creates/s instead of 3,000 here): changes are announced after the commit instead, for
/// all concurrent requests at once (see `api::cache`), in a transaction whose commit does
/// not wait for a flush.
pub async fn announce_changes(conn: &mut PgConnection, repositories: &[String]) -> Result<()> {
    const MAX_PAYLOAD: usize = 7000;
    let mut payloads: Vec<String> = vec![];
    for repository in repositories {
        match payloads.last_mut() {
            Some(last) if last.len() + 1 + repository.len() <= MAX_PAYLOAD => {
                last.push('\n');
                last.push_str(repository);
            }
            _ => payloads.push(repository.clone()),
        }
    }
    // A notification is not durable data (nothing keeps it across a crash), so its commit
    // need not wait for a WAL flush: with synchronous_commit off for this one transaction
    // it is delivered at commit without one.
    sqlx::query!(
        r#"
        SELECT set_config('synchronous_commit', 'off', true) AS "off!",
               (SELECT count(*) FROM (SELECT pg_notify($1, p) FROM UNNEST($2::text[]) AS p) AS n) AS "sent!"
        "#,
        CHANGED_CHANNEL,
        &payloads,
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}

/// How many webhooks CreateWebhook allows (`--max-webhooks-per-repository`,
/// `--max-webhooks-per-owner`).
#[derive(Debug, Clone, Copy)]
pub struct WebhookLimits {
    /// The most webhooks one repository has.
    pub per_repository: u32,
    /// The most webhooks one owner has, over all its repositories.
    pub per_owner: u32,
}

/// Stores a new subscription `id` with its first signing secret (sealed for `id`), enforcing
/// uniqueness of (owner, repository, event, URL) and `limits`.
///
/// One statement, so one round trip and nothing half-written: it takes a slot in the
/// repository's count (a conditional upsert whose row lock serialises concurrent creates in
/// that repository, so two cannot both take the last slot) if the owner has room, then
/// inserts the webhook and its secret only if it got one. The owner's count takes no lock
/// (one row per owner, locked by every create, would serialise an owner's creates in
/// different repositories on each one's commit): far from its limit, the folded count of
/// [`super::owner_counts`] (a second or so behind) says there is room; within
/// [`owner_margin`] of it, the owner's repository counts are summed. So creates in
/// different repositories of an owner at its limit, at the same moment, may together pass
/// it by at most their number less one.
///
/// # Errors
/// `AlreadyExists`, `ResourceExhausted`, or a database error.
pub async fn insert(
    conn: &mut PgConnection,
    id: WebhookId,
    new: &NewWebhook,
    limits: WebhookLimits,
    sealed_secret: &[u8],
) -> Result<Webhook> {
    let Some(created) = insert_row(conn, id, new, limits, sealed_secret).await? else {
        // A duplicate is the more useful answer than a limit.
        if exists(conn, new).await? {
            return Err(already_exists(new));
        }
        let (owner, repository) = (new.owner.as_str(), new.repository.as_str());
        return Err(at_limit(conn, owner, repository, limits).await?);
    };
    Ok(Webhook {
        id,
        owner: new.owner.as_str().to_owned(),
        repository: new.repository.as_str().to_owned(),
        event: new.event.number(),
        callback_url: new.callback_url.as_str().to_owned(),
        create_time: created.create_time,
        update_time: created.update_time,
    })
}

/// When a webhook was created and last changed.
struct Times {
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

/// [`insert`]'s statement; `None` when the repository or the owner has no slot left.
async fn insert_row(
    conn: &mut PgConnection,
    id: WebhookId,
    new: &NewWebhook,
    limits: WebhookLimits,
    sealed_secret: &[u8],
) -> Result<Option<Times>> {
    sqlx::query_as!(
        Times,
        r#"
        WITH owner_room AS (
            SELECT CASE
                WHEN COALESCE((SELECT o.webhooks FROM owner_counts o WHERE o.owner_name = $2), 0)
                     + $9 < $8 THEN true
                ELSE (SELECT COALESCE(sum(c.webhooks), 0) FROM repository_webhook_counts c
                      WHERE c.owner_name = $2) < $8
            END AS ok
        ), slot AS (
            INSERT INTO repository_webhook_counts AS c (owner_name, repository_name, webhooks)
            SELECT $2, $3, 1 FROM owner_room WHERE ok
            ON CONFLICT (owner_name, repository_name)
                DO UPDATE SET webhooks = c.webhooks + 1 WHERE c.webhooks < $6
            RETURNING webhooks
        ), created AS (
            INSERT INTO webhooks (id, owner_name, repository_name, event, callback_url, create_time, update_time)
            SELECT $1, $2, $3, $4, $5, now(), now() FROM slot
            RETURNING id, create_time, update_time
        ), secret AS (
            INSERT INTO webhook_secrets (webhook_id, secret)
            SELECT id, $7 FROM created
        ), counted AS (
            INSERT INTO owner_count_changes (owner_name, webhooks)
            SELECT $2, 1 FROM created
        )
        SELECT create_time, update_time FROM created
        "#,
        id.0,
        new.owner.as_str(),
        new.repository.as_str(),
        new.event.number(),
        new.callback_url.as_str(),
        sql_int(limits.per_repository),
        sealed_secret,
        i64::from(limits.per_owner),
        owner_margin(limits.per_owner),
    )
    .fetch_optional(conn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e, "webhooks_subscription_key") {
            already_exists(new)
        } else {
            e.into()
        }
    })
}

/// How near its `--max-webhooks-per-owner` an owner's folded count may come before
/// CreateWebhook sums its repositories instead: half the limit (and 100 more), far more
/// than an owner creates in the second or so the folded count trails by, unless it creates
/// over half its limit in that second.
pub(super) fn owner_margin(per_owner: u32) -> i64 {
    i64::from(per_owner / 2) + 100
}

/// `n` as an SQL integer.
pub(super) fn sql_int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Why a create in `owner`'s `repository` (`''` for all of them) found no slot: whichever
/// limit the repository or its owner is at.
pub(super) async fn at_limit(
    conn: &mut PgConnection,
    owner: &str,
    repository: &str,
    limits: WebhookLimits,
) -> Result<Error> {
    let counts = sqlx::query!(
        r#"
        SELECT COALESCE(sum(webhooks), 0) AS "owner!"
        FROM repository_webhook_counts
        WHERE owner_name = $1
        "#,
        owner,
    )
    .fetch_one(conn)
    .await?;
    let message = if counts.owner >= i64::from(limits.per_owner) {
        format!(
            "{owner} already has {} webhooks; {} is the most allowed \
             (--max-webhooks-per-owner); delete one first",
            counts.owner, limits.per_owner
        )
    } else if repository.is_empty() {
        format!(
            "{owner} already has {} subscriptions to all its repositories, the most allowed \
             (--max-webhooks-per-repository); delete one first",
            limits.per_repository
        )
    } else {
        format!(
            "{owner}/{repository} already has {} webhooks, the most allowed \
             (--max-webhooks-per-repository); delete one first",
            limits.per_repository
        )
    };
    Ok(Error::ResourceExhausted(message))
}

fn already_exists(new: &NewWebhook) -> Error {
    Error::AlreadyExists(format!(
        "{}/{} already has a webhook for this event and callback_url",
        new.owner, new.repository
    ))
}

/// Whether this exact subscription exists.
async fn exists(conn: &mut PgConnection, new: &NewWebhook) -> Result<bool> {
    let found = sqlx::query_scalar!(
        r#"
        SELECT EXISTS (
            SELECT 1 FROM webhooks
            WHERE owner_name = $1 AND repository_name = $2 AND event = $3 AND callback_url = $4
              AND face = 'bsr'
        ) AS "exists!"
        "#,
        new.owner.as_str(),
        new.repository.as_str(),
        new.event.number(),
        new.callback_url.as_str(),
    )
    .fetch_one(conn)
    .await?;
    Ok(found)
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
          AND face = 'bsr'
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

/// Deletes the subscription if it exists and `scope` covers its owner, with its secrets,
/// its deliveries and their attempts, in one transaction; returns its owner and
/// repository. `None` otherwise, without saying which: a caller must not learn of other
/// owners' webhooks.
///
/// The statements run in this order on purpose (there are no foreign keys to cascade, see
/// migrations 6 and 7): deleting the webhook row waits for any publish or rotation that
/// locked it, so the later statements, with newer snapshots, see what those wrote; deleting
/// the deliveries waits in turn for any recorder updating one of them, so the attempts
/// statement sees what that recorder inserted.
pub async fn delete(
    conn: &mut PgConnection,
    id: WebhookId,
    scope: &TokenScope,
) -> Result<Option<(String, String)>> {
    use sqlx::Acquire as _;
    let mut tx = conn.begin().await?;
    let Some(deleted) = sqlx::query!(
        r#"
        WITH deleted AS (
            -- The configuration file's webhooks go only when their table does.
            DELETE FROM webhooks
            WHERE id = $1 AND ($2 OR owner_name = ANY($3)) AND face <> 'file'
            RETURNING id, owner_name, repository_name
        ), counted AS (
            UPDATE repository_webhook_counts c
            SET webhooks = c.webhooks - 1
            FROM deleted d
            WHERE c.owner_name = d.owner_name AND c.repository_name = d.repository_name
        )
        SELECT owner_name AS "owner_name!", repository_name AS "repository_name!" FROM deleted
        "#,
        id.0,
        scope.all_owners,
        &scope.owners,
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    sqlx::query!(r#"DELETE FROM webhook_secrets WHERE webhook_id = $1"#, id.0)
        .execute(&mut *tx)
        .await?;
    // The webhook and its pending deliveries leave the owner's counts (see migration
    // 20261201000003).
    let deliveries: Vec<Uuid> = sqlx::query_scalar!(
        r#"
        WITH gone AS (
            DELETE FROM deliveries WHERE webhook_id = $1 RETURNING id, state
        ), counted AS (
            INSERT INTO owner_count_changes (owner_name, queued, webhooks)
            SELECT $2, -count(*) FILTER (WHERE state = 'pending'), -1 FROM gone
        )
        SELECT id AS "id!" FROM gone
        "#,
        id.0,
        deleted.owner_name,
    )
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query!(
        r#"
        WITH attempts AS (DELETE FROM delivery_attempts WHERE delivery_id = ANY($1))
        DELETE FROM harbor_execution_ids WHERE delivery_id = ANY($1)
        "#,
        &deliveries
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some((deleted.owner_name, deleted.repository_name)))
}

/// The first `limit` owners that have webhooks, sorted.
pub async fn owners(conn: &mut PgConnection, limit: i64) -> Result<Vec<String>> {
    let owners = sqlx::query_scalar!(
        r#"SELECT DISTINCT owner_name FROM webhooks ORDER BY owner_name LIMIT $1"#,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(owners)
}

/// The owner of a webhook, if it exists.
pub async fn owner_of(conn: &mut PgConnection, id: WebhookId) -> Result<Option<String>> {
    let owner = sqlx::query_scalar!(r#"SELECT owner_name FROM webhooks WHERE id = $1"#, id.0)
        .fetch_optional(conn)
        .await?;
    Ok(owner)
}

/// The owners of the webhooks of `ids` that exist, in one query.
pub async fn owners_of(
    conn: &mut PgConnection,
    ids: &[WebhookId],
) -> Result<std::collections::HashMap<WebhookId, String>> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
    let rows = sqlx::query!(
        r#"SELECT id, owner_name FROM webhooks WHERE id = ANY ($1::uuid[])"#,
        &ids
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (WebhookId(r.id), r.owner_name))
        .collect())
}
