//! Angos's face: the seed's TOML examples (tests/fixtures/angos, verbatim but their URLs,
//! pointed at local receivers) loaded with `serve --config`, their `required`, `optional`
//! and `async` policies at publish time, Angos's requests byte for byte and signed, its
//! metrics read by an independent parser, hot reload while deliveries are in flight, and the
//! relay an Angos registry's webhook is pointed at.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::formats::python_checks;
use crate::helpers::{TestApp, spawn_app_with, tempdir};
use crate::metrics::Scrape;
use crate::receiver::{Captured, Receiver, Reply};

const WAIT: Duration = Duration::from_secs(10);
const DIGEST: &str = "sha256:8a9e0a4bb3b5bd2a1c4d6b3c6e6e3f6f0e1a2b3c4d5e6f708192a3b4c5d6e7f8";

/// The seed's examples `names` (tests/fixtures/angos/NAME.toml) as one file in `dir`, each
/// URL in `urls` replaced by its receiver's, and `extra` after them.
fn seed_file(dir: &Path, names: &[&str], urls: &[(&str, &Receiver)], extra: &str) -> PathBuf {
    let mut text = String::new();
    for name in names {
        let path = format!("tests/fixtures/angos/{name}.toml");
        text.push_str(&std::fs::read_to_string(&path).unwrap());
        text.push('\n');
    }
    for (url, receiver) in urls {
        assert!(text.contains(url), "{url} is not in {names:?}");
        text = text.replace(url, &format!("http://{}/events", receiver.addr));
    }
    text.push_str(extra);
    let file = dir.join("webhookd.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// The server with `file`; without `--allow-insecure-callbacks`: the file's webhooks may
/// reach the receivers on 127.0.0.1 all the same, as the operator's.
/// A receiver, and the seed's example `example` (one webhook, `name`, at `url`) pointed at
/// it and enabled globally.
async fn one_webhook(example: &str, url: &str, name: &str) -> (Receiver, PathBuf) {
    let receiver = Receiver::start().await;
    let file = seed_file(
        &tempdir("angos"),
        &[example],
        &[(url, &receiver)],
        &format!("[global]\nevent_webhooks = [\"{name}\"]\n"),
    );
    (receiver, file)
}

async fn serve(file: &Path) -> TestApp {
    serve_with(file, &[]).await
}

async fn serve_with(file: &Path, flags: &[&str]) -> TestApp {
    let mut all = vec![
        "--poll-interval",
        "100ms",
        "--wake-on-publish",
        "--config",
        file.to_str().unwrap(),
    ];
    all.extend(flags);
    spawn_app_with(&all).await
}

/// A push of `owner/repository` by tag `latest` (Angos: `manifest.push` and `tag.create`).
fn push(owner: &str, repository: &str) -> Value {
    json!({"registry": {
        "kind": "artifact.pushed", "owner": owner, "repository": repository,
        "digest": DIGEST, "tags": ["latest"],
        "actor": {"id": "user-123", "name": "alice", "client_ip": "192.168.1.100"},
        "occur_time": "2025-01-15T10:30:00.123456Z",
    }})
}

async fn publish(app: &TestApp, token: &str, events: Vec<Value>) -> (u16, Value) {
    app.rpc(
        "webhookd.v1.PublishService/Publish",
        token,
        json!({ "events": events }),
    )
    .await
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// The configuration file's subscriptions, by name, as the native API lists them.
async fn file_subscriptions(app: &TestApp, token: &str) -> Vec<Value> {
    let (status, body) = app
        .rpc(
            "webhookd.v1.SubscriptionService/ListSubscriptions",
            token,
            json!({"owner": ""}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["subscriptions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn id_of(subscriptions: &[Value], name: &str) -> String {
    subscriptions
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no subscription {name} in {subscriptions:?}"))["subscriptionId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A subscription's deliveries, newest first, each with its attempts.
async fn delivery_log(app: &TestApp, token: &str, id: &str) -> Vec<(Value, Vec<Value>)> {
    let (status, list) = app
        .rpc(
            "webhookd.v1.DeliveryService/ListDeliveries",
            token,
            json!({"webhook_id": id}),
        )
        .await;
    assert_eq!(status, 200, "{list}");
    let mut log = Vec::new();
    for delivery in list["deliveries"].as_array().cloned().unwrap_or_default() {
        let (status, got) = app
            .rpc(
                "webhookd.v1.DeliveryService/GetDelivery",
                token,
                json!({"delivery_id": delivery["deliveryId"]}),
            )
            .await;
        assert_eq!(status, 200, "{got}");
        log.push((
            delivery,
            got["attempts"].as_array().cloned().unwrap_or_default(),
        ));
    }
    log
}

fn body(captured: &Captured) -> Value {
    serde_json::from_slice(&captured.body).unwrap()
}

#[tokio::test]
async fn the_seeds_multiple_example_delivers_each_policy_as_angos_does() {
    let (audit, slack, analytics) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let dir = tempdir("angos");
    let file = seed_file(
        &dir,
        &["multiple"],
        &[
            ("https://audit.example.com/events", &audit),
            ("https://hooks.slack.com/services/T.../B.../xxx", &slack),
            ("https://analytics.internal/ingest", &analytics),
        ],
        "",
    );
    let app = serve(&file).await;
    let token = app.token(&["*"]).await;

    // library/nginx: the global list. audit (required) and slack (optional) are delivered
    // before the answer; analytics (async) through the outbox.
    let (status, answer) = publish(&app, &token, vec![push("library", "nginx")]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer.get("webhookFailures"), None, "{answer}");
    let sent = audit.captured();
    assert_eq!(
        sent.len(),
        1,
        "audit gets manifest.push alone, before the answer"
    );
    let mut slack_sent = slack.captured();
    assert_eq!(
        slack_sent.len(),
        2,
        "slack: manifest.push and tag.create, before the answer"
    );
    slack_sent.sort_by_key(|c| c.header("x-registry-event").to_owned());
    let mut async_sent = analytics.wait_for(2, WAIT).await;
    async_sent.sort_by_key(|c| c.header("x-registry-event").to_owned());

    // Angos's request: its headers, and its body in its key order.
    let request = &sent[0];
    let id = body(request)["id"].as_str().unwrap().to_owned();
    assert_eq!(
        std::str::from_utf8(&request.body).unwrap(),
        format!(
            r#"{{"id":"{id}","timestamp":"2025-01-15T10:30:00.123456Z","kind":"manifest.push","namespace":"library/nginx","digest":"{DIGEST}","reference":"latest","actor":{{"id":"user-123","username":"alice","client_ip":"192.168.1.100"}},"repository":"library"}}"#
        )
    );
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(request.header("x-registry-event"), "manifest.push");
    assert_eq!(request.header("authorization"), "Bearer audit-secret");
    assert_eq!(
        request.header("webhook-signature"),
        "",
        "no Standard Webhooks headers"
    );
    let hmac = python_checks(vec![(
        json!({"check": "hmac", "algorithm": "sha256", "key": "audit-secret"}),
        request,
    )])
    .await;
    assert_eq!(
        request.header("x-registry-signature-256"),
        format!("sha256={}", hmac[0].as_str().unwrap())
    );
    // No token, no signature.
    for (c, kind) in slack_sent.iter().chain(&async_sent).zip([
        "manifest.push",
        "tag.create",
        "manifest.push",
        "tag.create",
    ]) {
        assert_eq!(c.header("x-registry-event"), kind);
        assert_eq!(body(c)["kind"], kind);
        assert_eq!(c.header("authorization"), "");
        assert_eq!(c.header("x-registry-signature-256"), "");
    }
    assert_eq!(body(&slack_sent[1])["tag"], "latest");

    // production/app: [repository."production"] names audit alone.
    let (status, answer) = publish(&app, &token, vec![push("production", "app")]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(audit.captured().len(), 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(slack.captured().len(), 2);
    assert_eq!(analytics.captured().len(), 2);
    assert_eq!(body(&audit.captured()[1])["namespace"], "production/app");

    // The native API lists them read-only, under their names; the delivery log has every
    // attempt of every policy.
    let subscriptions = file_subscriptions(&app, &token).await;
    let names: Vec<&str> = subscriptions
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{subscriptions:?}");
    for name in ["audit", "slack", "analytics"] {
        assert!(names.contains(&name), "{names:?}");
    }
    let audit_id = id_of(&subscriptions, "audit");
    let (status, refused) = app
        .rpc(
            "webhookd.v1.SubscriptionService/DeleteSubscription",
            &token,
            json!({"subscription_id": audit_id}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["code"], "failed_precondition");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("[event_webhook.audit]"),
        "{refused}"
    );
    let log = delivery_log(&app, &token, &audit_id).await;
    assert_eq!(log.len(), 2);
    for (delivery, attempts) in &log {
        assert_eq!(delivery["state"], "DELIVERY_STATE_DELIVERED", "{delivery}");
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0]["httpStatus"], 200);
    }
    let ids: Vec<&str> = log
        .iter()
        .map(|(d, _)| d["deliveryId"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&id.as_str()),
        "the body's id is the delivery's"
    );
    let slack_log = delivery_log(&app, &token, &id_of(&subscriptions, "slack")).await;
    assert_eq!(slack_log.len(), 2);
    let analytics_id = id_of(&subscriptions, "analytics");
    crate::helpers::eventually("analytics' deliveries are recorded", || async {
        delivery_log(&app, &token, &analytics_id)
            .await
            .iter()
            .filter(|(d, _)| d["state"] == "DELIVERY_STATE_DELIVERED")
            .count()
            == 2
    })
    .await;

    // Angos's metrics, labelled with the config names, read by prometheus-client's parser.
    let scrape = Scrape::of(&app).await;
    let deliveries = |webhook, event, result| {
        scrape.value(
            "event_webhook_deliveries_total",
            &[("webhook", webhook), ("event", event), ("result", result)],
        )
    };
    assert_eq!(deliveries("audit", "manifest.push", "success"), 2.0);
    assert_eq!(deliveries("slack", "manifest.push", "success"), 1.0);
    assert_eq!(deliveries("slack", "tag.create", "success"), 1.0);
    assert_eq!(deliveries("analytics", "tag.create", "success"), 1.0);
    assert_eq!(deliveries("audit", "manifest.push", "error"), 0.0);
    assert_eq!(
        scrape.value(
            "event_webhook_delivery_duration_seconds_count",
            &[("webhook", "audit"), ("event", "manifest.push")],
        ),
        2.0
    );
}

#[tokio::test]
async fn a_required_webhook_that_fails_refuses_the_publish_and_one_that_recovers_lets_it_through() {
    // required.toml: max_retries = 2, timeout_ms = 3000.
    let (audit, file) = one_webhook("required", "https://audit.example.com/events", "audit").await;
    let app = serve(&file).await;
    let token = app.token(&["library"]).await;

    audit.set_default(Reply::Status(500));
    let started = Instant::now();
    let (status, refused) = publish(&app, &token, vec![push("library", "nginx")]).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["code"], "failed_precondition");
    let message = refused["message"].as_str().unwrap();
    for part in [
        "\"audit\"",
        "[event_webhook.audit]",
        "after 3 attempts",
        "HTTP 500",
        "nothing was published",
    ] {
        assert!(message.contains(part), "{part} is not in {message}");
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
    let sent = audit.captured();
    assert_eq!(sent.len(), 3, "1 attempt + max_retries 2");
    // Angos's timing: 100 ms before retry 1, 200 ms before retry 2 (lower bounds only).
    assert!(sent[1].at - sent[0].at >= Duration::from_millis(95));
    assert!(sent[2].at - sent[1].at >= Duration::from_millis(195));
    let ids: std::collections::HashSet<String> = sent
        .iter()
        .map(|c| body(c)["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "one delivery, retried");
    assert_eq!(
        count(&app, "events").await,
        0,
        "nothing of the publish is stored"
    );
    assert_eq!(count(&app, "deliveries").await, 0);

    // 500, 500, then 200: it succeeds on its second retry, and the publish with it; the
    // live tail of the file's webhooks (owner '', an all-owners token) sees the 3 attempts.
    let all = app.token(&["*"]).await;
    let mut tail = crate::tail::Tail::open(&app, &all, json!({"owner": ""})).await;
    audit.set_default(Reply::Status(200));
    audit.script([Reply::Status(500), Reply::Status(503)]);
    let (status, answer) = publish(&app, &token, vec![push("library", "nginx")]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(audit.captured().len(), 6);
    assert_eq!(count(&app, "events").await, 1);
    for (number, status) in [(1, 500), (2, 503), (3, 200)] {
        let (_, message) = tail.next_within(Duration::from_secs(10)).await.unwrap();
        assert_eq!(message["attempt"]["number"], number, "{message}");
        assert_eq!(message["attempt"]["httpStatus"], status, "{message}");
        assert_eq!(message["delivery"]["state"], "DELIVERY_STATE_DELIVERED");
    }
    let id = id_of(&file_subscriptions(&app, &all).await, "audit");
    let log = delivery_log(&app, &all, &id).await;
    assert_eq!(log.len(), 1);
    let (delivery, attempts) = &log[0];
    assert_eq!(delivery["state"], "DELIVERY_STATE_DELIVERED");
    assert_eq!(delivery["eventId"], answer["events"][0]["eventId"]);
    let statuses: Vec<i64> = attempts
        .iter()
        .map(|a| a["httpStatus"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 503, 200]);
    let sent_body = std::str::from_utf8(&audit.captured()[5].body)
        .unwrap()
        .to_owned();
    let recorded = attempts[2]["requestBody"].as_str().unwrap();
    assert_eq!(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, recorded).unwrap(),
        sent_body.as_bytes()
    );

    let scrape = Scrape::of(&app).await;
    let labels = |result| {
        [
            ("webhook", "audit"),
            ("event", "manifest.push"),
            ("result", result),
        ]
    };
    assert_eq!(
        scrape.value("event_webhook_deliveries_total", &labels("error")),
        1.0
    );
    assert_eq!(
        scrape.value("event_webhook_deliveries_total", &labels("success")),
        1.0
    );
    assert_eq!(
        scrape.value("webhookd_attempts_total", &[("class", "5xx")]),
        5.0
    );
}

#[tokio::test]
async fn an_optional_webhook_that_fails_is_reported_and_the_publish_is_stored() {
    // optional.toml: max_retries = 1; manifest.push, blob.push and tag.create.
    let (monitoring, file) = one_webhook(
        "optional",
        "https://monitoring.example.com/events",
        "monitoring",
    )
    .await;
    monitoring.set_default(Reply::Status(503));
    let app = serve(&file).await;
    let token = app.token(&["library"]).await;
    let (status, answer) = publish(&app, &token, vec![push("library", "nginx")]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["webhookFailures"],
        json!([
            {"webhook": "monitoring", "policy": "optional", "kind": "manifest.push",
             "attempts": 2, "error": "HTTP 503"},
            {"webhook": "monitoring", "policy": "optional", "kind": "tag.create",
             "attempts": 2, "error": "HTTP 503"},
        ])
    );
    assert_eq!(monitoring.captured().len(), 4);
    assert_eq!(count(&app, "events").await, 1);
    let all = app.token(&["*"]).await;
    let id = id_of(&file_subscriptions(&app, &all).await, "monitoring");
    let log = delivery_log(&app, &all, &id).await;
    assert_eq!(log.len(), 2);
    for (delivery, attempts) in &log {
        assert_eq!(delivery["state"], "DELIVERY_STATE_FAILED", "{delivery}");
        assert_eq!(attempts.len(), 2);
    }
}

#[tokio::test]
async fn a_reload_swaps_the_set_while_deliveries_in_flight_finish_on_the_old_one() {
    let (old, new) = (Receiver::start().await, Receiver::start().await);
    let dir = tempdir("angos");
    let global = "[global]\nevent_webhooks = [\"reliable\"]\n";
    let file = seed_file(
        &dir,
        &["reliable"],
        &[("https://hooks.example.com/events", &old)],
        global,
    );
    let app = serve(&file).await;
    let token = app.token(&["library"]).await;
    let all = app.token(&["*"]).await;

    // A required delivery held in flight by the old receiver...
    old.script([Reply::Held]);
    let publishing = {
        let (url, token) = (
            app.url("/webhookd.v1.PublishService/Publish"),
            token.clone(),
        );
        let http = app.http.clone();
        tokio::spawn(async move {
            http.post(url)
                .header("content-type", "application/json")
                .bearer_auth(token)
                .body(json!({"events": [push("library", "nginx")]}).to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    old.wait_for(1, WAIT).await;
    // ...while the file is edited to point elsewhere.
    seed_file(
        &dir,
        &["reliable"],
        &[("https://hooks.example.com/events", &new)],
        global,
    );
    let new_url = format!("http://{}/events", new.addr);
    crate::helpers::eventually("the edit is live", || async {
        file_subscriptions(&app, &all).await[0]["url"] == new_url.as_str()
    })
    .await;
    old.release(1);
    assert_eq!(publishing.await.unwrap(), 200);
    assert_eq!(old.captured().len(), 1, "it finished on the old definition");
    assert!(new.captured().is_empty());
    let (status, _) = publish(&app, &token, vec![push("library", "nginx")]).await;
    assert_eq!(status, 200);
    assert_eq!(new.captured().len(), 1, "the next publish has the new set");

    // A bad edit keeps the set (and the server) as it was.
    std::fs::write(
        &file,
        "[event_webhook.reliable]\nurl = \"http://127.0.0.1:9/x\"\npolicy = \"sometimes\"\n\
         events = [\"manifest.push\"]\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, _) = publish(&app, &token, vec![push("library", "nginx")]).await;
    assert_eq!(status, 200);
    assert_eq!(new.captured().len(), 2, "the old set still applies");
    assert_eq!(file_subscriptions(&app, &all).await[0]["url"], new_url);

    // Removing the table disables its subscription, with the reason.
    std::fs::write(&file, "# no webhooks\n").unwrap();
    crate::helpers::eventually("the removal is live", || async {
        file_subscriptions(&app, &all).await[0]["state"] == "SUBSCRIPTION_STATE_DISABLED"
    })
    .await;
    let (status, _) = publish(&app, &token, vec![push("library", "nginx")]).await;
    assert_eq!(status, 200);
    assert_eq!(new.captured().len(), 2);
}

#[tokio::test]
async fn filters_and_per_repository_lists_choose_the_webhooks() {
    let (production, important) = (Receiver::start().await, Receiver::start().await);
    let dir = tempdir("angos");
    let file = seed_file(
        &dir,
        &["production-only", "important-repos"],
        &[
            ("https://hooks.example.com/production", &production),
            ("https://hooks.example.com/important", &important),
        ],
        "[global]\nevent_webhooks = [\"production-only\", \"important-repos\"]\n",
    );
    let app = serve(&file).await;
    let token = app
        .token(&["production", "staging", "library", "dev"])
        .await;
    for (owner, to_production, to_important) in [
        ("production", 1, 1),
        ("staging", 1, 2),
        ("library", 1, 3),
        ("dev", 1, 3),
    ] {
        let (status, answer) = publish(&app, &token, vec![push(owner, "app")]).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(production.captured().len(), to_production, "{owner}");
        assert_eq!(important.captured().len(), to_important, "{owner}");
    }
    // A delete by tag: production-only takes manifest.delete (not tag.delete).
    let delete = json!({"registry": {"kind": "artifact.deleted", "owner": "production",
        "repository": "app", "digest": DIGEST, "tags": ["latest"]}});
    let (status, answer) = publish(&app, &token, vec![delete]).await;
    assert_eq!(status, 200, "{answer}");
    let sent = production.captured();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        std::str::from_utf8(&sent[1].body).unwrap(),
        format!(
            r#"{{"id":"{}","timestamp":"{}","kind":"manifest.delete","namespace":"production/app","reference":"latest","repository":"production"}}"#,
            body(&sent[1])["id"].as_str().unwrap(),
            body(&sent[1])["timestamp"].as_str().unwrap(),
        )
    );
}

#[tokio::test]
async fn the_relay_takes_an_angos_webhook_signed_with_the_sources_token_and_refuses_others() {
    let subscriber = Receiver::start().await;
    let dir = tempdir("angos");
    let file = dir.join("webhookd.toml");
    std::fs::write(&file, "[ingest.angos.registry]\ntoken = \"test-secret\"\n").unwrap();
    let app = serve_with(&file, &["--allow-insecure-callbacks"]).await;
    // Namespace library/nginx of Angos repository docker-hub: owner library, repository
    // nginx (the namespace's first part, as it does not start with the Angos repository).
    let token = app.token(&["library"]).await;
    crate::subscriptions::create(
        &app,
        &token,
        json!({"owner": "library", "family": "EVENT_FAMILY_REGISTRY",
               "url": format!("http://{}/hook", subscriber.addr), "format": "FORMAT_ANGOS"}),
    )
    .await;
    // Angos's own request (its docs' example), as its registry sends it.
    let sent = format!(
        r#"{{"id":"550e8400-e29b-41d4-a716-446655440000","timestamp":"2025-01-15T10:30:00.123456Z","kind":"manifest.push","namespace":"library/nginx","digest":"{DIGEST}","reference":"latest","actor":{{"id":"user-123","username":"alice","client_ip":"192.168.1.100"}},"repository":"docker-hub"}}"#
    );
    let signature = webhookd::dispatch::request::angos_signature("test-secret", sent.as_bytes());
    let relay = |signature: String| {
        app.http
            .post(app.url("/ingest/angos/registry"))
            .header("content-type", "application/json")
            .header("x-registry-event", "manifest.push")
            .header("authorization", "Bearer test-secret")
            .header("x-registry-signature-256", signature)
            .body(sent.clone())
            .send()
    };
    let refused = relay(signature.replace('a', "b")).await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(count(&app, "events").await, 0);
    let accepted = relay(signature.clone()).await.unwrap();
    assert_eq!(accepted.status(), 202);
    let answer: Value = accepted.json().await.unwrap();
    assert_eq!(
        answer["deliveries_queued"], 2,
        "manifest.push and tag.create: {answer}"
    );
    let mut got = subscriber.wait_for(2, WAIT).await;
    got.sort_by_key(|c| c.header("x-registry-event").to_owned());
    assert_eq!(
        body(&got[1])["kind"],
        "tag.create",
        "a push by tag, as Angos emits it"
    );
    let fanned = body(&got[0]);
    assert_eq!(fanned["kind"], "manifest.push");
    assert_eq!(fanned["namespace"], "library/nginx");
    assert_eq!(fanned["digest"], DIGEST);
    assert_eq!(fanned["actor"]["username"], "alice");
    // The same request again (Angos retried it): stored once.
    assert_eq!(relay(signature).await.unwrap().status(), 202);
    assert_eq!(count(&app, "events").await, 1);
}

#[tokio::test]
async fn a_bad_file_stops_serve_naming_the_table_and_key_and_config_check_lists_the_webhooks() {
    let app = crate::helpers::spawn_app().await;
    let dir = tempdir("angos-bad");
    let file = dir.join("webhookd.toml");
    let webhookd = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_webhookd"));
        command
            .env("RUST_LOG", "warn")
            .env("DATABASE_URL", app.database_url());
        command
    };
    let table = "[event_webhook.audit]\nurl = \"https://audit.example.com/events\"\n";
    for (text, expected) in [
        (
            format!("{table}policy = \"required\"\nevents = []\n"),
            "4: event_webhook.audit.events: event webhook must have at least one event",
        ),
        (
            format!("{table}policy = \"required\"\nevents = [\"manifest.push\"]\ntoken = \"\"\n"),
            "5: event_webhook.audit.token: event webhook token must not be empty",
        ),
        (
            format!("{table}policy = \"sometimes\"\nevents = [\"manifest.push\"]\n"),
            "3: event_webhook.audit.policy:",
        ),
        (
            format!(
                "{table}policy = \"async\"\nevents = [\"manifest.push\"]\nrepository_filter = [\"^(prod\"]\n"
            ),
            "5: event_webhook.audit.repository_filter:",
        ),
        (
            format!("{table}policy = \"async\"\nevents = [\"manifest.push\"]\nmax_retries = 17\n"),
            "max_retries=17 exceeds the supported maximum of 16",
        ),
        (
            format!(
                "{table}policy = \"async\"\nevents = [\"manifest.push\"]\n[global]\nevent_webhooks = [\"audti\"]\n"
            ),
            "6: global.event_webhooks: \"audti\" is not defined (there is no [event_webhook.audti])",
        ),
        (
            "[event_webhook.audit]\npolicy = \"async\"\nevents = [\"manifest.push\"]\n".to_owned(),
            "event_webhook.audit.url:",
        ),
    ] {
        std::fs::write(&file, &text).unwrap();
        let mut serve = webhookd();
        serve
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&file);
        let (code, _, stderr) = crate::helpers::run(serve).await;
        assert_eq!(code, 1, "{text}\n{stderr}");
        assert!(
            stderr.contains(expected),
            "{text}\nexpected {expected}\n{stderr}"
        );
        let mut check = webhookd();
        check.args(["config", "check"]).arg(&file);
        let (code, _, stderr) = crate::helpers::run(check).await;
        assert_eq!(code, 1);
        assert!(stderr.contains(expected), "{stderr}");
    }

    let mut check = webhookd();
    check
        .args(["config", "check"])
        .arg("tests/fixtures/angos/multiple.toml");
    let (code, stdout, stderr) = crate::helpers::run(check).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(
            "  event webhook audit: required https://audit.example.com/events, manifest.push, \
             manifest.delete (signed), timeout 5000 ms, 3 retries, enabled globally, \
             repository \"production\"\n"
        ),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_rust_producer_waits_for_required_webhooks_inside_its_own_transaction() {
    use webhookd::publish::{OutboundEvent, Policies, publish_with};
    let (audit, file) = one_webhook("required", "https://audit.example.com/events", "audit").await;
    let app = crate::helpers::spawn_app().await;
    // What a producer embedding webhookd does: load the file, store its webhooks, deliver.
    let config =
        webhookd::config_file::load(&file, &webhookd::config::serve_command().unwrap()).unwrap();
    let secrets = webhookd::app::secret_box(&app.args).unwrap();
    let mut conn = app.pool.acquire().await.unwrap();
    let set = webhookd::store::file_webhooks::sync(&mut conn, &config.webhooks, &secrets)
        .await
        .unwrap();
    drop(conn);
    let live = webhookd::store::file_webhooks::Live::default();
    live.install(set);
    let policies = Policies::new(live, None, None).unwrap();
    let event = webhookd::proto::webhookd::v1::RegistryEvent {
        kind: "artifact.pushed".into(),
        owner: "library".into(),
        repository: "nginx".into(),
        digest: DIGEST.into(),
        ..Default::default()
    };
    let event = OutboundEvent::from_registry(&event, None).unwrap();

    audit.set_default(Reply::Status(502));
    let mut tx = app.pool.begin().await.unwrap();
    let refused = publish_with(&mut tx, std::slice::from_ref(&event), &policies)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, webhookd::error::Error::FailedPrecondition(m) if m.contains("HTTP 502")),
        "{refused:?}"
    );
    drop(tx);
    assert_eq!(audit.captured().len(), 3);
    assert_eq!(count(&app, "events").await, 0);

    audit.set_default(Reply::Status(204));
    let mut tx = app.pool.begin().await.unwrap();
    let published = publish_with(&mut tx, &[event], &policies).await.unwrap();
    assert!(published.failures.is_empty());
    assert_eq!(
        audit.captured().len(),
        4,
        "delivered before publish_with returned"
    );
    assert_eq!(
        count(&app, "events").await,
        0,
        "nothing visible before the commit"
    );
    tx.commit().await.unwrap();
    assert_eq!(count(&app, "events").await, 1);
    let state: String = sqlx::query_scalar("SELECT state FROM deliveries")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(state, "delivered");
}
