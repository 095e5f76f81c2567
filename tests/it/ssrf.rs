//! The internal-address guard against the ways around it: proxy variables, an explicit
//! `--delivery-proxy`, and names whose only records are addresses that carry an internal
//! IPv4 address or are otherwise not global unicast. Each runs a real `webhookd serve`
//! without `--allow-insecure-callbacks`; names resolve through the system resolver, from a
//! hosts file bind-mounted over `/etc/hosts` in a mount namespace of the process's own.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use webhookd::domain::EVENT_PATH_SUFFIX;
use webhookd::synthetic::repository_push;

use crate::delivery::publish;
use crate::helpers::{Spawned, TestApp, spawn_app_with, tempdir, wait_until};

/// A proxy that takes every request (a CONNECT or an absolute-form request), remembers its
/// first line, and answers 502.
struct Proxy {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(vec![]));
        let connections = Arc::new(AtomicUsize::new(0));
        let (seen, counted) = (requests.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.split();
                    let mut line = String::new();
                    let _ = BufReader::new(read).read_line(&mut line).await;
                    seen.lock().unwrap().push(line.trim_end().to_owned());
                    let _ = write.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                });
            }
        });
        Self {
            port,
            requests,
            connections,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// An app that serves the API only, with an `acme` token.
async fn app() -> (TestApp, String) {
    let app = spawn_app_with(&["--no-dispatch"]).await;
    let token = app.token(&["acme"]).await;
    (app, token)
}

/// A webhook of acme/`repository` delivering to `url`, set in the database (as if the
/// name's DNS had changed since it was created, or to a URL the API would refuse), with one
/// event published to it.
async fn queued_to(app: &TestApp, token: &str, repository: &str, url: &str) {
    let created = app
        .create(
            token,
            "acme",
            repository,
            &format!("https://{repository}.example.com{EVENT_PATH_SUFFIX}"),
        )
        .await;
    sqlx::query("UPDATE webhooks SET callback_url = $1 WHERE id = $2::uuid")
        .bind(url)
        .bind(created["webhookId"].as_str().unwrap())
        .execute(&app.pool)
        .await
        .unwrap();
    publish(
        app,
        token,
        vec![(repository_push("acme", repository, 1), "")],
    )
    .await;
}

/// A batcher-only `webhookd serve` (no insecure mode) on `app`'s database, polling fast,
/// with `flags` and `env`; with `hosts`, in a mount namespace whose `/etc/hosts` is that.
fn serve(app: &TestApp, flags: &[&str], env: &[(&str, &str)], hosts: Option<&str>) -> Spawned {
    let webhookd = env!("CARGO_BIN_EXE_webhookd");
    let mut command = match hosts {
        None => Command::new(webhookd),
        Some(hosts) => {
            let file = tempdir("hosts").join("hosts");
            std::fs::write(&file, hosts).unwrap();
            let mut command = Command::new("unshare");
            command.args([
                "--mount",
                "sh",
                "-c",
                r#"mount --bind "$0" /etc/hosts && exec "$@""#,
            ]);
            command.arg(file).arg(webhookd);
            command
        }
    };
    command
        .args(["serve", "--no-api", "--listen", "127.0.0.1:0"])
        .args(["--poll-interval", "100ms", "--retry-schedule", "1h"])
        .env("DATABASE_URL", app.database_url())
        .arg("--secret-key-file")
        .arg(app.secret_key_file())
        .args(flags)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    Spawned::new(&mut command)
}

/// Each delivery's callback URL and its first attempt's error, once every delivery has
/// been attempted.
async fn first_errors(app: &TestApp, deliveries: usize) -> Vec<(String, String)> {
    let query = "SELECT w.callback_url, coalesce(a.error, '') FROM delivery_attempts a
                 JOIN deliveries d ON d.id = a.delivery_id JOIN webhooks w ON w.id = d.webhook_id
                 WHERE a.number = 1 ORDER BY w.callback_url";
    let attempted = || async {
        let rows: Vec<(String, String)> = sqlx::query_as(query).fetch_all(&app.pool).await.unwrap();
        rows.len() == deliveries
    };
    wait_until(
        "every delivery attempted",
        Duration::from_secs(30),
        attempted,
    )
    .await;
    sqlx::query_as(query).fetch_all(&app.pool).await.unwrap()
}

#[tokio::test]
async fn proxy_variables_do_not_carry_deliveries_past_the_internal_address_guard() {
    let (app, token) = app().await;
    let proxy = Proxy::start().await;
    // `localhost` resolves to loopback only: the guard must see that name, not the proxy.
    queued_to(
        &app,
        &token,
        "petapis",
        &format!("https://localhost:9{EVENT_PATH_SUFFIX}"),
    )
    .await;
    let url = proxy.url();
    let variables = [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
    ];
    let env: Vec<(&str, &str)> = variables.iter().map(|v| (*v, url.as_str())).collect();
    let _serve = serve(&app, &[], &env, None);

    let errors = first_errors(&app, 1).await;
    assert!(
        errors[0].1.contains("localhost resolves only to loopback"),
        "{errors:?}"
    );
    assert_eq!(
        proxy.connections.load(Ordering::SeqCst),
        0,
        "the proxy saw nothing"
    );
}

/// Names whose only record is an address that is not global unicast, many of them carrying
/// an internal IPv4 address; and one public name.
const HOSTS: &str = "\
127.0.0.1 localhost
1.2.3.4 public.test
64:ff9b::7f00:1 nat64.test
64:ff9b:1::a00:1 nat64-local.test
::127.0.0.1 compatible.test
2002:7f00:1::1 sixtofour.test
2001:0:4136:e378:8000:63bf:3fff:fdd2 teredo.test
fec0::1 site-local.test
192.0.0.8 ietf.test
192.88.99.1 relay.test
198.18.0.1 benchmarking.test
240.0.0.1 reserved.test
";

/// The internal names of [`HOSTS`].
const INTERNAL_NAMES: &[&str] = &[
    "benchmarking",
    "compatible",
    "ietf",
    "nat64",
    "nat64-local",
    "relay",
    "reserved",
    "site-local",
    "sixtofour",
    "teredo",
];

#[tokio::test]
async fn a_name_whose_only_records_are_internal_in_any_form_is_refused_at_delivery() {
    let (app, token) = app().await;
    for name in INTERNAL_NAMES {
        let url = format!("https://{name}.test{EVENT_PATH_SUFFIX}");
        queued_to(&app, &token, name, &url).await;
    }
    let _serve = serve(&app, &[], &[], Some(HOSTS));

    let errors = first_errors(&app, INTERNAL_NAMES.len()).await;
    for (url, error) in &errors {
        assert!(
            error.contains("resolves only to loopback, private or otherwise internal"),
            "{url}: {error}"
        );
    }
}

#[tokio::test]
async fn through_an_explicit_delivery_proxy_internal_targets_are_still_refused() {
    let (app, token) = app().await;
    let proxy = Proxy::start().await;
    queued_to(
        &app,
        &token,
        "public",
        &format!("https://public.test{EVENT_PATH_SUFFIX}"),
    )
    .await;
    queued_to(
        &app,
        &token,
        "nat64",
        &format!("https://nat64.test{EVENT_PATH_SUFFIX}"),
    )
    .await;
    let _serve = serve(&app, &["--delivery-proxy", &proxy.url()], &[], Some(HOSTS));

    let errors = first_errors(&app, 2).await;
    let error_of = |host: &str| {
        errors
            .iter()
            .find(|(url, _)| url.contains(host))
            .map(|(_, e)| e.clone())
            .unwrap()
    };
    assert!(
        error_of("nat64.test").contains("nat64.test resolves only to loopback")
            && error_of("nat64.test").contains("--delivery-proxy"),
        "{errors:?}"
    );
    // The public name went to the proxy, which answered 502: the one request it saw.
    assert_eq!(proxy.requests(), ["CONNECT public.test:443 HTTP/1.1"]);
    assert!(!error_of("public.test").is_empty(), "{errors:?}");
}
