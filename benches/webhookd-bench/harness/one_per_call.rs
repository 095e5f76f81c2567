//! Scenario 9: producers that publish one event per Publish call, the way most applications
//! publish: 32 concurrent clients with the batcher off (ingest) and on (ingest and delivery
//! together), the drain of a backlog built that way beside the same backlog published in
//! bulk, and a steady 200 events/s with its latency and PostgreSQL's CPU per delivery.

use std::time::{Duration, Instant};

use super::env::{Bench, Serve, Server};
use super::report::Row;
use super::scenarios::{FAST, LATENCY, Plan, check_exact, publish, publish_with};
use super::steady::{Since, Steady, quantile};
use crate::receiver::Receiver;

const SCENARIO: &str = "9 one per call";
/// Concurrent single-event publishers.
const CLIENTS: u64 = 32;

/// The drain profile: the fast profile, with the batcher alone.
fn drain_flags() -> Vec<&'static str> {
    [FAST, &["--no-api", "--max-in-flight-per-webhook", "100000"]].concat()
}

pub async fn one_per_call(server: &Server, plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let events = plan.n(50_000, 400);
    let mut rows = vec![];

    // Ingest alone, then the drain of what it built.
    let (bench, receiver) = setup(server, plan).await?;
    let serve = bench.serve(&["--no-dispatch"])?;
    serve.ready().await?;
    let started = Instant::now();
    let published = publish_concurrently(&serve, &bench.token, events, plan.quick).await?;
    let ingest = events as f64 / started.elapsed().as_secs_f64();
    serve.stop();
    let single = drain(&bench, &receiver, &published, events, plan).await?;
    bench.drop_database().await?;

    // The same backlog published in bulk, drained the same way.
    let (bench, receiver) = setup(server, plan).await?;
    let serve = bench.serve(&["--no-dispatch"])?;
    serve.ready().await?;
    let published = publish(&serve, &bench.token, "petapis", events, 1000, plan.quick).await?;
    serve.stop();
    let bulk = drain(&bench, &receiver, &published, events, plan).await?;
    bench.drop_database().await?;

    // Ingest and delivery together.
    let (bench, receiver) = setup(server, plan).await?;
    let serve = bench.serve(&[FAST, &["--max-in-flight-per-webhook", "100000"]].concat())?;
    serve.ready().await?;
    let started = Instant::now();
    let published = publish_concurrently(&serve, &bench.token, events, plan.quick).await?;
    let done = delivered(&bench, &receiver, events).await?;
    let together = events as f64 / done.duration_since(started).as_secs_f64();
    if plan.quick {
        check_exact(&receiver, &published, 1)?;
    }
    serve.stop();
    bench.drop_database().await?;

    let backlog = format!("{events} events, 1 subscription");
    let clients = format!("{events} events, {CLIENTS} clients");
    rows.extend([
        Row::new(
            SCENARIO,
            &format!("ingest, {clients}, batcher off"),
            "events/s",
            ingest,
        ),
        Row::new(
            SCENARIO,
            &format!("ingest and delivery, {clients}, fast profile"),
            "deliveries/s",
            together,
        ),
        Row::new(
            SCENARIO,
            &format!("drain, {backlog}, published one per call"),
            "deliveries/s",
            single,
        ),
        Row::new(
            SCENARIO,
            &format!("drain, {backlog}, published in batches of 1000"),
            "deliveries/s",
            bulk,
        ),
        Row::new(
            SCENARIO,
            &format!("drain, {backlog}"),
            "one per call / bulk",
            single / bulk,
        ),
    ]);
    rows.extend(steady(server, plan).await?);
    Ok(rows)
}

/// A fresh database with one subscription on a receiver (that keeps bodies in quick mode).
async fn setup(server: &Server, plan: &Plan) -> anyhow::Result<(Bench, Receiver)> {
    let bench = Bench::new(server).await?;
    let receiver = Receiver::counting(plan.quick, None).await?;
    bench.subscribe("petapis", &receiver, 1, 0).await?;
    Ok((bench, receiver))
}

/// `count` single-event Publish calls from [`CLIENTS`] concurrent clients; with `keep`, the
/// events as encoded.
async fn publish_concurrently(
    serve: &Serve,
    token: &str,
    count: u64,
    keep: bool,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut tasks = tokio::task::JoinSet::new();
    let share = count.div_ceil(CLIENTS);
    for c in 0..CLIENTS {
        let client = serve.publisher(token);
        let numbers = (c * share).min(count)..((c + 1) * share).min(count);
        tasks.spawn(async move { publish_with(&client, "petapis", numbers, 1, keep).await });
    }
    let mut published = vec![];
    while let Some(done) = tasks.join_next().await {
        published.extend(done??);
    }
    Ok(published)
}

/// Drains the backlog of `events` deliveries with a batcher-only `serve`; deliveries/s from
/// the first arrival (the process's start-up is not the drain's) to the last one recorded.
async fn drain(
    bench: &Bench,
    receiver: &Receiver,
    published: &[Vec<u8>],
    events: u64,
    plan: &Plan,
) -> anyhow::Result<f64> {
    let serve = bench.serve(&drain_flags())?;
    let done = delivered(bench, receiver, events).await?;
    let first = receiver
        .first_arrival()
        .ok_or_else(|| anyhow::anyhow!("nothing arrived"))?;
    if plan.quick {
        check_exact(receiver, published, 1)?;
    }
    serve.stop();
    Ok(events as f64 / done.duration_since(first).as_secs_f64())
}

/// When all `events` deliveries had arrived and been recorded as delivered: the receiver's
/// count is waited for first, since counting the database's rows takes PostgreSQL's time
/// from the run.
async fn delivered(bench: &Bench, receiver: &Receiver, events: u64) -> anyhow::Result<Instant> {
    receiver
        .wait_distinct(events as usize, Duration::from_secs(600))
        .await?;
    bench
        .wait_delivered(events as i64, Duration::from_secs(120))
        .await
}

/// A steady 200 single-event calls a second: latency to receipt from the call and from its
/// acknowledgement, and PostgreSQL's CPU time per 10,000 deliveries (embedded server only).
async fn steady(server: &Server, plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let (bench, receiver) = setup(server, plan).await?;
    let serve = bench.serve(LATENCY)?;
    serve.ready().await?;
    let (rate, seconds) = (200u64, plan.n(30, 2));
    // A second's warm-up (connections, prepared statements), not measured.
    let warm = Steady::publish(&serve, &bench.token, rate, 1, 0, plan.quick).await?;
    receiver
        .wait_arrived(1, warm.acked.len(), Duration::from_secs(60))
        .await?;
    // The earlier runs' writes are flushed first, so that a checkpoint of theirs does not
    // land in this window (where the server is the embedded one, whose CPU is measured).
    if server.pg_cpu_seconds().is_some() {
        sqlx::query("CHECKPOINT").execute(&bench.pool).await?;
    }
    let cpu_before = server.pg_cpu_seconds();
    let steady = Steady::publish(&serve, &bench.token, rate, seconds, rate, plan.quick).await?;
    let total = warm.acked.len() + steady.acked.len();
    receiver
        .wait_arrived(1, total, Duration::from_secs(60))
        .await?;
    bench
        .wait_delivered(total as i64, Duration::from_secs(60))
        .await?;
    let cpu = server
        .pg_cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let latencies = steady.latencies(&bench, &receiver, 1).await?;
    let from_send = steady
        .latencies_since(&bench, &receiver, 1, Since::Sent)
        .await?;
    if plan.quick {
        check_exact(&receiver, &[warm.published, steady.published].concat(), 1)?;
    }
    serve.stop();
    bench.drop_database().await?;
    let case = format!("{rate} events/s for {seconds} s, 1 subscription");
    let mut rows = vec![
        Row::new(SCENARIO, &case, "p50 ms", quantile(&latencies, 0.5)),
        Row::new(SCENARIO, &case, "p99 ms", quantile(&latencies, 0.99)),
        Row::new(
            SCENARIO,
            &case,
            "send -> receipt p50 ms",
            quantile(&from_send, 0.5),
        ),
        Row::new(
            SCENARIO,
            &case,
            "send -> receipt p99 ms",
            quantile(&from_send, 0.99),
        ),
    ];
    if let Some(cpu) = cpu {
        let per_10k = cpu * 10_000.0 / steady.acked.len() as f64;
        rows.push(Row::new(
            SCENARIO,
            &case,
            "PostgreSQL CPU s per 10k deliveries",
            per_10k,
        ));
    }
    Ok(rows)
}
