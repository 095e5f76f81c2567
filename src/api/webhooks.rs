//! `buf.alpha.registry.v1alpha1.WebhookService`: the BSR's Create/List/Delete, wire-compatible.

use std::sync::Arc;

use buffa::{EnumValue, MessageField};
use buffa_types::google::protobuf::Timestamp;
use connectrpc::{RequestContext, Response, ServiceRequest, ServiceResult};

use super::auth::{authenticate, webhook_not_found};
use super::{ApiContext, decode_page_token, paginate};
use crate::domain::{
    CallbackUrl, NewWebhook, OwnerName, PageCursor, RepositoryName, Webhook, WebhookEvent,
    WebhookId,
};
use crate::error::Result;
use crate::proto::buf::alpha::registry::v1alpha1 as pb;
use crate::signing::SigningSecret;
use crate::store;

/// How many webhooks one ListWebhooks page holds. The request has no page size field, so
/// the server picks it.
pub const PAGE_SIZE: usize = 100;

/// The WebhookService implementation.
pub struct WebhookApi(pub Arc<ApiContext>);

impl WebhookApi {
    async fn create(
        &self,
        ctx: &RequestContext,
        req: &pb::CreateWebhookRequest,
    ) -> Result<pb::CreateWebhookResponse> {
        let api = &self.0;
        let scope = authenticate(api, ctx).await?;
        let new = NewWebhook {
            event: WebhookEvent::from_number(req.webhook_event.to_i32())?,
            owner: OwnerName::parse(&req.owner_name)?,
            repository: RepositoryName::parse(&req.repository_name)?,
            callback_url: CallbackUrl::parse(
                &req.callback_url,
                api.settings.allow_insecure_callbacks,
            )?,
        };
        scope.require(&new.owner)?;
        let limits = api.settings.webhook_limits;
        let id = WebhookId::generate();
        let sealed_secret = api
            .secrets
            .seal(id, SigningSecret::generate().expose().as_bytes());
        let mut conn = store::acquire(&api.pool).await?;
        let webhook = store::webhooks::insert(&mut conn, id, &new, limits, &sealed_secret).await?;
        // Back to the pool before queueing the announcement, which needs one to be sent.
        drop(conn);
        (api.cache)
            .webhooks_changed(&webhook.owner, &webhook.repository)
            .await;
        tracing::info!(webhook_id = %webhook.id, owner = %new.owner, repository = %new.repository, "webhook created");
        Ok(pb::CreateWebhookResponse {
            webhook: MessageField::some(to_proto(webhook)),
            ..Default::default()
        })
    }

    async fn list(
        &self,
        ctx: &RequestContext,
        req: &pb::ListWebhooksRequest,
    ) -> Result<pb::ListWebhooksResponse> {
        let api = &self.0;
        let scope = authenticate(api, ctx).await?;
        let owner = OwnerName::parse(&req.owner_name)?;
        let repository = RepositoryName::parse(&req.repository_name)?;
        scope.require(&owner)?;
        let listing = format!("webhooks/{owner}/{repository}");
        let after = decode_page_token(&req.page_token, &api.page_key, &listing)?;
        let limit = i64::try_from(PAGE_SIZE + 1).unwrap_or(i64::MAX);
        let page = match after {
            None => {
                let first = (api.cache)
                    .first_page(&api.pool, owner.as_str(), repository.as_str(), limit)
                    .await?;
                Vec::clone(&first)
            }
            Some(after) => {
                let mut conn = store::acquire(&api.pool).await?;
                store::webhooks::list_page(
                    &mut conn,
                    owner.as_str(),
                    repository.as_str(),
                    Some(after),
                    limit,
                )
                .await?
            }
        };
        let (page, next_page_token) =
            paginate(page, PAGE_SIZE, &api.page_key, &listing, |w: &Webhook| {
                PageCursor {
                    create_time: w.create_time,
                    id: w.id.0,
                }
            });
        Ok(pb::ListWebhooksResponse {
            webhooks: page.into_iter().map(to_proto).collect(),
            next_page_token,
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        ctx: &RequestContext,
        req: &pb::DeleteWebhookRequest,
    ) -> Result<pb::DeleteWebhookResponse> {
        let api = &self.0;
        let scope = authenticate(api, ctx).await?;
        // A malformed id, an unknown id and another owner's id all look the same, so that a
        // caller learns nothing about webhooks it may not see.
        let id = WebhookId::parse(&req.webhook_id).ok_or_else(webhook_not_found)?;
        let mut conn = store::acquire(&api.pool).await?;
        let Some((owner, repository)) = store::webhooks::delete(&mut conn, id, &scope).await?
        else {
            return Err(webhook_not_found());
        };
        drop(conn);
        api.cache.webhooks_changed(&owner, &repository).await;
        tracing::info!(webhook_id = %id, "webhook deleted");
        Ok(pb::DeleteWebhookResponse::default())
    }
}

fn to_proto(webhook: Webhook) -> pb::Webhook {
    pb::Webhook {
        event: EnumValue::from(webhook.event),
        webhook_id: webhook.id.to_string(),
        create_time: MessageField::some(Timestamp::from(webhook.create_time)),
        update_time: MessageField::some(Timestamp::from(webhook.update_time)),
        repository_name: webhook.repository,
        owner_name: webhook.owner,
        callback_url: webhook.callback_url,
        ..Default::default()
    }
}

impl pb::WebhookService for WebhookApi {
    async fn create_webhook(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::CreateWebhookRequest>,
    ) -> ServiceResult<pb::CreateWebhookResponse> {
        Ok(Response::new(
            self.create(&ctx, &request.to_owned_message()).await?,
        ))
    }

    async fn delete_webhook(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::DeleteWebhookRequest>,
    ) -> ServiceResult<pb::DeleteWebhookResponse> {
        Ok(Response::new(
            self.delete(&ctx, &request.to_owned_message()).await?,
        ))
    }

    async fn list_webhooks(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::ListWebhooksRequest>,
    ) -> ServiceResult<pb::ListWebhooksResponse> {
        Ok(Response::new(
            self.list(&ctx, &request.to_owned_message()).await?,
        ))
    }
}
