//! The batcher: claim due deliveries with a lease, attempt them concurrently, record every
//! attempt. `run_once` is one batch (tests call it directly); `run` is the loop `serve`
//! runs, woken by its poll interval and, with `--wake-on-publish`, by LISTEN/NOTIFY.
//!
//! Invariants: no transaction is open during an HTTP attempt (the claim commits first);
//! an outcome is recorded only while this batcher still holds the lease; infrastructure
//! errors (`Err`) are logged once, here, and the loop goes on.

pub mod attempt;
pub mod retry;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::retry::RetrySchedule;
use crate::domain::ClaimedDelivery;
use crate::error::Result;
use crate::secret_box::SecretBox;
use crate::signing::SigningSecret;
use crate::store;

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
    /// How long a claim lasts: long enough for every attempt of a batch to finish, after
    /// which a delivery whose claimant died is claimable again.
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
}

impl Dispatcher {
    /// A batcher over `pool`.
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
                pool,
                client,
                settings,
                secrets,
                worker,
            }),
        })
    }

    /// Claims one batch, attempts it, records every outcome; returns how many were claimed.
    ///
    /// # Errors
    /// Database errors (claiming or recording); a listener's failure is not an error.
    pub async fn run_once(&self) -> Result<usize> {
        self.run_batch(&CancellationToken::new()).await
    }

    /// Runs batches until `shutdown` is cancelled; then lets in-flight attempts finish for
    /// up to `--shutdown-timeout`.
    pub async fn run(self, shutdown: CancellationToken) {
        let settings = &self.inner.settings;
        let mut wake = if settings.wake_on_publish {
            self.listen().await
        } else {
            None
        };
        let mut ticker = tokio::time::interval(settings.poll_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(worker = %self.inner.worker, batch_size = settings.batch_size,
            poll_interval = ?settings.poll_interval, drain = settings.drain,
            wake_on_publish = settings.wake_on_publish, "batcher started");
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = notified(&mut wake) => {}
                () = shutdown.cancelled() => break,
            }
            loop {
                match self.run_batch(&shutdown).await {
                    Ok(n)
                        if settings.drain
                            && n == settings.batch_size as usize
                            && !shutdown.is_cancelled() => {}
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error.cause_chain = ?anyhow::Error::from(e), "batch failed; retrying at the next poll");
                        break;
                    }
                }
            }
        }
        tracing::info!("batcher stopped");
    }

    async fn listen(&self) -> Option<sqlx::postgres::PgListener> {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&self.inner.pool).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN failed; polling only");
                return None;
            }
        };
        match listener.listen(store::events::NOTIFY_CHANNEL).await {
            Ok(()) => Some(listener),
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN failed; polling only");
                None
            }
        }
    }

    async fn run_batch(&self, shutdown: &CancellationToken) -> Result<usize> {
        let inner = &self.inner;
        let batch = {
            let mut conn = store::acquire(&inner.pool).await?;
            let lease = inner.settings.lease().as_secs_f64();
            store::deliveries::claim(
                &mut conn,
                inner.worker,
                i64::from(inner.settings.batch_size),
                lease,
            )
            .await?
        };
        let claimed = batch.len();
        let mut attempts = JoinSet::new();
        let mut unstarted = Vec::new();
        for delivery in batch {
            if shutdown.is_cancelled() {
                unstarted.push(delivery.id);
            } else {
                let this = self.clone();
                attempts.spawn(async move { this.deliver(delivery).await });
            }
        }
        if !unstarted.is_empty() {
            let mut conn = store::acquire(&inner.pool).await?;
            store::deliveries::release(&mut conn, inner.worker, &unstarted).await?;
        }
        self.await_attempts(attempts, shutdown).await;
        Ok(claimed)
    }

    /// Waits for every attempt; once shutdown starts, for at most `--shutdown-timeout`.
    /// Attempts cut off then keep their lease, so they are retried after it expires (with
    /// the same `webhook-id`, as for any at-least-once redelivery).
    async fn await_attempts(
        &self,
        mut attempts: JoinSet<Result<()>>,
        shutdown: &CancellationToken,
    ) {
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(self.inner.settings.shutdown_timeout).await;
        };
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                joined = attempts.join_next() => match joined {
                    None => return,
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(e))) => tracing::warn!(error.cause_chain = ?anyhow::Error::from(e), "recording an attempt failed"),
                    Some(Err(e)) => tracing::error!(error = %e, "an attempt task panicked"),
                },
                () = &mut deadline => {
                    tracing::warn!(left = attempts.len(), "shutdown timeout: abandoning in-flight attempts");
                    attempts.abort_all();
                    return;
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(delivery_id = %delivery.id, webhook_id = %delivery.webhook_id))]
    async fn deliver(&self, delivery: ClaimedDelivery) -> Result<()> {
        let inner = &self.inner;
        let secrets = self.open_secrets(&delivery)?;
        let settings = &inner.settings;
        let (record, outcome) = attempt::send(
            &inner.client,
            &delivery,
            &secrets,
            settings.delivery_timeout,
            settings.allow_insecure_callbacks,
        )
        .await;
        let verdict = settings
            .retry_schedule
            .verdict(delivery.attempt_count + 1, &outcome);
        tracing::debug!(status = ?record.http_status, error = ?record.error, ?verdict, "attempted");
        let mut conn = store::acquire(&inner.pool).await?;
        if !store::deliveries::record_attempt(
            &mut conn,
            delivery.id,
            inner.worker,
            &record,
            &verdict,
        )
        .await?
        {
            tracing::info!(
                "lease lost before the attempt was recorded; another batcher owns it now"
            );
        }
        Ok(())
    }

    fn open_secrets(&self, delivery: &ClaimedDelivery) -> Result<Vec<SigningSecret>> {
        delivery
            .sealed_secrets
            .iter()
            .map(|sealed| {
                let text = String::from_utf8(self.inner.secrets.open(sealed)?)
                    .map_err(anyhow::Error::from)?;
                SigningSecret::parse(&text)
                    .ok_or_else(|| anyhow::anyhow!("stored signing secret is malformed").into())
            })
            .collect()
    }
}

/// Completes when a NOTIFY arrives; never, without a listener.
async fn notified(listener: &mut Option<sqlx::postgres::PgListener>) {
    match listener {
        Some(l) => {
            if let Err(e) = l.recv().await {
                tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
            }
        }
        None => std::future::pending().await,
    }
}
