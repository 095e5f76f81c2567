//! What GitHub's deliveries API reads (migration 20261205000002): a hook's attempts as
//! GitHub lists deliveries, each with the integer id GitHub clients use, given on first
//! listing.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::{DeliveryId, EventId, WebhookId};
use crate::error::Result;

/// One attempt as GitHub's `hook-delivery-item` shows it.
#[derive(Debug, Clone)]
pub struct HookAttempt {
    /// Its GitHub id.
    pub id: i64,
    /// The delivery it is an attempt of.
    pub delivery: DeliveryId,
    /// Its number in that delivery.
    pub number: i32,
    /// The event (GitHub's `guid`).
    pub event: EventId,
    /// The event's type (`push`, `ping`, ...).
    pub event_type: String,
    /// The event's `action`, if its payload has one.
    pub action: Option<String>,
    /// When it started.
    pub start_time: DateTime<Utc>,
    /// How long it took.
    pub duration_ms: i32,
    /// The answer's status, if one came.
    pub http_status: Option<i32>,
    /// Why none came.
    pub error: Option<String>,
    /// Made after a redelivery.
    pub redelivery: bool,
}

/// Up to `limit` attempts of `webhook`'s deliveries, newest delivery first and its attempts
/// newest first, after the one GitHub id `after` names; only answered 2xx-3xx
/// (`success: Some(true)`) or the others (`Some(false)`). Attempts not listed before are
/// given their ids here.
///
/// # Errors
/// Database errors.
pub async fn attempts(
    conn: &mut PgConnection,
    webhook: WebhookId,
    after: Option<i64>,
    success: Option<bool>,
    limit: i64,
) -> Result<Vec<HookAttempt>> {
    // Two listings giving the same attempts ids at once: the second finds them taken and
    // reads them on a second try.
    for _ in 0..2 {
        let rows = sqlx::query!(
            r#"
            WITH page AS (
                SELECT d.id AS delivery_id, a.number, d.create_time, d.event_id,
                       d.schedule_start, a.start_time, a.duration_ms, a.http_status, a.error
                FROM deliveries d
                JOIN delivery_attempts a ON a.delivery_id = d.id
                WHERE d.webhook_id = $1
                  AND ($2::bigint IS NULL OR (d.create_time, d.id, a.number) < (
                      SELECT c.create_time, g.delivery_id, g.number
                      FROM github_delivery_ids g JOIN deliveries c ON c.id = g.delivery_id
                      WHERE g.id = $2))
                  AND ($3::bool IS NULL
                       OR COALESCE(a.http_status BETWEEN 200 AND 399, false) = $3)
                ORDER BY d.create_time DESC, d.id DESC, a.number DESC
                LIMIT $4
            ), given AS (
                INSERT INTO github_delivery_ids (delivery_id, number)
                SELECT delivery_id, number FROM page
                ON CONFLICT (delivery_id, number) DO NOTHING
                RETURNING id, delivery_id, number
            )
            SELECT COALESCE(n.id, g.id) AS id, p.delivery_id AS "delivery_id!",
                   p.number AS "number!", p.event_id AS "event_id!",
                   COALESCE(e.event_type, 'repository.push') AS "event_type!",
                   CASE WHEN e.family = 'github' AND e.payload <> ''
                        THEN convert_from(e.payload, 'UTF8')::jsonb ->> 'action' END AS action,
                   p.start_time AS "start_time!", p.duration_ms AS "duration_ms!",
                   p.http_status, p.error,
                   (p.schedule_start > 0 AND p.number > p.schedule_start) AS "redelivery!"
            FROM page p
            JOIN events e ON e.id = p.event_id
            LEFT JOIN given n ON n.delivery_id = p.delivery_id AND n.number = p.number
            LEFT JOIN github_delivery_ids g
                   ON g.delivery_id = p.delivery_id AND g.number = p.number
            ORDER BY p.create_time DESC, p.delivery_id DESC, p.number DESC
            "#,
            webhook.0,
            after,
            success,
            limit,
        )
        .fetch_all(&mut *conn)
        .await?;
        if rows.iter().any(|r| r.id.is_none()) {
            continue;
        }
        return Ok(rows
            .into_iter()
            .map(|r| HookAttempt {
                id: r.id.unwrap_or_default(),
                delivery: DeliveryId(r.delivery_id),
                number: r.number,
                event: EventId(r.event_id),
                event_type: r.event_type,
                action: r.action,
                start_time: r.start_time,
                duration_ms: r.duration_ms,
                http_status: r.http_status,
                error: r.error,
                redelivery: r.redelivery,
            })
            .collect());
    }
    Err(crate::error::Error::Internal(anyhow::anyhow!(
        "GitHub delivery ids were being given by another listing twice in a row"
    )))
}

/// The delivery and attempt number GitHub id `id` names, if it is an attempt of `webhook`.
///
/// # Errors
/// Database errors.
pub async fn attempt_of(
    conn: &mut PgConnection,
    webhook: WebhookId,
    id: i64,
) -> Result<Option<(DeliveryId, i32, bool)>> {
    let row = sqlx::query!(
        r#"
        SELECT g.delivery_id, g.number,
               (d.schedule_start > 0 AND g.number > d.schedule_start) AS "redelivery!"
        FROM github_delivery_ids g JOIN deliveries d ON d.id = g.delivery_id
        WHERE g.id = $1 AND d.webhook_id = $2
        "#,
        id,
        webhook.0,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| (DeliveryId(r.delivery_id), r.number, r.redelivery)))
}
