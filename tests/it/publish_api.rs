//! PublishService input handling, and the `webhookd publish` / `webhookd listen` commands.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use buffa::MessageField;
use connectrpc::ErrorCode;
use webhookd::proto::webhookd::v1 as pb;
use webhookd::synthetic::repository_push;

use crate::delivery::publish;
use crate::helpers::{Spawned, run, spawn_app_with, wait_for_port};

fn batch(
    events: Vec<webhookd::proto::buf::alpha::webhook::v1alpha1::EventRequest>,
) -> pb::PublishRequest {
    pb::PublishRequest {
        events: events
            .into_iter()
            .map(|e| pb::PublishEvent {
                event: MessageField::some(e),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

async fn stored_events(app: &crate::helpers::TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_bad_event_rejects_the_whole_batch_naming_its_index() {
    let app = spawn_app_with(&["--allow-insecure-callbacks", "--no-dispatch"]).await;
    let token = app.token(&["acme"]).await;
    let client = app.publisher(&token);
    let mut unspecified = repository_push("acme", "petapis", 2);
    unspecified.event = buffa::EnumValue::from(0);
    let mut no_payload = repository_push("acme", "petapis", 3);
    no_payload.payload = MessageField::none();
    let mut bad_repo = repository_push("acme", "petapis", 4);
    bad_repo.payload.get_or_insert_default();
    let cases = [
        (unspecified, "events[1]: event: webhook_event is required"),
        (no_payload, "events[1]: payload.repository_push is required"),
        (
            repository_push("acme", "Not Valid", 5),
            "events[1]: payload.repository_push.repository.name may contain only",
        ),
        (
            repository_push("", "petapis", 6),
            "events[1]: payload.repository_push.repository.owner_name is required",
        ),
    ];
    for (bad, message) in cases {
        let err = client
            .publish(batch(vec![repository_push("acme", "petapis", 1), bad]))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArgument, "{message}");
        assert!(
            err.message
                .as_deref()
                .unwrap_or_default()
                .starts_with(message),
            "{:?} vs {message}",
            err.message
        );
    }
    let err = client
        .publish(batch(vec![repository_push("globex", "petapis", 1)]))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied);
    assert!(err.message.unwrap().starts_with("events[0]: "));
    let err = client.publish(batch(vec![])).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    let too_many = (0..1001)
        .map(|i| repository_push("acme", "petapis", i))
        .collect();
    let err = client.publish(batch(too_many)).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::ResourceExhausted);
    assert!(err.message.unwrap().contains("more than 1000 events"));
    let long_key = "k".repeat(256);
    let request = pb::PublishRequest {
        events: vec![pb::PublishEvent {
            event: MessageField::some(repository_push("acme", "petapis", 1)),
            idempotency_key: long_key,
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        client.publish(request).await.unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    let err = app
        .publisher("whd_nope")
        .publish(batch(vec![repository_push("acme", "petapis", 1)]))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthenticated);
    assert_eq!(
        stored_events(&app).await,
        0,
        "nothing of a rejected batch is stored"
    );
    // A repository nobody subscribed to: stored, nothing queued.
    let published = publish(
        &app,
        &token,
        vec![(repository_push("acme", "quiet", 1), "")],
    )
    .await;
    assert_eq!(
        (published.events.len(), published.deliveries_queued),
        (1, 0)
    );
    // The full-size batch is accepted.
    let thousand = (0..1000)
        .map(|i| (repository_push("acme", "petapis", i), ""))
        .collect();
    assert_eq!(publish(&app, &token, thousand).await.events.len(), 1000);
}

#[tokio::test]
async fn webhookd_publish_queues_synthetic_pushes_and_webhookd_listen_prints_verified_events() {
    let app = spawn_app_with(&["--allow-insecure-callbacks", "--no-dispatch"]).await;
    let token = app.token(&["acme"]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let callback = format!("http://127.0.0.1:{port}/buf.alpha.webhook.v1alpha1.EventService/Event");
    let hook = app.create(&token, "acme", "petapis", &callback).await["webhookId"]
        .as_str()
        .unwrap()
        .to_owned();
    let request = pb::GetSigningSecretRequest {
        webhook_id: hook,
        ..Default::default()
    };
    let secret = app
        .subscriptions(&token)
        .get_signing_secret(request)
        .await
        .unwrap()
        .into_owned()
        .secret;

    // The secret from a file: on the command line every local user could read it.
    let secret_file = crate::helpers::tempdir("listen-secret").join("secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let mut listen = Spawned::new(
        Command::new(env!("CARGO_BIN_EXE_webhookd"))
            .args(["listen", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--secret-file")
            .arg(&secret_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", listen.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(&secret));
    let publish = || {
        let mut publish = Command::new(env!("CARGO_BIN_EXE_webhookd"));
        publish.args([
            "publish",
            "--owner",
            "acme",
            "--repository",
            "petapis",
            "--count",
            "3",
        ]);
        publish
            .env("DATABASE_URL", app.database_url())
            .env("RUST_LOG", "warn");
        publish
    };
    let (code, out, err) = run(publish()).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3, "one event id per line: {out}");
    assert!(err.contains("3 deliveries queued"), "{err}");

    wait_for_port(port).await;
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 3);
    let mut lines = BufReader::new(listen.stdout.take().unwrap()).lines();
    let (line, lines) =
        tokio::task::spawn_blocking(move || (lines.next().unwrap().unwrap(), lines))
            .await
            .unwrap();
    let printed: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(printed["event"]["event"], "WEBHOOK_EVENT_REPOSITORY_PUSH");
    assert_eq!(
        printed["event"]["payload"]["repositoryPush"]["repository"]["name"],
        "petapis"
    );
    assert!(printed["webhookId"].as_str().is_some());
    let delivered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE state = 'delivered'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(delivered, 3, "the listener accepted every signed delivery");

    // A forged signature is refused with `unauthenticated`.
    let forged = app
        .http
        .post(&callback)
        .header("content-type", "application/proto")
        .header("webhook-id", "x")
        .header(
            "webhook-timestamp",
            chrono::Utc::now().timestamp().to_string(),
        )
        .header("webhook-signature", "v1,AAAA")
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let body: serde_json::Value = forged.json().await.unwrap();
    assert_eq!(body["code"], "unauthenticated");

    // With its stdout closed, the listener cannot print an event: it refuses the delivery
    // (503), so webhookd keeps it for a retry instead of losing it.
    drop(lines);
    let (code, _, err) = run(publish()).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 3);
    let refused: Vec<(String, Option<i32>)> =
        sqlx::query_as("SELECT state, last_http_status FROM deliveries WHERE state <> 'delivered'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        refused,
        vec![("pending".to_owned(), Some(503)); 3],
        "deliveries the listener could not print are kept for a retry"
    );
    listen.kill().unwrap();
    listen.wait().unwrap();
}

#[tokio::test]
async fn a_publish_at_max_queued_per_owner_is_refused_whole_and_spares_other_owners() {
    let app = spawn_app_with(&[
        "--allow-insecure-callbacks",
        "--no-dispatch",
        "--max-queued-per-owner",
        "5",
    ])
    .await;
    let (acme, globex) = (app.token(&["acme"]).await, app.token(&["globex"]).await);
    let receiver = crate::receiver::Receiver::start().await;
    let mut hooks = vec![];
    for n in 0..3 {
        let created = app
            .create(&acme, "acme", "petapis", &receiver.subscriber_url(n))
            .await;
        hooks.push(created["webhookId"].as_str().unwrap().to_owned());
    }
    app.create(&globex, "globex", "petapis", &receiver.url())
        .await;
    let one = |owner: &str, n| batch(vec![repository_push(owner, "petapis", n)]);
    // Below the limit a publish is taken whole, even one that takes the owner past it.
    app.publisher(&acme).publish(one("acme", 1)).await.unwrap();
    folded(&app, "acme", 3).await;
    app.publisher(&acme).publish(one("acme", 2)).await.unwrap();
    // The server folds the count every second; at 6 of 5, acme is refused.
    folded(&app, "acme", 6).await;
    let err = app
        .publisher(&acme)
        .publish(one("acme", 3))
        .await
        .unwrap_err();
    let message = err.message.unwrap_or_default();
    assert!(
        message.contains("acme has 6 deliveries queued, the most allowed is 5")
            && message.contains("--max-queued-per-owner"),
        "{message}"
    );
    assert_eq!(
        stored_events(&app).await,
        2,
        "a refused publish stored nothing"
    );
    // Another owner is not held back by acme's queue.
    app.publisher(&globex)
        .publish(one("globex", 1))
        .await
        .unwrap();

    // Deleting a webhook takes its queued deliveries off the count: 4 of 5.
    assert_eq!(app.delete(&acme, &hooks[0]).await, 200);
    folded(&app, "acme", 4).await;
    app.publisher(&acme).publish(one("acme", 4)).await.unwrap();
    app.assert_owner_counts_true().await;
}

/// Waits for the server's fold to bring `owner`'s queued count to `n`.
async fn folded(app: &crate::helpers::TestApp, owner: &str, n: i64) {
    let what = format!("{owner}'s queued count folded to {n}");
    crate::helpers::wait_until(&what, std::time::Duration::from_secs(10), || async {
        let mut conn = app.pool.acquire().await.unwrap();
        let counts = webhookd::store::owner_counts::get(&mut conn, owner).await;
        counts.unwrap().queued == n
    })
    .await;
}
