//! The relay in front of a real Harbor: webhooks a Harbor policy sends (its Default or its
//! CloudEvents payload) with the source's auth header are published as registry events and
//! fanned out in every subscriber's format; unauthenticated, unknown-source or malformed
//! requests store nothing.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};
use crate::receiver::Receiver;
use crate::subscriptions::create;

const AUTH: &str = "Bearer relay-secret";

async fn relay(
    app: &TestApp,
    source: &str,
    body: &Value,
    content_type: &str,
    auth: Option<&str>,
) -> (u16, Value) {
    let mut request = app
        .http
        .post(app.url(&format!("/ingest/harbor/{source}")))
        .header("content-type", content_type)
        .header("user-agent", "Go-http-client/1.1")
        .body(body.to_string());
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn events(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Harbor's event_data of its sample push (reference facts, C.3).
fn event_data() -> Value {
    json!({
        "resources": [{"digest": format!("sha256:{}", "8a".repeat(32)), "tag": "latest",
                       "resource_url": "hub.harbor.com/test-webhook/debian:latest"}],
        "repository": {"date_created": 1_586_922_308, "name": "debian",
                       "namespace": "test-webhook", "repo_full_name": "test-webhook/debian",
                       "repo_type": "private"},
    })
}

#[tokio::test]
async fn a_harbor_policys_webhooks_are_published_and_fanned_out_and_others_refused() {
    let config = std::env::temp_dir().join(format!("relay-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(
        &config,
        format!("[ingest.harbor.core]\nauth_header = \"{AUTH}\"\n"),
    )
    .unwrap();
    let app = spawn_app_with(&[
        "--allow-insecure-callbacks",
        "--poll-interval",
        "100ms",
        "--wake-on-publish",
        "--config",
        config.to_str().unwrap(),
    ])
    .await;
    let token = app.token(&["test-webhook"]).await;
    let (json_rx, angos) = (Receiver::start().await, Receiver::start().await);
    for (receiver, format) in [(&json_rx, "FORMAT_JSON"), (&angos, "FORMAT_ANGOS")] {
        create(
            &app,
            &token,
            json!({"owner": "test-webhook", "family": "EVENT_FAMILY_REGISTRY",
                   "url": format!("http://{}/hook", receiver.addr), "format": format}),
        )
        .await;
    }

    // Refused, and nothing stored: no auth header, another one, an unknown source, a body
    // that is not JSON, a type Harbor's webhooks do not have.
    let default = json!({"type": "PUSH_ARTIFACT", "occur_at": 1_586_922_308,
                         "operator": "admin", "event_data": event_data()});
    for (source, body, auth, status) in [
        ("core", &default, None, 401),
        ("core", &default, Some("Bearer guess"), 401),
        ("other", &default, Some(AUTH), 404),
        ("core", &json!("not an event"), Some(AUTH), 400),
        (
            "core",
            &json!({"type": "UPLOAD_CHART", "event_data": {}}),
            Some(AUTH),
            400,
        ),
    ] {
        let (got, answer) = relay(&app, source, body, "application/json", auth).await;
        assert_eq!(got, status, "{answer}");
        assert!(answer["errors"][0]["message"].is_string(), "{answer}");
    }
    assert_eq!(events(&app).await, 0);

    // Harbor's Default payload: one registry event, to the JSON subscriber once and to the
    // Angos one as manifest.push and tag.create.
    let (status, answer) = relay(&app, "core", &default, "application/json", Some(AUTH)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["deliveries_queued"], 3);
    let sent = json_rx.wait_for(1, Duration::from_secs(10)).await;
    let envelope: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(envelope["type"], "artifact.pushed", "{envelope}");
    let kinds: Vec<String> = angos
        .wait_for(2, Duration::from_secs(10))
        .await
        .iter()
        .map(|c| c.header("x-registry-event").to_owned())
        .collect();
    assert!(
        kinds.contains(&"manifest.push".to_owned()) && kinds.contains(&"tag.create".to_owned())
    );

    // Harbor's CloudEvents payload reads as the same kind of event.
    let cloudevents = json!({"specversion": "1.0", "requestid": "r", "id": "i",
        "source": "/projects/1/webhook/policies/3", "type": "harbor.artifact.pulled",
        "datacontenttype": "application/json", "time": "2023-03-06T06:08:43Z",
        "data": event_data(), "operator": "robot$ci"});
    let (status, answer) = relay(
        &app,
        "core",
        &cloudevents,
        "application/cloudevents+json",
        Some(AUTH),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let sent = json_rx.wait_for(2, Duration::from_secs(10)).await;
    let envelope: Value = serde_json::from_slice(&sent[1].body).unwrap();
    assert_eq!(envelope["type"], "artifact.pulled", "{envelope}");
    assert_eq!(events(&app).await, 2);
}
