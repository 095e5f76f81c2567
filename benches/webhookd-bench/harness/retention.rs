//! Scenario 12: retention at work during delivery (issue 15). Scenario 1's events to one
//! subscription, once with retention off and once while retention removes a backlog of
//! finished deliveries (each with an attempt and an event) 40 days old, a pass every second.
//! The ratio is what retention costs the delivery rate (the bound is 10%). Quick mode checks
//! that every new delivery arrived and that the whole backlog, and nothing else, was
//! removed.

use std::time::{Duration, Instant};

use super::env::{Bench, Server};
use super::report::Row;
use super::scenarios::{FAST, Plan, publish};
use crate::receiver::Receiver;

const SCENARIO: &str = "12 retention";

pub async fn retention(server: &Server, plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let events = plan.n(100_000, 1000);
    let backlog = plan.n(200_000, 3000);
    let off = deliver(server, plan, events, 0, &["--retention", "0s"]).await?;
    let on = deliver(
        server,
        plan,
        events,
        backlog,
        &["--retention", "30days", "--retention-interval", "1s"],
    )
    .await?;
    let case = format!("{events} events x 1 subscription");
    Ok(vec![
        Row::new(
            SCENARIO,
            &format!("{case}, retention off"),
            "deliveries/s",
            off.rate,
        ),
        Row::new(
            SCENARIO,
            &format!("{case}, removing {backlog} old deliveries"),
            "deliveries/s",
            on.rate,
        ),
        Row::new(SCENARIO, &case, "with / without", on.rate / off.rate),
        Row::new(
            SCENARIO,
            &format!("{case}, removing {backlog} old deliveries"),
            "old deliveries removed by the end",
            on.removed as f64,
        ),
    ])
}

struct Run {
    rate: f64,
    removed: i64,
}

/// Delivers `events` to one subscription with `flags`, after seeding `backlog` old
/// finished deliveries.
async fn deliver(
    server: &Server,
    plan: &Plan,
    events: u64,
    backlog: u64,
    flags: &[&str],
) -> anyhow::Result<Run> {
    let bench = Bench::new(server).await?;
    let receiver = Receiver::counting(plan.quick, None).await?;
    bench.subscribe("petapis", &receiver, 1, 0).await?;
    seed(&bench, backlog).await?;
    let flags = [FAST, &["--max-in-flight-per-webhook", "100000"], flags].concat();
    let serve = bench.serve(&flags)?;
    serve.ready().await?;
    let started = Instant::now();
    publish(&serve, &bench.token, "petapis", events, 1000, false).await?;
    receiver
        .wait_distinct(events as usize, Duration::from_secs(600))
        .await?;
    let recorded = || async {
        count(
            &bench,
            "state = 'delivered' AND create_time > now() - interval '1 day'",
        )
        .await
        .is_ok_and(|n| n >= events as i64)
    };
    crate::wait::until(
        "the new deliveries recorded",
        Duration::from_secs(120),
        recorded,
    )
    .await?;
    let rate = events as f64 / started.elapsed().as_secs_f64();
    let old = "create_time < now() - interval '30 days'";
    if plan.quick && backlog > 0 {
        let old_events =
            "SELECT count(*) FROM events WHERE create_time < now() - interval '30 days'";
        let gone = || async {
            let events: sqlx::Result<i64> =
                sqlx::query_scalar(old_events).fetch_one(&bench.pool).await;
            count(&bench, old).await.is_ok_and(|n| n == 0) && events.is_ok_and(|n| n == 0)
        };
        crate::wait::until(
            "the old backlog and its events removed",
            Duration::from_secs(60),
            gone,
        )
        .await?;
        let fresh = count(&bench, "create_time > now() - interval '1 day'").await?;
        anyhow::ensure!(
            fresh == events as i64,
            "{fresh} new deliveries left of {events}"
        );
    }
    let removed = backlog as i64 - count(&bench, old).await?;
    serve.stop();
    bench.drop_database().await?;
    Ok(Run { rate, removed })
}

/// Deliveries matching `condition`.
async fn count(bench: &Bench, condition: &str) -> anyhow::Result<i64> {
    let sql = format!("SELECT count(*) FROM deliveries WHERE {condition}");
    Ok(sqlx::query_scalar(&sql).fetch_one(&bench.pool).await?)
}

/// `n` delivered deliveries of the bench's webhook, 40 days old, a millisecond apart, each
/// with one attempt (its request and answer recorded) and its own event.
async fn seed(bench: &Bench, n: u64) -> anyhow::Result<()> {
    if n == 0 {
        return Ok(());
    }
    sqlx::query(
        r"
        WITH s AS (
            SELECT i, now() - interval '40 days' + i * interval '1 millisecond' AS t,
                   encode(overlay(uuid_send(webhookd_uuid_v7_floor(
                              now() - interval '40 days' + i * interval '1 millisecond'))
                          PLACING int8send(i) FROM 9 FOR 8), 'hex')::uuid AS id
            FROM generate_series(1, $1::bigint) i
        ), e AS (
            INSERT INTO events (id, owner_name, repository_name, event, payload, create_time)
            SELECT id, 'acme', 'petapis', 1, '\x0a00'::bytea, t FROM s
        ), d AS (
            INSERT INTO deliveries (id, event_id, webhook_id, state, attempt_count,
                                    next_attempt_time, create_time, last_attempt_time,
                                    last_http_status)
            SELECT s.id, s.id, (SELECT id FROM webhooks LIMIT 1), 'delivered', 1, t, t, t, 200
            FROM s
        )
        INSERT INTO delivery_attempts (delivery_id, number, start_time, duration_ms, http_status,
                                       response_body, request_headers, request_body_size,
                                       response_headers)
        SELECT id, 1, t, 3, 200, '\x'::bytea, '\x0000'::bytea, 2, '\x0100'::bytea FROM s
        ",
    )
    .bind(i64::try_from(n)?)
    .execute(&bench.pool)
    .await?;
    Ok(())
}
