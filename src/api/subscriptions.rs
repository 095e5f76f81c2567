//! `webhookd.v1.SubscriptionService`: a webhook's signing secret, read and rotated.

use std::sync::Arc;

use buffa::MessageField;
use buffa_types::google::protobuf::Timestamp;
use connectrpc::{RequestContext, Response, ServiceRequest, ServiceResult};

use super::ApiContext;
use super::auth::{authenticate, authorize_webhook};
use crate::error::{Error, Result};
use crate::proto::webhookd::v1 as pb;
use crate::signing::SigningSecret;
use crate::store;

/// How long a rotated-out secret keeps signing beside the new one.
pub const ROTATION_OVERLAP_SECS: f64 = 24.0 * 3600.0;

/// The SubscriptionService implementation.
pub struct SubscriptionApi(pub Arc<ApiContext>);

impl SubscriptionApi {
    async fn get(
        &self,
        ctx: &RequestContext,
        req: &pb::GetSigningSecretRequest,
    ) -> Result<pb::GetSigningSecretResponse> {
        let api = &self.0;
        let scope = authenticate(api, ctx).await?;
        let mut conn = store::acquire(&api.pool).await?;
        let id = authorize_webhook(&mut conn, &scope, &req.webhook_id).await?;
        let sealed = store::secrets::current(&mut conn, id)
            .await?
            .ok_or_else(|| {
                Error::Internal(anyhow::anyhow!(
                    "webhook {id} has no current signing secret"
                ))
            })?;
        let secret =
            String::from_utf8(api.secrets.open(id, &sealed)?).map_err(anyhow::Error::from)?;
        Ok(pb::GetSigningSecretResponse {
            secret,
            ..Default::default()
        })
    }

    async fn rotate(
        &self,
        ctx: &RequestContext,
        req: &pb::RotateSigningSecretRequest,
    ) -> Result<pb::RotateSigningSecretResponse> {
        let api = &self.0;
        let scope = authenticate(api, ctx).await?;
        let mut conn = store::acquire(&api.pool).await?;
        let id = authorize_webhook(&mut conn, &scope, &req.webhook_id).await?;
        let secret = SigningSecret::generate();
        let sealed = api.secrets.seal(id, secret.expose().as_bytes());
        let expire = store::secrets::rotate(&mut conn, id, &sealed, ROTATION_OVERLAP_SECS)
            .await?
            .ok_or_else(super::auth::webhook_not_found)?;
        tracing::info!(webhook_id = %id, "signing secret rotated");
        Ok(pb::RotateSigningSecretResponse {
            secret: secret.expose().to_owned(),
            previous_secret_expire_time: MessageField::some(Timestamp::from(expire)),
            ..Default::default()
        })
    }
}

impl pb::SubscriptionService for SubscriptionApi {
    async fn get_signing_secret(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::GetSigningSecretRequest>,
    ) -> ServiceResult<pb::GetSigningSecretResponse> {
        Ok(Response::new(
            self.get(&ctx, &request.to_owned_message()).await?,
        ))
    }

    async fn rotate_signing_secret(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::RotateSigningSecretRequest>,
    ) -> ServiceResult<pb::RotateSigningSecretResponse> {
        Ok(Response::new(
            self.rotate(&ctx, &request.to_owned_message()).await?,
        ))
    }
}
