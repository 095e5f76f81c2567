//! Bearer-token authentication for every WebhookService RPC.

use connectrpc::RequestContext;
use sqlx::PgPool;

use crate::domain::{ApiToken, TokenScope};
use crate::error::{Error, Result};
use crate::store;

/// Resolves the request's `Authorization: Bearer <token>` to the token's scope.
///
/// # Errors
/// `Unauthenticated` when the header is missing or malformed, or the token is unknown or
/// revoked; `Unavailable` when the database cannot be asked.
pub async fn authenticate(pool: &PgPool, ctx: &RequestContext) -> Result<TokenScope> {
    let header = ctx.header("authorization").and_then(|v| v.to_str().ok());
    let token = ApiToken::from_authorization(header)?;
    let mut conn = store::acquire(pool).await?;
    store::tokens::find_scope(&mut conn, token.hash())
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
) -> Result<crate::domain::WebhookId> {
    let not_found = super::webhooks::webhook_not_found;
    let id = crate::domain::WebhookId::parse(id).ok_or_else(not_found)?;
    let owner = store::webhooks::owner_of(conn, id)
        .await?
        .ok_or_else(not_found)?;
    if scope.all_owners || scope.owners.contains(&owner) {
        Ok(id)
    } else {
        Err(not_found())
    }
}
