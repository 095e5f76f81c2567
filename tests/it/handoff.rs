//! A `serve` process that publishes leases the deliveries it queues to its own batcher, in
//! the publish itself, and attempts them without a claim; what it held when it dies is
//! claimed by another batcher once the lease expires; and nothing it acknowledged is lost,
//! however abruptly it dies.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use buffa::MessageField;
use webhookd::proto::webhookd::v1 as pb;
use webhookd::synthetic::repository_push;

use crate::delivery::subscribe;
use crate::helpers::{Spawned, TestApp, serve_command, spawn_app_with};
use crate::receiver::{Receiver, Reply};

/// An app without a batcher of its own (the processes under test are separate), an `acme`
/// token and a receiver subscribed to acme/petapis.
async fn setup() -> (TestApp, String, Receiver) {
    let app = spawn_app_with(&["--allow-insecure-callbacks", "--no-dispatch"]).await;
    let token = app.token(&["acme"]).await;
    let receiver = Receiver::start().await;
    subscribe(&app, &token, "petapis", &receiver).await;
    (app, token, receiver)
}

/// A `serve` process (API and batcher) with `flags`, once it answers `/readyz`.
async fn serve(app: &TestApp, flags: &[&str]) -> (Spawned, u16) {
    let (child, port) = serve_command(app, &app.database_url(), flags);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "serve did not become ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (child, port)
}

fn publisher(port: u16, token: &str) -> pb::PublishServiceClient<connectrpc::client::HttpClient> {
    let config =
        connectrpc::client::ClientConfig::new(format!("http://127.0.0.1:{port}").parse().unwrap())
            .with_default_header("authorization", format!("Bearer {token}").as_str());
    pb::PublishServiceClient::new(connectrpc::client::HttpClient::plaintext(), config)
}

/// Publishes synthetic push `n` alone; its event id.
async fn publish_one(
    client: &pb::PublishServiceClient<connectrpc::client::HttpClient>,
    n: u64,
) -> anyhow::Result<String> {
    let response = client
        .publish(pb::PublishRequest {
            events: vec![pb::PublishEvent {
                event: MessageField::some(repository_push("acme", "petapis", n)),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await?;
    Ok(response.into_owned().events[0].event_id.clone())
}

fn kill(child: &mut Spawned) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The 1-s delivery timeout makes leases 12 s long (twice the timeout, plus 10 s).
const FLAGS: &[&str] = &["--wake-on-publish", "--drain", "--delivery-timeout", "1s"];

#[tokio::test]
async fn a_publishing_process_attempts_its_deliveries_unclaimed_and_a_crash_leaves_them_to_the_lease()
 {
    let (app, token, receiver) = setup().await;
    receiver.script([Reply::Hang]);
    // Its poll never comes: only a handoff or a wake-up can start the attempt.
    let (mut publishing, port) = serve(&app, &[FLAGS, &["--poll-interval", "1h"]].concat()).await;
    publish_one(&publisher(port, &token), 1).await.unwrap();
    let first = receiver.wait_for(1, Duration::from_secs(10)).await;

    // The delivery row is still the version its publish inserted (a claim would have
    // updated it: a new row version, written by another transaction), and it is leased.
    let (same_transaction, leased, attempts): (bool, bool, i32) = sqlx::query_as(
        "SELECT d.xmin = e.xmin, d.lease_owner IS NOT NULL, d.attempt_count
         FROM deliveries d JOIN events e ON e.id = d.event_id",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        same_transaction,
        "the delivery was claimed, not handed over"
    );
    assert!(
        leased && attempts == 0,
        "leased {leased}, attempts {attempts}"
    );

    // Killed mid-attempt: another batcher leaves the delivery alone while the lease lasts,
    // then claims it.
    kill(&mut publishing);
    let killed = Instant::now();
    let (_other, _) = serve(
        &app,
        &[FLAGS, &["--no-api", "--poll-interval", "200ms"]].concat(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(killed.elapsed())).await;
    assert_eq!(
        receiver.captured().len(),
        1,
        "claimed while its lease lasted"
    );
    let again = receiver.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(again[1].header("webhook-id"), first[0].header("webhook-id"));
    assert_eq!(again[1].body, first[0].body);
}

#[tokio::test]
async fn every_publish_acknowledged_before_a_sigkill_is_delivered() {
    let (app, token, receiver) = setup().await;
    let (mut doomed, port) = serve(&app, FLAGS).await;
    // 16 publishers, one event per call; the process dies once 200 calls are answered.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..16u64 {
        let (client, acked) = (publisher(port, &token), acked.clone());
        clients.spawn(async move {
            for i in 0..1000 {
                match publish_one(&client, c * 1000 + i).await {
                    Ok(event) => acked.lock().unwrap().push(event),
                    Err(_) => return,
                }
            }
        });
    }
    while acked.lock().unwrap().len() < 200 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    kill(&mut doomed);
    while clients.join_next().await.is_some() {}
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();

    let (_survivor, _) = serve(
        &app,
        &[FLAGS, &["--no-api", "--poll-interval", "200ms"]].concat(),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let delivered: Vec<(String, String)> = sqlx::query_as(
            "SELECT event_id::text, id::text FROM deliveries WHERE state = 'delivered'",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap();
        let arrived: HashSet<String> = receiver
            .captured()
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        let done: HashSet<&String> = delivered
            .iter()
            .filter(|(_, id)| arrived.contains(id))
            .map(|(event, _)| event)
            .collect();
        let missing = acked.iter().filter(|e| !done.contains(e)).count();
        if missing == 0 {
            eprintln!("sigkill test: {} acknowledged, all delivered", acked.len());
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} acknowledged events not delivered",
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn subscriptions_of_every_face_are_handed_over_and_rendered_as_a_claim_renders_them() {
    let (app, token, _bsr) = setup().await;
    let github = Receiver::start().await;
    let angos = Receiver::start().await;
    // A GitHub hook (JSON, with a secret) and a native Angos-format subscription.
    let created = app
        .http
        .post(app.url("/api/v3/repos/acme/petapis/hooks"))
        .basic_auth("octocat", Some(&token))
        .json(&serde_json::json!({
            "events": ["push"],
            "config": {"url": format!("http://{}/hook", github.addr),
                       "content_type": "json", "secret": "s3cr3t"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let hook_id = created.json::<serde_json::Value>().await.unwrap()["id"].clone();
    crate::subscriptions::create(
        &app,
        &token,
        serde_json::json!({
            "owner": "acme", "family": "EVENT_FAMILY_REGISTRY", "format": "FORMAT_ANGOS",
            "url": format!("http://{}/hook", angos.addr),
        }),
    )
    .await;
    github.script([Reply::Status(200), Reply::Held]);
    angos.set_default(Reply::Held);
    let (_publishing, port) = serve(&app, &[FLAGS, &["--poll-interval", "1h"]].concat()).await;
    // The ping queued at the hook's creation is claimed at the batcher's start.
    let ping = github.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(ping[0].header("x-github-event"), "ping");

    let payload = r#"{"ref":"refs/heads/main","after":"abc"}"#;
    let published = publisher(port, &token)
        .publish(pb::PublishRequest {
            events: vec![
                pb::PublishEvent {
                    github: MessageField::some(pb::GitHubEvent {
                        name: "push".into(),
                        owner: "acme".into(),
                        repository: "petapis".into(),
                        payload_json: payload.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                pb::PublishEvent {
                    registry: MessageField::some(pb::RegistryEvent {
                        kind: "artifact.pushed".into(),
                        owner: "acme".into(),
                        repository: "petapis".into(),
                        digest: format!("sha256:{}", "0".repeat(64)),
                        tags: vec!["latest".into()],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_owned();
    assert_eq!(
        published.deliveries_queued, 3,
        "a push, a manifest and a tag"
    );
    let push = &github.wait_for(2, Duration::from_secs(10)).await[1];
    let registry = angos.wait_for(2, Duration::from_secs(10)).await;

    // Every delivery of the two events is still the row its publish inserted, leased, not
    // yet attempted (their listeners hold the requests): handed over, not claimed (the
    // batcher polls once an hour).
    let events: Vec<uuid::Uuid> = (published.events.iter())
        .map(|e| e.event_id.parse().unwrap())
        .collect();
    let rows = |state: &'static str| {
        let (pool, events) = (app.pool.clone(), events.clone());
        async move {
            sqlx::query_scalar::<_, i64>(&format!(
                "SELECT count(*) FROM deliveries d JOIN events e ON e.id = d.event_id
                 WHERE e.id = ANY ($1::uuid[]) AND {state}"
            ))
            .bind(events)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let handed = "d.xmin = e.xmin AND d.lease_owner IS NOT NULL AND d.attempt_count = 0";
    assert_eq!(rows(handed).await, 3, "not all were handed over");
    github.release(1);
    angos.release(2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while rows("d.state = 'delivered' AND d.attempt_count = 1").await < 3 {
        assert!(
            Instant::now() < deadline,
            "the handed deliveries were not recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Rendered from the subscription's own settings: GitHub's headers, JSON and secret...
    assert_eq!(push.header("x-github-event"), "push");
    assert_eq!(push.header("x-github-hook-id"), hook_id.to_string());
    assert_eq!(
        push.header("x-github-delivery"),
        published.events[0].event_id
    );
    assert_eq!(push.header("content-type"), "application/json");
    assert_eq!(&push.body[..], payload.as_bytes());
    assert_eq!(
        push.header("x-hub-signature-256"),
        format!(
            "sha256={}",
            crate::github_hooks::hex_hmac("s3cr3t", &push.body)
        )
    );
    // ...and Angos's two requests for a push by tag, one per part.
    let mut kinds: Vec<&str> = registry
        .iter()
        .map(|c| c.header("x-registry-event"))
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["manifest.push", "tag.create"]);
}
