//! Scenario 13: a configuration file's `required` webhook (Angos's face, issue 18). One
//! registry event per Publish call, one call at a time, each answered only once the webhook
//! (a local receiver) has answered: the round trip (publish, deliver, answer) p50 and p99,
//! beside the same calls to a server without file webhooks (what waiting for the webhook
//! adds).

use std::time::{Duration, Instant};

use buffa::MessageField;
use webhookd::proto::webhookd::v1 as pb;
use webhookd::synthetic::artifact_push;

use super::env::{Bench, Server};
use super::formats::{config_file, file_webhook};
use super::report::Row;
use super::scenarios::{LATENCY, Plan};
use super::steady::quantile;
use crate::receiver::Receiver;

const SCENARIO: &str = "13 angos required";

pub async fn angos_required(server: &Server, plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let calls = plan.n(2000, 20);
    let mut rows = vec![];
    for required in [true, false] {
        let latencies = round_trips(server, calls, required).await?;
        let case = if required {
            "1 event per call, a required webhook"
        } else {
            "1 event per call, no file webhooks"
        };
        for (q, unit) in [(0.5, "p50 ms"), (0.99, "p99 ms")] {
            rows.push(Row::new(SCENARIO, case, unit, quantile(&latencies, q)));
        }
    }
    Ok(rows)
}

/// `calls` sequential Publish calls of one registry event each; their latencies in ms,
/// sorted. With `required`, a `required` file webhook takes every event, and each call
/// is checked to have reached it before its answer.
async fn round_trips(server: &Server, calls: u64, required: bool) -> anyhow::Result<Vec<f64>> {
    let bench = Bench::new(server).await?;
    let receiver = Receiver::counting(false, None).await?;
    let file = config_file(&if required {
        file_webhook("audit", "required", &receiver)
    } else {
        String::new()
    })?;
    let path = file.to_string_lossy().into_owned();
    let flags = [LATENCY, &["--config", path.as_str()]].concat();
    let serve = bench.serve(&flags)?;
    serve.ready().await?;
    let client = serve.publisher(&bench.token);
    let publish = |i: u64| {
        client.publish(pb::PublishRequest {
            events: vec![pb::PublishEvent {
                registry: MessageField::some(artifact_push("library", "nginx", i)),
                ..Default::default()
            }],
            ..Default::default()
        })
    };
    // Warm the connection and the server's caches.
    for i in 0..5 {
        publish(i).await?;
    }
    let mut latencies = Vec::with_capacity(calls as usize);
    for i in 0..calls {
        let started = Instant::now();
        publish(5 + i).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
        if required {
            anyhow::ensure!(
                receiver.distinct() == (6 + i) as usize,
                "call {i} was answered before its required webhook got it"
            );
        }
    }
    anyhow::ensure!(
        !required
            || bench
                .wait_delivered((5 + calls) as i64, Duration::from_secs(30))
                .await
                .is_ok(),
        "every required delivery is in the delivery log"
    );
    serve.stop();
    bench.drop_database().await?;
    let _ = std::fs::remove_dir_all(file.parent().unwrap_or(&file));
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}
