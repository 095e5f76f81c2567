//! The BSR's delivery format: a Connect unary POST of the stored
//! `buf.alpha.webhook.v1alpha1.EventRequest` to the listener's `EventService/Event`, as
//! `application/proto` (the bytes stored, as is) or, with `connect_json`, Connect JSON.

use std::time::Duration;

use buffa::Message as _;
use http::HeaderValue;

use super::{Rendered, Rendering};
use crate::proto::buf::alpha::webhook::v1alpha1::EventRequest;

/// The headers and body of an attempt: the stored `EventRequest` as is.
pub fn render(payload: Vec<u8>, timeout: Duration) -> Rendered {
    let mut rendered = Rendered::new("application/proto", payload);
    connect_headers(&mut rendered, timeout);
    rendered
}

/// The same request in Connect JSON. A ping is an empty `EventRequest` (`{}`).
pub fn render_json(rendering: &Rendering<'_>, timeout: Duration) -> Result<Rendered, String> {
    let request = EventRequest::decode_from_slice(&rendering.delivery.payload)
        .map_err(|e| format!("stored event does not decode: {e}"))?;
    let body = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    let mut rendered = Rendered::new("application/json", body);
    connect_headers(&mut rendered, timeout);
    Ok(rendered)
}

fn connect_headers(rendered: &mut Rendered, timeout: Duration) {
    let headers = &mut rendered.headers;
    headers.insert("connect-protocol-version", HeaderValue::from_static("1"));
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    headers.insert("connect-timeout-ms", HeaderValue::from(timeout_ms));
}
