//! The BSR's delivery format: a Connect unary POST (`application/proto`) of the stored
//! `buf.alpha.webhook.v1alpha1.EventRequest` to the listener's `EventService/Event`, with
//! Standard Webhooks signature headers over the raw body.

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, header};

use crate::signing::{SigningSecret, signature_header};
use crate::store::queue::ClaimedDelivery;

/// The headers and body of an attempt of `delivery`, signed by each of `secrets`.
pub fn render(
    delivery: ClaimedDelivery,
    secrets: &[SigningSecret],
    sent_at: DateTime<Utc>,
    timeout: Duration,
) -> (HeaderMap, Vec<u8>) {
    let id = delivery.id.to_string();
    let timestamp = sent_at.timestamp();
    let signature = signature_header(secrets, &id, timestamp, &delivery.payload);
    let mut headers = HeaderMap::with_capacity(6);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/proto"),
    );
    headers.insert("connect-protocol-version", HeaderValue::from_static("1"));
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    headers.insert("connect-timeout-ms", HeaderValue::from(timeout_ms));
    headers.insert("webhook-id", text(id));
    headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
    headers.insert("webhook-signature", text(signature));
    (headers, delivery.payload)
}

/// A header value of text made of visible ASCII (a UUID, base64 signatures).
fn text(value: String) -> HeaderValue {
    HeaderValue::try_from(value).expect("UUIDs and base64 signatures are valid header values")
}
