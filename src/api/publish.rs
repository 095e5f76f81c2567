//! `webhookd.v1.PublishService`: events into the outbox, all of a batch or none.

use std::sync::Arc;

use connectrpc::{RequestContext, Response, ServiceRequest, ServiceResult};

use super::ApiContext;
use super::auth::authenticate;
use crate::domain::TokenScope;
use crate::error::{Error, Result};
use crate::proto::webhookd::v1 as pb;
use crate::publish::{MAX_BATCH, OutboundEvent};

/// The PublishService implementation.
pub struct PublishApi(pub Arc<ApiContext>);

impl PublishApi {
    async fn publish(
        &self,
        ctx: &RequestContext,
        req: &pb::PublishRequest,
    ) -> Result<pb::PublishResponse> {
        let api = &self.0;
        let scope = authenticate(api, ctx).await?;
        let events = validate(req, &scope)?;
        let families: Vec<&'static str> = events.iter().map(|e| e.kind.family().as_str()).collect();
        let published = api.publisher.publish(events).await?;
        let stored = published.stored;
        let queued: i64 = stored.iter().map(|s| s.deliveries_queued).sum();
        let new = stored.iter().zip(&families).filter(|(s, _)| !s.duplicate);
        api.metrics
            .published(new.map(|(_, family)| *family), queued);
        tracing::debug!(events = stored.len(), deliveries = queued, "published");
        Ok(pb::PublishResponse {
            events: stored
                .into_iter()
                .map(|s| pb::PublishedEvent {
                    event_id: s.event_id.to_string(),
                    deliveries_queued: s.deliveries_queued,
                    duplicate: s.duplicate,
                    ..Default::default()
                })
                .collect(),
            deliveries_queued: queued,
            webhook_failures: published
                .failures
                .into_iter()
                .map(|f| pb::WebhookFailure {
                    webhook: f.webhook,
                    policy: f.policy.as_str().to_owned(),
                    event_index: i32::try_from(f.event_index).unwrap_or(i32::MAX),
                    kind: f.kind.to_owned(),
                    attempts: i32::try_from(f.attempts).unwrap_or(i32::MAX),
                    error: f.error,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }
}

/// The request's events, each validated and within the token's owners; the first that is
/// not fails the whole request, its error naming its index.
fn validate(req: &pb::PublishRequest, scope: &TokenScope) -> Result<Vec<OutboundEvent>> {
    if req.events.is_empty() || req.events.len() > MAX_BATCH {
        return Err(Error::InvalidArgument(format!(
            "events holds {} events; send 1 to {MAX_BATCH}",
            req.events.len()
        )));
    }
    let at = |index: usize| {
        move |e: Error| match e {
            Error::InvalidArgument(why) => {
                Error::InvalidArgument(format!("events[{index}]: {why}"))
            }
            Error::PermissionDenied(why) => {
                Error::PermissionDenied(format!("events[{index}]: {why}"))
            }
            other => other,
        }
    };
    req.events
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let key = Some(item.idempotency_key.as_str());
            let event = match (
                item.event.as_option(),
                item.registry.as_option(),
                item.github.as_option(),
            ) {
                (Some(request), None, None) => OutboundEvent::from_request(request, key),
                (None, Some(registry), None) => OutboundEvent::from_registry(registry, key),
                (None, None, Some(github)) => OutboundEvent::from_github(github, key),
                (None, None, None) => Err(Error::InvalidArgument(
                    "one of event, registry or github is required".into(),
                )),
                _ => Err(Error::InvalidArgument(
                    "set exactly one of event, registry and github".into(),
                )),
            }
            .map_err(at(index))?;
            scope.require(&event.owner).map_err(at(index))?;
            Ok(event)
        })
        .collect()
}

impl pb::PublishService for PublishApi {
    async fn publish(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::PublishRequest>,
    ) -> ServiceResult<pb::PublishResponse> {
        Ok(Response::new(
            PublishApi::publish(self, &ctx, &request.to_owned_message()).await?,
        ))
    }
}
