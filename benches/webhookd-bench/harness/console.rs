//! Scenario 14: what the web console asks for, against 10,000 subscriptions and 1,000,000
//! deliveries: its first page (the three files, ListOwners, a page of 50 subscriptions and
//! their 24-hour charts) and a subscription's delivery log (a page of 50 and one delivery),
//! each timed as the browser makes the calls, one after another. Scenario 15 (in
//! `scenarios::tail`) is the live tail under full delivery load.

use std::time::Instant;

use serde_json::{Value, json};

use super::env::{Bench, Serve, Server};
use super::report::Row;
use super::scenarios::{Plan, publish};
use super::steady::quantile;
use crate::receiver::Receiver;

/// Scenario 14.
pub async fn console(server: &Server, plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let bench = Bench::new(server).await?;
    let receiver = Receiver::counting(false, None).await?;
    let repos = plan.n(1000, 6) as usize;
    for r in 0..repos {
        bench
            .subscribe(&format!("repo{r}"), &receiver, 10, 0)
            .await?;
    }
    let serve = bench.serve(&["--no-dispatch"])?;
    serve.ready().await?;
    // repo0's 10 subscriptions (the first page's first rows) get every event: 1,000,000
    // deliveries, all pending (nothing dispatches).
    let events = plan.n(100_000, 30);
    publish(&serve, &bench.token, "repo0", events, 1000, false).await?;
    // A day of hourly tallies for every subscription, as the batchers would have written.
    sqlx::query(
        "INSERT INTO subscription_hourly
             (webhook_id, hour, attempts, successes, duration_ms_sum, duration_ms_max)
         SELECT w.id, date_trunc('hour', now()) - h * interval '1 hour', 100 + h, 99, 2000, 90
         FROM webhooks w, generate_series(0, 23) h",
    )
    .execute(&bench.pool)
    .await?;
    sqlx::query("ANALYZE").execute(&bench.pool).await?;
    let subscriptions = repos * 10;
    let deliveries = events * 10;
    let client = Client::new(&serve, &bench.token);
    let (mut first, mut log) = (vec![], vec![]);
    for _ in 0..plan.n(30, 3) {
        let started = Instant::now();
        for path in ["/console/", "/console/app.js", "/console/style.css"] {
            client.get(path).await?;
        }
        client
            .rpc("SubscriptionService/ListOwners", json!({}))
            .await?;
        let page = client
            .rpc(
                "SubscriptionService/ListSubscriptions",
                json!({"owner": "acme", "pageSize": 50}),
            )
            .await?;
        let ids: Vec<Value> = page["subscriptions"]
            .as_array()
            .map(|s| s.iter().map(|s| s["subscriptionId"].clone()).collect())
            .unwrap_or_default();
        anyhow::ensure!(ids.len() == subscriptions.min(50), "a page of 50: {page}");
        let stats = client
            .rpc(
                "DeliveryService/GetDeliveryStats",
                json!({ "subscriptionIds": ids }),
            )
            .await?;
        anyhow::ensure!(
            stats["stats"][0]["hours"].as_array().map(Vec::len) == Some(24),
            "a day of hours: {stats}"
        );
        first.push(started.elapsed().as_secs_f64() * 1000.0);

        let started = Instant::now();
        let list = client
            .rpc(
                "DeliveryService/ListDeliveries",
                json!({"webhookId": ids[0], "pageSize": 50}),
            )
            .await?;
        let shown = list["deliveries"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(shown == (events as usize).min(50), "a page of 50: {list}");
        client
            .rpc(
                "DeliveryService/GetDelivery",
                json!({"deliveryId": list["deliveries"][0]["deliveryId"]}),
            )
            .await?;
        log.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    serve.stop();
    bench.drop_database().await?;
    let case =
        |what: &str| format!("{what}, {subscriptions} subscriptions, {deliveries} deliveries");
    let mut rows = vec![];
    for (what, mut times) in [("first page", first), ("delivery log page", log)] {
        times.sort_by(f64::total_cmp);
        rows.push(Row::new(
            "14 console",
            &case(what),
            "median ms",
            quantile(&times, 0.5),
        ));
        rows.push(Row::new(
            "14 console",
            &case(what),
            "max ms",
            quantile(&times, 1.0),
        ));
    }
    Ok(rows)
}

/// Connect JSON calls with a token, as the console makes them.
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(serve: &Serve, token: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: serve.base(),
            token: token.to_owned(),
        }
    }

    async fn get(&self, path: &str) -> anyhow::Result<()> {
        let response = self.http.get(format!("{}{path}", self.base)).send().await?;
        anyhow::ensure!(response.status() == 200, "{path}: {}", response.status());
        response.bytes().await?;
        Ok(())
    }

    async fn rpc(&self, method: &str, body: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}/webhookd.v1.{method}", self.base))
            .header("content-type", "application/json")
            .bearer_auth(&self.token)
            .body(body.to_string())
            .send()
            .await?;
        let status = response.status();
        let answer: Value = serde_json::from_slice(&response.bytes().await?)?;
        anyhow::ensure!(status == 200, "{method}: {status} {answer}");
        Ok(answer)
    }
}

/// A TailDeliveries reader of everything of `acme`, counting what it is sent, on a task of its
/// own; reading as fast as messages come.
pub struct TailReader {
    counts: std::sync::Arc<std::sync::Mutex<(u64, u64)>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TailReader {
    /// Follows acme on `serve`, once the stream is open.
    pub async fn open(serve: &Serve, token: &str) -> anyhow::Result<Self> {
        let body = webhookd::operator::envelope(json!({"owner": "acme"}).to_string().as_bytes())?;
        let mut response = reqwest::Client::new()
            .post(format!(
                "{}/webhookd.v1.DeliveryService/TailDeliveries",
                serve.base()
            ))
            .header("content-type", "application/connect+json")
            .bearer_auth(token)
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(response.status() == 200, "{}", response.status());
        let counts = std::sync::Arc::new(std::sync::Mutex::new((0, 0)));
        let counted = counts.clone();
        let task = tokio::spawn(async move {
            let mut buffer: Vec<u8> = vec![];
            while let Some(chunk) = response.chunk().await? {
                buffer.extend_from_slice(&chunk);
                while let Some((flags, message)) = webhookd::operator::next_envelope(&mut buffer)? {
                    anyhow::ensure!(flags & 0x02 == 0, "the tail ended");
                    let message: Value = serde_json::from_slice(&message)?;
                    let mut counts = counted.lock().expect("counts");
                    match message["missed"].as_str() {
                        Some(missed) => counts.1 += missed.parse::<u64>()?,
                        None => counts.0 += 1,
                    }
                }
            }
            Ok(())
        });
        Ok(Self { counts, task })
    }

    /// Attempts sent, and attempts the reader was told it missed.
    pub fn counts(&self) -> (u64, u64) {
        *self.counts.lock().expect("counts")
    }

    /// Waits (up to 30 s) until `total` attempts were sent or reported missed, then stops;
    /// the counts.
    pub async fn finish(self, total: u64) -> anyhow::Result<(u64, u64)> {
        let reached = || async {
            let (sent, missed) = self.counts();
            sent + missed >= total
        };
        let waited = crate::wait::until(
            "the tail saw every attempt",
            std::time::Duration::from_secs(30),
            reached,
        )
        .await;
        self.task.abort();
        waited?;
        Ok(self.counts())
    }
}
