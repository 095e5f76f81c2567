//! End to end delivery: publish, claim, POST to real listeners, record, retry.

use std::time::Duration;

use buffa::Message as _;
use connectrpc::ErrorCode;
use webhookd::proto::buf::alpha::webhook::v1alpha1::EventRequest;
use webhookd::proto::webhookd::v1 as pb;
use webhookd::signing::{SigningSecret, verify};
use webhookd::synthetic::repository_push;

use crate::helpers::{TestApp, eventually, python, run, spawn_app_with, tempdir, wait_until};
use crate::receiver::{Receiver, Reply};

/// Flags for tests that drive the batcher themselves with `run_once`.
const MANUAL: &[&str] = &[
    "--allow-insecure-callbacks",
    "--no-dispatch",
    "--retry-schedule",
    "10ms,10ms,10ms",
];

pub async fn subscribe(
    app: &TestApp,
    token: &str,
    repository: &str,
    receiver: &Receiver,
) -> String {
    app.create(token, "acme", repository, &receiver.url()).await["webhookId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// An app started with `flags`, an `acme` token, a receiver, and a webhook of acme/petapis
/// delivering to it.
pub async fn subscribed(flags: &[&str]) -> (TestApp, String, Receiver, String) {
    let app = spawn_app_with(flags).await;
    let token = app.token(&["acme"]).await;
    let receiver = Receiver::start().await;
    let hook = subscribe(&app, &token, "petapis", &receiver).await;
    (app, token, receiver, hook)
}

pub async fn publish(
    app: &TestApp,
    token: &str,
    events: Vec<(EventRequest, &str)>,
) -> pb::PublishResponse {
    let request = pb::PublishRequest {
        events: events
            .into_iter()
            .map(|(event, key)| pb::PublishEvent {
                event: buffa::MessageField::some(event),
                idempotency_key: key.to_owned(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    app.publisher(token)
        .publish(request)
        .await
        .expect("publish")
        .into_owned()
}

async fn secret_of(app: &TestApp, token: &str, webhook: &str) -> SigningSecret {
    let secret = try_secret_of(app, token, webhook).await.unwrap();
    SigningSecret::parse(&secret).expect("a whsec_ secret")
}

/// GetSigningSecret's answer for `webhook`, as `token` asks.
async fn try_secret_of(
    app: &TestApp,
    token: &str,
    webhook: &str,
) -> Result<String, connectrpc::ConnectError> {
    let request = pb::GetSigningSecretRequest {
        webhook_id: webhook.to_owned(),
        ..Default::default()
    };
    let answer = app.subscriptions(token).get_signing_secret(request).await?;
    Ok(answer.into_owned().secret)
}

pub async fn delivery_log(app: &TestApp, token: &str, webhook: &str) -> Vec<pb::Delivery> {
    let request = pb::ListDeliveriesRequest {
        webhook_id: webhook.to_owned(),
        ..Default::default()
    };
    app.deliveries(token)
        .list_deliveries(request)
        .await
        .unwrap()
        .into_owned()
        .deliveries
}

pub async fn attempts(
    app: &TestApp,
    token: &str,
    delivery: &str,
) -> (pb::Delivery, Vec<pb::Attempt>) {
    let request = pb::GetDeliveryRequest {
        delivery_id: delivery.to_owned(),
        ..Default::default()
    };
    let got = app
        .deliveries(token)
        .get_delivery(request)
        .await
        .unwrap()
        .into_owned();
    (got.delivery.as_option().unwrap().clone(), got.attempts)
}

#[tokio::test]
async fn a_published_event_reaches_every_matching_subscription_signed_and_byte_exact() {
    let app = spawn_app_with(MANUAL).await;
    let token = app.token(&["acme"]).await;
    let (first, second, other) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let hook = subscribe(&app, &token, "petapis", &first).await;
    subscribe(&app, &token, "petapis", &second).await;
    subscribe(&app, &token, "other", &other).await;

    let event = repository_push("acme", "petapis", 1);
    let published = publish(&app, &token, vec![(event.clone(), "")]).await;
    assert_eq!(published.deliveries_queued, 2);
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 2);

    let got = first.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(
        (got.len(), second.captured().len(), other.captured().len()),
        (1, 1, 0)
    );
    let request = &got[0];
    assert_eq!(
        &request.body[..],
        &event.encode_to_vec()[..],
        "the stored EventRequest, byte for byte"
    );
    assert_eq!(request.header("content-type"), "application/proto");
    assert_eq!(request.header("connect-protocol-version"), "1");
    assert_eq!(request.header("connect-timeout-ms"), "10000");
    assert!(
        request.header("user-agent").starts_with("webhookd/"),
        "{}",
        request.header("user-agent")
    );
    let now = chrono::Utc::now().timestamp();
    let sent_at: i64 = request.header("webhook-timestamp").parse().unwrap();
    assert!((now - sent_at).abs() < 60);
    let secret = secret_of(&app, &token, &hook).await;
    assert!(secret.expose().starts_with("whsec_"));
    verify(
        std::slice::from_ref(&secret),
        &request.headers,
        &request.body,
        now,
    )
    .expect("signature verifies");

    let log = delivery_log(&app, &token, &hook).await;
    assert_eq!(log.len(), 1);
    assert_eq!(
        log[0].delivery_id,
        request.header("webhook-id"),
        "webhook-id is the delivery id"
    );
    assert_eq!(log[0].state.to_i32(), 2, "DELIVERED");
    assert_eq!(log[0].event_id, published.events[0].event_id);
    let (_, tries) = attempts(&app, &token, &log[0].delivery_id).await;
    assert_eq!((tries.len(), tries[0].http_status), (1, 200));
    assert_eq!(
        app.dispatcher().run_once().await.unwrap(),
        0,
        "nothing left to deliver"
    );
}

#[tokio::test]
async fn an_independent_hmac_implementation_verifies_the_signature() {
    let (app, token, receiver, hook) = subscribed(MANUAL).await;
    publish(
        &app,
        &token,
        vec![(repository_push("acme", "petapis", 7), "")],
    )
    .await;
    app.dispatcher().run_once().await.unwrap();
    let request = receiver.wait_for(1, Duration::from_secs(5)).await.remove(0);
    let secret = secret_of(&app, &token, &hook).await;
    let dir = tempdir("hmac");
    std::fs::write(dir.join("body.bin"), &request.body).unwrap();
    // Python's hmac/hashlib, following the Standard Webhooks spec (the reference packages
    // decode bodies as UTF-8 and so cannot check binary protobuf).
    let script = r#"
import base64, hashlib, hmac, sys
secret, msg_id, ts, header, path = sys.argv[1:6]
key = base64.b64decode(secret.removeprefix("whsec_"))
body = open(path, "rb").read()
expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
ok = any(hmac.compare_digest(expected, s.removeprefix("v1,")) for s in header.split(" ") if s.startswith("v1,"))
print("valid" if ok else "INVALID")
"#;
    let mut command = std::process::Command::new(python());
    command.args([
        "-c",
        script,
        secret.expose(),
        request.header("webhook-id"),
        request.header("webhook-timestamp"),
    ]);
    command
        .arg(request.header("webhook-signature"))
        .arg(dir.join("body.bin"));
    let (code, out, err) = run(command).await;
    assert_eq!((code, out.trim()), (0, "valid"), "{err}");
}

#[tokio::test]
async fn a_listener_failing_twice_gets_three_attempts_and_one_delivery() {
    let (app, token, receiver, hook) = subscribed(MANUAL).await;
    receiver.script([Reply::Status(503), Reply::Status(503)]);
    publish(
        &app,
        &token,
        vec![(repository_push("acme", "petapis", 1), "")],
    )
    .await;
    attempt_one_by_one(&app, 3).await;
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 0, "delivered");
    let got = receiver.captured();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter()
            .all(|r| r.header("webhook-id") == got[0].header("webhook-id")),
        "stable webhook-id"
    );
    let log = delivery_log(&app, &token, &hook).await;
    let (delivery, tries) = attempts(&app, &token, &log[0].delivery_id).await;
    assert_eq!((delivery.state.to_i32(), delivery.attempt_count), (2, 3));
    let statuses: Vec<i32> = tries.iter().map(|a| a.http_status).collect();
    assert_eq!(statuses, [503, 503, 200]);
    assert_eq!(
        tries[0].connect_code, "unavailable",
        "the listener's Connect error code is recorded"
    );
    assert!(
        String::from_utf8_lossy(&tries[0].response_body).contains("test receiver answered 503")
    );
}

/// Runs `n` claims of one delivery each, letting its 10 ms retry delay pass before each.
async fn attempt_one_by_one(app: &TestApp, n: usize) {
    let dispatcher = app.dispatcher();
    for i in 0..n {
        wait_until(
            &format!("claim {} of {n}", i + 1),
            Duration::from_secs(5),
            || async { dispatcher.run_once().await.unwrap() == 1 },
        )
        .await;
    }
}

#[tokio::test]
async fn retries_run_out_into_failed_and_redeliver_gives_the_whole_schedule_again() {
    let (app, token, receiver, hook) = subscribed(MANUAL).await;
    let failures = [
        Reply::Status(500),
        Reply::Status(429),
        Reply::Status(404),
        Reply::Status(302),
    ];
    receiver.script(failures.clone());
    publish(
        &app,
        &token,
        vec![(repository_push("acme", "petapis", 1), "")],
    )
    .await;
    attempt_one_by_one(&app, 4).await;
    assert_eq!(
        app.dispatcher().run_once().await.unwrap(),
        0,
        "schedule exhausted"
    );
    let delivery = delivery_log(&app, &token, &hook).await.remove(0);
    assert_eq!(
        (delivery.state.to_i32(), delivery.attempt_count),
        (3, 4),
        "FAILED after 1 + 3 retries"
    );
    app.assert_owner_counts_true().await;

    // Redelivered, it gets 1 + 3 attempts again, numbered on from 5, under the same id.
    let redeliver = || async {
        let request = pb::RedeliverRequest {
            delivery_id: delivery.delivery_id.clone(),
            ..Default::default()
        };
        app.deliveries(&token).redeliver(request).await
    };
    let again = redeliver().await.unwrap().into_owned();
    assert_eq!(
        again.delivery.as_option().unwrap().state.to_i32(),
        1,
        "PENDING"
    );
    app.assert_owner_counts_true().await;
    // Asked again while pending, it is not counted twice.
    redeliver().await.unwrap();
    app.assert_owner_counts_true().await;
    receiver.script(failures);
    attempt_one_by_one(&app, 4).await;
    let (failed, tries) = attempts(&app, &token, &delivery.delivery_id).await;
    assert_eq!((failed.state.to_i32(), tries.len()), (3, 8), "FAILED again");
    let numbers: Vec<i32> =
        sqlx::query_scalar("SELECT number FROM delivery_attempts ORDER BY number")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(numbers, (1..=8).collect::<Vec<_>>());
    let captured = receiver.captured();
    assert_eq!(captured.len(), 8);
    assert!(
        captured
            .iter()
            .all(|r| r.header("webhook-id") == delivery.delivery_id)
    );

    // Once more, and the listener takes it.
    redeliver().await.unwrap();
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 1);
    let (delivered, tries) = attempts(&app, &token, &delivery.delivery_id).await;
    assert_eq!((delivered.state.to_i32(), tries.len()), (2, 9));
    app.assert_owner_counts_true().await;

    // GetDelivery pages the attempts: 4, 4 and 1, numbered on.
    let (mut pages, mut page_token) = (vec![], String::new());
    loop {
        let request = pb::GetDeliveryRequest {
            delivery_id: delivery.delivery_id.clone(),
            page_size: 4,
            page_token: page_token.clone(),
            ..Default::default()
        };
        let page = app
            .deliveries(&token)
            .get_delivery(request)
            .await
            .unwrap()
            .into_owned();
        pages.push(page.attempts.iter().map(|a| a.number).collect::<Vec<_>>());
        page_token = page.next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    assert_eq!(pages, [vec![1, 2, 3, 4], vec![5, 6, 7, 8], vec![9]]);
}

#[tokio::test]
async fn redelivering_to_a_disabled_webhook_is_refused_and_changes_nothing() {
    let (app, token, receiver, hook) = subscribed(MANUAL).await;
    receiver.script([Reply::Status(410)]);
    publish(
        &app,
        &token,
        vec![(repository_push("acme", "petapis", 1), "")],
    )
    .await;
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 1);
    let delivery = delivery_log(&app, &token, &hook).await.remove(0);
    assert_eq!(
        delivery.state.to_i32(),
        3,
        "FAILED: the listener answered 410"
    );

    let request = pb::RedeliverRequest {
        delivery_id: delivery.delivery_id.clone(),
        ..Default::default()
    };
    let refused = app.deliveries(&token).redeliver(request).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::FailedPrecondition);
    assert!(
        refused
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("webhook is disabled")
            && refused
                .message
                .as_deref()
                .unwrap_or_default()
                .contains("410"),
        "{refused:?}"
    );
    let (unchanged, _) = attempts(&app, &token, &delivery.delivery_id).await;
    assert_eq!(unchanged, delivery, "nothing was queued");
}

#[tokio::test]
async fn a_listener_that_never_answers_times_out_and_is_retried() {
    let app = spawn_app_with(&[MANUAL, &["--delivery-timeout", "300ms"]].concat()).await;
    let token = app.token(&["acme"]).await;
    let receiver = Receiver::start().await;
    let hook = subscribe(&app, &token, "petapis", &receiver).await;
    receiver.script([Reply::Hang, Reply::Endless]);
    publish(
        &app,
        &token,
        vec![(repository_push("acme", "petapis", 1), "")],
    )
    .await;
    let dispatcher = app.dispatcher();
    let started = std::time::Instant::now();
    assert_eq!(dispatcher.run_once().await.unwrap(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the batch is not stuck"
    );
    attempt_one_by_one(&app, 1).await; // the retry, once due
    let delivery = delivery_log(&app, &token, &hook).await.remove(0);
    let (delivery, tries) = attempts(&app, &token, &delivery.delivery_id).await;
    assert!(tries[0].error.contains("timed out"), "{:?}", tries[0].error);
    assert_eq!(tries[0].http_status, 0);
    // An endless 200 body: delivered, and only 4 KiB of it kept.
    assert_eq!(
        (tries[1].http_status, tries[1].response_body.len()),
        (200, 4096)
    );
    assert_eq!(delivery.state.to_i32(), 2);
}

#[tokio::test]
async fn gone_disables_the_subscription() {
    let (app, token, receiver, hook) = subscribed(MANUAL).await;
    app.list_cached(&token, "acme", "petapis").await;
    let updated = |v: serde_json::Value| v["webhooks"][0]["updateTime"].clone();
    let before = updated(app.list(&token, "acme", "petapis", "").await);
    receiver.script([Reply::Status(410)]);
    publish(
        &app,
        &token,
        vec![(repository_push("acme", "petapis", 1), "")],
    )
    .await;
    app.dispatcher().run_once().await.unwrap();
    // Disabling moves update_time, and the (cached) ListWebhooks page follows.
    eventually("the list shows the new updateTime", || async {
        updated(app.list(&token, "acme", "petapis", "").await) != before
    })
    .await;
    let delivery = delivery_log(&app, &token, &hook).await.remove(0);
    assert_eq!(
        (delivery.state.to_i32(), delivery.last_http_status),
        (3, 410)
    );
    let (state, reason): (String, Option<String>) =
        sqlx::query_as("SELECT state, disabled_reason FROM webhooks")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(state, "disabled");
    assert!(reason.unwrap().contains("410"));
    let later = publish(
        &app,
        &token,
        vec![(repository_push("acme", "petapis", 2), "")],
    )
    .await;
    assert_eq!(
        later.deliveries_queued, 0,
        "no more deliveries to a disabled subscription"
    );
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 0);
    assert_eq!(receiver.captured().len(), 1);
}

#[tokio::test]
async fn a_rotation_during_the_overlap_ends_the_oldest_secret() {
    let (app, token, receiver, hook) = subscribed(MANUAL).await;
    let first = secret_of(&app, &token, &hook).await;
    let rotate = || async {
        let request = pb::RotateSigningSecretRequest {
            webhook_id: hook.clone(),
            ..Default::default()
        };
        let rotated = app
            .subscriptions(&token)
            .rotate_signing_secret(request)
            .await;
        SigningSecret::parse(&rotated.unwrap().into_owned().secret).unwrap()
    };
    let second = rotate().await;
    let third = rotate().await;
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_secrets WHERE expire_time IS NULL OR expire_time > now()",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(live, 2, "the current secret and the one it replaced");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_secrets")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 2, "the first is gone, not kept expired");

    publish(
        &app,
        &token,
        vec![(repository_push("acme", "petapis", 1), "")],
    )
    .await;
    app.dispatcher().run_once().await.unwrap();
    let request = receiver.wait_for(1, Duration::from_secs(5)).await.remove(0);
    assert_eq!(request.header("webhook-signature").split(' ').count(), 2);
    let now = chrono::Utc::now().timestamp();
    verify(&[third], &request.headers, &request.body, now).expect("the current secret signs");
    verify(&[second], &request.headers, &request.body, now).expect("so does the one before");
    assert!(verify(&[first], &request.headers, &request.body, now).is_err());
}

#[tokio::test]
async fn after_a_rotation_both_secrets_sign_during_the_overlap() {
    let (app, token, receiver, hook) = subscribed(MANUAL).await;
    let old = secret_of(&app, &token, &hook).await;
    let request = pb::RotateSigningSecretRequest {
        webhook_id: hook.clone(),
        ..Default::default()
    };
    let rotated = app
        .subscriptions(&token)
        .rotate_signing_secret(request)
        .await
        .unwrap()
        .into_owned();
    let new = SigningSecret::parse(&rotated.secret).unwrap();
    assert_ne!(old, new);
    assert_eq!(secret_of(&app, &token, &hook).await, new);
    let expire: chrono::DateTime<chrono::Utc> = rotated
        .previous_secret_expire_time
        .as_option()
        .unwrap()
        .clone()
        .try_into()
        .unwrap();
    let hours = (expire - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((23.9..=24.0).contains(&hours), "{hours}");

    publish(
        &app,
        &token,
        vec![(repository_push("acme", "petapis", 1), "")],
    )
    .await;
    app.dispatcher().run_once().await.unwrap();
    let request = receiver.wait_for(1, Duration::from_secs(5)).await.remove(0);
    assert_eq!(request.header("webhook-signature").split(' ').count(), 2);
    let now = chrono::Utc::now().timestamp();
    verify(&[old], &request.headers, &request.body, now).expect("old secret still valid");
    verify(&[new], &request.headers, &request.body, now).expect("new secret valid");
    // Another owner's token cannot read or rotate it.
    let stranger = app.token(&["globex"]).await;
    let err = try_secret_of(&app, &stranger, &hook).await.unwrap_err();
    assert_eq!(err.code, connectrpc::ErrorCode::NotFound);
}

#[tokio::test]
async fn an_idempotency_key_publishes_once() {
    let (app, token, receiver, _) = subscribed(MANUAL).await;
    let first = publish(
        &app,
        &token,
        vec![(repository_push("acme", "petapis", 1), "push-1")],
    )
    .await;
    let again = publish(
        &app,
        &token,
        vec![(repository_push("acme", "petapis", 1), "push-1")],
    )
    .await;
    assert_eq!(first.events[0].event_id, again.events[0].event_id);
    assert_eq!((first.deliveries_queued, again.deliveries_queued), (1, 0));
    assert!(!first.events[0].duplicate && again.events[0].duplicate);
    // Within one batch too: the second use of a key is the first event.
    let mixed = publish(
        &app,
        &token,
        vec![
            (repository_push("acme", "petapis", 2), "push-2"),
            (repository_push("acme", "petapis", 3), "push-2"),
            (repository_push("acme", "petapis", 4), ""),
            (repository_push("acme", "petapis", 5), "push-1"),
        ],
    )
    .await;
    let dup: Vec<bool> = mixed.events.iter().map(|e| e.duplicate).collect();
    assert_eq!(dup, [false, true, false, true]);
    assert_eq!(mixed.events[1].event_id, mixed.events[0].event_id);
    assert_eq!(mixed.events[3].event_id, first.events[0].event_id);
    assert_eq!(mixed.deliveries_queued, 2);
    // Keys are scoped by owner: another owner's "push-1" is a new event.
    let globex = app.token(&["globex"]).await;
    let other = publish(
        &app,
        &globex,
        vec![(repository_push("globex", "petapis", 6), "push-1")],
    )
    .await;
    assert!(!other.events[0].duplicate);
    assert_ne!(other.events[0].event_id, first.events[0].event_id);
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 3);
    assert_eq!(receiver.captured().len(), 3);
}

#[tokio::test]
async fn a_rolled_back_producer_transaction_delivers_nothing() {
    let (app, _, receiver, _) = subscribed(MANUAL).await;
    let event = webhookd::publish::OutboundEvent::from_request(
        &repository_push("acme", "petapis", 1),
        None,
    )
    .unwrap();
    let mut tx = app.pool.begin().await.unwrap();
    let stored = webhookd::publish::publish(&mut tx, std::slice::from_ref(&event))
        .await
        .unwrap();
    assert_eq!(stored[0].deliveries_queued, 1);
    tx.rollback().await.unwrap();
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 0);
    let (events, deliveries): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM deliveries)")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((events, deliveries), (0, 0));
    // The same call, committed, delivers.
    let mut tx = app.pool.begin().await.unwrap();
    webhookd::publish::publish(&mut tx, &[event]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 1);
    assert_eq!(receiver.wait_for(1, Duration::from_secs(5)).await.len(), 1);
}

/// Rows of `deliveries`, `delivery_attempts` and `webhook_secrets`, whatever webhook they
/// belong to.
async fn delivery_rows(app: &TestApp) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM deliveries), (SELECT count(*) FROM delivery_attempts),
                (SELECT count(*) FROM webhook_secrets)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn deleting_a_subscription_cancels_its_queued_deliveries() {
    let (app, token, receiver, hook) = subscribed(MANUAL).await;
    // One delivery attempted and logged, one still queued: both go with the webhook.
    publish(
        &app,
        &token,
        vec![(repository_push("acme", "petapis", 1), "")],
    )
    .await;
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 1);
    publish(
        &app,
        &token,
        vec![(repository_push("acme", "petapis", 2), "")],
    )
    .await;
    assert_eq!(delivery_rows(&app).await, (2, 1, 1));
    app.assert_owner_counts_true().await;
    assert_eq!(app.delete(&token, &hook).await, 200);
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 0);
    assert_eq!(receiver.captured().len(), 1);
    assert_eq!(delivery_rows(&app).await, (0, 0, 0));
    app.assert_owner_counts_true().await;
}

/// Deletes `hook` while `tx`, which wrote for it, is still open; commits `tx` 300 ms later
/// and asserts that the delete waited for that commit.
async fn delete_racing(
    app: &TestApp,
    token: &str,
    hook: &str,
    tx: sqlx::Transaction<'_, sqlx::Postgres>,
) {
    let delete = async {
        let body = serde_json::json!({"webhookId": hook}).to_string();
        let (status, _) = app.json("DeleteWebhook", Some(token), &body).await;
        (status, std::time::Instant::now())
    };
    let commit = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let at = std::time::Instant::now();
        tx.commit().await.unwrap();
        at
    };
    let ((status, deleted_at), committed_at) = tokio::join!(delete, commit);
    assert_eq!(status, 200);
    assert!(
        deleted_at > committed_at,
        "DeleteWebhook answered before the transaction it raced committed"
    );
}

#[tokio::test]
async fn a_delete_racing_a_publish_waits_for_it_and_leaves_nothing_queued() {
    let (app, token, _receiver, hook) = subscribed(MANUAL).await;
    let event = webhookd::publish::OutboundEvent::from_request(
        &repository_push("acme", "petapis", 1),
        None,
    )
    .unwrap();
    // A producer's transaction has queued a delivery for the webhook and not committed yet.
    let mut tx = app.pool.begin().await.unwrap();
    let stored = webhookd::publish::publish(&mut tx, &[event]).await.unwrap();
    assert_eq!(stored[0].deliveries_queued, 1);
    delete_racing(&app, &token, &hook, tx).await;
    assert_eq!(delivery_rows(&app).await, (0, 0, 0));
    app.assert_owner_counts_true().await;
}

#[tokio::test]
async fn a_delete_racing_a_rotation_leaves_no_secret_and_a_late_rotation_finds_nothing() {
    let (app, token, _receiver, hook) = subscribed(MANUAL).await;
    let id = webhookd::domain::WebhookId::parse(&hook).unwrap();
    let mut tx = app.pool.begin().await.unwrap();
    let rotated = webhookd::store::secrets::rotate(&mut tx, id, b"sealed", 60.0).await;
    assert!(rotated.unwrap().is_some());
    delete_racing(&app, &token, &hook, tx).await;
    assert_eq!(delivery_rows(&app).await, (0, 0, 0));
    let mut conn = app.pool.acquire().await.unwrap();
    let late = webhookd::store::secrets::rotate(&mut conn, id, b"sealed", 60.0).await;
    assert_eq!(late.unwrap(), None);
}

#[tokio::test]
async fn a_signing_secret_copied_into_another_webhooks_row_does_not_open() {
    let (app, token, receiver, first) = subscribed(MANUAL).await;
    let second = app
        .create(&token, "acme", "petapis", &receiver.subscriber_url(2))
        .await["webhookId"]
        .as_str()
        .unwrap()
        .to_owned();
    let known = secret_of(&app, &token, &first).await;
    // Someone who can write to the database, but has not the key, gives the second webhook
    // the first one's sealed secret, so as to learn it or sign with it.
    sqlx::query(
        "UPDATE webhook_secrets SET secret = (SELECT secret FROM webhook_secrets
         WHERE webhook_id = $1::uuid) WHERE webhook_id = $2::uuid",
    )
    .bind(&first)
    .bind(&second)
    .execute(&app.pool)
    .await
    .unwrap();
    let err = try_secret_of(&app, &token, &second)
        .await
        .expect_err("the moved secret opens only as the first webhook's");
    assert_eq!(err.code, connectrpc::ErrorCode::Internal);
    assert!(!err.message.unwrap_or_default().contains("whsec_"));
    // Nor does the batcher sign the second webhook's deliveries with it.
    publish(
        &app,
        &token,
        vec![(repository_push("acme", "petapis", 1), "")],
    )
    .await;
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 2);
    let arrived = receiver.captured();
    assert_eq!(
        arrived.len(),
        1,
        "only the first webhook's delivery was sent"
    );
    assert_eq!(
        secret_of(&app, &token, &first).await.expose(),
        known.expose()
    );
}
