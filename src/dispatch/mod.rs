//! The batcher: claim due deliveries with a lease, attempt them concurrently, record every
//! attempt. [`Batcher::step`] is one step of that work (claim while there is room, start
//! the attempts; the recorder writes their outcomes in bulk); `run` is the loop `serve`
//! runs around it, woken by its poll interval (and, with `--wake-on-publish`, by
//! LISTEN/NOTIFY); `run_once` is one step whose attempts are waited for, for tests and
//! tools. While it runs with `--wake-on-publish`, publishes of this process
//! [`Dispatcher::reserve`] room in it, lease that many of their deliveries to it as they
//! insert them, and hand them over once committed ([`Reservation::deliver`]): attempted
//! like claimed ones, unclaimed.
//!
//! The parts: `batcher.rs` (the pipeline: room, attempts, recorder), [`request`] (the HTTP
//! request of an attempt, one file per delivery format), [`attempt`] (sending it),
//! [`retry`] (what follows), `rooms.rs` (the in-flight counts and caps), `skip.rs` (where a
//! claim's scan starts).
//!
//! Invariants: no transaction is open during an HTTP attempt (the claim commits first);
//! an outcome is recorded only while this batcher still holds the lease; at most
//! `--max-in-flight` attempts run at once, and no more than `--max-in-flight-per-webhook` of
//! one webhook and `--max-in-flight-per-owner` of one owner (claims and handoffs keep to
//! the room left, see `rooms.rs`), so a listener that never answers, or an owner with many,
//! holds a bounded share; infrastructure errors (`Err`) are logged once, in `run`, and the
//! loop goes on.

mod activity;
pub mod attempt;
mod batcher;
pub mod request;
pub mod retry;
mod rooms;
mod skip;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use self::batcher::{Batcher, Reservation};
use self::request::Target;
use self::retry::RetrySchedule;
use self::rooms::{Caps, InFlightCounts, Rooms};
use self::skip::Skip;
use crate::domain::{DeliveryId, WebhookId};
use crate::error::Result;
use crate::metrics::{self, DeliveryLabels, Metrics};
use crate::secret_box::SecretBox;
use crate::store;
use crate::store::notifications::{Notice, Notifications};
use crate::store::queue::{Attempted, ClaimedDelivery, Leased, Outcome};

/// The batcher's own connections (see [`store::queue_pool`]): the claim loop, the recorder,
/// the `--wake-on-publish` listener, and one to spare.
const QUEUE_CONNECTIONS: u32 = 4;

/// A claimed delivery with its webhook's target (`None`: see [`Dispatcher::open_targets`])
/// and owner.
struct Claimed {
    delivery: ClaimedDelivery,
    target: Option<Arc<Target>>,
    owner: Arc<str>,
    /// Its webhook's `webhook` label in the metrics.
    label: Arc<str>,
}

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
    /// No new claims for the webhooks of an owner with this many attempts in flight in this
    /// process (`--max-in-flight-per-owner`).
    pub max_in_flight_per_owner: u32,
    /// At least one fair claim in this interval (`--fair-claim-interval`).
    pub fair_claim_interval: Duration,
    /// Per-attempt timeout (`--delivery-timeout`).
    pub delivery_timeout: Duration,
    /// Delays before each retry (`--retry-schedule`).
    pub retry_schedule: RetrySchedule,
    /// Allow internal callback addresses (`--allow-insecure-callbacks`).
    pub allow_insecure_callbacks: bool,
    /// The proxy deliveries go through, if any (`--delivery-proxy`).
    pub delivery_proxy: Option<url::Url>,
    /// How long in-flight attempts may finish after shutdown starts (`--shutdown-timeout`).
    pub shutdown_timeout: Duration,
    /// How much of each request's body its attempt record keeps (`--record-request-bytes`).
    pub record_request_bytes: usize,
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
    /// The same, without TLS certificate verification, for subscriptions that ask for it
    /// (`skip_tls_verify`: Harbor's `skip_cert_verify`, GitHub's `insecure_ssl`).
    insecure_client: reqwest::Client,
    /// For the configuration file's webhooks: internal addresses allowed.
    trusted_client: reqwest::Client,
    settings: DispatchSettings,
    secrets: SecretBox,
    metrics: Arc<Metrics>,
    /// Identifies this process's leases.
    worker: Uuid,
    /// Signalled when a webhook drops below `--max-in-flight-per-webhook` or an owner below
    /// `--max-in-flight-per-owner`: with `--drain`, their deliveries may be claimed again
    /// without waiting for the poll.
    unsaturated: tokio::sync::Notify,
    /// Whether the last claim left something at its cap (passed over, or kept to its room):
    /// then every attempt that ends signals `unsaturated`, as room it ran short of may be
    /// back (the claim's view of the room counted attempts that had not started yet).
    room_limited: std::sync::atomic::AtomicBool,
    /// Attempts in flight per webhook and per owner.
    in_flight: Mutex<InFlightCounts>,
    /// Where the next claim's top-up scan may start, while webhooks are at their cap.
    skip: Mutex<Option<Skip>>,
    /// The webhook the last claim's fair walk reached: the next one starts after it.
    reached: Mutex<Option<WebhookId>>,
    /// When the last fair claim was made (`--fair-claim-interval`).
    last_fair: Mutex<Option<std::time::Instant>>,
    /// While `run` claims: its pipeline, which publishes of this process hand deliveries to.
    running: Mutex<Option<Batcher>>,
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
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let client = |verify_tls| {
            attempt::client(
                settings.delivery_timeout,
                settings.allow_insecure_callbacks,
                settings.delivery_proxy.as_ref(),
                verify_tls,
            )
        };
        let (client, insecure_client) = (client(true)?, client(false)?);
        let trusted_client = attempt::client(
            settings.delivery_timeout,
            true,
            settings.delivery_proxy.as_ref(),
            true,
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool: store::queue_pool(&pool, QUEUE_CONNECTIONS),
                client,
                insecure_client,
                trusted_client,
                settings,
                secrets,
                metrics,
                worker: Uuid::new_v4(),
                unsaturated: tokio::sync::Notify::new(),
                room_limited: std::sync::atomic::AtomicBool::new(false),
                in_flight: Mutex::new(InFlightCounts::default()),
                skip: Mutex::new(None),
                reached: Mutex::new(None),
                last_fair: Mutex::new(None),
                running: Mutex::new(None),
            }),
        })
    }

    /// A pipeline of this batcher, to [`Batcher::step`] and then [`Batcher::finish`].
    pub fn start(&self) -> Batcher {
        Batcher::start(self.clone())
    }

    /// One step on a pipeline of its own, and its attempts waited for and recorded: what
    /// `run` does on a wake-up, start to finish. Returns how many deliveries it claimed.
    ///
    /// # Errors
    /// Database errors while claiming; a listener's failure is not an error, and nor is a
    /// failure to record (logged; those deliveries are attempted again after their lease).
    pub async fn run_once(&self) -> Result<usize> {
        let batcher = self.start();
        let claimed = batcher.step(&CancellationToken::new()).await;
        batcher.finish(None).await;
        claimed
    }

    /// Runs until `shutdown` is cancelled; then lets in-flight attempts finish for up to
    /// `--shutdown-timeout` and records them.
    pub async fn run(self, shutdown: CancellationToken) {
        let settings = &self.inner.settings;
        tracing::info!(worker = %self.inner.worker, batch_size = settings.batch_size,
            poll_interval = ?settings.poll_interval, drain = settings.drain,
            wake_on_publish = settings.wake_on_publish, "batcher started");
        let batcher = self.start();
        *lock(&self.inner.running) = Some(batcher.clone());
        let mut wake = settings
            .wake_on_publish
            .then(|| Notifications::new(self.inner.pool.clone(), &[store::events::NOTIFY_CHANNEL]));
        let mut ticker = tokio::time::interval(settings.poll_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Each poll scans the queue from its oldest due delivery.
                _ = ticker.tick() => *lock(&self.inner.skip) = None,
                () = published(&mut wake) => {}
                () = self.inner.unsaturated.notified(), if settings.drain => {}
                () = shutdown.cancelled() => break,
            }
            if let Err(e) = batcher.step(&shutdown).await {
                tracing::warn!(error.cause_chain = ?anyhow::Error::from(e),
                    "claiming failed; retrying at the next poll");
            }
        }
        // No more handoffs; a publish that reserved room before this hands its deliveries
        // over all the same, and they are waited for below.
        lock(&self.inner.running).take();
        batcher.finish(Some(settings.shutdown_timeout)).await;
        tracing::info!("batcher stopped");
    }

    /// Room for a publish of this process to lease its deliveries to this batcher as it
    /// queues them (with `--wake-on-publish`, while `run` claims): up to a batch, for each
    /// webhook what its `--max-in-flight-per-webhook` leaves, and no more in all than the
    /// owner with the least room left could take. `None` when there is no room, or no
    /// batcher to hand to.
    pub fn reserve(&self) -> Option<Reservation> {
        if !self.inner.settings.wake_on_publish {
            return None;
        }
        let batcher = lock(&self.inner.running).clone()?;
        Reservation::take(batcher)
    }

    /// Claims up to `limit` deliveries, each with its webhook's target.
    async fn claim(&self, limit: usize) -> Result<Vec<Claimed>> {
        let inner = &self.inner;
        let mut conn = store::acquire(&inner.pool).await?;
        let lease = inner.settings.lease().as_secs_f64();
        let mut rooms = self.rooms();
        let saturated = rooms.saturated();
        let scope = store::queue::ClaimScope {
            from: Skip::start(lock(&inner.skip).as_ref(), &saturated),
            after: *lock(&inner.reached),
            max_webhooks: webhooks_per_claim(limit),
            fair: self.fair_turn(),
        };
        let started = std::time::Instant::now();
        let claim = store::queue::claim(
            &mut conn,
            inner.worker,
            limit as i64,
            lease,
            scope,
            &mut rooms,
        )
        .await?;
        inner.metrics.claimed(started.elapsed());
        if claim.reached.is_some() {
            *lock(&inner.reached) = claim.reached;
        }
        // What the claim passed over or left behind is what is full now (counts only grew).
        let full = rooms.saturated();
        (inner.room_limited).store(!full.is_empty(), std::sync::atomic::Ordering::Relaxed);
        *lock(&inner.skip) = Skip::after(&claim, full);
        Ok(self.open_targets(claim.leased))
    }

    /// Whether this claim walks the webhooks fairly: when the last fair one was made
    /// `--fair-claim-interval` ago or more (so every claim at the default cadence). The
    /// claims in between take the oldest due deliveries, which lie together in the table
    /// and cost far less to claim and update than one delivery of each of a hundred webhooks
    /// (BENCHMARKS.md); draining a backlog, no webhook waits more than the interval (and a
    /// claim) behind another's.
    fn fair_turn(&self) -> bool {
        let interval = self.inner.settings.fair_claim_interval;
        let mut last = lock(&self.inner.last_fair);
        let due = last.is_none_or(|at| at.elapsed() >= interval);
        if due {
            *last = Some(std::time::Instant::now());
        }
        due
    }

    /// Pairs each claimed delivery with its webhook's target, opened once per webhook, and
    /// owner.
    /// `None` when the target cannot be used: its secrets do not open (logged once here; its
    /// deliveries are retried when their leases expire), or the webhook was deleted
    /// between the claim's two statements (its deliveries are deleted with it).
    fn open_targets(&self, leased: Leased) -> Vec<Claimed> {
        let targets: HashMap<_, _> = leased
            .targets
            .into_iter()
            .map(|(webhook, stored)| {
                let owner = Arc::<str>::from(stored.owner.as_str());
                let label = self
                    .inner
                    .metrics
                    .webhook_label(webhook, &stored.render.name);
                let target = Target::open(webhook, stored, &self.inner.secrets)
                    .inspect_err(|e| {
                        tracing::error!(error.cause_chain = ?e, webhook_id = %webhook,
                            "cannot read the signing secrets");
                    })
                    .ok()
                    .map(Arc::new);
                (webhook, (target, owner, label))
            })
            .collect();
        leased
            .deliveries
            .into_iter()
            .map(|delivery| {
                let (target, owner, label) = targets
                    .get(&delivery.webhook_id)
                    .cloned()
                    .unwrap_or_else(|| (None, Arc::from(""), Arc::from(metrics::OTHER)));
                Claimed {
                    delivery,
                    target,
                    owner,
                    label,
                }
            })
            .collect()
    }

    /// The room the attempts in flight here leave each webhook and owner.
    fn rooms(&self) -> Rooms {
        Rooms::of(&lock(&self.inner.in_flight), self.inner.caps())
    }

    /// Gives back claimed deliveries that will not be attempted (shutdown).
    async fn release(&self, batch: &[Claimed]) -> Result<()> {
        let ids: Vec<DeliveryId> = batch.iter().map(|c| c.delivery.id).collect();
        let mut conn = store::acquire(&self.inner.pool).await?;
        store::queue::release(&mut conn, self.inner.worker, &ids).await?;
        Ok(())
    }

    /// One attempt of one delivery of `owner`'s: build its request, send it, decide what
    /// follows. `None` when it has no usable target (see [`Self::open_targets`]).
    #[tracing::instrument(skip_all, fields(delivery_id = %delivery.id, webhook_id = %delivery.webhook_id))]
    async fn attempt(
        &self,
        delivery: ClaimedDelivery,
        target: Option<Arc<Target>>,
        owner: Arc<str>,
        label: Arc<str>,
    ) -> Option<(Attempted, DeliveryLabels)> {
        let settings = &self.inner.settings;
        let target = target?;
        let labels = DeliveryLabels {
            webhook_id: delivery.webhook_id,
            webhook: label,
            event: target.event_label(&delivery.event.event_type, delivery.event.part),
            published: delivery.event.create_time,
        };
        let (id, scheduled) = (delivery.id, delivery.scheduled_attempts);
        let start_time = chrono::Utc::now();
        let sent = match request::build(delivery, &target, start_time, settings.delivery_timeout) {
            Ok(request) => {
                let guard = attempt::Guard {
                    allow_internal: settings.allow_insecure_callbacks,
                    proxied: settings.delivery_proxy.is_some(),
                };
                // The configuration file's webhooks are the operator's, as trusted as the
                // flags: they may reach internal addresses, by name too.
                let (client, guard) = if target.file_retries.is_some() {
                    let trusted = attempt::Guard {
                        allow_internal: true,
                        ..guard
                    };
                    (&self.inner.trusted_client, trusted)
                } else if request.skip_tls_verify {
                    (&self.inner.insecure_client, guard)
                } else {
                    (&self.inner.client, guard)
                };
                attempt::send_recorded(
                    client,
                    request,
                    guard,
                    start_time,
                    settings.record_request_bytes,
                )
                .await
            }
            Err(error) => (
                crate::domain::AttemptRecord::failed(start_time, error),
                None,
            ),
        };
        let (record, retry_after) = sent;
        let outcome = match target.file_retries {
            Some(file) => retry::file_outcome(file, scheduled + 1, record.http_status),
            None => match settings.retry_schedule.outcome(
                scheduled + 1,
                record.http_status,
                retry_after,
            ) {
                // A subscription without retries fails at its first failed attempt.
                Outcome::RetryIn(_) if target.no_retries => Outcome::Failed,
                outcome => outcome,
            },
        };
        tracing::debug!(status = ?record.http_status, error = ?record.error, ?outcome, "attempted");
        Some((
            Attempted {
                delivery: id,
                owner,
                record,
                outcome,
            },
            labels,
        ))
    }
}

impl Inner {
    /// The in-flight caps.
    fn caps(&self) -> Caps {
        Caps {
            per_webhook: self.settings.max_in_flight_per_webhook,
            per_owner: self.settings.max_in_flight_per_owner,
        }
    }
}

/// Completes when something is published (a NOTIFY on the wake-up channel), or when the
/// LISTEN connection is back after a loss (anything may have been published meanwhile);
/// never without `--wake-on-publish`. Cancel-safe.
async fn published(wake: &mut Option<Notifications>) {
    let Some(notifications) = wake else {
        return std::future::pending().await;
    };
    while let Notice::Lost = notifications.next().await {}
}

/// Locks `mutex`; a panic elsewhere while it was held leaves nothing half-done in these.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The most webhooks one claim of `limit` walks: every one, up to 100, so that at the
/// default batch of 20 twenty webhooks each get one delivery per poll; beyond, a tenth of
/// the limit, so that each of them gets a share of at least ten (walking a webhook costs two
/// index probes) and the rest wait for the next claim's turn of the rotation.
fn webhooks_per_claim(limit: usize) -> i64 {
    let limit = limit as i64;
    if limit <= 100 {
        limit
    } else {
        (limit / 10).max(100)
    }
}
