//! Hostile and broken requests: each gets the documented code, nothing is written, and the
//! server keeps serving.

use serde_json::Value;

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn malformed_bodies_are_invalid_argument_and_write_nothing() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    let random: Vec<u8> = (0..512u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"{\"ownerName\": \"acme\",".to_vec()),
        ("application/json", b"[1, 2, 3]".to_vec()),
        ("application/json", b"{\"webhookEvent\": {}}".to_vec()),
        ("application/json", Vec::new()),
        ("application/json", vec![0xff, 0xfe, 0x00]),
        ("application/proto", random),
        ("application/proto", vec![0x12, 0x7f, b'a']),
        // owner_name with bytes that are not UTF-8.
        (
            "application/proto",
            vec![0x08, 0x01, 0x12, 0x02, 0xc3, 0x28, 0x1a, 0x02, b'a', b'b'],
        ),
        // An empty proto body is a valid empty message: it fails validation instead.
        ("application/proto", Vec::new()),
    ];
    for (content_type, body) in cases {
        let (status, _, answer) = app
            .call("CreateWebhook", Some(&token), content_type, body.clone())
            .await;
        let answer: Value = serde_json::from_slice(&answer).expect("a Connect error body");
        assert_error(status, &answer, 400, "invalid_argument", "");
        assert!(
            !answer["message"].as_str().unwrap_or_default().is_empty(),
            "{content_type} {body:?}: {answer}"
        );
    }
    assert_eq!(app.webhook_count().await, 0);
}

#[tokio::test]
async fn a_ten_mebibyte_body_is_refused_without_being_buffered() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    // curl, because it reads an early answer while still uploading (as HTTP/1.1 allows).
    let body = crate::helpers::tempdir("huge").join("body.json");
    std::fs::write(&body, vec![b' '; 10 * 1024 * 1024]).unwrap();
    let mut curl = std::process::Command::new("curl");
    curl.args([
        "-sS",
        "-w",
        "\n%{http_code}",
        "-H",
        "content-type: application/json",
    ])
    .arg("-H")
    .arg(format!("authorization: Bearer {token}"))
    .arg("--data-binary")
    .arg(format!("@{}", body.display()))
    .arg(app.url("/buf.alpha.registry.v1alpha1.WebhookService/CreateWebhook"));
    let (code, out, err) = crate::helpers::run(curl).await;
    assert_eq!(code, 0, "{err}");
    let (answer, status) = out.rsplit_once('\n').unwrap();
    let answer: Value = serde_json::from_str(answer).unwrap();
    assert_error(
        status.parse().unwrap(),
        &answer,
        429,
        "resource_exhausted",
        "exceeds limit 65536",
    );
    assert_eq!(app.webhook_count().await, 0);
    // The server is still fine.
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn wrong_content_types_are_unsupported_media_type() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    for content_type in [
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
    ] {
        let (status, _, _) = app
            .call("ListWebhooks", Some(&token), content_type, b"{}".to_vec())
            .await;
        assert_eq!(status, 415, "{content_type}");
    }
    assert_eq!(app.webhook_count().await, 0);
}

#[tokio::test]
async fn sql_metacharacters_in_a_callback_path_are_stored_verbatim() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    let url = "https://hooks.example.com/x';DROP%20TABLE%20webhooks;--/buf.alpha.webhook.v1alpha1.EventService/Event";
    let created = app.create(&token, "acme", "petapis", url).await;
    assert_eq!(created["callbackUrl"], url);
    assert_eq!(
        app.list(&token, "acme", "petapis", "").await["webhooks"][0]["callbackUrl"],
        url
    );
    assert_eq!(app.webhook_count().await, 1);
}
