//! Deliveries: claimed with a lease by the batcher, recorded attempt by attempt under that
//! lease, listed and replayed through the delivery log.
//!
//! Invariant: no transaction is open while a delivery is attempted. A claim commits before
//! the HTTP request; the outcome is recorded in its own short statement that only succeeds
//! while the recorder still holds the lease. A claimant that dies leaves a lease that
//! expires, after which any batcher may claim the delivery again.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{
    AttemptRecord, ClaimedDelivery, Delivery, DeliveryState, PageCursor, Verdict, WebhookId,
};
use crate::error::{Error, Result};

/// Claims up to `limit` due deliveries of active webhooks for `worker`, for `lease_secs`.
/// `FOR UPDATE SKIP LOCKED` lets concurrent batchers claim disjoint sets.
pub async fn claim(
    conn: &mut PgConnection,
    worker: Uuid,
    limit: i64,
    lease_secs: f64,
) -> Result<Vec<ClaimedDelivery>> {
    let rows = sqlx::query!(
        r#"
        WITH claimed AS (
            UPDATE deliveries d
            SET lease_owner = $1, lease_expire_time = now() + make_interval(secs => $3)
            WHERE d.id IN (
                SELECT d2.id
                FROM deliveries d2
                JOIN webhooks w ON w.id = d2.webhook_id
                WHERE d2.state = 'pending'
                  AND d2.next_attempt_time <= now()
                  AND (d2.lease_expire_time IS NULL OR d2.lease_expire_time < now())
                  AND w.state = 'active'
                ORDER BY d2.next_attempt_time
                LIMIT $2
                FOR UPDATE OF d2 SKIP LOCKED
            )
            RETURNING d.id, d.event_id, d.webhook_id, d.attempt_count, d.next_attempt_time
        )
        SELECT c.id, c.webhook_id, c.attempt_count, e.payload, w.callback_url,
               ARRAY(
                   SELECT s.secret FROM webhook_secrets s
                   WHERE s.webhook_id = c.webhook_id AND (s.expire_time IS NULL OR s.expire_time > now())
                   ORDER BY s.create_time DESC
               ) AS "sealed_secrets!"
        FROM claimed c
        JOIN events e ON e.id = c.event_id
        JOIN webhooks w ON w.id = c.webhook_id
        ORDER BY c.next_attempt_time
        "#,
        worker,
        limit,
        lease_secs,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ClaimedDelivery {
            id: r.id,
            webhook_id: WebhookId(r.webhook_id),
            attempt_count: r.attempt_count,
            payload: r.payload,
            callback_url: r.callback_url,
            sealed_secrets: r.sealed_secrets,
        })
        .collect())
}

/// Records an attempt and applies its verdict, if `worker` still holds the lease. Returns
/// false when it does not (the lease expired and another batcher took over, or the webhook
/// was deleted): the other holder's record is the one that counts.
pub async fn record_attempt(
    conn: &mut PgConnection,
    delivery: Uuid,
    worker: Uuid,
    attempt: &AttemptRecord,
    verdict: &Verdict,
) -> Result<bool> {
    use sqlx::Acquire as _;
    let (state, retry_in) = match verdict {
        Verdict::Delivered => (DeliveryState::Delivered, 0.0),
        Verdict::RetryIn(secs) => (DeliveryState::Pending, *secs),
        Verdict::Failed | Verdict::FailedAndDisable(_) => (DeliveryState::Failed, 0.0),
    };
    let mut tx = conn.begin().await?;
    let recorded = sqlx::query_scalar!(
        r#"
        WITH updated AS (
            UPDATE deliveries
            SET state = $3,
                attempt_count = attempt_count + 1,
                next_attempt_time = CASE WHEN $3 = 'pending'
                                         THEN now() + make_interval(secs => $4)
                                         ELSE next_attempt_time END,
                lease_owner = NULL,
                lease_expire_time = NULL,
                last_attempt_time = $5,
                last_http_status = $6
            WHERE id = $1 AND lease_owner = $2
            RETURNING id, attempt_count, webhook_id
        )
        INSERT INTO delivery_attempts
            (delivery_id, number, start_time, duration_ms, http_status, connect_code, response_body, error)
        SELECT id, attempt_count, $5, $7, $6, $8, $9, $10 FROM updated
        RETURNING (SELECT webhook_id FROM updated) AS "webhook_id!"
        "#,
        delivery,
        worker,
        state.as_str(),
        retry_in,
        attempt.start_time,
        attempt.http_status,
        attempt.duration_ms,
        attempt.connect_code.as_deref(),
        attempt.response_body.as_deref(),
        attempt.error.as_deref(),
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(webhook) = recorded else {
        return Ok(false);
    };
    if let Verdict::FailedAndDisable(reason) = verdict {
        sqlx::query!(
            r#"
            UPDATE webhooks
            SET state = 'disabled', disabled_reason = $2, disabled_time = now(), update_time = now()
            WHERE id = $1
            "#,
            webhook,
            reason,
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Gives back deliveries `worker` claimed but did not attempt (shutdown), so that another
/// batcher can take them at once instead of after the lease.
pub async fn release(conn: &mut PgConnection, worker: Uuid, deliveries: &[Uuid]) -> Result<u64> {
    let done = sqlx::query!(
        r#"
        UPDATE deliveries
        SET lease_owner = NULL, lease_expire_time = NULL
        WHERE id = ANY($1) AND lease_owner = $2
        "#,
        deliveries,
        worker,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The owner of the webhook a delivery belongs to, if the delivery exists.
pub async fn owner_of(conn: &mut PgConnection, delivery: Uuid) -> Result<Option<String>> {
    let owner = sqlx::query_scalar!(
        r#"
        SELECT w.owner_name
        FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
        WHERE d.id = $1
        "#,
        delivery,
    )
    .fetch_optional(conn)
    .await?;
    Ok(owner)
}

/// Up to `limit` of a webhook's deliveries after `after`, newest first.
pub async fn list(
    conn: &mut PgConnection,
    webhook: WebhookId,
    state: Option<DeliveryState>,
    after: Option<PageCursor>,
    limit: i64,
) -> Result<Vec<Delivery>> {
    let (after_time, after_id) = after.map(|c| (c.create_time, c.id)).unzip();
    let rows = sqlx::query!(
        r#"
        SELECT id, webhook_id, event_id, state, attempt_count, create_time, next_attempt_time,
               last_attempt_time, last_http_status
        FROM deliveries
        WHERE webhook_id = $1
          AND ($2::text IS NULL OR state = $2)
          AND ($3::timestamptz IS NULL OR (create_time, id) < ($3, $4::uuid))
        ORDER BY create_time DESC, id DESC
        LIMIT $5
        "#,
        webhook.0,
        state.map(DeliveryState::as_str),
        after_time,
        after_id,
        limit,
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Delivery {
                id: r.id,
                webhook_id: WebhookId(r.webhook_id),
                event_id: r.event_id,
                state: parse_state(&r.state)?,
                attempt_count: r.attempt_count,
                create_time: r.create_time,
                next_attempt_time: r.next_attempt_time,
                last_attempt_time: r.last_attempt_time,
                last_http_status: r.last_http_status,
            })
        })
        .collect()
}

fn parse_state(text: &str) -> Result<DeliveryState> {
    DeliveryState::from_db(text)
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("unknown delivery state {text:?}")))
}

/// One delivery and its attempts, oldest first.
pub async fn get(
    conn: &mut PgConnection,
    delivery: Uuid,
) -> Result<Option<(Delivery, Vec<AttemptRecord>)>> {
    let Some(found) = fetch(conn, delivery).await? else {
        return Ok(None);
    };
    let attempts = sqlx::query!(
        r#"
        SELECT start_time, duration_ms, http_status, connect_code, response_body, error
        FROM delivery_attempts
        WHERE delivery_id = $1
        ORDER BY number
        "#,
        delivery,
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|r| AttemptRecord {
        start_time: r.start_time,
        duration_ms: r.duration_ms,
        http_status: r.http_status,
        connect_code: r.connect_code,
        response_body: r.response_body,
        error: r.error,
    })
    .collect();
    Ok(Some((found, attempts)))
}

async fn fetch(conn: &mut PgConnection, delivery: Uuid) -> Result<Option<Delivery>> {
    let row = sqlx::query!(
        r#"
        SELECT id, webhook_id, event_id, state, attempt_count, create_time, next_attempt_time,
               last_attempt_time, last_http_status
        FROM deliveries
        WHERE id = $1
        "#,
        delivery,
    )
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(Delivery {
            id: r.id,
            webhook_id: WebhookId(r.webhook_id),
            event_id: r.event_id,
            state: parse_state(&r.state)?,
            attempt_count: r.attempt_count,
            create_time: r.create_time,
            next_attempt_time: r.next_attempt_time,
            last_attempt_time: r.last_attempt_time,
            last_http_status: r.last_http_status,
        })
    })
    .transpose()
}

/// Queues a delivery again, due now, whatever its state. An attempt already in flight
/// keeps its lease and is still recorded.
pub async fn redeliver(conn: &mut PgConnection, delivery: Uuid) -> Result<Option<Delivery>> {
    let updated = sqlx::query_scalar!(
        r#"
        UPDATE deliveries
        SET state = 'pending', next_attempt_time = now()
        WHERE id = $1
        RETURNING id
        "#,
        delivery,
    )
    .fetch_optional(&mut *conn)
    .await?;
    match updated {
        Some(_) => fetch(conn, delivery).await,
        None => Ok(None),
    }
}

/// How many deliveries are pending (for the default-cadence checks and the benchmarks).
pub async fn count_pending(conn: &mut PgConnection) -> Result<i64> {
    let n =
        sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM deliveries WHERE state = 'pending'"#)
            .fetch_one(conn)
            .await?;
    Ok(n)
}
