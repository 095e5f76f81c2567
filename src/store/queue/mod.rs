//! The batcher's side of the queue: claim due deliveries with a lease, record attempts under
//! that lease, give back what will not be attempted. The statements are the `.sql` files
//! beside this one; `tests/it/plans.rs` checks their plans. Every function here expects a
//! connection of [`super::queue_pool`].
//!
//! Invariant: no transaction is open while a delivery is attempted. A claim commits before
//! the HTTP request; outcomes are recorded afterwards in short transactions that only touch
//! deliveries whose lease the recorder still holds. A claimant that dies leaves leases that
//! expire, after which any batcher may claim those deliveries again.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{
    AttemptRecord, DeliveryId, DeliveryState, EventId, Family, FileRetries, WebhookId, uuids,
};
use crate::error::Result;
use crate::store::health::{self, SubjectRow};

/// A delivery leased to a batcher; where it goes and how it is signed is in the
/// [`ClaimTarget`] of its webhook.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The delivery's id.
    pub id: DeliveryId,
    /// The webhook delivered to.
    pub webhook_id: WebhookId,
    /// Attempts made before this one.
    pub attempt_count: i32,
    /// Attempts made since its retry schedule last started (at its queueing, or at its
    /// last redelivery): where it stands in the schedule.
    pub scheduled_attempts: i32,
    /// The event's stored payload (an encoded `EventRequest` or `RegistryEvent`, or a
    /// GitHub event's JSON).
    pub payload: Vec<u8>,
    /// What rendering needs of the event besides its payload.
    pub event: EventHead,
}

/// A delivery's event, as rendering sees it.
#[derive(Debug, Clone)]
pub struct EventHead {
    /// The event's id (shared by every delivery of it: GitHub's `X-GitHub-Delivery`).
    pub id: EventId,
    /// Its family.
    pub family: Family,
    /// Its type as stored: empty for the BSR's; `ping` for a ping.
    pub event_type: String,
    /// When it was stored.
    pub create_time: DateTime<Utc>,
    /// Which request of the event's rendering this delivery is (see migration
    /// 20261202000001).
    pub part: i16,
}

/// The composite `lease.sql` reads an event as.
#[derive(Debug, sqlx::Type)]
#[sqlx(type_name = "webhookd_event_head")]
pub struct EventHeadRow {
    payload: Vec<u8>,
    family: String,
    event_type: Option<String>,
    create_time: DateTime<Utc>,
}

/// Where the deliveries of one webhook in a claim go, read once per claim (not per
/// delivery: a claim of 1,000 deliveries to one webhook reads it once).
#[derive(Debug, Clone)]
pub struct ClaimTarget {
    /// The webhook's owner.
    pub owner: String,
    /// Where to POST.
    pub callback_url: String,
    /// The sealed secrets that sign: the current one and any still in their overlap.
    pub sealed_secrets: Vec<Vec<u8>>,
    /// How its deliveries are rendered.
    pub render: RenderSettings,
}

/// A subscription's rendering settings, as stored (checked when they were).
#[derive(Debug, Clone, Default)]
pub struct RenderSettings {
    /// Its number (GitHub's hook id).
    pub number: i64,
    /// Its repository ('' for all of the owner's).
    pub repository: String,
    /// Whether it covers every repository of the owner.
    pub all_repositories: bool,
    /// Its event types (GitHub's ping names them).
    pub event_types: Vec<String>,
    /// Its format's stored name; empty reads as `connect`.
    pub format: String,
    /// The format's options; `None` for the defaults.
    pub format_options: Option<serde_json::Value>,
    /// The sealed `Authorization` header.
    pub sealed_auth_header: Option<Vec<u8>>,
    /// TLS verification off.
    pub skip_tls_verify: bool,
    /// `[[name, value], ...]`; `None` for none.
    pub custom_headers: Option<serde_json::Value>,
    /// Standard Webhooks headers off.
    pub omit_standard_headers: bool,
    /// Its name.
    pub name: String,
    /// Which API manages it.
    pub face: String,
    /// The sealed GitHub hook secret.
    pub sealed_hub_secret: Option<Vec<u8>>,
    /// Attempt each delivery once.
    pub no_retries: bool,
    /// A Harbor policy target's CloudEvents `source`.
    pub harbor_source: Option<String>,
    /// A configuration file webhook's timeout and retries, Angos's way.
    pub file_retries: Option<FileRetries>,
}

/// Deliveries leased to a batcher (by a claim, or by the publish that queued them), with the
/// target of each webhook among them.
#[derive(Debug, Clone, Default)]
pub struct Leased {
    /// The deliveries.
    pub deliveries: Vec<ClaimedDelivery>,
    /// One entry per webhook in `deliveries`.
    pub targets: HashMap<WebhookId, ClaimTarget>,
}

/// What one claim took.
#[derive(Debug, Clone, Default)]
pub struct Claim {
    /// The deliveries and their targets.
    pub leased: Leased,
    /// The database's `now()` for the claim: deliveries due by then were candidates.
    pub snapshot_time: DateTime<Utc>,
    /// When the top-up took as many as it asked for, the due time of the last one: its
    /// scan, in due order, stopped there. `None` when the scan reached `snapshot_time`.
    pub full_at: Option<DateTime<Utc>>,
    /// Whether the claim scanned the due index first-in-first-out (a plain claim, or a fair
    /// one's top-up), so that `full_at` says where that scan stopped.
    pub topped_up: bool,
    /// The webhook the fair walk reached: the next claim starts after it.
    pub reached: Option<WebhookId>,
}

/// What happens to a delivery after an attempt: the one decision the retry policy makes,
/// and what the recorder applies.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done: the listener answered 2xx.
    Delivered,
    /// Try again after this many seconds.
    RetryIn(f64),
    /// Give up: the schedule ran out.
    Failed,
    /// Give up and disable the webhook (410 Gone), for this reason.
    FailedAndDisable(String),
}

/// One attempt of one delivery, to record.
#[derive(Debug, Clone)]
pub struct Attempted {
    /// The delivery attempted.
    pub delivery: DeliveryId,
    /// Its webhook's owner (whose queued count a final outcome lowers).
    pub owner: std::sync::Arc<str>,
    /// What the attempt did.
    pub record: AttemptRecord,
    /// What happens next.
    pub outcome: Outcome,
}

/// Where a claim starts and how far it may go: see [`claim`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ClaimScope {
    /// Where the top-up's scan of the due index may start (see `dispatch::Skip`).
    pub from: Option<DateTime<Utc>>,
    /// The webhook the previous claim's walk reached: this one starts just after it.
    pub after: Option<WebhookId>,
    /// The most webhooks one claim walks.
    pub max_webhooks: i64,
    /// Whether the claim walks the webhooks fairly, or only takes the oldest due
    /// deliveries (cheaper: they lie together in the table).
    pub fair: bool,
}

/// How many more attempts each webhook and owner may start: what a claim keeps to.
pub trait Room {
    /// Whether a delivery of `webhook`, owned by `owner`, may be taken; counts it if so.
    fn take(&mut self, webhook: WebhookId, owner: &str) -> bool;
    /// The webhooks and the owners with no room left, each sorted: the claim's statements
    /// pass over their deliveries.
    fn full(&self) -> (Vec<WebhookId>, Vec<String>);
}

/// One locked candidate of a claim.
struct Candidate {
    id: Uuid,
    webhook: WebhookId,
}

/// Claims up to `limit` due deliveries of active webhooks for `worker`, for `lease_secs`,
/// within `room`. Without `scope.fair`, the oldest due ones (first in, first out). With it,
/// fairly: the webhooks with due deliveries are walked in rotation (starting after
/// `scope.after`, at most `scope.max_webhooks` of them) and each gets an equal share of
/// `limit`, its oldest first, so one webhook's backlog (or one owner's many webhooks'
/// backlogs) cannot hold back a delivery of another for more than a claim or two. When a
/// webhook took its whole share and room is left, the claim is topped up from the oldest due
/// deliveries of any webhook, as a plain first-in-first-out claim.
///
/// Each step locks its candidates (`FOR UPDATE SKIP LOCKED`, so that concurrent batchers
/// claim disjoint sets), passing over those of webhooks and owners `room` has no room for;
/// the claim keeps, in order, those `room` takes, so no webhook or owner gets more than its
/// room, however large the batch. The kept ones are leased (their `next_attempt_time` moves
/// to the lease's end, so a leased delivery is simply not due until its lease expires); the
/// others are unlocked, unchanged, at commit. Each candidate webhook's owner, callback URL
/// and secrets are read once, in the same transaction.
pub async fn claim(
    conn: &mut PgConnection,
    worker: Uuid,
    limit: i64,
    lease_secs: f64,
    scope: ClaimScope,
    room: &mut impl Room,
) -> Result<Claim> {
    use sqlx::Acquire as _;
    let mut tx = conn.begin().await?;
    let snapshot_time = transaction_time(&mut tx).await?;
    let (mut candidates, mut reached, mut share_filled) = (vec![], None, true);
    if scope.fair {
        (candidates, reached, share_filled) = fair_candidates(&mut tx, limit, scope, room).await?;
    }
    let (mut full_at, mut topped_up) = (None, false);
    if share_filled && (candidates.len() as i64) < limit {
        // Asks for the whole limit: the fair walk's candidates, locked by this transaction
        // and still due, come first again.
        topped_up = true;
        let (webhooks, owners) = room.full();
        let walked: HashSet<Uuid> = candidates.iter().map(|c| c.id).collect();
        let more = sqlx::query_file!(
            "src/store/queue/claim.sql",
            limit,
            &uuids(&webhooks),
            scope.from,
            &owners,
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .filter_map(|r| {
            full_at = r.full_at;
            (!walked.contains(&r.id)).then_some(Candidate {
                id: r.id,
                webhook: WebhookId(r.webhook_id),
            })
        });
        candidates.extend(more);
    }
    let mut targets = claim_targets(&mut tx, candidates.iter().map(|c| c.webhook)).await?;
    let kept: Vec<Uuid> = candidates
        .iter()
        .filter(|c| {
            targets
                .get(&c.webhook)
                .is_some_and(|t| room.take(c.webhook, &t.owner))
        })
        .map(|c| c.id)
        .take(usize::try_from(limit).unwrap_or(0))
        .collect();
    let deliveries = lease(&mut tx, worker, &kept, lease_secs).await?;
    tx.commit().await?;
    let used: HashSet<WebhookId> = deliveries.iter().map(|d| d.webhook_id).collect();
    targets.retain(|webhook, _| used.contains(webhook));
    Ok(Claim {
        leased: Leased {
            deliveries,
            targets,
        },
        snapshot_time,
        full_at,
        topped_up,
        reached,
    })
}

/// The fair walk of [`claim`]: its candidates, the webhook the walk reached, and whether
/// some webhook took its whole share (so that a top-up may find more).
async fn fair_candidates(
    conn: &mut PgConnection,
    limit: i64,
    scope: ClaimScope,
    room: &impl Room,
) -> Result<(Vec<Candidate>, Option<WebhookId>, bool)> {
    let (webhooks, owners) = room.full();
    let (mut reached, mut share_filled) = (None, false);
    let candidates = sqlx::query_file!(
        "src/store/queue/fair_claim.sql",
        limit,
        &uuids(&webhooks),
        scope.after.map(|w| w.0),
        scope.max_webhooks,
        &owners,
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|r| {
        reached = r.reached.map(WebhookId);
        share_filled |= r.share_filled;
        Candidate {
            id: r.id,
            webhook: WebhookId(r.webhook_id),
        }
    })
    .collect();
    Ok((candidates, reached, share_filled))
}

/// Leases the kept candidates `ids` to `worker` (see `lease.sql`).
async fn lease(
    conn: &mut PgConnection,
    worker: Uuid,
    ids: &[Uuid],
    lease_secs: f64,
) -> Result<Vec<ClaimedDelivery>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let rows = sqlx::query_file!("src/store/queue/lease.sql", worker, ids, lease_secs)
        .fetch_all(conn)
        .await?;
    // An event row can only be missing if it was deleted by hand (or its family is
    // unknown to this build); such a delivery stays leased, and is retried when its lease
    // expires.
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let head = r.head?;
            Some(ClaimedDelivery {
                id: DeliveryId(r.id),
                webhook_id: WebhookId(r.webhook_id),
                attempt_count: r.attempt_count,
                scheduled_attempts: r.scheduled_attempts,
                payload: head.payload,
                event: EventHead {
                    id: EventId(r.event_id),
                    family: Family::from_stored(&head.family)?,
                    event_type: head.event_type.unwrap_or_default(),
                    create_time: head.create_time,
                    part: r.part,
                },
            })
        })
        .collect())
}

/// The targets of `webhooks`, one lookup each.
async fn claim_targets(
    conn: &mut PgConnection,
    webhooks: impl Iterator<Item = WebhookId>,
) -> Result<HashMap<WebhookId, ClaimTarget>> {
    let mut webhooks: Vec<Uuid> = webhooks.map(|w| w.0).collect();
    webhooks.sort_unstable();
    webhooks.dedup();
    let targets = sqlx::query_file!("src/store/queue/claim_targets.sql", &webhooks)
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(|r| r.target.into_target())
        .collect();
    Ok(targets)
}

/// A row of the `webhook_targets` view, read as one composite value (see migration
/// 20261206000001).
#[derive(Debug, sqlx::Type)]
#[sqlx(type_name = "webhook_targets")]
pub struct TargetRow {
    id: Uuid,
    owner_name: String,
    callback_url: String,
    sealed_secrets: Vec<Vec<u8>>,
    number: i64,
    repository_name: String,
    all_repositories: bool,
    event_types: Vec<String>,
    format: String,
    format_options: Option<serde_json::Value>,
    sealed_auth_header: Option<Vec<u8>>,
    skip_tls_verify: bool,
    custom_headers: Option<serde_json::Value>,
    omit_standard_headers: bool,
    name: String,
    face: String,
    sealed_hub_secret: Option<Vec<u8>>,
    no_retries: bool,
    harbor_source: Option<String>,
    timeout_ms: Option<i32>,
    max_retries: Option<i32>,
}

impl TargetRow {
    /// The webhook and its target.
    pub fn into_target(self) -> (WebhookId, ClaimTarget) {
        let target = ClaimTarget {
            owner: self.owner_name,
            callback_url: self.callback_url,
            sealed_secrets: self.sealed_secrets,
            render: RenderSettings {
                number: self.number,
                repository: self.repository_name,
                all_repositories: self.all_repositories,
                event_types: self.event_types,
                format: self.format,
                format_options: self.format_options,
                sealed_auth_header: self.sealed_auth_header,
                skip_tls_verify: self.skip_tls_verify,
                custom_headers: self.custom_headers,
                omit_standard_headers: self.omit_standard_headers,
                name: self.name,
                face: self.face,
                sealed_hub_secret: self.sealed_hub_secret,
                no_retries: self.no_retries,
                harbor_source: self.harbor_source,
                file_retries: self
                    .timeout_ms
                    .zip(self.max_retries)
                    .map(|(t, r)| FileRetries {
                        timeout: std::time::Duration::from_millis(u64::try_from(t).unwrap_or(1)),
                        max_retries: u32::try_from(r).unwrap_or(0),
                    }),
            },
        };
        (WebhookId(self.id), target)
    }
}

/// The transaction's `now()`.
async fn transaction_time(conn: &mut PgConnection) -> Result<DateTime<Utc>> {
    let now = sqlx::query_scalar!(r#"SELECT now() AS "now!""#)
        .fetch_one(conn)
        .await?;
    Ok(now)
}

/// Records a batch of attempts and applies their outcomes in one statement (one commit,
/// however many attempts; with a 410, one transaction that also disables the webhook), each
/// only if `worker` still holds that delivery's lease; a delivery whose lease was lost
/// (expired and taken over, or the webhook was deleted) is skipped: its new holder's record
/// is the one that counts. Returns the ids of those recorded.
pub async fn record_attempts(
    conn: &mut PgConnection,
    worker: Uuid,
    attempted: &[Attempted],
) -> Result<HashSet<Uuid>> {
    use sqlx::Acquire as _;
    if attempted.is_empty() {
        return Ok(HashSet::new());
    }
    let columns = Columns::of(attempted);
    let disabling = attempted
        .iter()
        .any(|a| matches!(a.outcome, Outcome::FailedAndDisable(_)));
    if !disabling {
        return columns.record(conn, worker).await;
    }
    let mut tx = conn.begin().await?;
    let recorded = columns.record(&mut tx, worker).await?;
    for a in attempted {
        if let Outcome::FailedAndDisable(reason) = &a.outcome
            && recorded.contains(&a.delivery.0)
        {
            disable_webhook_of(&mut tx, a.delivery, reason).await?;
        }
    }
    tx.commit().await?;
    Ok(recorded)
}

/// A delivery made before its event was stored, finished (a configuration file webhook's
/// at publish time; see `publish::policies`).
#[derive(Debug, Clone)]
pub struct Finished {
    /// The delivery's id (the one its requests carried).
    pub id: DeliveryId,
    /// The event, as stored.
    pub event_id: EventId,
    /// The webhook.
    pub webhook_id: WebhookId,
    /// The part of the event.
    pub part: i16,
    /// Whether its last attempt succeeded.
    pub delivered: bool,
    /// Its attempts, in order (at least one).
    pub attempts: Vec<AttemptRecord>,
}

/// Records `finished` deliveries and their attempts, in one statement on `conn` (the
/// publish's transaction, after its events).
///
/// # Errors
/// Database errors.
pub async fn record_finished(conn: &mut PgConnection, finished: &[Finished]) -> Result<()> {
    if finished.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&Finished) -> Uuid| finished.iter().map(f).collect::<Vec<_>>();
    let first = |f: &Finished| f.attempts.first().map_or_else(Utc::now, |a| a.start_time);
    let last = |f: &Finished| f.attempts.last().map_or_else(|| first(f), |a| a.start_time);
    let attempts: Vec<(&Finished, i32, &AttemptRecord)> = finished
        .iter()
        .flat_map(|f| (1..).zip(&f.attempts).map(move |(n, a)| (f, n, a)))
        .collect();
    let columns = AttemptColumns::of(attempts.iter().map(|(_, _, a)| *a));
    sqlx::query_file!(
        "src/store/queue/record_finished.sql",
        &column(|f| f.id.0),
        &column(|f| f.event_id.0),
        &column(|f| f.webhook_id.0),
        &finished.iter().map(|f| f.part).collect::<Vec<_>>(),
        &finished
            .iter()
            .map(|f| if f.delivered { "delivered" } else { "failed" })
            .collect::<Vec<_>>() as &[&str],
        &finished
            .iter()
            .map(|f| i32::try_from(f.attempts.len()).unwrap_or(i32::MAX))
            .collect::<Vec<_>>(),
        &finished.iter().map(first).collect::<Vec<_>>(),
        &finished.iter().map(last).collect::<Vec<_>>(),
        &finished
            .iter()
            .map(|f| f.attempts.last().and_then(|a| a.http_status).unwrap_or(0))
            .collect::<Vec<_>>(),
        &attempts.iter().map(|(f, _, _)| f.id.0).collect::<Vec<_>>(),
        &attempts.iter().map(|(_, n, _)| *n).collect::<Vec<_>>(),
        &columns.starts,
        &columns.durations,
        &columns.statuses,
        &columns.codes as &[&str],
        &columns.bodies as &[&[u8]],
        &columns.errors as &[&str],
        &columns.request_headers as &[&[u8]],
        &columns.request_bodies as &[&[u8]],
        &columns.request_body_kept,
        &columns.request_body_sizes,
        &columns.response_headers as &[&[u8]],
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}

/// Attempts as the recorder's statement takes them: one array per column. Arrays cannot
/// carry NULLs through the typed bindings: 0 and "" stand for "none".
struct Columns<'a> {
    ids: Vec<Uuid>,
    owners: Vec<&'a str>,
    states: Vec<&'static str>,
    retry_in: Vec<f64>,
    attempts: AttemptColumns<'a>,
}

/// What attempts sent and received, one array per column (as [`Columns`]).
struct AttemptColumns<'a> {
    starts: Vec<DateTime<Utc>>,
    durations: Vec<i32>,
    statuses: Vec<i32>,
    codes: Vec<&'a str>,
    bodies: Vec<&'a [u8]>,
    errors: Vec<&'a str>,
    request_headers: Vec<&'a [u8]>,
    request_bodies: Vec<&'a [u8]>,
    /// Whether the request's body is recorded (false: none was sent, or it was the event's
    /// payload).
    request_body_kept: Vec<bool>,
    /// -1 when nothing was sent.
    request_body_sizes: Vec<i32>,
    response_headers: Vec<&'a [u8]>,
}

impl<'a> AttemptColumns<'a> {
    fn of<I>(records: I) -> Self
    where
        I: Iterator<Item = &'a AttemptRecord> + Clone,
    {
        let records = || records.clone();
        Self {
            starts: records().map(|r| r.start_time).collect(),
            durations: records().map(|r| r.duration_ms).collect(),
            statuses: records().map(|r| r.http_status.unwrap_or(0)).collect(),
            codes: records()
                .map(|r| r.connect_code.as_deref().unwrap_or(""))
                .collect(),
            bodies: records()
                .map(|r| r.response_body.as_deref().unwrap_or(&[]))
                .collect(),
            errors: records()
                .map(|r| r.error.as_deref().unwrap_or(""))
                .collect(),
            request_headers: records()
                .map(|r| r.request.as_ref().map_or(&[][..], |q| &q.headers))
                .collect(),
            request_bodies: records()
                .map(|r| {
                    r.request
                        .as_ref()
                        .and_then(|q| q.body.as_deref())
                        .unwrap_or(&[])
                })
                .collect(),
            request_body_kept: records()
                .map(|r| r.request.as_ref().is_some_and(|q| q.body.is_some()))
                .collect(),
            request_body_sizes: records()
                .map(|r| r.request.as_ref().map_or(-1, |q| q.body_size))
                .collect(),
            response_headers: records()
                .map(|r| r.response_headers.as_deref().unwrap_or(&[]))
                .collect(),
        }
    }
}

impl<'a> Columns<'a> {
    fn of(attempted: &'a [Attempted]) -> Self {
        let next = |a: &Attempted| match &a.outcome {
            Outcome::Delivered => (DeliveryState::Delivered, 0.0),
            Outcome::RetryIn(secs) => (DeliveryState::Pending, *secs),
            Outcome::Failed | Outcome::FailedAndDisable(_) => (DeliveryState::Failed, 0.0),
        };
        Self {
            ids: attempted.iter().map(|a| a.delivery.0).collect(),
            owners: attempted.iter().map(|a| &*a.owner).collect(),
            states: attempted.iter().map(|a| next(a).0.as_str()).collect(),
            retry_in: attempted.iter().map(|a| next(a).1).collect(),
            attempts: AttemptColumns::of(attempted.iter().map(|a| &a.record)),
        }
    }

    /// Runs `record_attempts.sql`; the ids of the deliveries recorded.
    async fn record(&self, conn: &mut PgConnection, worker: Uuid) -> Result<HashSet<Uuid>> {
        let rows = sqlx::query_file!(
            "src/store/queue/record_attempts.sql",
            worker,
            &self.ids,
            &self.states as &[&str],
            &self.retry_in,
            &self.attempts.starts,
            &self.attempts.durations,
            &self.attempts.statuses,
            &self.attempts.codes as &[&str],
            &self.attempts.bodies as &[&[u8]],
            &self.attempts.errors as &[&str],
            &self.owners as &[&str],
            &self.attempts.request_headers as &[&[u8]],
            &self.attempts.request_bodies as &[&[u8]],
            &self.attempts.request_body_kept,
            &self.attempts.request_body_sizes,
            &self.attempts.response_headers as &[&[u8]],
        )
        .fetch_all(conn)
        .await?;
        Ok(rows.into_iter().map(|r| r.delivery_id).collect())
    }
}

/// Disables the webhook a delivery belongs to (its listener answered 410 Gone), and
/// publishes `webhookd.subscription.disabled` about it. Its `update_time` changes, so the
/// change is announced to the ListWebhooks caches, here in the transaction itself:
/// disabling is rare, unlike creating.
async fn disable_webhook_of(
    conn: &mut PgConnection,
    delivery: DeliveryId,
    reason: &str,
) -> Result<()> {
    let disabled = sqlx::query_as!(
        SubjectRow,
        r#"
        WITH disabled AS (
            UPDATE webhooks
            SET state = 'disabled', disabled_reason = $2, disabled_time = now(), update_time = now()
            WHERE id = (SELECT webhook_id FROM deliveries WHERE id = $1) AND state <> 'disabled'
            RETURNING id, number, owner_name, repository_name, name, face, disabled_time,
                      disabled_reason
        )
        SELECT d.id AS "id!", d.number AS "number!", d.owner_name AS "owner_name!",
               d.repository_name AS "repository_name!", d.name AS "name!", d.face AS "face!",
               a.failing_since AS "failing_since?", a.failures AS "failures?",
               a.last_response_time AS "last_response_time?",
               a.last_response_code AS "last_response_code?",
               a.last_response_message AS "last_response_message?",
               d.disabled_time AS "disabled_time?", d.disabled_reason AS "disabled_reason?"
        FROM disabled d
        LEFT JOIN subscription_activity a ON a.webhook_id = d.id AND a.event_type = '',
             LATERAL (SELECT pg_notify($3, d.owner_name || '/' || d.repository_name)) AS n
        "#,
        delivery.0,
        reason,
        super::webhooks::CHANGED_CHANNEL,
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some((subject, Some((time, reason)))) = disabled.map(SubjectRow::subject) else {
        return Ok(());
    };
    let event = health::disabled_event(&subject, time, &reason);
    super::events::insert(conn, &[event]).await?;
    Ok(())
}

/// Gives back deliveries `worker` claimed but did not attempt (shutdown), so that another
/// batcher can take them at once instead of after the lease.
pub async fn release(
    conn: &mut PgConnection,
    worker: Uuid,
    deliveries: &[DeliveryId],
) -> Result<u64> {
    let done = sqlx::query_file!("src/store/queue/release.sql", &uuids(deliveries), worker)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// The queue's depth and lag (see `depth.sql`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Depth {
    /// Waiting for an attempt.
    pub pending: i64,
    /// Their subscription paused or disabled.
    pub held: i64,
    /// Leased to a batcher.
    pub in_flight: i64,
    /// How long the oldest due delivery has been due.
    pub lag_seconds: f64,
}

/// Reads the queue's depth and lag.
///
/// # Errors
/// Database errors.
pub async fn depth(pool: &sqlx::PgPool) -> Result<Depth> {
    let r = sqlx::query_file!("src/store/queue/depth.sql")
        .fetch_one(pool)
        .await?;
    Ok(Depth {
        pending: r.pending,
        held: r.held,
        in_flight: r.in_flight,
        lag_seconds: r.lag_seconds,
    })
}
