//! Health: `GET /healthz` (the process answers), `GET /readyz` (the database answers too),
//! and `grpc.health.v1.Health`, whose status follows the database.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use connectrpc::ConnectError;
use connectrpc_health::{Checker, HealthService, Status};
use sqlx::PgPool;

use crate::proto::buf::alpha::registry::v1alpha1::WEBHOOK_SERVICE_SERVICE_NAME;

/// How long a readiness probe waits for the database.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness: the process is up and serving HTTP.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: 200 when the database answers within two seconds, else 503.
pub async fn readyz(State(pool): State<PgPool>) -> (StatusCode, &'static str) {
    if database_answers(&pool).await {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n")
    }
}

async fn database_answers(pool: &PgPool) -> bool {
    let probe = crate::store::ping(pool);
    matches!(tokio::time::timeout(PROBE_TIMEOUT, probe).await, Ok(Ok(_)))
}

/// A gRPC health checker that reports `SERVING` while the database answers.
pub struct DatabaseHealth {
    pool: PgPool,
}

impl DatabaseHealth {
    /// A checker probing `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

impl Checker for DatabaseHealth {
    async fn check(&self, service: &str) -> Result<Status, ConnectError> {
        if !service.is_empty() && service != WEBHOOK_SERVICE_SERVICE_NAME {
            return Err(ConnectError::not_found(format!(
                "unknown service {service:?}"
            )));
        }
        Ok(if database_answers(&self.pool).await {
            Status::Serving
        } else {
            Status::NotServing
        })
    }
}

/// Mounts `grpc.health.v1.Health` backed by `checker`, with the crate's request limits.
pub fn install(router: connectrpc::Router, checker: DatabaseHealth) -> connectrpc::Router {
    use connectrpc_health::HealthExt as _;
    let service = Arc::new(HealthService::new(checker));
    connectrpc_health::apply_request_limits(
        service.register(router),
        connectrpc_health::request_limits(),
    )
}
