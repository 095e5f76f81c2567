//! The relay in front of a real GitHub: webhooks signed with the source's secret are
//! published and fanned out; a redelivery of the same GitHub delivery publishes nothing
//! new; unsigned, badly signed or unknown-source requests store nothing.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};
use crate::receiver::Receiver;
use crate::subscriptions::subscribe_json;

fn sign(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", crate::github_hooks::hex_hmac(secret, body))
}

async fn relay(
    app: &TestApp,
    source: &str,
    event: &str,
    guid: &str,
    body: &[u8],
    content_type: &str,
    signature: Option<String>,
) -> (u16, Value) {
    let mut request = app
        .http
        .post(app.url(&format!("/ingest/github/{source}")))
        .header("x-github-event", event)
        .header("x-github-delivery", guid)
        .header("content-type", content_type)
        .header("user-agent", "GitHub-Hookshot/044aadd")
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
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

#[tokio::test]
async fn signed_github_webhooks_are_published_once_and_others_are_refused() {
    let config = std::env::temp_dir().join(format!("relay-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(
        &config,
        "[ingest.github.ghes]\nsecret = \"relay-secret\"\n\n\
         [ingest.github.mapped]\nsecret = \"other-secret\"\nowner = \"octo-org\"\n",
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
    let token = app.token(&["octo-org"]).await;
    let receiver = Receiver::start().await;
    subscribe_json(
        &app,
        &token,
        &receiver,
        json!({"owner": "octo-org", "repository": "Hello-World", "family": "EVENT_FAMILY_GITHUB"}),
    )
    .await;
    let payload = json!({"ref": "refs/heads/main",
        "repository": {"name": "Hello-World", "owner": {"login": "octo-org"}}})
    .to_string();
    let body = payload.as_bytes();
    let guid = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

    // Refused: no signature, a bad one, an unknown source. Nothing stored.
    let json_type = "application/json";
    let (status, _) = relay(&app, "ghes", "push", guid, body, json_type, None).await;
    assert_eq!(status, 401);
    let wrong = Some(sign("not-the-secret", body));
    let (status, answer) = relay(&app, "ghes", "push", guid, body, json_type, wrong).await;
    assert_eq!(status, 401);
    assert_eq!(
        answer["message"],
        "X-Hub-Signature-256 does not match the source's secret"
    );
    let signed = Some(sign("relay-secret", body));
    let (status, _) = relay(&app, "nope", "push", guid, body, json_type, signed.clone()).await;
    assert_eq!(status, 404);
    let ping = Some(sign("relay-secret", b"{}"));
    let (status, _) = relay(&app, "ghes", "ping", "p-1", b"{}", json_type, ping).await;
    assert_eq!(status, 204);
    assert_eq!(events(&app).await, 0);

    // Published, delivered; GitHub's redelivery of it publishes nothing new.
    let (status, answer) = relay(&app, "ghes", "push", guid, body, json_type, signed.clone()).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["deliveries_queued"], 1);
    assert_eq!(answer["duplicate"], false);
    let sent = receiver.wait_for(1, Duration::from_secs(10)).await;
    let envelope: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(envelope["type"], "push");
    assert_eq!(
        envelope["data"],
        serde_json::from_str::<Value>(&payload).unwrap()
    );
    let (status, again) = relay(&app, "ghes", "push", guid, body, json_type, signed).await;
    assert_eq!(status, 202);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["event_id"], answer["event_id"]);
    assert_eq!(events(&app).await, 1);

    // A form body (content type form), and a source that maps every event to one owner.
    let foreign = json!({"ref": "refs/heads/dev",
        "repository": {"name": "Hello-World", "owner": {"login": "Someone-Else"}}})
    .to_string();
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &foreign)
        .finish();
    let signed = Some(sign("other-secret", form.as_bytes()));
    let (status, answer) = relay(
        &app,
        "mapped",
        "push",
        "guid-2",
        form.as_bytes(),
        "application/x-www-form-urlencoded",
        signed,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["deliveries_queued"], 1);
    let sent = receiver.wait_for(2, Duration::from_secs(10)).await;
    let envelope: Value = serde_json::from_slice(&sent[1].body).unwrap();
    assert_eq!(envelope["data"]["ref"], "refs/heads/dev");
    let _ = std::fs::remove_file(&config);
}
