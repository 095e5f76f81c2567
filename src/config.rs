//! The command line: every command and flag, each flag with an environment fallback.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use crate::database::DatabaseArgs;

/// webhookd: webhook subscriptions and delivery, wire-compatible with the Buf Schema
/// Registry's WebhookService.
#[derive(Debug, Parser)]
#[command(name = "webhookd", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (Connect, gRPC and gRPC-Web on one port).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `webhookd serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "WEBHOOKD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Accept http callback URLs and loopback or private hosts (local development and tests
    /// only: it lets API users make webhookd call internal services).
    #[arg(long, env = "WEBHOOKD_ALLOW_INSECURE_CALLBACKS")]
    pub allow_insecure_callbacks: bool,

    /// The most webhooks one repository may have.
    #[arg(long, env = "WEBHOOKD_MAX_WEBHOOKS_PER_REPOSITORY", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_webhooks_per_repository: u32,

    /// Size of the database connection pool.
    #[arg(long, env = "WEBHOOKD_MAX_DB_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_db_connections: u32,

    /// How long to wait for in-flight requests after SIGTERM or SIGINT.
    #[arg(long, env = "WEBHOOKD_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// `webhookd token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (and nothing else) on stdout.
    Create(TokenCreateArgs),
    /// List tokens (never the tokens themselves: only their ids and scopes).
    List(DatabaseArgs),
    /// Revoke a token by the id that `token list` shows.
    Revoke(TokenRevokeArgs),
}

/// `webhookd token create`.
#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// An owner whose webhooks the token may manage; repeat for several.
    #[arg(
        long = "owner",
        value_name = "OWNER",
        required_unless_present = "all_owners"
    )]
    pub owners: Vec<String>,

    /// Let the token manage the webhooks of every owner.
    #[arg(long)]
    pub all_owners: bool,

    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// `webhookd token revoke`.
#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    /// The token's id.
    pub id: Uuid,

    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
}
