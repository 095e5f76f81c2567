//! The `webhookd` binary as a newcomer uses it: the embedded PostgreSQL default, tokens made
//! beside a running server, and a clean SIGTERM shutdown.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{EVENT_PATH, Spawned, free_port, http_client, run, tempdir};

fn webhookd(data_dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_webhookd"));
    command
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn");
    command
}

fn server_running(data_dir: &Path) -> bool {
    data_dir.join("pg/postmaster.pid").exists()
}

async fn create_token(data_dir: &Path, owner: &str) -> String {
    let (code, out, err) = run(webhookd(data_dir, &["token", "create", "--owner", owner])).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().count(),
        1,
        "stdout holds the token and nothing else: {out:?}"
    );
    let token = out.trim_end().to_owned();
    assert!(token.starts_with("whd_") && token.len() == 47, "{token}");
    token
}

#[tokio::test]
async fn the_embedded_default_runs_the_whole_quick_start() {
    let data_dir = tempdir("embedded");
    // First use creates the cluster; a one-shot command stops the server it started.
    let first = create_token(&data_dir, "acme").await;
    assert!(data_dir.join("pg/PG_VERSION").exists());
    assert!(
        !server_running(&data_dir),
        "token create stops the server it started"
    );

    let port = free_port();
    let mut serve = Spawned::new(
        webhookd(
            &data_dir,
            &[
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--allow-insecure-callbacks",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped()),
    );
    let http = http_client();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "serve did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A second command shares the running server and leaves it running.
    let second = create_token(&data_dir, "acme").await;
    assert!(server_running(&data_dir));
    for (i, token) in [&first, &second].into_iter().enumerate() {
        let response = http
            .post(format!(
                "{base}/buf.alpha.registry.v1alpha1.WebhookService/CreateWebhook"
            ))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(
                json!({"webhook_event": "WEBHOOK_EVENT_REPOSITORY_PUSH", "owner_name": "acme",
                         "repository_name": format!("repo{i}"),
                         "callback_url": format!("http://127.0.0.1:9{EVENT_PATH}")})
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }

    let (code, listed, _) = run(webhookd(&data_dir, &["token", "list"])).await;
    assert_eq!(code, 0);
    assert_eq!(
        listed.lines().filter(|l| l.contains("active")).count(),
        2,
        "{listed}"
    );
    let id = listed
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let (code, _, err) = run(webhookd(&data_dir, &["token", "revoke", &id])).await;
    assert_eq!(code, 0, "{err}");
    let (_, listed, _) = run(webhookd(&data_dir, &["token", "list"])).await;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("revoked")),
        "{listed}"
    );

    // SIGTERM: serve exits 0 and, as the last user, stops the embedded PostgreSQL.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serve.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || serve.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        !server_running(&data_dir),
        "the embedded server was stopped"
    );
}

#[tokio::test]
async fn without_postgresql_binaries_the_message_says_what_to_do() {
    let data_dir = tempdir("no-binaries");
    let mut migrate = webhookd(&data_dir, &["migrate"]);
    migrate.env("WEBHOOKD_POSTGRES_BIN_DIR", data_dir.join("nowhere"));
    let (code, _, err) = run(migrate).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("install PostgreSQL") && err.contains("DATABASE_URL"),
        "{err}"
    );
}

#[tokio::test]
async fn token_create_requires_an_owner_or_all_owners() {
    let data_dir = tempdir("token-args");
    let (code, out, err) = run(webhookd(&data_dir, &["token", "create"])).await;
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(err.contains("--owner"), "{err}");
    let (code, _, err) = run(webhookd(
        &data_dir,
        &["token", "create", "--owner", "Not Valid"],
    ))
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("owner_name may contain only"), "{err}");
}

#[tokio::test]
async fn serve_reads_its_key_from_a_file_kept_off_the_command_line_and_refuses_a_loose_one() {
    let app = crate::helpers::spawn_app_with(&["--no-dispatch"]).await;
    let token = app.token(&["acme"]).await;
    let hook = app
        .create(&token, "acme", "petapis", &app.callback("key"))
        .await;
    let key_file = app.secret_key_file();
    let (serve, port) =
        crate::helpers::serve_command(&app, &app.database_url(), &["--no-dispatch"]);
    crate::helpers::wait_for_port(port).await;
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", serve.id())).unwrap();
    let key = app.args.secret_key.clone().unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(&key),
        "the key is not on the command line"
    );
    // The key read from the file opens the secret the in-process server sealed.
    let answer: serde_json::Value = http_client()
        .post(format!(
            "http://127.0.0.1:{port}/webhookd.v1.SubscriptionService/GetSigningSecret"
        ))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(json!({"webhookId": hook["webhookId"]}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        answer["secret"].as_str().unwrap().starts_with("whsec_"),
        "{answer}"
    );
    drop(serve);

    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut loose = Command::new(env!("CARGO_BIN_EXE_webhookd"));
    loose
        .args([
            "serve",
            "--no-dispatch",
            "--listen",
            "127.0.0.1:0",
            "--secret-key-file",
        ])
        .arg(&key_file)
        .env("DATABASE_URL", app.database_url());
    let (code, _, err) = run(loose).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("open to other users") && err.contains("chmod 600"),
        "{err}"
    );
}
