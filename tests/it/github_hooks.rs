//! GitHub's REST hooks API under /api/v3 (reference facts, A.4), driven over plain HTTP as
//! curl drives it and by PyGithub: the hook object, GitHub's status codes and error bodies,
//! pagination, the secret rules, pings and tests, and deliveries signed with the hook's
//! own secret.

use std::time::Duration;

use hmac::{Hmac, Mac as _};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{TestApp, python, run, spawn_app_with};
use crate::receiver::{Captured, Receiver};

const OWNER: &str = "Octo-Org";
const REPO: &str = "Hello-World";

/// Calls the GitHub face with basic auth (the token as the password, as `curl -u` sends it).
async fn gh(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> Answer {
    let mut request = app
        .http
        .request(method, app.url(&format!("/api/v3{path}")))
        .basic_auth("octocat", Some(token));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
    }
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
    text: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// The hex HMAC-SHA256 of `body` under `key`, as `X-Hub-Signature-256` carries it.
pub fn hex_hmac(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn app() -> (TestApp, String) {
    let app = spawn_app_with(&[
        "--allow-insecure-callbacks",
        "--poll-interval",
        "100ms",
        "--wake-on-publish",
    ])
    .await;
    let token = app.token(&[OWNER]).await;
    (app, token)
}

fn hooks() -> String {
    format!("/repos/{OWNER}/{REPO}/hooks")
}

#[tokio::test]
async fn a_hook_is_created_read_listed_edited_and_deleted_as_github_does_it() {
    let (app, token) = app().await;
    let receiver = Receiver::start().await;
    let url = format!("http://{}/hook", receiver.addr);
    let created = gh(
        &app,
        &token,
        Method::POST,
        &hooks(),
        Some(json!({"name": "web", "events": ["push", "pull_request"],
                    "config": {"url": url, "content_type": "json", "secret": "It's a Secret to Everybody"}})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let hook = &created.body;
    let id = hook["id"].as_i64().unwrap();
    let base = format!("http://{}/api/v3", app.addr);
    let hook_url = format!("{base}/repos/{OWNER}/{REPO}/hooks/{id}");
    assert_eq!(created.header("location"), hook_url);
    assert_eq!(
        created.header("content-type"),
        "application/json; charset=utf-8"
    );
    // GitHub's keys, in GitHub's order.
    let order = [
        "type",
        "id",
        "name",
        "active",
        "events",
        "config",
        "updated_at",
        "created_at",
        "url",
        "test_url",
        "ping_url",
        "deliveries_url",
        "last_response",
    ];
    let mut at = 0;
    for key in order {
        let found = created.text[at..].find(&format!("\"{key}\":"));
        at += found.unwrap_or_else(|| panic!("{key} out of order: {}", created.text));
    }
    assert_eq!(hook.as_object().unwrap().len(), order.len());
    assert_eq!(hook["type"], "Repository");
    assert_eq!(hook["name"], "web");
    assert_eq!(hook["active"], true);
    assert_eq!(hook["events"], json!(["push", "pull_request"]));
    assert_eq!(
        hook["config"],
        json!({"content_type": "json", "insecure_ssl": "0", "secret": "********", "url": url})
    );
    assert_eq!(hook["test_url"], format!("{hook_url}/test"));
    assert_eq!(hook["ping_url"], format!("{hook_url}/pings"));
    assert_eq!(hook["deliveries_url"], format!("{hook_url}/deliveries"));
    assert_eq!(
        hook["last_response"],
        json!({"code": null, "status": "unused", "message": null})
    );
    let created_at = hook["created_at"].as_str().unwrap();
    assert!(
        created_at.len() == 20 && created_at.ends_with('Z'),
        "{created_at}"
    );

    // GitHub pings a new hook, signed with the hook's own secret.
    let pings = receiver.wait_for(1, Duration::from_secs(10)).await;
    let ping = &pings[0];
    assert_eq!(ping.header("x-github-event"), "ping");
    assert_eq!(ping.header("x-github-hook-id"), id.to_string());
    let target_id: u64 = ping
        .header("x-github-hook-installation-target-id")
        .parse()
        .unwrap();
    assert!(target_id > 0 && target_id < 1 << 53);
    assert_eq!(
        ping.header("x-github-hook-installation-target-type"),
        "repository"
    );
    assert_eq!(ping.header("content-type"), "application/json");
    assert_eq!(
        ping.header("x-hub-signature-256"),
        format!(
            "sha256={}",
            hex_hmac("It's a Secret to Everybody", &ping.body)
        )
    );
    assert_eq!(
        ping.header("webhook-signature"),
        "",
        "GitHub sends no Standard Webhooks headers"
    );
    let payload: Value = serde_json::from_slice(&ping.body).unwrap();
    assert_eq!(payload["hook_id"], id);

    // Get and list.
    let got = gh(
        &app,
        &token,
        Method::GET,
        &format!("{}/{id}", hooks()),
        None,
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["id"], id);
    let second = gh(
        &app,
        &token,
        Method::POST,
        &hooks(),
        Some(json!({"config": {"url": format!("{url}/2")}})),
    )
    .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.text);
    // The defaults: events ["push"], content type form, active.
    assert_eq!(second.body["events"], json!(["push"]));
    assert_eq!(second.body["config"]["content_type"], "form");
    assert!(second.body["config"].get("secret").is_none());
    let page = gh(
        &app,
        &token,
        Method::GET,
        &format!("{}?per_page=1", hooks()),
        None,
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body.as_array().unwrap().len(), 1);
    assert_eq!(page.body[0]["id"], id);
    let list_url = format!("{base}/repos/{OWNER}/{REPO}/hooks");
    assert_eq!(
        page.header("link"),
        format!(
            "<{list_url}?per_page=1&page=2>; rel=\"next\", <{list_url}?per_page=1&page=2>; rel=\"last\""
        )
    );
    let page2 = gh(
        &app,
        &token,
        Method::GET,
        &format!("{}?per_page=1&page=2", hooks()),
        None,
    )
    .await;
    assert_eq!(page2.body[0]["id"], second.body["id"]);

    // Edit: add and remove events; the config endpoint keeps what it is not given.
    let edited = gh(
        &app,
        &token,
        Method::PATCH,
        &format!("{}/{id}", hooks()),
        Some(json!({"add_events": ["issues"], "remove_events": ["pull_request"]})),
    )
    .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.text);
    assert_eq!(edited.body["events"], json!(["push", "issues"]));
    assert_eq!(edited.body["config"]["secret"], "********");
    let config = gh(
        &app,
        &token,
        Method::PATCH,
        &format!("{}/{id}/config", hooks()),
        Some(json!({"insecure_ssl": "1"})),
    )
    .await;
    assert_eq!(config.status, StatusCode::OK, "{}", config.text);
    assert_eq!(
        config.body,
        json!({"content_type": "json", "insecure_ssl": "1", "secret": "********", "url": url})
    );
    // Editing the hook's whole config without its secret removes the secret (GitHub's
    // documented rule), and deliveries go unsigned.
    let replaced = gh(
        &app,
        &token,
        Method::PATCH,
        &format!("{}/{id}", hooks()),
        Some(json!({"config": {"url": url, "content_type": "json"}})),
    )
    .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
    assert!(replaced.body["config"].get("secret").is_none());
    assert_eq!(replaced.body["config"]["insecure_ssl"], "0");
    let pinged = gh(
        &app,
        &token,
        Method::POST,
        &format!("{}/{id}/pings", hooks()),
        None,
    )
    .await;
    assert_eq!(pinged.status, StatusCode::NO_CONTENT);
    let pings = receiver.wait_for(3, Duration::from_secs(10)).await;
    let unsigned: Vec<&Captured> = pings
        .iter()
        .filter(|c| c.header("x-github-hook-id") == id.to_string())
        .collect();
    assert_eq!(unsigned.len(), 2);
    assert_eq!(unsigned[1].header("x-hub-signature-256"), "");
    assert_eq!(unsigned[1].header("x-hub-signature"), "");

    // Deactivate; the native API sees it as disabled; delete.
    let inactive = gh(
        &app,
        &token,
        Method::PATCH,
        &format!("{}/{id}", hooks()),
        Some(json!({"active": false})),
    )
    .await;
    assert_eq!(inactive.body["active"], false);
    let (status, listed) = crate::subscriptions::call(
        &app,
        &token,
        "ListSubscriptions",
        json!({"owner": OWNER, "repository": REPO}),
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    let native = listed["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["number"].as_str() == Some(id.to_string().as_str()))
        .unwrap()
        .clone();
    assert_eq!(native["managedBy"], "github");
    assert_eq!(native["family"], "EVENT_FAMILY_GITHUB");
    assert_eq!(native["format"], "FORMAT_GITHUB");
    assert_eq!(native["state"], "SUBSCRIPTION_STATE_DISABLED");
    let (status, refused) = crate::subscriptions::call(
        &app,
        &token,
        "UpdateSubscription",
        json!({"subscription": {"subscriptionId": native["subscriptionId"], "format": "FORMAT_JSON"},
               "updateMask": "format"}),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["code"], "failed_precondition");
    let deleted = gh(
        &app,
        &token,
        Method::DELETE,
        &format!("{}/{id}", hooks()),
        None,
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = gh(
        &app,
        &token,
        Method::GET,
        &format!("{}/{id}", hooks()),
        None,
    )
    .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(
        gone.body,
        json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest/repos/webhooks"})
    );
}

#[tokio::test]
async fn bad_input_gets_githubs_status_and_body_and_writes_nothing() {
    let (app, token) = app().await;
    let receiver = Receiver::start().await;
    let url = format!("http://{}/hook", receiver.addr);
    let first = gh(
        &app,
        &token,
        Method::POST,
        &hooks(),
        Some(json!({"events": ["push"], "config": {"url": url, "content_type": "json"}})),
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let validation = |message: &str| {
        json!({"message": "Validation Failed",
               "documentation_url": "https://docs.github.com/rest/repos/webhooks",
               "errors": [{"resource": "Hook", "code": "custom", "message": message}]})
    };
    let cases: Vec<(Value, StatusCode, Option<Value>)> = vec![
        (
            json!({"events": ["*"], "config": {"url": url, "content_type": "json"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(validation("Hook already exists on this repository")),
        ),
        (
            json!({"config": {"content_type": "json"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(validation("Config must contain URL for webhooks")),
        ),
        (
            json!({"colour": "red", "config": {"url": url}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(
                json!({"message": "Invalid request.\n\n\"colour\" is not a permitted key.",
                        "documentation_url": "https://docs.github.com/rest/repos/webhooks"}),
            ),
        ),
        (
            json!({"active": "yes", "config": {"url": url}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            json!({"name": "jenkins", "config": {"url": url}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            json!({"config": {"url": url, "insecure_ssl": "2"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            json!({"events": ["Push!"], "config": {"url": url}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            json!({"events": [], "config": {"url": url}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
    ];
    for (body, status, expected) in cases {
        let answer = gh(&app, &token, Method::POST, &hooks(), Some(body.clone())).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.text);
        if let Some(expected) = expected {
            assert_eq!(answer.body, expected, "{body}");
        }
    }
    let not_a_url = gh(
        &app,
        &token,
        Method::POST,
        &hooks(),
        Some(json!({"config": {"url": "not a url"}})),
    )
    .await;
    assert_eq!(not_a_url.status, StatusCode::UNPROCESSABLE_ENTITY);
    let message = not_a_url.body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("The URL you've entered is not valid."),
        "{message}"
    );
    let id = first.body["id"].as_i64().unwrap();
    let emptied = gh(
        &app,
        &token,
        Method::PATCH,
        &format!("{}/{id}", hooks()),
        Some(json!({"remove_events": ["push"]})),
    )
    .await;
    assert_eq!(
        emptied.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        emptied.text
    );
    // Malformed JSON is GitHub's 400.
    let response = app
        .http
        .post(app.url(&format!("/api/v3{}", hooks())))
        .basic_auth("x", Some(&token))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "Problems parsing JSON");
    // Ids that are not integers, another owner's hooks, no token, a bad token.
    for path in [
        format!("{}/abc", hooks()),
        format!("{}/99999999", hooks()),
        "/repos/someone-else/repo/hooks".to_owned(),
    ] {
        let answer = gh(&app, &token, Method::GET, &path, None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
    }
    let anonymous = app
        .http
        .get(app.url(&format!("/api/v3{}", hooks())))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["message"], "Requires authentication");
    let bad = app
        .http
        .get(app.url(&format!("/api/v3{}", hooks())))
        .header("authorization", "token whd_not-a-real-token")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["message"], "Bad credentials");
    // Nothing was written by any of them: one hook, one ping.
    let listed = gh(&app, &token, Method::GET, &hooks(), None).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    assert_eq!(listed.body[0]["events"], json!(["push"]));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM webhooks")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn a_test_resends_the_latest_push_and_pushes_are_signed_with_the_hooks_secret() {
    let (app, token) = app().await;
    let receiver = Receiver::start().await;
    let url = format!("http://{}/hook", receiver.addr);
    let created = gh(
        &app,
        &token,
        Method::POST,
        &hooks(),
        Some(json!({"active": false, "config": {"url": url, "secret": "s3cr3t"}})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["active"], false);
    let id = created.body["id"].as_i64().unwrap();
    let (status, answer) = app
        .rpc(
            "webhookd.v1.PublishService/Publish",
            &token,
            json!({"events": [{"github": {"name": "push", "owner": OWNER, "repository": REPO,
                   "payloadJson": "{\"ref\":\"refs/heads/main\"}"}}]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    // Inactive: neither the ping at creation nor the push reached it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.captured().len(), 0);
    let active = gh(
        &app,
        &token,
        Method::PATCH,
        &format!("{}/{id}", hooks()),
        Some(json!({"active": true})),
    )
    .await;
    assert_eq!(active.status, StatusCode::OK, "{}", active.text);
    let tested = gh(
        &app,
        &token,
        Method::POST,
        &format!("{}/{id}/tests", hooks()),
        None,
    )
    .await;
    assert_eq!(tested.status, StatusCode::NO_CONTENT);
    let sent = receiver.wait_for(1, Duration::from_secs(10)).await;
    let push = &sent[0];
    assert_eq!(push.header("x-github-event"), "push");
    assert_eq!(
        push.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        push.header("x-hub-signature-256"),
        format!("sha256={}", hex_hmac("s3cr3t", &push.body))
    );
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&push.body)
        .into_owned()
        .collect();
    assert_eq!(form[0].0, "payload");
    assert_eq!(form[0].1, "{\"ref\":\"refs/heads/main\"}");
}

#[tokio::test]
async fn pygithub_manages_repository_hooks_through_the_base_url() {
    let (app, token) = app().await;
    let receiver = Receiver::start().await;
    let mut command = std::process::Command::new(python());
    command
        .arg("tests/clients/pygithub_hooks.py")
        .arg(format!("http://{}/api/v3", app.addr))
        .arg(&token)
        .arg(format!("{OWNER}/{REPO}"))
        .arg(format!("http://{}/hook", receiver.addr));
    let (code, stdout, stderr) = run(command).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["created_events"], json!(["push", "issues"]));
    assert_eq!(report["listed"], 1);
    assert_eq!(
        report["edited_events"],
        json!(["push", "issues", "release"])
    );
    assert_eq!(report["config_secret"], "********");
    assert_eq!(report["deliveries"], json!(["ping", "ping"]));
    assert_eq!(report["delivery_guid_matches"], true);
    assert_eq!(report["delivery_request_event"], "ping");
    assert_eq!(report["redelivered"], true);
    assert_eq!(report["deleted"], true);
    // The ping at creation and the one PyGithub asked for.
    let pings = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert!(pings.iter().all(|c| c.header("x-github-event") == "ping"));
}

#[tokio::test]
async fn an_organization_hook_gets_every_repositorys_events() {
    let (app, token) = app().await;
    let receiver = Receiver::start().await;
    let url = format!("http://{}/hook", receiver.addr);
    let path = format!("/orgs/{OWNER}/hooks");
    let created = gh(
        &app,
        &token,
        Method::POST,
        &path,
        Some(json!({"events": ["push"], "config": {"url": url, "content_type": "json"}})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let hook = &created.body;
    assert_eq!(hook["type"], "Organization");
    let id = hook["id"].as_i64().unwrap();
    assert_eq!(
        hook["url"],
        format!("http://{}/api/v3/orgs/{OWNER}/hooks/{id}", app.addr)
    );
    assert!(hook.get("test_url").is_none() && hook.get("last_response").is_none());
    let again = gh(
        &app,
        &token,
        Method::POST,
        &path,
        Some(json!({"events": ["push", "issues"], "config": {"url": url, "content_type": "json"}})),
    )
    .await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        again.body["errors"][0]["message"],
        "Hook already exists on this organization"
    );
    // Not a repository hook.
    let as_repo = gh(
        &app,
        &token,
        Method::GET,
        &format!("/repos/{OWNER}/{REPO}/hooks/{id}"),
        None,
    )
    .await;
    assert_eq!(as_repo.status, StatusCode::NOT_FOUND);
    let (status, answer) = app
        .rpc(
            "webhookd.v1.PublishService/Publish",
            &token,
            json!({"events": [
                {"github": {"name": "push", "owner": OWNER, "repository": "one", "payloadJson": "{}"}},
                {"github": {"name": "push", "owner": OWNER, "repository": "two", "payloadJson": "{}"}}]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let sent = receiver.wait_for(3, Duration::from_secs(10)).await;
    let pushes = sent
        .iter()
        .filter(|c| c.header("x-github-event") == "push")
        .count();
    assert_eq!(pushes, 2);
    assert!(
        sent.iter()
            .all(|c| c.header("x-github-hook-installation-target-type") == "organization")
    );
}

#[tokio::test]
async fn deliveries_are_listed_shown_and_redelivered_as_github_shows_them() {
    let app = spawn_app_with(&[
        "--allow-insecure-callbacks",
        "--poll-interval",
        "100ms",
        "--wake-on-publish",
        "--retry-schedule",
        "10ms",
    ])
    .await;
    let token = app.token(&[OWNER]).await;
    let receiver = Receiver::start().await;
    // The ping fails once, then succeeds on its retry.
    receiver.script([crate::receiver::Reply::Status(500)]);
    let url = format!("http://{}/hook", receiver.addr);
    let created = gh(
        &app,
        &token,
        Method::POST,
        &hooks(),
        Some(json!({"config": {"url": url, "content_type": "json", "secret": "k"}})),
    )
    .await;
    let id = created.body["id"].as_i64().unwrap();
    receiver.wait_for(2, Duration::from_secs(10)).await;
    let payload = r#"{"ref":"refs/heads/main","action":"pushed"}"#;
    let (status, answer) = app
        .rpc(
            "webhookd.v1.PublishService/Publish",
            &token,
            json!({"events": [{"github": {"name": "push", "owner": OWNER, "repository": REPO,
                   "payloadJson": payload}}]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    receiver.wait_for(3, Duration::from_secs(10)).await;
    let deliveries = format!("{}/{id}/deliveries", hooks());
    // Attempts are recorded a moment after they are answered.
    let mut listed = Value::Null;
    for _ in 0..50 {
        listed = gh(&app, &token, Method::GET, &deliveries, None).await.body;
        if listed.as_array().is_some_and(|l| l.len() == 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let items = listed.as_array().unwrap();
    assert_eq!(items.len(), 3, "{listed}");
    let (push, ping_ok, ping_failed) = (&items[0], &items[1], &items[2]);
    assert_eq!(push["event"], "push");
    assert_eq!(push["action"], "pushed");
    assert_eq!(push["status_code"], 200);
    assert_eq!(push["status"], "OK");
    assert_eq!(ping_ok["event"], "ping");
    assert_eq!(ping_failed["status_code"], 500);
    assert_eq!(ping_failed["status"], "Internal Server Error");
    assert_eq!(ping_ok["guid"], ping_failed["guid"]);
    assert_ne!(ping_ok["id"], ping_failed["id"]);
    assert_eq!(push["redelivery"], false);
    assert!(push["duration"].is_number() && push["installation_id"].is_null());

    // Pages follow the Link header's cursor; status filters.
    let first = gh(
        &app,
        &token,
        Method::GET,
        &format!("{deliveries}?per_page=2"),
        None,
    )
    .await;
    assert_eq!(first.body.as_array().unwrap().len(), 2);
    let link = first.header("link").to_owned();
    let next = link
        .strip_prefix('<')
        .and_then(|l| l.split_once(">; rel=\"next\""))
        .map(|(u, _)| u.to_owned())
        .unwrap_or_else(|| panic!("{link}"));
    let rest: Value = app
        .http
        .get(&next)
        .basic_auth("x", Some(&token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest.as_array().unwrap().len(), 1);
    assert_eq!(rest[0]["id"], ping_failed["id"]);
    let failures = gh(
        &app,
        &token,
        Method::GET,
        &format!("{deliveries}?status=failure"),
        None,
    )
    .await;
    assert_eq!(failures.body.as_array().unwrap().len(), 1);
    assert_eq!(failures.body[0]["id"], ping_failed["id"]);
    let bad = gh(
        &app,
        &token,
        Method::GET,
        &format!("{deliveries}?status=maybe"),
        None,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // One delivery, with what was sent and answered.
    let push_id = push["id"].as_i64().unwrap();
    let detail = gh(
        &app,
        &token,
        Method::GET,
        &format!("{deliveries}/{push_id}"),
        None,
    )
    .await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.text);
    let detail = detail.body;
    assert_eq!(detail["id"], push_id);
    assert_eq!(detail["guid"], push["guid"]);
    assert_eq!(detail["url"], url);
    assert_eq!(detail["request"]["headers"]["x-github-event"], "push");
    assert_eq!(
        detail["request"]["headers"]["x-github-delivery"],
        push["guid"]
    );
    assert_eq!(
        detail["request"]["payload"],
        serde_json::from_str::<Value>(payload).unwrap()
    );
    assert!(detail["response"]["payload"].is_string(), "{detail}");
    // A JSON hook's body is the event's payload byte for byte: the log keeps no copy.
    let stored: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT a.request_body FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
         JOIN events e ON e.id = d.event_id WHERE e.event_type = 'push'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored, None);
    assert!(detail["response"]["headers"].is_object(), "{detail}");

    // Redeliver: 202, the same guid, a new id, redelivery true.
    let redelivered = gh(
        &app,
        &token,
        Method::POST,
        &format!("{deliveries}/{push_id}/attempts"),
        None,
    )
    .await;
    assert_eq!(
        redelivered.status,
        StatusCode::ACCEPTED,
        "{}",
        redelivered.text
    );
    assert_eq!(redelivered.body, json!({}));
    let sent = receiver.wait_for(4, Duration::from_secs(10)).await;
    assert_eq!(sent[3].header("x-github-delivery"), push["guid"]);
    let mut newest = Value::Null;
    for _ in 0..50 {
        newest = gh(&app, &token, Method::GET, &deliveries, None).await.body[0].clone();
        if newest["id"] != push["id"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(newest["guid"], push["guid"]);
    assert_ne!(newest["id"], push["id"]);
    assert_eq!(newest["redelivery"], true);

    // Ids that are not this hook's.
    for path in [
        format!("{deliveries}/99999999"),
        format!("{deliveries}/abc"),
        format!("{}/{}/deliveries/{push_id}", hooks(), id + 1000),
    ] {
        let answer = gh(&app, &token, Method::GET, &path, None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
    }
}

/// Node.js, for the octokit clients.
pub fn node() -> std::path::PathBuf {
    crate::helpers::tool("WEBHOOKD_TEST_NODE", ".tools/node", "node")
}

#[tokio::test]
async fn octokit_manages_repository_hooks_and_verifies_their_signatures() {
    let (app, token) = app().await;
    let receiver = Receiver::start().await;
    let mut command = std::process::Command::new(node());
    command
        .arg("tests/clients/node/octokit_hooks.mjs")
        .arg(format!("http://{}/api/v3", app.addr))
        .arg(&token)
        .arg(OWNER)
        .arg(REPO)
        .arg(format!("http://{}/hook", receiver.addr));
    let (code, stdout, stderr) = run(command).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["created_status"], 201);
    assert_eq!(report["created_id_is_number"], true);
    // octokit.paginate followed the Link header through both pages.
    assert_eq!(report["paginated"].as_array().unwrap().len(), 2);
    assert_eq!(report["got_events"], json!(["push"]));
    assert_eq!(report["updated_events"], json!(["push", "issues"]));
    assert_eq!(report["config_secret"], "********");
    assert_eq!(report["config_content_type"], "json");
    assert_eq!(report["ping_status"], 204);
    assert_eq!(report["test_status"], 204);
    assert_eq!(report["deliveries"][0], "ping");
    assert_eq!(report["delivery_request_event"], "ping");
    assert_eq!(report["redeliver_status"], 202);
    assert_eq!(
        report["duplicate"],
        "422 Hook already exists on this repository"
    );
    assert_eq!(report["deleted"], true);

    // A receiver built on @octokit/webhooks-methods accepts the signature, and refuses it
    // under another secret.
    let sent = receiver.wait_for(1, Duration::from_secs(10)).await;
    let signed = sent
        .iter()
        .find(|c| !c.header("x-hub-signature-256").is_empty())
        .unwrap();
    let file = std::env::temp_dir().join(format!("delivery-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, &signed.body).unwrap();
    for (secret, expected) in [("octokit-secret", 0), ("another-secret", 1)] {
        let mut verify = std::process::Command::new(node());
        verify
            .arg("tests/clients/node/verify_signature.mjs")
            .arg(secret)
            .arg(signed.header("x-hub-signature-256"))
            .stdin(std::fs::File::open(&file).unwrap());
        let (code, _, stderr) = run(verify).await;
        assert_eq!(code, expected, "{secret}: {stderr}");
    }
    let _ = std::fs::remove_file(&file);
}
