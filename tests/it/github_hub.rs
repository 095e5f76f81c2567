//! GitHub's PubSubHubbub hub (reference facts, A.1) with the seed's curl command verbatim
//! (`-F`: multipart; the host changed) and with urlencoded bodies: subscribe, subscribe
//! again (the same hook changes), unsubscribe, and GitHub's 422s.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, run, spawn_app_with};
use crate::receiver::{Captured, Receiver};

const OWNER: &str = "octo-org";
const REPO: &str = "Hello-World";

/// Runs curl with `args` against the hub; returns its status line's code and the body.
async fn curl(app: &TestApp, token: &str, args: &[&str]) -> (u16, String) {
    let mut command = std::process::Command::new("curl");
    command
        .args(["-s", "-o", "-", "-w", "\n%{http_code}"])
        .arg("--header")
        .arg(format!("Authorization: Bearer {token}"))
        .arg(app.url("/api/v3/hub"))
        .args(args);
    let (code, stdout, stderr) = run(command).await;
    assert_eq!(code, 0, "{stderr}");
    let (body, status) = stdout.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_owned())
}

async fn publish_push(app: &TestApp, token: &str, payload: &str) {
    let (status, answer) = app
        .rpc(
            "webhookd.v1.PublishService/Publish",
            token,
            json!({"events": [{"github": {"name": "push", "owner": OWNER, "repository": REPO,
                   "payloadJson": payload}}]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
}

async fn hooks(app: &TestApp, token: &str) -> Vec<Value> {
    let response = app
        .http
        .get(app.url(&format!("/api/v3/repos/{OWNER}/{REPO}/hooks")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    response.json::<Vec<Value>>().await.unwrap()
}

fn pushes(captured: &[Captured]) -> Vec<&Captured> {
    captured
        .iter()
        .filter(|c| c.header("x-github-event") == "push")
        .collect()
}

#[tokio::test]
async fn the_seeds_curl_subscribes_and_a_repeat_changes_the_same_hook() {
    let app = spawn_app_with(&[
        "--allow-insecure-callbacks",
        "--poll-interval",
        "100ms",
        "--wake-on-publish",
    ])
    .await;
    let token = app.token(&[OWNER]).await;
    let receiver = Receiver::start().await;
    let callback = format!("http://{}/postbin/123", receiver.addr);
    let topic = format!("https://github.com/{OWNER}/{REPO}/events/push");

    // The seed's command, the host changed.
    let (status, body) = curl(
        &app,
        &token,
        &[
            "-F",
            "hub.mode=subscribe",
            "-F",
            &format!("hub.topic={topic}"),
            "-F",
            &format!("hub.callback={callback}"),
        ],
    )
    .await;
    assert_eq!((status, body.as_str()), (204, ""));
    let listed = hooks(&app, &token).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["events"], json!(["push"]));
    assert_eq!(listed[0]["config"]["content_type"], "form");
    publish_push(&app, &token, r#"{"ref":"refs/heads/main"}"#).await;
    let sent = receiver.wait_for(2, Duration::from_secs(10)).await;
    let push = pushes(&sent)[0].clone();
    assert_eq!(
        push.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(push.header("x-hub-signature-256"), "");
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&push.body)
        .into_owned()
        .collect();
    assert_eq!(
        form,
        [(
            "payload".to_owned(),
            r#"{"ref":"refs/heads/main"}"#.to_owned()
        )]
    );

    // Again, urlencoded, with a secret and the .json topic: the same hook, now raw JSON
    // and signed.
    let (status, _) = curl(
        &app,
        &token,
        &[
            "--data-urlencode",
            "hub.mode=subscribe",
            "--data-urlencode",
            &format!("hub.topic={topic}.json"),
            "--data-urlencode",
            &format!("hub.callback={callback}"),
            "--data-urlencode",
            "hub.secret=It's a Secret to Everybody",
        ],
    )
    .await;
    assert_eq!(status, 204);
    let listed = hooks(&app, &token).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["config"]["content_type"], "json");
    assert_eq!(listed[0]["config"]["secret"], "********");
    publish_push(&app, &token, r#"{"ref":"refs/heads/dev"}"#).await;
    let sent = receiver.wait_for(3, Duration::from_secs(10)).await;
    let push = pushes(&sent)[1].clone();
    assert_eq!(push.header("content-type"), "application/json");
    assert_eq!(&push.body[..], br#"{"ref":"refs/heads/dev"}"#);
    let hex = crate::github_hooks::hex_hmac("It's a Secret to Everybody", &push.body);
    assert_eq!(push.header("x-hub-signature-256"), format!("sha256={hex}"));

    // Unsubscribe: the hook goes with its one event.
    let (status, _) = curl(
        &app,
        &token,
        &[
            "-F",
            "hub.mode=unsubscribe",
            "-F",
            &format!("hub.topic={topic}"),
            "-F",
            &format!("hub.callback={callback}"),
        ],
    )
    .await;
    assert_eq!(status, 204);
    assert!(hooks(&app, &token).await.is_empty());
}

#[tokio::test]
async fn the_hub_refuses_what_github_refuses_with_its_messages() {
    let app = spawn_app_with(&["--allow-insecure-callbacks"]).await;
    let token = app.token(&[OWNER]).await;
    let callback = "http://127.0.0.1:9/hook";
    let expect = |message: &str| {
        json!({"message": message,
               "documentation_url": "http://developer.github.com/v3/repos/hooks/#pubsubhubbub"})
    };
    let cases: Vec<(Vec<String>, Value)> = vec![
        (
            // A JSON body is not parsed, as on GitHub.
            vec![
                "-H".into(),
                "Content-Type: application/json".into(),
                "-d".into(),
                json!({"hub.mode": "subscribe", "hub.callback": callback}).to_string(),
            ],
            expect("Needs hub.callback."),
        ),
        (
            vec![
                "-F".into(),
                "hub.mode=subscribe".into(),
                "-F".into(),
                format!("hub.callback={callback}"),
            ],
            expect("Needs hub.topic."),
        ),
        (
            vec![
                "-F".into(),
                "hub.mode=subscribe".into(),
                "-F".into(),
                "hub.topic=https://github.com/someone-else/repo/events/push".into(),
                "-F".into(),
                format!("hub.callback={callback}"),
            ],
            expect(
                "No repository found for hub.topic: \"https://github.com/someone-else/repo/events/push\"",
            ),
        ),
        (
            vec![
                "-F".into(),
                "hub.mode=watch".into(),
                "-F".into(),
                format!("hub.topic=https://github.com/{OWNER}/{REPO}/events/push"),
                "-F".into(),
                format!("hub.callback={callback}"),
            ],
            expect("Invalid hub.mode: 'watch'"),
        ),
        (
            vec![
                "-F".into(),
                "hub.mode=subscribe".into(),
                "-F".into(),
                format!("hub.topic=https://github.com/{OWNER}/{REPO}/events/push"),
                "-F".into(),
                "hub.callback=not a url".into(),
            ],
            expect("Invalid hub.callback: 'not a url'"),
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, body) = curl(&app, &token, &args).await;
        assert_eq!(status, 422, "{args:?}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            expected,
            "{args:?}"
        );
    }
    assert!(hooks(&app, &token).await.is_empty());
    // Without a token: 401, as everywhere in the face.
    let anonymous = app
        .http
        .post(app.url("/api/v3/hub"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("hub.mode=subscribe")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}
