//! Deliveries (one event on its way to one webhook) and their attempts.

use super::{DeliveryId, EventId, WebhookId};
use chrono::{DateTime, Utc};

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
    pub id: DeliveryId,
    /// The webhook delivered to.
    pub webhook_id: WebhookId,
    /// The event delivered.
    pub event_id: EventId,
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
    /// Its event's type (`repository.push` for the BSR's).
    pub event_type: String,
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
    /// The request sent; `None` when nothing was sent (it could not be built).
    pub request: Option<RecordedRequest>,
    /// The answer's headers (see [`super::header_record`]), if an answer arrived.
    pub response_headers: Option<Vec<u8>>,
}

/// The request of an attempt, as its record keeps it.
#[derive(Debug, Clone, Default)]
pub struct RecordedRequest {
    /// Its headers (see [`super::header_record`]), secrets masked.
    pub headers: Vec<u8>,
    /// Its body up to the recording cap; `None` when it was the event's stored payload,
    /// sent as is (read from the event when shown).
    pub body: Option<Vec<u8>>,
    /// The whole body's size.
    pub body_size: i32,
}

/// What a masked header value reads as.
pub const MASKED: &str = "********";

impl AttemptRecord {
    /// An attempt that started at `start_time` and sent nothing, for `error`.
    pub fn failed(start_time: DateTime<Utc>, error: String) -> Self {
        Self {
            start_time,
            error: Some(error),
            ..Self::default()
        }
    }
}
