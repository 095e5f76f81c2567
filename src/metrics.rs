//! Prometheus metrics, one registry per server, served at `GET /metrics` (or on
//! `--metrics-listen`) in the text exposition format by the `prometheus` crate (the one
//! Angos uses, so its two metrics read exactly as Angos exposes them).
//!
//! - Angos's: `event_webhook_deliveries_total{webhook,event,result}`, counted once per
//!   delivery when it reaches its final outcome (`success`: a 2xx; `error`: the retry
//!   schedule ran out, or a 410 Gone), and `event_webhook_delivery_duration_seconds{webhook,
//!   event}`, observed at the same moment over the whole delivery: from its event's publish
//!   to its last answer, retries included.
//! - webhookd's own, prefixed `webhookd_`: attempts by status class, the queue's depth and
//!   lag (read from the database when scraped, at most every [`QUEUE_SAMPLE_EVERY`]), claim
//!   and record latency, events published and deliveries queued, and each RPC's requests,
//!   codes and latency.
//!
//! Cardinality is bounded: the `webhook` label is a subscription's name when it has one,
//! else its id for the first `--metrics-webhook-ids` ids seen, else `other`; the `event`
//! label is an event type webhookd knows (BSR, registry and the GitHub events it lists),
//! else `other`; the `method` label is a procedure the server serves (each path is
//! checked by the router before the interceptor sees it).
//!
//! Nothing here can stop a delivery: the counters are in memory, and a scrape whose queue
//! query fails or times out answers with the rest (and `webhookd_queue_sample_errors_total`
//! counts it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use sqlx::PgPool;

use crate::domain::{BSR_PUSH, GITHUB_TYPES, OPERATIONAL_TYPES, REGISTRY_TYPES, WebhookId};

/// How long a scrape's reading of the queue is reused by the next scrapes.
pub const QUEUE_SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// The longest a scrape waits for the queue query.
const QUEUE_QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// The exposition's content type (the text format, version 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The label of whatever is past a bound.
pub const OTHER: &str = "other";

/// The labels of one delivery's metrics, chosen when it was claimed.
#[derive(Debug, Clone)]
pub struct DeliveryLabels {
    /// The webhook.
    pub webhook_id: WebhookId,
    /// The `webhook` label.
    pub webhook: Arc<str>,
    /// The `event` label.
    pub event: &'static str,
    /// When its event was published (where the delivery's duration starts).
    pub published: DateTime<Utc>,
}

/// What an attempt came to, as the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Not final: a retry follows.
    No,
    /// Delivered.
    Success,
    /// Failed for good.
    Error,
}

/// A server's metrics.
pub struct Metrics {
    registry: Registry,
    deliveries: IntCounterVec,
    delivery_duration: HistogramVec,
    attempts: IntCounterVec,
    claim_duration: Histogram,
    record_duration: Histogram,
    published_events: IntCounterVec,
    queued_deliveries: IntCounter,
    rpc_requests: IntCounterVec,
    rpc_duration: HistogramVec,
    queue: IntGaugeVec,
    queue_lag: prometheus::Gauge,
    queue_sample_errors: IntCounter,
    webhook_labels: Mutex<WebhookLabels>,
    last_sample: tokio::sync::Mutex<Option<Instant>>,
}

/// The `webhook` labels given so far.
struct WebhookLabels {
    max_ids: usize,
    ids: HashMap<WebhookId, Arc<str>>,
    other: Arc<str>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with every metric, giving at most `max_webhook_ids` webhooks an id label.
    ///
    /// # Panics
    /// Never: the metrics are registered once each, with valid names.
    pub fn new(max_webhook_ids: usize) -> Arc<Self> {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("registered once");
            metric
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let opts = HistogramOpts::new(name, help).buckets(buckets);
            let metric = HistogramVec::new(opts, labels).expect("a valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("registered once");
            metric
        };
        let fast = || prometheus::exponential_buckets(0.0005, 2.0, 14).expect("valid buckets");
        let deliveries = counter_vec(
            "event_webhook_deliveries_total",
            "Total event webhook deliveries",
            &["webhook", "event", "result"],
        );
        let delivery_duration = histogram_vec(
            "event_webhook_delivery_duration_seconds",
            "Event webhook delivery duration",
            &["webhook", "event"],
            prometheus::DEFAULT_BUCKETS.to_vec(),
        );
        let attempts = counter_vec(
            "webhookd_attempts_total",
            "Delivery attempts by the class of their answer (2xx, 3xx, 4xx, 5xx, or error when none arrived)",
            &["class"],
        );
        let claim_duration = histogram_vec(
            "webhookd_claim_duration_seconds",
            "Time to claim a batch of due deliveries",
            &[],
            fast(),
        )
        .with_label_values::<&str>(&[]);
        let record_duration = histogram_vec(
            "webhookd_record_duration_seconds",
            "Time to record a batch of attempts",
            &[],
            fast(),
        )
        .with_label_values::<&str>(&[]);
        let published_events = counter_vec(
            "webhookd_published_events_total",
            "Events stored by Publish calls, by family (duplicates of an idempotency key not counted)",
            &["family"],
        );
        let queued_deliveries = counter_vec(
            "webhookd_queued_deliveries_total",
            "Deliveries queued by Publish calls",
            &[],
        )
        .with_label_values::<&str>(&[]);
        let rpc_requests = counter_vec(
            "webhookd_rpc_requests_total",
            "RPCs answered, by procedure and code (Connect's names; ok for success)",
            &["method", "code"],
        );
        let rpc_duration = histogram_vec(
            "webhookd_rpc_duration_seconds",
            "Time to answer an RPC, by procedure",
            &["method"],
            fast(),
        );
        let queue = IntGaugeVec::new(
            Opts::new(
                "webhookd_queue_deliveries",
                "Deliveries not yet finished, in the whole database: pending (waiting for an attempt), held (their subscription is paused or disabled), in_flight (leased to a batcher)",
            ),
            &["state"],
        )
        .expect("a valid metric");
        registry
            .register(Box::new(queue.clone()))
            .expect("registered once");
        let queue_lag = prometheus::Gauge::new(
            "webhookd_queue_lag_seconds",
            "How long the oldest due delivery of an active subscription has been due (0 when none is)",
        )
        .expect("a valid metric");
        registry
            .register(Box::new(queue_lag.clone()))
            .expect("registered once");
        let queue_sample_errors = counter_vec(
            "webhookd_queue_sample_errors_total",
            "Scrapes whose queue query failed or timed out (the queue gauges keep their last values)",
            &[],
        )
        .with_label_values::<&str>(&[]);
        Arc::new(Self {
            registry,
            deliveries,
            delivery_duration,
            attempts,
            claim_duration,
            record_duration,
            published_events,
            queued_deliveries,
            rpc_requests,
            rpc_duration,
            queue,
            queue_lag,
            queue_sample_errors,
            webhook_labels: Mutex::new(WebhookLabels {
                max_ids: max_webhook_ids,
                ids: HashMap::new(),
                other: Arc::from(OTHER),
            }),
            last_sample: tokio::sync::Mutex::new(None),
        })
    }

    /// The `webhook` label of webhook `id` named `name` ('' for none).
    pub fn webhook_label(&self, id: WebhookId, name: &str) -> Arc<str> {
        if !name.is_empty() {
            return Arc::from(name);
        }
        let mut labels = self
            .webhook_labels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(label) = labels.ids.get(&id) {
            return label.clone();
        }
        if labels.ids.len() >= labels.max_ids {
            return labels.other.clone();
        }
        let label: Arc<str> = Arc::from(id.to_string());
        labels.ids.insert(id, label.clone());
        label
    }

    /// Counts an attempt answered with `status` (`None`: no answer), and, when it was
    /// `finished`, its delivery.
    pub fn attempted(&self, labels: &DeliveryLabels, status: Option<i32>, finished: Finished) {
        let class = match status {
            Some(200..=299) => "2xx",
            Some(300..=399) => "3xx",
            Some(400..=499) => "4xx",
            Some(500..=599) => "5xx",
            Some(_) => "other",
            None => "error",
        };
        self.attempts.with_label_values(&[class]).inc();
        let result = match finished {
            Finished::No => return,
            Finished::Success => "success",
            Finished::Error => "error",
        };
        let (webhook, event) = (&*labels.webhook, labels.event);
        self.deliveries
            .with_label_values(&[webhook, event, result])
            .inc();
        let seconds = (Utc::now() - labels.published)
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1e6;
        self.delivery_duration
            .with_label_values(&[webhook, event])
            .observe(seconds.max(0.0));
    }

    /// Observes a claim that took `elapsed`.
    pub fn claimed(&self, elapsed: Duration) {
        self.claim_duration.observe(elapsed.as_secs_f64());
    }

    /// Observes a recording that took `elapsed`.
    pub fn recorded(&self, elapsed: Duration) {
        self.record_duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a Publish call's stored events (each event's family) and queued deliveries.
    pub fn published<'a>(&self, families: impl Iterator<Item = &'a str>, queued: i64) {
        for family in families {
            self.published_events.with_label_values(&[family]).inc();
        }
        self.queued_deliveries
            .inc_by(u64::try_from(queued).unwrap_or(0));
    }

    /// Counts an RPC to `method` answered with `code` after `elapsed`.
    pub fn rpc(&self, method: &str, code: &str, elapsed: Duration) {
        self.rpc_requests.with_label_values(&[method, code]).inc();
        self.rpc_duration
            .with_label_values(&[method])
            .observe(elapsed.as_secs_f64());
    }

    /// The exposition of every metric, the queue's read first when the last reading is
    /// older than [`QUEUE_SAMPLE_EVERY`].
    pub async fn render(&self, pool: &PgPool) -> String {
        self.sample_queue(pool).await;
        let mut text = Vec::new();
        // Encoding in-memory metrics into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut text);
        String::from_utf8(text).unwrap_or_default()
    }

    /// Reads the queue's depth and lag, unless a scrape did in the last
    /// [`QUEUE_SAMPLE_EVERY`] (concurrent scrapes wait for one reading).
    async fn sample_queue(&self, pool: &PgPool) {
        let mut last = self.last_sample.lock().await;
        if last.is_some_and(|at| at.elapsed() < QUEUE_SAMPLE_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        match tokio::time::timeout(QUEUE_QUERY_TIMEOUT, crate::store::queue::depth(pool)).await {
            Ok(Ok(depth)) => {
                self.queue
                    .with_label_values(&["pending"])
                    .set(depth.pending);
                self.queue.with_label_values(&["held"]).set(depth.held);
                self.queue
                    .with_label_values(&["in_flight"])
                    .set(depth.in_flight);
                self.queue_lag.set(depth.lag_seconds);
            }
            Ok(Err(e)) => {
                self.queue_sample_errors.inc();
                tracing::warn!(error.cause_chain = ?anyhow::Error::from(e), "reading the queue for /metrics failed");
            }
            Err(_) => {
                self.queue_sample_errors.inc();
                tracing::warn!("reading the queue for /metrics timed out");
            }
        }
    }
}

/// The `event` label of an event of stored type `event_type` ('' for the BSR's).
pub fn event_label(event_type: &str) -> &'static str {
    if event_type.is_empty() || event_type == BSR_PUSH {
        return BSR_PUSH;
    }
    REGISTRY_TYPES
        .iter()
        .map(|t| t.name)
        .chain(GITHUB_TYPES.iter().map(|(name, _)| *name))
        .chain(OPERATIONAL_TYPES.iter().map(|(name, _)| *name))
        .find(|name| *name == event_type)
        .unwrap_or(OTHER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_ids_are_labelled_up_to_the_bound_then_other() {
        let metrics = Metrics::new(2);
        let ids: Vec<WebhookId> = (0..3).map(|_| WebhookId(uuid::Uuid::new_v4())).collect();
        assert_eq!(&*metrics.webhook_label(ids[0], ""), ids[0].to_string());
        assert_eq!(&*metrics.webhook_label(ids[1], ""), ids[1].to_string());
        assert_eq!(&*metrics.webhook_label(ids[2], ""), OTHER);
        // Those labelled keep their labels; a name is always its own label.
        assert_eq!(&*metrics.webhook_label(ids[0], ""), ids[0].to_string());
        assert_eq!(&*metrics.webhook_label(ids[2], "audit"), "audit");
    }

    #[test]
    fn event_labels_are_known_types_or_other() {
        assert_eq!(event_label(""), BSR_PUSH);
        assert_eq!(event_label("artifact.pushed"), "artifact.pushed");
        assert_eq!(event_label("push"), "push");
        assert_eq!(
            event_label("webhookd.subscription.failing"),
            "webhookd.subscription.failing"
        );
        assert_eq!(event_label("made_up_event"), OTHER);
    }
}
