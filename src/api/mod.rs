//! The HTTP surface, all on one port: the Connect/gRPC/gRPC-Web services, gRPC health and
//! reflection, and the plain `/healthz` and `/readyz` probes. Handlers are thin: decode,
//! convert to domain types, call `store`, encode.

mod auth;
mod health;
mod webhooks;

use std::sync::Arc;

use connectrpc::{ConnectRpcService, Limits};
use sqlx::PgPool;

use crate::domain::PageKey;
use crate::proto::buf::alpha::registry::v1alpha1::{
    WEBHOOK_SERVICE_SERVICE_NAME, WebhookServiceExt as _,
};

pub use health::DatabaseHealth;
pub use webhooks::WebhookApi;

/// The largest request the WebhookService accepts, on the wire and decoded. Its requests are
/// a few hundred bytes; anything far larger is refused before it is buffered.
const MAX_WEBHOOK_REQUEST_BYTES: usize = 64 * 1024;

/// The settings the API needs from the server's configuration.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Admit `http` and loopback/private callback URLs (`--allow-insecure-callbacks`).
    pub allow_insecure_callbacks: bool,
    /// The most webhooks one repository may have (`--max-webhooks-per-repository`).
    pub max_webhooks_per_repository: u32,
}

/// Builds the router that serves every protocol on one port.
///
/// # Errors
/// Fails only if the embedded descriptor set is corrupt (a build problem).
pub fn router(
    pool: PgPool,
    settings: ApiSettings,
    page_key: PageKey,
) -> anyhow::Result<axum::Router> {
    let webhooks = Arc::new(WebhookApi::new(pool.clone(), settings, page_key));
    let mut connect = webhooks.register(connectrpc::Router::new());
    for path in ["CreateWebhook", "DeleteWebhook", "ListWebhooks"] {
        connect = connect.with_route_limits(
            &format!("/{WEBHOOK_SERVICE_SERVICE_NAME}/{path}"),
            Limits::default()
                .with_max_request_body_size(MAX_WEBHOOK_REQUEST_BYTES)
                .with_max_message_size(MAX_WEBHOOK_REQUEST_BYTES),
        );
    }
    let connect = health::install(connect, DatabaseHealth::new(pool.clone()));
    // Reflection describes what this port answers, not the EventService listeners implement.
    let reflector = connectrpc_reflection::Reflector::from_descriptor_set_bytes(
        crate::proto::SERVED_DESCRIPTOR_SET,
    )?;
    let connect = connectrpc_reflection::install(connect, reflector);
    Ok(axum::Router::new()
        .route("/healthz", axum::routing::get(health::healthz))
        .route("/readyz", axum::routing::get(health::readyz))
        .with_state(pool)
        .fallback_service(ConnectRpcService::new(connect)))
}
