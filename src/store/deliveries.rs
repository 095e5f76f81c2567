//! The delivery log: deliveries and their attempts as users read them, and redelivery.
//! (Claiming and recording, the batcher's side, are in [`super::queue`].)

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{
    AttemptRecord, Delivery, DeliveryId, DeliveryState, EventId, PageCursor, WebhookId,
};
use crate::error::{Error, Result};

/// The owner of the webhook a delivery belongs to, if the delivery exists.
pub async fn owner_of(conn: &mut PgConnection, delivery: DeliveryId) -> Result<Option<String>> {
    let owner = sqlx::query_scalar!(
        r#"
        SELECT w.owner_name
        FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
        WHERE d.id = $1
        "#,
        delivery.0,
    )
    .fetch_optional(conn)
    .await?;
    Ok(owner)
}

/// A `deliveries` row as the delivery log reads it.
struct DeliveryRow {
    id: Uuid,
    webhook_id: Uuid,
    event_id: Uuid,
    state: String,
    attempt_count: i32,
    create_time: DateTime<Utc>,
    next_attempt_time: DateTime<Utc>,
    last_attempt_time: Option<DateTime<Utc>>,
    last_http_status: Option<i32>,
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = Error;
    fn try_from(r: DeliveryRow) -> Result<Self> {
        let state = DeliveryState::from_db(&r.state).ok_or_else(|| {
            Error::Internal(anyhow::anyhow!("unknown delivery state {:?}", r.state))
        })?;
        Ok(Delivery {
            id: DeliveryId(r.id),
            webhook_id: WebhookId(r.webhook_id),
            event_id: EventId(r.event_id),
            state,
            attempt_count: r.attempt_count,
            create_time: r.create_time,
            next_attempt_time: r.next_attempt_time,
            last_attempt_time: r.last_attempt_time,
            last_http_status: r.last_http_status,
        })
    }
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
    let rows = sqlx::query_as!(
        DeliveryRow,
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
    rows.into_iter().map(Delivery::try_from).collect()
}

/// One delivery and up to `limit` of its attempts started after `after`, oldest first, each
/// with its number.
pub async fn get(
    conn: &mut PgConnection,
    delivery: DeliveryId,
    after: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<Option<(Delivery, Vec<(i32, AttemptRecord)>)>> {
    let Some(found) = fetch(conn, delivery).await? else {
        return Ok(None);
    };
    let attempts = sqlx::query!(
        r#"
        SELECT number, start_time, duration_ms, http_status, connect_code, response_body, error
        FROM delivery_attempts
        WHERE delivery_id = $1 AND ($2::timestamptz IS NULL OR start_time > $2)
        ORDER BY number
        LIMIT $3
        "#,
        delivery.0,
        after,
        limit,
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|r| {
        let record = AttemptRecord {
            start_time: r.start_time,
            duration_ms: r.duration_ms,
            http_status: r.http_status,
            connect_code: r.connect_code,
            response_body: r.response_body,
            error: r.error,
        };
        (r.number, record)
    })
    .collect();
    Ok(Some((found, attempts)))
}

async fn fetch(conn: &mut PgConnection, delivery: DeliveryId) -> Result<Option<Delivery>> {
    let row = sqlx::query_as!(
        DeliveryRow,
        r#"
        SELECT id, webhook_id, event_id, state, attempt_count, create_time, next_attempt_time,
               last_attempt_time, last_http_status
        FROM deliveries
        WHERE id = $1
        "#,
        delivery.0,
    )
    .fetch_optional(conn)
    .await?;
    row.map(Delivery::try_from).transpose()
}

/// What [`redeliver`] did.
#[derive(Debug)]
pub enum Redelivery {
    /// Queued again; the delivery as it now stands.
    Queued(Delivery),
    /// Its webhook is disabled (for this reason), so it would never be claimed: nothing
    /// changed.
    WebhookDisabled(Option<String>),
    /// No such delivery.
    NotFound,
}

/// Queues a delivery again, due now, whatever its state, with the whole retry schedule
/// ahead of it (its attempt numbers go on). An attempt already in flight keeps its lease
/// (and is recorded); the delivery is due again when that lease ends. Refused, changing
/// nothing, when its webhook is disabled.
pub async fn redeliver(conn: &mut PgConnection, delivery: DeliveryId) -> Result<Redelivery> {
    let found = sqlx::query!(
        r#"
        WITH target AS (
            SELECT d.id, d.state, w.owner_name, w.state AS webhook_state, w.disabled_reason
            FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
            WHERE d.id = $1
            FOR UPDATE OF d
        ), queued AS (
            UPDATE deliveries d
            SET state = 'pending',
                schedule_start = d.attempt_count,
                next_attempt_time = CASE WHEN d.lease_owner IS NOT NULL AND d.lease_expire_time > now()
                                         THEN d.next_attempt_time ELSE now() END
            FROM target t
            WHERE d.id = t.id AND t.webhook_state = 'active'
            RETURNING d.id
        ), counted AS (
            -- A finished delivery joins its owner's queued count again.
            INSERT INTO owner_count_changes (owner_name, queued)
            SELECT t.owner_name, 1 FROM target t
            WHERE t.state <> 'pending' AND EXISTS (SELECT 1 FROM queued)
        )
        SELECT t.webhook_state, t.disabled_reason
        FROM target t
        "#,
        delivery.0,
    )
    .fetch_optional(&mut *conn)
    .await?;
    match found {
        None => Ok(Redelivery::NotFound),
        Some(r) if r.webhook_state != "active" => {
            Ok(Redelivery::WebhookDisabled(r.disabled_reason))
        }
        Some(_) => match fetch(conn, delivery).await? {
            Some(queued) => Ok(Redelivery::Queued(queued)),
            None => Ok(Redelivery::NotFound),
        },
    }
}
