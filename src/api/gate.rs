//! What a request must pass before its body costs anything.
//!
//! - [`authenticate_first`]: every RPC that needs a token is authenticated from its headers
//!   before a byte of the body is read, so a caller without a valid token can make the
//!   server buffer or decode nothing (a 16 MiB Publish without a token is answered at once).
//!   The token's scope travels to the handler in the request's extensions.
//! - [`PublishCount`]: a Publish body is counted before it is decoded: more events than one
//!   call may hold is `resource_exhausted` without building a single one. (Decoding itself
//!   is bounded by connectrpc's element-memory limit, which caps what the elements of one
//!   request may take however small each is on the wire.)

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use connectrpc::{CodecFormat, ConnectError, Interceptor};

use super::ApiContext;
use super::auth::authenticate_header;
use crate::metrics::Metrics;
use crate::publish::MAX_BATCH;

/// The procedures that need a token, and what authenticates them.
#[derive(Clone)]
pub struct Gate {
    pub api: Arc<ApiContext>,
    pub methods: Arc<HashSet<String>>,
}

/// Authenticates a request for one of the gate's methods from its `Authorization` header,
/// answering in the request's own protocol (Connect, gRPC or gRPC-Web) when it fails; other
/// paths (health, reflection, unknown ones) pass through untouched.
pub async fn authenticate_first(
    State(gate): State<Gate>,
    mut request: Request,
    next: Next,
) -> Response {
    if !gate.methods.contains(request.uri().path()) {
        return next.run(request).await;
    }
    let header = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let started = std::time::Instant::now();
    match authenticate_header(&gate.api, header).await {
        Ok(scope) => {
            request.extensions_mut().insert(scope);
            next.run(request).await
        }
        Err(e) => {
            let error = ConnectError::from(e);
            // Refused before the interceptors: counted here.
            let method = request.uri().path().trim_start_matches('/');
            gate.api
                .metrics
                .rpc(method, error.code.as_str(), started.elapsed());
            error.into_http_response(request.headers()).into_response()
        }
    }
}

/// Counts and times every unary RPC the router dispatches, by procedure and code.
pub struct RpcMetrics {
    /// Where they are counted.
    pub metrics: Arc<Metrics>,
}

#[connectrpc::async_trait]
impl Interceptor for RpcMetrics {
    async fn intercept_unary(
        &self,
        req: connectrpc::interceptor::UnaryRequest,
        next: connectrpc::Next<'_>,
    ) -> Result<connectrpc::interceptor::UnaryResponse, ConnectError> {
        let method = req
            .ctx
            .path()
            .map(|p| p.trim_start_matches('/').to_owned())
            .unwrap_or_default();
        let started = std::time::Instant::now();
        let answer = next.run(req).await;
        let code = match &answer {
            Ok(_) => "ok",
            Err(e) => e.code.as_str(),
        };
        self.metrics.rpc(&method, code, started.elapsed());
        answer
    }
}

/// Refuses a Publish body holding more than [`MAX_BATCH`] events before it is decoded.
pub struct PublishCount {
    /// The Publish procedure's path.
    pub path: String,
}

#[connectrpc::async_trait]
impl Interceptor for PublishCount {
    async fn intercept_unary(
        &self,
        req: connectrpc::interceptor::UnaryRequest,
        next: connectrpc::Next<'_>,
    ) -> Result<connectrpc::interceptor::UnaryResponse, ConnectError> {
        let path = req.ctx.path().map(|p| p.trim_start_matches('/'));
        if path == Some(self.path.trim_start_matches('/')) {
            let bytes = req.payload.bytes();
            let events = match req.payload.format() {
                CodecFormat::Json => count_json_events(bytes, MAX_BATCH),
                _ => count_proto_events(bytes, MAX_BATCH),
            };
            if events > MAX_BATCH {
                return Err(ConnectError::resource_exhausted(format!(
                    "the request holds more than {MAX_BATCH} events; send at most \
                     {MAX_BATCH} per Publish call"
                )));
            }
        }
        next.run(req).await
    }
}

/// How many `events` (field 1) an encoded `PublishRequest` holds, counting no further than
/// `limit + 1`. A malformed encoding stops the count; the decoder reports it.
pub fn count_proto_events(mut bytes: &[u8], limit: usize) -> usize {
    let (mut events, mut depth) = (0, 0usize);
    while !bytes.is_empty() && events <= limit {
        let Some(key) = varint(&mut bytes) else { break };
        let skip = match key & 7 {
            0 => varint(&mut bytes).map(|_| 0),
            1 => Some(8),
            2 => varint(&mut bytes).and_then(|n| usize::try_from(n).ok()),
            // Groups (deprecated, still skipped by decoders): what is inside is not ours.
            3 => {
                depth += 1;
                Some(0)
            }
            4 if depth > 0 => {
                depth -= 1;
                Some(0)
            }
            5 => Some(4),
            _ => None,
        };
        let Some(skip) = skip.filter(|n| *n <= bytes.len()) else {
            break;
        };
        if depth == 0 && key >> 3 == 1 && key & 7 == 2 {
            events += 1;
        }
        bytes = &bytes[skip..];
    }
    events
}

/// Reads one base-128 varint from the front of `bytes`.
fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Some(value);
        }
    }
    None
}

/// How many elements the top-level `events` array of a JSON `PublishRequest` holds,
/// counting no further than `limit + 1`, without building any of them. Malformed JSON
/// counts as 0; the decoder reports it.
pub fn count_json_events(bytes: &[u8], limit: usize) -> usize {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
    struct Top(usize);
    struct Events(usize);
    impl<'de> Visitor<'de> for Top {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a PublishRequest object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
            let mut count = 0usize;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == "events" {
                    // A key given twice counts twice: a decoder may join the two arrays.
                    count = count.saturating_add(map.next_value_seed(Events(self.0))?);
                    if count > self.0 {
                        return Err(serde::de::Error::custom(TOO_MANY));
                    }
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(count)
        }
        // The derived decoder also takes a message as an array of its fields in order
        // (`[[{}, {}]]`): the first is `events`.
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let count = seq.next_element_seed(Events(self.0))?.unwrap_or(0);
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(count)
        }
    }
    impl<'de> serde::de::DeserializeSeed<'de> for Events {
        type Value = usize;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Events {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of events")
        }
        fn visit_unit<E>(self) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let mut count = 0;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                count += 1;
                if count > self.0 {
                    // Stop reading: the rest does not matter.
                    return Err(serde::de::Error::custom(TOO_MANY));
                }
            }
            Ok(count)
        }
    }
    const TOO_MANY: &str = "webhookd: too many events";
    match serde_json::Deserializer::from_slice(bytes).deserialize_any(Top(limit)) {
        Ok(count) => count,
        Err(e) if e.to_string().starts_with(TOO_MANY) => limit + 1,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_proto_events_without_decoding_and_stops_past_the_limit() {
        assert_eq!(count_proto_events(&[], 1000), 0);
        // Two events (one empty, one of 3 bytes) around an unknown varint field 7.
        let body = [0x0a, 0x00, 0x38, 0x96, 0x01, 0x0a, 0x03, 1, 2, 3];
        assert_eq!(count_proto_events(&body, 1000), 2);
        let flood: Vec<u8> = [0x0a, 0x00].repeat(5_000_000);
        assert_eq!(count_proto_events(&flood, 1000), 1001);
        // A length past the end stops the count (the decoder reports the error).
        assert_eq!(count_proto_events(&[0x0a, 0x05, 1], 1000), 0);
        assert_eq!(count_proto_events(&[0xff; 12], 1000), 0);
        // A group (field 6) around a field-1 record that is not an event, then one event
        // (found by fuzzing).
        let grouped = [0x33, 0x0a, 0x00, 0x34, 0x0a, 0x02, b'8', b'8'];
        assert_eq!(count_proto_events(&grouped, 1000), 1);
    }

    #[test]
    fn counts_json_events_without_building_them() {
        assert_eq!(
            count_json_events(br#"{"events":[{},{"event":{}}]}"#, 1000),
            2
        );
        assert_eq!(
            count_json_events(br#"{"other":[1,2],"events":null}"#, 1000),
            0
        );
        let flood = format!("{{\"events\":[{}{{}}]}}", "{},".repeat(2_000_000));
        assert_eq!(count_json_events(flood.as_bytes(), 1000), 1001);
        assert_eq!(count_json_events(b"not json", 1000), 0);
    }
}
