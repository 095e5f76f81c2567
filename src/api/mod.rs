//! The HTTP surface, all on one port: the Connect/gRPC/gRPC-Web services, gRPC health and
//! reflection, and the plain `/healthz` and `/readyz` probes. Handlers are thin: decode,
//! convert to domain types, call `store`, encode.

mod angos;
mod auth;
mod cache;
mod console;
mod deliveries;
pub mod gate;
mod github;
mod harbor;
mod health;
mod publish;
mod subscription_proto;
mod subscriptions;
mod tail;
mod webhooks;

use std::sync::Arc;

use connectrpc::{ConnectRpcService, Limits};
use sqlx::PgPool;

use crate::domain::{PageCursor, PageKey};
use crate::error::Result;
use crate::metrics::Metrics;
use crate::proto::buf::alpha::registry::v1alpha1::{
    WEBHOOK_SERVICE_SERVICE_NAME, WebhookServiceExt as _,
};
use crate::proto::webhookd::v1::{
    DeliveryServiceExt as _, PUBLISH_SERVICE_SERVICE_NAME, PublishServiceExt as _,
    SubscriptionServiceExt as _,
};
use crate::publish::GroupCommit;
use crate::secret_box::SecretBox;
use crate::store::webhooks::WebhookLimits;

pub use cache::{ApiCache, announce_changes};
pub use health::DatabaseHealth;
pub use tail::TailHub;

/// The largest request most RPCs accept, on the wire and decoded. Their requests are a few
/// hundred bytes; anything far larger is refused before it is buffered.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// The largest Publish request: up to 1000 events.
const MAX_PUBLISH_BYTES: usize = 16 * 1024 * 1024;

/// The settings the API needs from the server's configuration.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Admit `http` and loopback/private callback URLs (`--allow-insecure-callbacks`).
    pub allow_insecure_callbacks: bool,
    /// The most webhooks one repository and one owner may have
    /// (`--max-webhooks-per-repository`, `--max-webhooks-per-owner`).
    pub webhook_limits: WebhookLimits,
    /// How much of a request body GetDelivery shows (`--record-request-bytes`).
    pub record_request_bytes: usize,
}

/// What every handler shares.
pub struct ApiContext {
    /// The database.
    pub pool: PgPool,
    /// Server settings.
    pub settings: ApiSettings,
    /// Authenticates page tokens.
    pub page_key: PageKey,
    /// Seals and opens signing secrets.
    pub secrets: SecretBox,
    /// Verified API tokens and first ListWebhooks pages.
    pub cache: Arc<ApiCache>,
    /// Writes Publish calls, several to a commit when they arrive together.
    pub publisher: GroupCommit,
    /// The server's metrics.
    pub metrics: Arc<Metrics>,
    /// The relay's GitHub sources (`[ingest.github.NAME]`), by name.
    pub github_sources: Arc<std::collections::HashMap<String, crate::config_file::IngestSource>>,
    /// The relay's Harbor sources (`[ingest.harbor.NAME]`), by name.
    pub harbor_sources: Arc<std::collections::HashMap<String, crate::config_file::IngestSource>>,
    /// The relay's Angos sources (`[ingest.angos.NAME]`), by name.
    pub angos_sources: Arc<std::collections::HashMap<String, crate::config_file::IngestSource>>,
    /// The live tail's readers in this process.
    pub tail: Arc<TailHub>,
}

/// Builds the router that serves every protocol on one port, with `/metrics` when given
/// `served_metrics`.
///
/// # Errors
/// Fails only if the embedded descriptor set is corrupt (a build problem).
pub fn router(
    context: ApiContext,
    served_metrics: Option<Arc<Metrics>>,
) -> anyhow::Result<axum::Router> {
    let pool = context.pool.clone();
    let metrics = context.metrics.clone();
    let context = Arc::new(context);
    let mut connect =
        Arc::new(webhooks::WebhookApi(context.clone())).register(connectrpc::Router::new());
    connect = Arc::new(publish::PublishApi(context.clone())).register(connect);
    connect = Arc::new(subscriptions::SubscriptionApi(context.clone())).register(connect);
    connect = Arc::new(deliveries::DeliveryApi(context.clone())).register(connect);
    // Every method registered so far needs a token (health and reflection come below).
    let github = github::router(context.clone());
    let harbor = harbor::router(context.clone());
    let angos = angos::router(context.clone());
    let gate = gate::Gate {
        api: context,
        methods: Arc::new(connect.methods().map(|m| format!("/{m}")).collect()),
    };
    let small = Limits::default()
        .with_max_request_body_size(MAX_REQUEST_BYTES)
        .with_max_message_size(MAX_REQUEST_BYTES);
    for path in connect.methods().map(str::to_owned).collect::<Vec<_>>() {
        connect = connect.with_route_limits(&path, small);
    }
    connect = connect.with_route_limits(
        &format!("/{PUBLISH_SERVICE_SERVICE_NAME}/Publish"),
        Limits::default()
            .with_max_request_body_size(MAX_PUBLISH_BYTES)
            .with_max_message_size(MAX_PUBLISH_BYTES),
    );
    let connect = health::install(connect, DatabaseHealth::new(pool.clone()));
    // Reflection describes what this port answers (not the EventService listeners implement),
    // limited to services whose descriptors it holds so that every listed name resolves.
    let reflector = connectrpc_reflection::Reflector::from_descriptor_set_bytes(
        crate::proto::SERVED_DESCRIPTOR_SET,
    )?
    .with_services([
        WEBHOOK_SERVICE_SERVICE_NAME,
        PUBLISH_SERVICE_SERVICE_NAME,
        crate::proto::webhookd::v1::SUBSCRIPTION_SERVICE_SERVICE_NAME,
        crate::proto::webhookd::v1::DELIVERY_SERVICE_SERVICE_NAME,
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]);
    let connect = connectrpc_reflection::install(connect, reflector);
    let publish = format!("/{PUBLISH_SERVICE_SERVICE_NAME}/Publish");
    // The RPC metrics first: they time and count what the others refuse too.
    let service = ConnectRpcService::new(connect)
        .with_interceptor(gate::RpcMetrics {
            metrics: metrics.clone(),
        })
        .with_interceptor(gate::PublishCount { path: publish });
    // Layers run outermost last-added first: the size check (free), then authentication.
    Ok(probes_router(pool, served_metrics)
        .merge(github)
        .merge(harbor)
        .merge(angos)
        .merge(console::router())
        .fallback_service(service)
        .layer(axum::middleware::from_fn_with_state(
            gate,
            gate::authenticate_first,
        ))
        .layer(axum::middleware::from_fn(refuse_oversized)))
}

/// Refuses a request whose declared `Content-Length` is over its route's limit before a byte
/// of the body is read. Answering before reading also means no `100 Continue` is sent, so a
/// client that asked for one (curl does for large bodies) gets the error without uploading
/// and without a reset connection. (gRPC requests are left to the runtime's own limit, which
/// answers in gRPC's format.)
async fn refuse_oversized(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let limit = declared_limit(request.uri().path());
    // The REST faces and the relays read at most their own limits and refuse in their own
    // shapes.
    let path = request.uri().path();
    let own_limits = path.starts_with("/api/") || path.starts_with("/ingest/");
    if !own_limits && exceeds(request.headers(), limit) {
        let error = connectrpc::ConnectError::resource_exhausted(format!(
            "request body size exceeds limit {limit}"
        ));
        return error.into_response();
    }
    next.run(request).await
}

/// The body limit of the route at `path`.
fn declared_limit(path: &str) -> usize {
    if path == format!("/{PUBLISH_SERVICE_SERVICE_NAME}/Publish") {
        MAX_PUBLISH_BYTES
    } else {
        MAX_REQUEST_BYTES
    }
}

/// True when a non-gRPC request declares a body longer than `limit`.
fn exceeds(headers: &http::HeaderMap, limit: usize) -> bool {
    let text = |name: http::header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let grpc = text(http::header::CONTENT_TYPE).is_some_and(|t| t.starts_with("application/grpc"));
    let declared = text(http::header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    !grpc && declared.is_some_and(|n| n > limit as u64)
}

/// `/healthz` and `/readyz` (all a `--no-api` process serves), and `/metrics` with
/// `metrics`.
pub fn probes_router(pool: PgPool, metrics: Option<Arc<Metrics>>) -> axum::Router {
    let probes = axum::Router::new()
        .route("/healthz", axum::routing::get(health::healthz))
        .route("/readyz", axum::routing::get(health::readyz))
        .with_state(pool.clone());
    match metrics {
        Some(metrics) => probes.merge(metrics_router(pool, metrics)),
        None => probes,
    }
}

/// `GET /metrics` alone (for `--metrics-listen`).
pub fn metrics_router(pool: PgPool, metrics: Arc<Metrics>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(serve_metrics))
        .with_state((pool, metrics))
}

/// The metrics in the text exposition format.
async fn serve_metrics(
    axum::extract::State((pool, metrics)): axum::extract::State<(PgPool, Arc<Metrics>)>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let text = metrics.render(&pool).await;
    (
        [(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        )],
        text,
    )
        .into_response()
}

/// Reads a request's page token for a listing of `scope`; empty means the first page.
fn decode_page_token(token: &str, key: &PageKey, scope: &str) -> Result<Option<PageCursor>> {
    match token {
        "" => Ok(None),
        token => PageCursor::decode(token, key, scope).map(Some),
    }
}

/// Cuts a page fetched with one item too many down to `size` items, and makes the token
/// for the next page (empty when there is none).
fn paginate<T>(
    mut items: Vec<T>,
    size: usize,
    key: &PageKey,
    scope: &str,
    cursor: impl Fn(&T) -> PageCursor,
) -> (Vec<T>, String) {
    if items.len() <= size {
        return (items, String::new());
    }
    items.truncate(size);
    let next = items
        .last()
        .map(|last| cursor(last).encode(key, scope))
        .unwrap_or_default();
    (items, next)
}

/// Why a relay refuses a `sha256=<hex>` signature (GitHub's `X-Hub-Signature-256`, Angos's
/// `X-Registry-Signature-256`).
pub(crate) enum BadSignature {
    /// The digest is not hex.
    Malformed,
    /// It is not the body's HMAC with the source's key.
    Mismatch,
}

/// Checks `hex_digest` (a signature header's value after `sha256=`) against the
/// HMAC-SHA256 of `body` keyed with `key`'s UTF-8 bytes, in constant time.
pub(crate) fn verify_hmac_sha256(
    hex_digest: &str,
    key: &str,
    body: &[u8],
) -> Result<(), BadSignature> {
    use hmac::{Hmac, Mac as _};
    let expected = hex_decode(hex_digest).ok_or(BadSignature::Malformed)?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| BadSignature::Mismatch)
}

/// Lowercase or uppercase hex as bytes.
fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
