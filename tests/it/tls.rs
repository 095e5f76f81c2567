//! `skipTlsVerify`: a listener with a self-signed certificate is refused by default and
//! reached by a subscription that turns verification off (Harbor's `skip_cert_verify`,
//! GitHub's `insecure_ssl`), over real TLS.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::spawn_app_with;
use crate::subscriptions::create;

/// An HTTPS listener on 127.0.0.1 with a fresh self-signed certificate that answers every
/// request 200; counts the requests it read.
async fn self_signed_listener() -> (u16, Arc<AtomicUsize>) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key.into())
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake here.
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut read = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = tls.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    read.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&read).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text[..end]
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap_or(0));
                        if read.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, served)
}

#[tokio::test]
async fn a_self_signed_listener_is_refused_unless_the_subscription_skips_verification() {
    let app = spawn_app_with(&["--allow-insecure-callbacks", "--no-dispatch"]).await;
    let token = app.token(&["library"]).await;
    let (port, served) = self_signed_listener().await;
    let url = format!("https://127.0.0.1:{port}/hook");
    let verifying = create(
        &app,
        &token,
        json!({"owner": "library", "family": "EVENT_FAMILY_REGISTRY", "format": "FORMAT_JSON",
               "url": url, "name": "verifying"}),
    )
    .await;
    let skipping = create(
        &app,
        &token,
        json!({"owner": "library", "family": "EVENT_FAMILY_REGISTRY", "format": "FORMAT_JSON",
               "url": url, "skipTlsVerify": true, "name": "skipping"}),
    )
    .await;
    assert_eq!(skipping["skipTlsVerify"], true);
    let (status, published) = app
        .rpc(
            "webhookd.v1.PublishService/Publish",
            &token,
            json!({"events": [{"registry": {"kind": "artifact.pushed", "owner": "library",
                                            "repository": "nginx", "tags": ["1.27"]}}]}),
        )
        .await;
    assert_eq!(status, 200, "{published}");
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 2);
    assert_eq!(
        served.load(Ordering::SeqCst),
        1,
        "only the skipping one got through"
    );
    let outcome = |id: serde_json::Value| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_as::<_, (String, Option<String>)>(
                "SELECT d.state, a.error FROM deliveries d
                 JOIN delivery_attempts a ON a.delivery_id = d.id
                 WHERE d.webhook_id = $1::uuid",
            )
            .bind(id.as_str().unwrap().to_owned())
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        outcome(skipping["subscriptionId"].clone()).await,
        ("delivered".to_owned(), None)
    );
    let (state, error) = outcome(verifying["subscriptionId"].clone()).await;
    assert_eq!(state, "pending", "retried later");
    let error = error.unwrap_or_default();
    assert!(
        error.to_lowercase().contains("certificate") || error.contains("connect"),
        "{error}"
    );
}
