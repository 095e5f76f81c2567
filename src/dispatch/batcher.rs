//! One batcher's pipeline: room for `--max-in-flight` attempts, the attempts themselves
//! (each counted against its webhook's `--max-in-flight-per-webhook` and its owner's
//! `--max-in-flight-per-owner` while it runs), and the recorder that writes their outcomes
//! in bulk. [`Batcher::step`] is the one step of work: `serve` runs it on every wake-up,
//! tests call it directly, and [`Batcher::finish`] waits for everything it started to be
//! recorded.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::activity::ActivityBuffer;
use super::{Claimed, Dispatcher, Inner, lock};
use crate::domain::WebhookId;
use crate::error::Result;
use crate::metrics::{DeliveryLabels, Finished};
use crate::store;
use crate::store::events::Handoff;
use crate::store::queue::{Attempted, Leased, Outcome};

/// The most outcomes written in one statement.
const RECORD_BATCH: usize = 1000;
/// How often the recorder writes the subscriptions' activity while attempts keep coming.
const ACTIVITY_EVERY: Duration = Duration::from_secs(1);

/// The pipeline of one batcher (see the module docs). Clones share it.
#[derive(Clone)]
pub struct Batcher {
    dispatcher: Dispatcher,
    room: Arc<Semaphore>,
    attempts: TaskTracker,
    outcomes: mpsc::Sender<(Attempted, DeliveryLabels)>,
    /// Cancelled when the shutdown timeout runs out: in-flight attempts are dropped.
    abandon: CancellationToken,
    recorder: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Batcher {
    /// A pipeline for `dispatcher`, its recorder started.
    pub(super) fn start(dispatcher: Dispatcher) -> Self {
        let (outcomes, recorded) = mpsc::channel(RECORD_BATCH * 4);
        let recorder = tokio::spawn(record(dispatcher.clone(), recorded));
        let room = dispatcher.inner.settings.max_in_flight as usize;
        Self {
            dispatcher,
            room: Arc::new(Semaphore::new(room)),
            attempts: TaskTracker::new(),
            outcomes,
            abandon: CancellationToken::new(),
            recorder: Arc::new(Mutex::new(Some(recorder))),
        }
    }

    /// Claims a batch as soon as there is room, and with `--drain` the next ones as long as
    /// claims get all they ask for (the queue may hold more), and starts their attempts;
    /// returns how many it claimed. Waits for room first: for a quarter of
    /// `--max-in-flight` (at most a batch) rather than for each freed slot on its own, as
    /// a claim is a round trip and a commit whatever its size. Returns at once, claiming
    /// nothing, once `shutdown` is cancelled.
    ///
    /// # Errors
    /// Database errors while claiming; attempts already started go on.
    pub async fn step(&self, shutdown: &CancellationToken) -> Result<usize> {
        let settings = &self.dispatcher.inner.settings;
        let batch_size = settings.batch_size as usize;
        let min_room = (settings.max_in_flight as usize / 4).clamp(1, batch_size);
        let mut claimed = 0;
        loop {
            let permits = take_permits(&self.room, min_room, batch_size, shutdown).await;
            if permits.is_empty() {
                return Ok(claimed);
            }
            let wanted = permits.len();
            let batch = self.dispatcher.claim(wanted).await?;
            if shutdown.is_cancelled() {
                self.dispatcher.release(&batch).await?;
                return Ok(claimed);
            }
            let more = batch.len() == wanted;
            claimed += batch.len();
            self.start_attempts(batch, permits);
            if !(settings.drain && more) {
                return Ok(claimed);
            }
        }
    }

    /// Starts an attempt of each delivery of `batch` with one of `permits` (as many as
    /// `batch` has, or more: the rest are given back), counted against its webhook's and
    /// its owner's caps; outcomes go to the recorder.
    fn start_attempts(&self, batch: Vec<Claimed>, permits: Vec<OwnedSemaphorePermit>) {
        for (claimed, permit) in batch.into_iter().zip(permits) {
            let Claimed {
                delivery,
                target,
                owner,
                label,
            } = claimed;
            let counted =
                InFlight::start(&self.dispatcher.inner, delivery.webhook_id, owner.clone());
            let id = delivery.id;
            let dispatcher = self.dispatcher.clone();
            let attempt = AssertUnwindSafe(async move {
                dispatcher.attempt(delivery, target, owner, label).await
            });
            let (outcomes, abandon) = (self.outcomes.clone(), self.abandon.clone());
            self.attempts.spawn(async move {
                let attempted = tokio::select! {
                    attempted = attempt.catch_unwind() => attempted,
                    () = abandon.cancelled() => return,
                };
                // The attempt is over: its webhook may be claimed for again, even before
                // its outcome is recorded.
                drop(counted);
                match attempted {
                    Ok(Some(attempted)) => {
                        if outcomes.send(attempted).await.is_err() {
                            tracing::error!(delivery_id = %id,
                                "the recorder is gone; the delivery is attempted again when its lease expires");
                        }
                    }
                    Ok(None) => {}
                    Err(panic) => tracing::error!(delivery_id = %id, cause = panic_message(&*panic),
                        "an attempt panicked; the delivery is attempted again when its lease expires"),
                }
                // Room is given back once the recorder has taken the outcome: a recorder
                // that falls behind slows claiming down.
                drop(permit);
            });
        }
    }

    /// Stops taking work and waits until every attempt started has ended and its outcome
    /// is recorded. With `timeout`, attempts still running after it are abandoned (their
    /// leases expire, and they are attempted again).
    pub async fn finish(self, timeout: Option<Duration>) {
        let Self {
            attempts,
            outcomes,
            abandon,
            recorder,
            ..
        } = self;
        attempts.close();
        if let Some(timeout) = timeout
            && tokio::time::timeout(timeout, attempts.wait())
                .await
                .is_err()
        {
            tracing::warn!(
                left = attempts.len(),
                "shutdown timeout: abandoning in-flight attempts (their leases expire)"
            );
            abandon.cancel();
        }
        attempts.wait().await;
        drop(outcomes);
        let recorder = lock(&recorder).take();
        if let Some(recorder) = recorder
            && let Err(e) = recorder.await
        {
            tracing::error!(error = %e, "the recorder did not finish");
        }
    }
}

/// Writes outcomes as they come, as many per statement as are waiting (one commit for all of
/// them), until every sender is gone. A failed write is logged; those deliveries are
/// attempted again when their leases expire. A panic is logged with its cause.
async fn record(dispatcher: Dispatcher, outcomes: mpsc::Receiver<(Attempted, DeliveryLabels)>) {
    let recording = AssertUnwindSafe(record_until_closed(&dispatcher.inner, outcomes));
    if let Err(panic) = recording.catch_unwind().await {
        tracing::error!(
            cause = panic_message(&*panic),
            "the recorder panicked; unrecorded attempts are made again when their leases expire"
        );
    }
}

async fn record_until_closed(
    inner: &Inner,
    mut outcomes: mpsc::Receiver<(Attempted, DeliveryLabels)>,
) {
    let mut received = Vec::with_capacity(RECORD_BATCH);
    let mut activity = ActivityBuffer::default();
    let mut written = Instant::now();
    loop {
        // Activity is written once a second while attempts keep coming, and at once when
        // they pause.
        let waited = tokio::time::timeout(
            ACTIVITY_EVERY,
            outcomes.recv_many(&mut received, RECORD_BATCH),
        )
        .await;
        match waited {
            Ok(0) => break,
            Ok(_) => record_batch(inner, received.drain(..).unzip(), &mut activity).await,
            Err(_) => {}
        }
        if waited.is_err() || written.elapsed() >= ACTIVITY_EVERY {
            write_activity(inner, &mut activity).await;
            written = Instant::now();
        }
    }
    write_activity(inner, &mut activity).await;
}

/// Records one batch of outcomes, and counts and notes those recorded.
async fn record_batch(
    inner: &Inner,
    (batch, labels): (Vec<Attempted>, Vec<DeliveryLabels>),
    activity: &mut ActivityBuffer,
) {
    let started = Instant::now();
    let written = async {
        let mut conn = store::acquire(&inner.pool).await?;
        store::queue::record_attempts(&mut conn, inner.worker, &batch).await
    };
    match written.await {
        Ok(recorded) => {
            inner.metrics.recorded(started.elapsed());
            // Counted once recorded: a delivery whose lease was lost is its new holder's
            // to count.
            for (attempted, labels) in batch.iter().zip(&labels) {
                if recorded.contains(&attempted.delivery.0) {
                    let record = &attempted.record;
                    let finished = finished(&attempted.outcome);
                    inner
                        .metrics
                        .attempted(labels, record.http_status, finished);
                    activity.note(
                        labels.webhook_id,
                        labels.event,
                        labels.published,
                        record,
                        matches!(attempted.outcome, Outcome::Delivered),
                    );
                }
            }
            if recorded.len() < batch.len() {
                tracing::info!(
                    lost = batch.len() - recorded.len(),
                    "leases lost before recording; their new holders record them"
                );
            }
        }
        Err(e) => tracing::warn!(error.cause_chain = ?anyhow::Error::from(e),
            count = batch.len(), "recording attempts failed"),
    }
}

/// Writes the activity noted so far; on failure it is dropped (it is only ever the latest
/// of what the delivery log holds in full).
async fn write_activity(inner: &Inner, activity: &mut ActivityBuffer) {
    if activity.is_empty() {
        return;
    }
    let rows = activity.take();
    let hours = activity.take_hours();
    let written = async {
        let mut conn = store::acquire(&inner.pool).await?;
        store::activity::record(&mut conn, rows).await?;
        store::activity::record_hours(&mut conn, hours).await
    };
    if let Err(e) = written.await {
        tracing::warn!(error.cause_chain = ?anyhow::Error::from(e),
            "writing subscriptions' last triggers and responses failed; dropped");
    }
}

/// What `outcome` finishes, as the metrics count it.
fn finished(outcome: &Outcome) -> Finished {
    match outcome {
        Outcome::Delivered => Finished::Success,
        Outcome::RetryIn(_) => Finished::No,
        Outcome::Failed | Outcome::FailedAndDisable(_) => Finished::Error,
    }
}

/// What a panic carried, as text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
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
    permits.extend((permits.len()..max).map_while(|_| room.clone().try_acquire_owned().ok()));
    permits
}

/// One attempt counted against its webhook's and its owner's in-flight caps until dropped.
struct InFlight {
    inner: Arc<Inner>,
    webhook: WebhookId,
    owner: Arc<str>,
}

impl InFlight {
    fn start(inner: &Arc<Inner>, webhook: WebhookId, owner: Arc<str>) -> Self {
        lock(&inner.in_flight).start(webhook, &owner);
        Self {
            inner: inner.clone(),
            webhook,
            owner,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let caps = self.inner.caps();
        let freed = lock(&self.inner.in_flight).end(self.webhook, &self.owner, caps);
        let limited = (self.inner.room_limited).load(std::sync::atomic::Ordering::Relaxed);
        if freed || limited {
            self.inner.unsaturated.notify_one();
        }
    }
}

/// Room reserved in a batcher for the deliveries of one publish (see
/// [`Dispatcher::reserve`]); dropped unused, it gives the room back.
pub struct Reservation {
    batcher: Batcher,
    permits: Vec<OwnedSemaphorePermit>,
    handoff: Handoff,
}

impl Reservation {
    /// Up to a batch of room in `batcher`, for each webhook what its
    /// `--max-in-flight-per-webhook` leaves, and no more in all than the owner with the least
    /// room left could take (see [`Dispatcher::reserve`]); `None` when there is no room.
    pub(super) fn take(batcher: Batcher) -> Option<Self> {
        let inner = batcher.dispatcher.inner.clone();
        let settings = &inner.settings;
        let permits: Vec<OwnedSemaphorePermit> = (0..settings.batch_size)
            .map_while(|_| batcher.room.clone().try_acquire_owned().ok())
            .collect();
        if permits.is_empty() {
            return None;
        }
        // Only the webhooks whose room is smaller than the whole handoff constrain it: few
        // (each has over `cap - batch` attempts in flight), so the statement's lookup of
        // them stays small.
        let cap = settings.max_in_flight_per_webhook;
        let in_flight = lock(&inner.in_flight);
        let (busy, busy_room): (Vec<WebhookId>, Vec<i32>) = (in_flight.webhooks.iter())
            .map(|(&webhook, &n)| (webhook, cap.saturating_sub(n)))
            .filter(|&(_, room)| (room as usize) < permits.len())
            .map(|(webhook, room)| (webhook, saturating_i32(room)))
            .unzip();
        // Nothing is handed to an owner at its cap, and no more in all than the owner with
        // the least room left has (the statement cannot share an owner's room between its
        // webhooks; a claim can).
        let owner_room = |n: u32| settings.max_in_flight_per_owner.saturating_sub(n) as usize;
        let full_owners = (in_flight.owners.iter())
            .filter(|&(_, &n)| owner_room(n) == 0)
            .map(|(owner, _)| owner.to_string())
            .collect();
        let limit = (in_flight.owners.values())
            .map(|&n| owner_room(n))
            .filter(|&room| room > 0)
            .fold(permits.len(), usize::min);
        drop(in_flight);
        let handoff = Handoff {
            worker: inner.worker,
            lease_secs: settings.lease().as_secs_f64(),
            limit: limit as i64,
            room: saturating_i32(cap),
            busy,
            busy_room,
            full_owners,
        };
        Some(Self {
            batcher,
            permits,
            handoff,
        })
    }

    /// What the publish may lease to the batcher.
    pub fn handoff(&self) -> &Handoff {
        &self.handoff
    }

    /// Attempts the deliveries the publish leased (at most what was reserved), once it has
    /// committed; the room they did not take is given back.
    pub fn deliver(self, leased: Leased) {
        let batch = self.batcher.dispatcher.open_targets(leased);
        self.batcher.start_attempts(batch, self.permits);
    }
}

/// `n` as an SQL integer.
fn saturating_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
