//! Deliveries (one event on its way to one webhook) and their attempts.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::WebhookId;

/// Where a delivery stands. Stored as text; the numbers are `webhookd.v1.DeliveryState`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// A listener answered 2xx.
    Delivered,
    /// The retry schedule ran out, or the listener answered 410 Gone.
    Failed,
}

impl DeliveryState {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    /// From the stored text.
    pub fn from_db(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            "failed" => Some(DeliveryState::Failed),
            _ => None,
        }
    }

    /// The `webhookd.v1.DeliveryState` number.
    pub fn number(self) -> i32 {
        match self {
            DeliveryState::Pending => 1,
            DeliveryState::Delivered => 2,
            DeliveryState::Failed => 3,
        }
    }

    /// From a `webhookd.v1.DeliveryState` number; `Ok(None)` for UNSPECIFIED (no filter).
    pub fn from_number(number: i32) -> Result<Option<Self>, i32> {
        match number {
            0 => Ok(None),
            1 => Ok(Some(DeliveryState::Pending)),
            2 => Ok(Some(DeliveryState::Delivered)),
            3 => Ok(Some(DeliveryState::Failed)),
            n => Err(n),
        }
    }
}

/// A delivery as the delivery log shows it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Its id, sent as `webhook-id`.
    pub id: Uuid,
    /// The webhook delivered to.
    pub webhook_id: WebhookId,
    /// The event delivered.
    pub event_id: Uuid,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempt_count: i32,
    /// When it was queued.
    pub create_time: DateTime<Utc>,
    /// When the next attempt is due.
    pub next_attempt_time: DateTime<Utc>,
    /// When the last attempt started.
    pub last_attempt_time: Option<DateTime<Utc>>,
    /// The last attempt's HTTP status.
    pub last_http_status: Option<i32>,
}

/// What one attempt did; recorded for every attempt.
#[derive(Debug, Clone, Default)]
pub struct AttemptRecord {
    /// When the request started.
    pub start_time: DateTime<Utc>,
    /// How long it took, in milliseconds.
    pub duration_ms: i32,
    /// The HTTP status, if an answer arrived.
    pub http_status: Option<i32>,
    /// The Connect error code the listener sent, if any.
    pub connect_code: Option<String>,
    /// The first 4 KiB of the answer's body.
    pub response_body: Option<Vec<u8>>,
    /// The network error or timeout, if no answer arrived.
    pub error: Option<String>,
}

/// A delivery claimed by a batcher; where it goes and how it is signed is in the claim's
/// [`ClaimTarget`] for its webhook.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The delivery's id.
    pub id: Uuid,
    /// The webhook delivered to.
    pub webhook_id: WebhookId,
    /// Attempts made before this one.
    pub attempt_count: i32,
    /// Attempts made since its retry schedule last started (at its queueing, or at its
    /// last redelivery): where it stands in the schedule.
    pub scheduled_attempts: i32,
    /// The encoded `EventRequest`.
    pub payload: Vec<u8>,
}

/// Where the deliveries of one webhook in a claim go, read once per claim (not per
/// delivery: a claim of 1,000 deliveries to one webhook reads it once).
#[derive(Debug, Clone)]
pub struct ClaimTarget {
    /// Where to POST.
    pub callback_url: String,
    /// The sealed secrets that sign: the current one and any still in their overlap.
    pub sealed_secrets: Vec<Vec<u8>>,
}

/// Deliveries leased to a batcher (by a claim, or by the publish that queued them), with the
/// target of each webhook among them.
#[derive(Debug, Clone, Default)]
pub struct Leased {
    /// The deliveries.
    pub deliveries: Vec<ClaimedDelivery>,
    /// One entry per webhook in `deliveries`.
    pub targets: std::collections::HashMap<WebhookId, ClaimTarget>,
}

/// What one claim took.
#[derive(Debug, Clone, Default)]
pub struct Claim {
    /// The deliveries and their targets.
    pub leased: Leased,
    /// The database's `now()` for the claim: deliveries due by then were candidates.
    pub snapshot_time: DateTime<Utc>,
    /// When the claim took as many as it asked for, the due time of the last one: its
    /// scan, in due order, stopped there. `None` when the scan reached `snapshot_time`.
    pub full_at: Option<DateTime<Utc>>,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Done.
    Delivered,
    /// Try again after this many seconds.
    RetryIn(f64),
    /// Give up: the schedule ran out.
    Failed,
    /// Give up and disable the webhook (410 Gone), for this reason.
    FailedAndDisable(String),
}
