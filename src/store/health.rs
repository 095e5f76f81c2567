//! Auto-disable (`--auto-disable-after`, `--auto-disable-min-failures`) and the operational
//! events that tell an owner about its subscriptions' health without polling.
//!
//! The batchers keep each subscription's run of failed attempts in its activity row (see
//! migration 20261204000001 and `store::activity`). A sweep, in every process, announces
//! each run that reaches [`FAILING_AFTER`] failures (`webhookd.subscription.failing`) and
//! disables each active subscription whose run has lasted `--auto-disable-after` with at
//! least `--auto-disable-min-failures` failures (`webhookd.subscription.disabled`, also sent
//! when a listener's 410 Gone disables one). The events go through the outbox in the same
//! transaction as the change they announce, to the owner's subscriptions of the `webhookd`
//! family: exactly once per run and per disable, however many processes sweep (rows are
//! taken with `SKIP LOCKED`, and each change is made once).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{OutboundEvent, SUBSCRIPTION_DISABLED, SUBSCRIPTION_FAILING};
use crate::error::Result;

/// Failed attempts in a row after which a run is announced as failing (Svix's
/// `message.attempt.failing` comes after the fourth too); `--auto-disable-min-failures`
/// when that is fewer.
pub const FAILING_AFTER: i64 = 4;
/// The most subscriptions one sweep announces, and the most it disables.
const SWEEP_BATCH: i64 = 500;

/// When a subscription is disabled for failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoDisable {
    /// How long a run of failures lasts before the subscription is disabled; zero: never.
    pub after: Duration,
    /// The fewest failures of such a run.
    pub min_failures: i64,
}

impl AutoDisable {
    /// How often the sweep runs: a tenth of the window, between 100 ms and a minute (a
    /// minute when subscriptions are never disabled: runs are still announced).
    pub fn interval(&self) -> Duration {
        if self.after.is_zero() {
            return Duration::from_secs(60);
        }
        (self.after / 10).clamp(Duration::from_millis(100), Duration::from_secs(60))
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Runs announced as failing.
    pub failing: usize,
    /// Subscriptions disabled.
    pub disabled: usize,
}

/// The subscription an operational event is about, as its payload shows it.
#[derive(Debug, Clone)]
pub struct Subject {
    /// Its id.
    pub id: Uuid,
    /// Its number.
    pub number: i64,
    /// Its owner.
    pub owner: String,
    /// Its repository; empty for an owner-wide one.
    pub repository: String,
    /// Its name.
    pub name: String,
    /// Which API manages it.
    pub face: String,
    /// Its run of failures, if the batchers noted one.
    pub failing: Option<(DateTime<Utc>, i64)>,
    /// Its last answer: when, the HTTP status (none when no answer came), the message.
    pub last_response: Option<(DateTime<Utc>, Option<i32>, String)>,
}

/// A subscription as the statements here return it (`query_as!`): every column named
/// `!` (required) or `?` (optional), so that one struct reads them all.
pub(super) struct SubjectRow {
    pub id: Uuid,
    pub number: i64,
    pub owner_name: String,
    pub repository_name: String,
    pub name: String,
    pub face: String,
    pub failing_since: Option<DateTime<Utc>>,
    pub failures: Option<i64>,
    pub last_response_time: Option<DateTime<Utc>>,
    pub last_response_code: Option<i32>,
    pub last_response_message: Option<String>,
    /// When it was disabled (disabling statements only).
    pub disabled_time: Option<DateTime<Utc>>,
    /// Why (disabling statements only).
    pub disabled_reason: Option<String>,
}

impl SubjectRow {
    /// The subject, and when and why it was disabled (disabling statements only).
    pub(super) fn subject(self) -> (Subject, Option<(DateTime<Utc>, String)>) {
        let subject = Subject {
            id: self.id,
            number: self.number,
            owner: self.owner_name,
            repository: self.repository_name,
            name: self.name,
            face: self.face,
            failing: self.failing_since.map(|t| (t, self.failures.unwrap_or(0))),
            last_response: self.last_response_time.map(|t| {
                (
                    t,
                    self.last_response_code,
                    self.last_response_message.unwrap_or_default(),
                )
            }),
        };
        let disabled = self.disabled_time.zip(self.disabled_reason);
        (subject, disabled)
    }
}

impl Subject {
    /// The operational event of `event_type` about this subscription, with `extra` fields.
    fn event(
        &self,
        event_type: &'static str,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> OutboundEvent {
        let mut payload = serde_json::Map::new();
        payload.insert(
            "subscription".into(),
            json!({
                "id": self.id.to_string(),
                "number": self.number,
                "owner": self.owner,
                "repository": self.repository,
                "name": self.name,
                "managed_by": self.face,
            }),
        );
        payload.insert(
            "failing".into(),
            self.failing.map_or(
                serde_json::Value::Null,
                |(since, n)| json!({ "since": rfc3339(since), "failures": n }),
            ),
        );
        payload.insert(
            "last_response".into(),
            self.last_response
                .as_ref()
                .map_or(serde_json::Value::Null, |(time, code, message)| {
                    json!({ "time": rfc3339(*time), "code": code.unwrap_or(0), "message": message })
                }),
        );
        payload.extend(extra);
        OutboundEvent::operational(
            &self.owner,
            &self.repository,
            event_type,
            &serde_json::Value::Object(payload),
        )
    }
}

/// The `webhookd.subscription.disabled` event about `subject`, disabled at `time` for
/// `reason`.
pub fn disabled_event(subject: &Subject, time: DateTime<Utc>, reason: &str) -> OutboundEvent {
    let mut extra = serde_json::Map::new();
    extra.insert("reason".into(), reason.into());
    extra.insert("disabled_time".into(), rfc3339(time).into());
    subject.event(SUBSCRIPTION_DISABLED, extra)
}

/// A time as the payloads show it.
fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Runs a sweep every [`AutoDisable::interval`] until `stop`.
pub async fn run_until(pool: PgPool, settings: AutoDisable, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(settings.interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        match sweep(&pool, settings).await {
            Ok(swept) if swept != Swept::default() => tracing::info!(
                failing = swept.failing,
                disabled = swept.disabled,
                "subscriptions announced as failing, and disabled for failing"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error.cause_chain = ?anyhow::Error::from(e),
                "the auto-disable sweep failed; trying again at the next"),
        }
    }
}

/// One sweep, in one transaction: announces the new runs of failures, disables the
/// subscriptions failing for too long, and publishes the events saying so.
///
/// # Errors
/// Database errors (nothing is changed then).
pub async fn sweep(pool: &PgPool, settings: AutoDisable) -> Result<Swept> {
    let mut tx = pool.begin().await?;
    let failing = announce_failing(&mut tx, settings.min_failures).await?;
    let disabled = if settings.after.is_zero() {
        vec![]
    } else {
        disable_failing(&mut tx, settings).await?
    };
    let swept = Swept {
        failing: failing.len(),
        disabled: disabled.len(),
    };
    if swept != Swept::default() {
        let events: Vec<OutboundEvent> = failing
            .iter()
            .map(|s| s.event(SUBSCRIPTION_FAILING, serde_json::Map::new()))
            .chain(disabled.iter().map(|(s, t, r)| disabled_event(s, *t, r)))
            .collect();
        super::events::insert(&mut tx, &events).await?;
    }
    tx.commit().await?;
    Ok(swept)
}

/// Marks the unannounced runs of active subscriptions that reached [`FAILING_AFTER`] (or
/// `min_failures`) failures as announced, and returns their subscriptions.
async fn announce_failing(conn: &mut PgConnection, min_failures: i64) -> Result<Vec<Subject>> {
    let rows = sqlx::query_as!(
        SubjectRow,
        r#"
        WITH due AS (
            SELECT a.webhook_id
            FROM subscription_activity a
            JOIN webhooks w ON w.id = a.webhook_id
            WHERE a.failing_since IS NOT NULL AND a.event_type = '' AND NOT a.failing_announced
              AND a.failures >= $1 AND w.state = 'active'
              -- The file's webhooks are the operator's, watched through the metrics.
              AND w.face <> 'file'
            ORDER BY a.webhook_id
            LIMIT $2
            FOR UPDATE OF a SKIP LOCKED
        ), announced AS (
            UPDATE subscription_activity a
            SET failing_announced = true
            FROM due
            WHERE a.webhook_id = due.webhook_id AND a.event_type = ''
            RETURNING a.webhook_id, a.failing_since, a.failures, a.last_response_time,
                      a.last_response_code, a.last_response_message
        )
        SELECT w.id AS "id!", w.number AS "number!", w.owner_name AS "owner_name!",
               w.repository_name AS "repository_name!", w.name AS "name!", w.face AS "face!",
               n.failing_since AS "failing_since?", n.failures AS "failures?",
               n.last_response_time AS "last_response_time?",
               n.last_response_code AS "last_response_code?",
               n.last_response_message AS "last_response_message?",
               NULL::timestamptz AS "disabled_time?", NULL::text AS "disabled_reason?"
        FROM announced n
        JOIN webhooks w ON w.id = n.webhook_id
        ORDER BY w.id
        "#,
        min_failures.min(FAILING_AFTER),
        SWEEP_BATCH,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.subject().0).collect())
}

/// Disables the active subscriptions whose run of failures started more than
/// `settings.after` ago and counts at least `settings.min_failures`, announcing each change
/// to the ListWebhooks caches; returns them with the time and reason.
async fn disable_failing(
    conn: &mut PgConnection,
    settings: AutoDisable,
) -> Result<Vec<(Subject, DateTime<Utc>, String)>> {
    let window = humantime::format_duration(settings.after).to_string();
    let rows = sqlx::query_as!(
        SubjectRow,
        r#"
        WITH due AS (
            SELECT a.webhook_id, a.failing_since, a.failures, a.last_response_time,
                   a.last_response_code, a.last_response_message
            FROM subscription_activity a
            JOIN webhooks w ON w.id = a.webhook_id
            WHERE a.failing_since < now() - make_interval(secs => $1) AND a.event_type = ''
              AND a.failures >= $2 AND w.state = 'active' AND w.face <> 'file'
            ORDER BY a.webhook_id
            LIMIT $3
            FOR UPDATE OF a SKIP LOCKED
        ), disabled AS (
            UPDATE webhooks w
            SET state = 'disabled', disabled_time = now(), update_time = now(),
                disabled_reason = format(
                    'every attempt failed for more than %s (%s failures since %s); enable it '
                    'again once its listener answers', $4::text, due.failures,
                    to_char(due.failing_since AT TIME ZONE 'UTC',
                            'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
            FROM due
            WHERE w.id = due.webhook_id AND w.state = 'active'
            RETURNING w.id, w.number, w.owner_name, w.repository_name, w.name, w.face,
                      w.disabled_time, w.disabled_reason
        )
        SELECT d.id AS "id!", d.number AS "number!", d.owner_name AS "owner_name!",
               d.repository_name AS "repository_name!", d.name AS "name!", d.face AS "face!",
               due.failing_since AS "failing_since?", due.failures AS "failures?",
               due.last_response_time AS "last_response_time?",
               due.last_response_code AS "last_response_code?",
               due.last_response_message AS "last_response_message?",
               d.disabled_time AS "disabled_time?", d.disabled_reason AS "disabled_reason?"
        FROM disabled d
        JOIN due ON due.webhook_id = d.id,
             LATERAL (SELECT pg_notify($5, d.owner_name || '/' || d.repository_name)) AS n
        ORDER BY d.id
        "#,
        settings.after.as_secs_f64(),
        settings.min_failures,
        SWEEP_BATCH,
        window,
        super::webhooks::CHANGED_CHANNEL,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| match r.subject() {
            (subject, Some((time, reason))) => Some((subject, time, reason)),
            (_, None) => None,
        })
        .collect())
}
