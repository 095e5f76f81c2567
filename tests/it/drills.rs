//! Reliability drills (issue 13, items 10-12), each against real processes and a real
//! PostgreSQL: the database restarted under load, the database unreachable mid-batch, and a
//! `serve` process SIGKILLed again and again during a drain. Each ends with the same check:
//! every event acknowledged is delivered, a duplicate only ever under the same
//! `webhook-id`, and no delivery recorded as delivered twice.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use connectrpc::ErrorCode;
use webhookd::local_pg::{Durability, LocalPg};
use webhookd::proto::webhookd::v1 as pb;
use webhookd::synthetic::repository_push;

use crate::delivery::subscribe;
use crate::delivery_loop::{Relay, serve_process, serve_process_at, signal, states, terminate};
use crate::helpers::{TestApp, pg_ctl, spawn_app_on, spawn_app_with, tempdir, wait_until};
use crate::receiver::Receiver;

/// The bodies the receiver got, and whether every `webhook-id` that arrived more than once
/// carried the same body each time.
fn received(receiver: &Receiver) -> (HashSet<Vec<u8>>, bool) {
    let mut by_id: HashMap<String, Vec<u8>> = HashMap::new();
    let mut same = true;
    for request in receiver.captured() {
        let body = request.body.to_vec();
        let first = by_id
            .entry(request.header("webhook-id").to_owned())
            .or_insert_with(|| body.clone());
        same &= *first == body;
    }
    (by_id.into_values().collect(), same)
}

/// The payloads stored for `events` (every event when `None`): what their deliveries carry,
/// byte for byte.
async fn payloads(app: &TestApp, events: Option<&[uuid::Uuid]>) -> HashSet<Vec<u8>> {
    let rows: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT payload FROM events WHERE $1::uuid[] IS NULL OR id = ANY($1)")
            .bind(events)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    rows.into_iter().collect()
}

/// Deliveries recorded as delivered by more than one attempt.
async fn delivered_twice(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT delivery_id FROM delivery_attempts
         WHERE http_status BETWEEN 200 AND 299 GROUP BY delivery_id HAVING count(*) > 1) x",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn postgresql_restarts_under_load_lose_nothing_and_the_api_says_unavailable() {
    // A cluster of its own, so that the other tests' server stays up, and durable as in
    // production: the test server's `synchronous_commit = off` loses the last commits of an
    // immediate shutdown, acknowledged or not.
    let dir = tempdir("drill-restart");
    let local = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || LocalPg::start(&dir, None, Durability::Durable))
            .await
            .unwrap()
            .unwrap()
    };
    let app = spawn_app_on(
        &local.admin_options(),
        &[
            "--allow-insecure-callbacks",
            "--wake-on-publish",
            "--drain",
            "--poll-interval",
            "1s",
            "--delivery-timeout",
            "2s",
        ],
    )
    .await;
    let token = app.token(&["acme"]).await;
    let receiver = Receiver::start().await;
    subscribe(&app, &token, "petapis", &receiver).await;

    // A steady 20 events a second, each Publish call timed.
    let publisher = app.publisher(&token);
    let load = tokio::spawn(async move {
        let (mut acked, mut refused, mut slowest) = (HashSet::new(), 0, Duration::ZERO);
        for n in 1..=300u64 {
            let started = Instant::now();
            let request = pb::PublishRequest {
                events: vec![pb::PublishEvent {
                    event: buffa::MessageField::some(repository_push("acme", "petapis", n)),
                    ..Default::default()
                }],
                ..Default::default()
            };
            let answer =
                tokio::time::timeout(Duration::from_secs(30), publisher.publish(request)).await;
            slowest = slowest.max(started.elapsed());
            match answer.expect("a Publish call hung past 30 s") {
                Ok(answer) => {
                    let id = &answer.into_owned().events[0].event_id;
                    acked.insert(id.parse::<uuid::Uuid>().expect("an event id"));
                }
                Err(e) => {
                    assert_eq!(e.code, ErrorCode::Unavailable, "during the restart: {e:?}");
                    refused += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (acked, refused, slowest)
    });
    let cluster = dir.join("pg");
    for mode in ["fast", "immediate"] {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || {
            let log = cluster.join("server.log");
            let log = log.to_str().unwrap();
            pg_ctl(&cluster, &["restart", "-m", mode, "-w", "-l", log]);
        })
        .await
        .unwrap();
    }
    let (acked, refused, slowest) = load.await.unwrap();
    let acked: Vec<uuid::Uuid> = acked.into_iter().collect();
    let owed = payloads(&app, Some(&acked)).await;
    assert_eq!(
        owed.len(),
        acked.len(),
        "every acknowledged event is stored"
    );
    eprintln!(
        "restart drill: {} acknowledged, {refused} refused as unavailable, slowest call {slowest:?}",
        acked.len()
    );
    assert!(slowest < Duration::from_secs(10), "a call took {slowest:?}");
    assert!(acked.len() > 200, "only {} acknowledged", acked.len());
    wait_until(
        "every acknowledged event delivered",
        Duration::from_secs(60),
        || async { received(&receiver).0.is_superset(&owed) },
    )
    .await;
    let (_, same) = received(&receiver);
    assert!(
        same,
        "a duplicate under one webhook-id carried another body"
    );
    wait_until(
        "every delivery recorded",
        Duration::from_secs(30),
        || async { !states(&app).await.contains_key("pending") },
    )
    .await;
    assert_eq!(delivered_twice(&app).await, 0);
    app.assert_owner_counts_true().await;
    drop(app);
    tokio::task::spawn_blocking(move || local.release())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_database_unreachable_for_10_s_mid_batch_loses_nothing() {
    let app = spawn_app_with(&["--allow-insecure-callbacks", "--no-dispatch"]).await;
    let token = app.token(&["acme"]).await;
    let receiver = Receiver::start().await;
    receiver.set_default(crate::receiver::Reply::Delay(Duration::from_millis(5)));
    subscribe(&app, &token, "petapis", &receiver).await;
    let relay = Relay::start(&app).await;
    // Short leases (2 x 1 s + 10 s), so that the stranded process's leases expire while the
    // database is out of its reach, and a second process that reaches it directly.
    let flags = [
        "--drain",
        "--batch-size",
        "100",
        "--poll-interval",
        "500ms",
        "--delivery-timeout",
        "1s",
    ];
    let (stranded, _) = serve_process_at(&app, &relay.database_url(&app), &flags);
    crate::delivery_loop::publish_many(&app, &token, 5000).await;
    receiver.wait_for(500, Duration::from_secs(30)).await;
    relay.stall();
    let (direct, _) = serve_process(&app, &flags);
    tokio::time::sleep(Duration::from_secs(10)).await;
    relay.restore();
    wait_until("all 5000 delivered", Duration::from_secs(90), || async {
        states(&app).await.get("delivered") == Some(&5000)
    })
    .await;
    assert!(terminate(direct).await.success());
    assert!(
        terminate(stranded).await.success(),
        "the stranded process recovered"
    );
    let (bodies, same) = received(&receiver);
    assert_eq!(bodies.len(), 5000);
    assert_eq!(bodies, payloads(&app, None).await);
    assert!(
        same,
        "a duplicate under one webhook-id carried another body"
    );
    assert_eq!(delivered_twice(&app).await, 0);
    app.assert_owner_counts_true().await;
}

#[tokio::test]
async fn a_serve_process_killed_again_and_again_during_a_drain_loses_nothing() {
    let app = spawn_app_with(&["--allow-insecure-callbacks", "--no-dispatch"]).await;
    let token = app.token(&["acme"]).await;
    let receiver = Receiver::start().await;
    subscribe(&app, &token, "petapis", &receiver).await;
    let flags = [
        "--drain",
        "--batch-size",
        "200",
        "--poll-interval",
        "500ms",
        "--delivery-timeout",
        "1s",
    ];
    crate::delivery_loop::publish_many(&app, &token, 20_000).await;
    let (steady, _) = serve_process(&app, &flags);
    let (mut doomed, _) = serve_process(&app, &flags);
    let mut kills = 0;
    while kills < 5 && states(&app).await.get("delivered").copied().unwrap_or(0) < 18_000 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        signal(&doomed, nix::sys::signal::Signal::SIGKILL);
        doomed.wait().unwrap();
        kills += 1;
        doomed = serve_process(&app, &flags).0;
    }
    assert!(kills >= 3, "the drain ended before the third kill");
    wait_until("all 20000 delivered", Duration::from_secs(120), || async {
        states(&app).await.get("delivered") == Some(&20_000)
    })
    .await;
    assert!(terminate(steady).await.success());
    drop(doomed);
    let (bodies, same) = received(&receiver);
    assert_eq!(bodies.len(), 20_000);
    assert_eq!(bodies, payloads(&app, None).await);
    assert!(
        same,
        "a duplicate under one webhook-id carried another body"
    );
    assert_eq!(delivered_twice(&app).await, 0);
    app.assert_owner_counts_true().await;
}
