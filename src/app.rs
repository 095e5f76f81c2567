//! All wiring in one place: given a database pool, a bound listener and a shutdown signal,
//! serve the API until the signal fires.

use std::future::Future;

use anyhow::Context as _;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::api::{self, ApiSettings};
use crate::config::ServeArgs;
use crate::domain::PageKey;
use crate::store;

/// Serves every protocol on `listener` until `shutdown` completes, then lets in-flight
/// requests finish for up to `--shutdown-timeout`.
///
/// The caller owns the listener and the shutdown future, so tests bind port 0 and run the
/// real server in-process.
///
/// # Errors
/// When the server cannot start (database keys unreadable) or the listener fails.
pub async fn run(
    args: &ServeArgs,
    pool: PgPool,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let page_key = {
        let mut conn = pool.acquire().await?;
        PageKey::new(store::keys::get_or_create(&mut conn, "page_token").await?)
    };
    let settings = ApiSettings {
        allow_insecure_callbacks: args.allow_insecure_callbacks,
        max_webhooks_per_repository: args.max_webhooks_per_repository,
    };
    let router = api::router(pool, settings, page_key)?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving");
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stopping_tx.send(());
    });
    let timeout = args.shutdown_timeout;
    tokio::select! {
        result = server => result.context("serving HTTP")?,
        () = async move {
            let _ = stopping_rx.await;
            tokio::time::sleep(timeout).await;
        } => tracing::warn!("in-flight requests did not finish within --shutdown-timeout"),
    }
    Ok(())
}
