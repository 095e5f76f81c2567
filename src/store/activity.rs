//! What each subscription was last sent and how it last answered (see migration
//! 20261203000001): written in bulk by the batchers, read beside subscriptions.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::{WebhookId, uuids};
use crate::error::Result;

/// A subscription's last answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastResponse {
    /// When the attempt started.
    pub time: DateTime<Utc>,
    /// Its HTTP status; `None` when no answer arrived.
    pub code: Option<i32>,
    /// The status's reason ("OK", "Service Unavailable") or why no answer came.
    pub message: String,
}

/// What one subscription was last sent, and its last answer.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    /// Per event type, when the newest event of it sent was published; newest first.
    pub triggers: Vec<(String, DateTime<Utc>)>,
    /// The last answer, if it was ever attempted.
    pub last_response: Option<LastResponse>,
}

/// One row to write: a trigger of `event_type` at `trigger_time` (`''` with a response).
#[derive(Debug, Clone)]
pub struct Noted {
    /// The subscription.
    pub webhook: WebhookId,
    /// The event type; `''` for the subscription-wide row (with the response).
    pub event_type: &'static str,
    /// The newest event's publish time.
    pub trigger_time: DateTime<Utc>,
    /// The last answer (the `''` row only).
    pub response: Option<LastResponse>,
}

/// Writes `noted`, the newest of each row winning (rows of subscriptions deleted meanwhile
/// are skipped). Rows are written in key order, so that two batchers' writes never wait on
/// each other in a cycle.
///
/// # Errors
/// Database errors.
pub async fn record(conn: &mut PgConnection, mut noted: Vec<Noted>) -> Result<()> {
    if noted.is_empty() {
        return Ok(());
    }
    noted.sort_by(|a, b| (a.webhook.0, a.event_type).cmp(&(b.webhook.0, b.event_type)));
    let ids: Vec<WebhookId> = noted.iter().map(|n| n.webhook).collect();
    let types: Vec<&str> = noted.iter().map(|n| n.event_type).collect();
    let triggers: Vec<DateTime<Utc>> = noted.iter().map(|n| n.trigger_time).collect();
    let responses = noted.iter().map(|n| n.response.as_ref());
    let times: Vec<Option<DateTime<Utc>>> = responses.clone().map(|r| r.map(|r| r.time)).collect();
    let codes: Vec<Option<i32>> = responses.clone().map(|r| r.and_then(|r| r.code)).collect();
    let messages: Vec<Option<&str>> = responses.map(|r| r.map(|r| r.message.as_str())).collect();
    sqlx::query!(
        r#"
        INSERT INTO subscription_activity AS a
            (webhook_id, event_type, last_trigger_time, last_response_time, last_response_code,
             last_response_message)
        SELECT n.webhook_id, n.event_type, n.trigger_time, n.response_time, n.code, n.message
        FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::int[],
                    $6::text[])
             AS n(webhook_id, event_type, trigger_time, response_time, code, message)
        WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.id = n.webhook_id)
        ORDER BY n.webhook_id, n.event_type
        ON CONFLICT (webhook_id, event_type) DO UPDATE
        SET last_trigger_time = GREATEST(a.last_trigger_time, EXCLUDED.last_trigger_time),
            last_response_time = CASE WHEN a.last_response_time IS NULL
                                        OR EXCLUDED.last_response_time > a.last_response_time
                                      THEN EXCLUDED.last_response_time
                                      ELSE a.last_response_time END,
            last_response_code = CASE WHEN a.last_response_time IS NULL
                                        OR EXCLUDED.last_response_time > a.last_response_time
                                      THEN EXCLUDED.last_response_code
                                      ELSE a.last_response_code END,
            last_response_message = CASE WHEN a.last_response_time IS NULL
                                           OR EXCLUDED.last_response_time > a.last_response_time
                                         THEN EXCLUDED.last_response_message
                                         ELSE a.last_response_message END
        "#,
        &uuids(&ids),
        &types as &[&str],
        &triggers,
        &times as &[Option<DateTime<Utc>>],
        &codes as &[Option<i32>],
        &messages as &[Option<&str>],
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The activity of each of `webhooks` (those never attempted have none).
///
/// # Errors
/// Database errors.
pub async fn of(
    conn: &mut PgConnection,
    webhooks: &[WebhookId],
) -> Result<HashMap<WebhookId, Activity>> {
    let rows = sqlx::query!(
        r#"
        SELECT webhook_id, event_type, last_trigger_time, last_response_time, last_response_code,
               last_response_message
        FROM subscription_activity
        WHERE webhook_id = ANY ($1::uuid[])
        ORDER BY webhook_id, last_trigger_time DESC, event_type
        "#,
        &uuids(webhooks),
    )
    .fetch_all(conn)
    .await?;
    let mut activity: HashMap<WebhookId, Activity> = HashMap::new();
    for r in rows {
        let entry = activity.entry(WebhookId(r.webhook_id)).or_default();
        if r.event_type.is_empty() {
            entry.last_response = r.last_response_time.map(|time| LastResponse {
                time,
                code: r.last_response_code,
                message: r.last_response_message.unwrap_or_default(),
            });
        } else {
            entry.triggers.push((r.event_type, r.last_trigger_time));
        }
    }
    Ok(activity)
}
