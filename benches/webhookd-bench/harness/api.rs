//! Scenario 5: the WebhookService API under 32 concurrent clients, with 10,000 subscriptions
//! in the database.

use std::time::{Duration, Instant};

use super::env::{Bench, Serve, Server};
use super::report::Row;
use super::scenarios::Plan;
use crate::receiver::Receiver;

/// Scenario 5: CreateWebhook and ListWebhooks, Connect binary and JSON, 32 clients, with
/// 10,000 subscriptions in the database.
pub async fn api(server: &Server, plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let bench = Bench::new(server).await?;
    let receiver = Receiver::counting(false, None).await?;
    let repos = plan.n(1000, 10) as usize;
    for r in 0..repos {
        bench
            .subscribe(&format!("repo{r}"), &receiver, 10, 0)
            .await?;
    }
    let serve = bench.serve(&["--no-dispatch", "--max-db-connections", "32"])?;
    serve.ready().await?;
    let seconds = plan.n(5, 1);
    let mut rows = vec![];
    for (method, json) in [
        ("ListWebhooks", false),
        ("ListWebhooks", true),
        ("CreateWebhook", false),
        ("CreateWebhook", true),
    ] {
        let (rate, p99) = hammer(
            &serve,
            &bench.token,
            method,
            json,
            repos,
            &receiver,
            seconds,
        )
        .await?;
        let codec = if json { "JSON" } else { "binary" };
        rows.push(Row::new(
            "5 api",
            &format!("{method} ({codec}, 32 clients)"),
            "req/s",
            rate,
        ));
        rows.push(Row::new(
            "5 api",
            &format!("{method} ({codec}, 32 clients)"),
            "p99 ms",
            p99,
        ));
    }
    serve.stop();
    bench.drop_database().await?;
    Ok(rows)
}

async fn hammer(
    serve: &Serve,
    token: &str,
    method: &str,
    json: bool,
    repos: usize,
    receiver: &Receiver,
    seconds: u64,
) -> anyhow::Result<(f64, f64)> {
    use buffa::Message as _;
    use webhookd::proto::buf::alpha::registry::v1alpha1 as reg;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let url = format!(
        "{}/buf.alpha.registry.v1alpha1.WebhookService/{method}",
        serve.base()
    );
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..32usize {
        let (http, url, token, method) = (
            http.clone(),
            url.clone(),
            token.to_owned(),
            method.to_owned(),
        );
        let receiver_port = receiver.addr.port();
        tasks.spawn(async move {
            let mut latencies = vec![];
            let mut i = 0usize;
            while Instant::now() < deadline {
                i += 1;
                let repo = format!("repo{}", (client * 7919 + i) % repos);
                let (content_type, body): (&str, Vec<u8>) = match (method.as_str(), json) {
                    ("ListWebhooks", false) => (
                        "application/proto",
                        reg::ListWebhooksRequest {
                            owner_name: "acme".into(),
                            repository_name: repo,
                            ..Default::default()
                        }
                        .encode_to_vec(),
                    ),
                    ("ListWebhooks", true) => (
                        "application/json",
                        serde_json::json!({"ownerName": "acme", "repositoryName": repo})
                            .to_string()
                            .into_bytes(),
                    ),
                    (_, json) => {
                        let callback = format!(
                            "http://127.0.0.1:{receiver_port}/c{client}-{i}-{json}{}",
                            webhookd::domain::EVENT_PATH_SUFFIX
                        );
                        let request = reg::CreateWebhookRequest {
                            webhook_event: buffa::EnumValue::from(1),
                            owner_name: "acme".into(),
                            repository_name: repo,
                            callback_url: callback,
                            ..Default::default()
                        };
                        if json {
                            (
                                "application/json",
                                serde_json::to_vec(&request).expect("serialises"),
                            )
                        } else {
                            ("application/proto", request.encode_to_vec())
                        }
                    }
                };
                let sent = Instant::now();
                let response = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", content_type)
                    .body(body)
                    .send()
                    .await?;
                anyhow::ensure!(response.status() == 200, "{method}: {}", response.status());
                response.bytes().await?;
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut all = vec![];
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    all.sort_by(f64::total_cmp);
    let p99 = all
        .get(((all.len().max(1) - 1) as f64 * 0.99) as usize)
        .copied()
        .unwrap_or(0.0);
    Ok((all.len() as f64 / seconds as f64, p99))
}
