//! Prometheus metrics at `/metrics`, read by an independent parser (the prometheus-client
//! Python package's, tests/clients/parse_metrics.py) and checked against the deliveries,
//! attempts and RPCs made; the queue's gauges; `--metrics-listen` and its errors.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, python, run, serve_args, spawn_app_with, wait_until};
use crate::receiver::{Receiver, Reply};
use crate::subscriptions::{call, publish_registry, subscribe_json};

/// The app's own batcher, quick, and one retry 10 ms after a failure.
const DELIVERING: &[&str] = &[
    "--allow-insecure-callbacks",
    "--poll-interval",
    "100ms",
    "--wake-on-publish",
    "--retry-schedule",
    "10ms",
];
const PUBLISH: &str = "webhookd.v1.PublishService/Publish";

/// The exposition, parsed.
pub struct Scrape(Value);

impl Scrape {
    pub async fn of(app: &TestApp) -> Self {
        Self::at(app, &app.url("/metrics")).await
    }

    async fn at(app: &TestApp, url: &str) -> Self {
        let response = app.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let text = response.text().await.unwrap();
        let file = std::env::temp_dir().join(format!("metrics-{}.txt", uuid::Uuid::new_v4()));
        std::fs::write(&file, &text).unwrap();
        let mut command = std::process::Command::new(python());
        command
            .arg("tests/clients/parse_metrics.py")
            .stdin(std::fs::File::open(&file).unwrap());
        let (code, stdout, stderr) = run(command).await;
        let _ = std::fs::remove_file(&file);
        assert_eq!(code, 0, "{stderr}\n{text}");
        Self(serde_json::from_str(&stdout).unwrap())
    }

    /// The samples `name` whose labels include `labels`.
    fn samples<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.0["samples"]
            .as_array()
            .unwrap()
            .iter()
            .filter(move |s| {
                s["name"] == name
                    && labels
                        .iter()
                        .all(|(k, v)| s["labels"][*k].as_str() == Some(*v))
            })
    }

    /// The value of sample `name` whose labels include `labels`; 0 when there is none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let matching: Vec<f64> = self
            .samples(name, labels)
            .map(|s| s["value"].as_f64().unwrap())
            .collect();
        assert!(matching.len() <= 1, "{name} {labels:?}: {matching:?}");
        matching.first().copied().unwrap_or(0.0)
    }

    /// The values of label `label` of the samples `name` whose labels include `labels`.
    fn labels(&self, name: &str, labels: &[(&str, &str)], label: &str) -> Vec<String> {
        self.samples(name, labels)
            .map(|s| s["labels"][label].as_str().unwrap().to_owned())
            .collect()
    }

    fn family(&self, name: &str) -> &Value {
        &self.0["families"][name]
    }
}

#[tokio::test]
async fn metrics_count_each_delivery_once_at_its_outcome_and_every_attempt_and_rpc() {
    let app = spawn_app_with(DELIVERING).await;
    let token = app.token(&["test-webhook"]).await;
    let (ok, failing) = (Receiver::start().await, Receiver::start().await);
    failing.set_default(Reply::Status(503));
    subscribe_json(&app, &token, &ok, json!({"name": "audit"})).await;
    let unnamed = subscribe_json(&app, &token, &failing, json!({"name": ""})).await;
    publish_registry(&app, &token, "test-webhook", &["artifact.pushed"; 3]).await;
    // Refused RPCs are counted with their codes: no token, and a bad event.
    let (status, _) = app.rpc(PUBLISH, "not-a-token", json!({})).await;
    assert_eq!(status, 401);
    let (status, _) = app.rpc(PUBLISH, &token, json!({"events": [{}]})).await;
    assert_eq!(status, 400);

    let deliveries = "event_webhook_deliveries_total";
    let error = [
        ("webhook", unnamed.as_str()),
        ("event", "artifact.pushed"),
        ("result", "error"),
    ];
    wait_until(
        "three deliveries failed for good (two attempts each)",
        Duration::from_secs(20),
        || async { Scrape::of(&app).await.value(deliveries, &error) == 3.0 },
    )
    .await;
    let scrape = Scrape::of(&app).await;
    let audit = [("webhook", "audit"), ("event", "artifact.pushed")];
    let success = [audit[0], audit[1], ("result", "success")];
    assert_eq!(scrape.value(deliveries, &success), 3.0);
    assert_eq!(scrape.value(deliveries, &error), 3.0);
    assert_eq!(
        scrape.value(deliveries, &[("webhook", "audit"), ("result", "error")]),
        0.0
    );
    assert_eq!(ok.captured().len(), 3);
    assert_eq!(failing.captured().len(), 6);
    // Angos's histogram: once per delivery, over the whole delivery, default buckets.
    let duration = "event_webhook_delivery_duration_seconds";
    assert_eq!(scrape.value(&format!("{duration}_count"), &audit), 3.0);
    assert_eq!(
        scrape.value(
            &format!("{duration}_count"),
            &[("webhook", &unnamed), ("event", "artifact.pushed")]
        ),
        3.0
    );
    assert_eq!(
        scrape.value(
            &format!("{duration}_bucket"),
            &[audit[0], audit[1], ("le", "+Inf")]
        ),
        3.0
    );
    assert!(scrape.value(&format!("{duration}_sum"), &audit) > 0.0);
    assert_eq!(
        scrape.labels(&format!("{duration}_bucket"), &audit, "le"),
        [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"
        ]
    );
    assert_eq!(
        scrape.family("event_webhook_deliveries"),
        &json!({"type": "counter", "help": "Total event webhook deliveries"})
    );
    assert_eq!(
        scrape.family(duration),
        &json!({"type": "histogram", "help": "Event webhook delivery duration"})
    );
    // Every attempt, by class.
    let attempts = "webhookd_attempts_total";
    assert_eq!(scrape.value(attempts, &[("class", "2xx")]), 3.0);
    assert_eq!(scrape.value(attempts, &[("class", "5xx")]), 6.0);
    assert_eq!(
        scrape.value("webhookd_published_events_total", &[("family", "registry")]),
        3.0
    );
    assert_eq!(scrape.value("webhookd_queued_deliveries_total", &[]), 6.0);
    let rpcs = "webhookd_rpc_requests_total";
    for (code, n) in [
        ("ok", 1.0),
        ("unauthenticated", 1.0),
        ("invalid_argument", 1.0),
    ] {
        assert_eq!(
            scrape.value(rpcs, &[("method", PUBLISH), ("code", code)]),
            n,
            "{code}"
        );
    }
    assert_eq!(
        scrape.value(
            "webhookd_rpc_duration_seconds_count",
            &[("method", PUBLISH)]
        ),
        3.0
    );
    assert!(scrape.value("webhookd_claim_duration_seconds_count", &[]) >= 1.0);
    assert!(scrape.value("webhookd_record_duration_seconds_count", &[]) >= 1.0);
}

#[tokio::test]
async fn webhook_ids_are_labelled_up_to_the_bound_and_the_rest_as_other() {
    let flags = [DELIVERING, &["--metrics-webhook-ids", "1"]].concat();
    let app = spawn_app_with(&flags).await;
    let token = app.token(&["test-webhook"]).await;
    let receiver = Receiver::start().await;
    let mut ids = vec![];
    for _ in 0..3 {
        ids.push(subscribe_json(&app, &token, &receiver, json!({"name": ""})).await);
    }
    subscribe_json(&app, &token, &receiver, json!({"name": "named"})).await;
    publish_registry(&app, &token, "test-webhook", &["artifact.pushed"]).await;
    receiver.wait_for(4, Duration::from_secs(10)).await;
    let deliveries = "event_webhook_deliveries_total";
    wait_until(
        "four deliveries counted",
        Duration::from_secs(10),
        || async {
            let scrape = Scrape::of(&app).await;
            let count = |webhook: &str| scrape.value(deliveries, &[("webhook", webhook)]);
            ids.iter().map(|id| count(id)).sum::<f64>() + count("other") + count("named") == 4.0
        },
    )
    .await;
    let scrape = Scrape::of(&app).await;
    let count = |webhook: &str| scrape.value(deliveries, &[("webhook", webhook)]);
    assert_eq!(ids.iter().filter(|id| count(id) == 1.0).count(), 1);
    assert_eq!(count("other"), 2.0);
    assert_eq!(count("named"), 1.0);
}

#[tokio::test]
async fn queue_gauges_show_pending_held_and_lag() {
    let app = spawn_app_with(&["--allow-insecure-callbacks", "--no-dispatch"]).await;
    let token = app.token(&["test-webhook"]).await;
    let receiver = Receiver::start().await;
    subscribe_json(&app, &token, &receiver, json!({"name": "active"})).await;
    let paused = subscribe_json(&app, &token, &receiver, json!({"name": "paused"})).await;
    let (status, answer) = call(
        &app,
        &token,
        "PauseSubscription",
        json!({"subscriptionId": paused}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    publish_registry(&app, &token, "test-webhook", &["artifact.pushed"; 2]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let scrape = Scrape::of(&app).await;
    let queue = "webhookd_queue_deliveries";
    assert_eq!(scrape.value(queue, &[("state", "pending")]), 2.0);
    assert_eq!(scrape.value(queue, &[("state", "held")]), 2.0);
    assert_eq!(scrape.value(queue, &[("state", "in_flight")]), 0.0);
    assert!(scrape.value("webhookd_queue_lag_seconds", &[]) > 0.0);
}

#[tokio::test]
async fn metrics_listen_moves_the_metrics_to_their_own_port() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let metrics = format!("127.0.0.1:{port}");
    let app = spawn_app_with(&["--no-dispatch", "--metrics-listen", &metrics]).await;
    let url = format!("http://{metrics}/metrics");
    wait_until(
        "the metrics port answers",
        Duration::from_secs(10),
        || async { app.http.get(&url).send().await.is_ok() },
    )
    .await;
    let scrape = Scrape::at(&app, &url).await;
    assert_eq!(scrape.family("webhookd_queue_deliveries")["type"], "gauge");
    let served = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(served.status(), 404);
}

#[tokio::test]
async fn a_metrics_port_in_use_stops_the_server_before_it_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let app = spawn_app_with(&["--no-dispatch"]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let args = serve_args(
        listener.local_addr().unwrap(),
        &["--no-dispatch", "--metrics-listen", &addr],
    );
    let error = webhookd::app::run(&args, app.pool.clone(), listener, std::future::pending())
        .await
        .expect_err("the port is taken");
    let text = format!("{error:#}");
    assert!(
        text.contains(&format!("--metrics-listen {addr}: cannot listen")),
        "{text}"
    );
}
