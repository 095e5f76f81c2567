//! `webhookd.v1.SubscriptionService`: subscriptions of every family (create, read, list,
//! change, delete, pause, resume, ping), the event type catalog, and each subscription's
//! signing secret, read and rotated.

use std::sync::Arc;

use buffa::{EnumValue, MessageField};
use buffa_types::google::protobuf::Timestamp;
use connectrpc::{RequestContext, Response, ServiceRequest, ServiceResult};

use super::auth::{authenticate, authorize_webhook, listed_owner};
use super::subscription_proto::{
    SpecFields, auth_header, check_filters_fit, family, family_filter, family_proto, format_proto,
    state_filter, state_to_set, stored_spec, to_proto, with_activity,
};
use super::{ApiContext, decode_page_token, paginate};
use crate::domain::{
    BSR_PUSH, CallbackUrl, FACE_BSR, FACE_FILE, FACE_GITHUB, FACE_HARBOR, FACE_NATIVE, Family,
    GITHUB_TYPES, NewSubscription, OPERATIONAL_TYPES, OwnerName, PageCursor, REGISTRY_TYPES,
    RepositoryName, Subscription, SubscriptionState, WebhookId,
};
use crate::error::{Error, Result};
use crate::proto::webhookd::v1 as pb;
use crate::signing::SigningSecret;
use crate::store;
use crate::store::subscriptions::{Sealed, SealedChanges};

/// ListSubscriptions' page size when the request names none, and the most it allows.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// The largest ListSubscriptions page.
pub const MAX_PAGE_SIZE: usize = 100;
/// The most owners ListOwners lists for a token of every owner.
const MAX_OWNERS: i64 = 1000;

/// The fields UpdateSubscription changes, as update_mask names them.
const UPDATABLE: &[&str] = &[
    "event_types",
    "repository_filters",
    "tag_filters",
    "url",
    "format",
    "format_options",
    "auth_header",
    "skip_tls_verify",
    "headers",
    "omit_standard_headers",
    "no_retries",
    "name",
    "description",
    "state",
];
/// Of those, the ones a BSR webhook's routing and format fix: the BSR's API manages them.
const FIXED_FOR_BSR: &[&str] = &["event_types", "repository_filters", "tag_filters", "format"];
/// What the native API may change of a Harbor policy's target (the policy sets the rest).
const MAY_CHANGE_FOR_HARBOR: &[&str] = &["no_retries", "headers", "name"];

/// How long a rotated-out secret keeps signing beside the new one.
pub const ROTATION_OVERLAP_SECS: f64 = 24.0 * 3600.0;

/// The SubscriptionService implementation.
pub struct SubscriptionApi(pub Arc<ApiContext>);

impl SubscriptionApi {
    async fn create(
        &self,
        ctx: &RequestContext,
        req: &pb::CreateSubscriptionRequest,
    ) -> Result<pb::CreateSubscriptionResponse> {
        let api = &self.0;
        let scope = authenticate(api, ctx).await?;
        let Some(from) = req.subscription.as_option() else {
            return Err(Error::InvalidArgument("subscription is required".into()));
        };
        let family = family(from.family, "subscription.family")?;
        let owner = OwnerName::parse_in(family, "owner", &from.owner)?;
        scope.require(&owner)?;
        let fields = SpecFields {
            from,
            family,
            allow_insecure: api.settings.allow_insecure_callbacks,
        };
        let new = NewSubscription {
            face: FACE_NATIVE,
            owner,
            family,
            spec: fields.spec()?,
        };
        let id = WebhookId::generate();
        let secret = SigningSecret::generate();
        let sealed_secret = api.secrets.seal(id, secret.expose().as_bytes());
        let sealed_auth =
            (new.spec.auth_header.as_ref()).map(|h| api.secrets.seal(id, h.as_bytes()));
        let mut conn = store::acquire(&api.pool).await?;
        let created = store::subscriptions::insert(
            &mut conn,
            id,
            &new,
            api.settings.webhook_limits,
            Sealed {
                signing_secret: &sealed_secret,
                auth_header: sealed_auth.as_deref(),
                hub_secret: None,
            },
        )
        .await?;
        tracing::info!(subscription_id = %id, owner = %new.owner, family = family.as_str(),
            format = created.format.as_str(), "subscription created");
        Ok(pb::CreateSubscriptionResponse {
            subscription: MessageField::some(to_proto(created)),
            signing_secret: secret.expose().to_owned(),
            ..Default::default()
        })
    }

    /// The subscription `id` names, if the token may see it.
    async fn find(
        &self,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<(sqlx::pool::PoolConnection<sqlx::Postgres>, Subscription)> {
        let api = &self.0;
        let scope = authenticate(api, ctx).await?;
        // One read: the row itself says whose it is (a malformed id, an unknown one and
        // another owner's all give the same not_found).
        let id = WebhookId::parse(id).ok_or_else(super::auth::subscription_not_found)?;
        let mut conn = store::acquire(&api.pool).await?;
        let found = store::subscriptions::get(&mut conn, id)
            .await?
            .filter(|s| scope.covers(&s.owner))
            .ok_or_else(super::auth::subscription_not_found)?;
        Ok((conn, found))
    }

    /// [`Self::find`], refusing the configuration file's webhooks: they change only with
    /// the file.
    async fn find_writable(
        &self,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<(sqlx::pool::PoolConnection<sqlx::Postgres>, Subscription)> {
        let (conn, found) = self.find(ctx, id).await?;
        read_only(&found)?;
        Ok((conn, found))
    }

    async fn read(
        &self,
        ctx: &RequestContext,
        req: &pb::GetSubscriptionRequest,
    ) -> Result<pb::GetSubscriptionResponse> {
        let (mut conn, found) = self.find(ctx, &req.subscription_id).await?;
        let activity = store::activity::of(&mut conn, &[found.id]).await?;
        let id = found.id;
        let subscription = with_activity(
            to_proto(found),
            &activity.get(&id).cloned().unwrap_or_default(),
        );
        Ok(pb::GetSubscriptionResponse {
            subscription: MessageField::some(subscription),
            ..Default::default()
        })
    }

    async fn list(
        &self,
        ctx: &RequestContext,
        req: &pb::ListSubscriptionsRequest,
    ) -> Result<pb::ListSubscriptionsResponse> {
        let api = &self.0;
        let scope = authenticate(api, ctx).await?;
        let family = family_filter(req.family)?;
        let owner = listed_owner(&scope, &req.owner)?;
        let filter = store::subscriptions::ListFilter {
            repository: (!req.repository.is_empty()).then(|| req.repository.clone()),
            state: state_filter(req.state)?,
            family,
        };
        let size = match usize::try_from(req.page_size) {
            Ok(0) => DEFAULT_PAGE_SIZE,
            Ok(n) if n <= MAX_PAGE_SIZE => n,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "page_size must be between 0 and {MAX_PAGE_SIZE}"
                )));
            }
        };
        let listing = format!(
            "subscriptions/{owner}/{}/{:?}/{:?}",
            req.repository,
            filter.state.map(SubscriptionState::as_str),
            family.map(Family::as_str)
        );
        let after = decode_page_token(&req.page_token, &api.page_key, &listing)?;
        let limit = i64::try_from(size + 1).unwrap_or(i64::MAX);
        let mut conn = store::acquire(&api.pool).await?;
        let page =
            store::subscriptions::list_page(&mut conn, &owner, &filter, after, limit).await?;
        let (page, next_page_token) =
            paginate(page, size, &api.page_key, &listing, |s: &Subscription| {
                PageCursor {
                    create_time: s.create_time,
                    id: s.id.0,
                }
            });
        let ids: Vec<WebhookId> = page.iter().map(|s| s.id).collect();
        let activity = store::activity::of(&mut conn, &ids).await?;
        let none = store::activity::Activity::default();
        Ok(pb::ListSubscriptionsResponse {
            subscriptions: page
                .into_iter()
                .map(|s| {
                    let found = activity.get(&s.id).unwrap_or(&none);
                    with_activity(to_proto(s), found)
                })
                .collect(),
            next_page_token,
            ..Default::default()
        })
    }

    async fn update(
        &self,
        ctx: &RequestContext,
        req: &pb::UpdateSubscriptionRequest,
    ) -> Result<pb::UpdateSubscriptionResponse> {
        let api = &self.0;
        let Some(from) = req.subscription.as_option() else {
            return Err(Error::InvalidArgument("subscription is required".into()));
        };
        let paths = mask_paths(req.update_mask.as_option())?;
        let (mut conn, current) = self.find_writable(ctx, &from.subscription_id).await?;
        if current.face == FACE_BSR
            && let Some(fixed) = paths.iter().find(|p| FIXED_FOR_BSR.contains(&p.as_str()))
        {
            return Err(Error::FailedPrecondition(format!(
                "{fixed} of a BSR webhook is fixed by the BSR's WebhookService; create a \
                 subscription for other event types, filters or formats"
            )));
        }
        if current.face == FACE_HARBOR
            && let Some(fixed) = paths
                .iter()
                .find(|p| !MAY_CHANGE_FOR_HARBOR.contains(&p.as_str()))
        {
            return Err(Error::FailedPrecondition(format!(
                "{fixed} of a Harbor policy's target is set by its policy: change the policy \
                 through /api/v2.0 (PUT .../webhook/policies/ID)"
            )));
        }
        if current.face == FACE_GITHUB && paths.iter().any(|p| p == "format") {
            return Err(Error::FailedPrecondition(
                "format of a GitHub hook is fixed (github; its content type is the hook's \
                 config.content_type); create a subscription for other formats"
                    .into(),
            ));
        }
        let fields = SpecFields {
            from,
            family: current.family,
            allow_insecure: api.settings.allow_insecure_callbacks,
        };
        let mut spec = stored_spec(&current)?;
        let has = |path: &str| paths.iter().any(|p| p == path);
        if has("event_types") {
            spec.event_types = fields.event_types()?;
        }
        if has("repository_filters") {
            spec.repository_filters = fields.repository_filters()?;
        }
        if has("tag_filters") {
            spec.tag_filters = fields.tag_filters()?;
        }
        if has("url") {
            spec.url = if current.face == FACE_BSR {
                CallbackUrl::parse(&from.url, api.settings.allow_insecure_callbacks)
                    .map_err(|e| Error::InvalidArgument(format!("url: {e}")))?
            } else {
                fields.url()?
            };
        }
        if has("format") {
            spec.format = fields.format()?;
            if !has("format_options") {
                spec.format_options = Default::default();
            }
        }
        if has("format_options") {
            spec.format_options = fields.format_options(spec.format)?;
        }
        if has("skip_tls_verify") {
            spec.skip_tls_verify = from.skip_tls_verify;
        }
        if has("headers") {
            spec.headers = fields.headers()?;
        }
        if has("omit_standard_headers") {
            spec.omit_standard_headers = from.omit_standard_headers;
        }
        if has("no_retries") {
            spec.no_retries = from.no_retries;
        }
        if has("name") || has("description") {
            let (name, description) = fields.texts()?;
            if has("name") {
                spec.name = name;
            }
            if has("description") {
                spec.description = description;
            }
        }
        if !current.all_repositories {
            spec.repository = Some(RepositoryName::parse_in(
                current.family,
                "repository",
                &current.repository,
            )?);
        }
        check_filters_fit(&spec)?;
        let state = has("state").then(|| state_to_set(from.state)).transpose()?;
        if state.is_some() {
            check_reason(&from.state_reason)?;
        }
        let sealed_auth = if has("auth_header") {
            let header = auth_header(&from.auth_header)?;
            Some(header.map(|h| api.secrets.seal(current.id, h.as_bytes())))
        } else {
            None
        };
        // The fields and the state together, or neither.
        let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
        let sealed = SealedChanges {
            auth_header: sealed_auth,
            hub_secret: None,
        };
        let mut updated = store::subscriptions::update(&mut tx, &current, &spec, sealed)
            .await?
            .ok_or_else(super::auth::subscription_not_found)?;
        if let Some(state) = state {
            updated = self
                .move_to(&mut tx, current.id, state, &from.state_reason)
                .await?;
        }
        tx.commit().await?;
        drop(conn);
        if current.face == FACE_BSR {
            (api.cache)
                .webhooks_changed(&current.owner, &current.repository)
                .await;
        }
        tracing::info!(subscription_id = %current.id, fields = ?paths, "subscription updated");
        Ok(pb::UpdateSubscriptionResponse {
            subscription: MessageField::some(to_proto(updated)),
            ..Default::default()
        })
    }

    /// Moves a subscription to `state`, waking the batchers when it becomes active (a paused
    /// one's held deliveries are due).
    async fn move_to(
        &self,
        conn: &mut sqlx::PgConnection,
        id: WebhookId,
        state: SubscriptionState,
        reason: &str,
    ) -> Result<Subscription> {
        check_reason(reason)?;
        let moved = store::subscriptions::set_state(conn, id, state, reason)
            .await?
            .ok_or_else(super::auth::subscription_not_found)?;
        if state == SubscriptionState::Active {
            store::events::notify_batchers(conn).await?;
        }
        tracing::info!(subscription_id = %id, state = state.as_str(), "subscription state changed");
        Ok(moved)
    }

    async fn delete(
        &self,
        ctx: &RequestContext,
        req: &pb::DeleteSubscriptionRequest,
    ) -> Result<pb::DeleteSubscriptionResponse> {
        let api = &self.0;
        let scope = authenticate(api, ctx).await?;
        let id = WebhookId::parse(&req.subscription_id)
            .ok_or_else(super::auth::subscription_not_found)?;
        let mut conn = store::acquire(&api.pool).await?;
        if let Some(found) = store::subscriptions::get(&mut conn, id).await?
            && scope.covers(&found.owner)
        {
            read_only(&found)?;
            if found.face == FACE_HARBOR {
                return Err(Error::FailedPrecondition(
                    "this subscription is a target of a Harbor policy: delete the policy, or \
                     change its targets, through /api/v2.0"
                        .into(),
                ));
            }
        }
        let Some((owner, repository)) = store::webhooks::delete(&mut conn, id, &scope).await?
        else {
            return Err(super::auth::subscription_not_found());
        };
        drop(conn);
        api.cache.webhooks_changed(&owner, &repository).await;
        tracing::info!(subscription_id = %id, "subscription deleted");
        Ok(pb::DeleteSubscriptionResponse::default())
    }

    async fn pause(
        &self,
        ctx: &RequestContext,
        req: &pb::PauseSubscriptionRequest,
    ) -> Result<pb::PauseSubscriptionResponse> {
        let (mut conn, found) = self.find_writable(ctx, &req.subscription_id).await?;
        if found.state == SubscriptionState::Disabled {
            return Err(Error::FailedPrecondition(
                "the subscription is disabled (nothing is queued to hold); resume it first".into(),
            ));
        }
        let paused = self
            .move_to(&mut conn, found.id, SubscriptionState::Paused, &req.reason)
            .await?;
        Ok(pb::PauseSubscriptionResponse {
            subscription: MessageField::some(to_proto(paused)),
            ..Default::default()
        })
    }

    async fn resume(
        &self,
        ctx: &RequestContext,
        req: &pb::ResumeSubscriptionRequest,
    ) -> Result<pb::ResumeSubscriptionResponse> {
        let (mut conn, found) = self.find_writable(ctx, &req.subscription_id).await?;
        let resumed = self
            .move_to(&mut conn, found.id, SubscriptionState::Active, "")
            .await?;
        Ok(pb::ResumeSubscriptionResponse {
            subscription: MessageField::some(to_proto(resumed)),
            ..Default::default()
        })
    }

    async fn ping(
        &self,
        ctx: &RequestContext,
        req: &pb::PingSubscriptionRequest,
    ) -> Result<pb::PingSubscriptionResponse> {
        let (mut conn, found) = self.find(ctx, &req.subscription_id).await?;
        if found.state == SubscriptionState::Disabled {
            return Err(Error::FailedPrecondition(
                "the subscription is disabled; resume it to ping it".into(),
            ));
        }
        let delivery = store::events::ping(&mut conn, &found).await?;
        tracing::info!(subscription_id = %found.id, delivery_id = %delivery, "ping queued");
        Ok(pb::PingSubscriptionResponse {
            delivery_id: delivery.to_string(),
            ..Default::default()
        })
    }

    async fn event_types(
        &self,
        ctx: &RequestContext,
        req: &pb::ListEventTypesRequest,
    ) -> Result<pb::ListEventTypesResponse> {
        authenticate(&self.0, ctx).await?;
        let only = family_filter(req.family)?;
        let families = Family::ALL
            .into_iter()
            .filter(|f| only.is_none_or(|o| o == *f))
            .map(catalog)
            .collect();
        Ok(pb::ListEventTypesResponse {
            families,
            ..Default::default()
        })
    }
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

/// Refuses a change to one of the configuration file's webhooks.
fn read_only(found: &Subscription) -> Result<()> {
    if found.face == FACE_FILE {
        return Err(Error::FailedPrecondition(format!(
            "subscription {:?} is the configuration file's [event_webhook.{}]: change it in \
             the file (webhookd reloads it)",
            found.name, found.name
        )));
    }
    Ok(())
}

/// Checks a pause or disable reason.
fn check_reason(reason: &str) -> Result<()> {
    if reason.chars().count() > 1000 || reason.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(
            "reason is at most 1000 characters, without control characters".into(),
        ));
    }
    Ok(())
}

/// The paths of an update mask, without a leading `subscription.`, each checked.
fn mask_paths(mask: Option<&buffa_types::google::protobuf::FieldMask>) -> Result<Vec<String>> {
    let paths: Vec<String> = mask
        .map(|m| {
            m.paths
                .iter()
                .map(|p| p.strip_prefix("subscription.").unwrap_or(p).to_owned())
                .collect()
        })
        .unwrap_or_default();
    if paths.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "update_mask is required: name the fields to change ({})",
            UPDATABLE.join(", ")
        )));
    }
    if let Some(bad) = paths.iter().find(|p| !UPDATABLE.contains(&p.as_str())) {
        let why = match bad.as_str() {
            "repository" | "owner" | "family" => {
                format!("update_mask: {bad} cannot change; create another subscription instead")
            }
            _ => format!(
                "update_mask: {bad:?} is not a field UpdateSubscription changes ({})",
                UPDATABLE.join(", ")
            ),
        };
        return Err(Error::InvalidArgument(why));
    }
    Ok(paths)
}

/// The event types of a family listed by name and description.
fn named_types(family: Family) -> &'static [(&'static str, &'static str)] {
    if family == Family::Webhookd {
        OPERATIONAL_TYPES
    } else {
        GITHUB_TYPES
    }
}

/// ListEventTypes' entry for `family`.
fn catalog(family: Family) -> pb::EventFamilyTypes {
    let event_types = match family {
        Family::Bsr => vec![pb::EventType {
            name: BSR_PUSH.into(),
            description: "A successful buf push to the repository \
                          (WEBHOOK_EVENT_REPOSITORY_PUSH)."
                .into(),
            ..Default::default()
        }],
        Family::Registry => REGISTRY_TYPES
            .iter()
            .map(|t| pb::EventType {
                name: t.name.into(),
                description: t.description.into(),
                harbor_type: t.harbor.into(),
                cloudevents_type: t.cloudevents.into(),
                angos_kinds: t.angos.iter().map(|k| (*k).to_owned()).collect(),
                ..Default::default()
            })
            .collect(),
        Family::GitHub | Family::Webhookd => named_types(family)
            .iter()
            .map(|(name, description)| pb::EventType {
                name: (*name).into(),
                description: (*description).into(),
                ..Default::default()
            })
            .collect(),
    };
    pb::EventFamilyTypes {
        family: EnumValue::from(family_proto(family)),
        event_types,
        open: family == Family::GitHub,
        formats: family
            .formats()
            .into_iter()
            .map(|f| EnumValue::from(format_proto(f)))
            .collect(),
        ..Default::default()
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

    async fn create_subscription(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::CreateSubscriptionRequest>,
    ) -> ServiceResult<pb::CreateSubscriptionResponse> {
        Ok(Response::new(
            self.create(&ctx, &request.to_owned_message()).await?,
        ))
    }

    async fn get_subscription(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::GetSubscriptionRequest>,
    ) -> ServiceResult<pb::GetSubscriptionResponse> {
        Ok(Response::new(
            self.read(&ctx, &request.to_owned_message()).await?,
        ))
    }

    async fn list_subscriptions(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::ListSubscriptionsRequest>,
    ) -> ServiceResult<pb::ListSubscriptionsResponse> {
        Ok(Response::new(
            self.list(&ctx, &request.to_owned_message()).await?,
        ))
    }

    async fn update_subscription(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::UpdateSubscriptionRequest>,
    ) -> ServiceResult<pb::UpdateSubscriptionResponse> {
        Ok(Response::new(
            self.update(&ctx, &request.to_owned_message()).await?,
        ))
    }

    async fn delete_subscription(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::DeleteSubscriptionRequest>,
    ) -> ServiceResult<pb::DeleteSubscriptionResponse> {
        Ok(Response::new(
            self.delete(&ctx, &request.to_owned_message()).await?,
        ))
    }

    async fn pause_subscription(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::PauseSubscriptionRequest>,
    ) -> ServiceResult<pb::PauseSubscriptionResponse> {
        Ok(Response::new(
            self.pause(&ctx, &request.to_owned_message()).await?,
        ))
    }

    async fn resume_subscription(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::ResumeSubscriptionRequest>,
    ) -> ServiceResult<pb::ResumeSubscriptionResponse> {
        Ok(Response::new(
            self.resume(&ctx, &request.to_owned_message()).await?,
        ))
    }

    async fn ping_subscription(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::PingSubscriptionRequest>,
    ) -> ServiceResult<pb::PingSubscriptionResponse> {
        Ok(Response::new(
            self.ping(&ctx, &request.to_owned_message()).await?,
        ))
    }

    async fn list_owners(
        &self,
        ctx: RequestContext,
        _request: ServiceRequest<'_, pb::ListOwnersRequest>,
    ) -> ServiceResult<pb::ListOwnersResponse> {
        let api = &self.0;
        let scope = authenticate(api, &ctx).await?;
        let mut owners = if scope.all_owners {
            let mut conn = store::acquire(&api.pool).await?;
            store::webhooks::owners(&mut conn, MAX_OWNERS).await?
        } else {
            scope.owners.clone()
        };
        owners.sort_unstable();
        owners.dedup();
        Response::ok(pb::ListOwnersResponse {
            owners,
            all_owners: scope.all_owners,
            ..Default::default()
        })
    }

    async fn list_event_types(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::ListEventTypesRequest>,
    ) -> ServiceResult<pb::ListEventTypesResponse> {
        Ok(Response::new(
            self.event_types(&ctx, &request.to_owned_message()).await?,
        ))
    }
}
