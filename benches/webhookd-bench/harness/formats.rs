//! Scenario 11: rendering at delivery time and routing native subscriptions (issue 14).
//! 100,000 registry events to one Harbor-format subscription beside 100,000 BSR events to one
//! BSR webhook (the same run, the same profile: the ratio is what rendering costs); one
//! registry event stream fanned out to 100 subscriptions, a quarter each `harbor`,
//! `cloudevents`, `angos` (two requests per event: `manifest.push`, `tag.create`) and `json`;
//! and Publish into an owner with 1,000 filtered subscriptions (each event matches one).

use std::time::{Duration, Instant};

use buffa::MessageField;
use webhookd::domain::Format;
use webhookd::proto::webhookd::v1 as pb;
use webhookd::synthetic::{artifact_push, github_push};

use super::env::{Bench, Serve, Server};
use super::report::Row;
use super::scenarios::{FAST, Plan, publish};
use crate::receiver::Receiver;

const SCENARIO: &str = "11 formats";
const OWNER: &str = "library";
/// The GitHub hook's owner.
const GITHUB_OWNER: &str = "octo-org";

pub async fn formats(server: &Server, plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let mut rows = vec![];
    let events = plan.n(100_000, 500);

    // The BSR path and the Harbor renderer, one subscription each, side by side.
    let bsr = deliver(server, plan, events, Subscribers::Bsr).await?;
    let harbor = deliver(server, plan, events, Subscribers::One(Format::Harbor)).await?;
    let case = format!("{events} events x 1 subscription");
    rows.push(Row::new(
        SCENARIO,
        &format!("{case}, bsr connect"),
        "deliveries/s",
        bsr.0,
    ));
    rows.push(Row::new(
        SCENARIO,
        &format!("{case}, registry harbor"),
        "deliveries/s",
        harbor.0,
    ));
    rows.push(Row::new(
        SCENARIO,
        &format!("{case}, harbor / bsr"),
        "ratio",
        harbor.0 / bsr.0,
    ));
    rows.push(Row::new(
        SCENARIO,
        &format!("{case}, registry harbor"),
        "peak RSS MB",
        harbor.1 as f64 / 1e6,
    ));
    // A GitHub hook (issue 16): the payload signed twice (sha1, sha256) with its secret.
    let github = deliver(server, plan, events, Subscribers::GitHubHook).await?;
    rows.push(Row::new(
        SCENARIO,
        &format!("{case}, github hook"),
        "deliveries/s",
        github.0,
    ));
    rows.push(Row::new(
        SCENARIO,
        &format!("{case}, github / bsr"),
        "ratio",
        github.0 / bsr.0,
    ));

    // A configuration file's `async` webhook (Angos's face, issue 18): Angos's body and
    // signature, through the outbox.
    let file = deliver(server, plan, events, Subscribers::FileAsync).await?;
    rows.push(Row::new(
        SCENARIO,
        &format!("{case}, angos file async"),
        "deliveries/s",
        file.0,
    ));
    rows.push(Row::new(
        SCENARIO,
        &format!("{case}, angos file async / bsr"),
        "ratio",
        file.0 / bsr.0,
    ));

    // The mixed fan-out.
    let fan_events = plan.n(1000, 20);
    let mixed = deliver(server, plan, fan_events, Subscribers::Mixed).await?;
    let case =
        format!("{fan_events} events x 100 subscriptions (harbor, cloudevents, angos, json)");
    rows.push(Row::new(SCENARIO, &case, "deliveries/s", mixed.0));
    rows.push(Row::new(
        SCENARIO,
        &case,
        "peak RSS MB",
        mixed.1 as f64 / 1e6,
    ));

    // Publishing into an owner with 1,000 filtered subscriptions.
    let (rate, per_event) = filtered_ingest(server, plan).await?;
    let case = "1000 filtered subscriptions, batches of 100".to_owned();
    rows.push(Row::new(SCENARIO, &case, "events/s", rate));
    rows.push(Row::new(SCENARIO, &case, "deliveries per event", per_event));
    Ok(rows)
}

/// Who an event goes to.
enum Subscribers {
    /// One BSR webhook (BSR events).
    Bsr,
    /// One subscription in this format (registry events).
    One(Format),
    /// 25 each of harbor, cloudevents, angos and json (registry events).
    Mixed,
    /// One GitHub hook made as `/api/v3` makes them (GitHub pushes).
    GitHubHook,
    /// One `async` `[event_webhook.*]` of the configuration file, with a token, taking
    /// `manifest.push` (registry events).
    FileAsync,
}

/// A configuration file in a new directory of the temporary one, with `text`; its path.
pub fn config_file(text: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("webhookd-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("webhookd.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A file webhook named `name` with `policy`, taking `manifest.push` to `receiver`,
/// enabled globally.
pub fn file_webhook(name: &str, policy: &str, receiver: &Receiver) -> String {
    format!(
        "[event_webhook.{name}]\nurl = \"http://{}/events\"\npolicy = \"{policy}\"\n\
         token = \"bench-token\"\nevents = [\"manifest.push\"]\n\n\
         [global]\nevent_webhooks = [\"{name}\"]\n",
        receiver.addr
    )
}

/// Delivers `events` to `subscribers` with one serve in the fast profile; deliveries/s and
/// peak RSS.
async fn deliver(
    server: &Server,
    plan: &Plan,
    events: u64,
    subscribers: Subscribers,
) -> anyhow::Result<(f64, u64)> {
    let bench = Bench::new(server).await?;
    let receiver = Receiver::counting(false, None).await?;
    let per_event = match subscribers {
        Subscribers::Bsr => {
            bench.subscribe("petapis", &receiver, 1, 0).await?;
            1
        }
        Subscribers::One(format) => {
            bench
                .subscribe_registry(OWNER, &receiver, (1, 0), format, None)
                .await?;
            1
        }
        Subscribers::GitHubHook => {
            bench
                .subscribe_github_hook(GITHUB_OWNER, "Hello-World", &receiver, "bench-secret")
                .await?;
            1
        }
        Subscribers::FileAsync => 1,
        Subscribers::Mixed => {
            let formats = [
                Format::Harbor,
                Format::CloudEvents,
                Format::Angos,
                Format::Json,
            ];
            for (n, format) in formats.into_iter().enumerate() {
                bench
                    .subscribe_registry(OWNER, &receiver, (25, n * 25), format, None)
                    .await?;
            }
            // Angos sends a push by tag as two requests.
            125
        }
    };
    let mut flags = [FAST, &["--max-in-flight-per-webhook", "100000"]].concat();
    let file = match subscribers {
        Subscribers::FileAsync => {
            Some(config_file(&file_webhook("analytics", "async", &receiver))?)
        }
        _ => None,
    };
    let file_flag = file.as_ref().map(|f| f.to_string_lossy().into_owned());
    if let Some(path) = &file_flag {
        flags.extend(["--config", path.as_str()]);
    }
    let serve = bench.serve(&flags)?;
    serve.ready().await?;
    let total = events * per_event;
    let started = Instant::now();
    match subscribers {
        Subscribers::Bsr => {
            publish(&serve, &bench.token, "petapis", events, 1000, false).await?;
        }
        Subscribers::GitHubHook => publish_github(&serve, &bench.token, events, 1000).await?,
        _ => publish_registry(&serve, &bench.token, events, 1000, |_| "nginx".into()).await?,
    }
    receiver
        .wait_distinct(total as usize, Duration::from_secs(600))
        .await?;
    let done = bench
        .wait_delivered(total as i64, Duration::from_secs(120))
        .await?;
    let rate = total as f64 / done.duration_since(started).as_secs_f64();
    let (rss, _) = serve.resources()?;
    anyhow::ensure!(
        bench.delivered().await? == total as i64,
        "every delivery once (plan quick: {})",
        plan.quick
    );
    serve.stop();
    bench.drop_database().await?;
    Ok((rate, rss))
}

/// Publish into an owner whose 1,000 subscriptions each filter one repository
/// (`^team-<i>/`): events/s, and deliveries queued per event (1 if routing is right).
async fn filtered_ingest(server: &Server, plan: &Plan) -> anyhow::Result<(f64, f64)> {
    let bench = Bench::new(server).await?;
    let receiver = Receiver::counting(false, None).await?;
    let filter = |i: usize| format!("^team-{i}/");
    bench
        .subscribe_registry(OWNER, &receiver, (1000, 0), Format::Json, Some(&filter))
        .await?;
    let serve = bench.serve(&["--no-dispatch"])?;
    serve.ready().await?;
    let events = plan.n(20_000, 300);
    let started = Instant::now();
    publish_registry(&serve, &bench.token, events, 100, |i| {
        format!("team-{}/api", i % 1000)
    })
    .await?;
    let rate = events as f64 / started.elapsed().as_secs_f64();
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries")
        .fetch_one(&bench.pool)
        .await?;
    anyhow::ensure!(
        queued == events as i64,
        "{queued} deliveries for {events} events"
    );
    serve.stop();
    bench.drop_database().await?;
    Ok((rate, queued as f64 / events as f64))
}

/// Publishes `count` synthetic artifact pushes to `OWNER`/`repository(i)` in calls of
/// `batch`.
async fn publish_registry(
    serve: &Serve,
    token: &str,
    count: u64,
    batch: u64,
    repository: impl Fn(u64) -> String,
) -> anyhow::Result<()> {
    publish_events(serve, token, count, batch, |i| pb::PublishEvent {
        registry: MessageField::some(artifact_push(OWNER, &repository(i), i)),
        ..Default::default()
    })
    .await
}

/// Publishes `count` synthetic GitHub pushes to `octo-org/Hello-World` in calls of `batch`.
async fn publish_github(serve: &Serve, token: &str, count: u64, batch: u64) -> anyhow::Result<()> {
    publish_events(serve, token, count, batch, |i| pb::PublishEvent {
        github: MessageField::some(github_push(GITHUB_OWNER, "Hello-World", i)),
        ..Default::default()
    })
    .await
}

/// Publishes events `event(0..count)` in calls of `batch`.
async fn publish_events(
    serve: &Serve,
    token: &str,
    count: u64,
    batch: u64,
    event: impl Fn(u64) -> pb::PublishEvent,
) -> anyhow::Result<()> {
    let client = serve.publisher(token);
    let mut sent = 0;
    while sent < count {
        let n = batch.min(count - sent);
        let events = (sent..sent + n).map(&event).collect();
        client
            .publish(pb::PublishRequest {
                events,
                ..Default::default()
            })
            .await?;
        sent += n;
    }
    Ok(())
}
