//! Deliveries: claimed with a lease by the batcher, recorded attempt by attempt under that
//! lease, listed and replayed through the delivery log.
//!
//! Invariant: no transaction is open while a delivery is attempted. A claim commits before
//! the HTTP request; outcomes are recorded afterwards in short transactions that only touch
//! deliveries whose lease the recorder still holds. A claimant that dies leaves leases that
//! expire, after which any batcher may claim those deliveries again.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{
    AttemptRecord, Claim, ClaimTarget, ClaimedDelivery, Delivery, DeliveryState, Leased,
    PageCursor, Verdict, WebhookId,
};
use crate::error::{Error, Result};

/// Claims up to `limit` due deliveries of active webhooks for `worker`, for `lease_secs`, on
/// a connection of [`super::queue_pool`], skipping the webhooks in `saturated` (those this
/// batcher already has `--max-in-flight-per-webhook` attempts in flight for). Only rows that
/// are claimed are locked; `FOR UPDATE SKIP LOCKED` lets concurrent batchers claim disjoint
/// sets. A claim moves `next_attempt_time` to the lease's end, so a leased delivery is simply
/// not due until its lease expires. Each claimed webhook's callback URL and secrets are read
/// once, by a second statement in the same transaction.
///
/// With `from`, the scan starts at deliveries due at that time instead of at the oldest:
/// a batcher that knows the earlier ones are all claimed or belong to `saturated` webhooks
/// does not walk them again (see `dispatch`).
pub async fn claim(
    conn: &mut PgConnection,
    worker: Uuid,
    limit: i64,
    lease_secs: f64,
    saturated: &[Uuid],
    from: Option<DateTime<Utc>>,
) -> Result<Claim> {
    use sqlx::Acquire as _;
    let mut tx = conn.begin().await?;
    let snapshot_time = transaction_time(&mut tx).await?;
    let mut full_at = None;
    let deliveries: Vec<ClaimedDelivery> = sqlx::query_file!(
        "src/store/queue/claim.sql",
        worker,
        limit,
        lease_secs,
        saturated,
        from,
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .filter_map(|r| {
        full_at = r.full_at;
        // An event row can only be missing if it was deleted by hand; such a delivery
        // stays leased, and is retried when its lease expires, as before.
        Some(ClaimedDelivery {
            id: r.id,
            webhook_id: WebhookId(r.webhook_id),
            attempt_count: r.attempt_count,
            scheduled_attempts: r.scheduled_attempts,
            payload: r.payload?,
        })
    })
    .collect();
    let mut webhooks: Vec<Uuid> = deliveries.iter().map(|d| d.webhook_id.0).collect();
    webhooks.sort_unstable();
    webhooks.dedup();
    let targets = sqlx::query_file!("src/store/queue/claim_targets.sql", &webhooks)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| {
            let target = ClaimTarget {
                callback_url: r.callback_url,
                sealed_secrets: r.sealed_secrets,
            };
            (WebhookId(r.id), target)
        })
        .collect();
    tx.commit().await?;
    Ok(Claim {
        leased: Leased {
            deliveries,
            targets,
        },
        snapshot_time,
        full_at,
    })
}

/// The transaction's `now()`.
async fn transaction_time(conn: &mut PgConnection) -> Result<DateTime<Utc>> {
    let now = sqlx::query_scalar!(r#"SELECT now() AS "now!""#)
        .fetch_one(conn)
        .await?;
    Ok(now)
}

/// One attempt's outcome, to record.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The delivery attempted.
    pub delivery: Uuid,
    /// What the attempt did.
    pub attempt: AttemptRecord,
    /// What happens next.
    pub verdict: Verdict,
}

/// Records a batch of attempts and applies their verdicts in one statement (one commit,
/// however many attempts; with a 410, one transaction that also disables the webhook), each
/// only if `worker` still holds that delivery's lease; a delivery whose lease was lost
/// (expired and taken over, or the webhook was deleted) is skipped: its new holder's record
/// is the one that counts. Returns how many were recorded. `conn` is a connection of
/// [`super::queue_pool`].
pub async fn record_attempts(
    conn: &mut PgConnection,
    worker: Uuid,
    outcomes: &[Outcome],
) -> Result<usize> {
    use sqlx::Acquire as _;
    if outcomes.is_empty() {
        return Ok(0);
    }
    let columns = Columns::of(outcomes);
    let disabling = outcomes
        .iter()
        .any(|o| matches!(o.verdict, Verdict::FailedAndDisable(_)));
    if !disabling {
        return Ok(columns.record(conn, worker).await?.len());
    }
    let mut tx = conn.begin().await?;
    let recorded = columns.record(&mut tx, worker).await?;
    for o in outcomes {
        if let Verdict::FailedAndDisable(reason) = &o.verdict
            && recorded.contains(&o.delivery)
        {
            disable_webhook_of(&mut tx, o.delivery, reason).await?;
        }
    }
    tx.commit().await?;
    Ok(recorded.len())
}

/// Outcomes as the recorder's statement takes them: one array per column. Arrays cannot
/// carry NULLs through the typed bindings: 0 and "" stand for "none".
struct Columns<'a> {
    ids: Vec<Uuid>,
    states: Vec<&'static str>,
    retry_in: Vec<f64>,
    starts: Vec<DateTime<Utc>>,
    durations: Vec<i32>,
    statuses: Vec<i32>,
    codes: Vec<&'a str>,
    bodies: Vec<&'a [u8]>,
    errors: Vec<&'a str>,
}

impl<'a> Columns<'a> {
    fn of(outcomes: &'a [Outcome]) -> Self {
        let verdict = |o: &Outcome| match &o.verdict {
            Verdict::Delivered => (DeliveryState::Delivered, 0.0),
            Verdict::RetryIn(secs) => (DeliveryState::Pending, *secs),
            Verdict::Failed | Verdict::FailedAndDisable(_) => (DeliveryState::Failed, 0.0),
        };
        let attempts = || outcomes.iter().map(|o| &o.attempt);
        Self {
            ids: outcomes.iter().map(|o| o.delivery).collect(),
            states: outcomes.iter().map(|o| verdict(o).0.as_str()).collect(),
            retry_in: outcomes.iter().map(|o| verdict(o).1).collect(),
            starts: attempts().map(|a| a.start_time).collect(),
            durations: attempts().map(|a| a.duration_ms).collect(),
            statuses: attempts().map(|a| a.http_status.unwrap_or(0)).collect(),
            codes: attempts()
                .map(|a| a.connect_code.as_deref().unwrap_or(""))
                .collect(),
            bodies: attempts()
                .map(|a| a.response_body.as_deref().unwrap_or(&[]))
                .collect(),
            errors: attempts()
                .map(|a| a.error.as_deref().unwrap_or(""))
                .collect(),
        }
    }

    /// Runs `record_attempts.sql`; the ids of the deliveries recorded.
    async fn record(&self, conn: &mut PgConnection, worker: Uuid) -> Result<Vec<Uuid>> {
        let rows = sqlx::query_file!(
            "src/store/queue/record_attempts.sql",
            worker,
            &self.ids,
            &self.states as &[&str],
            &self.retry_in,
            &self.starts,
            &self.durations,
            &self.statuses,
            &self.codes as &[&str],
            &self.bodies as &[&[u8]],
            &self.errors as &[&str],
        )
        .fetch_all(conn)
        .await?;
        Ok(rows.into_iter().map(|r| r.delivery_id).collect())
    }
}

/// Disables the webhook a delivery belongs to (its listener answered 410 Gone). Its
/// `update_time` changes, so the change is announced to the ListWebhooks caches, here in the
/// transaction itself: disabling is rare, unlike creating.
async fn disable_webhook_of(conn: &mut PgConnection, delivery: Uuid, reason: &str) -> Result<()> {
    sqlx::query!(
        r#"
        WITH disabled AS (
            UPDATE webhooks
            SET state = 'disabled', disabled_reason = $2, disabled_time = now(), update_time = now()
            WHERE id = (SELECT webhook_id FROM deliveries WHERE id = $1)
            RETURNING owner_name, repository_name
        )
        SELECT count(*) AS "announced!"
        FROM disabled d, LATERAL (SELECT pg_notify($3, d.owner_name || '/' || d.repository_name)) AS n
        "#,
        delivery,
        reason,
        super::webhooks::CHANGED_CHANNEL,
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}

/// Gives back deliveries `worker` claimed but did not attempt (shutdown), so that another
/// batcher can take them at once instead of after the lease.
pub async fn release(conn: &mut PgConnection, worker: Uuid, deliveries: &[Uuid]) -> Result<u64> {
    let done = sqlx::query_file!("src/store/queue/release.sql", deliveries, worker,)
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
            id: r.id,
            webhook_id: WebhookId(r.webhook_id),
            event_id: r.event_id,
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

/// One delivery and its attempts, oldest first.
pub async fn get(
    conn: &mut PgConnection,
    delivery: Uuid,
) -> Result<Option<(Delivery, Vec<AttemptRecord>)>> {
    let Some(found) = fetch(conn, delivery).await? else {
        return Ok(None);
    };
    let attempts = sqlx::query_as!(
        AttemptRecord,
        r#"
        SELECT start_time, duration_ms, http_status, connect_code, response_body, error
        FROM delivery_attempts
        WHERE delivery_id = $1
        ORDER BY number
        "#,
        delivery,
    )
    .fetch_all(conn)
    .await?;
    Ok(Some((found, attempts)))
}

async fn fetch(conn: &mut PgConnection, delivery: Uuid) -> Result<Option<Delivery>> {
    let row = sqlx::query_as!(
        DeliveryRow,
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
pub async fn redeliver(conn: &mut PgConnection, delivery: Uuid) -> Result<Redelivery> {
    let found = sqlx::query!(
        r#"
        WITH target AS (
            SELECT d.id, w.state AS webhook_state, w.disabled_reason
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
        )
        SELECT t.webhook_state, t.disabled_reason
        FROM target t
        "#,
        delivery,
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

/// How many deliveries are in each state (pending, delivered, failed).
pub async fn count_by_state(conn: &mut PgConnection) -> Result<(i64, i64, i64)> {
    let row = sqlx::query!(
        r#"
        SELECT count(*) FILTER (WHERE state = 'pending') AS "pending!",
               count(*) FILTER (WHERE state = 'delivered') AS "delivered!",
               count(*) FILTER (WHERE state = 'failed') AS "failed!"
        FROM deliveries
        "#
    )
    .fetch_one(conn)
    .await?;
    Ok((row.pending, row.delivered, row.failed))
}
