//! Test scaffolding: a database per test, the real app on port 0, HTTP helpers, and the
//! locations of the third-party clients (which CI installs; a missing one fails, never skips).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use webhookd::config::ServeArgs;
use webhookd::domain::{ApiToken, TokenScope};
use webhookd::local_pg::{Durability, LocalPg};
use webhookd::store;

pub const EVENT_PATH: &str = "/buf.alpha.webhook.v1alpha1.EventService/Event";
pub const SERVICE: &str = "buf.alpha.registry.v1alpha1.WebhookService";

/// The server the test databases live on: `DATABASE_URL` if set, else an embedded cluster
/// in the system temp directory (which the `postgres` user can always enter, unlike a clone
/// under /root), started once per test run and left running for the next.
fn server() -> &'static (PgConnectOptions, Option<LocalPg>) {
    static SERVER: OnceLock<(PgConnectOptions, Option<LocalPg>)> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) => (url.parse().expect("DATABASE_URL is a PostgreSQL URL"), None),
        Err(_) => {
            let dir = std::env::temp_dir().join("webhookd-test-pg");
            let local = LocalPg::start(&dir, None, Durability::Ephemeral)
                .expect("starting the test PostgreSQL");
            drop_old_databases(&local.admin_options());
            (local.admin_options(), Some(local))
        }
    })
}

/// Drops the databases earlier runs left on the embedded test server (the cluster is kept
/// between runs; its databases would pile up, a few hundred MB a run). One still in use by
/// a run going on now refuses, and is left.
fn drop_old_databases(admin: &PgConnectOptions) {
    let admin = admin.clone();
    let drop_all = async move {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect_with(&admin).await?;
        let names: Vec<String> =
            sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'")
                .fetch_all(&mut conn)
                .await?;
        for name in names {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\""))
                .execute(&mut conn)
                .await;
        }
        anyhow::Ok(())
    };
    // On a runtime of its own: this runs inside a OnceLock initialiser, off the tests' runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let _ = runtime.block_on(drop_all);
}

/// A fresh, migrated database for one test.
pub async fn test_database() -> (PgPool, PgConnectOptions) {
    let admin_options = tokio::task::spawn_blocking(|| server().0.clone())
        .await
        .unwrap();
    test_database_on(&admin_options).await
}

/// A fresh, migrated database on the server `admin_options` reaches.
pub async fn test_database_on(admin_options: &PgConnectOptions) -> (PgPool, PgConnectOptions) {
    let admin_options = admin_options.clone();
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::Connection::connect_with(&admin_options)
        .await
        .expect("connecting to the test server");
    store::create_database_if_missing(&mut admin, &name)
        .await
        .unwrap();
    let options = admin_options.database(&name);
    let pool = store::connect(options.clone(), 8).await.unwrap();
    store::migrate(&pool).await.unwrap();
    (pool, options)
}

/// The real server, running in-process on 127.0.0.1:<random port>.
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub pool: PgPool,
    pub db_options: PgConnectOptions,
    pub http: reqwest::Client,
    pub args: ServeArgs,
    _stop: oneshot::Sender<()>,
}

/// The app with insecure callbacks allowed (the tests' listeners are on 127.0.0.1).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&["--allow-insecure-callbacks"]).await
}

/// The app with `serve` flags parsed exactly as the CLI parses them (so tests run on the
/// real defaults), plus a port-0 listener and a random secret key.
pub async fn spawn_app_with(flags: &[&str]) -> TestApp {
    let (pool, db_options) = test_database().await;
    spawn_app_in(pool, db_options, flags).await
}

/// The app as [`spawn_app_with`] makes it, on a database of the server `admin_options`
/// reaches (a server of the test's own, which it may stop and start).
pub async fn spawn_app_on(admin_options: &PgConnectOptions, flags: &[&str]) -> TestApp {
    let (pool, db_options) = test_database_on(admin_options).await;
    spawn_app_in(pool, db_options, flags).await
}

async fn spawn_app_in(pool: PgPool, db_options: PgConnectOptions, flags: &[&str]) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let args = serve_args(listener.local_addr().unwrap(), flags);
    start(args, pool, db_options, listener)
}

/// `serve` flags parsed exactly as the CLI parses them, listening on `addr` with a random
/// secret key, plus `flags`.
pub fn serve_args(addr: std::net::SocketAddr, flags: &[&str]) -> ServeArgs {
    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        serve: ServeArgs,
    }
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let mut argv = vec![
        "serve".to_owned(),
        "--listen".into(),
        addr.to_string(),
        "--secret-key".into(),
        key,
    ];
    argv.extend(flags.iter().map(|f| f.to_string()));
    <Flags as clap::Parser>::try_parse_from(argv)
        .expect("test flags parse")
        .serve
}

/// Runs the app on `listener` until the returned TestApp is dropped.
fn start(
    args: ServeArgs,
    pool: PgPool,
    db_options: PgConnectOptions,
    listener: TcpListener,
) -> TestApp {
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let (app_pool, app_args) = (pool.clone(), args.clone());
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        webhookd::app::run(&app_args, app_pool, listener, shutdown)
            .await
            .expect("the app runs");
    });
    TestApp {
        addr,
        pool,
        db_options,
        http: http_client(),
        args,
        _stop: stop,
    }
}

impl TestApp {
    /// Waits until `n` servers' cache listeners (token revocations and webhook changes) on
    /// this database are connected; returns their backends' pids. That a cache is in use
    /// is shown by [`Self::token_cached`] and [`Self::list_cached`], not assumed from this.
    pub async fn cache_listeners(&self, n: usize) -> Vec<i32> {
        self.listening(webhookd::store::tokens::REVOKED_CHANNEL, n, &[])
            .await
    }

    /// Waits until this app's token cache holds `token`, shown the only way that cannot be
    /// mistaken: a revocation made behind webhookd's back (in SQL, announced to nobody) is
    /// not seen. Each try revokes `token` so, asks, and restores it; it ends with `token`
    /// cached and valid.
    pub async fn token_cached(&self, token: &str) {
        let hash = ApiToken::from_authorization(Some(&format!("Bearer {token}")))
            .unwrap()
            .hash();
        let revoke = |revoked: bool| {
            sqlx::query(
                "UPDATE api_tokens SET revoke_time = CASE WHEN $2 THEN now() END
                 WHERE token_hash = $1",
            )
            .bind(hash.0.to_vec())
            .bind(revoked)
            .execute(&self.pool)
        };
        let list = r#"{"ownerName":"acme","repositoryName":"petapis"}"#;
        wait_until(
            "the token cache serves the token",
            Duration::from_secs(10),
            || async {
                let (status, answer) = self.json("ListWebhooks", Some(token), list).await;
                assert_eq!(status, 200, "{answer}");
                revoke(true).await.unwrap();
                let cached = self.json("ListWebhooks", Some(token), list).await.0 == 200;
                revoke(false).await.unwrap();
                cached
            },
        )
        .await;
    }

    /// Waits until this app's ListWebhooks cache serves `owner/repository`'s first page:
    /// a change made behind webhookd's back (moving every webhook's `update_time` by a
    /// microsecond, announced to nobody) is not seen.
    pub async fn list_cached(&self, token: &str, owner: &str, repository: &str) {
        let nudge = || {
            sqlx::query(
                "UPDATE webhooks SET update_time = update_time + interval '1 microsecond'
                 WHERE owner_name = $1 AND repository_name = $2",
            )
            .bind(owner)
            .bind(repository)
            .execute(&self.pool)
        };
        wait_until(
            "the list cache serves the page",
            Duration::from_secs(10),
            || async {
                let before = self.list(token, owner, repository, "").await;
                nudge().await.unwrap();
                self.list(token, owner, repository, "").await == before
            },
        )
        .await;
    }

    /// A file holding this app's secret key (mode 0600), for `--secret-key-file`.
    pub fn secret_key_file(&self) -> PathBuf {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = tempdir("key").join("secret.key");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(
            &mut file,
            self.args.secret_key.as_deref().unwrap().as_bytes(),
        )
        .unwrap();
        path
    }

    /// Waits until `n` sessions other than `except` LISTEN on `channel` on this database;
    /// returns the pids of all that do.
    pub async fn listening(&self, channel: &str, n: usize, except: &[i32]) -> Vec<i32> {
        let up = async {
            loop {
                let pids: Vec<i32> = sqlx::query_scalar(
                    "SELECT pid FROM pg_stat_activity \
                     WHERE datname = current_database() AND query LIKE 'LISTEN%' || $1 || '%'",
                )
                .bind(channel)
                .fetch_all(&self.pool)
                .await
                .unwrap();
                if pids.iter().filter(|pid| !except.contains(pid)).count() >= n {
                    return pids;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), up)
            .await
            .unwrap_or_else(|_| panic!("no LISTEN {channel} session"))
    }

    /// A second server process on this app's database (same flags and key, its own port,
    /// pool and caches), as when `serve` is scaled out.
    pub async fn another_process(&self) -> TestApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut args = self.args.clone();
        args.listen = listener.local_addr().unwrap();
        let pool = PgPool::connect_with(self.db_options.clone()).await.unwrap();
        start(args, pool, self.db_options.clone(), listener)
    }
}

pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

impl TestApp {
    /// A batcher like the app's own, for tests that drive delivery with `run_once`.
    pub fn dispatcher(&self) -> webhookd::dispatch::Dispatcher {
        let secrets = webhookd::app::secret_box(&self.args).unwrap();
        webhookd::dispatch::Dispatcher::new(
            self.pool.clone(),
            self.args.dispatch_settings(),
            secrets,
            webhookd::metrics::Metrics::new(100),
        )
        .unwrap()
    }

    /// Connect client settings for this app, authenticated with `token`.
    pub fn client_config(&self, token: &str) -> connectrpc::client::ClientConfig {
        connectrpc::client::ClientConfig::new(self.url("").parse().unwrap())
            .with_default_header("authorization", format!("Bearer {token}").as_str())
    }

    pub fn publisher(
        &self,
        token: &str,
    ) -> webhookd::proto::webhookd::v1::PublishServiceClient<connectrpc::client::HttpClient> {
        webhookd::proto::webhookd::v1::PublishServiceClient::new(
            connectrpc::client::HttpClient::plaintext(),
            self.client_config(token),
        )
    }

    pub fn deliveries(
        &self,
        token: &str,
    ) -> webhookd::proto::webhookd::v1::DeliveryServiceClient<connectrpc::client::HttpClient> {
        webhookd::proto::webhookd::v1::DeliveryServiceClient::new(
            connectrpc::client::HttpClient::plaintext(),
            self.client_config(token),
        )
    }

    pub fn subscriptions(
        &self,
        token: &str,
    ) -> webhookd::proto::webhookd::v1::SubscriptionServiceClient<connectrpc::client::HttpClient>
    {
        webhookd::proto::webhookd::v1::SubscriptionServiceClient::new(
            connectrpc::client::HttpClient::plaintext(),
            self.client_config(token),
        )
    }

    /// The database URL of this test's database, for `webhookd` processes.
    pub fn database_url(&self) -> String {
        let name = self.db_options.get_database().unwrap();
        match std::env::var("DATABASE_URL") {
            Ok(url) => {
                let mut url = url::Url::parse(&url).unwrap();
                url.set_path(&format!("/{name}"));
                url.to_string()
            }
            Err(_) => format!(
                "postgresql://webhookd@localhost/{name}?host={}",
                self.db_options.get_socket().unwrap().display()
            ),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn callback(&self, name: &str) -> String {
        format!("https://{name}.example.com{EVENT_PATH}")
    }

    /// A new token for `owners` (or every owner, with `["*"]`).
    pub async fn token(&self, owners: &[&str]) -> String {
        let scope = if owners == ["*"] {
            TokenScope {
                owners: vec![],
                all_owners: true,
            }
        } else {
            TokenScope {
                owners: owners.iter().map(|o| o.to_string()).collect(),
                all_owners: false,
            }
        };
        let token = ApiToken::generate();
        store::tokens::insert(
            &mut self.pool.acquire().await.unwrap(),
            token.hash(),
            &scope,
        )
        .await
        .unwrap();
        token.expose().to_owned()
    }

    /// A Connect unary call with a JSON body; returns the status and the parsed JSON answer.
    pub async fn json(&self, method: &str, token: Option<&str>, body: &str) -> (u16, Value) {
        let (status, _, bytes) = self
            .call(method, token, "application/json", body.as_bytes().to_vec())
            .await;
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{method} answered non-JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, value)
    }

    /// A Connect JSON call of `method` ("webhookd.v1.SubscriptionService/GetSubscription")
    /// with a `serde_json` body; returns the status and the parsed answer.
    pub async fn rpc(&self, method: &str, token: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(&format!("/{method}")))
            .header("content-type", "application/json")
            .header("connect-protocol-version", "1")
            .bearer_auth(token)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{method} answered non-JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, value)
    }

    /// A Connect unary call with any content type and body.
    pub async fn call(
        &self,
        method: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let mut request = self
            .http
            .post(self.url(&format!("/{SERVICE}/{method}")))
            .header("content-type", content_type)
            .header("connect-protocol-version", "1")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.bytes().await.unwrap().to_vec())
    }

    /// Calls CreateWebhook over Connect JSON; returns the status and the answer.
    pub async fn try_create(
        &self,
        token: &str,
        owner: &str,
        repository: &str,
        callback: &str,
    ) -> (u16, Value) {
        let body = serde_json::json!({
            "webhookEvent": "WEBHOOK_EVENT_REPOSITORY_PUSH",
            "ownerName": owner, "repositoryName": repository, "callbackUrl": callback,
        });
        self.json("CreateWebhook", Some(token), &body.to_string())
            .await
    }

    /// Creates a webhook over Connect JSON and returns the `webhook` object.
    pub async fn create(
        &self,
        token: &str,
        owner: &str,
        repository: &str,
        callback: &str,
    ) -> Value {
        let (status, value) = self.try_create(token, owner, repository, callback).await;
        assert_eq!(status, 200, "{value}");
        value["webhook"].clone()
    }

    /// Lists one page of a repository's webhooks.
    pub async fn list(
        &self,
        token: &str,
        owner: &str,
        repository: &str,
        page_token: &str,
    ) -> Value {
        let body = serde_json::json!({"ownerName": owner, "repositoryName": repository, "pageToken": page_token});
        let (status, value) = self
            .json("ListWebhooks", Some(token), &body.to_string())
            .await;
        assert_eq!(status, 200, "{value}");
        value
    }

    /// Deletes a webhook; the answer's status.
    pub async fn delete(&self, token: &str, webhook_id: &str) -> u16 {
        let body = serde_json::json!({"webhookId": webhook_id}).to_string();
        self.json("DeleteWebhook", Some(token), &body).await.0
    }

    /// How many webhooks the database holds: for "nothing was written" checks.
    pub async fn webhook_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM webhooks")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Folds the owners' counts and checks that they are the true ones: every owner's
    /// pending deliveries and webhooks, counted row by row. (A fold of the server's may hold
    /// the turn: then this waits for it.)
    pub async fn assert_owner_counts_true(&self) {
        let query = |sql| sqlx::query_as::<_, (String, i64, i64)>(sql).fetch_all(&self.pool);
        let truth = query(
            "SELECT w.owner_name, count(d.id) FILTER (WHERE d.state = 'pending'),
                    count(DISTINCT w.id)
             FROM webhooks w LEFT JOIN deliveries d ON d.webhook_id = w.id
             GROUP BY 1 ORDER BY 1",
        )
        .await
        .unwrap();
        let mut counted = vec![];
        for _ in 0..50 {
            let mut conn = self.pool.acquire().await.unwrap();
            store::owner_counts::fold(&mut conn).await.unwrap();
            counted = query(
                "SELECT owner_name, queued, webhooks FROM owner_counts
                 WHERE (queued, webhooks) <> (0, 0) ORDER BY 1",
            )
            .await
            .unwrap();
            if counted == truth {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            counted, truth,
            "the folded counts drifted from the deliveries and webhooks"
        );
    }
}

/// A child process the test owns: killed when the test ends, by a panic too, so that a
/// failing test leaves no `webhookd` running behind it.
pub struct Spawned(std::process::Child);

impl Spawned {
    pub fn new(command: &mut std::process::Command) -> Self {
        Self(command.spawn().expect("starting a child process"))
    }
}

impl std::ops::Deref for Spawned {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // Both fail harmlessly when the test has already waited for it.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `webhookd serve` process with `flags` on `database_url` (which reaches `app`'s
/// database) and `app`'s secret key, listening on the port returned.
pub fn serve_command(app: &TestApp, database_url: &str, flags: &[&str]) -> (Spawned, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Secrets as the README says to pass them: the database URL in the environment, the
    // key in a file; nothing secret on the command line.
    let child = Spawned::new(
        std::process::Command::new(env!("CARGO_BIN_EXE_webhookd"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--allow-insecure-callbacks")
            .env("DATABASE_URL", database_url)
            .arg("--secret-key-file")
            .arg(app.secret_key_file())
            .args(flags)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit()),
    );
    (child, port)
}

/// A port nothing listens on now (bound and let go).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits up to 2 s for `check` to hold.
pub async fn eventually<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    wait_until(what, Duration::from_secs(2), check).await;
}

/// Waits up to `timeout` for `check` to hold; panics naming `what`.
pub async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    check: impl FnMut() -> F,
) {
    if let Err(e) = crate::wait::until(what, timeout, check).await {
        panic!("{e}");
    }
}

/// Waits until something accepts connections on `port` (a process starting up).
pub async fn wait_for_port(port: u16) {
    wait_until(
        &format!("something listening on 127.0.0.1:{port}"),
        Duration::from_secs(30),
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        },
    )
    .await;
}

/// Asserts a Connect error answer: HTTP status, code, and a fragment of the message.
pub fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str, fragment: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(fragment),
        "message {message:?} lacks {fragment:?}"
    );
}

/// A third-party tool the tests drive. CI installs them (`scripts/test`); a missing tool
/// fails the test with instructions instead of skipping it.
pub fn tool(env_var: &str, local: &str, fallback: &str) -> PathBuf {
    if let Ok(path) = std::env::var(env_var) {
        return PathBuf::from(path);
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(local);
    if local.exists() {
        return local;
    }
    which(fallback).unwrap_or_else(|| {
        panic!("{fallback} not found: run ./scripts/test (it installs the test clients into .tools/) or set {env_var}")
    })
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The buf CLI.
pub fn buf() -> PathBuf {
    tool("WEBHOOKD_TEST_BUF", ".tools/venv/bin/buf", "buf")
}

/// A Python with grpcio and grpcio-tools.
pub fn python() -> PathBuf {
    tool("WEBHOOKD_TEST_PYTHON", ".tools/venv/bin/python", "python3")
}

/// Runs a blocking command off the runtime; returns (exit code, stdout, stderr).
pub async fn run(mut command: std::process::Command) -> (i32, String, String) {
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("spawning a client");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A fresh directory in the system temp directory (embedded PostgreSQL clusters made in it
/// must be enterable by the `postgres` user).
pub fn tempdir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "webhookd-{label}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether the tests run as root (then the embedded server runs as `postgres`).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs `program` as the user the embedded server runs as (`postgres` when we are root).
pub fn as_server_user(program: &Path) -> std::process::Command {
    if is_root() {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        std::process::Command::new(program)
    }
}

/// Runs `pg_ctl` on `cluster` with `args`, as the server's user; panics with its error.
pub fn pg_ctl(cluster: &Path, args: &[&str]) {
    let pg_ctl = webhookd::local_pg::find_bin_dir().unwrap().join("pg_ctl");
    let out = as_server_user(&pg_ctl)
        .arg("-D")
        .arg(cluster)
        .args(args)
        .current_dir("/")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_ctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
