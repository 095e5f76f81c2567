//! A webhook listener in a few lines: the generated `EventService` plus webhookd's
//! signature verifier, served with axum.
//!
//! ```console
//! $ cargo run --example listener -- 127.0.0.1:9000 whsec_...
//! ```
//! Subscribe `http://127.0.0.1:9000/buf.alpha.webhook.v1alpha1.EventService/Event`
//! (webhookd needs `--allow-insecure-callbacks` for a local http listener).

use webhookd::listener::VerifyingListener;
use webhookd::signing::SigningSecret;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9000".to_owned());
    // A secret that does not parse is an error, not a listener that verifies nothing.
    let secrets = args
        .map(|s| {
            SigningSecret::parse(&s).ok_or_else(|| {
                anyhow::anyhow!("{s:?} is not a signing secret (whsec_ followed by base64)")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if secrets.is_empty() {
        eprintln!("no secret given: signatures are not checked");
    }

    let app = VerifyingListener::new(secrets, |received| {
        // `webhook_id` is stable across retries: remember it to drop duplicates.
        let push = received
            .event
            .payload
            .as_option()
            .and_then(|p| p.payload.as_ref());
        println!("delivery {:?}: {push:?}", received.webhook_id);
        // An `Err` here answers 503: webhookd retries the delivery later.
        Ok(())
    })
    .into_router();

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
