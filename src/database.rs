//! Where the database comes from: `DATABASE_URL` when given, else the embedded server
//! ([`crate::local_pg`]) under `--data-dir`.

use std::path::PathBuf;

use anyhow::Context as _;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;

use crate::local_pg::{Durability, LocalPg};
use crate::store;

/// The database flags shared by every command that touches the database.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL, e.g. postgres://user:pass@host/db. Without it webhookd runs its own
    /// private PostgreSQL server under --data-dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Where the embedded PostgreSQL keeps its data when no DATABASE_URL is given.
    #[arg(long, env = "WEBHOOKD_DATA_DIR", default_value = ".webhookd")]
    pub data_dir: PathBuf,

    /// Directory holding the PostgreSQL server binaries (initdb, pg_ctl) for the embedded
    /// server. Default: pg_config --bindir, then PATH, then the newest /usr/lib/postgresql/*/bin.
    #[arg(long, env = "WEBHOOKD_POSTGRES_BIN_DIR")]
    pub postgres_bin_dir: Option<PathBuf>,
}

/// An open connection pool, plus the embedded server behind it if there is one.
pub struct Database {
    /// The pool every query goes through.
    pub pool: PgPool,
    local: Option<LocalPg>,
}

impl Database {
    /// Connects to `DATABASE_URL`, or starts (or joins) the embedded server, and applies
    /// pending migrations.
    ///
    /// # Errors
    /// When the database cannot be reached or started, or a migration fails.
    pub async fn open(args: &DatabaseArgs, max_connections: u32) -> anyhow::Result<Self> {
        let (options, local) = match &args.database_url {
            Some(url) => (
                url.parse::<PgConnectOptions>()
                    .context("DATABASE_URL is not a valid PostgreSQL URL")?,
                None,
            ),
            None => {
                let local = start_local(
                    args.data_dir.clone(),
                    args.postgres_bin_dir.clone(),
                    Durability::Durable,
                )
                .await?;
                create_database_if_missing(&local).await?;
                (local.connect_options(), Some(local))
            }
        };
        let pool = store::connect(options, max_connections)
            .await
            .context("connecting to PostgreSQL")?;
        store::migrate(&pool).await?;
        Ok(Self { pool, local })
    }

    /// Closes the pool and, if this process was the last user of the embedded server,
    /// stops it.
    ///
    /// # Errors
    /// When stopping the embedded server fails.
    pub async fn close(self) -> anyhow::Result<()> {
        self.pool.close().await;
        if let Some(local) = self.local {
            tokio::task::spawn_blocking(move || local.release()).await??;
        }
        Ok(())
    }
}

/// Starts the embedded server off the async runtime (it waits on files and processes).
///
/// # Errors
/// As [`LocalPg::start`].
pub async fn start_local(
    data_dir: PathBuf,
    bin_dir: Option<PathBuf>,
    durability: Durability,
) -> anyhow::Result<LocalPg> {
    tokio::task::spawn_blocking(move || LocalPg::start(&data_dir, bin_dir.as_deref(), durability))
        .await?
}

/// Creates the `webhookd` database in a fresh embedded cluster.
async fn create_database_if_missing(local: &LocalPg) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let mut admin = sqlx::PgConnection::connect_with(&local.admin_options()).await?;
    store::create_database_if_missing(&mut admin, local.database_name()).await?;
    admin.close().await?;
    Ok(())
}
