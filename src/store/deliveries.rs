//! The delivery log: deliveries and their attempts as users read them, and redelivery.
//! (Claiming and recording, the batcher's side, are in [`super::queue`].)

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{
    AttemptRecord, BSR_PUSH, Delivery, DeliveryId, DeliveryState, EventId, PageCursor,
    RecordedRequest, WebhookId,
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
    event_type: Option<String>,
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
            event_type: r.event_type.unwrap_or_else(|| BSR_PUSH.to_owned()),
        })
    }
}

/// What [`list`] selects, besides the webhook.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only in this state.
    pub state: Option<DeliveryState>,
    /// Only of events of this type (`repository.push` for the BSR's).
    pub event_type: Option<String>,
    /// Only queued at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only queued before this time.
    pub until: Option<DateTime<Utc>>,
}

/// Up to `limit` of a webhook's deliveries after `after` that `filter` selects, newest
/// first.
pub async fn list(
    conn: &mut PgConnection,
    webhook: WebhookId,
    filter: &DeliveryFilter,
    after: Option<PageCursor>,
    limit: i64,
) -> Result<Vec<Delivery>> {
    let (after_time, after_id) = after.map(|c| (c.create_time, c.id)).unzip();
    // The BSR's events are stored without a type.
    let event_type = filter.event_type.as_deref().map(|t| (t == BSR_PUSH, t));
    let rows = sqlx::query_as!(
        DeliveryRow,
        r#"
        SELECT d.id, d.webhook_id, d.event_id, d.state, d.attempt_count, d.create_time,
               d.next_attempt_time, d.last_attempt_time, d.last_http_status, e.event_type
        FROM deliveries d JOIN events e ON e.id = d.event_id
        WHERE d.webhook_id = $1
          AND ($2::text IS NULL OR d.state = $2)
          AND ($3::timestamptz IS NULL OR (d.create_time, d.id) < ($3, $4::uuid))
          AND ($6::bool IS NULL OR (CASE WHEN $6 THEN e.event_type IS NULL
                                         ELSE e.event_type = $7 END))
          AND ($8::timestamptz IS NULL OR d.create_time >= $8)
          AND ($9::timestamptz IS NULL OR d.create_time < $9)
        ORDER BY d.create_time DESC, d.id DESC
        LIMIT $5
        "#,
        webhook.0,
        filter.state.map(DeliveryState::as_str),
        after_time,
        after_id,
        limit,
        event_type.map(|(bsr, _)| bsr),
        event_type.map(|(_, t)| t),
        filter.since,
        filter.until,
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Delivery::try_from).collect()
}

/// One delivery and up to `limit` of its attempts started after `after`, oldest first, each
/// with its number, and with request bodies of at most `body_cap` bytes.
pub async fn get(
    conn: &mut PgConnection,
    delivery: DeliveryId,
    after: Option<DateTime<Utc>>,
    limit: i64,
    body_cap: usize,
) -> Result<Option<(Delivery, Vec<(i32, AttemptRecord)>)>> {
    let Some(found) = fetch(conn, delivery).await? else {
        return Ok(None);
    };
    // A request body sent as the event's payload is read from the event (see migration
    // 20261203000001), cut as the recorder cuts the others.
    let attempts = sqlx::query!(
        r#"
        SELECT a.number, a.start_time, a.duration_ms, a.http_status, a.connect_code,
               a.response_body, a.error, a.request_headers, a.request_body_size,
               a.response_headers,
               CASE WHEN a.request_body IS NULL AND a.request_body_size IS NOT NULL
                    THEN (SELECT substring(e.payload FROM 1 FOR $4)
                          FROM deliveries d JOIN events e ON e.id = d.event_id
                          WHERE d.id = a.delivery_id)
                    ELSE a.request_body END AS request_body
        FROM delivery_attempts a
        WHERE a.delivery_id = $1 AND ($2::timestamptz IS NULL OR a.start_time > $2)
        ORDER BY a.number
        LIMIT $3
        "#,
        delivery.0,
        after,
        limit,
        i32::try_from(body_cap).unwrap_or(i32::MAX),
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|r| {
        let request = r.request_headers.map(|headers| RecordedRequest {
            headers,
            body: r.request_body,
            body_size: r.request_body_size.unwrap_or(0),
        });
        let record = AttemptRecord {
            start_time: r.start_time,
            duration_ms: r.duration_ms,
            http_status: r.http_status,
            connect_code: r.connect_code,
            response_body: r.response_body,
            error: r.error,
            request,
            response_headers: r.response_headers,
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
        SELECT d.id, d.webhook_id, d.event_id, d.state, d.attempt_count, d.create_time,
               d.next_attempt_time, d.last_attempt_time, d.last_http_status, e.event_type
        FROM deliveries d JOIN events e ON e.id = d.event_id
        WHERE d.id = $1
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

/// What [`recover`] did.
#[derive(Debug)]
pub enum Recovery {
    /// This many failed deliveries were queued again.
    Queued(i64),
    /// The webhook is not active (in this state, disabled for this reason): nothing changed.
    NotActive(String, Option<String>),
    /// No such webhook.
    NotFound,
}

/// Queues again every failed delivery of `webhook` queued in `[since, until)`, each as
/// [`redeliver`] would (due now, the whole retry schedule ahead of it), oldest first: their
/// due times are a microsecond apart in the order they were first queued, so claims take
/// them in that order. A delivery recovered (or redelivered) meanwhile is pending, not
/// failed, and is not queued twice. Refused, changing nothing, unless the webhook is active.
pub async fn recover(
    conn: &mut PgConnection,
    webhook: WebhookId,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Recovery> {
    let found = sqlx::query!(
        r#"
        WITH hook AS (
            SELECT id, owner_name, state, disabled_reason
            FROM webhooks
            WHERE id = $1
            FOR KEY SHARE
        ), chosen AS (
            -- By the webhook's delivery index: its deliveries queued in the window.
            SELECT d.id, row_number() OVER (ORDER BY d.create_time, d.id) AS n
            FROM deliveries d JOIN hook h ON h.id = d.webhook_id
            WHERE h.state = 'active' AND d.state = 'failed'
              AND d.create_time >= $2 AND d.create_time < $3
        ), queued AS (
            -- The state is checked again on the row updated: a concurrent recovery that
            -- queued it first leaves it pending, and it is skipped here.
            UPDATE deliveries d
            SET state = 'pending',
                schedule_start = d.attempt_count,
                next_attempt_time = now() + make_interval(secs => c.n / 1e6)
            FROM chosen c
            WHERE d.id = c.id AND d.state = 'failed'
            RETURNING d.id
        ), counted AS (
            -- They join their owner's queued count again.
            INSERT INTO owner_count_changes (owner_name, queued)
            SELECT h.owner_name, count(*)
            FROM hook h CROSS JOIN queued q
            GROUP BY h.owner_name
        )
        SELECT h.state, h.disabled_reason, (SELECT count(*) FROM queued) AS "queued!"
        FROM hook h
        "#,
        webhook.0,
        since,
        until,
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match found {
        None => Recovery::NotFound,
        Some(r) if r.state != "active" => Recovery::NotActive(r.state, r.disabled_reason),
        Some(r) => Recovery::Queued(r.queued),
    })
}

/// An attempt as the live tail shows it: its delivery as it now stands, without headers or
/// bodies.
#[derive(Debug, Clone)]
pub struct Tailed {
    /// The owner of the delivery's webhook.
    pub owner: String,
    /// The delivery.
    pub delivery: Delivery,
    /// The attempt's number.
    pub number: i32,
    /// The attempt (no request, headers or body).
    pub record: AttemptRecord,
}

/// The recorded attempts named by (delivery, number) of webhooks of `owners`, oldest first;
/// those gone since (their webhook deleted, or retention) are left out.
pub async fn tailed(
    conn: &mut PgConnection,
    attempts: &[(Uuid, i32)],
    owners: &[String],
) -> Result<Vec<Tailed>> {
    let (ids, numbers): (Vec<Uuid>, Vec<i32>) = attempts.iter().copied().unzip();
    let rows = sqlx::query!(
        r#"
        SELECT w.owner_name, d.id, d.webhook_id, d.event_id, d.state, d.attempt_count,
               d.create_time, d.next_attempt_time, d.last_attempt_time, d.last_http_status,
               e.event_type, a.number, a.start_time, a.duration_ms, a.http_status,
               a.connect_code, a.error
        FROM UNNEST($1::uuid[], $2::int[]) AS t(id, number)
        JOIN delivery_attempts a ON a.delivery_id = t.id AND a.number = t.number
        JOIN deliveries d ON d.id = t.id
        JOIN webhooks w ON w.id = d.webhook_id
        JOIN events e ON e.id = d.event_id
        WHERE w.owner_name = ANY ($3::text[])
        ORDER BY a.start_time, d.id, a.number
        "#,
        &ids,
        &numbers,
        owners,
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            let delivery = Delivery::try_from(DeliveryRow {
                id: r.id,
                webhook_id: r.webhook_id,
                event_id: r.event_id,
                state: r.state,
                attempt_count: r.attempt_count,
                create_time: r.create_time,
                next_attempt_time: r.next_attempt_time,
                last_attempt_time: r.last_attempt_time,
                last_http_status: r.last_http_status,
                event_type: r.event_type,
            })?;
            Ok(Tailed {
                owner: r.owner_name,
                delivery,
                number: r.number,
                record: AttemptRecord {
                    start_time: r.start_time,
                    duration_ms: r.duration_ms,
                    http_status: r.http_status,
                    connect_code: r.connect_code,
                    error: r.error,
                    ..AttemptRecord::default()
                },
            })
        })
        .collect()
}
