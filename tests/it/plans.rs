//! The plans of the statements on the publish, claim and record path (`src/store/queue/`),
//! on realistic tables: 100,000 pending deliveries with 2,000 of them leased, and 20,000 with
//! 5,500 leased, for 1,000 webhooks. Each statement runs under `EXPLAIN ANALYZE` exactly as
//! the store sends it, under the settings the batcher's sessions have
//! (`store::QUEUE_SESSION`; the publish's `store::PUBLISH_SESSION` only sets the plan cache
//! mode, tested both ways), planned on statistics taken before the backlog existed, before
//! anything was leased and now, as a custom plan and as the generic plan a prepared statement
//! turns into. A plan fails on a nested loop with a join filter, and on any scan that reads
//! far more rows than the statement's batch (a scan of the backlog).

use serde_json::Value;
use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

use crate::helpers::test_database;

const CLAIM: &str = include_str!("../../src/store/queue/claim.sql");
const FAIR_CLAIM: &str = include_str!("../../src/store/queue/fair_claim.sql");
const CLAIM_TARGETS: &str = include_str!("../../src/store/queue/claim_targets.sql");
const LEASE: &str = include_str!("../../src/store/queue/lease.sql");
const RECORD: &str = include_str!("../../src/store/queue/record_attempts.sql");
const RELEASE: &str = include_str!("../../src/store/queue/release.sql");
const PUBLISH: &str = include_str!("../../src/store/queue/publish.sql");

/// The rows one statement handles: a claim's limit, a record's outcomes, a publish's events.
const BATCH: usize = 1000;
/// The most rows a scan may read: a few times the batch, far below the backlog.
const MAX_READ: f64 = (BATCH * 3) as f64;
/// Tables a statement may scan whole: `tail_follows` holds a row per serving process and
/// owner some live-tail reader follows (the recorder reads it to decide what to notify).
/// They are still held to [`MAX_READ`].
const SMALL_TABLES: &[&str] = &["tail_follows"];

#[tokio::test]
async fn no_queue_statement_reads_the_backlog_or_joins_by_filter_whatever_the_statistics() {
    let mut problems = vec![];
    // The issue's table, and the one on which the recorder's plan was seen to go quadratic
    // (1,000 outcomes compared with each of 5,500 leased rows: 1.3 s for one batch).
    for (backlog, leased) in [(100_000, 2000), (20_000, 5500)] {
        for statistics in [
            Statistics::BeforeBacklog,
            Statistics::BeforeLeases,
            Statistics::Fresh,
        ] {
            problems.extend(problems_on(backlog, leased, statistics).await);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// When the planner's statistics were last taken.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Statistics {
    /// Before the backlog existed: they say the queue is empty, as after a quiet night.
    BeforeBacklog,
    /// After a backlog was published with the batcher off, before it started claiming.
    BeforeLeases,
    /// Now.
    Fresh,
}

/// What is wrong with the queue statements' plans on a table of `backlog` pending
/// deliveries, `leased` of them leased, under `statistics`.
async fn problems_on(backlog: usize, leased: usize, statistics: Statistics) -> Vec<String> {
    let (pool, options) = test_database().await;
    let mut conn = PgConnection::connect_with(&options).await.unwrap();
    let analyze = |when: Statistics| statistics == when;
    let worker = Uuid::new_v4();
    fill_webhooks(&mut conn).await;
    for (step, when) in [
        ("backlog", Statistics::BeforeBacklog),
        ("leases", Statistics::BeforeLeases),
        ("", Statistics::Fresh),
    ] {
        if analyze(when) {
            sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
        }
        match step {
            "backlog" => fill_backlog(&mut conn, backlog).await,
            "leases" => lease(&mut conn, worker, leased).await,
            _ => {}
        }
    }
    let mut problems = vec![];
    for mode in ["force_custom_plan", "force_generic_plan"] {
        for (name, plan) in plans(&mut conn, worker, mode).await {
            let mut found = vec![];
            check(&plan, &mut found);
            problems.extend(found.into_iter().map(|p| {
                format!("{backlog} pending, {leased} leased, statistics {statistics:?}: {name} ({mode}): {p}")
            }));
        }
    }
    conn.close().await.unwrap();
    pool.close().await;
    problems
}

async fn fill_webhooks(conn: &mut PgConnection) {
    sqlx::raw_sql(
        r"
        ALTER TABLE deliveries SET (autovacuum_enabled = false);
        ALTER TABLE events SET (autovacuum_enabled = false);
        INSERT INTO webhooks (id, owner_name, repository_name, event, callback_url,
                              create_time, update_time)
        SELECT gen_random_uuid(), 'acme', 'repo' || (g % 100), 1,
               'https://example.com/' || g, now(), now()
        FROM generate_series(1, 1000) g;
        INSERT INTO webhook_secrets (webhook_id, secret) SELECT id, '\x00' FROM webhooks;
        -- Other tenants' queued counts, as a shared server has.
        INSERT INTO owner_counts (owner_name, queued)
        SELECT 'owner' || g, g FROM generate_series(1, 1000) g;
        ",
    )
    .execute(conn)
    .await
    .unwrap();
}

/// `backlog` events of 100 repositories, one pending delivery each (the shape a backlog of
/// single-event publishes has).
async fn fill_backlog(conn: &mut PgConnection, backlog: usize) {
    sqlx::query(
        r"
        INSERT INTO events (id, owner_name, repository_name, event, payload)
        SELECT gen_random_uuid(), 'acme', 'repo' || (g % 100), 1, '\x00'
        FROM generate_series(1, $1) g
        ",
    )
    .bind(backlog as i32)
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::raw_sql(
        r"
        INSERT INTO deliveries (event_id, webhook_id, next_attempt_time)
        SELECT e.id, w.id, now() - interval '1 hour'
        FROM events e
        JOIN (SELECT DISTINCT ON (repository_name) repository_name, id FROM webhooks) w
          USING (repository_name);
        ",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
}

/// The oldest `count` deliveries claimed by `worker`.
async fn lease(conn: &mut PgConnection, worker: Uuid, count: usize) {
    sqlx::query(
        r"
        UPDATE deliveries
        SET lease_owner = $1, lease_expire_time = now() + interval '1 hour',
            next_attempt_time = now() + interval '1 hour'
        WHERE id IN (SELECT id FROM deliveries ORDER BY id LIMIT $2)
        ",
    )
    .bind(worker)
    .bind(count as i64)
    .execute(conn)
    .await
    .unwrap();
}

/// Each queue statement's `EXPLAIN (ANALYZE)` plan under plan cache `mode`, each in a
/// transaction that is rolled back.
async fn plans(conn: &mut PgConnection, worker: Uuid, mode: &str) -> Vec<(&'static str, Value)> {
    let leased: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM deliveries WHERE lease_owner = $1 ORDER BY id LIMIT $2")
            .bind(worker)
            .bind(BATCH as i64)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    let waiting: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM deliveries WHERE lease_owner IS NULL ORDER BY id LIMIT $1",
    )
    .bind(BATCH as i64)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let webhooks: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM webhooks LIMIT 100")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let n = leased.len();
    let now = chrono::Utc::now();
    let events: Vec<Uuid> = (0..BATCH).map(|_| Uuid::now_v7()).collect();
    let mut plans = vec![];
    for (name, sql, queue) in [
        ("claim", CLAIM, true),
        ("fair claim", FAIR_CLAIM, true),
        ("fair claim, mid-rotation", FAIR_CLAIM, true),
        ("lease", LEASE, true),
        ("claim targets", CLAIM_TARGETS, true),
        ("record attempts", RECORD, true),
        ("release", RELEASE, true),
        ("publish", PUBLISH, false),
        ("publish, handing to its batcher", PUBLISH, false),
        ("publish to native subscriptions, handing", PUBLISH, false),
    ] {
        let mut tx = conn.begin().await.unwrap();
        if queue {
            webhookd::store::apply_queue_session(&mut tx).await.unwrap();
        }
        sqlx::query("SELECT set_config('plan_cache_mode', $1, true)")
            .bind(mode)
            .execute(&mut *tx)
            .await
            .unwrap();
        // PREPARE outlives the transaction: a fresh name each time.
        let prepared = format!("queue_statement_{}", Uuid::new_v4().simple());
        sqlx::raw_sql(&format!("PREPARE {prepared} AS {sql}"))
            .execute(&mut *tx)
            .await
            .unwrap();
        // EXECUTE takes no bind parameters under EXPLAIN: the arguments are literals.
        let args: Vec<String> = match name {
            "claim" => vec![
                BATCH.to_string(),
                array(Vec::<Uuid>::new()),
                "NULL".into(),
                array(vec!["globex"]),
            ],
            "lease" => vec![literal(Uuid::new_v4()), array(&waiting), "30".into()],
            "fair claim" | "fair claim, mid-rotation" => vec![
                BATCH.to_string(),
                array(Vec::<Uuid>::new()),
                match name {
                    "fair claim" => "NULL".into(),
                    _ => literal(webhooks[50]),
                },
                "100".into(),
                array(vec!["globex"]),
            ],
            "claim targets" => vec![array(&webhooks)],
            "record attempts" => vec![
                literal(worker),
                array(&leased),
                array(vec!["delivered"; n]),
                array(vec![0.0f64; n]),
                array(vec![now.to_rfc3339(); n]),
                array(vec![5; n]),
                array(vec![200; n]),
                array(vec![""; n]),
                array(vec!["\\x"; n]),
                array(vec![""; n]),
                array(vec!["acme"; n]),
                array(vec!["content-type: application/json\n"; n]),
                array(vec!["\\x7b7d"; n]),
                array(vec![true; n]),
                array(vec![2; n]),
                array(vec!["content-length: 0\n"; n]),
            ],
            "release" => vec![array(&leased), literal(worker)],
            publish => [
                vec![
                    array(&events),
                    array(vec!["acme"; BATCH]),
                    array((0..BATCH).map(|i| format!("repo{}", i % 100))),
                    array(vec![1; BATCH]),
                    array(vec!["\\x00"; BATCH]),
                    // Half of them with idempotency keys.
                    array((0..BATCH).map(|i| match i % 2 {
                        0 => String::new(),
                        _ => format!("key-{i}"),
                    })),
                    literal("plan_test"),
                    match publish {
                        "publish" => "NULL".into(),
                        _ => literal(Uuid::new_v4()),
                    },
                    BATCH.to_string(),
                    "30".into(),
                    array(&webhooks[..10]),
                    array(vec![5; 10]),
                    "100".into(),
                    // With the queued limit checked.
                    "1000000".into(),
                    array(vec!["globex"]),
                ],
                // Routed deliveries to native subscriptions: none (the owner has none, so
                // none considered either), or one per event, to 100 of them (the statement
                // takes routing's word for their kind).
                match publish {
                    "publish to native subscriptions, handing" => vec![
                        array(&events),
                        array((0..BATCH).map(|i| webhooks[i % 100])),
                        array(vec![0; BATCH]),
                        array(&webhooks),
                    ],
                    _ => vec![
                        array(Vec::<Uuid>::new()),
                        array(Vec::<Uuid>::new()),
                        array(Vec::<i16>::new()),
                        array(Vec::<Uuid>::new()),
                    ],
                },
                vec![array(vec!["bsr"; BATCH]), array(vec![""; BATCH])],
                // The native subscriptions routing chose to hand to: half of them.
                vec![match publish {
                    "publish to native subscriptions, handing" => array(&webhooks[..50]),
                    _ => array(Vec::<Uuid>::new()),
                }],
            ]
            .concat(),
        };
        let explain = format!(
            "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {prepared}({})",
            args.join(", ")
        );
        let query = sqlx::query_scalar::<_, Value>(&explain);
        let plan = query.fetch_one(&mut *tx).await.unwrap();
        tx.rollback().await.unwrap();
        plans.push((name, plan[0]["Plan"].clone()));
    }
    plans
}

/// A quoted SQL literal of `value`.
fn literal(value: impl std::fmt::Display) -> String {
    format!("'{}'", value.to_string().replace('\'', "''"))
}

/// A quoted SQL literal of an array of `items`.
fn array<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let elements: Vec<String> = items
        .into_iter()
        .map(|item| {
            let text = item.to_string();
            format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
        })
        .collect();
    literal(format!("{{{}}}", elements.join(",")))
}

/// What is wrong with `node` and the nodes below it.
fn check(node: &Value, problems: &mut Vec<String>) {
    let kind = node["Node Type"].as_str().unwrap_or("?");
    let relation = node["Relation Name"].as_str();
    let number = |key: &str| node[key].as_f64().unwrap_or(0.0);
    if kind == "Nested Loop" && node.get("Join Filter").is_some() {
        problems.push(format!(
            "a nested loop with a join filter ({}, {} rows removed by it)",
            node["Join Filter"],
            number("Rows Removed by Join Filter")
        ));
    }
    // What an insert or update writes is its output (a fan-out writes many deliveries per
    // event); what it reads is in the scans below it.
    if let Some(relation) = relation.filter(|_| kind != "ModifyTable") {
        let read =
            (number("Actual Rows") + number("Rows Removed by Filter")) * number("Actual Loops");
        if (kind == "Seq Scan" && !SMALL_TABLES.contains(&relation)) || read > MAX_READ {
            problems.push(format!("{kind} on {relation} read {read} rows"));
        }
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        check(child, problems);
    }
}
