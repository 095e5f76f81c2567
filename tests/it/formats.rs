//! One stored event, rendered per subscriber: every format checked against the reference
//! facts (Harbor's payload bytes, CloudEvents parsed by the CloudEvents Python SDK, Angos's
//! body, headers and HMAC, GitHub's headers and signatures checked by Python's hmac, Slack's
//! blocks), filters that match and do not, pause/resume order, disable, and ping.

use std::time::Duration;

use base64::Engine as _;
use buffa::MessageField;
use buffa_types::google::protobuf::Timestamp;
use serde_json::{Value, json};
use webhookd::proto::webhookd::v1 as pb;
use webhookd::signing::{SigningSecret, verify};

use crate::helpers::{TestApp, python, run, spawn_app_with};
use crate::receiver::{Captured, Receiver};
use crate::subscriptions::{call, create};

const MANUAL: &[&str] = &["--allow-insecure-callbacks", "--no-dispatch"];
const WAIT: Duration = Duration::from_secs(10);
const DIGEST: &str = "sha256:8a9e0a4bb3b5bd2a1c4d6b3c6e6e3f6f0e1a2b3c4d5e6f708192a3b4c5d6e7f8";

/// Harbor's sample push (reference facts, C.3), as a registry event.
/// Harbor's Default payload of [`harbor_sample`], byte for byte (reference facts, C.3).
pub fn harbor_sample_default_body() -> String {
    format!(
        r#"{{"type":"PUSH_ARTIFACT","occur_at":1586922308,"operator":"admin","event_data":{{"resources":[{{"digest":"{DIGEST}","tag":"latest","resource_url":"hub.harbor.com/test-webhook/debian:latest"}}],"repository":{{"date_created":1586922308,"name":"debian","namespace":"test-webhook","repo_full_name":"test-webhook/debian","repo_type":"private"}}}}}}"#
    )
}

pub fn harbor_sample() -> pb::RegistryEvent {
    pb::RegistryEvent {
        kind: "artifact.pushed".into(),
        owner: "test-webhook".into(),
        repository: "debian".into(),
        digest: DIGEST.into(),
        tags: vec!["latest".into()],
        actor: MessageField::some(pb::Actor {
            name: "admin".into(),
            id: "user-123".into(),
            client_ip: "192.168.1.100".into(),
            ..Default::default()
        }),
        occur_time: MessageField::some(Timestamp {
            seconds: 1_586_922_308,
            nanos: 123_456_000,
            ..Default::default()
        }),
        registry_host: "hub.harbor.com".into(),
        repository_create_time: MessageField::some(Timestamp {
            seconds: 1_586_922_308,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn publish_registry(
    app: &TestApp,
    token: &str,
    events: Vec<pb::RegistryEvent>,
) -> pb::PublishResponse {
    let request = pb::PublishRequest {
        events: events
            .into_iter()
            .map(|e| pb::PublishEvent {
                registry: MessageField::some(e),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    app.publisher(token)
        .publish(request)
        .await
        .expect("publish")
        .into_owned()
}

/// Subscribes `receiver` to `owner`'s registry events in `format`, with `extra` fields.
async fn subscribe(
    app: &TestApp,
    token: &str,
    receiver: &Receiver,
    format: &str,
    extra: Value,
) -> Value {
    let mut subscription = json!({
        "owner": "test-webhook", "family": "EVENT_FAMILY_REGISTRY",
        "url": format!("http://{}/hook", receiver.addr), "format": format,
    });
    subscription
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    create(app, token, subscription).await
}

/// The subscription's current signing secret.
async fn secret(app: &TestApp, token: &str, subscription: &Value) -> SigningSecret {
    let (status, got) = app
        .rpc(
            "webhookd.v1.SubscriptionService/GetSigningSecret",
            token,
            json!({"webhookId": subscription["subscriptionId"]}),
        )
        .await;
    assert_eq!(status, 200, "{got}");
    SigningSecret::parse(got["secret"].as_str().unwrap()).unwrap()
}

/// Runs Python checks (tests/clients/check_deliveries.py) on captured requests.
pub async fn python_checks(checks: Vec<(Value, &Captured)>) -> Vec<Value> {
    let input: Vec<Value> = checks
        .into_iter()
        .map(|(mut check, captured)| {
            let headers: serde_json::Map<String, Value> = captured
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap())))
                .collect();
            check["headers"] = Value::Object(headers);
            check["body"] = json!(base64::engine::general_purpose::STANDARD.encode(&captured.body));
            check
        })
        .collect();
    let file = std::env::temp_dir().join(format!("checks-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, serde_json::to_vec(&input).unwrap()).unwrap();
    let mut command = std::process::Command::new(python());
    command
        .arg("tests/clients/check_deliveries.py")
        .stdin(std::fs::File::open(&file).unwrap());
    let (code, stdout, stderr) = run(command).await;
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn body_json(captured: &Captured) -> Value {
    serde_json::from_slice(&captured.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&captured.body)))
}

#[tokio::test]
async fn one_registry_event_fans_out_to_every_format_each_as_its_system_sends_it() {
    let app = spawn_app_with(MANUAL).await;
    let token = app.token(&["test-webhook"]).await;
    let receivers = [
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    ];
    let [harbor, cloudevents, angos, json_rx, slack, teams] = &receivers;
    let harbor_sub = subscribe(
        &app,
        &token,
        harbor,
        "FORMAT_HARBOR",
        json!({"authHeader": "Basic YWRtaW46cGFzcw=="}),
    )
    .await;
    let cloudevents_sub =
        subscribe(&app, &token, cloudevents, "FORMAT_CLOUDEVENTS", json!({})).await;
    subscribe(
        &app,
        &token,
        angos,
        "FORMAT_ANGOS",
        json!({"authHeader": "Bearer audit-secret"}),
    )
    .await;
    let json_sub = subscribe(
        &app,
        &token,
        json_rx,
        "FORMAT_JSON",
        json!({"headers": [{"name": "X-Team", "value": "core"}]}),
    )
    .await;
    subscribe(
        &app,
        &token,
        slack,
        "FORMAT_SLACK",
        json!({"authHeader": "Bearer not-for-slack"}),
    )
    .await;
    subscribe(
        &app,
        &token,
        teams,
        "FORMAT_TEAMS",
        json!({"omitStandardHeaders": true}),
    )
    .await;

    let published = publish_registry(&app, &token, vec![harbor_sample()]).await;
    // One request per format, two for Angos (manifest.push and tag.create).
    assert_eq!(published.deliveries_queued, 7);
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 7);

    // Harbor's Default payload, byte for byte (C.3), with the auth header as is.
    let got = harbor.wait_for(1, WAIT).await;
    assert_eq!(
        std::str::from_utf8(&got[0].body).unwrap(),
        harbor_sample_default_body()
    );
    assert_eq!(got[0].header("content-type"), "application/json");
    assert_eq!(got[0].header("authorization"), "Basic YWRtaW46cGFzcw==");
    assert_eq!(
        got[0].header("x-hub-signature-256"),
        "",
        "Harbor sends no signature of its own"
    );
    let harbor_secret = secret(&app, &token, &harbor_sub).await;
    verify(
        &[harbor_secret],
        &got[0].headers,
        &got[0].body,
        chrono::Utc::now().timestamp(),
    )
    .expect("Standard Webhooks signature");

    // CloudEvents structured mode, parsed by the CloudEvents SDK.
    let ce = cloudevents.wait_for(1, WAIT).await;
    assert_eq!(ce[0].header("content-type"), "application/cloudevents+json");
    let parsed = python_checks(vec![(json!({"check": "cloudevents"}), &ce[0])]).await;
    let attributes = &parsed[0]["attributes"];
    assert_eq!(attributes["specversion"], "1.0");
    assert_eq!(attributes["type"], "harbor.artifact.pushed");
    assert_eq!(
        attributes["source"],
        format!(
            "/projects/test-webhook/webhook/policies/{}",
            cloudevents_sub["number"].as_str().unwrap()
        )
    );
    assert_eq!(attributes["time"], "2020-04-15T03:45:08Z");
    assert_eq!(attributes["operator"], "admin");
    assert_eq!(attributes["id"], ce[0].header("webhook-id"));
    assert_eq!(attributes["requestid"], published.events[0].event_id);
    assert_eq!(
        parsed[0]["data"]["repository"]["repo_full_name"],
        "test-webhook/debian"
    );
    assert_eq!(parsed[0]["data"]["resources"][0]["tag"], "latest");

    // Angos: manifest.push and tag.create, in its key order, signed with its token.
    let mut sent = angos.wait_for(2, WAIT).await;
    sent.sort_by_key(|c| c.header("x-registry-event").to_owned());
    let (push, tag) = (&sent[0], &sent[1]);
    assert_eq!(push.header("x-registry-event"), "manifest.push");
    assert_eq!(tag.header("x-registry-event"), "tag.create");
    for (request, kind, tail) in [
        (
            push,
            "manifest.push",
            format!(r#""digest":"{DIGEST}","reference":"latest""#),
        ),
        (
            tag,
            "tag.create",
            format!(r#""digest":"{DIGEST}","reference":"latest","tag":"latest""#),
        ),
    ] {
        assert_eq!(
            std::str::from_utf8(&request.body).unwrap(),
            format!(
                r#"{{"id":"{}","timestamp":"2020-04-15T03:45:08.123456Z","kind":"{kind}","namespace":"test-webhook/debian",{tail},"actor":{{"id":"user-123","username":"admin","client_ip":"192.168.1.100"}},"repository":"test-webhook"}}"#,
                request.header("webhook-id")
            )
        );
        assert_eq!(request.header("authorization"), "Bearer audit-secret");
        assert_eq!(request.header("content-type"), "application/json");
    }
    let hmacs = python_checks(vec![
        (
            json!({"check": "hmac", "algorithm": "sha256", "key": "audit-secret"}),
            push,
        ),
        (
            json!({"check": "hmac", "algorithm": "sha256", "key": "audit-secret"}),
            tag,
        ),
    ])
    .await;
    assert_eq!(
        push.header("x-registry-signature-256"),
        format!("sha256={}", hmacs[0].as_str().unwrap())
    );
    assert_eq!(
        tag.header("x-registry-signature-256"),
        format!("sha256={}", hmacs[1].as_str().unwrap())
    );

    // webhookd's JSON envelope, with the custom header.
    let envelope = json_rx.wait_for(1, WAIT).await;
    let body = body_json(&envelope[0]);
    assert_eq!(body["type"], "artifact.pushed");
    assert_eq!(body["timestamp"], "2020-04-15T03:45:08.123456Z");
    assert_eq!(body["data"]["kind"], "artifact.pushed");
    assert_eq!(body["data"]["owner"], "test-webhook");
    assert_eq!(body["data"]["tags"], json!(["latest"]));
    assert_eq!(envelope[0].header("x-team"), "core");
    let json_secret = secret(&app, &token, &json_sub).await;
    verify(
        &[json_secret],
        &envelope[0].headers,
        &envelope[0].body,
        chrono::Utc::now().timestamp(),
    )
    .expect("Standard Webhooks signature");

    // Slack: Harbor's six sections; no Authorization (the URL is the credential).
    let message = slack.wait_for(1, WAIT).await;
    assert_eq!(message[0].header("authorization"), "");
    let blocks = body_json(&message[0])["blocks"].clone();
    let texts: Vec<&str> = blocks
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            assert_eq!(b["type"], "section");
            assert_eq!(b["text"]["type"], "mrkdwn");
            b["text"]["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(texts.len(), 6);
    assert_eq!(texts[0], "*Harbor webhook events*");
    assert_eq!(texts[1], "*event_type:* PUSH_ARTIFACT");
    assert_eq!(
        texts[2],
        "*occur_at:* <!date^1586922308^{date} at {time}|February 18th, 2014 at 6:39 AM PST>"
    );
    assert_eq!(texts[3], "*operator:* admin");
    assert_eq!(texts[4], "*event_data:*");
    assert!(
        texts[5].starts_with("```{\n\t\"resources\": [\n\t\t{\n\t\t\t\"digest\": "),
        "{}",
        texts[5]
    );
    assert!(texts[5].ends_with("\n}```"), "{}", texts[5]);

    // Teams: an Adaptive Card, and no Standard Webhooks headers when turned off.
    let card = teams.wait_for(1, WAIT).await;
    let body = body_json(&card[0]);
    assert_eq!(
        body["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let content = &body["attachments"][0]["content"];
    assert_eq!(content["type"], "AdaptiveCard");
    assert_eq!(
        content["body"][0]["text"],
        "artifact.pushed in test-webhook/debian"
    );
    assert_eq!(card[0].header("webhook-signature"), "");
    app.assert_owner_counts_true().await;
}

#[tokio::test]
async fn filters_route_by_repository_and_tag_and_scope() {
    let app = spawn_app_with(MANUAL).await;
    let token = app.token(&["test-webhook"]).await;
    let (filtered, scoped) = (Receiver::start().await, Receiver::start().await);
    subscribe(
        &app,
        &token,
        &filtered,
        "FORMAT_JSON",
        json!({"repositoryFilters": ["^prod/", "^qa$"], "tagFilters": ["^v[0-9]+\\."],
               "eventTypes": ["artifact.pushed"]}),
    )
    .await;
    subscribe(
        &app,
        &token,
        &scoped,
        "FORMAT_JSON",
        json!({"repository": "qa"}),
    )
    .await;
    let event = |repository: &str, tags: &[&str], kind: &str| pb::RegistryEvent {
        kind: kind.into(),
        repository: repository.into(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        ..harbor_sample()
    };
    let published = publish_registry(
        &app,
        &token,
        vec![
            event("prod/api", &["v1.2"], "artifact.pushed"), // filtered: yes
            event("dev/api", &["v1.2"], "artifact.pushed"),  // repository does not match
            event("prod/api", &["latest"], "artifact.pushed"), // no tag matches
            event("qa", &["latest", "v2.0"], "artifact.pushed"), // both: one tag matches
            event("prod/api", &["v1.3"], "artifact.pulled"), // type not subscribed
            event("qa", &[], "scan.completed"),              // scoped: yes
        ],
    )
    .await;
    let queued: Vec<i64> = published
        .events
        .iter()
        .map(|e| e.deliveries_queued)
        .collect();
    assert_eq!(queued, vec![1, 0, 0, 2, 0, 1]);
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 4);
    let repositories = |r: &Receiver| {
        let mut seen: Vec<String> = r
            .captured()
            .iter()
            .map(|c| {
                body_json(c)["data"]["repository"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        seen.sort();
        seen
    };
    filtered.wait_for(2, WAIT).await;
    scoped.wait_for(2, WAIT).await;
    assert_eq!(repositories(&filtered), vec!["prod/api", "qa"]);
    assert_eq!(repositories(&scoped), vec!["qa", "qa"]);
}

#[tokio::test]
async fn pause_holds_deliveries_resume_sends_them_in_order_and_disable_queues_nothing() {
    let app = spawn_app_with(&[
        "--allow-insecure-callbacks",
        "--no-dispatch",
        "--max-in-flight-per-webhook",
        "1",
    ])
    .await;
    let token = app.token(&["test-webhook"]).await;
    let receiver = Receiver::start().await;
    let sub = subscribe(&app, &token, &receiver, "FORMAT_JSON", json!({})).await;
    let id = sub["subscriptionId"].clone();
    let (status, _) = call(
        &app,
        &token,
        "PauseSubscription",
        json!({"subscriptionId": id}),
    )
    .await;
    assert_eq!(status, 200);
    let events: Vec<pb::RegistryEvent> = (0..5)
        .map(|i| pb::RegistryEvent {
            tags: vec![format!("v{i}")],
            ..harbor_sample()
        })
        .collect();
    let published = publish_registry(&app, &token, events).await;
    assert_eq!(published.deliveries_queued, 5, "queued while paused");
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 0, "held");
    let (status, _) = call(
        &app,
        &token,
        "ResumeSubscription",
        json!({"subscriptionId": id}),
    )
    .await;
    assert_eq!(status, 200);
    let dispatcher = app.dispatcher();
    for _ in 0..5 {
        assert_eq!(dispatcher.run_once().await.unwrap(), 1);
    }
    let got = receiver.wait_for(5, WAIT).await;
    let tags: Vec<String> = got
        .iter()
        .map(|c| body_json(c)["data"]["tags"][0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tags, vec!["v0", "v1", "v2", "v3", "v4"], "in publish order");

    let (status, _) = call(
        &app,
        &token,
        "UpdateSubscription",
        json!({"subscription": {"subscriptionId": id, "state": "SUBSCRIPTION_STATE_DISABLED"},
               "updateMask": "state"}),
    )
    .await;
    assert_eq!(status, 200);
    let published = publish_registry(&app, &token, vec![harbor_sample()]).await;
    assert_eq!(published.deliveries_queued, 0, "disabled: nothing queued");
    app.assert_owner_counts_true().await;
}

#[tokio::test]
async fn github_style_events_are_sent_as_github_sends_them_and_ping_carries_the_hook() {
    let app = spawn_app_with(MANUAL).await;
    let token = app.token(&["octo-org"]).await;
    let (form_rx, json_rx) = (Receiver::start().await, Receiver::start().await);
    let form_sub = create(
        &app,
        &token,
        json!({"owner": "octo-org", "repository": "Hello-World", "family": "EVENT_FAMILY_GITHUB",
               "eventTypes": ["push"], "url": format!("http://{}/hook", form_rx.addr),
               "format": "FORMAT_GITHUB",
               "formatOptions": {"githubContentType": "GITHUB_CONTENT_TYPE_FORM"}}),
    )
    .await;
    // Owner-wide, every event, JSON.
    let json_sub = create(
        &app,
        &token,
        json!({"owner": "octo-org", "family": "EVENT_FAMILY_GITHUB",
               "url": format!("http://{}/hook", json_rx.addr), "format": "FORMAT_GITHUB"}),
    )
    .await;
    let payload = r#"{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":"9e597618cb91aa2e7d0e0ef6cc3ad7d5b5c2a1b0","repository":{"full_name":"octo-org/Hello-World"},"sender":{"login":"octocat"},"note":"a & b < c"}"#;
    let publish = |name: &str| pb::PublishEvent {
        github: MessageField::some(pb::GitHubEvent {
            name: name.into(),
            owner: "octo-org".into(),
            repository: "Hello-World".into(),
            payload_json: payload.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let published = app
        .publisher(&token)
        .publish(pb::PublishRequest {
            events: vec![publish("push"), publish("issues")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_owned();
    let queued: Vec<i64> = published
        .events
        .iter()
        .map(|e| e.deliveries_queued)
        .collect();
    assert_eq!(
        queued,
        vec![2, 1],
        "push to both, issues to the owner-wide one"
    );
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 3);

    let form = form_rx.wait_for(1, WAIT).await;
    let request = &form[0];
    assert_eq!(
        request.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    let expected: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", payload)
        .finish();
    assert_eq!(std::str::from_utf8(&request.body).unwrap(), expected);
    assert_eq!(request.header("x-github-event"), "push");
    assert_eq!(
        request.header("x-github-delivery"),
        published.events[0].event_id
    );
    assert_eq!(
        request.header("x-github-hook-id"),
        form_sub["number"].as_str().unwrap()
    );
    assert_eq!(
        request.header("x-github-hook-installation-target-type"),
        "repository"
    );
    assert!(request.header("user-agent").starts_with("GitHub-Hookshot/"));
    let key = secret(&app, &token, &form_sub).await;
    let digests = python_checks(vec![
        (
            json!({"check": "hmac", "algorithm": "sha256", "key": key.expose()}),
            request,
        ),
        (
            json!({"check": "hmac", "algorithm": "sha1", "key": key.expose()}),
            request,
        ),
    ])
    .await;
    assert_eq!(
        request.header("x-hub-signature-256"),
        format!("sha256={}", digests[0].as_str().unwrap())
    );
    assert_eq!(
        request.header("x-hub-signature"),
        format!("sha1={}", digests[1].as_str().unwrap())
    );

    let mut raw = json_rx.wait_for(2, WAIT).await;
    raw.sort_by_key(|c| c.header("x-github-event").to_owned());
    assert_eq!(raw[0].header("x-github-event"), "issues");
    assert_eq!(
        std::str::from_utf8(&raw[1].body).unwrap(),
        payload,
        "byte for byte"
    );
    assert_eq!(
        raw[1].header("x-github-delivery"),
        published.events[0].event_id,
        "one GUID per event"
    );
    assert_eq!(
        raw[1].header("x-github-hook-installation-target-type"),
        "organization"
    );

    // Ping: GitHub's ping payload, recorded in the delivery log.
    let (status, ping) = call(
        &app,
        &token,
        "PingSubscription",
        json!({"subscriptionId": json_sub["subscriptionId"]}),
    )
    .await;
    assert_eq!(status, 200, "{ping}");
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 1);
    let all = json_rx.wait_for(3, WAIT).await;
    let pinged = all
        .iter()
        .find(|c| c.header("x-github-event") == "ping")
        .unwrap();
    let body = body_json(pinged);
    let number: i64 = json_sub["number"].as_str().unwrap().parse().unwrap();
    assert_eq!(body["hook_id"], number);
    assert_eq!(body["hook"]["id"], number);
    assert_eq!(body["hook"]["type"], "Organization");
    assert_eq!(body["hook"]["events"], json!(["*"]));
    assert_eq!(body["hook"]["config"]["content_type"], "json");
    assert!(body["zen"].is_string());
    assert_eq!(pinged.header("webhook-id"), ping["deliveryId"]);
    let (status, delivery) = app
        .rpc(
            "webhookd.v1.DeliveryService/GetDelivery",
            &token,
            json!({"deliveryId": ping["deliveryId"]}),
        )
        .await;
    assert_eq!(status, 200, "{delivery}");
    assert_eq!(delivery["delivery"]["state"], "DELIVERY_STATE_DELIVERED");
}

#[tokio::test]
async fn a_bsr_event_reaches_native_subscriptions_beside_bsr_webhooks() {
    let app = spawn_app_with(MANUAL).await;
    let token = app.token(&["acme"]).await;
    let (bsr, native, connect_json) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    app.create(&token, "acme", "petapis", &bsr.url()).await;
    let json_sub = create(
        &app,
        &token,
        json!({"owner": "acme", "family": "EVENT_FAMILY_BSR", "format": "FORMAT_JSON",
               "url": format!("http://{}/all", native.addr)}),
    )
    .await;
    create(
        &app,
        &token,
        json!({"owner": "acme", "repository": "petapis", "family": "EVENT_FAMILY_BSR",
               "format": "FORMAT_CONNECT", "formatOptions": {"connectJson": true},
               "url": connect_json.url()}),
    )
    .await;
    let event = webhookd::synthetic::repository_push("acme", "petapis", 7);
    let published = crate::delivery::publish(&app, &token, vec![(event.clone(), "")]).await;
    assert_eq!(published.deliveries_queued, 3);
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 3);
    let connect = bsr.wait_for(1, WAIT).await;
    use buffa::Message as _;
    assert_eq!(
        &connect[0].body[..],
        &event.encode_to_vec()[..],
        "unchanged for the BSR"
    );
    let envelope = native.wait_for(1, WAIT).await;
    let body = body_json(&envelope[0]);
    assert_eq!(body["type"], "repository.push");
    assert_eq!(body["data"]["event"], "WEBHOOK_EVENT_REPOSITORY_PUSH");
    // Connect JSON: the same EventRequest, as connect-go's JSON codec would send it.
    let sent = connect_json.wait_for(1, WAIT).await;
    assert_eq!(sent[0].header("content-type"), "application/json");
    assert_eq!(sent[0].header("connect-protocol-version"), "1");
    let decoded: webhookd::proto::buf::alpha::webhook::v1alpha1::EventRequest =
        serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(decoded, event);
    // A second publish finds the owner known: routed before the statement.
    let again = crate::delivery::publish(&app, &token, vec![(event, "")]).await;
    assert_eq!(again.deliveries_queued, 3);

    // A ping in the json format.
    let (status, ping) = call(
        &app,
        &token,
        "PingSubscription",
        json!({"subscriptionId": json_sub["subscriptionId"]}),
    )
    .await;
    assert_eq!(status, 200, "{ping}");
    app.dispatcher().run_once().await.unwrap();
    let got = native.wait_for(3, WAIT).await;
    let pinged = got
        .iter()
        .find(|c| c.header("webhook-id") == ping["deliveryId"])
        .expect("the ping arrived");
    let body = body_json(pinged);
    assert_eq!(body["type"], "ping");
    assert_eq!(body["data"]["subscription_id"], json_sub["subscriptionId"]);
    app.assert_owner_counts_true().await;
}

#[tokio::test]
async fn a_bad_registry_or_github_event_rejects_the_batch_naming_its_index() {
    let app = spawn_app_with(MANUAL).await;
    let token = app.token(&["test-webhook", "octo"]).await;
    let bad = [
        (
            json!({"registry": {"kind": "push", "owner": "test-webhook", "repository": "a"}}),
            "events[1]: registry.kind \"push\" is not a registry event type",
        ),
        (
            json!({"registry": {"kind": "artifact.pushed", "owner": "test-webhook", "repository": "a", "digest": "md5:x"}}),
            "events[1]: registry.digest",
        ),
        (
            json!({"registry": {"kind": "artifact.pushed", "owner": "test-webhook", "repository": "a", "tags": [".bad"]}}),
            "events[1]: registry.tags[0]",
        ),
        (
            json!({"registry": {"kind": "artifact.pushed", "owner": "Test", "repository": "a"}}),
            "events[1]: registry.owner",
        ),
        (
            json!({"github": {"name": "push", "owner": "octo", "repository": "r", "payloadJson": "[1]"}}),
            "events[1]: github.payload_json is not a JSON object",
        ),
        (
            json!({"github": {"name": "Push", "owner": "octo", "repository": "r", "payloadJson": "{}"}}),
            "events[1]: github.name",
        ),
        (
            json!({"github": {"name": "push", "owner": "octo", "repository": "r", "payloadJson": "{}"},
                "registry": {"kind": "artifact.pushed", "owner": "test-webhook", "repository": "a"}}),
            "events[1]: set exactly one of event, registry and github",
        ),
        (
            json!({}),
            "events[1]: one of event, registry or github is required",
        ),
    ];
    for (event, message) in bad {
        let good = json!({"registry": {"kind": "artifact.pushed", "owner": "test-webhook", "repository": "a"}});
        let (status, body) = app
            .rpc(
                "webhookd.v1.PublishService/Publish",
                &token,
                json!({"events": [good, event]}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["code"], "invalid_argument");
        let text = body["message"].as_str().unwrap();
        assert!(text.starts_with(message), "{text}");
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing stored");
}

#[tokio::test]
async fn angos_subscribers_get_the_requests_angos_emits_for_deletes_and_tags() {
    let app = spawn_app_with(MANUAL).await;
    let token = app.token(&["test-webhook"]).await;
    let angos = Receiver::start().await;
    subscribe(&app, &token, &angos, "FORMAT_ANGOS", json!({})).await;
    let event = |kind: &str, tags: &[&str]| pb::RegistryEvent {
        kind: kind.into(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        actor: MessageField::some(pb::Actor {
            internal: "prune".into(),
            ..Default::default()
        }),
        ..harbor_sample()
    };
    let published = publish_registry(
        &app,
        &token,
        vec![
            event("artifact.deleted", &["old"]), // by tag: manifest.delete + tag.delete
            event("artifact.deleted", &[]),      // by digest: manifest.delete only
            event("tag.created", &["stable"]),   // tag.create
            event("scan.completed", &[]),        // Angos has no such kind: nothing
        ],
    )
    .await;
    let queued: Vec<i64> = published
        .events
        .iter()
        .map(|e| e.deliveries_queued)
        .collect();
    assert_eq!(queued, vec![2, 1, 1, 0]);
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 4);
    let got = angos.wait_for(4, WAIT).await;
    let mut bodies: Vec<String> = got
        .iter()
        .map(|c| {
            let mut body = body_json(c);
            assert_eq!(body["kind"], c.header("x-registry-event"));
            assert_eq!(
                c.header("x-registry-signature-256"),
                "",
                "no token, no signature"
            );
            assert_eq!(body["actor"], json!({"internal": "prune"}));
            let object = body.as_object_mut().unwrap();
            object.remove("id");
            object.remove("timestamp");
            object.remove("actor");
            object.remove("namespace");
            object.remove("repository");
            body.to_string()
        })
        .collect();
    bodies.sort();
    let mut expected = vec![
        format!(r#"{{"digest":"{DIGEST}","kind":"manifest.delete","reference":"{DIGEST}"}}"#),
        r#"{"kind":"manifest.delete","reference":"old"}"#.to_owned(),
        format!(
            r#"{{"digest":"{DIGEST}","kind":"tag.create","reference":"stable","tag":"stable"}}"#
        ),
        r#"{"kind":"tag.delete","reference":"old","tag":"old"}"#.to_owned(),
    ];
    expected.sort();
    assert_eq!(bodies, expected);
}

#[tokio::test]
async fn webhookd_publish_makes_synthetic_registry_and_github_events() {
    let app = spawn_app_with(MANUAL).await;
    let token = app.token(&["library", "Octo-Org"]).await;
    let receiver = Receiver::start().await;
    for (owner, family, format) in [
        ("library", "EVENT_FAMILY_REGISTRY", "FORMAT_HARBOR"),
        ("Octo-Org", "EVENT_FAMILY_GITHUB", "FORMAT_GITHUB"),
    ] {
        create(
            &app,
            &token,
            json!({"owner": owner, "family": family, "format": format,
                   "url": format!("http://{}/hook", receiver.addr)}),
        )
        .await;
    }
    for (family, owner, repository) in [
        ("registry", "library", "team/nginx"),
        ("github", "Octo-Org", "Hello-World"),
    ] {
        let mut publish = std::process::Command::new(env!("CARGO_BIN_EXE_webhookd"));
        publish
            .args(["publish", "--family", family, "--owner", owner])
            .args(["--repository", repository, "--count", "2"])
            .env("DATABASE_URL", app.database_url())
            .env("RUST_LOG", "warn");
        let (code, out, err) = run(publish).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(err.contains("2 deliveries queued"), "{err}");
    }
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 4);
    let got = receiver.wait_for(4, WAIT).await;
    let harbor: Vec<&Captured> = got
        .iter()
        .filter(|c| c.header("x-github-event").is_empty())
        .collect();
    assert_eq!(harbor.len(), 2);
    let body = body_json(harbor[0]);
    assert_eq!(body["type"], "PUSH_ARTIFACT");
    assert_eq!(
        body["event_data"]["repository"]["repo_full_name"],
        "library/team/nginx"
    );
    let github: Vec<&Captured> = got
        .iter()
        .filter(|c| c.header("x-github-event") == "push")
        .collect();
    assert_eq!(github.len(), 2);
    assert_eq!(
        body_json(github[0])["repository"]["full_name"],
        "Octo-Org/Hello-World"
    );
}
