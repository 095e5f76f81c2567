//! `webhookd.v1.DeliveryService`: the delivery log, and redelivery.

use std::sync::Arc;

use buffa::{EnumValue, MessageField};
use buffa_types::google::protobuf::{Duration, Timestamp};
use connectrpc::{RequestContext, Response, ServiceRequest, ServiceResult};

use super::auth::{authenticate, authorize_delivery, authorize_webhook, delivery_not_found};
use super::{ApiContext, decode_page_token, paginate};
use crate::domain::{AttemptRecord, Delivery, DeliveryState, PageCursor};
use crate::error::{Error, Result};
use crate::proto::webhookd::v1 as pb;
use crate::store;
use crate::store::deliveries::Redelivery;

/// The largest (and default) ListDeliveries page.
pub const MAX_PAGE_SIZE: usize = 100;

/// The DeliveryService implementation.
pub struct DeliveryApi(pub Arc<ApiContext>);

impl DeliveryApi {
    async fn list(
        &self,
        ctx: &RequestContext,
        req: &pb::ListDeliveriesRequest,
    ) -> Result<pb::ListDeliveriesResponse> {
        let api = &self.0;
        let scope = authenticate(api, ctx).await?;
        let state = DeliveryState::from_number(req.state.to_i32())
            .map_err(|n| Error::InvalidArgument(format!("state {n} is not a DeliveryState")))?;
        let size = page_size(req.page_size)?;
        let mut conn = store::acquire(&api.pool).await?;
        let webhook = authorize_webhook(&mut conn, &scope, &req.webhook_id).await?;
        let listing = format!(
            "deliveries/{webhook}/{}",
            state.map_or("any", DeliveryState::as_str)
        );
        let after = decode_page_token(&req.page_token, &api.page_key, &listing)?;
        let limit = i64::try_from(size + 1).unwrap_or(i64::MAX);
        let page = store::deliveries::list(&mut conn, webhook, state, after, limit).await?;
        let (page, next_page_token) =
            paginate(page, size, &api.page_key, &listing, |d: &Delivery| {
                PageCursor {
                    create_time: d.create_time,
                    id: d.id.0,
                }
            });
        Ok(pb::ListDeliveriesResponse {
            deliveries: page.into_iter().map(to_proto).collect(),
            next_page_token,
            ..Default::default()
        })
    }

    async fn get(
        &self,
        ctx: &RequestContext,
        req: &pb::GetDeliveryRequest,
    ) -> Result<pb::GetDeliveryResponse> {
        let api = &self.0;
        let scope = authenticate(api, ctx).await?;
        let mut conn = store::acquire(&api.pool).await?;
        let id = authorize_delivery(&mut conn, &scope, &req.delivery_id).await?;
        let size = page_size(req.page_size)?;
        let listing = format!("attempts/{id}");
        let after = decode_page_token(&req.page_token, &api.page_key, &listing)?;
        let limit = i64::try_from(size + 1).unwrap_or(i64::MAX);
        let (delivery, attempts) =
            store::deliveries::get(&mut conn, id, after.map(|c| c.create_time), limit)
                .await?
                .ok_or_else(delivery_not_found)?;
        let (attempts, next_page_token) =
            paginate(attempts, size, &api.page_key, &listing, |(_, a)| {
                PageCursor {
                    create_time: a.start_time,
                    id: id.0,
                }
            });
        Ok(pb::GetDeliveryResponse {
            delivery: MessageField::some(to_proto(delivery)),
            attempts: attempts
                .into_iter()
                .map(|(number, a)| attempt_to_proto(number, a))
                .collect(),
            next_page_token,
            ..Default::default()
        })
    }

    async fn redeliver(
        &self,
        ctx: &RequestContext,
        req: &pb::RedeliverRequest,
    ) -> Result<pb::RedeliverResponse> {
        let api = &self.0;
        let scope = authenticate(api, ctx).await?;
        let mut conn = store::acquire(&api.pool).await?;
        let id = authorize_delivery(&mut conn, &scope, &req.delivery_id).await?;
        let delivery = match store::deliveries::redeliver(&mut conn, id).await? {
            Redelivery::Queued(delivery) => delivery,
            Redelivery::NotFound => return Err(delivery_not_found()),
            Redelivery::WebhookDisabled(reason) => {
                return Err(Error::FailedPrecondition(format!(
                    "delivery {id} cannot be redelivered: its webhook is disabled ({}); \
                     nothing was queued",
                    reason.as_deref().unwrap_or("no reason recorded")
                )));
            }
        };
        store::events::notify_batchers(&mut conn).await?;
        tracing::info!(delivery_id = %id, "redelivery queued");
        Ok(pb::RedeliverResponse {
            delivery: MessageField::some(to_proto(delivery)),
            ..Default::default()
        })
    }
}

fn to_proto(d: Delivery) -> pb::Delivery {
    pb::Delivery {
        delivery_id: d.id.to_string(),
        webhook_id: d.webhook_id.to_string(),
        event_id: d.event_id.to_string(),
        state: EnumValue::from(d.state.number()),
        attempt_count: d.attempt_count,
        create_time: MessageField::some(Timestamp::from(d.create_time)),
        next_attempt_time: if d.state == DeliveryState::Pending {
            MessageField::some(Timestamp::from(d.next_attempt_time))
        } else {
            MessageField::none()
        },
        last_attempt_time: d
            .last_attempt_time
            .map(Timestamp::from)
            .map(MessageField::some)
            .unwrap_or_default(),
        last_http_status: d.last_http_status.unwrap_or(0),
        ..Default::default()
    }
}

/// A `page_size` (0: the largest) as a number of items.
fn page_size(requested: i32) -> Result<usize> {
    match usize::try_from(requested) {
        Ok(0) => Ok(MAX_PAGE_SIZE),
        Ok(n) if n <= MAX_PAGE_SIZE => Ok(n),
        _ => Err(Error::InvalidArgument(format!(
            "page_size must be 0 to {MAX_PAGE_SIZE}"
        ))),
    }
}

fn attempt_to_proto(number: i32, a: AttemptRecord) -> pb::Attempt {
    pb::Attempt {
        number,
        start_time: MessageField::some(Timestamp::from(a.start_time)),
        duration: MessageField::some(Duration::from(chrono::TimeDelta::milliseconds(i64::from(
            a.duration_ms,
        )))),
        http_status: a.http_status.unwrap_or(0),
        connect_code: a.connect_code.unwrap_or_default(),
        response_body: a.response_body.unwrap_or_default(),
        error: a.error.unwrap_or_default(),
        ..Default::default()
    }
}

impl pb::DeliveryService for DeliveryApi {
    async fn list_deliveries(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::ListDeliveriesRequest>,
    ) -> ServiceResult<pb::ListDeliveriesResponse> {
        Ok(Response::new(
            self.list(&ctx, &request.to_owned_message()).await?,
        ))
    }

    async fn get_delivery(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::GetDeliveryRequest>,
    ) -> ServiceResult<pb::GetDeliveryResponse> {
        Ok(Response::new(
            self.get(&ctx, &request.to_owned_message()).await?,
        ))
    }

    async fn redeliver(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::RedeliverRequest>,
    ) -> ServiceResult<pb::RedeliverResponse> {
        Ok(Response::new(
            DeliveryApi::redeliver(self, &ctx, &request.to_owned_message()).await?,
        ))
    }
}
