//! All SQL lives here. Functions take `&mut PgConnection` so that a caller can run them
//! inside its own transaction; they translate database errors into domain meaning
//! (unique violations become `AlreadyExists`, connection failures `Unavailable`).

pub mod activity;
pub mod deliveries;
pub mod events;
pub mod file_webhooks;
pub mod github;
pub mod harbor;
pub mod health;
pub mod keys;
pub mod notifications;
pub mod owner_counts;
pub mod queue;
pub mod retention;
pub mod routing;
pub mod secrets;
pub mod subscriptions;
pub mod tail_follows;
pub mod tokens;
pub mod webhooks;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::error::Result;

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Opens a pool of at most `max_connections` to the database.
///
/// Its sessions run with JIT compilation off: every statement webhookd sends is short, and
/// PostgreSQL's JIT, triggered by cost estimates alone, once spent 350 ms compiling a claim
/// that ran in 3 ms (BENCHMARKS.md).
///
/// # Errors
/// `Unavailable` when the database cannot be reached.
pub async fn connect(options: PgConnectOptions, max_connections: u32) -> Result<PgPool> {
    let pool = pool_options(max_connections)
        .connect_with(options.options([("jit", "off")]))
        .await?;
    Ok(pool)
}

/// The settings of the batcher's sessions ([`queue_pool`]), under which the queue statements
/// in `store/queue/` run.
///
/// * Plans pinned to lookups by key. `deliveries` grows from nothing to 100,000 due rows and
///   back within seconds, far faster than autovacuum refreshes its statistics; planned on
///   statistics that say "empty", a claim of 1,000 rows took a bitmap scan of the whole
///   backlog, a join filter over every webhook and an on-disk sort: 0.8 s instead of a few
///   milliseconds (BENCHMARKS.md). The statements themselves name their rows by key (arrays
///   of ids, correlated lookups), and with nested loops off the recorder's one join, of its
///   input to the rows it updates, is hashed: as a nested loop, planned generically (an
///   array of unknown length), it compared every input row with every updated row,
///   1,000,000 comparisons and 0.65 s for a batch of 1,000. `tests/it/plans.rs` checks
///   each plan on realistic tables.
/// * Commits that do not wait for the WAL flush. What the batcher commits is a claim or an
///   attempt's record; if the database crashes before the flush (within about three times
///   `wal_writer_delay`, 0.6 s by default), those deliveries are attempted again once their
///   leases expire, under the same `webhook-id`: a duplicate, never a loss. Events and their
///   deliveries are published with durable commits, on the other pool.
/// * Generic plans, as for [`PUBLISH_SESSION`].
pub const QUEUE_SESSION: &[(&str, &str)] = &[
    ("enable_seqscan", "off"),
    ("enable_bitmapscan", "off"),
    ("enable_sort", "off"),
    ("enable_nestloop", "off"),
    ("synchronous_commit", "off"),
    ("plan_cache_mode", "force_generic_plan"),
];

/// The settings of the Publish RPC's sessions ([`publish_pool`]): each prepared statement is
/// planned once, generically. Left to choose, PostgreSQL planned the publish and record
/// statements anew on every execution (their array parameters make a generic plan look
/// dearer than a custom one): at 500 single-event publishes a second, 8.5 s of planning
/// against 3.3 s of execution (`pg_stat_statements`). Their plans name rows by key whatever
/// the parameters, and `tests/it/plans.rs` checks the generic ones.
pub const PUBLISH_SESSION: &[(&str, &str)] = &[("plan_cache_mode", "force_generic_plan")];

/// A pool of at most `max_connections` for the Publish RPC's group commit, on `pool`'s
/// server, whose sessions run with [`PUBLISH_SESSION`]; connected lazily.
pub fn publish_pool(pool: &PgPool, max_connections: u32) -> PgPool {
    pool_options(max_connections).connect_lazy_with(session(pool, PUBLISH_SESSION))
}

/// `pool`'s connection options with `settings` for each session.
fn session(pool: &PgPool, settings: &[(&str, &str)]) -> PgConnectOptions {
    (*pool.connect_options())
        .clone()
        .options(settings.iter().copied())
}

/// A pool of at most `max_connections` for the batcher, on `pool`'s server, whose sessions
/// run with [`QUEUE_SESSION`]; connected lazily. The batcher's claims and records go through
/// it, so that they neither wait for nor starve the API's pool.
pub fn queue_pool(pool: &PgPool, max_connections: u32) -> PgPool {
    // No ping before each use: it is a round trip per acquire (one per record at a low
    // rate). A connection that died since its last use fails its next claim or record
    // instead, which is retried (a record after the lease: a duplicate, never a loss).
    pool_options(max_connections)
        .test_before_acquire(false)
        .connect_lazy_with(session(pool, QUEUE_SESSION))
}

/// A pool of one connection on `pool`'s server for a background task of `serve` (the owner
/// counts' fold), connected lazily: the task neither waits for nor takes from the API's pool.
pub fn task_pool(pool: &PgPool) -> PgPool {
    pool_options(1).connect_lazy_with((*pool.connect_options()).clone())
}

/// How the pools hand out connections: within 5 s, or `Unavailable`.
fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
}

/// Applies [`QUEUE_SESSION`] to the rest of the transaction `conn` is in, as a connection
/// of [`queue_pool`] has it (the plan tests explain the queue statements under it).
///
/// # Errors
/// Database errors.
pub async fn apply_queue_session(conn: &mut sqlx::PgConnection) -> Result<()> {
    for (name, value) in QUEUE_SESSION {
        sqlx::query_scalar!(r#"SELECT set_config($1, $2, true) AS "set!""#, name, value)
            .fetch_one(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Takes a connection from the pool. Any failure to get one (the server is down, refuses
/// connections, or the pool is exhausted) is `Unavailable`: the request may be retried.
///
/// # Errors
/// `Unavailable`.
pub async fn acquire(pool: &PgPool) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>> {
    pool.acquire()
        .await
        .map_err(crate::error::Error::Unavailable)
}

/// Asks the database a trivial question: does it answer?
///
/// # Errors
/// Whatever prevents an answer.
pub async fn ping(pool: &PgPool) -> Result<()> {
    sqlx::query!(r#"SELECT 1 AS "one!""#)
        .fetch_one(pool)
        .await?;
    Ok(())
}

/// Applies every migration not yet applied. Safe to run from several processes at once:
/// sqlx serialises them with an advisory lock.
///
/// # Errors
/// `Internal` when a migration fails or the database holds a newer, unknown migration.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| anyhow::Error::new(e).context("applying database migrations"))?;
    Ok(())
}

/// True when `error` is a unique violation (SQLSTATE 23505) of `constraint`.
fn is_unique_violation(error: &sqlx::Error, constraint: &str) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.code().as_deref() == Some("23505") && db.constraint() == Some(constraint))
}

/// Creates database `name` on the server `conn` is connected to, unless it exists.
/// `name` must be a plain identifier (letters, digits, `_`); it cannot be a bind parameter.
///
/// # Errors
/// When `name` is not a plain identifier, or the statement fails for another reason than
/// the database existing already (another process may create it at the same moment).
pub async fn create_database_if_missing(conn: &mut sqlx::PgConnection, name: &str) -> Result<()> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(crate::error::Error::InvalidArgument(format!(
            "{name:?} is not a plain database name"
        )));
    }
    let exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS "exists!""#,
        name
    )
    .fetch_one(&mut *conn)
    .await?;
    if !exists {
        let created = sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut *conn)
            .await;
        match created {
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P04") => {}
            other => {
                other?;
            }
        }
    }
    Ok(())
}
