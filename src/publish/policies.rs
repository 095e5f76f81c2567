//! The configuration file's `required` and `optional` webhooks (Angos's policies, section
//! B.2 of the reference facts), delivered while a publish waits: before its events are
//! stored, with Angos's retry timing (`min(100 ms x 2^(n-1), 10 s)` before retry n, at most
//! `max_retries` of them, any 2xx a success). A `required` webhook that fails refuses the
//! publish: nothing of it is stored. An `optional` one that fails is reported in the answer
//! and logged, and the publish goes on. Their deliveries and attempts are recorded in the
//! publish's own transaction, under the stored events, so the delivery log shows them as it
//! shows every other; those of a refused publish are only logged and counted (there is no
//! event to record them under).
//!
//! As Angos does, every matching webhook is tried even when one has failed; unlike Angos,
//! which goes through them one after another, webhookd delivers to them concurrently (each
//! webhook's requests in order), so a publish waits for the slowest, not for their sum. A
//! webhook that failed a `required` delivery is not sent the publish's later requests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::dispatch::request::{self, Target};
use crate::dispatch::{attempt, retry};
use crate::domain::{
    AttemptRecord, DeliveryId, EventId, LiveSet, LiveWebhook, OutboundEvent, Policy, WebhookId,
    angos_kind,
};
use crate::error::Error;
use crate::metrics::{DeliveryLabels, Finished as Final, Metrics};
use crate::store::events::Stored;
use crate::store::file_webhooks::Live;
use crate::store::queue::{ClaimedDelivery, EventHead, Finished, Outcome};

/// How much of each request body the records keep (as `--record-request-bytes`' default).
const RECORD_REQUEST_BYTES: usize = 64 * 1024;

/// Delivers the configuration file's webhooks at publish time; cheap to clone.
#[derive(Clone)]
pub struct Policies {
    live: Live,
    client: reqwest::Client,
    metrics: Option<Arc<Metrics>>,
    proxied: bool,
}

/// A webhook delivered at publish time that failed after its retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Its name (`[event_webhook.NAME]`).
    pub webhook: String,
    /// Its policy.
    pub policy: Policy,
    /// The index of the event it failed on, in the publish.
    pub event_index: usize,
    /// The Angos kind of the request that failed.
    pub kind: &'static str,
    /// How many attempts were made.
    pub attempts: u32,
    /// The last attempt's error: `HTTP 503`, or the network error.
    pub error: String,
}

/// One webhook's share of a publish.
struct Plan {
    webhook: Arc<LiveWebhook>,
    /// (event index, part), in order.
    requests: Vec<(usize, i16)>,
}

/// What the publish-time deliveries of one publish did.
#[derive(Debug, Default)]
pub struct Synced {
    /// Each delivery, with the index of its event in the publish.
    pub deliveries: Vec<(usize, Finished)>,
    /// The webhooks that failed, `required` ones first.
    pub failures: Vec<Failure>,
}

impl Synced {
    /// Why the publish is refused: the first `required` webhook that failed.
    pub fn refusal(&self) -> Option<Error> {
        let failure = self
            .failures
            .iter()
            .find(|f| f.policy == Policy::Required)?;
        Some(Error::FailedPrecondition(format!(
            "required webhook {:?} ([event_webhook.{}]) failed for events[{}] ({}) after {} \
             attempt{}: {}; nothing was published",
            failure.webhook,
            failure.webhook,
            failure.event_index,
            failure.kind,
            failure.attempts,
            if failure.attempts == 1 { "" } else { "s" },
            failure.error,
        )))
    }

    /// The deliveries to record, under the events as `stored` (in the publish's order):
    /// none for an event that was a duplicate after all (stored by a concurrent publish of
    /// its key).
    pub fn finished(deliveries: Vec<(usize, Finished)>, stored: &[Stored]) -> Vec<Finished> {
        deliveries
            .into_iter()
            .filter_map(|(index, mut finished)| {
                let stored = stored.get(index).filter(|s| !s.duplicate)?;
                finished.event_id = stored.event_id;
                Some(finished)
            })
            .collect()
    }
}

impl Policies {
    /// Delivers the webhooks of the set `live` holds when each publish starts; counts
    /// attempts and deliveries in `metrics`; goes through `proxy` when one is given. The
    /// file's webhooks are the operator's, as trusted as the flags: they may reach internal
    /// addresses.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        live: Live,
        metrics: Option<Arc<Metrics>>,
        proxy: Option<&url::Url>,
    ) -> anyhow::Result<Self> {
        // Each request has its webhook's own timeout; this one is only a ceiling.
        let client = attempt::client(Duration::from_secs(600), true, proxy, true)?;
        Ok(Self {
            live,
            client,
            metrics,
            proxied: proxy.is_some(),
        })
    }

    /// The set publishes route to.
    pub fn live(&self) -> &Live {
        &self.live
    }

    /// [`Policies::deliver`], refusing the publish when a `required` webhook failed.
    ///
    /// # Errors
    /// `FailedPrecondition` naming the first `required` webhook that failed, its event and
    /// its last error.
    pub async fn deliver_or_refuse(
        &self,
        set: &LiveSet,
        events: &[OutboundEvent],
        skip: &[bool],
    ) -> Result<Synced, Error> {
        let synced = self.deliver(set, events, skip).await;
        match synced.refusal() {
            Some(refusal) => Err(refusal),
            None => Ok(synced),
        }
    }

    /// Delivers `set`'s `required` and `optional` webhooks that match `events` (but those
    /// `skip` marks: events whose idempotency key was used before, which publish nothing),
    /// waiting for each to succeed or run out of retries.
    pub async fn deliver(&self, set: &LiveSet, events: &[OutboundEvent], skip: &[bool]) -> Synced {
        // Each webhook's requests (event index, part), in order, by name.
        let mut plan: BTreeMap<&str, Plan> = BTreeMap::new();
        for (index, event) in events.iter().enumerate() {
            if skip.get(index).copied().unwrap_or(false) {
                continue;
            }
            for matched in set.matches(event) {
                let Some((name, webhook)) = set
                    .webhooks
                    .get_key_value(&matched.webhook.definition.name)
                    .filter(|(_, w)| w.definition.policy.is_sync())
                else {
                    continue;
                };
                let plan = plan.entry(name).or_insert_with(|| Plan {
                    webhook: webhook.clone(),
                    requests: Vec::new(),
                });
                plan.requests
                    .extend(matched.parts.iter().map(|&part| (index, part)));
            }
        }
        let webhooks = plan
            .into_values()
            .map(|plan| self.deliver_to(plan.webhook, plan.requests, events));
        let mut synced = Synced::default();
        for (deliveries, failure) in futures_util::future::join_all(webhooks).await {
            synced.deliveries.extend(deliveries);
            synced.failures.extend(failure);
        }
        synced
            .failures
            .sort_by_key(|f| (f.policy != Policy::Required, f.event_index));
        for failure in &synced.failures {
            tracing::warn!(webhook = %failure.webhook, policy = failure.policy.as_str(),
                event_index = failure.event_index, kind = failure.kind,
                attempts = failure.attempts, error = %failure.error,
                "a configuration file webhook failed at publish time");
        }
        synced
    }

    /// Sends `webhook` its `requests` (event index, part) in order; its deliveries and
    /// failures. A `required` webhook that fails is sent nothing more: the publish is
    /// refused.
    async fn deliver_to(
        &self,
        webhook: Arc<LiveWebhook>,
        requests: Vec<(usize, i16)>,
        events: &[OutboundEvent],
    ) -> (Vec<(usize, Finished)>, Vec<Failure>) {
        let target = Target::file(&webhook);
        let definition = &webhook.definition;
        let mut deliveries = Vec::with_capacity(requests.len());
        let mut failures = Vec::new();
        for (index, part) in requests {
            let event = &events[index];
            let (finished, error) = self.deliver_one(&target, &webhook, event, part).await;
            let attempts = u32::try_from(finished.attempts.len()).unwrap_or(u32::MAX);
            deliveries.push((index, finished));
            if let Some(error) = error {
                failures.push(Failure {
                    webhook: definition.name.clone(),
                    policy: definition.policy,
                    event_index: index,
                    kind: angos_kind(event.kind.stored_type(), part).unwrap_or("other"),
                    attempts,
                    error,
                });
                if definition.policy == Policy::Required {
                    break;
                }
            }
        }
        (deliveries, failures)
    }

    /// One delivery of part `part` of `event` to `target`, retried as Angos retries; the
    /// last attempt's error when it failed.
    async fn deliver_one(
        &self,
        target: &Target,
        webhook: &LiveWebhook,
        event: &OutboundEvent,
        part: i16,
    ) -> (Finished, Option<String>) {
        let id = DeliveryId::generate();
        let webhook_id = WebhookId(webhook.id);
        let retries = webhook.definition.retries();
        let head = EventHead {
            // Not stored yet: Angos's requests do not carry the event's id.
            id: EventId::generate(),
            family: event.kind.family(),
            event_type: event.kind.stored_type().to_owned(),
            create_time: Utc::now(),
            part,
        };
        let labels = self.metrics.as_ref().map(|metrics| DeliveryLabels {
            webhook_id,
            webhook: metrics.webhook_label(webhook_id, &webhook.definition.name),
            event: target.event_label(&head.event_type, part),
            published: head.create_time,
        });
        let guard = attempt::Guard {
            allow_internal: true,
            proxied: self.proxied,
        };
        let mut attempts: Vec<AttemptRecord> = Vec::new();
        loop {
            let number = i32::try_from(attempts.len()).unwrap_or(i32::MAX);
            let delivery = ClaimedDelivery {
                id,
                webhook_id,
                attempt_count: number,
                scheduled_attempts: number,
                payload: event.payload.clone(),
                event: head.clone(),
            };
            let start_time = Utc::now();
            let record = match request::build(delivery, target, start_time, retries.timeout) {
                Ok(request) => {
                    let sent = attempt::send_recorded(
                        &self.client,
                        request,
                        guard,
                        start_time,
                        RECORD_REQUEST_BYTES,
                    );
                    sent.await.0
                }
                Err(error) => AttemptRecord::failed(start_time, error),
            };
            let outcome = retry::file_outcome(retries, number + 1, record.http_status);
            let error = match outcome {
                Outcome::Delivered => None,
                _ => Some(match (&record.error, record.http_status) {
                    (Some(error), _) => error.clone(),
                    (None, Some(status)) => format!("HTTP {status}"),
                    (None, None) => "no answer".to_owned(),
                }),
            };
            let status = record.http_status;
            attempts.push(record);
            let last = match outcome {
                Outcome::Delivered => Final::Success,
                Outcome::RetryIn(_) => Final::No,
                Outcome::Failed | Outcome::FailedAndDisable(_) => Final::Error,
            };
            if let (Some(metrics), Some(labels)) = (&self.metrics, &labels) {
                metrics.attempted(labels, status, last);
            }
            match outcome {
                Outcome::RetryIn(secs) => tokio::time::sleep(Duration::from_secs_f64(secs)).await,
                _ => {
                    let finished = Finished {
                        id,
                        event_id: head.id,
                        webhook_id,
                        part,
                        delivered: error.is_none(),
                        attempts,
                    };
                    return (finished, error);
                }
            }
        }
    }
}
