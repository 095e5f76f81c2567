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
        let stored = api.publisher.publish(events).await?;
        let queued: i64 = stored.iter().map(|s| s.deliveries_queued).sum();
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
            let request = item
                .event
                .as_option()
                .ok_or_else(|| Error::InvalidArgument("event is required".into()))
                .map_err(at(index))?;
            let event = OutboundEvent::from_request(request, Some(&item.idempotency_key))
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
