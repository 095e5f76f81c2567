//! The benchmark scenarios of issue 4. Each returns measured rows; in quick mode the counts
//! are small and each scenario asserts correctness, never speed: the delivering ones (1, 2,
//! 6, 7, 8) that every subscriber received every event once, byte for byte as published;
//! cadence that no poll delivered more than a batch; ingest that every event was stored;
//! api that every request succeeded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use buffa::{Message as _, MessageField};
use webhookd::proto::webhookd::v1 as pb;
use webhookd::synthetic::repository_push;

use super::env::{Bench, Serve, Server};
use super::report::Row;
use super::steady::{Since, Steady, quantile};
use crate::receiver::Receiver;

/// The fast profile of scenario 1.
pub const FAST: &[&str] = &[
    "--drain",
    "--wake-on-publish",
    "--batch-size",
    "1000",
    "--max-in-flight",
    "2000",
    "--poll-interval",
    "1s",
    "--max-db-connections",
    "16",
];

/// The profile of the latency scenarios: woken by each publish, batches of up to 100.
pub const LATENCY: &[&str] = &[
    "--wake-on-publish",
    "--drain",
    "--batch-size",
    "100",
    "--poll-interval",
    "1s",
];

/// How big a run is.
pub struct Plan {
    /// Small counts that check correctness, not speed.
    pub quick: bool,
}

impl Plan {
    /// The full-run count, or the quick-mode one.
    pub fn n(&self, full: u64, quick: u64) -> u64 {
        if self.quick { quick } else { full }
    }
}

/// Publishes `count` synthetic pushes to acme/`repository` in Publish calls of `batch`.
/// With `keep` (quick mode) returns each event as encoded when published, for
/// [`check_exact`]; otherwise nothing.
pub async fn publish(
    serve: &Serve,
    token: &str,
    repository: &str,
    count: u64,
    batch: u64,
    keep: bool,
) -> anyhow::Result<Vec<Vec<u8>>> {
    publish_with(&serve.publisher(token), repository, 0..count, batch, keep).await
}

/// Publishes synthetic pushes numbered `numbers` to acme/`repository` in calls of `batch`;
/// with `keep`, returns each as encoded.
pub async fn publish_with(
    client: &pb::PublishServiceClient<connectrpc::client::HttpClient>,
    repository: &str,
    numbers: std::ops::Range<u64>,
    batch: u64,
    keep: bool,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let (mut sent, mut published) = (numbers.start, vec![]);
    while sent < numbers.end {
        let n = batch.min(numbers.end - sent);
        let events = (sent..sent + n)
            .map(|i| {
                let event = repository_push("acme", repository, i);
                if keep {
                    published.push(event.encode_to_vec());
                }
                pb::PublishEvent {
                    event: MessageField::some(event),
                    ..Default::default()
                }
            })
            .collect();
        client
            .publish(pb::PublishRequest {
                events,
                ..Default::default()
            })
            .await?;
        sent += n;
    }
    Ok(published)
}

/// Checks that each of subscribers `0..subscribers` received every published event once,
/// byte for byte as published, and that nothing else arrived (no other path, no event
/// twice under two delivery ids, nothing altered). Needs a receiver that keeps bodies.
pub fn check_exact(
    receiver: &Receiver,
    published: &[Vec<u8>],
    subscribers: usize,
) -> anyhow::Result<()> {
    let seen = receiver.seen();
    // +1 for each (subscriber, event) owed, -1 for each that arrived.
    let mut owed: HashMap<(usize, &[u8]), i64> = HashMap::new();
    for n in 0..subscribers {
        for event in published {
            *owed.entry((n, event)).or_default() += 1;
        }
    }
    for (id, arrival) in &seen.first {
        let body = arrival
            .body
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("the receiver kept no bodies"))?;
        let n = arrival
            .subscriber
            .filter(|n| *n < subscribers)
            .ok_or_else(|| anyhow::anyhow!("delivery {id} reached no subscriber's path"))?;
        *owed.entry((n, body)).or_default() -= 1;
    }
    let missing: i64 = owed.values().filter(|v| **v > 0).sum();
    let unexpected: i64 = -owed.values().filter(|v| **v < 0).sum::<i64>();
    anyhow::ensure!(
        missing == 0 && unexpected == 0,
        "of {} deliveries owed ({} events x {subscribers} subscribers), {missing} never \
         arrived as published and {unexpected} arrived that were not owed",
        published.len() * subscribers,
        published.len()
    );
    Ok(())
}

/// Scenario 1 (and 7 and 8): `events` events to `subs` subscriptions of one repository, with
/// `processes` serve processes in the fast profile. Returns deliveries/s and resources.
pub async fn throughput_run(
    server: &Server,
    plan: &Plan,
    events: u64,
    subs: usize,
    processes: usize,
) -> anyhow::Result<(f64, u64, f64)> {
    let (rate, rss, cpu, _) =
        throughput_tailed(server, plan, events, subs, processes, false).await?;
    Ok((rate, rss, cpu))
}

/// [`throughput_run`], with a live-tail reader of every attempt on the first process when
/// `tail`; also what the reader was sent and told it missed.
async fn throughput_tailed(
    server: &Server,
    plan: &Plan,
    events: u64,
    subs: usize,
    processes: usize,
    tail: bool,
) -> anyhow::Result<(f64, u64, f64, (u64, u64))> {
    let bench = Bench::new(server).await?;
    let receiver = Receiver::counting(plan.quick, None).await?;
    bench.subscribe("petapis", &receiver, subs, 0).await?;
    let flags = [FAST, &["--max-in-flight-per-webhook", "100000"]].concat();
    let serves: Vec<Serve> = (0..processes)
        .map(|_| bench.serve(&flags))
        .collect::<anyhow::Result<_>>()?;
    for s in &serves {
        s.ready().await?;
    }
    let reader = match tail {
        true => Some(super::console::TailReader::open(&serves[0], &bench.token).await?),
        false => None,
    };
    let total = events * subs as u64;
    let started = Instant::now();
    let published = publish(
        &serves[0],
        &bench.token,
        "petapis",
        events,
        1000,
        plan.quick,
    )
    .await?;
    receiver
        .wait_distinct(total as usize, Duration::from_secs(600))
        .await?;
    let done = bench
        .wait_delivered(total as i64, Duration::from_secs(120))
        .await?;
    let rate = total as f64 / done.duration_since(started).as_secs_f64();
    let (rss, cpu) = serves[0].resources()?;
    if plan.quick {
        check_exact(&receiver, &published, subs)?;
    }
    let tailed = match reader {
        Some(reader) => reader.finish(total).await?,
        None => (0, 0),
    };
    for s in serves {
        s.stop();
    }
    bench.drop_database().await?;
    Ok((
        rate,
        rss,
        cpu * 10_000.0 / (total as f64 / processes as f64),
        tailed,
    ))
}

/// Scenario 15: scenario 1's first case without and with a live-tail reader of every
/// attempt, alternating; what the reader was sent and told it missed.
pub async fn tail(server: &Server, plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let events = plan.n(100_000, 2000);
    let mut rows = vec![];
    for tailed in [false, true] {
        let (rate, _, _, (sent, missed)) =
            throughput_tailed(server, plan, events, 1, 1, tailed).await?;
        let case = match tailed {
            false => format!("{events} deliveries, no reader"),
            true => format!("{events} deliveries, one reader of every attempt"),
        };
        rows.push(Row::new("15 tail", &case, "deliveries/s", rate));
        if tailed {
            anyhow::ensure!(sent + missed == events, "sent {sent} + missed {missed}");
            rows.push(Row::new("15 tail", &case, "attempts sent", sent as f64));
            rows.push(Row::new("15 tail", &case, "attempts missed", missed as f64));
        }
    }
    Ok(rows)
}

pub async fn throughput(server: &Server, plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let mut rows = vec![];
    for (events, subs) in [
        (plan.n(100_000, 2000), 1),
        (plan.n(1000, 20), plan.n(100, 10) as usize),
        (plan.n(100, 5), plan.n(1000, 40) as usize),
    ] {
        let (rate, _, _) = throughput_run(server, plan, events, subs, 1).await?;
        rows.push(Row::new(
            "1 throughput",
            &format!("{events} events x {subs} subscriptions"),
            "deliveries/s",
            rate,
        ));
    }
    Ok(rows)
}

pub async fn scale_out(server: &Server, plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let mut rows = vec![];
    for processes in [1, 2, 4] {
        let (rate, _, _) =
            throughput_run(server, plan, plan.n(100_000, 2000), 1, processes).await?;
        rows.push(Row::new(
            "7 scale-out",
            &format!("{processes} serve processes"),
            "deliveries/s",
            rate,
        ));
    }
    Ok(rows)
}

pub async fn resources(server: &Server, plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let count = plan.n(100_000, 2000);
    let (_, rss, cpu_per_10k) = throughput_run(server, plan, count, 1, 1).await?;
    let case = format!("serve, {count} deliveries");
    Ok(vec![
        Row::new("8 resources", &case, "peak RSS MB", rss as f64 / 1e6),
        Row::new(
            "8 resources",
            &case,
            "CPU s per 10k deliveries",
            cpu_per_10k,
        ),
    ])
}

/// Scenario 2: a steady rate of single-event publishes; latency from publish acknowledged to
/// the listener's receipt.
pub async fn latency(server: &Server, plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let bench = Bench::new(server).await?;
    let receiver = Receiver::counting(plan.quick, None).await?;
    bench.subscribe("petapis", &receiver, 1, 0).await?;
    let serve = bench.serve(LATENCY)?;
    serve.ready().await?;
    let (rate, seconds) = (500u64, plan.n(30, 2));
    let steady = Steady::publish(&serve, &bench.token, rate, seconds, 0, plan.quick).await?;
    receiver
        .wait_arrived(1, steady.acked.len(), Duration::from_secs(60))
        .await?;
    let latencies = steady.latencies(&bench, &receiver, 1).await?;
    let from_send = steady
        .latencies_since(&bench, &receiver, 1, Since::Sent)
        .await?;
    if plan.quick {
        check_exact(&receiver, &steady.published, 1)?;
    }
    serve.stop();
    bench.drop_database().await?;
    let case = format!("{rate} events/s for {seconds} s");
    Ok(vec![
        Row::new("2 latency", &case, "p50 ms", quantile(&latencies, 0.5)),
        Row::new("2 latency", &case, "p95 ms", quantile(&latencies, 0.95)),
        Row::new("2 latency", &case, "p99 ms", quantile(&latencies, 0.99)),
        Row::new("2 latency", &case, "max ms", quantile(&latencies, 1.0)),
        Row::new(
            "2 latency",
            &case,
            "send -> receipt p50 ms",
            quantile(&from_send, 0.5),
        ),
        Row::new(
            "2 latency",
            &case,
            "send -> receipt p99 ms",
            quantile(&from_send, 0.99),
        ),
    ])
}

/// Scenario 3: the defaults against a backlog: at most `batch` per poll, drained at that rate.
pub async fn cadence(server: &Server, plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let bench = Bench::new(server).await?;
    let receiver = Receiver::counting(false, None).await?;
    bench.subscribe("petapis", &receiver, 1, 0).await?;
    let (poll, batch, windows) = if plan.quick {
        (1u64, 5u64, 3u64)
    } else {
        (5, 20, 4)
    };
    let flags = [
        "--poll-interval".to_owned(),
        format!("{poll}s"),
        "--batch-size".into(),
        batch.to_string(),
    ];
    let serve = bench.serve(&flags.iter().map(String::as_str).collect::<Vec<_>>())?;
    serve.ready().await?;
    publish(&serve, &bench.token, "petapis", 100, 100, false).await?;
    let start = Instant::now();
    let mut counts = vec![];
    for w in 1..=windows {
        tokio::time::sleep_until((start + Duration::from_secs(poll * w)).into()).await;
        counts.push(receiver.distinct());
    }
    let per_window: Vec<usize> = counts
        .iter()
        .scan(0, |prev, &c| {
            let d = c - *prev;
            *prev = c;
            Some(d)
        })
        .collect();
    let max = per_window.iter().copied().max().unwrap_or(0);
    anyhow::ensure!(
        max as u64 <= batch,
        "{max} delivered in one {poll}-s poll window (limit {batch})"
    );
    let rate = counts.last().copied().unwrap_or(0) as f64 / (poll * windows) as f64;
    serve.stop();
    bench.drop_database().await?;
    let case = format!("defaults: batch {batch}, poll {poll} s, backlog 100");
    Ok(vec![
        Row::new(
            "3 cadence",
            &case,
            &format!("max per {poll}-s poll"),
            max as f64,
        ),
        Row::new("3 cadence", &case, "drain rate/s", rate),
    ])
}

/// Scenario 4: events/s accepted by Publish, in batches of 1, 100 and 1000.
pub async fn ingest(server: &Server, plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let mut rows = vec![];
    for (batch, clients, total) in [
        (1u64, 16u64, plan.n(10_000, 200)),
        (100, 4, plan.n(100_000, 2000)),
        (1000, 2, plan.n(200_000, 4000)),
    ] {
        let bench = Bench::new(server).await?;
        let receiver = Receiver::counting(false, None).await?;
        bench.subscribe("petapis", &receiver, 1, 0).await?;
        let serve = bench.serve(&["--no-dispatch"])?;
        serve.ready().await?;
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..clients {
            let (client_serve, token) = (serve.base(), bench.token.clone());
            let share = total / clients;
            tasks.spawn(async move { publish_via(&client_serve, &token, share, batch).await });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        let rate = (total / clients * clients) as f64 / started.elapsed().as_secs_f64();
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&bench.pool)
            .await?;
        anyhow::ensure!(
            stored as u64 == total / clients * clients,
            "{stored} events stored"
        );
        serve.stop();
        bench.drop_database().await?;
        rows.push(Row::new(
            "4 ingest",
            &format!("batches of {batch}, {clients} clients"),
            "events/s",
            rate,
        ));
    }
    Ok(rows)
}

async fn publish_via(base: &str, token: &str, count: u64, batch: u64) -> anyhow::Result<()> {
    let config = connectrpc::client::ClientConfig::new(base.parse()?)
        .with_default_header("authorization", format!("Bearer {token}").as_str());
    let client = pb::PublishServiceClient::new(connectrpc::client::HttpClient::plaintext(), config);
    publish_with(&client, "petapis", 0..count, batch, false).await?;
    Ok(())
}

/// Scenario 6: one of ten subscribers never answers; the other nine compared with a run in
/// which all ten are healthy: their throughput draining a burst, then their latency under a
/// steady rate.
pub async fn slow_subscriber(server: &Server, plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let (events, rate, seconds) = (plan.n(2000, 100), 100, plan.n(10, 2));
    let mut rows = vec![];
    for hanging in [false, true] {
        let bench = Bench::new(server).await?;
        // Subscriber 9 is the one that hangs; 0..9 are the nine.
        let receiver = Receiver::counting(plan.quick, hanging.then(|| "/9/".to_owned())).await?;
        bench.subscribe("petapis", &receiver, 10, 0).await?;
        let serve = bench.serve(
            &[
                FAST,
                &[
                    "--delivery-timeout",
                    "10s",
                    "--max-in-flight-per-webhook",
                    "100",
                ],
            ]
            .concat(),
        )?;
        serve.ready().await?;
        let started = Instant::now();
        let mut published =
            publish(&serve, &bench.token, "petapis", events, 1000, plan.quick).await?;
        receiver
            .wait_arrived(9, events as usize * 9, Duration::from_secs(300))
            .await?;
        let throughput = (events * 9) as f64 / started.elapsed().as_secs_f64();
        let healthy = if hanging { 9 } else { 10 };
        // The burst is behind everyone that answers before the steady rate starts.
        receiver
            .wait_arrived(healthy, events as usize * healthy, Duration::from_secs(300))
            .await?;
        let steady =
            Steady::publish(&serve, &bench.token, rate, seconds, events, plan.quick).await?;
        receiver
            .wait_arrived(
                healthy,
                (events as usize + steady.acked.len()) * healthy,
                Duration::from_secs(60),
            )
            .await?;
        let latencies = steady.latencies(&bench, &receiver, 9).await?;
        if plan.quick {
            published.extend_from_slice(&steady.published);
            check_exact(&receiver, &published, healthy)?;
        }
        serve.stop();
        bench.drop_database().await?;
        let case = if hanging {
            "1 of 10 never answers"
        } else {
            "all 10 healthy"
        };
        let at_rate = format!("at {rate} events/s");
        rows.extend([
            Row::new(
                "6 slow subscriber",
                case,
                "the nine's deliveries/s",
                throughput,
            ),
            Row::new(
                "6 slow subscriber",
                case,
                &format!("the nine's p50 ms {at_rate}"),
                quantile(&latencies, 0.5),
            ),
            Row::new(
                "6 slow subscriber",
                case,
                &format!("the nine's p99 ms {at_rate}"),
                quantile(&latencies, 0.99),
            ),
        ]);
    }
    Ok(rows)
}

/// Runs one named scenario.
pub async fn run(name: &str, server: &Server, plan: &Plan) -> anyhow::Result<Vec<Row>> {
    match name {
        "throughput" => throughput(server, plan).await,
        "latency" => latency(server, plan).await,
        "cadence" => cadence(server, plan).await,
        "ingest" => ingest(server, plan).await,
        "api" => super::api::api(server, plan).await,
        "slow-subscriber" => slow_subscriber(server, plan).await,
        "scale-out" => scale_out(server, plan).await,
        "resources" => resources(server, plan).await,
        "one-per-call" => super::one_per_call::one_per_call(server, plan).await,
        "body-flood" => super::flood::body_flood(server, plan).await,
        "formats" => super::formats::formats(server, plan).await,
        "retention" => super::retention::retention(server, plan).await,
        "angos-required" => super::angos::angos_required(server, plan).await,
        "console" => super::console::console(server, plan).await,
        "tail" => tail(server, plan).await,
        other => anyhow::bail!("unknown scenario {other:?}"),
    }
}

/// Every scenario, in issue order.
pub const ALL: &[&str] = &[
    "throughput",
    "latency",
    "cadence",
    "ingest",
    "api",
    "slow-subscriber",
    "scale-out",
    "resources",
    "one-per-call",
    "body-flood",
    "formats",
    "retention",
    "angos-required",
    "console",
    "tail",
];
