//! The command line: every command and flag, each flag with an environment fallback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use crate::database::DatabaseArgs;
use crate::dispatch::DispatchSettings;
use crate::dispatch::retry::{DEFAULT_SCHEDULE, RetrySchedule};
use crate::store::health::AutoDisable;

/// webhookd: webhook subscriptions and delivery, wire-compatible with the Buf Schema
/// Registry's WebhookService.
#[derive(Debug, Parser)]
#[command(name = "webhookd", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The `serve` command, whose flags the configuration file's `[serve]` keys are.
///
/// # Errors
/// Never in practice: `serve` is one of [`Cli`]'s commands.
pub fn serve_command() -> anyhow::Result<clap::Command> {
    <Cli as clap::CommandFactory>::command()
        .find_subcommand("serve")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the serve command"))
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (Connect, gRPC and gRPC-Web on one port).
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Publish synthetic repository-push events (for trying webhookd out, and for tests).
    Publish(PublishArgs),
    /// Run a reference listener: a buf.alpha.webhook.v1alpha1.EventService that prints each
    /// event it receives as one line of JSON.
    Listen(ListenArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Look at and change subscriptions on a running server (with an API token).
    Subscriptions(SubscriptionsArgs),
    /// Look at, redeliver and recover deliveries on a running server (with an API token).
    Deliveries(DeliveriesArgs),
}

/// How the operator's commands reach a running server.
#[derive(Debug, Clone, Args)]
pub struct OperatorArgs {
    /// The server's URL.
    #[arg(
        long,
        env = "WEBHOOKD_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,

    /// An API token (prefer WEBHOOKD_TOKEN: every local user can read a command line).
    #[arg(
        long,
        env = "WEBHOOKD_TOKEN",
        hide_env_values = true,
        global = true,
        default_value = ""
    )]
    pub token: String,

    /// Print the server's answer as JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `webhookd subscriptions ...`.
#[derive(Debug, Args)]
pub struct SubscriptionsArgs {
    /// The server and token.
    #[command(flatten)]
    pub operator: OperatorArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: SubscriptionsCommand,
}

/// The subscription commands.
#[derive(Debug, Subcommand)]
pub enum SubscriptionsCommand {
    /// An owner's subscriptions (the first 100), oldest first.
    List {
        /// The owner.
        #[arg(long)]
        owner: String,
        /// Only those of this repository.
        #[arg(long)]
        repository: Option<String>,
        /// Only those in this state.
        #[arg(long, value_parser = ["active", "paused", "disabled"])]
        state: Option<String>,
    },
    /// One subscription, with its last response and last triggers.
    Get {
        /// Its id.
        id: String,
    },
    /// Hold its deliveries until resumed (events are still queued).
    Pause {
        /// Its id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Send what was held, in order, and what comes.
    Resume {
        /// Its id.
        id: String,
    },
    /// Queue events for it again (after a disable, or a 410 Gone).
    Enable {
        /// Its id.
        id: String,
    },
    /// Queue nothing more for it.
    Disable {
        /// Its id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `webhookd deliveries ...`.
#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    /// The server and token.
    #[command(flatten)]
    pub operator: OperatorArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: DeliveriesCommand,
}

/// The delivery commands.
#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// A subscription's deliveries (the newest 100).
    List {
        /// The subscription's id.
        subscription: String,
        /// Only those in this state.
        #[arg(long, value_parser = ["pending", "delivered", "failed"])]
        state: Option<String>,
        /// Only those of events of this type.
        #[arg(long)]
        event_type: Option<String>,
        /// Only those queued at or after this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        since: Option<String>,
        /// Only those queued before this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        until: Option<String>,
    },
    /// One delivery with every attempt's request and answer.
    Get {
        /// Its id.
        id: String,
    },
    /// Queue a delivery again now, with the whole retry schedule ahead of it.
    Redeliver {
        /// Its id.
        id: String,
    },
    /// Queue again every failed delivery of a subscription queued in a window, oldest first.
    Recover {
        /// The subscription's id.
        subscription: String,
        /// From this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        since: String,
        /// Until this time (RFC 3339; default now).
        #[arg(long, value_parser = parse_time)]
        until: Option<String>,
    },
    /// Follow an owner's attempts as they are recorded (one line each) until interrupted.
    Tail {
        /// The owner whose attempts to follow.
        #[arg(long)]
        owner: String,
        /// Only this subscription's attempts.
        #[arg(long)]
        subscription: Option<String>,
    },
}

/// An RFC 3339 time, as UTC with a `Z`.
fn parse_time(text: &str) -> Result<String, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        })
        .map_err(|e| format!("{text:?} is not an RFC 3339 time such as 2026-12-01T00:00:00Z: {e}"))
}

/// `webhookd config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file without starting anything: every key and value as `serve
    /// --config FILE` would read them. Prints the settings it holds; exits 1 on the first
    /// error, naming its line and key.
    Check(ConfigCheckArgs),
}

/// `webhookd config check`.
#[derive(Debug, Args)]
pub struct ConfigCheckArgs {
    /// The file.
    pub file: PathBuf,
}

/// `webhookd serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Read settings from this TOML file's [serve] table, one key per flag in snake case
    /// (`batch_size = 1000`); flags and environment variables override it.
    #[arg(long, env = "WEBHOOKD_CONFIG")]
    pub config: Option<PathBuf>,

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

    /// The most webhooks one owner may have, over all its repositories.
    #[arg(long, env = "WEBHOOKD_MAX_WEBHOOKS_PER_OWNER", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_webhooks_per_owner: u32,

    /// The most deliveries one owner may have queued (pending, retries included): once it
    /// has this many, its Publish calls are refused with `resource_exhausted`.
    #[arg(long, env = "WEBHOOKD_MAX_QUEUED_PER_OWNER", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000_000_000))]
    pub max_queued_per_owner: u64,

    /// How long a verified API token is remembered (`0s`: look it up on every request).
    /// Revocations reach every process at once by LISTEN/NOTIFY whatever this is; it bounds
    /// only a token revoked by hand in the database.
    #[arg(long, env = "WEBHOOKD_TOKEN_CACHE_TTL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub token_cache_ttl: Duration,

    /// How long a repository's first ListWebhooks page is remembered (`0s`: read it on
    /// every request). Creates and deletes reach every process at once by LISTEN/NOTIFY
    /// whatever this is; it bounds only webhooks changed by hand in the database.
    #[arg(long, env = "WEBHOOKD_LIST_CACHE_TTL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub list_cache_ttl: Duration,

    /// Size of the database connection pool.
    #[arg(long, env = "WEBHOOKD_MAX_DB_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_db_connections: u32,

    /// How long in-flight requests and deliveries may finish after SIGTERM or SIGINT.
    #[arg(long, env = "WEBHOOKD_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Do not run the batcher (this process only serves the API).
    #[arg(long, env = "WEBHOOKD_NO_DISPATCH")]
    pub no_dispatch: bool,

    /// Do not serve the API (this process only delivers; /healthz and /readyz stay up).
    #[arg(long, env = "WEBHOOKD_NO_API", conflicts_with = "no_dispatch")]
    pub no_api: bool,

    /// Time between the batcher's claims.
    #[arg(long, env = "WEBHOOKD_POLL_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,

    /// The most deliveries the batcher claims and attempts at once.
    #[arg(long, env = "WEBHOOKD_BATCH_SIZE", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,

    /// After a full batch, claim the next one at once instead of waiting for the next poll.
    #[arg(long, env = "WEBHOOKD_DRAIN")]
    pub drain: bool,

    /// Wake the batcher as soon as something is published (LISTEN/NOTIFY); the poll stays
    /// as a backstop.
    #[arg(long, env = "WEBHOOKD_WAKE_ON_PUBLISH")]
    pub wake_on_publish: bool,

    /// The most delivery attempts in flight in this process.
    #[arg(long, env = "WEBHOOKD_MAX_IN_FLIGHT", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_in_flight: u32,

    /// The most delivery attempts to one webhook in flight in this process, so that a
    /// listener that hangs cannot take every slot.
    #[arg(long, env = "WEBHOOKD_MAX_IN_FLIGHT_PER_WEBHOOK", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_in_flight_per_webhook: u32,

    /// The most delivery attempts of one owner in flight in this process, so that one
    /// tenant's many slow listeners cannot take every slot (on a shared server, set it below
    /// --max-in-flight) [default: --max-in-flight].
    #[arg(long, env = "WEBHOOKD_MAX_IN_FLIGHT_PER_OWNER",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_in_flight_per_owner: Option<u32>,

    /// At least one claim in this interval shares its batch fairly between the webhooks with
    /// due deliveries (in rotation); the claims in between take the oldest due deliveries,
    /// which is cheaper. At the default cadence every claim is fair; `0s` makes every claim
    /// fair however fast the batcher claims.
    #[arg(long, env = "WEBHOOKD_FAIR_CLAIM_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub fair_claim_interval: Duration,

    /// Timeout of one delivery attempt (connect, send, answer).
    #[arg(long, env = "WEBHOOKD_DELIVERY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub delivery_timeout: Duration,

    /// Send deliveries through this HTTP proxy (`http://host:port`). Proxy variables
    /// (`HTTPS_PROXY`, `ALL_PROXY`, ...) are ignored: only this flag sets one. Callback hosts
    /// are still resolved and checked against the internal-address rule first.
    #[arg(long, env = "WEBHOOKD_DELIVERY_PROXY", value_parser = parse_proxy)]
    pub delivery_proxy: Option<String>,

    /// Delays before each retry of a failed delivery, comma-separated; the first attempt is
    /// immediate. Each delay gets +/-20% jitter.
    #[arg(long, env = "WEBHOOKD_RETRY_SCHEDULE", default_value = DEFAULT_SCHEDULE)]
    pub retry_schedule: RetrySchedule,

    /// Base64 of the 32-byte key that encrypts signing secrets in the database. Default: the
    /// key in <data-dir>/secret.key, created on first use. Every process sharing a database
    /// needs the same key.
    #[arg(long, env = "WEBHOOKD_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,

    /// A file holding that key (base64 of 32 bytes), instead of --secret-key, whose value
    /// every local user can read in /proc/<pid>/cmdline. The file must not be open to its
    /// group or to others.
    #[arg(long, env = "WEBHOOKD_SECRET_KEY_FILE", conflicts_with = "secret_key")]
    pub secret_key_file: Option<PathBuf>,

    /// Remove finished deliveries (with their attempts) whose last attempt is older than
    /// this, and then events no delivery refers to; pending and held deliveries are never
    /// removed. At least the retry schedule's longest run; `0s` keeps everything.
    #[arg(long, env = "WEBHOOKD_RETENTION", default_value = "30days", value_parser = humantime::parse_duration)]
    pub retention: Duration,

    /// How often retention runs (each run removes in batches of 500 rows).
    #[arg(long, env = "WEBHOOKD_RETENTION_INTERVAL", default_value = "1m", value_parser = parse_interval)]
    pub retention_interval: Duration,

    /// Disable a subscription whose every attempt has failed for this long (with at least
    /// --auto-disable-min-failures failures), and publish `webhookd.subscription.disabled`
    /// to the owner's subscriptions of the webhookd family; `0s`: never.
    #[arg(long, env = "WEBHOOKD_AUTO_DISABLE_AFTER", default_value = "5days", value_parser = humantime::parse_duration)]
    pub auto_disable_after: Duration,

    /// The fewest failed attempts after which --auto-disable-after disables a subscription.
    #[arg(long, env = "WEBHOOKD_AUTO_DISABLE_MIN_FAILURES", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub auto_disable_min_failures: u32,

    /// How much of each request's body the delivery log keeps per attempt (bytes; `0`: none).
    /// A body that is the event's stored payload, sent as is (the BSR's Connect format),
    /// costs nothing: it is read from the event when shown.
    #[arg(long, env = "WEBHOOKD_RECORD_REQUEST_BYTES", default_value_t = 65_536,
          value_parser = clap::value_parser!(u32).range(0..=16_777_216))]
    pub record_request_bytes: u32,

    /// Serve the Prometheus metrics on this address instead of at `/metrics` on --listen
    /// (the serving port then answers 404 there). The metrics name subscriptions of every
    /// owner: keep them where only operators reach.
    #[arg(long, env = "WEBHOOKD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// How many webhooks without a name get their id as the metrics' `webhook` label; the
    /// rest are counted under `other` (a named subscription is always labelled by its
    /// name).
    #[arg(long, env = "WEBHOOKD_METRICS_WEBHOOK_IDS", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub metrics_webhook_ids: u32,

    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

impl ServeArgs {
    /// When subscriptions are disabled for failing.
    pub fn auto_disable(&self) -> AutoDisable {
        AutoDisable {
            after: self.auto_disable_after,
            min_failures: i64::from(self.auto_disable_min_failures),
        }
    }

    /// The batcher's settings.
    pub fn dispatch_settings(&self) -> DispatchSettings {
        DispatchSettings {
            poll_interval: self.poll_interval,
            batch_size: self.batch_size,
            drain: self.drain,
            wake_on_publish: self.wake_on_publish,
            max_in_flight: self.max_in_flight,
            max_in_flight_per_webhook: self.max_in_flight_per_webhook,
            max_in_flight_per_owner: self.max_in_flight_per_owner.unwrap_or(self.max_in_flight),
            fair_claim_interval: self.fair_claim_interval,
            delivery_timeout: self.delivery_timeout,
            retry_schedule: self.retry_schedule.clone(),
            allow_insecure_callbacks: self.allow_insecure_callbacks,
            // Checked by `parse_proxy` already.
            delivery_proxy: self
                .delivery_proxy
                .as_deref()
                .and_then(|p| url::Url::parse(p).ok()),
            shutdown_timeout: self.shutdown_timeout,
            record_request_bytes: self.record_request_bytes as usize,
        }
    }
}

/// A duration that is not zero.
fn parse_interval(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be longer than 0s".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// An `http` or `https` proxy URL with a host.
fn parse_proxy(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "{text:?} is not an http:// or https:// proxy URL with a host"
        ));
    }
    Ok(text.to_owned())
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

/// `webhookd publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The repository's owner.
    #[arg(long)]
    pub owner: String,

    /// The repository.
    #[arg(long)]
    pub repository: String,

    /// How many events to publish (in batches of up to 1000).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub count: u32,

    /// Which events: BSR repository pushes, registry artifact pushes, or GitHub-style pushes.
    #[arg(long, value_enum, default_value_t = SyntheticFamily::Bsr)]
    pub family: SyntheticFamily,

    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// The event family `webhookd publish` makes events of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyntheticFamily {
    /// `repository.push`, as the BSR sends it.
    Bsr,
    /// `artifact.pushed`, with a tag.
    Registry,
    /// `push`, with GitHub's key payload fields.
    Github,
}

/// `webhookd listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Address to listen on; the callback URL is http://ADDR/buf.alpha.webhook.v1alpha1.EventService/Event.
    #[arg(long, env = "WEBHOOKD_LISTEN", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,

    /// Verify Standard Webhooks signatures with this whsec_ secret (repeat during a rotation);
    /// a bad or stale signature is answered `unauthenticated`.
    #[arg(
        long = "secret",
        env = "WEBHOOKD_LISTEN_SECRET",
        hide_env_values = true,
        value_delimiter = ' '
    )]
    pub secrets: Vec<String>,

    /// Read whsec_ secrets (whitespace-separated) from this file too, instead of putting
    /// them on the command line, where every local user can read them.
    #[arg(long, env = "WEBHOOKD_LISTEN_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
}
