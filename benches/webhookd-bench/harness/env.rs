//! What a benchmark run stands on: a database, `webhookd serve` processes and clients (the
//! receivers are the tests' own, `tests/it/receiver.rs`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use connectrpc::client::{ClientConfig, HttpClient};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use webhookd::domain::{
    ApiToken, CallbackUrl, CustomHeaders, FACE_GITHUB, FACE_NATIVE, Family, Filters, Format,
    FormatOptions, GitHubContentType, NewSubscription, NewWebhook, OwnerName, RepositoryName,
    SubscriptionSpec, TokenScope, WebhookEvent, WebhookId,
};
use webhookd::local_pg::{Durability, LocalPg};
use webhookd::proto::webhookd::v1 as pb;
use webhookd::secret_box::SecretBox;
use webhookd::signing::SigningSecret;
use webhookd::store;

use crate::receiver::Receiver;

/// The PostgreSQL server runs use (`DATABASE_URL`, or the embedded one with durable
/// defaults) and the `webhookd` binary they start.
pub struct Server {
    admin: PgConnectOptions,
    socket: Option<PathBuf>,
    binary: PathBuf,
    local: Option<LocalPg>,
}

impl Server {
    pub fn start(dir: &Path, binary: PathBuf) -> anyhow::Result<Self> {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return Ok(Self {
                admin: url.parse()?,
                socket: None,
                binary,
                local: None,
            });
        }
        let local = LocalPg::start(dir, None, Durability::Durable)?;
        Ok(Self {
            admin: local.admin_options(),
            socket: Some(dir.join("pg")),
            binary,
            local: Some(local),
        })
    }

    /// CPU seconds the embedded PostgreSQL has used so far: its live processes' own time,
    /// and the postmaster's reaped children (backends that have exited). `None` with
    /// `DATABASE_URL`, whose server may be elsewhere.
    pub fn pg_cpu_seconds(&self) -> Option<f64> {
        self.local.as_ref()?;
        let mut ticks = 0.0;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some((name, rest)) = stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(')'))
            else {
                continue;
            };
            if name != "postgres" {
                continue;
            }
            // After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
            let fields: Vec<f64> = rest
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0.0))
                .collect();
            ticks += fields.get(11..15).map_or(0.0, |f| f.iter().sum());
        }
        Some(ticks / 100.0) // USER_HZ on Linux
    }

    /// Stops the embedded server (if this run started it and nobody else uses it).
    pub fn stop(self) -> anyhow::Result<()> {
        match self.local {
            Some(local) => local.release(),
            None => Ok(()),
        }
    }
}

/// One fresh database with a token, a secret key and helpers.
pub struct Bench {
    pub pool: PgPool,
    pub url: String,
    pub token: String,
    pub key: String,
    name: String,
    admin: PgConnectOptions,
    binary: PathBuf,
}

impl Bench {
    pub async fn new(server: &Server) -> anyhow::Result<Self> {
        use sqlx::Connection as _;
        let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect_with(&server.admin).await?;
        store::create_database_if_missing(&mut admin, &name).await?;
        let pool = store::connect(server.admin.clone().database(&name), 16).await?;
        store::migrate(&pool).await?;
        let url = match &server.socket {
            Some(socket) => format!(
                "postgresql://webhookd@localhost/{name}?host={}",
                socket.display()
            ),
            None => {
                let mut url = url::Url::parse(&std::env::var("DATABASE_URL")?)?;
                url.set_path(&format!("/{name}"));
                url.to_string()
            }
        };
        let token = ApiToken::generate();
        let scope = TokenScope {
            owners: vec![],
            all_owners: true,
        };
        store::tokens::insert(&mut *pool.acquire().await?, token.hash(), &scope).await?;
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        Ok(Self {
            pool,
            url,
            token: token.expose().to_owned(),
            key,
            name,
            admin: server.admin.clone(),
            binary: server.binary.clone(),
        })
    }

    /// Subscribes `count` callback URLs on `receiver` to `acme/<repository>`.
    pub async fn subscribe(
        &self,
        repository: &str,
        receiver: &Receiver,
        count: usize,
        from: usize,
    ) -> anyhow::Result<()> {
        let secrets = SecretBox::from_base64(&self.key)?;
        let mut conn = self.pool.acquire().await?;
        for i in from..from + count {
            let new = NewWebhook {
                owner: OwnerName::parse("acme")?,
                repository: RepositoryName::parse(repository)?,
                event: WebhookEvent::RepositoryPush,
                callback_url: CallbackUrl::parse(&receiver.subscriber_url(i), true)?,
            };
            let id = WebhookId::generate();
            let sealed = secrets.seal(id, SigningSecret::generate().expose().as_bytes());
            let limits = store::webhooks::WebhookLimits {
                per_repository: 100_000,
                per_owner: 10_000_000,
            };
            store::webhooks::insert(&mut conn, id, &new, limits, &sealed).await?;
        }
        Ok(())
    }

    /// Subscribes `count` callback URLs on `receiver` (subscribers `from..`) to registry
    /// events of `owner` in `format`, every repository, with the repository filter
    /// `filter(i)` for subscriber `i` when given.
    pub async fn subscribe_registry(
        &self,
        owner: &str,
        receiver: &Receiver,
        (count, from): (usize, usize),
        format: Format,
        filter: Option<&dyn Fn(usize) -> String>,
    ) -> anyhow::Result<()> {
        let secrets = SecretBox::from_base64(&self.key)?;
        let mut conn = self.pool.acquire().await?;
        for i in from..from + count {
            let filters: Vec<String> = filter.map(|f| vec![f(i)]).unwrap_or_default();
            let new = NewSubscription {
                face: FACE_NATIVE,
                owner: OwnerName::parse_in(Family::Registry, "owner", owner)?,
                family: Family::Registry,
                spec: SubscriptionSpec {
                    repository: None,
                    event_types: vec![],
                    repository_filters: Filters::parse("repository_filters", &filters)?,
                    tag_filters: Filters::default(),
                    url: CallbackUrl::parse_target("url", &receiver.subscriber_url(i), true)?,
                    format,
                    format_options: FormatOptions::default(),
                    auth_header: None,
                    skip_tls_verify: false,
                    headers: CustomHeaders::default(),
                    omit_standard_headers: false,
                    no_retries: false,
                    name: String::new(),
                    description: String::new(),
                },
            };
            let id = WebhookId::generate();
            let sealed = secrets.seal(id, SigningSecret::generate().expose().as_bytes());
            let limits = store::webhooks::WebhookLimits {
                per_repository: 100_000,
                per_owner: 10_000_000,
            };
            let sealed = store::subscriptions::Sealed {
                signing_secret: &sealed,
                auth_header: None,
                hub_secret: None,
            };
            store::subscriptions::insert(&mut conn, id, &new, limits, sealed).await?;
        }
        Ok(())
    }

    /// Makes one GitHub hook (as `/api/v3` makes them: face `github`, JSON, signed with
    /// `secret`, no Standard Webhooks headers) on `owner/repository` for pushes, delivering
    /// to `receiver`'s first subscriber URL.
    pub async fn subscribe_github_hook(
        &self,
        owner: &str,
        repository: &str,
        receiver: &Receiver,
        secret: &str,
    ) -> anyhow::Result<()> {
        let secrets = SecretBox::from_base64(&self.key)?;
        let mut conn = self.pool.acquire().await?;
        let new = NewSubscription {
            face: FACE_GITHUB,
            owner: OwnerName::parse_in(Family::GitHub, "owner", owner)?,
            family: Family::GitHub,
            spec: SubscriptionSpec {
                repository: Some(RepositoryName::parse_in(
                    Family::GitHub,
                    "repository",
                    repository,
                )?),
                event_types: vec!["push".to_owned()],
                repository_filters: Filters::default(),
                tag_filters: Filters::default(),
                url: CallbackUrl::parse_target("url", &receiver.subscriber_url(0), true)?,
                format: Format::GitHub,
                format_options: FormatOptions {
                    github_content_type: GitHubContentType::Json,
                    ..FormatOptions::default()
                },
                auth_header: None,
                skip_tls_verify: false,
                headers: CustomHeaders::default(),
                omit_standard_headers: true,
                no_retries: false,
                name: String::new(),
                description: String::new(),
            },
        };
        let id = WebhookId::generate();
        let signing = secrets.seal(id, SigningSecret::generate().expose().as_bytes());
        let hub_secret = secrets.seal(id, secret.as_bytes());
        let limits = store::webhooks::WebhookLimits {
            per_repository: 100_000,
            per_owner: 10_000_000,
        };
        let sealed = store::subscriptions::Sealed {
            signing_secret: &signing,
            auth_header: None,
            hub_secret: Some(&hub_secret),
        };
        store::subscriptions::insert(&mut conn, id, &new, limits, sealed).await?;
        Ok(())
    }

    /// Starts `webhookd serve` on this database with `flags`.
    pub fn serve(&self, flags: &[&str]) -> anyhow::Result<Serve> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(&self.binary)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--allow-insecure-callbacks",
            ])
            // Secrets in the environment, as the README says: not on the command line.
            .env("DATABASE_URL", &self.url)
            .env("WEBHOOKD_SECRET_KEY", &self.key)
            .args(["--max-webhooks-per-repository", "100000"])
            // Scenario 5 creates tens of thousands of webhooks for one owner. By environment,
            // not flag, so that builds from before the limit run the same harness.
            .env("WEBHOOKD_MAX_WEBHOOKS_PER_OWNER", "10000000")
            .args(flags)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        Ok(Serve { child, port })
    }

    /// Deliveries recorded as delivered (the harness's own query: the product never
    /// counts its queue).
    pub async fn delivered(&self) -> anyhow::Result<i64> {
        let delivered =
            sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE state = 'delivered'")
                .fetch_one(&self.pool)
                .await?;
        Ok(delivered)
    }

    /// Waits until `total` deliveries are recorded as delivered.
    pub async fn wait_delivered(&self, total: i64, timeout: Duration) -> anyhow::Result<Instant> {
        let what = format!("{total} deliveries recorded as delivered");
        let delivered = || async { self.delivered().await.is_ok_and(|n| n >= total) };
        crate::wait::until(&what, timeout, delivered).await?;
        Ok(Instant::now())
    }

    pub async fn drop_database(self) -> anyhow::Result<()> {
        use sqlx::Connection as _;
        self.pool.close().await;
        let mut admin = sqlx::PgConnection::connect_with(&self.admin).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await?;
        Ok(())
    }
}

/// A running `webhookd serve`.
pub struct Serve {
    child: Child,
    pub port: u16,
}

impl Serve {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn ready(&self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let readyz = format!("{}/readyz", self.base());
        let ready = || async {
            http.get(&readyz)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        };
        crate::wait::until("serve is ready", Duration::from_secs(30), ready).await?;
        Ok(())
    }

    pub fn publisher(&self, token: &str) -> pb::PublishServiceClient<HttpClient> {
        let config = ClientConfig::new(self.base().parse().expect("a URI"))
            .with_default_header("authorization", format!("Bearer {token}").as_str());
        pb::PublishServiceClient::new(HttpClient::plaintext(), config)
    }

    /// Peak RSS (bytes) and CPU seconds so far, from /proc.
    pub fn resources(&self) -> anyhow::Result<(u64, f64)> {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let hwm_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
            + fields
                .get(12)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        let hz = 100.0; // USER_HZ on Linux
        Ok((hwm_kb * 1024, ticks / hz))
    }

    /// Stops it (SIGTERM, then waits for it to exit), as dropping it does.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Serve {
    /// A scenario that fails part-way leaves no `serve` running behind the harness.
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}
