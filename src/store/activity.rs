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
    /// Its run of failed attempts, while every attempt since the last success failed.
    pub failing: Option<Failing>,
}

/// A subscription's run of failed attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failing {
    /// When its first failed attempt started.
    pub since: DateTime<Utc>,
    /// How many attempts of it failed.
    pub failures: i64,
}

/// The successes and failures of a subscription's attempts noted in one batcher since its
/// last write: the newest success, and the failures after it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    /// When the newest successful attempt started.
    pub last_success: Option<DateTime<Utc>>,
    /// Failed attempts since then...
    pub failures: i64,
    /// ...the first of them...
    pub first_failure: Option<DateTime<Utc>>,
    /// ...and the last.
    pub last_failure: Option<DateTime<Utc>>,
}

impl Health {
    /// Notes an attempt started at `time`. A success ends the failures before it; a
    /// failure older than the newest success is not counted (attempts of one batch are
    /// recorded in the order they finish, not the order they started).
    pub fn note(&mut self, time: DateTime<Utc>, succeeded: bool) {
        if self.last_success.is_some_and(|s| s >= time) {
            return;
        }
        if succeeded {
            *self = Self {
                last_success: Some(time),
                ..Self::default()
            };
        } else {
            self.failures += 1;
            self.first_failure = Some(self.first_failure.map_or(time, |t| t.min(time)));
            self.last_failure = Some(self.last_failure.map_or(time, |t| t.max(time)));
        }
    }
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
    /// The last answer, and the successes and failures since the last write (the `''` row
    /// only).
    pub response: Option<(LastResponse, Health)>,
}

/// Writes `noted`, the newest of each row winning (rows of subscriptions deleted meanwhile
/// are skipped), and extends or ends each subscription's run of failures: a success newer
/// than the stored one starts the run over from the failures noted after it; failures
/// newer than the stored success extend it. Rows are written in key order, so that two
/// batchers' writes never wait on each other in a cycle.
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
    let responses = noted.iter().map(|n| n.response.as_ref().map(|r| &r.0));
    let times: Vec<Option<DateTime<Utc>>> = responses.clone().map(|r| r.map(|r| r.time)).collect();
    let codes: Vec<Option<i32>> = responses.clone().map(|r| r.and_then(|r| r.code)).collect();
    let messages: Vec<Option<&str>> = responses.map(|r| r.map(|r| r.message.as_str())).collect();
    let health: Vec<Health> = noted
        .iter()
        .map(|n| n.response.as_ref().map(|r| r.1).unwrap_or_default())
        .collect();
    let successes: Vec<Option<DateTime<Utc>>> = health.iter().map(|h| h.last_success).collect();
    let failures: Vec<i64> = health.iter().map(|h| h.failures).collect();
    let first_failures: Vec<Option<DateTime<Utc>>> =
        health.iter().map(|h| h.first_failure).collect();
    let last_failures: Vec<Option<DateTime<Utc>>> = health.iter().map(|h| h.last_failure).collect();
    sqlx::query!(
        r#"
        INSERT INTO subscription_activity AS a
            (webhook_id, event_type, last_trigger_time, last_response_time, last_response_code,
             last_response_message, last_success_time, failures, failing_since,
             last_failure_time)
        SELECT n.webhook_id, n.event_type, n.trigger_time, n.response_time, n.code, n.message,
               n.success_time, n.failures, n.first_failure, n.last_failure
        FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::int[],
                    $6::text[], $7::timestamptz[], $8::bigint[], $9::timestamptz[],
                    $10::timestamptz[])
             AS n(webhook_id, event_type, trigger_time, response_time, code, message,
                  success_time, failures, first_failure, last_failure)
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
                                         ELSE a.last_response_message END,
            last_success_time = GREATEST(a.last_success_time, EXCLUDED.last_success_time),
            last_failure_time = GREATEST(a.last_failure_time, EXCLUDED.last_failure_time),
            -- A newer success: the run starts over from what followed it. Else failures
            -- newer than the stored success extend the run.
            failures = CASE
                WHEN EXCLUDED.last_success_time > COALESCE(a.last_success_time, '-infinity')
                    THEN EXCLUDED.failures
                WHEN EXCLUDED.last_failure_time > COALESCE(a.last_success_time, '-infinity')
                    THEN a.failures + EXCLUDED.failures
                ELSE a.failures END,
            failing_since = CASE
                WHEN EXCLUDED.last_success_time > COALESCE(a.last_success_time, '-infinity')
                    THEN EXCLUDED.failing_since
                WHEN EXCLUDED.last_failure_time > COALESCE(a.last_success_time, '-infinity')
                    THEN COALESCE(a.failing_since, EXCLUDED.failing_since)
                ELSE a.failing_since END,
            failing_announced = CASE
                WHEN EXCLUDED.last_success_time > COALESCE(a.last_success_time, '-infinity')
                    THEN false
                ELSE a.failing_announced END
        "#,
        &uuids(&ids),
        &types as &[&str],
        &triggers,
        &times as &[Option<DateTime<Utc>>],
        &codes as &[Option<i32>],
        &messages as &[Option<&str>],
        &successes as &[Option<DateTime<Utc>>],
        &failures,
        &first_failures as &[Option<DateTime<Utc>>],
        &last_failures as &[Option<DateTime<Utc>>],
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
               last_response_message, failing_since, failures
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
            entry.failing = r.failing_since.map(|since| Failing {
                since,
                failures: r.failures,
            });
        } else {
            entry.triggers.push((r.event_type, r.last_trigger_time));
        }
    }
    Ok(activity)
}

/// One subscription's attempts in one hour, as noted since the last write, or as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourTally {
    /// Attempts started in the hour.
    pub attempts: i64,
    /// Those answered 2xx.
    pub successes: i64,
    /// Their durations' sum, in milliseconds.
    pub duration_ms_sum: i64,
    /// The longest, in milliseconds.
    pub duration_ms_max: i32,
}

impl HourTally {
    /// Counts an attempt of `duration_ms`.
    pub fn note(&mut self, duration_ms: i32, succeeded: bool) {
        self.attempts += 1;
        self.successes += i64::from(succeeded);
        self.duration_ms_sum += i64::from(duration_ms.max(0));
        self.duration_ms_max = self.duration_ms_max.max(duration_ms);
    }
}

/// Adds `hours` (subscription, start of the hour, tally) to the stored hours, in key order
/// (as [`record`]), skipping subscriptions deleted meanwhile, and drops the written
/// subscriptions' hours older than a day.
///
/// # Errors
/// Database errors.
pub async fn record_hours(
    conn: &mut PgConnection,
    mut hours: Vec<(WebhookId, DateTime<Utc>, HourTally)>,
) -> Result<()> {
    if hours.is_empty() {
        return Ok(());
    }
    hours.sort_by_key(|(webhook, hour, _)| (webhook.0, *hour));
    let ids: Vec<WebhookId> = hours.iter().map(|h| h.0).collect();
    let starts: Vec<DateTime<Utc>> = hours.iter().map(|h| h.1).collect();
    let column = |f: fn(&HourTally) -> i64| hours.iter().map(|h| f(&h.2)).collect::<Vec<i64>>();
    let maxima: Vec<i32> = hours.iter().map(|h| h.2.duration_ms_max).collect();
    sqlx::query!(
        r#"
        WITH added AS (
            INSERT INTO subscription_hourly AS h
                (webhook_id, hour, attempts, successes, duration_ms_sum, duration_ms_max)
            SELECT n.webhook_id, n.hour, n.attempts, n.successes, n.sum, n.max
            FROM UNNEST($1::uuid[], $2::timestamptz[], $3::bigint[], $4::bigint[],
                        $5::bigint[], $6::int[])
                 AS n(webhook_id, hour, attempts, successes, sum, max)
            WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.id = n.webhook_id)
            ORDER BY n.webhook_id, n.hour
            ON CONFLICT (webhook_id, hour) DO UPDATE
            SET attempts = h.attempts + EXCLUDED.attempts,
                successes = h.successes + EXCLUDED.successes,
                duration_ms_sum = h.duration_ms_sum + EXCLUDED.duration_ms_sum,
                duration_ms_max = GREATEST(h.duration_ms_max, EXCLUDED.duration_ms_max)
        )
        DELETE FROM subscription_hourly
        WHERE webhook_id = ANY ($1::uuid[]) AND hour < now() - interval '25 hours'
        "#,
        &uuids(&ids),
        &starts,
        &column(|t| t.attempts),
        &column(|t| t.successes),
        &column(|t| t.duration_ms_sum),
        &maxima,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Each of `webhooks`' hours since `since`, oldest first.
///
/// # Errors
/// Database errors.
pub async fn hours_of(
    conn: &mut PgConnection,
    webhooks: &[WebhookId],
    since: DateTime<Utc>,
) -> Result<HashMap<WebhookId, Vec<(DateTime<Utc>, HourTally)>>> {
    let rows = sqlx::query!(
        r#"
        SELECT webhook_id, hour, attempts, successes, duration_ms_sum, duration_ms_max
        FROM subscription_hourly
        WHERE webhook_id = ANY ($1::uuid[]) AND hour >= $2
        ORDER BY webhook_id, hour
        "#,
        &uuids(webhooks),
        since,
    )
    .fetch_all(conn)
    .await?;
    let mut hours: HashMap<WebhookId, Vec<_>> = HashMap::new();
    for r in rows {
        hours.entry(WebhookId(r.webhook_id)).or_default().push((
            r.hour,
            HourTally {
                attempts: r.attempts,
                successes: r.successes,
                duration_ms_sum: r.duration_ms_sum,
                duration_ms_max: r.duration_ms_max,
            },
        ));
    }
    Ok(hours)
}
