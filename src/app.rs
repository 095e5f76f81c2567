//! All wiring in one place: given a database pool, a bound listener and a shutdown signal,
//! serve the API and run the batcher until the signal fires, then stop both cleanly.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, ApiCache, ApiContext, ApiSettings};
use crate::config::ServeArgs;
use crate::config_file::FileConfig;
use crate::dispatch::Dispatcher;
use crate::domain::PageKey;
use crate::metrics::Metrics;
use crate::publish::{GroupCommit, Policies};
use crate::reload::Reloader;
use crate::secret_box::SecretBox;
use crate::store;
use crate::store::file_webhooks::Live;

/// Serves on `listener` and runs the batcher until `shutdown` completes. Then the batcher
/// stops claiming, and in-flight requests and attempts get `--shutdown-timeout` to finish.
///
/// The caller owns the listener and the shutdown future, so tests bind port 0 and run the
/// real server in-process.
///
/// # Errors
/// When the server cannot start (keys unreadable, HTTP client unbuildable) or the
/// listener fails.
pub async fn run(
    args: &ServeArgs,
    pool: PgPool,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let secrets = secret_box(args)?;
    check_settings(args)?;
    let file = config_file(args)?;
    let metrics = Metrics::new(args.metrics_webhook_ids as usize);
    // Bound before anything starts: a port in use stops the server with its address.
    let metrics_listener = match args.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics-listen {addr}: cannot listen"))?,
        ),
        None => None,
    };
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    // Every process folds (one at a time): the counts stay current while any one runs.
    tasks.spawn(store::owner_counts::fold_until(
        store::task_pool(&pool),
        stop.clone(),
    ));
    // Retention and the auto-disable sweep share one connection: both are short, rare
    // transactions.
    let upkeep = store::task_pool(&pool);
    if !args.retention.is_zero() {
        tasks.spawn(store::retention::run_until(
            upkeep.clone(),
            args.retention,
            args.retention_interval,
            stop.clone(),
        ));
    }
    tasks.spawn(store::health::run_until(
        upkeep,
        args.auto_disable(),
        stop.clone(),
    ));
    let batcher = if args.no_dispatch {
        None
    } else {
        let dispatcher = Dispatcher::new(
            pool.clone(),
            args.dispatch_settings(),
            secrets.clone(),
            metrics.clone(),
        )?;
        tasks.spawn(dispatcher.clone().run(stop.clone()));
        Some(dispatcher)
    };
    // The metrics on the serving port, unless they have a port of their own.
    let served_metrics = match metrics_listener {
        Some(listener) => {
            let router = api::metrics_router(pool.clone(), metrics.clone());
            tracing::info!(addr = %listener.local_addr()?, "serving metrics");
            let server = axum::serve(listener, router)
                .with_graceful_shutdown(stop.clone().cancelled_owned());
            tasks.spawn(async move {
                if let Err(e) = server.await {
                    tracing::error!(error = %e, "the metrics listener failed; delivery goes on");
                }
            });
            None
        }
        None => Some(metrics.clone()),
    };
    let router = if args.no_api {
        api::probes_router(pool, served_metrics)
    } else {
        let files = file_webhooks(args, &file, &pool, &secrets, &tasks, &stop).await?;
        let policies = Policies::new(
            files,
            Some(metrics.clone()),
            args.dispatch_settings().delivery_proxy.as_ref(),
        )?;
        let publisher = GroupCommit::start(
            pool.clone(),
            batcher,
            args.max_queued_per_owner,
            policies,
            &tasks,
        );
        api_router(
            args, &file, pool, publisher, secrets, metrics, &tasks, &stop,
        )
        .await?
    };
    tracing::info!(addr = %listener.local_addr()?, api = !args.no_api, batcher = !args.no_dispatch, "serving");
    let server =
        axum::serve(listener, router).with_graceful_shutdown(stop.clone().cancelled_owned());
    let mut server = tasks.spawn(async move { server.await });
    tasks.close();
    tokio::select! {
        () = shutdown => {}
        result = &mut server => {
            stop.cancel();
            return result.context("the HTTP server task")?.context("serving HTTP");
        }
    }
    tracing::info!("shutting down: no new claims; waiting for in-flight work");
    stop.cancel();
    let grace = args.shutdown_timeout + Duration::from_secs(1);
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!("in-flight work did not finish within --shutdown-timeout");
    }
    Ok(())
}

/// Checks the settings that depend on each other, before anything starts: a `--retention`
/// shorter than the retry schedule's longest run is refused.
///
/// # Errors
/// Says which setting to change.
pub fn check_settings(args: &ServeArgs) -> anyhow::Result<()> {
    check_retention(args)
}

/// Refuses a `--retention` shorter than the retry schedule's longest run: a failed
/// delivery's record could go before its last retry was even due.
fn check_retention(args: &ServeArgs) -> anyhow::Result<()> {
    let longest = args.retry_schedule.longest();
    if !args.retention.is_zero() && args.retention < longest {
        anyhow::bail!(
            "--retention {} is shorter than the retry schedule's longest run ({}, every delay \
             at its longest jitter): a delivery's record could be removed before its last \
             retry; set --retention to at least that, or 0s to keep everything",
            humantime::format_duration(args.retention),
            humantime::format_duration(Duration::from_secs(longest.as_secs() + 1))
        );
    }
    Ok(())
}

/// The API's router, and its caches' background tasks on `tasks` (until `stop`).
// One argument per thing the API is built from: bundling them would only move the list.
#[allow(clippy::too_many_arguments)]
async fn api_router(
    args: &ServeArgs,
    file: &FileConfig,
    pool: PgPool,
    publisher: GroupCommit,
    secrets: SecretBox,
    metrics: Arc<Metrics>,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> anyhow::Result<axum::Router> {
    let page_key = {
        let mut conn = store::acquire(&pool).await?;
        PageKey::new(store::keys::get_or_create(&mut conn, "page_token").await?)
    };
    let settings = ApiSettings {
        allow_insecure_callbacks: args.allow_insecure_callbacks,
        webhook_limits: store::webhooks::WebhookLimits {
            per_repository: args.max_webhooks_per_repository,
            per_owner: args.max_webhooks_per_owner,
        },
        record_request_bytes: args.record_request_bytes as usize,
    };
    let (cache, changes) = ApiCache::new(args.token_cache_ttl, args.list_cache_ttl);
    tasks.spawn(cache.clone().listen(pool.clone(), stop.clone()));
    tasks.spawn(api::announce_changes(changes, pool.clone()));
    // The metrics on the serving port, unless they have a port of their own.
    let served_metrics = args.metrics_listen.is_none().then(|| metrics.clone());
    let [github, harbor, angos] = relay_sources(file);
    let tail = api::TailHub::new(pool.clone(), stop.clone());
    api::router(
        ApiContext {
            pool,
            publisher,
            settings,
            page_key,
            secrets,
            cache,
            metrics,
            github_sources: Arc::new(github),
            harbor_sources: Arc::new(harbor),
            angos_sources: Arc::new(angos),
            tail,
        },
        served_metrics,
    )
}

/// A relay's sources by name.
type Sources = std::collections::HashMap<String, crate::config_file::IngestSource>;

/// The relay's GitHub, Harbor and Angos sources, from `--config`'s `[ingest.*]` tables.
fn relay_sources(file: &FileConfig) -> [Sources; 3] {
    let by_name = |sources: &[crate::config_file::IngestSource]| {
        sources
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect()
    };
    [
        by_name(&file.github_sources),
        by_name(&file.harbor_sources),
        by_name(&file.angos_sources),
    ]
}

/// `--config`'s file, read and checked (the command line took its `[serve]` table before:
/// this reads its relay sources and webhooks); empty without one.
fn config_file(args: &ServeArgs) -> anyhow::Result<FileConfig> {
    match &args.config {
        Some(path) => crate::config_file::load(path, &crate::config::serve_command()?),
        None => Ok(FileConfig::default()),
    }
}

/// The configuration file's webhooks, stored and live, and (with a file) the task that
/// reloads them on `tasks` until `stop`.
async fn file_webhooks(
    args: &ServeArgs,
    file: &FileConfig,
    pool: &PgPool,
    secrets: &SecretBox,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> anyhow::Result<Live> {
    let live = Live::default();
    let Some(path) = &args.config else {
        return Ok(live);
    };
    let reloader = Reloader {
        path: path.clone(),
        pool: store::task_pool(pool),
        secrets: secrets.clone(),
        live: live.clone(),
    };
    reloader
        .apply(&file.webhooks)
        .await
        .context("storing the configuration file's webhooks")?;
    if !file.webhooks.is_empty() {
        tracing::info!(
            webhooks = file.webhooks.webhooks.len(),
            "the configuration file's webhooks are live"
        );
    }
    tasks.spawn(reloader.run(file.webhooks.clone(), stop.clone()));
    Ok(live)
}

/// The key that encrypts signing secrets: `--secret-key`, else the file
/// `--secret-key-file`, else `<data-dir>/secret.key` (created on first use).
///
/// # Errors
/// When the key is malformed, or its file unreadable or open to other users.
pub fn secret_box(args: &ServeArgs) -> anyhow::Result<SecretBox> {
    match (&args.secret_key, &args.secret_key_file) {
        (Some(key), _) => SecretBox::from_base64(key).context("--secret-key (WEBHOOKD_SECRET_KEY)"),
        (None, Some(file)) => {
            SecretBox::load(file).context("--secret-key-file (WEBHOOKD_SECRET_KEY_FILE)")
        }
        (None, None) => {
            let dir = crate::data_dir::prepare(&args.database.data_dir)?;
            SecretBox::load_or_create(&dir.join("secret.key"))
        }
    }
}
