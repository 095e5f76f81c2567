//! Auto-disable with a shortened window: a dead endpoint is announced as failing, then
//! disabled with its reason, each announced once to the owner's subscriptions of the
//! webhookd family (JSON and Slack); a flaky one that recovers is left alone; one call
//! enables it again and its run of failures starts over; a 410 Gone is announced too.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with, wait_until};
use crate::receiver::{Captured, Receiver, Reply};
use crate::subscriptions::{call, publish_registry, subscribe_json};

const OPERATIONAL: &str = "EVENT_FAMILY_WEBHOOKD";

async fn get(app: &TestApp, token: &str, id: &str) -> Value {
    let (status, answer) = call(app, token, "GetSubscription", json!({"subscriptionId": id})).await;
    assert_eq!(status, 200, "{answer}");
    answer["subscription"].clone()
}

fn body(captured: &Captured) -> Value {
    serde_json::from_slice(&captured.body).unwrap()
}

#[tokio::test]
async fn a_dead_endpoint_is_announced_failing_then_disabled_once_and_one_call_enables_it() {
    let app = spawn_app_with(&[
        "--allow-insecure-callbacks",
        "--poll-interval",
        "100ms",
        "--wake-on-publish",
        "--retry-schedule",
        "10ms,10ms,10ms",
        "--auto-disable-after",
        "2s",
        "--auto-disable-min-failures",
        "6",
    ])
    .await;
    let token = app.token(&["test-webhook"]).await;
    let (dead, flaky, ops, slack) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    dead.set_default(Reply::Status(503));
    flaky.script([Reply::Status(503), Reply::Status(503), Reply::Status(503)]);
    let dead_id = subscribe_json(&app, &token, &dead, json!({"name": "dead"})).await;
    let flaky_id = subscribe_json(&app, &token, &flaky, json!({"name": "flaky"})).await;
    subscribe_json(
        &app,
        &token,
        &ops,
        json!({"family": OPERATIONAL, "eventTypes": [
            "webhookd.subscription.failing", "webhookd.subscription.disabled"]}),
    )
    .await;
    subscribe_json(
        &app,
        &token,
        &slack,
        json!({"family": OPERATIONAL, "format": "FORMAT_SLACK"}),
    )
    .await;

    // One event: four failed attempts (the first and three retries) start a failing run.
    publish_registry(&app, &token, "test-webhook", &["artifact.pushed"]).await;
    let announced = ops.wait_for(1, Duration::from_secs(15)).await;
    let failing = body(&announced[0]);
    assert_eq!(
        failing["type"], "webhookd.subscription.failing",
        "{failing}"
    );
    let data = &failing["data"];
    assert_eq!(data["subscription"]["id"], dead_id.as_str());
    assert_eq!(data["subscription"]["name"], "dead");
    assert_eq!(data["subscription"]["owner"], "test-webhook");
    assert_eq!(data["failing"]["failures"], 4, "{data}");
    assert_eq!(data["last_response"]["code"], 503);
    assert_eq!(data["last_response"]["message"], "Service Unavailable");
    let subscription = get(&app, &token, &dead_id).await;
    assert_eq!(subscription["state"], "SUBSCRIPTION_STATE_ACTIVE");
    assert_eq!(subscription["failing"]["failures"], "4", "{subscription}");
    assert_eq!(subscription["failing"]["since"], data["failing"]["since"]);
    // The flaky one failed three times, then answered: no run is left.
    let flaky_now = get(&app, &token, &flaky_id).await;
    assert!(flaky_now.get("failing").is_none(), "{flaky_now}");

    // A second event: eight failures, and once the run is 2 s old, disabled.
    publish_registry(&app, &token, "test-webhook", &["artifact.pushed"]).await;
    wait_until(
        "the dead endpoint disabled",
        Duration::from_secs(15),
        || async { get(&app, &token, &dead_id).await["state"] == "SUBSCRIPTION_STATE_DISABLED" },
    )
    .await;
    let subscription = get(&app, &token, &dead_id).await;
    let reason = subscription["stateReason"].as_str().unwrap().to_owned();
    assert!(
        reason.starts_with("every attempt failed for more than 2s (8 failures since "),
        "{reason}"
    );
    let announced = ops.wait_for(2, Duration::from_secs(10)).await;
    let disabled = body(&announced[1]);
    assert_eq!(disabled["type"], "webhookd.subscription.disabled");
    assert_eq!(disabled["data"]["subscription"]["id"], dead_id.as_str());
    assert_eq!(disabled["data"]["reason"], reason.as_str());
    assert_eq!(disabled["data"]["failing"]["failures"], 8);
    assert!(disabled["data"]["disabled_time"].is_string());
    let chat = slack.wait_for(2, Duration::from_secs(10)).await;
    let text = body(&chat[1])["text"].as_str().unwrap().to_owned();
    assert!(
        text.starts_with(&format!(
            "webhookd: subscription dead of test-webhook was disabled: {reason}"
        )),
        "{text}"
    );
    assert!(
        text.contains("Last response: 503 Service Unavailable"),
        "{text}"
    );
    // Announced once, however many sweeps ran since; the flaky one stays active.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ops.captured().len(), 2);
    let flaky_now = get(&app, &token, &flaky_id).await;
    assert_eq!(flaky_now["state"], "SUBSCRIPTION_STATE_ACTIVE");

    // One call enables it; its run of failures starts over.
    let (status, answer) = call(
        &app,
        &token,
        "UpdateSubscription",
        json!({"subscription": {"subscriptionId": dead_id, "state": "SUBSCRIPTION_STATE_ACTIVE"},
               "updateMask": "state"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let subscription = get(&app, &token, &dead_id).await;
    assert_eq!(subscription["state"], "SUBSCRIPTION_STATE_ACTIVE");
    assert!(subscription.get("failing").is_none(), "{subscription}");
    publish_registry(&app, &token, "test-webhook", &["artifact.pushed"]).await;
    let announced = ops.wait_for(3, Duration::from_secs(15)).await;
    let again = body(&announced[2]);
    assert_eq!(again["type"], "webhookd.subscription.failing");
    assert_eq!(again["data"]["failing"]["failures"], 4);
}

#[tokio::test]
async fn a_listener_that_answers_410_gone_is_disabled_and_announced() {
    let app = spawn_app_with(&[
        "--allow-insecure-callbacks",
        "--poll-interval",
        "100ms",
        "--wake-on-publish",
    ])
    .await;
    let token = app.token(&["test-webhook"]).await;
    let (gone, ops) = (Receiver::start().await, Receiver::start().await);
    gone.set_default(Reply::Status(410));
    let gone_id = subscribe_json(&app, &token, &gone, json!({})).await;
    subscribe_json(&app, &token, &ops, json!({"family": OPERATIONAL})).await;
    publish_registry(&app, &token, "test-webhook", &["artifact.pushed"]).await;
    let announced = ops.wait_for(1, Duration::from_secs(15)).await;
    let disabled = body(&announced[0]);
    assert_eq!(disabled["type"], "webhookd.subscription.disabled");
    assert_eq!(disabled["data"]["subscription"]["id"], gone_id.as_str());
    assert_eq!(disabled["data"]["reason"], "the listener answered 410 Gone");
    let subscription = get(&app, &token, &gone_id).await;
    assert_eq!(subscription["state"], "SUBSCRIPTION_STATE_DISABLED");
    assert_eq!(
        subscription["stateReason"],
        "the listener answered 410 Gone"
    );
}

#[tokio::test]
async fn a_subscription_without_retries_is_attempted_once() {
    let app = spawn_app_with(&[
        "--allow-insecure-callbacks",
        "--poll-interval",
        "100ms",
        "--wake-on-publish",
        "--retry-schedule",
        "10ms,10ms",
    ])
    .await;
    let token = app.token(&["test-webhook"]).await;
    let receiver = Receiver::start().await;
    receiver.set_default(Reply::Status(503));
    let id = subscribe_json(&app, &token, &receiver, json!({"noRetries": true})).await;
    assert_eq!(get(&app, &token, &id).await["noRetries"], true);
    publish_registry(&app, &token, "test-webhook", &["artifact.pushed"]).await;
    wait_until("the delivery failed", Duration::from_secs(10), || async {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM deliveries WHERE webhook_id = $1::uuid")
                .bind(&id)
                .fetch_optional(&app.pool)
                .await
                .unwrap();
        state.as_deref() == Some("failed")
    })
    .await;
    assert_eq!(receiver.captured().len(), 1);
    // With retries again, the schedule's three attempts.
    let (status, answer) = call(
        &app,
        &token,
        "UpdateSubscription",
        json!({"subscription": {"subscriptionId": id, "noRetries": false},
               "updateMask": "noRetries"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    publish_registry(&app, &token, "test-webhook", &["artifact.pushed"]).await;
    receiver.wait_for(4, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.captured().len(), 4);
}
