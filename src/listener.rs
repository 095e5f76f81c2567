//! The listener side: a reference `buf.alpha.webhook.v1alpha1.EventService` that verifies
//! Standard Webhooks signatures and hands each event to a callback. `webhookd listen` runs it
//! with a callback that prints one line of JSON per event; `examples/listener.rs` shows how
//! to write your own in a few lines with the same pieces.
//!
//! The callback decides whether the delivery is taken: an `Err` is answered `unavailable`
//! (HTTP 503), so webhookd retries it later with the same `webhook-id`. A delivery whose
//! `webhook-id` was taken in the last ten minutes (twice the signature tolerance: as long
//! as a captured request would still verify) is acknowledged without calling it again:
//! a replay, or a retry whose first acknowledgement was lost.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connectrpc::{ConnectError, RequestContext, Response, ServiceRequest, ServiceResult};

use crate::proto::buf::alpha::webhook::v1alpha1::{
    EventRequest, EventResponse, EventService, EventServiceExt as _,
};
use crate::signing::{DEFAULT_TOLERANCE_SECS, SigningSecret, verify};

/// How long a taken `webhook-id` is remembered...
const REMEMBER: Duration = Duration::from_secs(2 * DEFAULT_TOLERANCE_SECS.unsigned_abs());
/// ...and how many at most (the oldest are forgotten first).
const REMEMBER_AT_MOST: usize = 100_000;

/// The `webhook-id`s taken lately, oldest first.
#[derive(Default)]
struct Taken {
    order: VecDeque<(Instant, String)>,
    ids: HashSet<String>,
}

impl Taken {
    /// Forgets what is older than [`REMEMBER`] or beyond [`REMEMBER_AT_MOST`].
    fn forget_old(&mut self) {
        while let Some((at, _)) = self.order.front()
            && (at.elapsed() >= REMEMBER || self.order.len() > REMEMBER_AT_MOST)
        {
            if let Some((_, id)) = self.order.pop_front() {
                self.ids.remove(&id);
            }
        }
    }
}

/// An event as a listener received it.
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    /// The `webhook-id` header: stable across retries, so use it to drop duplicates.
    pub webhook_id: Option<String>,
    /// The event.
    pub event: EventRequest,
}

/// An EventService that checks signatures (when given secrets) and passes events on.
pub struct VerifyingListener<F> {
    secrets: Vec<SigningSecret>,
    on_event: F,
    taken: Mutex<Taken>,
}

impl<F> VerifyingListener<F>
where
    F: Fn(ReceivedEvent) -> anyhow::Result<()> + Send + Sync + 'static,
{
    /// A listener that accepts deliveries signed by any of `secrets` (none: no check) and
    /// calls `on_event` for each; a delivery is acknowledged only when `on_event` returns
    /// `Ok`.
    pub fn new(secrets: Vec<SigningSecret>, on_event: F) -> Self {
        Self {
            secrets,
            on_event,
            taken: Mutex::new(Taken::default()),
        }
    }

    /// Whether `id` was taken within [`REMEMBER`].
    fn already_taken(&self, id: &str) -> bool {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        taken.forget_old();
        taken.ids.contains(id)
    }

    fn remember(&self, id: String) {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        if taken.ids.insert(id.clone()) {
            taken.order.push_back((Instant::now(), id));
        }
    }

    /// An axum router serving this listener (Connect, gRPC and gRPC-Web).
    pub fn into_router(self) -> axum::Router {
        let router = Arc::new(self).register(connectrpc::Router::new());
        axum::Router::new().fallback_service(connectrpc::ConnectRpcService::new(router))
    }
}

impl<F> EventService for VerifyingListener<F>
where
    F: Fn(ReceivedEvent) -> anyhow::Result<()> + Send + Sync + 'static,
{
    async fn event(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, EventRequest>,
    ) -> ServiceResult<EventResponse> {
        if !self.secrets.is_empty() {
            let now = chrono::Utc::now().timestamp();
            verify(&self.secrets, ctx.headers(), request.bytes(), now).map_err(|e| {
                ConnectError::unauthenticated(format!("webhook signature check failed: {e}"))
            })?;
        }
        let webhook_id = ctx
            .header("webhook-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if webhook_id
            .as_deref()
            .is_some_and(|id| self.already_taken(id))
        {
            return Response::ok(EventResponse::default());
        }
        (self.on_event)(ReceivedEvent {
            webhook_id: webhook_id.clone(),
            event: request.to_owned_message(),
        })
        .map_err(|e| {
            ConnectError::unavailable(format!("the listener could not take the event: {e:#}"))
        })?;
        if let Some(id) = webhook_id {
            self.remember(id);
        }
        Response::ok(EventResponse::default())
    }
}

/// One line of JSON for an event: `{"webhookId": ..., "event": <ProtoJSON EventRequest>}`.
pub fn json_line(received: &ReceivedEvent) -> String {
    serde_json::json!({ "webhookId": received.webhook_id, "event": received.event }).to_string()
}
