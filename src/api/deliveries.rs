//! `webhookd.v1.DeliveryService`: the delivery log, and redelivery.

use std::sync::Arc;

use buffa::{EnumValue, MessageField};
use buffa_types::google::protobuf::{Duration, Timestamp};
use connectrpc::{RequestContext, Response, ServiceRequest, ServiceResult, ServiceStream};

use super::auth::{
    authenticate, authorize_delivery, authorize_webhook, authorize_webhooks, delivery_not_found,
    subscription_not_found,
};
use super::{ApiContext, decode_page_token, paginate};
use crate::domain::{
    AttemptRecord, Delivery, DeliveryState, MAX_EVENT_NAME_CHARS, PageCursor, header_record,
};
use crate::error::{Error, Result};
use crate::proto::webhookd::v1 as pb;
use crate::store;
use crate::store::deliveries::{DeliveryFilter, Recovery, Redelivery};

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
        let filter = list_filter(req)?;
        let size = page_size(req.page_size)?;
        let mut conn = store::acquire(&api.pool).await?;
        let webhook = authorize_webhook(&mut conn, &scope, &req.webhook_id).await?;
        // A page token holds for the listing it came from: the same webhook and filters.
        let listing = format!(
            "deliveries/{webhook}/{}/{}/{}/{}",
            filter.state.map_or("any", DeliveryState::as_str),
            filter.event_type.as_deref().unwrap_or(""),
            filter.since.map(|t| t.to_rfc3339()).unwrap_or_default(),
            filter.until.map(|t| t.to_rfc3339()).unwrap_or_default(),
        );
        let after = decode_page_token(&req.page_token, &api.page_key, &listing)?;
        let limit = i64::try_from(size + 1).unwrap_or(i64::MAX);
        let page = store::deliveries::list(&mut conn, webhook, &filter, after, limit).await?;
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
        let cap = api.settings.record_request_bytes;
        let (delivery, attempts) =
            store::deliveries::get(&mut conn, id, after.map(|c| c.create_time), limit, cap)
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
                .map(|(number, a)| attempt_to_proto(&id.to_string(), number, a))
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

impl DeliveryApi {
    async fn recover(
        &self,
        ctx: &RequestContext,
        req: &pb::RecoverDeliveriesRequest,
    ) -> Result<pb::RecoverDeliveriesResponse> {
        let api = &self.0;
        let scope = authenticate(api, ctx).await?;
        let since = timestamp(req.since.as_option(), "since")?.ok_or_else(|| {
            Error::InvalidArgument("since is required: recover failures since when?".into())
        })?;
        let until = timestamp(req.until.as_option(), "until")?;
        check_window(Some(since), until)?;
        let mut conn = store::acquire(&api.pool).await?;
        let webhook = authorize_webhook(&mut conn, &scope, &req.subscription_id)
            .await
            .map_err(|_| subscription_not_found())?;
        let until = until.unwrap_or_else(chrono::Utc::now);
        match store::deliveries::recover(&mut conn, webhook, since, until).await? {
            Recovery::Queued(queued) => {
                if queued > 0 {
                    store::events::notify_batchers(&mut conn).await?;
                }
                tracing::info!(subscription_id = %webhook, queued, "failed deliveries recovered");
                Ok(pb::RecoverDeliveriesResponse {
                    queued,
                    ..Default::default()
                })
            }
            Recovery::NotFound => Err(subscription_not_found()),
            Recovery::NotActive(state, reason) => Err(Error::FailedPrecondition(format!(
                "subscription {webhook} is {state}{}: resume or enable it first; nothing was \
                 queued",
                reason.map(|r| format!(" ({r})")).unwrap_or_default()
            ))),
        }
    }
}

impl DeliveryApi {
    async fn stats(
        &self,
        ctx: &RequestContext,
        req: &pb::GetDeliveryStatsRequest,
    ) -> Result<pb::GetDeliveryStatsResponse> {
        let api = &self.0;
        let scope = authenticate(api, ctx).await?;
        if req.subscription_ids.len() > MAX_PAGE_SIZE {
            return Err(Error::InvalidArgument(format!(
                "at most {MAX_PAGE_SIZE} subscription_ids at a time"
            )));
        }
        let mut conn = store::acquire(&api.pool).await?;
        let ids = authorize_webhooks(
            &mut conn,
            &scope,
            &req.subscription_ids,
            subscription_not_found,
        )
        .await?;
        let since = chrono::Utc::now() - chrono::TimeDelta::hours(24);
        let hours = store::activity::hours_of(&mut conn, &ids, since).await?;
        let millis =
            |ms: i64| MessageField::some(Duration::from(chrono::TimeDelta::milliseconds(ms)));
        let stats = ids
            .iter()
            .map(|id| pb::SubscriptionStats {
                subscription_id: id.to_string(),
                // An id asked for twice is answered twice.
                hours: hours
                    .get(id)
                    .into_iter()
                    .flatten()
                    .map(|&(start, t)| pb::HourStats {
                        start_time: MessageField::some(Timestamp::from(start)),
                        attempts: t.attempts,
                        successes: t.successes,
                        mean_duration: millis(t.duration_ms_sum / t.attempts.max(1)),
                        max_duration: millis(i64::from(t.duration_ms_max)),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        Ok(pb::GetDeliveryStatsResponse {
            stats,
            ..Default::default()
        })
    }
}

/// A ListDeliveries request's filters, checked.
fn list_filter(req: &pb::ListDeliveriesRequest) -> Result<DeliveryFilter> {
    let state = DeliveryState::from_number(req.state.to_i32())
        .map_err(|n| Error::InvalidArgument(format!("state {n} is not a DeliveryState")))?;
    let (since, until) = (
        timestamp(req.since.as_option(), "since")?,
        timestamp(req.until.as_option(), "until")?,
    );
    check_window(since, until)?;
    let event_type = match req.event_type.as_str() {
        "" => None,
        name if name.len() > MAX_EVENT_NAME_CHARS => {
            return Err(Error::InvalidArgument(format!(
                "event_type is longer than {MAX_EVENT_NAME_CHARS} characters"
            )));
        }
        name => Some(name.to_owned()),
    };
    Ok(DeliveryFilter {
        state,
        event_type,
        since,
        until,
    })
}

/// A request's optional timestamp `field`, checked.
fn timestamp(
    value: Option<&Timestamp>,
    field: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
    value
        .map(|t| {
            chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(u32::MAX))
                .ok_or_else(|| Error::InvalidArgument(format!("{field} is not a valid time")))
        })
        .transpose()
}

/// A window whose `since` is not after its `until`.
fn check_window(
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<()> {
    match (since, until) {
        (Some(since), Some(until)) if since > until => Err(Error::InvalidArgument(format!(
            "since ({}) is after until ({}): the window is empty",
            since.to_rfc3339(),
            until.to_rfc3339()
        ))),
        _ => Ok(()),
    }
}

pub(super) fn to_proto(d: Delivery) -> pb::Delivery {
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
        event_type: d.event_type,
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

pub(super) fn attempt_to_proto(delivery_id: &str, number: i32, a: AttemptRecord) -> pb::Attempt {
    let context = header_record::Context {
        delivery_id,
        start_seconds: a.start_time.timestamp(),
    };
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
        request_headers: a
            .request
            .as_ref()
            .map(|r| headers_to_proto(&r.headers, context))
            .unwrap_or_default(),
        request_body_size: a.request.as_ref().map_or(0, |r| i64::from(r.body_size)),
        request_body: a.request.and_then(|r| r.body).unwrap_or_default(),
        response_headers: a
            .response_headers
            .as_deref()
            .map(|h| headers_to_proto(h, context))
            .unwrap_or_default(),
        ..Default::default()
    }
}

/// Recorded headers as `Header`s (none when the record is corrupt).
fn headers_to_proto(recorded: &[u8], context: header_record::Context<'_>) -> Vec<pb::Header> {
    header_record::decode(recorded, context)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| pb::Header {
            name,
            value,
            ..Default::default()
        })
        .collect()
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

    async fn recover_deliveries(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::RecoverDeliveriesRequest>,
    ) -> ServiceResult<pb::RecoverDeliveriesResponse> {
        Ok(Response::new(
            self.recover(&ctx, &request.to_owned_message()).await?,
        ))
    }

    async fn tail_deliveries(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::TailDeliveriesRequest>,
    ) -> ServiceResult<ServiceStream<pb::TailDeliveriesResponse>> {
        super::tail::tail_deliveries(&self.0, &ctx, &request.to_owned_message()).await
    }

    async fn get_delivery_stats(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::GetDeliveryStatsRequest>,
    ) -> ServiceResult<pb::GetDeliveryStatsResponse> {
        Ok(Response::new(
            self.stats(&ctx, &request.to_owned_message()).await?,
        ))
    }
}
