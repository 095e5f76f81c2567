//! webhookd's own format, for any family: a JSON envelope `{"type", "timestamp", "data"}`
//! (the shape Standard Webhooks recommends). `type` is the event type (`repository.push`,
//! `artifact.pushed`, `push`, `ping`), `timestamp` when it happened (RFC 3339, UTC), `data`
//! the event: the BSR's `EventRequest` or the `RegistryEvent` in canonical ProtoJSON, a
//! GitHub event's payload or an operational event's byte for byte, or for a ping the
//! subscription's id and name.

use buffa::Message as _;
use chrono::SecondsFormat;

use super::{PING, Rendered, Rendering, registry};
use crate::domain::{BSR_PUSH, Family};
use crate::proto::buf::alpha::webhook::v1alpha1::EventRequest;

/// The JSON request of a delivery.
pub fn render(rendering: &Rendering<'_>) -> Result<Rendered, String> {
    let head = &rendering.delivery.event;
    let payload = &rendering.delivery.payload;
    let (event_type, time, data): (&str, _, Vec<u8>) = if rendering.is_ping() {
        let data = serde_json::json!({
            "subscription_id": rendering.target.id.to_string(),
            "name": rendering.target.name,
        });
        (
            PING,
            head.create_time,
            serde_json::to_vec(&data).map_err(|e| e.to_string())?,
        )
    } else {
        match head.family {
            Family::Bsr => {
                let request = EventRequest::decode_from_slice(payload)
                    .map_err(|e| format!("stored event does not decode: {e}"))?;
                let data = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
                (BSR_PUSH, head.create_time, data)
            }
            Family::Registry => {
                let event = registry::event(rendering)?;
                let time = registry::occur_time(&event, rendering);
                let data = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
                (&head.event_type, time, data)
            }
            Family::GitHub | Family::Webhookd => {
                (&head.event_type, head.create_time, payload.clone())
            }
        }
    };
    let mut body = Vec::with_capacity(data.len() + 96);
    body.extend_from_slice(b"{\"type\":");
    body.extend_from_slice(&serde_json::to_vec(event_type).map_err(|e| e.to_string())?);
    body.extend_from_slice(b",\"timestamp\":\"");
    body.extend_from_slice(time.to_rfc3339_opts(SecondsFormat::AutoSi, true).as_bytes());
    body.extend_from_slice(b"\",\"data\":");
    body.extend_from_slice(&data);
    body.push(b'}');
    Ok(Rendered::new("application/json", body))
}
