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

/// Sends the head of a request (and a little of its declared body), and returns what the
/// server answers within a few seconds (`None` when it waits for the rest of the body).
async fn answer_to_head(app: &crate::helpers::TestApp, head: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    // A little of the body, to show that a started upload changes nothing.
    tcp.write_all(&[0x0a, 0x00].repeat(512)).await.unwrap();
    let (mut answer, mut chunk) = (vec![], vec![0; 4096]);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, tcp.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    (!answer.is_empty()).then(|| String::from_utf8_lossy(&answer).into_owned())
}

fn publish_head(content_type: &str, authorization: Option<&str>) -> String {
    let mut head = format!(
        "POST /webhookd.v1.PublishService/Publish HTTP/1.1\r\nhost: webhookd\r\n\
         content-type: {content_type}\r\ncontent-length: 16777000\r\n"
    );
    if let Some(value) = authorization {
        head.push_str(&format!("authorization: {value}\r\n"));
    }
    head + "\r\n"
}

#[tokio::test]
async fn a_publish_without_a_valid_token_is_answered_before_its_body_is_read() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    let unknown = format!("Bearer whd_{}", "A".repeat(43));
    for authorization in [None, Some("Bearer x"), Some(unknown.as_str())] {
        let answer = answer_to_head(&app, &publish_head("application/proto", authorization))
            .await
            .unwrap_or_else(|| panic!("{authorization:?}: the server waited for the body"));
        assert!(
            answer.starts_with("HTTP/1.1 401"),
            "{authorization:?}: {answer}"
        );
        assert!(answer.contains(r#""code":"unauthenticated""#), "{answer}");
        // gRPC-Web gets its own protocol's answer: a trailers-only 200.
        let answer = answer_to_head(
            &app,
            &publish_head("application/grpc-web+proto", authorization),
        )
        .await
        .unwrap_or_else(|| panic!("{authorization:?}: the server waited for the body"));
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("grpc-status: 16"), "{answer}");
    }
    // With a valid token the server does read the body: the answers above came from the
    // token check, not from the head alone.
    let bearer = format!("Bearer {token}");
    let head = publish_head("application/proto", Some(&bearer));
    assert_eq!(answer_to_head(&app, &head).await, None);
}

#[tokio::test]
async fn a_publish_of_too_many_events_is_resource_exhausted_before_it_is_decoded() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    let url = app.url("/webhookd.v1.PublishService/Publish");
    let json_events = |n: usize| format!(r#"{{"events":[{}{{}}]}}"#, "{},".repeat(n - 1));
    let cases = [
        ("application/proto", [0x0a, 0x00].repeat(1001)),
        (
            "application/proto",
            [0x0a, 0x00].repeat(8 * 1024 * 1024 - 8),
        ),
        ("application/json", json_events(1001).into_bytes()),
        ("application/json", json_events(5_000_000).into_bytes()),
        // The array form of the message, which the decoder also takes (found by fuzzing).
        (
            "application/json",
            format!("[{}]", &json_events(1001)[10..json_events(1001).len() - 1]).into_bytes(),
        ),
    ];
    for (content_type, body) in cases {
        let response = app
            .http
            .post(&url)
            .header("content-type", content_type)
            .bearer_auth(&token)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        assert_error(
            status,
            &answer,
            429,
            "resource_exhausted",
            "more than 1000 events; send at most 1000 per Publish call",
        );
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}
