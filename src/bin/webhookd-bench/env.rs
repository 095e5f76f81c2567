//! What a benchmark run stands on: a database, `webhookd serve` processes, receivers that
//! answer like an EventService, and clients.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::http::HeaderMap;
use connectrpc::client::{ClientConfig, HttpClient};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use webhookd::domain::{
    ApiToken, CallbackUrl, NewWebhook, OwnerName, RepositoryName, TokenScope, WebhookEvent,
};
use webhookd::local_pg::{Durability, LocalPg};
use webhookd::proto::webhookd::v1 as pb;
use webhookd::secret_box::SecretBox;
use webhookd::signing::SigningSecret;
use webhookd::store;

/// The `webhookd` binary the harness starts as `serve`: the one beside the harness. Under
/// `cargo run` (which sets `CARGO` and `CARGO_MANIFEST_DIR`) it is built first, in the
/// harness's own profile, so that `cargo run --release --bin webhookd-bench -- <scenario>`
/// works on a fresh clone and never measures a `serve` older than the code.
pub fn serve_binary() -> anyhow::Result<PathBuf> {
    let beside = std::env::current_exe()?.with_file_name("webhookd");
    let (Some(cargo), Some(manifest)) = (
        std::env::var_os("CARGO"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
    ) else {
        anyhow::ensure!(
            beside.exists(),
            "{} not found: webhookd-bench starts the webhookd binary beside it; build both \
             with `cargo build --release --bins`, or run the harness with \
             `cargo run --release --bin webhookd-bench -- <scenario>`, which builds it",
            beside.display()
        );
        return Ok(beside);
    };
    let mut build = Command::new(cargo);
    // Without what `cargo run` set for the harness itself: build scripts that watch those
    // variables (ring's watches CARGO_MANIFEST_DIR and OUT_DIR) would otherwise rebuild
    // half the tree, here and again in the next plain `cargo build`.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "OUT_DIR",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&&*name)
        {
            build.env_remove(&*name);
        }
    }
    build
        .args(["build", "--bin", "webhookd", "--message-format", "json"])
        .arg("--manifest-path")
        .arg(Path::new(&manifest).join("Cargo.toml"))
        .stderr(Stdio::inherit());
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    let output = build
        .output()
        .context("running cargo build --bin webhookd")?;
    anyhow::ensure!(
        output.status.success(),
        "cargo build --bin webhookd failed ({})",
        output.status
    );
    // cargo names what it built in its JSON messages: run exactly that.
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|m| {
            (m["reason"] == "compiler-artifact" && m["target"]["name"] == "webhookd")
                .then(|| m["executable"].as_str().map(PathBuf::from))
                .flatten()
        })
        .context("cargo build --bin webhookd named no executable")
}

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
                callback_url: CallbackUrl::parse(&receiver.url(i), true)?,
            };
            let sealed = secrets.seal(SigningSecret::generate().expose().as_bytes());
            store::webhooks::insert(&mut conn, &new, 100_000, &sealed).await?;
        }
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
            .args([
                "--database-url",
                &self.url,
                "--secret-key",
                &self.key,
                "--max-webhooks-per-repository",
                "100000",
            ])
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
        let deadline = Instant::now() + timeout;
        loop {
            if self.delivered().await? >= total {
                return Ok(Instant::now());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {} of {total} delivered in {timeout:?}",
                self.delivered().await?
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
        let deadline = Instant::now() + Duration::from_secs(30);
        while http
            .get(format!("{}/readyz", self.base()))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            anyhow::ensure!(Instant::now() < deadline, "serve did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

/// A delivery's first arrival at a receiver.
pub struct Arrival {
    pub at: Instant,
    /// The subscriber whose path it reached: `n` of `/<n>/…` (see [`Receiver::url`]).
    pub subscriber: Option<usize>,
    /// Its body, when the receiver keeps bodies (quick mode, to check them).
    pub body: Option<Bytes>,
}

/// What a receiver saw: each delivery (by its `webhook-id`) on its first arrival, and how
/// many distinct deliveries reached each subscriber.
#[derive(Default)]
pub struct Seen {
    pub first: HashMap<String, Arrival>,
    pub per_subscriber: HashMap<usize, usize>,
}

/// An in-process listener answering like an EventService. Path `/<n>/…/Event` lets one
/// receiver stand for many subscriptions; paths in `hang` never answer.
#[derive(Clone)]
pub struct Receiver {
    pub port: u16,
    pub seen: Arc<Mutex<Seen>>,
}

impl Receiver {
    pub async fn start(keep_bodies: bool, hang_prefix: Option<String>) -> anyhow::Result<Self> {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = seen.clone();
        let handler = move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            let shared = shared.clone();
            let hang = hang_prefix
                .as_deref()
                .is_some_and(|p| uri.path().starts_with(p));
            async move {
                if hang {
                    std::future::pending::<()>().await;
                }
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let subscriber = uri.path().split('/').nth(1).and_then(|n| n.parse().ok());
                let mut seen = shared.lock().expect("receiver lock");
                if let Entry::Vacant(slot) = seen.first.entry(id) {
                    slot.insert(Arrival {
                        at: Instant::now(),
                        subscriber,
                        body: keep_bodies.then_some(body),
                    });
                    if let Some(n) = subscriber {
                        *seen.per_subscriber.entry(n).or_default() += 1;
                    }
                }
                ([("content-type", "application/proto")], Bytes::new())
            }
        };
        let app = axum::Router::new().fallback(axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { port, seen })
    }

    pub fn url(&self, n: usize) -> String {
        format!(
            "http://127.0.0.1:{}/{n}{}",
            self.port,
            webhookd::domain::EVENT_PATH_SUFFIX
        )
    }

    /// When the first delivery arrived, if any has.
    pub fn first_arrival(&self) -> Option<Instant> {
        let seen = self.seen.lock().expect("receiver lock");
        seen.first.values().map(|a| a.at).min()
    }

    /// Distinct deliveries that arrived, to any path.
    pub fn distinct(&self) -> usize {
        self.seen.lock().expect("receiver lock").first.len()
    }

    /// Distinct deliveries that reached subscribers `0..subscribers`.
    pub fn arrived(&self, subscribers: usize) -> usize {
        let seen = self.seen.lock().expect("receiver lock");
        (0..subscribers)
            .filter_map(|n| seen.per_subscriber.get(&n))
            .sum()
    }

    /// Waits until `n` distinct deliveries have arrived, to any path.
    pub async fn wait_distinct(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        self.wait(n, timeout, Self::distinct).await
    }

    /// Waits until `n` distinct deliveries have reached subscribers `0..subscribers`.
    pub async fn wait_arrived(
        &self,
        subscribers: usize,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait(n, timeout, |r| r.arrived(subscribers)).await
    }

    async fn wait(
        &self,
        n: usize,
        timeout: Duration,
        count: impl Fn(&Self) -> usize,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = count(self);
            if seen >= n {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "receiver saw {seen} of {n} in {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
