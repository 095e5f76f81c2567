//! The batcher's pipeline, step by step: the same `Batcher::step` that `serve` runs, driven
//! by the test so that each mechanism (the per-webhook cap, the global cap, lease-guarded
//! recording) is checked at a known moment rather than by waiting and hoping.

use tokio_util::sync::CancellationToken;
use webhookd::synthetic::repository_push;

use crate::delivery::{publish, subscribe};
use crate::helpers::{TestApp, spawn_app_with};
use crate::receiver::{Receiver, Reply};

/// A manual batcher whose failed attempts are not retried within the test.
const FLAGS: &[&str] = &[
    "--allow-insecure-callbacks",
    "--no-dispatch",
    "--retry-schedule",
    "1h",
];

/// Publishes `n` events to acme/`repository`, one call.
async fn publish_to(app: &TestApp, token: &str, repository: &str, n: usize) {
    let events = (0..n)
        .map(|i| (repository_push("acme", repository, i as u64 + 1), ""))
        .collect();
    publish(app, token, events).await;
}

/// The `(state, attempt_count)` of every delivery to `repository`'s webhook, oldest first
/// (those of one publish in no particular order).
async fn states(app: &TestApp, repository: &str) -> Vec<(String, i32)> {
    sqlx::query_as(
        "SELECT d.state, d.attempt_count FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
         WHERE w.repository_name = $1 ORDER BY d.create_time, d.id",
    )
    .bind(repository)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

fn delivered(n: usize) -> Vec<(String, i32)> {
    vec![("delivered".to_owned(), 1); n]
}

#[tokio::test]
async fn a_webhook_at_its_in_flight_cap_gets_no_new_claims_while_others_do() {
    let flags = [
        FLAGS,
        &["--batch-size", "4", "--max-in-flight-per-webhook", "2"],
    ]
    .concat();
    let app = spawn_app_with(&flags).await;
    let token = app.token(&["acme"]).await;
    let (slow, fast) = (Receiver::start().await, Receiver::start().await);
    slow.set_default(Reply::Held);
    subscribe(&app, &token, "slow", &slow).await;
    subscribe(&app, &token, "fast", &fast).await;
    publish_to(&app, &token, "slow", 4).await;
    publish_to(&app, &token, "fast", 4).await;

    let batcher = app.dispatcher().start();
    let shutdown = CancellationToken::new();
    // A fair claim: two each.
    assert_eq!(batcher.step(&shutdown).await.unwrap(), 4);
    slow.wait_for(2, std::time::Duration::from_secs(10)).await;
    fast.wait_for(2, std::time::Duration::from_secs(10)).await;
    // The slow webhook has 2 in flight, its cap: the next claim passes over its other two
    // and takes the fast webhook's.
    assert_eq!(batcher.step(&shutdown).await.unwrap(), 2);
    fast.wait_for(4, std::time::Duration::from_secs(10)).await;
    assert_eq!(slow.captured().len(), 2);
    assert_eq!(
        batcher.step(&shutdown).await.unwrap(),
        0,
        "only the slow webhook's deliveries are due, and it is at its cap"
    );

    // Once its attempts end it is below the cap, and its other two are claimed.
    slow.release(2);
    crate::helpers::eventually("the slow webhook's first two are recorded", || async {
        let states = states(&app, "slow").await;
        states.iter().filter(|s| s.0 == "delivered").count() == 2
    })
    .await;
    assert_eq!(batcher.step(&shutdown).await.unwrap(), 2);
    slow.release(2);
    batcher.finish(None).await;
    assert_eq!(states(&app, "slow").await, delivered(4));
    assert_eq!(states(&app, "fast").await, delivered(4));
}

#[tokio::test]
async fn no_more_than_max_in_flight_attempts_run_at_once() {
    let flags = [
        FLAGS,
        &[
            "--batch-size",
            "10",
            "--max-in-flight",
            "3",
            "--max-in-flight-per-owner",
            "3",
        ],
    ]
    .concat();
    let app = spawn_app_with(&flags).await;
    let token = app.token(&["acme"]).await;
    let receiver = Receiver::start().await;
    receiver.set_default(Reply::Held);
    subscribe(&app, &token, "petapis", &receiver).await;
    publish_to(&app, &token, "petapis", 5).await;

    let batcher = app.dispatcher().start();
    let shutdown = CancellationToken::new();
    assert_eq!(
        batcher.step(&shutdown).await.unwrap(),
        3,
        "room for 3, though the batch could take 10"
    );
    receiver
        .wait_for(3, std::time::Duration::from_secs(10))
        .await;
    // The next step waits for room; one attempt ending makes room for exactly one.
    let next = tokio::spawn({
        let (batcher, shutdown) = (batcher.clone(), shutdown.clone());
        async move { batcher.step(&shutdown).await.unwrap() }
    });
    receiver.release(1);
    assert_eq!(next.await.unwrap(), 1);
    receiver
        .wait_for(4, std::time::Duration::from_secs(10))
        .await;
    receiver.release(3);
    assert_eq!(batcher.step(&shutdown).await.unwrap(), 1);
    receiver.release(1);
    batcher.finish(None).await;
    assert_eq!(states(&app, "petapis").await, delivered(5));
    assert_eq!(receiver.peak_concurrency(), 3);
}

#[tokio::test]
async fn an_attempt_whose_lease_was_taken_over_is_not_recorded() {
    let app = spawn_app_with(FLAGS).await;
    let token = app.token(&["acme"]).await;
    let receiver = Receiver::start().await;
    receiver.set_default(Reply::Held);
    subscribe(&app, &token, "petapis", &receiver).await;
    publish_to(&app, &token, "petapis", 2).await;

    let batcher = app.dispatcher().start();
    assert_eq!(batcher.step(&CancellationToken::new()).await.unwrap(), 2);
    receiver
        .wait_for(2, std::time::Duration::from_secs(10))
        .await;
    // While both attempts are in flight, another batcher takes the first one over, as when
    // a lease expires.
    let thief = uuid::Uuid::new_v4();
    sqlx::query(
        "UPDATE deliveries SET lease_owner = $1
         WHERE id = (SELECT id FROM deliveries ORDER BY create_time, id LIMIT 1)",
    )
    .bind(thief)
    .execute(&app.pool)
    .await
    .unwrap();
    receiver.release(2);
    batcher.finish(None).await;

    assert_eq!(
        states(&app, "petapis").await,
        vec![("pending".to_owned(), 0), ("delivered".to_owned(), 1)],
        "the first is left to its new holder, unrecorded"
    );
    let (owner, attempts): (Option<uuid::Uuid>, i64) = sqlx::query_as(
        "SELECT d.lease_owner, (SELECT count(*) FROM delivery_attempts a WHERE a.delivery_id = d.id)
         FROM deliveries d ORDER BY create_time, id LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((owner, attempts), (Some(thief), 0));
}

#[tokio::test]
async fn one_owners_backlog_does_not_hold_back_another_owners_event() {
    // The default cadence's batch: 20 a poll, every poll fair (polls are 5 s apart, more
    // than --fair-claim-interval; the test steps at once, so it says every claim).
    let app = spawn_app_with(&[FLAGS, &["--fair-claim-interval", "0s"]].concat()).await;
    let (acme, globex) = (app.token(&["acme"]).await, app.token(&["globex"]).await);
    let (crowd, lone) = (Receiver::start().await, Receiver::start().await);
    for n in 0..20 {
        app.create(&acme, "acme", "petapis", &crowd.subscriber_url(n))
            .await;
    }
    app.create(&globex, "globex", "petapis", &lone.url()).await;
    // acme's 20,000 deliveries are queued first: a first-in-first-out queue would have
    // globex's one wait a thousand polls (83 minutes at 20 every 5 s).
    publish_to(&app, &acme, "petapis", 1000).await;
    publish(
        &app,
        &globex,
        vec![(repository_push("globex", "petapis", 1), "")],
    )
    .await;

    let batcher = app.dispatcher().start();
    let shutdown = CancellationToken::new();
    for _poll in 0..2 {
        assert_eq!(batcher.step(&shutdown).await.unwrap(), 20);
    }
    batcher.finish(None).await;
    let lone_state: String = sqlx::query_scalar(
        "SELECT d.state FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
         WHERE w.owner_name = 'globex'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        lone_state, "delivered",
        "globex's event waited behind acme's backlog"
    );
    // The share is per webhook: every one of acme's twenty got one or two of the 39 left.
    let per_webhook: Vec<i64> = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE d.state = 'delivered') FROM webhooks w
         JOIN deliveries d ON d.webhook_id = w.id WHERE w.owner_name = 'acme' GROUP BY w.id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(per_webhook.len(), 20);
    assert!(
        per_webhook.iter().all(|n| (1..=2).contains(n)),
        "{per_webhook:?}"
    );
    app.assert_owner_counts_true().await;
}

#[tokio::test]
async fn an_owner_at_its_in_flight_cap_gets_no_new_claims_while_other_owners_do() {
    let flags = [
        FLAGS,
        &["--batch-size", "4", "--max-in-flight-per-owner", "3"],
    ]
    .concat();
    let app = spawn_app_with(&flags).await;
    let (acme, globex) = (app.token(&["acme"]).await, app.token(&["globex"]).await);
    let (slow, fast) = (Receiver::start().await, Receiver::start().await);
    slow.set_default(Reply::Held);
    // acme's two webhooks answer slowly; each is far below --max-in-flight-per-webhook.
    app.create(&acme, "acme", "petapis", &slow.subscriber_url(0))
        .await;
    app.create(&acme, "acme", "petapis", &slow.subscriber_url(1))
        .await;
    app.create(&globex, "globex", "petapis", &fast.url()).await;
    publish_to(&app, &acme, "petapis", 4).await;

    let batcher = app.dispatcher().start();
    let shutdown = CancellationToken::new();
    // acme has 8 due, and room for 3: the claim keeps to it, whatever the batch.
    assert_eq!(batcher.step(&shutdown).await.unwrap(), 3);
    slow.wait_for(3, std::time::Duration::from_secs(10)).await;
    let globex_events = (1..=3)
        .map(|i| (repository_push("globex", "petapis", i), ""))
        .collect();
    publish(&app, &globex, globex_events).await;
    // acme is at its cap: the claim passes over its five others and takes all of globex's.
    assert_eq!(batcher.step(&shutdown).await.unwrap(), 3);
    fast.wait_for(3, std::time::Duration::from_secs(10)).await;
    assert_eq!(slow.captured().len(), 3);
    assert_eq!(
        batcher.step(&shutdown).await.unwrap(),
        0,
        "only acme's deliveries are due, and it is at its cap"
    );

    // As acme's attempts end it has room again, and its other five are claimed, three and
    // then two.
    for (done, claimed) in [(3, 3), (6, 2)] {
        slow.release(3);
        crate::helpers::eventually("acme's attempts are recorded", || async {
            let states = states(&app, "petapis").await;
            states.iter().filter(|s| s.0 == "delivered").count() == 3 + done
        })
        .await;
        assert_eq!(batcher.step(&shutdown).await.unwrap(), claimed);
    }
    slow.release(2);
    batcher.finish(None).await;
    assert_eq!(states(&app, "petapis").await, delivered(11));
}
