//! The buf CLI, unchanged, against webhookd: `buf beta registry webhook` and `buf curl`.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{SERVICE, TestApp, buf, run, spawn_app, tempdir};

/// `buf` with a config that allows plain HTTP (wire contract, section 4.3) and a private cache.
fn buf_command(home: &Path, token: &str) -> Command {
    std::fs::write(
        home.join("config.yaml"),
        "version: v1\ntls:\n  use: false\n",
    )
    .unwrap();
    let mut command = Command::new(buf());
    command
        .env("BUF_CONFIG_DIR", home)
        .env("BUF_CACHE_DIR", home.join("cache"))
        .env("HOME", home)
        .env("BUF_TOKEN", token)
        .env("BUF_BETA_SUPPRESS_WARNINGS", "1")
        .env_remove("NETRC");
    command
}

fn webhook_command(app: &TestApp, home: &Path, token: &str, args: &[&str]) -> Command {
    let mut command = buf_command(home, token);
    command
        .args(["beta", "registry", "webhook"])
        .args(args)
        .arg("--remote")
        .arg(app.addr.to_string());
    command
}

#[tokio::test]
async fn buf_beta_registry_webhook_creates_lists_and_deletes() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    let home = tempdir("buf-cli");
    let callback = app.callback("buf");

    let create = webhook_command(
        &app,
        &home,
        &token,
        &[
            "create",
            "--owner",
            "acme",
            "--repository",
            "petapis",
            "--callback-url",
            &callback,
            "--event",
            "WEBHOOK_EVENT_REPOSITORY_PUSH",
        ],
    );
    let (code, out, err) = run(create).await;
    assert_eq!(code, 0, "{out}{err}");
    let created: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let webhook = &created["webhook"];
    assert_eq!(webhook["event"], "WEBHOOK_EVENT_REPOSITORY_PUSH");
    assert_eq!(
        (
            webhook["ownerName"].as_str(),
            webhook["callbackUrl"].as_str()
        ),
        (Some("acme"), Some(callback.as_str()))
    );
    let id = webhook["webhookId"].as_str().unwrap().to_owned();

    let list = webhook_command(
        &app,
        &home,
        &token,
        &["list", "--owner", "acme", "--repository", "petapis"],
    );
    let (code, out, err) = run(list).await;
    assert_eq!(code, 0, "{out}{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["webhooks"], json!([webhook]));

    let (code, out, err) = run(webhook_command(
        &app,
        &home,
        &token,
        &["delete", "--id", &id],
    ))
    .await;
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    let list = webhook_command(
        &app,
        &home,
        &token,
        &["list", "--owner", "acme", "--repository", "petapis"],
    );
    assert_eq!(run(list).await.1, "[]");

    // Errors come back as the CLI prints Connect errors.
    let (code, _, err) = run(webhook_command(
        &app,
        &home,
        &token,
        &["delete", "--id", &id],
    ))
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("Failure: not_found: no such webhook"), "{err}");
    let list = webhook_command(
        &app,
        &home,
        "whd_wrong",
        &["list", "--owner", "acme", "--repository", "petapis"],
    );
    let (code, _, err) = run(list).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("BUF_TOKEN environment variable is not valid"),
        "{err}"
    );
}

#[tokio::test]
async fn buf_curl_calls_the_api_over_connect_grpc_and_grpc_web() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    let home = tempdir("buf-curl");
    let created = app
        .create(&token, "acme", "petapis", &app.callback("curl"))
        .await;
    let schema = format!("{}/proto", env!("CARGO_MANIFEST_DIR"));
    let url = app.url(&format!("/{SERVICE}/ListWebhooks"));
    let auth = format!("Authorization: Bearer {token}");
    for protocol in ["connect", "grpc", "grpcweb"] {
        let mut curl = buf_command(&home, "");
        curl.args([
            "curl",
            "--schema",
            &schema,
            "--protocol",
            protocol,
            "-H",
            &auth,
        ])
        .args([
            "--data",
            r#"{"owner_name":"acme","repositoryName":"petapis"}"#,
        ]);
        if protocol == "grpc" {
            curl.arg("--http2-prior-knowledge");
        }
        curl.arg(&url);
        let (code, out, err) = run(curl).await;
        assert_eq!(code, 0, "{protocol}: {out}{err}");
        let listed: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(listed["webhooks"], json!([created]), "{protocol}");
    }
    // Without a schema, through gRPC server reflection; exit code = Connect code x 8.
    let mut curl = buf_command(&home, "");
    curl.args(["curl", "--http2-prior-knowledge", "-H", &auth])
        .args([
            "--data",
            r#"{"webhookId":"00000000-0000-0000-0000-000000000000"}"#,
        ])
        .arg(app.url(&format!("/{SERVICE}/DeleteWebhook")));
    let (code, out, err) = run(curl).await;
    assert_eq!(code, 5 * 8, "not_found: {out}{err}");
    assert!(err.contains("not_found"), "{err}");
    let mut curl = buf_command(&home, "");
    curl.args(["curl", "--http2-prior-knowledge", "--list-methods"])
        .arg(app.url(""));
    let (code, out, err) = run(curl).await;
    assert_eq!(code, 0, "{out}{err}");
    for method in ["CreateWebhook", "DeleteWebhook", "ListWebhooks"] {
        assert!(out.contains(&format!("{SERVICE}/{method}")), "{out}");
    }
    let mut curl = buf_command(&home, "");
    curl.args(["curl", "--http2-prior-knowledge", "--list-services"])
        .arg(app.url(""));
    let (code, out, err) = run(curl).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("buf.alpha.registry.v1alpha1.WebhookService"),
        "{out}"
    );
    assert!(
        !out.contains("EventService"),
        "only served services are advertised: {out}"
    );
}
