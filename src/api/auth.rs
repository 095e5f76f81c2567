//! Bearer-token authentication for every RPC, and authorization of the resources a request
//! names: a token sees only its owners' webhooks and deliveries, and learns nothing about
//! the others (the same `not_found` as for what does not exist).

use connectrpc::RequestContext;

use super::ApiContext;
use crate::domain::{ApiToken, DeliveryId, OwnerName, TokenScope, WebhookId};
use crate::error::{Error, Result};
use crate::store;

/// The scope of the request's token: the one [`super::gate`] resolved before the body was
/// read, or (for a request that did not come through the gate) its `Authorization` header's.
///
/// # Errors
/// As [`authenticate_header`].
pub async fn authenticate(api: &ApiContext, ctx: &RequestContext) -> Result<TokenScope> {
    if let Some(scope) = ctx.extensions().get::<TokenScope>() {
        return Ok(scope.clone());
    }
    authenticate_header(
        api,
        ctx.header("authorization").and_then(|v| v.to_str().ok()),
    )
    .await
}

/// Resolves an `Authorization: Bearer <token>` header value to the token's scope.
///
/// # Errors
/// `Unauthenticated` when the header is missing or malformed, or the token is unknown or
/// revoked; `Unavailable` when the database cannot be asked.
pub async fn authenticate_header(api: &ApiContext, header: Option<&str>) -> Result<TokenScope> {
    scope_of(api, ApiToken::from_authorization(header)?).await
}

/// Resolves the `Authorization` header of a request to a REST face (GitHub's, Harbor's):
/// Bearer, `token`, or the password of basic auth (see [`ApiToken::from_rest_authorization`]).
///
/// # Errors
/// As [`authenticate_header`].
pub async fn authenticate_rest(api: &ApiContext, header: Option<&str>) -> Result<TokenScope> {
    scope_of(api, ApiToken::from_rest_authorization(header)?).await
}

/// The scope of `token`.
async fn scope_of(api: &ApiContext, token: ApiToken) -> Result<TokenScope> {
    api.cache
        .find_scope(&api.pool, token.hash())
        .await?
        .ok_or_else(|| Error::Unauthenticated("unknown or revoked token".into()))
}

/// Resolves a webhook id from a request to a webhook the token may see. A malformed id, an
/// unknown one and one of an owner the token does not cover all give the same `not_found`.
///
/// # Errors
/// `NotFound`, or `Unavailable` when the database cannot be asked.
pub async fn authorize_webhook(
    conn: &mut sqlx::PgConnection,
    scope: &TokenScope,
    id: &str,
) -> Result<WebhookId> {
    let id = WebhookId::parse(id).ok_or_else(webhook_not_found)?;
    let owner = store::webhooks::owner_of(conn, id).await?;
    visible(scope, owner, id, webhook_not_found)
}

/// [`authorize_webhook`] for several ids, in one query; any one not visible fails them all
/// with `not_found`.
///
/// # Errors
/// `not_found()`, or `Unavailable` when the database cannot be asked.
pub async fn authorize_webhooks(
    conn: &mut sqlx::PgConnection,
    scope: &TokenScope,
    ids: &[String],
    not_found: fn() -> Error,
) -> Result<Vec<WebhookId>> {
    let ids = ids
        .iter()
        .map(|id| WebhookId::parse(id).ok_or_else(not_found))
        .collect::<Result<Vec<_>>>()?;
    let owners = store::webhooks::owners_of(conn, &ids).await?;
    ids.into_iter()
        .map(|id| visible(scope, owners.get(&id).cloned(), id, not_found))
        .collect()
}

/// The owner a listing names (ListSubscriptions, TailDeliveries), checked against the token:
/// owner names of every family, the loosest rule that still refuses garbage. No owner names
/// the configuration file's webhooks, which only an all-owners token sees.
///
/// # Errors
/// `InvalidArgument` for a malformed name, `PermissionDenied` for an owner not covered.
pub fn listed_owner(scope: &TokenScope, owner: &str) -> Result<String> {
    if owner.is_empty() && scope.all_owners {
        return Ok(String::new());
    }
    let owner = OwnerName::parse_any("owner", owner)?;
    scope.require(&owner)?;
    Ok(owner.as_str().to_owned())
}

/// The one answer for a subscription that does not exist or that the token may not see.
pub fn subscription_not_found() -> Error {
    Error::NotFound(
        "no such subscription (or it belongs to an owner this token does not cover)".into(),
    )
}

/// Resolves a delivery id to a delivery of a webhook the token may see, like
/// [`authorize_webhook`].
///
/// # Errors
/// `NotFound`, or `Unavailable` when the database cannot be asked.
pub async fn authorize_delivery(
    conn: &mut sqlx::PgConnection,
    scope: &TokenScope,
    id: &str,
) -> Result<DeliveryId> {
    let id = DeliveryId::parse(id).ok_or_else(delivery_not_found)?;
    let owner = store::deliveries::owner_of(conn, id).await?;
    visible(scope, owner, id, delivery_not_found)
}

/// The one answer for a webhook that does not exist or that the token may not see.
pub fn webhook_not_found() -> Error {
    Error::NotFound("no such webhook (or it belongs to an owner this token does not cover)".into())
}

/// The one answer for a delivery that does not exist or that the token may not see.
pub fn delivery_not_found() -> Error {
    Error::NotFound("no such delivery (or it belongs to an owner this token does not cover)".into())
}

/// `id` if its owner exists and the token covers it; otherwise the same `not_found` either
/// way, so a caller learns nothing about what it may not see.
fn visible<T>(
    scope: &TokenScope,
    owner: Option<String>,
    id: T,
    not_found: fn() -> Error,
) -> Result<T> {
    match owner {
        Some(owner) if scope.covers(&owner) => Ok(id),
        _ => Err(not_found()),
    }
}
