//! The reference listener (`webhookd::listener::VerifyingListener`, what `webhookd listen`
//! runs) over real HTTP: it takes each `webhook-id` once, and refuses what its handler
//! cannot take.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use buffa::Message as _;
use webhookd::domain::EVENT_PATH_SUFFIX;
use webhookd::listener::VerifyingListener;
use webhookd::signing::SigningSecret;
use webhookd::synthetic::repository_push;

use crate::helpers::http_client;

/// Serves `listener`; its callback URL.
async fn serve(listener: axum::Router) -> String {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{EVENT_PATH_SUFFIX}", tcp.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(tcp, listener).await });
    url
}

/// POSTs a delivery signed by `secret` as webhookd does; the status.
async fn deliver(url: &str, secret: &SigningSecret, id: &str) -> u16 {
    let body = repository_push("acme", "petapis", 1).encode_to_vec();
    let timestamp = chrono::Utc::now().timestamp();
    http_client()
        .post(url)
        .header("content-type", "application/proto")
        .header("connect-protocol-version", "1")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", secret.sign(id, timestamp, &body))
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_replayed_webhook_id_is_acknowledged_without_being_taken_twice() {
    let secret = SigningSecret::generate();
    let taken = Arc::new(AtomicUsize::new(0));
    let counted = taken.clone();
    let url = serve(
        VerifyingListener::new(vec![secret.clone()], move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .into_router(),
    )
    .await;
    assert_eq!(deliver(&url, &secret, "d-1").await, 200);
    // The same request again (a replay, or a retry whose answer was lost): acknowledged,
    // not handed on.
    assert_eq!(deliver(&url, &secret, "d-1").await, 200);
    assert_eq!(taken.load(Ordering::SeqCst), 1);
    assert_eq!(deliver(&url, &secret, "d-2").await, 200);
    assert_eq!(taken.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_refused_delivery_is_taken_when_it_is_retried() {
    let secret = SigningSecret::generate();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let url = serve(
        VerifyingListener::new(vec![secret.clone()], move |_| {
            match counted.fetch_add(1, Ordering::SeqCst) {
                0 => anyhow::bail!("the disk is full"),
                _ => Ok(()),
            }
        })
        .into_router(),
    )
    .await;
    assert_eq!(
        deliver(&url, &secret, "d-1").await,
        503,
        "refused: retried later"
    );
    assert_eq!(deliver(&url, &secret, "d-1").await, 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the retry was handed on");
}
