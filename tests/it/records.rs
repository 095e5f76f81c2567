//! The delivery log as GitHub users know it: each attempt's exact request (headers with
//! secrets masked, the body up to --record-request-bytes) and answer; ListDeliveries'
//! filters; RecoverDeliveries over a window.

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, spawn_app_with};
use crate::receiver::{Captured, Receiver, Reply};
use crate::subscriptions::{call, publish_registry, subscribe_json};

const DELIVERIES: &str = "webhookd.v1.DeliveryService";
/// Batches driven by hand; a failure is retried once, 10 ms later.
const MANUAL: &[&str] = &[
    "--allow-insecure-callbacks",
    "--no-dispatch",
    "--retry-schedule",
    "10ms",
];

async fn rpc(app: &TestApp, token: &str, method: &str, body: Value) -> (u16, Value) {
    app.rpc(&format!("{DELIVERIES}/{method}"), token, body)
        .await
}

/// Runs batches until no delivery is pending.
async fn drain(app: &TestApp) {
    let dispatcher = app.dispatcher();
    for _ in 0..200 {
        dispatcher.run_once().await.unwrap();
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE state = 'pending'")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        if pending == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    panic!("deliveries still pending");
}

async fn list(app: &TestApp, token: &str, request: Value) -> Vec<Value> {
    let (status, answer) = rpc(app, token, "ListDeliveries", request).await;
    assert_eq!(status, 200, "{answer}");
    answer["deliveries"].as_array().cloned().unwrap_or_default()
}

/// The first attempt of the only delivery of `subscription`.
async fn first_attempt(app: &TestApp, token: &str, subscription: &str) -> Value {
    let deliveries = list(app, token, json!({"webhookId": subscription})).await;
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    let (status, got) = rpc(
        app,
        token,
        "GetDelivery",
        json!({"deliveryId": deliveries[0]["deliveryId"]}),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    got["attempts"][0].clone()
}

/// An attempt's recorded headers, as (name, value) pairs in order.
fn headers(attempt: &Value, field: &str) -> Vec<(String, String)> {
    attempt[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_owned(),
                h["value"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn header<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn body(attempt: &Value) -> Vec<u8> {
    let text = attempt["requestBody"].as_str().unwrap_or("");
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[tokio::test]
async fn an_attempt_records_the_exact_request_sent_secrets_masked_and_the_answer() {
    let app = spawn_app_with(MANUAL).await;
    let token = app.token(&["test-webhook"]).await;
    let receiver = Receiver::start().await;
    receiver.set_default(Reply::StatusWithHeaders(
        200,
        vec![("x-answer", "yes"), ("content-type", "text/plain")],
    ));
    let subscription = subscribe_json(
        &app,
        &token,
        &receiver,
        json!({
            "authHeader": "Bearer hunter2",
            "headers": [{"name": "X-Api-Key", "value": "s3cret"}, {"name": "X-Team", "value": "ops"}],
        }),
    )
    .await;
    publish_registry(&app, &token, "test-webhook", &["artifact.pushed"]).await;
    drain(&app).await;
    let sent: Captured = receiver.captured().remove(0);
    let attempt = first_attempt(&app, &token, &subscription).await;

    // The body, byte for byte, and its size.
    assert_eq!(body(&attempt), sent.body);
    assert_eq!(
        attempt["requestBodySize"].as_str().unwrap(),
        sent.body.len().to_string()
    );
    // Every header sent is in the record with its value, but the secrets.
    let recorded = headers(&attempt, "requestHeaders");
    for name in [
        "content-type",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "user-agent",
    ] {
        assert_eq!(
            header(&recorded, name),
            Some(sent.header(name)),
            "{name}: {recorded:?}"
        );
    }
    assert_eq!(sent.header("authorization"), "Bearer hunter2");
    assert_eq!(sent.header("x-api-key"), "s3cret");
    assert_eq!(header(&recorded, "authorization"), Some("********"));
    assert_eq!(header(&recorded, "x-api-key"), Some("********"));
    // Every custom header is masked: they often carry credentials.
    assert_eq!(sent.header("x-team"), "ops");
    assert_eq!(header(&recorded, "x-team"), Some("********"));
    let text = attempt.to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("s3cret"),
        "{text}"
    );
    // The answer: status, headers, body.
    assert_eq!(attempt["httpStatus"], 200);
    let answer = headers(&attempt, "responseHeaders");
    assert_eq!(header(&answer, "x-answer"), Some("yes"));
    assert_eq!(header(&answer, "content-type"), Some("text/plain"));
}

#[tokio::test]
async fn a_bsr_request_is_recorded_from_its_event_and_bodies_are_cut_at_the_cap() {
    let app = spawn_app_with(&[MANUAL, &["--record-request-bytes", "16"]].concat()).await;
    let token = app.token(&["acme", "test-webhook"]).await;
    let receiver = Receiver::start().await;
    // The BSR's path: the request body is the stored EventRequest, read from the event.
    let webhook = app.create(&token, "acme", "petapis", &receiver.url()).await["webhookId"]
        .as_str()
        .unwrap()
        .to_owned();
    crate::delivery::publish(
        &app,
        &token,
        vec![(
            webhookd::synthetic::repository_push("acme", "petapis", 1),
            "",
        )],
    )
    .await;
    let json_receiver = Receiver::start().await;
    let subscription = subscribe_json(&app, &token, &json_receiver, json!({})).await;
    publish_registry(&app, &token, "test-webhook", &["artifact.pushed"]).await;
    drain(&app).await;

    let proto = receiver.captured().remove(0);
    let attempt = first_attempt(&app, &token, &webhook).await;
    assert_eq!(body(&attempt), proto.body[..proto.body.len().min(16)]);
    assert_eq!(
        attempt["requestBodySize"].as_str().unwrap(),
        proto.body.len().to_string()
    );
    let stored: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT request_body FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = $1::uuid")
            .bind(&webhook)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, None, "no second copy of the payload");
    let recorded = headers(&attempt, "requestHeaders");
    assert_eq!(header(&recorded, "content-type"), Some("application/proto"));

    let json_sent = json_receiver.captured().remove(0);
    assert!(json_sent.body.len() > 16);
    let attempt = first_attempt(&app, &token, &subscription).await;
    assert_eq!(body(&attempt), json_sent.body[..16]);
    assert_eq!(
        attempt["requestBodySize"].as_str().unwrap(),
        json_sent.body.len().to_string()
    );
}

#[tokio::test]
async fn list_deliveries_filters_by_state_event_type_and_time() {
    let app = spawn_app_with(MANUAL).await;
    let token = app.token(&["test-webhook"]).await;
    let receiver = Receiver::start().await;
    let subscription = subscribe_json(&app, &token, &receiver, json!({})).await;
    publish_registry(&app, &token, "test-webhook", &["artifact.pushed"]).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    publish_registry(
        &app,
        &token,
        "test-webhook",
        &["artifact.deleted", "artifact.pushed"],
    )
    .await;
    let types = |deliveries: Vec<Value>| -> Vec<String> {
        deliveries
            .iter()
            .map(|d| d["eventType"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = list(&app, &token, json!({"webhookId": subscription})).await;
    assert_eq!(all.len(), 3);
    let pushed = list(
        &app,
        &token,
        json!({"webhookId": subscription, "eventType": "artifact.pushed"}),
    )
    .await;
    assert_eq!(types(pushed), ["artifact.pushed", "artifact.pushed"]);
    let later = list(
        &app,
        &token,
        json!({"webhookId": subscription, "since": time(between)}),
    )
    .await;
    assert_eq!(later.len(), 2);
    let earlier = list(
        &app,
        &token,
        json!({"webhookId": subscription, "until": time(between)}),
    )
    .await;
    assert_eq!(types(earlier), ["artifact.pushed"]);
    let both = json!({"webhookId": subscription, "since": time(between),
                      "eventType": "artifact.pushed", "state": "DELIVERY_STATE_PENDING"});
    assert_eq!(list(&app, &token, both).await.len(), 1);
    let delivered = json!({"webhookId": subscription, "state": "DELIVERY_STATE_DELIVERED"});
    assert!(list(&app, &token, delivered.clone()).await.is_empty());
    drain(&app).await;
    assert_eq!(list(&app, &token, delivered).await.len(), 3);

    let (status, error) = rpc(
        &app,
        &token,
        "ListDeliveries",
        json!({"webhookId": subscription, "since": time(between),
               "until": time(between - chrono::TimeDelta::seconds(1))}),
    )
    .await;
    assert_error(status, &error, 400, "invalid_argument", "is after until");
}

#[tokio::test]
async fn recover_queues_the_failures_in_its_window_once_oldest_first() {
    let app = spawn_app_with(MANUAL).await;
    let token = app.token(&["test-webhook"]).await;
    let receiver = Receiver::start().await;
    receiver.set_default(Reply::Status(503));
    let subscription = subscribe_json(&app, &token, &receiver, json!({})).await;
    let pause = || tokio::time::sleep(Duration::from_millis(20));
    publish_registry(&app, &token, "test-webhook", &["artifact.pushed"]).await;
    pause().await;
    let since = Utc::now();
    pause().await;
    publish_registry(&app, &token, "test-webhook", &["tag.created"]).await;
    pause().await;
    publish_registry(&app, &token, "test-webhook", &["artifact.deleted"]).await;
    pause().await;
    let until = Utc::now();
    pause().await;
    publish_registry(&app, &token, "test-webhook", &["artifact.pulled"]).await;
    drain(&app).await;
    let failed = json!({"webhookId": subscription, "state": "DELIVERY_STATE_FAILED"});
    assert_eq!(list(&app, &token, failed.clone()).await.len(), 4);
    let sent_before = receiver.captured().len();
    assert_eq!(sent_before, 8, "two attempts each");

    let recover =
        json!({"subscriptionId": subscription, "since": time(since), "until": time(until)});
    let (status, answer) = rpc(&app, &token, "RecoverDeliveries", recover.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["queued"], "2");
    app.assert_owner_counts_true().await;
    // Asked again before they are attempted: nothing is queued twice.
    let (status, again) = rpc(&app, &token, "RecoverDeliveries", recover.clone()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["queued"].as_str().unwrap_or("0"), "0");
    app.assert_owner_counts_true().await;

    receiver.set_default(Reply::Status(200));
    drain(&app).await;
    let captured = receiver.captured();
    let types: Vec<String> = captured[sent_before..]
        .iter()
        .map(|c| {
            serde_json::from_slice::<Value>(&c.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(types.len(), 2, "{types:?}");
    assert!(
        types[0].contains("tag") && types[1].contains("deleted"),
        "oldest first: {types:?}"
    );
    let remaining = list(&app, &token, failed).await;
    let mut outside: Vec<String> = remaining
        .iter()
        .map(|d| d["eventType"].as_str().unwrap().to_owned())
        .collect();
    outside.sort();
    assert_eq!(outside, ["artifact.pulled", "artifact.pushed"]);

    // Another owner's token sees no such subscription; a bad window changes nothing.
    let stranger = app.token(&["someone-else"]).await;
    let (status, error) = rpc(&app, &stranger, "RecoverDeliveries", recover.clone()).await;
    assert_error(status, &error, 404, "not_found", "no such subscription");
    let backwards =
        json!({"subscriptionId": subscription, "since": time(until), "until": time(since)});
    let (status, error) = rpc(&app, &token, "RecoverDeliveries", backwards).await;
    assert_error(status, &error, 400, "invalid_argument", "is after until");
    let (status, error) = rpc(
        &app,
        &token,
        "RecoverDeliveries",
        json!({"subscriptionId": subscription}),
    )
    .await;
    assert_error(status, &error, 400, "invalid_argument", "since is required");
    // A paused subscription is not recovered into.
    let (status, _) = call(
        &app,
        &token,
        "PauseSubscription",
        json!({"subscriptionId": subscription}),
    )
    .await;
    assert_eq!(status, 200);
    let everything =
        json!({"subscriptionId": subscription, "since": time(since - chrono::TimeDelta::hours(1))});
    let (status, error) = rpc(&app, &token, "RecoverDeliveries", everything).await;
    assert_error(status, &error, 400, "failed_precondition", "is paused");
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE state = 'pending'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(pending, 0);
}

#[tokio::test]
async fn a_subscription_shows_its_last_trigger_per_event_type_and_its_last_response() {
    let app = spawn_app_with(MANUAL).await;
    let token = app.token(&["test-webhook"]).await;
    let receiver = Receiver::start().await;
    let subscription = subscribe_json(&app, &token, &receiver, json!({})).await;
    let get = || async {
        let (status, got) = call(
            &app,
            &token,
            "GetSubscription",
            json!({"subscriptionId": subscription}),
        )
        .await;
        assert_eq!(status, 200, "{got}");
        got["subscription"].clone()
    };
    let fresh = get().await;
    assert_eq!(fresh["lastResponse"], json!({"status": "unused"}));
    assert!(fresh.get("lastTriggers").is_none(), "{fresh}");

    publish_registry(&app, &token, "test-webhook", &["artifact.pushed"]).await;
    let pushed_at = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    publish_registry(&app, &token, "test-webhook", &["tag.created"]).await;
    drain(&app).await;
    let seen = get().await;
    let triggers = seen["lastTriggers"].as_array().unwrap();
    let types: Vec<&str> = triggers
        .iter()
        .map(|t| t["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["tag.created", "artifact.pushed"], "newest first");
    let pushed: DateTime<Utc> = triggers[1]["lastTriggerTime"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(pushed <= pushed_at, "{pushed} is the event's publish time");
    assert_eq!(seen["lastResponse"]["code"], 200);
    assert_eq!(seen["lastResponse"]["status"], "active");
    assert_eq!(seen["lastResponse"]["message"], "OK");

    // A failing answer is the last response once it is the newest.
    receiver.set_default(Reply::Status(503));
    publish_registry(&app, &token, "test-webhook", &["artifact.pushed"]).await;
    drain(&app).await;
    let (status, listed) = call(
        &app,
        &token,
        "ListSubscriptions",
        json!({"owner": "test-webhook"}),
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    let last = &listed["subscriptions"][0]["lastResponse"];
    assert_eq!(
        (&last["code"], &last["status"], &last["message"]),
        (
            &json!(503),
            &json!("failing"),
            &json!("Service Unavailable")
        )
    );
}
