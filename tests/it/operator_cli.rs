//! The operator's commands against a running server: `webhookd subscriptions ...` and
//! `webhookd deliveries ...`, as tables and as JSON, and their errors.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, run, spawn_app_with};
use crate::receiver::{Receiver, Reply};
use crate::subscriptions::create;

/// `webhookd ARGS` against `app` with `token`; exit code, stdout, stderr.
async fn webhookd(app: &TestApp, token: &str, args: &[&str]) -> (i32, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_webhookd"));
    command
        .args(args)
        .env("WEBHOOKD_SERVER", app.url(""))
        .env("WEBHOOKD_TOKEN", token)
        .env("RUST_LOG", "warn");
    run(command).await
}

async fn ok(app: &TestApp, token: &str, args: &[&str]) -> String {
    let (code, stdout, stderr) = webhookd(app, token, args).await;
    assert_eq!(code, 0, "{args:?}: {stderr}");
    stdout
}

#[tokio::test]
async fn operators_list_inspect_pause_disable_recover_and_redeliver_from_the_command_line() {
    let app = spawn_app_with(&[
        "--allow-insecure-callbacks",
        "--no-dispatch",
        "--retry-schedule",
        "10ms",
    ])
    .await;
    let token = app.token(&["test-webhook"]).await;
    let receiver = Receiver::start().await;
    receiver.set_default(Reply::Status(503));
    let subscription = create(
        &app,
        &token,
        json!({"owner": "test-webhook", "family": "EVENT_FAMILY_REGISTRY", "format": "FORMAT_JSON",
               "url": format!("http://{}/hook", receiver.addr), "name": "audit"}),
    )
    .await["subscriptionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let event = json!({"registry": {"kind": "artifact.pushed", "owner": "test-webhook",
                                    "repository": "debian", "tags": ["v1"]}});
    let (status, _) = app
        .rpc(
            "webhookd.v1.PublishService/Publish",
            &token,
            json!({"events": [event.clone(), event]}),
        )
        .await;
    assert_eq!(status, 200);
    let dispatcher = app.dispatcher();
    for _ in 0..3 {
        dispatcher.run_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(receiver.captured().len(), 4, "two attempts each");

    let list = ok(
        &app,
        &token,
        &["subscriptions", "list", "--owner", "test-webhook"],
    )
    .await;
    let lines: Vec<&str> = list.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("LAST RESPONSE"),
        "{list}"
    );
    assert_eq!(lines.len(), 2, "{list}");
    for part in [
        subscription.as_str(),
        "audit",
        "active",
        "registry",
        "json",
        "503 failing",
    ] {
        assert!(lines[1].contains(part), "{part}: {list}");
    }
    let details = ok(&app, &token, &["subscriptions", "get", &subscription]).await;
    assert!(
        details.contains("last response   failing 503 Service Unavailable"),
        "{details}"
    );
    assert!(
        details.contains("last trigger    artifact.pushed at "),
        "{details}"
    );

    let deliveries = ok(
        &app,
        &token,
        &["deliveries", "list", &subscription, "--state", "failed"],
    )
    .await;
    let rows: Vec<&str> = deliveries.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{deliveries}");
    assert!(
        rows.iter()
            .all(|r| r.contains("failed") && r.contains("artifact.pushed"))
    );
    let listed: Value = serde_json::from_str(
        &ok(
            &app,
            &token,
            &["deliveries", "list", &subscription, "--json"],
        )
        .await,
    )
    .unwrap();
    let first = listed["deliveries"][0]["deliveryId"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = ok(&app, &token, &["deliveries", "get", &first]).await;
    for part in [
        "attempt 1 at",
        "HTTP 503",
        "webhook-signature: v1,",
        "\"type\"",
    ] {
        assert!(shown.contains(part), "{part}: {shown}");
    }

    // Pause and resume, disable and enable: each prints the subscription as it is now.
    let paused = ok(
        &app,
        &token,
        &[
            "subscriptions",
            "pause",
            &subscription,
            "--reason",
            "maintenance",
        ],
    )
    .await;
    assert!(
        paused.contains("state           paused (maintenance)"),
        "{paused}"
    );
    let recover = [
        "deliveries",
        "recover",
        &subscription,
        "--since",
        "2000-01-01T00:00:00Z",
    ];
    let (code, _, stderr) = webhookd(&app, &token, &recover).await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("error: failed_precondition: subscription"),
        "{stderr}"
    );
    assert!(
        ok(&app, &token, &["subscriptions", "resume", &subscription])
            .await
            .contains("state           active")
    );
    let disabled = ok(
        &app,
        &token,
        &[
            "subscriptions",
            "disable",
            &subscription,
            "--reason",
            "moved",
        ],
    )
    .await;
    assert!(
        disabled.contains("state           disabled (moved)"),
        "{disabled}"
    );
    assert!(
        ok(&app, &token, &["subscriptions", "enable", &subscription])
            .await
            .contains("state           active")
    );

    // Recover the failures, then redeliver one.
    receiver.set_default(Reply::Status(200));
    assert_eq!(
        ok(&app, &token, &recover).await,
        "2 failed deliveries queued again\n"
    );
    assert_eq!(
        ok(&app, &token, &["deliveries", "redeliver", &first]).await,
        format!("delivery {first} queued again\n")
    );

    // Errors: no token; another owner's token; a bad time.
    let (code, _, stderr) = webhookd(&app, "", &["subscriptions", "get", &subscription]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("a token is needed"), "{stderr}");
    let stranger = app.token(&["someone-else"]).await;
    let (code, _, stderr) =
        webhookd(&app, &stranger, &["subscriptions", "get", &subscription]).await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("error: not_found: no such subscription"),
        "{stderr}"
    );
    let (code, _, stderr) = webhookd(
        &app,
        &token,
        &[
            "deliveries",
            "recover",
            &subscription,
            "--since",
            "yesterday",
        ],
    )
    .await;
    assert_eq!(code, 2, "a usage error");
    assert!(stderr.contains("is not an RFC 3339 time"), "{stderr}");
}
