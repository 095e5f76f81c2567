//! Harbor's project webhook policies under /api/v2.0 (reference facts, C.1-C.3), driven by
//! Harbor's own Python clients (harbor-api-client, generated from Harbor's swagger, and
//! harborapi) and over plain HTTP: the policy object, Harbor's validation, status codes and
//! error bodies, pagination, and the deliveries of a policy's targets in Harbor's payloads.

use std::time::Duration;

use buffa::MessageField;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use webhookd::proto::webhookd::v1 as pb;

use crate::helpers::{TestApp, python, run, spawn_app_with};
use crate::receiver::{Receiver, Reply};

/// The project of Harbor's sample payload (reference facts, C.3).
const PROJECT: &str = "test-webhook";
const WAIT: Duration = Duration::from_secs(10);

/// Calls the Harbor face with basic auth (the token as a robot account's password).
async fn harbor(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = app
        .http
        .request(method, app.url(&format!("/api/v2.0{path}")))
        .basic_auth("robot$ci", Some(token));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

async fn app() -> (TestApp, String) {
    let app = spawn_app_with(&["--allow-insecure-callbacks", "--no-dispatch"]).await;
    let token = app.token(&[PROJECT]).await;
    (app, token)
}

fn policies() -> String {
    format!("/projects/{PROJECT}/webhook/policies")
}

/// Harbor's error body with one error.
fn harbor_error(code: &str, message: &str) -> Value {
    json!({"errors": [{"code": code, "message": message}]})
}

#[tokio::test]
async fn harbors_clients_manage_policies_through_the_base_url() {
    let (app, token) = app().await;
    let receiver = Receiver::start().await;
    let callback = format!("http://{}/hook", receiver.addr);
    let slack = format!("http://{}/slack", receiver.addr);
    let mut command = std::process::Command::new(python());
    command
        .arg("tests/clients/harbor_policies.py")
        .arg(format!("http://{}/api/v2.0", app.addr))
        .arg(&token)
        .arg(PROJECT)
        .arg(&callback)
        .arg(&slack);
    let (code, stdout, stderr) = run(command).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["create_status"], 201);
    let id = report["got"]["id"].as_i64().unwrap();
    assert_eq!(
        report["location"],
        format!("/api/v2.0/projects/{PROJECT}/webhook/policies/{id}")
    );
    let project_id = report["got"]["project_id"].as_i64().unwrap();
    assert!(project_id > 0);
    assert_eq!(
        report["got"],
        json!({
            "id": id, "name": "ci", "description": "CI pipeline", "project_id": project_id,
            "enabled": true, "event_types": ["PUSH_ARTIFACT", "SCANNING_COMPLETED"],
            "creator": "robot$ci", "times": true,
            "targets": [
                // The query and fragment dropped, as Harbor drops them.
                {"type": "http", "address": callback, "auth_header": "Bearer xyz",
                 "skip_cert_verify": false, "payload_format": "CloudEvents"},
                {"type": "slack", "address": slack, "auth_header": null,
                 "skip_cert_verify": false, "payload_format": null},
            ],
        })
    );
    assert_eq!(report["same_by_project_id"], true);
    assert_eq!(report["page_names"], json!(["audit", "ci"]));
    assert_eq!(report["total"], "3");
    assert_eq!(
        report["link"],
        format!(
            "</api/v2.0/projects/{PROJECT}/webhook/policies?page=2&page_size=2&sort=name>; \
             rel=\"next\""
        )
    );
    assert_eq!(report["fuzzy"], json!(["scans", "audit"]), "newest first");
    assert_eq!(report["enabled_only"], json!(["audit", "ci"]));
    assert_eq!(report["update_status"], 200);
    assert_eq!(
        report["updated"],
        json!({"description": "CI pipeline, v2", "event_types": ["PUSH_ARTIFACT"],
               "target_types": ["http", "teams"]})
    );
    assert_eq!(
        report["events"],
        json!({
            "event_type": ["PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT", "QUOTA_EXCEED",
                           "QUOTA_WARNING", "SCANNING_FAILED", "SCANNING_STOPPED",
                           "SCANNING_COMPLETED", "REPLICATION", "TAG_RETENTION"],
            "notify_type": ["http", "slack", "teams"],
            "payload_formats": [{"notify_type": "http", "formats": ["Default", "CloudEvents"]}],
        })
    );
    let mut triggers: Vec<String> = report["last_trigger"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("{} {} {}", t["policy_name"], t["event_type"], t["enabled"]))
        .collect();
    triggers.sort();
    assert_eq!(
        triggers,
        [
            r#""audit" "DELETE_ARTIFACT" true"#,
            r#""ci" "PUSH_ARTIFACT" true"#,
            r#""scans" "DELETE_ARTIFACT" false"#,
        ]
    );
    assert_eq!(
        report["duplicate"],
        json!({"status": 409, "body": harbor_error("CONFLICT", "the policy name audit already exists")})
    );
    assert_eq!(
        report["harborapi"],
        json!({
            "fetched_name": "from-harborapi", "disabled": true,
            "listed": ["audit", "ci", "from-harborapi", "scans"],
            "event_types": ["PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT", "QUOTA_EXCEED",
                            "QUOTA_WARNING", "SCANNING_FAILED", "SCANNING_STOPPED",
                            "SCANNING_COMPLETED", "REPLICATION", "TAG_RETENTION"],
            "triggers": 4, "gone": true,
        })
    );
    assert_eq!(report["deleted"], true);
    // Two policies left, one target each, both visible in the native API.
    let (status, listed) = app
        .rpc(
            "webhookd.v1.SubscriptionService/ListSubscriptions",
            &token,
            json!({"owner": PROJECT}),
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["subscriptions"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_input_gets_harbors_status_and_errors_body_and_writes_nothing() {
    let (app, token) = app().await;
    let other = app.token(&["someone-else"]).await;
    let address = "http://127.0.0.1:9/hook";
    let target = json!({"type": "http", "address": address});
    let good = json!({"name": "ci", "enabled": true, "event_types": ["PUSH_ARTIFACT"],
                      "targets": [target]});
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let bad_request = |m: &str| (StatusCode::BAD_REQUEST, harbor_error("BAD_REQUEST", m));
    let cases: Vec<(Value, (StatusCode, Value))> = vec![
        (
            with("targets", json!([])),
            bad_request("empty notification target with policy ci"),
        ),
        (
            with("event_types", json!([])),
            bad_request("empty event type"),
        ),
        (
            with("event_types", json!(["PUSH_ARTIFACT", "UPLOAD_CHART"])),
            bad_request("unsupported event type UPLOAD_CHART"),
        ),
        (
            with("targets", json!([{"type": "sms", "address": address}])),
            bad_request("unsupported target type sms with policy ci"),
        ),
        (
            with(
                "targets",
                json!([{"type": "slack", "address": address, "payload_format": "Default"}]),
            ),
            bad_request("set payload format is not allowed for slack"),
        ),
        (
            with(
                "targets",
                json!([{"type": "http", "address": address, "payload_format": "Binary"}]),
            ),
            bad_request("unsupported payload format type: Binary"),
        ),
        (
            with(
                "targets",
                json!([{"type": "http", "address": "ftp://example.com/x"}]),
            ),
            bad_request("invalid scheme: ftp"),
        ),
        (
            with("targets", json!([{"type": "http", "address": ""}])),
            bad_request("empty URL"),
        ),
    ];
    for (body, (status, expected)) in cases {
        let (got, _, answer) =
            harbor(&app, &token, Method::POST, &policies(), Some(body.clone())).await;
        assert_eq!((got, &answer), (status, &expected), "{body}");
    }
    // A body that is not a WebhookPolicy: what is wrong with it, and where.
    let (status, _, answer) = harbor(
        &app,
        &token,
        Method::POST,
        &policies(),
        Some(with("event_types", json!("PUSH_ARTIFACT"))),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = answer["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "parsing policy body failed, because invalid type: string \"PUSH_ARTIFACT\", \
             expected a sequence at line 1"
        ),
        "{message}"
    );
    // A project the token does not cover, named or numbered: Harbor's 403.
    let (status, _, answer) =
        harbor(&app, &other, Method::POST, &policies(), Some(good.clone())).await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::FORBIDDEN,
            harbor_error("FORBIDDEN", "forbidden")
        )
    );
    let (status, _, _) = harbor(
        &app,
        &other,
        Method::GET,
        "/projects/1/webhook/policies",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // No credentials at all: 401.
    let response = app
        .http
        .get(app.url(&format!("/api/v2.0{}", policies())))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        harbor_error("UNAUTHORIZED", "unauthorized")
    );
    // Paging beyond Harbor's swagger; an unknown or malformed policy id.
    let (status, _, answer) = harbor(
        &app,
        &token,
        Method::GET,
        &format!("{}?page_size=101", policies()),
        None,
    )
    .await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            harbor_error(
                "UNPROCESSABLE_ENTITY",
                "page_size in query should be less than or equal to 100"
            )
        )
    );
    for method in [Method::GET, Method::DELETE] {
        let (status, _, answer) = harbor(
            &app,
            &token,
            method,
            &format!("{}/999999", policies()),
            None,
        )
        .await;
        assert_eq!(
            (status, answer),
            (
                StatusCode::NOT_FOUND,
                harbor_error("NOT_FOUND", "webhook policy 999999 not found")
            )
        );
    }
    let (status, _, _) = harbor(
        &app,
        &token,
        Method::PUT,
        &format!("{}/x", policies()),
        Some(good.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Nothing was written by any of them.
    let (policies_stored, webhooks): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM harbor_policies), (SELECT count(*) FROM webhooks)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((policies_stored, webhooks), (0, 0));

    // A bad update of a good policy changes nothing either.
    let (status, headers, _) =
        harbor(&app, &token, Method::POST, &policies(), Some(good.clone())).await;
    assert_eq!(status, StatusCode::CREATED);
    let location = headers["location"].to_str().unwrap().to_owned();
    let path = location.strip_prefix("/api/v2.0").unwrap();
    let (_, _, before) = harbor(&app, &token, Method::GET, path, None).await;
    let (status, _, _) = harbor(
        &app,
        &token,
        Method::PUT,
        path,
        Some(with("event_types", json!(["NOPE"]))),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, _, after) = harbor(&app, &token, Method::GET, path, None).await;
    assert_eq!(before, after);
}

#[tokio::test]
async fn a_policys_targets_get_harbors_payloads_and_a_disabled_policy_gets_nothing() {
    let (app, token) = app().await;
    let default = Receiver::start().await;
    let cloudevents = Receiver::start().await;
    let chat = Receiver::start().await;
    // The Slack target's first answer is a failure: its execution goes on, retrying.
    chat.script([Reply::Status(500)]);
    let body = json!({
        "name": "all-formats", "enabled": true, "event_types": ["PUSH_ARTIFACT"],
        "targets": [
            {"type": "http", "address": format!("http://{}/default", default.addr),
             "auth_header": "Basic YWRtaW46cGFzcw=="},
            {"type": "http", "address": format!("http://{}/ce", cloudevents.addr),
             "payload_format": "CloudEvents"},
            {"type": "slack", "address": format!("http://{}/slack", chat.addr),
             "auth_header": "Bearer not-for-slack"},
        ],
    });
    let (status, headers, _) = harbor(&app, &token, Method::POST, &policies(), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED);
    let location = headers["location"].to_str().unwrap().to_owned();
    let policy_id: i64 = location.rsplit('/').next().unwrap().parse().unwrap();
    let disabled = json!({
        "name": "off", "enabled": false, "event_types": ["PUSH_ARTIFACT"],
        "targets": [{"type": "http", "address": format!("http://{}/off", default.addr)}],
    });
    let (status, _, _) = harbor(&app, &token, Method::POST, &policies(), Some(disabled)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, _, policy) = harbor(
        &app,
        &token,
        Method::GET,
        location.strip_prefix("/api/v2.0").unwrap(),
        None,
    )
    .await;
    let project_id = policy["project_id"].as_i64().unwrap();

    let push = crate::formats::harbor_sample();
    let published = app
        .publisher(&token)
        .publish(pb::PublishRequest {
            events: vec![pb::PublishEvent {
                registry: MessageField::some(push),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_owned();
    assert_eq!(
        published.deliveries_queued, 3,
        "the disabled policy gets nothing"
    );
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 3);

    // Harbor's Default payload, byte for byte, with the target's auth header.
    let sent = default.wait_for(1, WAIT).await;
    assert_eq!(sent[0].header("content-type"), "application/json");
    assert_eq!(sent[0].header("authorization"), "Basic YWRtaW46cGFzcw==");
    assert_eq!(
        std::str::from_utf8(&sent[0].body).unwrap(),
        crate::formats::harbor_sample_default_body()
    );
    assert!(
        !sent[0].header("webhook-signature").is_empty(),
        "webhookd signs"
    );

    // CloudEvents, parsed by the CloudEvents SDK, with the policy's source.
    let ce = cloudevents.wait_for(1, WAIT).await;
    assert_eq!(ce[0].header("content-type"), "application/cloudevents+json");
    let parsed =
        crate::formats::python_checks(vec![(json!({"check": "cloudevents"}), &ce[0])]).await;
    let attributes = &parsed[0]["attributes"];
    assert_eq!(attributes["type"], "harbor.artifact.pushed");
    assert_eq!(
        attributes["source"],
        format!("/projects/{project_id}/webhook/policies/{policy_id}")
    );
    assert_eq!(attributes["time"], "2020-04-15T03:45:08Z");
    assert_eq!(attributes["operator"], "admin");
    assert_eq!(
        parsed[0]["data"]["repository"]["repo_full_name"],
        "test-webhook/debian"
    );

    // Harbor's six Slack sections, without the auth header.
    let sent = chat.wait_for(1, WAIT).await;
    assert_eq!(
        sent[0].header("authorization"),
        "",
        "Harbor sends Slack no auth header"
    );
    let message: Value = serde_json::from_slice(&sent[0].body).unwrap();
    let blocks = message["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 6, "{message}");
    assert!(
        blocks
            .iter()
            .all(|b| b["type"] == "section" && b["text"]["type"] == "mrkdwn")
    );
    assert_eq!(blocks[0]["text"]["text"], "*Harbor webhook events*");
    assert_eq!(blocks[1]["text"]["text"], "*event_type:* PUSH_ARTIFACT");
    assert_eq!(blocks[3]["text"]["text"], "*operator:* admin");

    // The last trigger of the policy's event type is the push's.
    let (_, _, triggers) = harbor(
        &app,
        &token,
        Method::GET,
        &format!("/projects/{PROJECT}/webhook/lasttrigger"),
        None,
    )
    .await;
    let trigger = triggers
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["policy_name"] == "all-formats")
        .unwrap();
    assert_ne!(
        trigger["last_trigger_time"], "0001-01-01T00:00:00Z",
        "{triggers}"
    );
    let off = triggers
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["policy_name"] == "off")
        .unwrap();
    assert_eq!(off["last_trigger_time"], "0001-01-01T00:00:00Z");
    assert_eq!(off["enabled"], false);

    // The executions, their tasks and logs, and the deprecated jobs, through Harbor's
    // clients.
    let mut command = std::process::Command::new(python());
    command
        .arg("tests/clients/harbor_executions.py")
        .arg(format!("http://{}/api/v2.0", app.addr))
        .arg(&token)
        .arg(PROJECT)
        .arg(policy_id.to_string());
    let (code, stdout, stderr) = run(command).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["total"], "3");
    let executions = report["executions"].as_array().unwrap();
    let by_vendor = |vendor: &str, status: &str| {
        executions
            .iter()
            .filter(|e| e["vendor_type"] == vendor && e["status"] == status)
            .count()
    };
    assert_eq!(
        (
            by_vendor("WEBHOOK", "Success"),
            by_vendor("SLACK", "Running")
        ),
        (2, 1),
        "{report}"
    );
    for execution in executions {
        assert_eq!(execution["vendor_id"], policy_id);
        assert_eq!(execution["trigger"], "EVENT");
        assert_eq!(execution["event_type"], "PUSH_ARTIFACT");
        assert_eq!(execution["task_count"], 1);
        assert_eq!(execution["tasks"].as_array().unwrap().len(), 1);
        let log = execution["log"].as_str().unwrap();
        assert!(
            log.contains("send request to remote endpoint, body: {"),
            "{log}"
        );
        if execution["vendor_type"] == "SLACK" {
            assert_eq!(execution["status_message"], "abnormal response code: 500");
            assert_eq!(execution["error_task_count"], 1);
            assert_eq!(execution["ended"], false);
            assert_eq!(execution["tasks"][0]["status"], "Error");
            assert!(log.contains("[ERROR] abnormal response code: 500"), "{log}");
        } else {
            assert_eq!(execution["ended"], true);
            assert_eq!(execution["tasks"][0]["status"], "Success");
            assert!(log.contains("receive response, status code: 200"), "{log}");
            // The payload is the body sent, exactly.
            let payload: Value =
                serde_json::from_str(execution["payload"].as_str().unwrap()).unwrap();
            assert!(
                payload["type"] == "PUSH_ARTIFACT" || payload["type"] == "harbor.artifact.pushed",
                "{payload}"
            );
        }
    }
    let jobs = report["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3);
    assert!(
        jobs.iter()
            .all(|j| j["policy_id"] == policy_id && j["event_type"] == "PUSH_ARTIFACT")
    );

    // The native API shows the targets but leaves their routing to the policy.
    let (status, listed) = app
        .rpc(
            "webhookd.v1.SubscriptionService/ListSubscriptions",
            &token,
            json!({"owner": PROJECT}),
        )
        .await;
    assert_eq!(status, 200);
    let first = &listed["subscriptions"][0];
    let (status, refused) = app
        .rpc(
            "webhookd.v1.SubscriptionService/UpdateSubscription",
            &token,
            json!({"subscription": {"subscriptionId": first["subscriptionId"],
                                    "eventTypes": ["artifact.deleted"]},
                   "updateMask": "eventTypes"}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["code"], "failed_precondition");
    let (status, refused) = app
        .rpc(
            "webhookd.v1.SubscriptionService/DeleteSubscription",
            &token,
            json!({"subscriptionId": first["subscriptionId"]}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["code"], "failed_precondition");
}
