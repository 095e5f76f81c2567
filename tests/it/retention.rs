//! Retention with a shortened period: finished deliveries go with their attempts, events no
//! delivery refers to go after them, held (pending) deliveries and their events stay; a
//! retention shorter than the retry schedule is refused at start.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestApp, serve_args, spawn_app_with, wait_until};
use crate::receiver::{Receiver, Reply};
use crate::subscriptions::{call, publish_registry, subscribe_json};

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

#[tokio::test]
async fn retention_removes_finished_deliveries_then_unreferenced_events_and_keeps_held_ones() {
    let app = spawn_app_with(&[
        "--allow-insecure-callbacks",
        "--poll-interval",
        "100ms",
        "--wake-on-publish",
        "--retry-schedule",
        "10ms",
        "--retention",
        "2s",
        "--retention-interval",
        "200ms",
    ])
    .await;
    let token = app.token(&["test-webhook", "nobody-listens"]).await;
    let (ok, failing, held) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    failing.set_default(Reply::Status(503));
    subscribe_json(&app, &token, &ok, json!({})).await;
    subscribe_json(&app, &token, &failing, json!({})).await;
    let paused = subscribe_json(&app, &token, &held, json!({})).await;
    let (status, _) = call(
        &app,
        &token,
        "PauseSubscription",
        json!({"subscriptionId": paused}),
    )
    .await;
    assert_eq!(status, 200);
    publish_registry(&app, &token, "test-webhook", &["artifact.pushed"; 2]).await;
    publish_registry(&app, &token, "nobody-listens", &["artifact.pushed"]).await;
    wait_until(
        "two delivered and two failed",
        Duration::from_secs(10),
        || async {
            count(
                &app,
                "SELECT count(*) FROM deliveries WHERE state <> 'pending'",
            )
            .await
                == 4
        },
    )
    .await;
    assert_eq!(
        count(&app, "SELECT count(*) FROM delivery_attempts").await,
        6
    );
    assert_eq!(count(&app, "SELECT count(*) FROM events").await, 3);

    wait_until(
        "finished deliveries and the unreferenced event removed",
        Duration::from_secs(20),
        || async {
            count(&app, "SELECT count(*) FROM deliveries").await == 2
                && count(&app, "SELECT count(*) FROM events").await == 2
        },
    )
    .await;
    // What is left: the held deliveries, pending, and the events they need; no attempt of a
    // removed delivery.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM deliveries WHERE state = 'pending'"
        )
        .await,
        2
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM delivery_attempts").await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM events e WHERE e.owner_name = 'nobody-listens'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM deliveries d WHERE NOT EXISTS \
             (SELECT 1 FROM events e WHERE e.id = d.event_id)"
        )
        .await,
        0,
        "every delivery left has its event"
    );
    app.assert_owner_counts_true().await;
    // Resumed, the held deliveries still go out with their events.
    let (status, _) = call(
        &app,
        &token,
        "ResumeSubscription",
        json!({"subscriptionId": paused}),
    )
    .await;
    assert_eq!(status, 200);
    held.wait_for(2, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_retention_shorter_than_the_retry_schedule_is_refused_at_start() {
    let app = spawn_app_with(&["--no-dispatch"]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let args = serve_args(listener.local_addr().unwrap(), &["--retention", "1h"]);
    let error = webhookd::app::run(&args, app.pool.clone(), listener, std::future::pending())
        .await
        .expect_err("1h is shorter than the default schedule");
    let text = format!("{error:#}");
    assert!(
        text.contains("--retention 1h is shorter than the retry schedule's longest run"),
        "{text}"
    );
}
