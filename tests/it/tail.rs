//! The live tail, `DeliveryService/TailDeliveries`, over Connect's streaming protocol as any
//! client speaks it, and `webhookd deliveries tail`: attempts recorded by another batcher
//! arrive, only the caller's, filtered by subscription; what a token may not follow is
//! refused; the statistics the console charts count the same attempts.

use std::io::BufRead as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};
use crate::receiver::{Receiver, Reply};
use crate::subscriptions::create;

/// A TailDeliveries stream read envelope by envelope.
pub struct Tail {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl Tail {
    pub async fn open(app: &TestApp, token: &str, request: Value) -> Self {
        let body = webhookd::operator::envelope(request.to_string().as_bytes()).unwrap();
        let response = reqwest::Client::new()
            .post(app.url("/webhookd.v1.DeliveryService/TailDeliveries"))
            .header("content-type", "application/connect+json")
            .header("connect-protocol-version", "1")
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        Self {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next envelope: (end of stream, message), within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<(bool, Value)> {
        tokio::time::timeout(wait, self.next()).await.ok()
    }

    async fn next(&mut self) -> (bool, Value) {
        loop {
            if let Some((flags, message)) =
                webhookd::operator::next_envelope(&mut self.buffer).unwrap()
            {
                return (flags & 0x02 != 0, serde_json::from_slice(&message).unwrap());
            }
            let chunk = self.response.chunk().await.unwrap().expect("stream open");
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// The error the stream ended with.
    async fn error(mut self) -> Value {
        let (end, message) = self.next().await;
        assert!(end, "an end-of-stream message: {message}");
        message["error"].clone()
    }
}

fn registry_event(owner: &str, repository: &str) -> Value {
    json!({"registry": {"kind": "artifact.pushed", "owner": owner,
                        "repository": repository, "tags": ["v1"]}})
}

async fn subscribe(app: &TestApp, token: &str, owner: &str, receiver: &Receiver) -> String {
    create(
        app,
        token,
        json!({"owner": owner, "family": "EVENT_FAMILY_REGISTRY", "format": "FORMAT_JSON",
               "url": format!("http://{}/hook", receiver.addr)}),
    )
    .await["subscriptionId"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn publish(app: &TestApp, token: &str, events: Vec<Value>) {
    let (status, answer) = app
        .rpc(
            "webhookd.v1.PublishService/Publish",
            token,
            json!({ "events": events }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn the_tail_streams_each_recorded_attempt_to_the_readers_that_follow_it() {
    let app = spawn_app_with(&[
        "--allow-insecure-callbacks",
        "--no-dispatch",
        "--retry-schedule",
        "10ms",
    ])
    .await;
    let acme = app.token(&["acme"]).await;
    let globex = app.token(&["globex"]).await;
    let receiver = Receiver::start().await;
    let first = subscribe(&app, &acme, "acme", &receiver).await;
    let second = subscribe(&app, &acme, "acme", &receiver).await;
    let theirs = subscribe(&app, &globex, "globex", &receiver).await;

    let mut everything = Tail::open(&app, &acme, json!({"owner": "acme"})).await;
    let mut only_second = Tail::open(
        &app,
        &acme,
        json!({"owner": "acme", "subscriptionId": second}),
    )
    .await;
    let mut stranger = Tail::open(&app, &globex, json!({"owner": "globex"})).await;

    receiver.set_default(Reply::Status(503));
    publish(&app, &acme, vec![registry_event("acme", "debian")]).await;
    app.dispatcher().run_once().await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (end, message) = everything
            .next_within(Duration::from_secs(10))
            .await
            .unwrap();
        assert!(!end);
        assert_eq!(message["attempt"]["number"], 1, "{message}");
        assert_eq!(message["attempt"]["httpStatus"], 503, "{message}");
        assert_eq!(message["delivery"]["state"], "DELIVERY_STATE_PENDING");
        assert_eq!(message["delivery"]["eventType"], "artifact.pushed");
        assert!(
            message["attempt"].get("requestHeaders").is_none(),
            "no headers"
        );
        seen.push(
            message["delivery"]["webhookId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    seen.sort();
    let mut expected = vec![first.clone(), second.clone()];
    expected.sort();
    assert_eq!(seen, expected);
    let (_, message) = only_second
        .next_within(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(message["delivery"]["webhookId"], second.as_str());
    let delivery = message["delivery"]["deliveryId"].clone();

    // The retry, delivered: attempt 2 of the same delivery.
    receiver.set_default(Reply::Status(200));
    tokio::time::sleep(Duration::from_millis(50)).await;
    app.dispatcher().run_once().await.unwrap();
    let (_, message) = only_second
        .next_within(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(message["delivery"]["deliveryId"], delivery);
    assert_eq!(message["attempt"]["number"], 2);
    assert_eq!(message["delivery"]["state"], "DELIVERY_STATE_DELIVERED");
    // globex's reader saw none of acme's attempts; its own arrive.
    assert!(
        stranger
            .next_within(Duration::from_millis(300))
            .await
            .is_none()
    );
    publish(&app, &globex, vec![registry_event("globex", "web")]).await;
    app.dispatcher().run_once().await.unwrap();
    let (_, message) = stranger.next_within(Duration::from_secs(10)).await.unwrap();
    assert_eq!(message["delivery"]["webhookId"], theirs.as_str());

    // The console's chart counts the same attempts: first had one failure and one success
    // (written by the batcher about once a second).
    crate::helpers::eventually("the hour's tally is written", || async {
        let (status, stats) = app
            .rpc(
                "webhookd.v1.DeliveryService/GetDeliveryStats",
                &acme,
                json!({"subscriptionIds": [first]}),
            )
            .await;
        assert_eq!(status, 200, "{stats}");
        assert_eq!(stats["stats"][0]["subscriptionId"], first.as_str());
        let hour = &stats["stats"][0]["hours"][0];
        hour["attempts"] == "2" && hour["successes"] == "1"
    })
    .await;
    let (status, stats) = app
        .rpc(
            "webhookd.v1.DeliveryService/GetDeliveryStats",
            &acme,
            json!({"subscriptionIds": [second, first, second]}),
        )
        .await;
    assert_eq!(status, 200, "{stats}");
    let answered: Vec<&Value> = stats["stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["subscriptionId"])
        .collect();
    assert_eq!(answered, [&json!(second), &json!(first), &json!(second)]);
    assert_eq!(stats["stats"][0]["hours"], stats["stats"][2]["hours"]);
    assert_eq!(stats["stats"][2]["hours"][0]["attempts"], "2", "{stats}");
    // One id the token may not see (or that does not exist) refuses them all, alike.
    for ids in [
        json!([first]),
        json!([first, theirs]),
        json!([first, "5f0c7a8e-0000-4000-8000-000000000000"]),
        json!([first, "not-a-uuid"]),
    ] {
        let token = if ids.as_array().unwrap().len() == 1 {
            &globex
        } else {
            &acme
        };
        let (status, error) = app
            .rpc(
                "webhookd.v1.DeliveryService/GetDeliveryStats",
                token,
                json!({ "subscriptionIds": ids }),
            )
            .await;
        assert_eq!(
            (status, &error["code"]),
            (404, &json!("not_found")),
            "{ids}: {error}"
        );
    }
}

/// The recorders notify only the attempts of owners some reader follows (a notifying
/// commit takes PostgreSQL's database-wide NOTIFY lock): none while nobody follows, every
/// one from the moment a reader's stream opens.
#[tokio::test]
async fn attempts_are_notified_only_while_their_owner_is_followed() {
    let app = spawn_app_with(&["--allow-insecure-callbacks", "--no-dispatch"]).await;
    let acme = app.token(&["acme"]).await;
    let globex = app.token(&["globex"]).await;
    let receiver = Receiver::start().await;
    subscribe(&app, &acme, "acme", &receiver).await;
    subscribe(&app, &globex, "globex", &receiver).await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&app.pool)
        .await
        .unwrap();
    listener.listen("webhookd_attempts").await.unwrap();
    let notified = |listener: &mut sqlx::postgres::PgListener| {
        let mut payloads = Vec::new();
        while let Some(n) = listener.next_buffered() {
            payloads.push(n.payload().to_owned());
        }
        payloads
    };

    publish(&app, &acme, vec![registry_event("acme", "debian")]).await;
    app.dispatcher().run_once().await.unwrap();
    assert_eq!(receiver.captured().len(), 1);
    let quiet = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await;
    assert!(
        quiet.is_err(),
        "nothing notified while nobody follows: {quiet:?}"
    );

    let mut tail = Tail::open(&app, &acme, json!({"owner": "acme"})).await;
    let followed: Vec<String> =
        sqlx::query_scalar("SELECT owner_name FROM tail_follows WHERE expire_time > now()")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(followed, ["acme"]);
    publish(&app, &acme, vec![registry_event("acme", "debian")]).await;
    publish(&app, &globex, vec![registry_event("globex", "web")]).await;
    app.dispatcher().run_once().await.unwrap();
    let (_, message) = tail.next_within(Duration::from_secs(10)).await.unwrap();
    let delivery = message["delivery"]["deliveryId"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("acme's attempt notified")
        .unwrap();
    let mut payloads = vec![first.payload().to_owned()];
    tokio::time::sleep(Duration::from_millis(300)).await;
    payloads.extend(notified(&mut listener));
    // acme's one attempt alone: globex's, recorded by the same batch, was not notified.
    assert_eq!(payloads, [format!("{delivery}:1")]);
}

#[tokio::test]
async fn the_tail_refuses_what_the_token_may_not_follow() {
    let app = spawn_app_with(&["--allow-insecure-callbacks", "--no-dispatch"]).await;
    let acme = app.token(&["acme"]).await;
    let globex = app.token(&["globex"]).await;
    let receiver = Receiver::start().await;
    let theirs = subscribe(&app, &globex, "globex", &receiver).await;

    let error = Tail::open(&app, &acme, json!({"owner": "globex"}))
        .await
        .error()
        .await;
    assert_eq!(error["code"], "permission_denied", "{error}");
    let error = Tail::open(
        &app,
        &acme,
        json!({"owner": "acme", "subscriptionId": theirs}),
    )
    .await
    .error()
    .await;
    assert_eq!(error["code"], "not_found", "{error}");
    let error = Tail::open(&app, &acme, json!({"owner": ""}))
        .await
        .error()
        .await;
    assert_eq!(error["code"], "invalid_argument", "{error}");
    // No valid token: refused before anything is read (in the stream's end message, as
    // Connect's streaming protocol answers every error).
    let error = Tail::open(&app, "", json!({"owner": "acme"}))
        .await
        .error()
        .await;
    assert_eq!(error["code"], "unauthenticated", "{error}");
    // ListOwners shows exactly what each token covers.
    let (status, owners) = app
        .rpc(
            "webhookd.v1.SubscriptionService/ListOwners",
            &acme,
            json!({}),
        )
        .await;
    assert_eq!((status, owners), (200, json!({"owners": ["acme"]})));
    let admin = app.token(&["*"]).await;
    let (_, owners) = app
        .rpc(
            "webhookd.v1.SubscriptionService/ListOwners",
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(owners, json!({"owners": ["globex"], "allOwners": true}));
}

#[tokio::test]
async fn deliveries_tail_prints_a_line_per_attempt() {
    let app = spawn_app_with(&["--allow-insecure-callbacks", "--no-dispatch"]).await;
    let token = app.token(&["acme"]).await;
    let receiver = Receiver::start().await;
    let subscription = subscribe(&app, &token, "acme", &receiver).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_webhookd"))
        .args(["deliveries", "tail", "--owner", "acme"])
        .env("WEBHOOKD_SERVER", app.url(""))
        .env("WEBHOOKD_TOKEN", &token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Both streams read on threads of their own: the server runs on this test's runtime.
    let (lines, read) = std::sync::mpsc::channel();
    for (out, stream) in [
        (
            "stdout",
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        ),
        ("stderr", Box::new(child.stderr.take().unwrap())),
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream).lines() {
                let _ = lines.send((out, line.unwrap()));
            }
        });
    }
    let read = std::sync::Arc::new(std::sync::Mutex::new(read));
    let next = || {
        let read = read.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                read.lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(10))
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    // It says so once it follows; attempts recorded from then on are printed.
    let (out, said) = next().await;
    assert_eq!(out, "stderr");
    assert!(said.contains("following"), "{said}");
    publish(&app, &token, vec![registry_event("acme", "debian")]).await;
    app.dispatcher().run_once().await.unwrap();
    let (out, line) = next().await;
    assert_eq!(out, "stdout", "{line}");
    child.kill().unwrap();
    let _ = child.wait();
    for part in [
        subscription.as_str(),
        "artifact.pushed",
        "attempt 1",
        "HTTP 200",
        "delivered",
    ] {
        assert!(line.contains(part), "{part:?} in {line}");
    }
}
