//! One port, every protocol: Connect GET, gRPC (h2c), gRPC-Web, health and reflection.

use base64::Engine as _;
use connectrpc::client::{ClientConfig, Http2Connection, HttpClient};
use connectrpc::{ErrorCode, Protocol};
use serde_json::json;
use webhookd::proto::buf::alpha::registry::v1alpha1 as pb;

use crate::helpers::{SERVICE, spawn_app};

#[tokio::test]
async fn list_webhooks_answers_connect_get_requests() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    let created = app
        .create(&token, "acme", "petapis", &app.callback("get"))
        .await;
    let message = r#"{"ownerName":"acme","repositoryName":"petapis"}"#;
    let url = app.url(&format!(
        "/{SERVICE}/ListWebhooks?connect=v1&encoding=json&message={}",
        url_escape(message)
    ));
    let response = app.http.get(url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["webhooks"][0], created);
    // Binary GET (base64) works too; Create is not NO_SIDE_EFFECTS, so GET is refused.
    let proto = [&[0x0a, 0x07][..], b"petapis", &[0x12, 0x04], b"acme"].concat();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(proto);
    let url = app.url(&format!(
        "/{SERVICE}/ListWebhooks?connect=v1&encoding=proto&base64=1&message={b64}"
    ));
    assert_eq!(
        app.http
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let url = app.url(&format!(
        "/{SERVICE}/CreateWebhook?connect=v1&encoding=json&message=%7B%7D"
    ));
    assert_eq!(
        app.http
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
}

fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn exercise<T>(client: &pb::WebhookServiceClient<T>, callback: String)
where
    T: connectrpc::client::ClientTransport,
    <T::ResponseBody as connectrpc::http_body::Body>::Error: std::fmt::Display,
{
    let created = client
        .create_webhook(pb::CreateWebhookRequest {
            webhook_event: buffa::EnumValue::from(1),
            owner_name: "acme".into(),
            repository_name: "petapis".into(),
            callback_url: callback,
            ..Default::default()
        })
        .await
        .expect("create")
        .into_owned();
    let webhook = created.webhook.as_option().unwrap().clone();
    let listed = client
        .list_webhooks(pb::ListWebhooksRequest {
            owner_name: "acme".into(),
            repository_name: "petapis".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_owned();
    assert!(listed.webhooks.contains(&webhook));
    client
        .delete_webhook(pb::DeleteWebhookRequest {
            webhook_id: webhook.webhook_id.clone(),
            ..Default::default()
        })
        .await
        .expect("delete");
    let again = client
        .delete_webhook(pb::DeleteWebhookRequest {
            webhook_id: webhook.webhook_id,
            ..Default::default()
        })
        .await
        .expect_err("second delete");
    assert_eq!(again.code, ErrorCode::NotFound);
}

#[tokio::test]
async fn grpc_over_h2c_and_grpc_web_serve_the_same_api_on_the_same_port() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    let uri: http::Uri = app.url("").parse().unwrap();
    let auth = format!("Bearer {token}");

    let conn = Http2Connection::connect_plaintext(uri.clone())
        .await
        .unwrap()
        .shared(16);
    let config = ClientConfig::new(uri.clone())
        .with_protocol(Protocol::Grpc)
        .with_default_header("authorization", auth.as_str());
    exercise(
        &pb::WebhookServiceClient::new(conn, config),
        app.callback("grpc"),
    )
    .await;

    let config = ClientConfig::new(uri.clone())
        .with_protocol(Protocol::GrpcWeb)
        .with_default_header("authorization", auth.as_str());
    exercise(
        &pb::WebhookServiceClient::new(HttpClient::plaintext(), config),
        app.callback("grpcweb"),
    )
    .await;

    // Errors travel as gRPC status codes.
    let conn = Http2Connection::connect_plaintext(uri.clone())
        .await
        .unwrap()
        .shared(16);
    let anonymous =
        pb::WebhookServiceClient::new(conn, ClientConfig::new(uri).with_protocol(Protocol::Grpc));
    let err = anonymous
        .list_webhooks(pb::ListWebhooksRequest {
            owner_name: "acme".into(),
            repository_name: "petapis".into(),
            ..Default::default()
        })
        .await
        .expect_err("no token");
    assert_eq!(err.code, ErrorCode::Unauthenticated);
}

#[tokio::test]
async fn health_probes_report_the_process_and_the_database() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    for service in ["", SERVICE] {
        let body = json!({"service": service}).to_string();
        let response = app
            .http
            .post(app.url("/grpc.health.v1.Health/Check"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let status: serde_json::Value = response.json().await.unwrap();
        assert_eq!(status["status"], "SERVING");
    }
}

#[tokio::test]
async fn unknown_methods_are_unimplemented() {
    let app = spawn_app().await;
    let (status, _, body) = app
        .call("GetWebhook", None, "application/json", b"{}".to_vec())
        .await;
    assert_eq!(status, 404);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["code"], "unimplemented");
}
