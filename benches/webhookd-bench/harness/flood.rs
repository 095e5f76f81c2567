//! Scenario 10: hostile Publish bodies (issue 13, item 3). 16 clients without a token send
//! maximal Publish bodies (16 MiB of empty events, the worst case for decoding) for a while,
//! then a token holder sends the same body; the figure is `serve`'s peak RSS after each,
//! which the issue bounds at 150 MB. Quick mode checks every answer: `unauthenticated`
//! without a token (or the connection closed mid-upload after that answer), and
//! `resource_exhausted` for the token holder.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::env::{Bench, Server};
use super::report::Row;
use super::scenarios::Plan;

const SCENARIO: &str = "10 body flood";
const CLIENTS: usize = 16;
/// The largest Publish body `serve` accepts.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// 16 MiB of `PublishRequest.events` entries, each an empty event (2 bytes on the wire).
fn empty_events() -> &'static [u8] {
    static BODY: OnceLock<Vec<u8>> = OnceLock::new();
    BODY.get_or_init(|| [0x0a, 0x00].repeat(MAX_BODY / 2 - 8))
}

pub async fn body_flood(server: &Server, plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let bench = Bench::new(server).await?;
    let serve = bench.serve(&["--no-dispatch"])?;
    serve.ready().await?;
    let url = format!("{}/webhookd.v1.PublishService/Publish", serve.base());
    let http = reqwest::Client::new();
    let seconds = plan.n(10, 1);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (http, url) = (http.clone(), url.clone());
        clients.spawn(async move {
            let (mut answered, mut cut) = (0u64, 0u64);
            while Instant::now() < deadline {
                let sent = http
                    .post(&url)
                    .header("content-type", "application/proto")
                    .body(empty_events())
                    .send()
                    .await;
                match sent {
                    Ok(response) => {
                        let status = response.status();
                        anyhow::ensure!(status == 401, "a Publish without a token got {status}");
                        match response.text().await {
                            Ok(body) => {
                                anyhow::ensure!(
                                    body.contains("unauthenticated"),
                                    "a Publish without a token got {status}: {body}"
                                );
                                answered += 1;
                            }
                            // The answer's head arrived; the connection closed under its body
                            // because the upload was cut.
                            Err(_) => cut += 1,
                        }
                    }
                    // The server answered and closed before the upload was done.
                    Err(e) if e.is_request() || e.is_body() => cut += 1,
                    Err(e) => return Err(e.into()),
                }
            }
            Ok((answered, cut))
        });
    }
    let (mut answered, mut cut) = (0, 0);
    while let Some(joined) = clients.join_next().await {
        let (a, c) = joined??;
        answered += a;
        cut += c;
    }
    anyhow::ensure!(
        answered > 0,
        "no Publish without a token was answered ({cut} cut)"
    );
    let (flood_rss, _) = serve.resources()?;

    for _ in 0..plan.n(5, 2) {
        let response = http
            .post(&url)
            .header("content-type", "application/proto")
            .header("authorization", format!("Bearer {}", bench.token))
            .body(empty_events())
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        anyhow::ensure!(
            status == 429 && body.contains("resource_exhausted"),
            "a token holder's 16 MiB of empty events got {status}: {body}"
        );
    }
    let (token_rss, _) = serve.resources()?;
    serve.stop();
    bench.drop_database().await?;
    let refused = (answered + cut) as f64 / seconds as f64;
    let flood = format!("{CLIENTS} clients without a token, 16 MiB Publish bodies");
    Ok(vec![
        Row::new(SCENARIO, &flood, "peak RSS MB", flood_rss as f64 / 1e6),
        Row::new(SCENARIO, &flood, "refused requests/s", refused),
        Row::new(
            SCENARIO,
            "then a token holder's 16 MiB of empty events",
            "peak RSS MB",
            token_rss as f64 / 1e6,
        ),
    ])
}
