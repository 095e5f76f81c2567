//! `buf.alpha.registry.v1alpha1.WebhookService`: the BSR's Create/List/Delete, wire-compatible.

use buffa::{EnumValue, MessageField};
use buffa_types::google::protobuf::Timestamp;
use connectrpc::{RequestContext, Response, ServiceRequest, ServiceResult};
use sqlx::PgPool;

use super::ApiSettings;
use super::auth::authenticate;
use crate::domain::{
    CallbackUrl, NewWebhook, OwnerName, PageCursor, PageKey, RepositoryName, Webhook, WebhookEvent,
    WebhookId,
};
use crate::error::{Error, Result};
use crate::proto::buf::alpha::registry::v1alpha1 as pb;
use crate::store;

/// How many webhooks one ListWebhooks page holds. The request has no page size field, so
/// the server picks it.
pub const PAGE_SIZE: usize = 100;

/// The WebhookService implementation.
pub struct WebhookApi {
    pool: PgPool,
    settings: ApiSettings,
    page_key: PageKey,
}

impl WebhookApi {
    /// A service over `pool`.
    pub fn new(pool: PgPool, settings: ApiSettings, page_key: PageKey) -> Self {
        Self {
            pool,
            settings,
            page_key,
        }
    }

    async fn create(
        &self,
        ctx: &RequestContext,
        req: &pb::CreateWebhookRequest,
    ) -> Result<pb::CreateWebhookResponse> {
        let scope = authenticate(&self.pool, ctx).await?;
        let new = NewWebhook {
            event: WebhookEvent::from_number(req.webhook_event.to_i32())?,
            owner: OwnerName::parse(&req.owner_name)?,
            repository: RepositoryName::parse(&req.repository_name)?,
            callback_url: CallbackUrl::parse(
                &req.callback_url,
                self.settings.allow_insecure_callbacks,
            )?,
        };
        scope.require(&new.owner)?;
        let max = i64::from(self.settings.max_webhooks_per_repository);
        let mut conn = store::acquire(&self.pool).await?;
        let webhook = store::webhooks::insert(&mut conn, &new, max).await?;
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
        let scope = authenticate(&self.pool, ctx).await?;
        let owner = OwnerName::parse(&req.owner_name)?;
        let repository = RepositoryName::parse(&req.repository_name)?;
        scope.require(&owner)?;
        let after = match req.page_token.as_str() {
            "" => None,
            token => Some(PageCursor::decode(
                token,
                &self.page_key,
                &owner,
                &repository,
            )?),
        };
        let mut conn = store::acquire(&self.pool).await?;
        let limit = i64::try_from(PAGE_SIZE + 1).unwrap_or(i64::MAX);
        let mut page = store::webhooks::list_page(
            &mut conn,
            owner.as_str(),
            repository.as_str(),
            after,
            limit,
        )
        .await?;
        let next_page_token = if page.len() > PAGE_SIZE {
            page.truncate(PAGE_SIZE);
            page.last()
                .map(|w| {
                    PageCursor {
                        create_time: w.create_time,
                        id: w.id.0,
                    }
                    .encode(&self.page_key, &owner, &repository)
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
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
        let scope = authenticate(&self.pool, ctx).await?;
        // A malformed id, an unknown id and another owner's id all look the same, so that a
        // caller learns nothing about webhooks it may not see.
        let not_found = || {
            Error::NotFound(
                "no such webhook (or it belongs to an owner this token does not cover)".into(),
            )
        };
        let id = WebhookId::parse(&req.webhook_id).ok_or_else(not_found)?;
        let mut conn = store::acquire(&self.pool).await?;
        if !store::webhooks::delete(&mut conn, id, &scope).await? {
            return Err(not_found());
        }
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
        let request = request.to_owned_message();
        Ok(Response::new(self.create(&ctx, &request).await?))
    }

    async fn delete_webhook(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::DeleteWebhookRequest>,
    ) -> ServiceResult<pb::DeleteWebhookResponse> {
        let request = request.to_owned_message();
        Ok(Response::new(self.delete(&ctx, &request).await?))
    }

    async fn list_webhooks(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::ListWebhooksRequest>,
    ) -> ServiceResult<pb::ListWebhooksResponse> {
        let request = request.to_owned_message();
        Ok(Response::new(self.list(&ctx, &request).await?))
    }
}
