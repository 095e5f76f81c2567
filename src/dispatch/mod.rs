//! The batcher: claim due deliveries with a lease, attempt them concurrently, record every
//! attempt. `run_once` is one batch, start to finish (tests call it directly); `run` is the
//! pipeline `serve` runs: woken by its poll interval (and, with `--wake-on-publish`, by
//! LISTEN/NOTIFY), it claims while it has room, and a recorder writes outcomes in bulk.
//! While it runs with `--wake-on-publish`, publishes of this process [`Dispatcher::reserve`]
//! room in it, lease that many of their deliveries to it as they insert them, and hand them
//! over once committed ([`Reservation::deliver`]): attempted like claimed ones, unclaimed.
//!
//! Invariants: no transaction is open during an HTTP attempt (the claim commits first);
//! an outcome is recorded only while this batcher still holds the lease; at most
//! `--max-in-flight` attempts run at once, and a webhook with `--max-in-flight-per-webhook`
//! attempts in flight gets no new claims, so a listener that never answers holds a bounded
//! share (the cap plus one batch); infrastructure errors
//! (`Err`) are logged once, here, and the loop goes on.

pub mod attempt;
pub mod retry;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use self::attempt::Target;
use self::retry::RetrySchedule;
use crate::domain::{Claim, ClaimedDelivery, Leased};
use crate::error::Result;
use crate::secret_box::SecretBox;
use crate::store;
use crate::store::deliveries::Outcome;
use crate::store::events::Handoff;

/// The most outcomes written in one statement.
const RECORD_BATCH: usize = 1000;

/// The batcher's own connections (see [`store::queue_pool`]): the claim loop, the recorder,
/// the `--wake-on-publish` listener, and one to spare.
const QUEUE_CONNECTIONS: u32 = 4;

/// A claimed delivery with its webhook's target (`None`: see [`Dispatcher::open_targets`]).
type Claimed = (ClaimedDelivery, Option<Arc<Target>>);

/// How the batcher runs (the `serve` flags).
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Time between claims (`--poll-interval`).
    pub poll_interval: Duration,
    /// The most deliveries claimed at once (`--batch-size`).
    pub batch_size: u32,
    /// After a full batch, claim the next at once (`--drain`).
    pub drain: bool,
    /// Wake on LISTEN/NOTIFY when something is published (`--wake-on-publish`).
    pub wake_on_publish: bool,
    /// The most attempts in flight in this process (`--max-in-flight`).
    pub max_in_flight: u32,
    /// No new claims for a webhook with this many attempts in flight in this process
    /// (`--max-in-flight-per-webhook`).
    pub max_in_flight_per_webhook: u32,
    /// Per-attempt timeout (`--delivery-timeout`).
    pub delivery_timeout: Duration,
    /// Delays before each retry (`--retry-schedule`).
    pub retry_schedule: RetrySchedule,
    /// Allow internal callback addresses (`--allow-insecure-callbacks`).
    pub allow_insecure_callbacks: bool,
    /// How long in-flight attempts may finish after shutdown starts (`--shutdown-timeout`).
    pub shutdown_timeout: Duration,
}

impl DispatchSettings {
    /// How long a claim lasts: long enough for an attempt and its recording, after which a
    /// delivery whose claimant died is claimable again.
    pub fn lease(&self) -> Duration {
        self.delivery_timeout * 2 + Duration::from_secs(10)
    }
}

/// The batcher of one process.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    client: reqwest::Client,
    settings: DispatchSettings,
    secrets: SecretBox,
    /// Identifies this process's leases.
    worker: Uuid,
    /// Signalled when a webhook drops below `--max-in-flight-per-webhook`: with `--drain`,
    /// its deliveries may be claimed again without waiting for the poll.
    unsaturated: tokio::sync::Notify,
    /// Attempts in flight per webhook, for `--max-in-flight-per-webhook`.
    in_flight: Mutex<HashMap<Uuid, u32>>,
    /// Where the next claim's scan may start, while webhooks are at their cap.
    skip: Mutex<Option<Skip>>,
    /// While `run` claims: its pipeline, which publishes of this process hand deliveries to.
    running: Mutex<Option<Pipeline>>,
}

/// What the last claim's scan covered while some webhooks were at
/// `--max-in-flight-per-webhook`: every due delivery before `from` was claimed, belonged
/// to one of `saturated`, or was locked by another claim. The next claim starts its scan
/// at `from` if all of `saturated` are still at their cap, so it does not walk their
/// backlog again; each poll forgets it and scans from the oldest (what `from` can miss: a
/// delivery committed over [`Skip::LATE_COMMIT`] after its due time, one released by a
/// claim that rolled back, a lease that expired before `from`).
struct Skip {
    saturated: Vec<Uuid>,
    from: chrono::DateTime<chrono::Utc>,
}

impl Skip {
    /// How far behind the claim's snapshot the next scan starts, for deliveries whose
    /// transactions were still open at the claim (a publish commits after `now()`).
    const LATE_COMMIT: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

    /// What `claim`, made with `saturated` (sorted), covered.
    fn after(claim: &Claim, saturated: Vec<Uuid>) -> Option<Self> {
        if saturated.is_empty() {
            return None;
        }
        let reached = claim.snapshot_time - Self::LATE_COMMIT;
        let from = claim.full_at.map_or(reached, |at| at.min(reached));
        Some(Self { saturated, from })
    }

    /// Where a claim with `saturated` (sorted) may start its scan.
    fn start(skip: Option<&Self>, saturated: &[Uuid]) -> Option<chrono::DateTime<chrono::Utc>> {
        skip.filter(|s| {
            s.saturated
                .iter()
                .all(|w| saturated.binary_search(w).is_ok())
        })
        .map(|s| s.from)
    }
}

impl Dispatcher {
    /// A batcher on `pool`'s database, with a pool of its own.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        pool: PgPool,
        settings: DispatchSettings,
        secrets: SecretBox,
    ) -> anyhow::Result<Self> {
        let client = attempt::client(settings.delivery_timeout, settings.allow_insecure_callbacks)?;
        let worker = Uuid::new_v4();
        Ok(Self {
            inner: Arc::new(Inner {
                pool: store::queue_pool(&pool, QUEUE_CONNECTIONS),
                client,
                settings,
                secrets,
                worker,
                unsaturated: tokio::sync::Notify::new(),
                in_flight: Mutex::new(HashMap::new()),
                skip: Mutex::new(None),
                running: Mutex::new(None),
            }),
        })
    }

    /// Claims one batch, attempts it, records every outcome; returns how many were claimed.
    ///
    /// # Errors
    /// Database errors (claiming or recording); a listener's failure is not an error.
    pub async fn run_once(&self) -> Result<usize> {
        let batch = self.claim(self.inner.settings.batch_size as usize).await?;
        let claimed = batch.len();
        let mut attempts = tokio::task::JoinSet::new();
        for (delivery, target) in batch {
            let this = self.clone();
            attempts.spawn(async move { this.attempt(delivery, target).await });
        }
        let mut outcomes = Vec::with_capacity(claimed);
        while let Some(joined) = attempts.join_next().await {
            if let Ok(Some(outcome)) = joined {
                outcomes.push(outcome);
            }
        }
        let mut conn = store::acquire(&self.inner.pool).await?;
        store::deliveries::record_attempts(&mut conn, self.inner.worker, &outcomes).await?;
        Ok(claimed)
    }

    /// Runs until `shutdown` is cancelled; then lets in-flight attempts finish for up to
    /// `--shutdown-timeout` and records them.
    pub async fn run(self, shutdown: CancellationToken) {
        let settings = &self.inner.settings;
        tracing::info!(worker = %self.inner.worker, batch_size = settings.batch_size,
            poll_interval = ?settings.poll_interval, drain = settings.drain,
            wake_on_publish = settings.wake_on_publish, "batcher started");
        let (outcomes, recorder) = mpsc::channel::<Outcome>(RECORD_BATCH * 4);
        let recording = tokio::spawn(self.clone().record(recorder));
        let pipeline = Pipeline {
            room: Arc::new(Semaphore::new(settings.max_in_flight as usize)),
            attempts: TaskTracker::new(),
            outcomes,
            abandon: CancellationToken::new(),
        };
        *lock(&self.inner.running) = Some(pipeline.clone());
        let mut wake = if settings.wake_on_publish {
            self.listen().await
        } else {
            Wake::default()
        };
        let mut ticker = tokio::time::interval(settings.poll_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Each poll scans the queue from its oldest due delivery.
                _ = ticker.tick() => *lock(&self.inner.skip) = None,
                () = wake.notified() => {}
                () = self.inner.unsaturated.notified(), if settings.drain => {}
                () = shutdown.cancelled() => break,
            }
            if let Err(e) = self.claim_while_room(&pipeline, &shutdown).await {
                tracing::warn!(error.cause_chain = ?anyhow::Error::from(e), "claiming failed; retrying at the next poll");
            }
        }
        // No more handoffs; a publish that reserved room before this hands its deliveries
        // over all the same, and they are waited for below.
        lock(&self.inner.running).take();
        let Pipeline {
            attempts,
            outcomes,
            abandon,
            ..
        } = pipeline;
        attempts.close();
        if tokio::time::timeout(settings.shutdown_timeout, attempts.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = attempts.len(),
                "shutdown timeout: abandoning in-flight attempts (their leases expire)"
            );
            abandon.cancel();
            attempts.wait().await;
        }
        drop(outcomes);
        let _ = recording.await;
        tracing::info!("batcher stopped");
    }

    /// Claims a batch, and with `--drain` the next ones as soon as there is room again, for
    /// as long as claims get all they ask for (the queue may hold more).
    ///
    /// When the pipeline is full it waits for a quarter of `--max-in-flight` (at most a
    /// batch) to free up rather than claiming each freed slot on its own: a claim is a
    /// round trip and a commit, whatever its size.
    async fn claim_while_room(
        &self,
        pipeline: &Pipeline,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let settings = &self.inner.settings;
        let batch_size = settings.batch_size as usize;
        let min_room = (settings.max_in_flight as usize / 4).clamp(1, batch_size);
        loop {
            let permits = take_permits(&pipeline.room, min_room, batch_size, shutdown).await;
            if permits.is_empty() {
                return Ok(());
            }
            let wanted = permits.len();
            let batch = self.claim(wanted).await?;
            let more = batch.len() == wanted;
            if shutdown.is_cancelled() {
                self.release(&batch).await?;
                return Ok(());
            }
            self.start_attempts(pipeline, batch, permits);
            if !(settings.drain && more) {
                return Ok(());
            }
        }
    }

    /// Starts an attempt of each delivery of `batch` with one of `permits` (as many as
    /// `batch` has, or more: the rest are given back), counted against its webhook's cap;
    /// outcomes go to the recorder.
    fn start_attempts(
        &self,
        pipeline: &Pipeline,
        batch: Vec<Claimed>,
        permits: Vec<OwnedSemaphorePermit>,
    ) {
        for ((delivery, target), permit) in batch.into_iter().zip(permits) {
            let counted = InFlight::start(&self.inner, delivery.webhook_id.0);
            let (this, outcomes, abandon) = (
                self.clone(),
                pipeline.outcomes.clone(),
                pipeline.abandon.clone(),
            );
            pipeline.attempts.spawn(async move {
                tokio::select! {
                    outcome = this.attempt(delivery, target) => {
                        if let Some(outcome) = outcome {
                            let _ = outcomes.send(outcome).await;
                        }
                    }
                    () = abandon.cancelled() => {}
                }
                drop((permit, counted));
            });
        }
    }

    /// Room for a publish of this process to lease its deliveries to this batcher as it
    /// queues them (with `--wake-on-publish`, while `run` claims): up to a batch, and for
    /// each webhook what its `--max-in-flight-per-webhook` leaves. `None` when there is no
    /// room, or no batcher to hand to.
    pub fn reserve(&self) -> Option<Reservation> {
        let inner = &self.inner;
        let settings = &inner.settings;
        if !settings.wake_on_publish {
            return None;
        }
        let pipeline = lock(&inner.running).clone()?;
        let permits: Vec<OwnedSemaphorePermit> = (0..settings.batch_size)
            .map_while(|_| pipeline.room.clone().try_acquire_owned().ok())
            .collect();
        if permits.is_empty() {
            return None;
        }
        // Only the webhooks whose room is smaller than the whole handoff constrain it: few
        // (each has over `cap - batch` attempts in flight), so the statement's lookup of
        // them stays small.
        let cap = settings.max_in_flight_per_webhook;
        let (busy, busy_room): (Vec<Uuid>, Vec<i32>) = lock(&inner.in_flight)
            .iter()
            .map(|(&webhook, &n)| (webhook, cap.saturating_sub(n)))
            .filter(|&(_, room)| (room as usize) < permits.len())
            .map(|(webhook, room)| (webhook, saturating_i32(room)))
            .unzip();
        let handoff = Handoff {
            worker: inner.worker,
            lease_secs: settings.lease().as_secs_f64(),
            limit: permits.len() as i64,
            room: saturating_i32(cap),
            busy,
            busy_room,
        };
        Some(Reservation {
            dispatcher: self.clone(),
            pipeline,
            permits,
            handoff,
        })
    }

    /// Claims up to `limit` deliveries, each with its webhook's target.
    async fn claim(&self, limit: usize) -> Result<Vec<Claimed>> {
        let inner = &self.inner;
        let mut conn = store::acquire(&inner.pool).await?;
        let lease = inner.settings.lease().as_secs_f64();
        let saturated = self.saturated();
        let from = Skip::start(lock(&inner.skip).as_ref(), &saturated);
        let claim = store::deliveries::claim(
            &mut conn,
            inner.worker,
            limit as i64,
            lease,
            &saturated,
            from,
        )
        .await?;
        *lock(&inner.skip) = Skip::after(&claim, saturated);
        Ok(self.open_targets(claim.leased))
    }

    /// Pairs each claimed delivery with its webhook's target, opened once per webhook.
    /// `None` when the target cannot be used: its secrets do not open (logged once here; its
    /// deliveries are retried when their leases expire), or the webhook was deleted
    /// between the claim's two statements (its deliveries are deleted with it).
    fn open_targets(&self, leased: Leased) -> Vec<Claimed> {
        let targets: HashMap<_, _> = leased
            .targets
            .into_iter()
            .filter_map(|(webhook, stored)| {
                Target::open(&stored, &self.inner.secrets)
                    .inspect_err(|e| {
                        tracing::error!(error.cause_chain = ?e, webhook_id = %webhook,
                            "cannot read the signing secrets");
                    })
                    .ok()
                    .map(|target| (webhook, Arc::new(target)))
            })
            .collect();
        leased
            .deliveries
            .into_iter()
            .map(|d| {
                let target = targets.get(&d.webhook_id).cloned();
                (d, target)
            })
            .collect()
    }

    /// The webhooks with `--max-in-flight-per-webhook` attempts in flight here, sorted.
    fn saturated(&self) -> Vec<Uuid> {
        let cap = self.inner.settings.max_in_flight_per_webhook;
        let mut saturated: Vec<Uuid> = lock(&self.inner.in_flight)
            .iter()
            .filter(|&(_, &n)| n >= cap)
            .map(|(&webhook, _)| webhook)
            .collect();
        saturated.sort_unstable();
        saturated
    }

    /// Gives back claimed deliveries that will not be attempted (shutdown).
    async fn release(&self, batch: &[Claimed]) -> Result<()> {
        let ids: Vec<Uuid> = batch.iter().map(|(d, _)| d.id).collect();
        let mut conn = store::acquire(&self.inner.pool).await?;
        store::deliveries::release(&mut conn, self.inner.worker, &ids).await?;
        Ok(())
    }

    /// Writes outcomes as they come, as many per statement as are waiting (one commit for
    /// all of them). A failed write is logged; those deliveries are attempted again when
    /// their leases expire.
    async fn record(self, mut outcomes: mpsc::Receiver<Outcome>) {
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        while outcomes.recv_many(&mut batch, RECORD_BATCH).await > 0 {
            let written = async {
                let mut conn = store::acquire(&self.inner.pool).await?;
                store::deliveries::record_attempts(&mut conn, self.inner.worker, &batch).await
            };
            match written.await {
                Ok(n) if n < batch.len() => {
                    tracing::info!(
                        lost = batch.len() - n,
                        "leases lost before recording; their new holders record them"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error.cause_chain = ?anyhow::Error::from(e), count = batch.len(), "recording attempts failed")
                }
            }
            batch.clear();
        }
    }

    async fn listen(&self) -> Wake {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&self.inner.pool).await?;
            listener.listen(store::events::NOTIFY_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let listener = listener
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "LISTEN failed; polling only"))
            .ok();
        Wake {
            listener,
            retry_at: None,
        }
    }

    /// One attempt of one delivery; `None` when it has no usable target (see
    /// [`Self::open_targets`]).
    #[tracing::instrument(skip_all, fields(delivery_id = %delivery.id, webhook_id = %delivery.webhook_id))]
    async fn attempt(
        &self,
        delivery: ClaimedDelivery,
        target: Option<Arc<Target>>,
    ) -> Option<Outcome> {
        let settings = &self.inner.settings;
        let (id, scheduled) = (delivery.id, delivery.scheduled_attempts);
        let (attempt, outcome) = attempt::send(
            &self.inner.client,
            delivery,
            target.as_deref()?,
            settings.delivery_timeout,
            settings.allow_insecure_callbacks,
        )
        .await;
        let verdict = settings.retry_schedule.verdict(scheduled + 1, &outcome);
        tracing::debug!(status = ?attempt.http_status, error = ?attempt.error, ?verdict, "attempted");
        Some(Outcome {
            delivery: id,
            attempt,
            verdict,
        })
    }
}

/// `n` as an SQL integer.
fn saturating_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Locks `mutex`; a panic elsewhere while it was held leaves nothing half-done in these.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// One attempt counted against its webhook's in-flight cap until dropped.
struct InFlight {
    inner: Arc<Inner>,
    webhook: Uuid,
}

impl InFlight {
    fn start(inner: &Arc<Inner>, webhook: Uuid) -> Self {
        let mut in_flight = lock(&inner.in_flight);
        *in_flight.entry(webhook).or_default() += 1;
        Self {
            inner: inner.clone(),
            webhook,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut in_flight = lock(&self.inner.in_flight);
        if let Some(n) = in_flight.get_mut(&self.webhook) {
            if *n == self.inner.settings.max_in_flight_per_webhook {
                self.inner.unsaturated.notify_one();
            }
            *n -= 1;
            if *n == 0 {
                in_flight.remove(&self.webhook);
            }
        }
    }
}

/// What the claim loop and handoffs feed: room for attempts, the attempts, and the recorder.
#[derive(Clone)]
struct Pipeline {
    room: Arc<Semaphore>,
    attempts: TaskTracker,
    outcomes: mpsc::Sender<Outcome>,
    /// Cancelled when the shutdown timeout runs out: in-flight attempts are dropped.
    abandon: CancellationToken,
}

/// Room reserved in a batcher for the deliveries of one publish (see
/// [`Dispatcher::reserve`]); dropped unused, it gives the room back.
pub struct Reservation {
    dispatcher: Dispatcher,
    pipeline: Pipeline,
    permits: Vec<OwnedSemaphorePermit>,
    handoff: Handoff,
}

impl Reservation {
    /// What the publish may lease to the batcher.
    pub fn handoff(&self) -> &Handoff {
        &self.handoff
    }

    /// Attempts the deliveries the publish leased (at most what was reserved), once it has
    /// committed; the room they did not take is given back.
    pub fn deliver(self, leased: Leased) {
        let Self {
            dispatcher,
            pipeline,
            permits,
            ..
        } = self;
        let batch = dispatcher.open_targets(leased);
        dispatcher.start_attempts(&pipeline, batch, permits);
    }
}

/// Waits for room for `min` attempts, then takes what else is free, up to `max`. Empty when
/// shutdown starts first.
async fn take_permits(
    room: &Arc<Semaphore>,
    min: usize,
    max: usize,
    shutdown: &CancellationToken,
) -> Vec<OwnedSemaphorePermit> {
    let mut permits: Vec<OwnedSemaphorePermit> = Vec::with_capacity(max);
    while permits.len() < min {
        let permit = tokio::select! {
            permit = room.clone().acquire_owned() => permit,
            () = shutdown.cancelled() => return Vec::new(),
        };
        match permit {
            Ok(permit) => permits.push(permit),
            Err(_) => return Vec::new(),
        }
    }
    while permits.len() < max {
        match room.clone().try_acquire_owned() {
            Ok(permit) => permits.push(permit),
            Err(_) => break,
        }
    }
    permits
}

/// The `--wake-on-publish` LISTEN connection.
#[derive(Default)]
struct Wake {
    listener: Option<sqlx::postgres::PgListener>,
    /// While the connection is down: when to try again.
    retry_at: Option<tokio::time::Instant>,
}

impl Wake {
    /// How long a lost LISTEN connection waits between reconnection attempts.
    const RETRY: Duration = Duration::from_secs(1);

    /// Completes when a NOTIFY arrives; never without a listener. A lost connection is
    /// reconnected (by the listener's next `recv`) at most once per [`Self::RETRY`], and
    /// the loss is logged once: while the database is unreachable the batcher polls, and
    /// does not spin on failing reconnections. Cancel-safe: a dropped call keeps the
    /// retry time for the next one.
    async fn notified(&mut self) {
        let Some(listener) = &mut self.listener else {
            return std::future::pending().await;
        };
        loop {
            if let Some(at) = self.retry_at {
                tokio::time::sleep_until(at).await;
            }
            match listener.recv().await {
                Ok(_) => {
                    if self.retry_at.take().is_some() {
                        tracing::info!("LISTEN connection back; woken by publishes again");
                    }
                    return;
                }
                Err(e) => {
                    if self.retry_at.is_none() {
                        tracing::warn!(error = %e,
                            "LISTEN connection lost; polling only until it is back");
                    }
                    self.retry_at = Some(tokio::time::Instant::now() + Self::RETRY);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};

    use super::*;

    /// A claim whose snapshot is at 0 s and, when `full_at` is given, was full with its
    /// last delivery due at that second.
    fn claim(full_at: Option<i64>) -> Claim {
        let at = |secs| Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap();
        Claim {
            leased: Leased::default(),
            snapshot_time: at(0),
            full_at: full_at.map(at),
        }
    }

    #[test]
    fn a_claim_remembers_where_its_scan_ended_only_while_webhooks_are_at_their_cap() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let snapshot = claim(None).snapshot_time;
        // Nobody at the cap: nothing is skipped, so there is nothing to remember.
        assert!(Skip::after(&claim(None), vec![]).is_none());
        // Not full: the scan reached the snapshot; the next starts a second before it.
        let skip = Skip::after(&claim(None), vec![a]).unwrap();
        assert_eq!(skip.from, snapshot - Skip::LATE_COMMIT);
        // Full: the scan stopped at the last delivery it claimed...
        let skip = Skip::after(&claim(Some(-5)), vec![a]).unwrap();
        assert_eq!(skip.from, snapshot - chrono::TimeDelta::seconds(5));
        // ... unless that was due within the last second.
        let skip = Skip::after(&claim(Some(0)), vec![a]).unwrap();
        assert_eq!(skip.from, snapshot - Skip::LATE_COMMIT);

        // The next claim starts there while every skipped webhook is still at its cap...
        let skip = Skip::after(&claim(None), vec![a]).unwrap();
        assert_eq!(Skip::start(Some(&skip), &[a]), Some(skip.from));
        assert_eq!(Skip::start(Some(&skip), &[a, b]), Some(skip.from));
        // ...and from the oldest once one of them is not: its backlog is claimable again.
        assert_eq!(Skip::start(Some(&skip), &[b]), None);
        assert_eq!(Skip::start(Some(&skip), &[]), None);
        assert_eq!(Skip::start(None, &[a]), None);
    }
}
