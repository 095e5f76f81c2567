//! The batcher as `serve` runs it: the default cadence, wake-on-publish, drain, Retry-After,
//! and separate `webhookd serve` processes (crash safety, graceful shutdown).

use std::collections::HashMap;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use webhookd::proto::webhookd::v1 as pb;
use webhookd::synthetic::repository_push;

use crate::delivery::{attempts, delivery_log, publish, subscribe};
use crate::helpers::{Spawned, TestApp, serve_command, spawn_app_with};
use crate::receiver::{Receiver, Reply};

pub async fn publish_many(app: &TestApp, token: &str, count: u64) {
    for start in (0..count).step_by(1000) {
        let events = (start..count.min(start + 1000))
            .map(|i| (repository_push("acme", "petapis", i), ""))
            .collect();
        publish(app, token, events).await;
    }
}

/// Splits arrival times into bursts separated by more than `gap`.
fn bursts(mut times: Vec<Instant>, gap: Duration) -> Vec<Vec<Instant>> {
    times.sort();
    let mut bursts: Vec<Vec<Instant>> = vec![];
    for t in times {
        match bursts.last_mut() {
            Some(last) if t.duration_since(*last.last().unwrap()) <= gap => last.push(t),
            _ => bursts.push(vec![t]),
        }
    }
    bursts
}

#[tokio::test]
async fn the_default_cadence_delivers_at_most_20_per_5_second_poll() {
    let app = spawn_app_with(&["--allow-insecure-callbacks"]).await;
    let token = app.token(&["acme"]).await;
    let receiver = Receiver::start().await;
    subscribe(&app, &token, "petapis", &receiver).await;
    publish_many(&app, &token, 100).await;
    // The first delivery of the third poll (at about 10 s) arrives after two full ones.
    let arrived = receiver.wait_for(41, Duration::from_secs(20)).await;
    let arrivals: Vec<Instant> = arrived.iter().map(|c| c.at).collect();
    let bursts = bursts(arrivals, Duration::from_secs(2));
    let sizes: Vec<usize> = bursts.iter().map(Vec::len).collect();
    assert_eq!(sizes.len(), 3, "three polls: {sizes:?}");
    assert!(
        sizes.iter().all(|&n| n <= 20),
        "at most 20 per poll: {sizes:?}"
    );
    assert!(
        sizes[..sizes.len() - 1].iter().all(|&n| n == 20),
        "full batches while the backlog lasts: {sizes:?}"
    );
    for pair in bursts.windows(2) {
        let spacing = pair[1][0].duration_since(pair[0][0]);
        assert!(
            spacing >= Duration::from_millis(4500) && spacing <= Duration::from_millis(5500),
            "{spacing:?}"
        );
    }
}

/// A draining, publish-woken app with batches of 10 and `extra` flags, and an acme token.
async fn draining_app(extra: &[&str]) -> (TestApp, String) {
    let flags = [
        &[
            "--allow-insecure-callbacks",
            "--wake-on-publish",
            "--drain",
            "--batch-size",
            "10",
        ],
        extra,
    ]
    .concat();
    let app = spawn_app_with(&flags).await;
    let token = app.token(&["acme"]).await;
    (app, token)
}

/// [`draining_app`] with a poll of an hour (so that nothing waits for it unnoticed) and
/// `extra` flags, one subscriber, and the first (immediate) poll already past.
async fn draining(extra: &[&str]) -> (TestApp, String, Receiver) {
    let (app, token) = draining_app(&[&["--poll-interval", "1h"], extra].concat()).await;
    let receiver = Receiver::start().await;
    subscribe(&app, &token, "petapis", &receiver).await;
    // The batcher listens once its first poll is done.
    app.listening(webhookd::store::events::NOTIFY_CHANNEL, 1, &[])
        .await;
    (app, token, receiver)
}

#[tokio::test]
async fn wake_on_publish_delivers_without_waiting_for_the_poll_and_drain_empties_the_backlog() {
    let (app, token, receiver) = draining(&[]).await;
    let started = Instant::now();
    publish_many(&app, &token, 95).await;
    receiver.wait_for(95, Duration::from_secs(10)).await;
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn drain_keeps_claiming_as_room_frees_up_without_waiting_for_the_poll() {
    // Ten slots for 300 deliveries: the pipeline is full after the first claim, and every
    // later claim waits for room. None may wait for the poll instead.
    let (app, token, receiver) = draining(&["--max-in-flight", "10"]).await;
    // Answers of staggered delays, so that slots free up a few at a time.
    receiver.script((0..300u64).map(|i| Reply::Delay(Duration::from_millis(i % 7 * 3))));
    publish_many(&app, &token, 300).await;
    receiver.wait_for(300, Duration::from_secs(20)).await;
}

#[tokio::test]
async fn retry_after_postpones_the_next_attempt() {
    let app = spawn_app_with(&["--allow-insecure-callbacks", "--no-dispatch"]).await;
    let token = app.token(&["acme"]).await;
    let receiver = Receiver::start().await;
    let hook = subscribe(&app, &token, "petapis", &receiver).await;
    receiver.script([Reply::StatusWithHeaders(429, vec![("retry-after", "120")])]);
    publish(
        &app,
        &token,
        vec![(repository_push("acme", "petapis", 1), "")],
    )
    .await;
    app.dispatcher().run_once().await.unwrap();
    let request = pb::ListDeliveriesRequest {
        webhook_id: hook,
        state: buffa::EnumValue::from(1),
        ..Default::default()
    };
    let listed = app
        .deliveries(&token)
        .list_deliveries(request)
        .await
        .unwrap()
        .into_owned();
    let next: chrono::DateTime<chrono::Utc> = listed.deliveries[0]
        .next_attempt_time
        .as_option()
        .unwrap()
        .clone()
        .try_into()
        .unwrap();
    let wait = (next - chrono::Utc::now()).num_seconds();
    assert!(
        (110..=120).contains(&wait),
        "Retry-After 120 s honoured (schedule says 5 s): {wait}"
    );
    assert_eq!(app.dispatcher().run_once().await.unwrap(), 0, "not due yet");
}

/// `webhookd serve` as its own process on the test's database.
pub fn serve_process(app: &TestApp, flags: &[&str]) -> (Spawned, u16) {
    serve_process_at(app, &app.database_url(), flags)
}

/// A `webhookd serve` process (batcher only) on `database_url`, which reaches `app`'s
/// database.
pub fn serve_process_at(app: &TestApp, database_url: &str, flags: &[&str]) -> (Spawned, u16) {
    serve_command(app, database_url, &[&["--no-api"], flags].concat())
}

pub fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
}

/// SIGTERM, then its exit status.
pub async fn terminate(mut serve: Spawned) -> std::process::ExitStatus {
    signal(&serve, nix::sys::signal::Signal::SIGTERM);
    tokio::task::spawn_blocking(move || serve.wait())
        .await
        .unwrap()
        .unwrap()
}

pub async fn states(app: &TestApp) -> HashMap<String, i64> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM deliveries GROUP BY state")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    rows.into_iter().collect()
}

#[tokio::test]
async fn a_killed_batcher_loses_nothing_and_duplicates_keep_their_webhook_id() {
    let app = spawn_app_with(&["--allow-insecure-callbacks", "--no-dispatch"]).await;
    let token = app.token(&["acme"]).await;
    let receiver = Receiver::start().await;
    receiver.set_default(Reply::Delay(Duration::from_millis(20)));
    subscribe(&app, &token, "petapis", &receiver).await;
    let flags = [
        "--drain",
        "--wake-on-publish",
        "--batch-size",
        "50",
        "--poll-interval",
        "200ms",
        "--delivery-timeout",
        "2s",
    ];
    let (mut doomed, _) = serve_process(&app, &flags);
    let (survivor, _) = serve_process(&app, &flags);
    app.listening(webhookd::store::events::NOTIFY_CHANNEL, 2, &[])
        .await;
    publish_many(&app, &token, 2000).await;
    receiver.wait_for(300, Duration::from_secs(30)).await;
    signal(&doomed, nix::sys::signal::Signal::SIGKILL);
    doomed.wait().unwrap();

    // The survivor finishes the backlog, including what the dead one held (after its lease).
    let deadline = Instant::now() + Duration::from_secs(60);
    while states(&app).await.get("delivered").copied().unwrap_or(0) < 2000 {
        assert!(
            Instant::now() < deadline,
            "not all delivered: {:?}",
            states(&app).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(terminate(survivor).await.success());

    let mut by_id: HashMap<String, Vec<axum::body::Bytes>> = HashMap::new();
    for request in receiver.captured() {
        by_id
            .entry(request.header("webhook-id").to_owned())
            .or_default()
            .push(request.body.clone());
    }
    assert_eq!(by_id.len(), 2000, "every delivery reached the listener");
    let duplicates: usize = by_id.values().map(|bodies| bodies.len() - 1).sum();
    assert!(
        by_id
            .values()
            .all(|bodies| bodies.iter().all(|b| b == &bodies[0])),
        "a duplicate is the same delivery"
    );
    let ids: Vec<String> = sqlx::query_scalar("SELECT id::text FROM deliveries")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(ids.iter().all(|id| by_id.contains_key(id)));
    eprintln!("crash test: 2000 deliveries, {duplicates} duplicates after SIGKILL");
}

#[tokio::test]
async fn sigterm_lets_in_flight_deliveries_finish_and_exits_zero() {
    let app = spawn_app_with(&["--allow-insecure-callbacks", "--no-dispatch"]).await;
    let token = app.token(&["acme"]).await;
    let receiver = Receiver::start().await;
    receiver.set_default(Reply::Delay(Duration::from_millis(1500)));
    subscribe(&app, &token, "petapis", &receiver).await;
    let (serve, _) = serve_process(
        &app,
        &[
            "--wake-on-publish",
            "--batch-size",
            "5",
            // No room for the other 3 while the 5 are in flight: without it, a claim at
            // start-up and one woken by the publish may take all 8 before the SIGTERM.
            "--max-in-flight",
            "5",
            "--shutdown-timeout",
            "10s",
        ],
    );
    app.listening(webhookd::store::events::NOTIFY_CHANNEL, 1, &[])
        .await;
    publish_many(&app, &token, 8).await;
    receiver.wait_for(5, Duration::from_secs(10)).await;
    let status = terminate(serve).await;
    assert!(status.success(), "{status}");
    let states = states(&app).await;
    assert_eq!(
        states.get("delivered"),
        Some(&5),
        "the in-flight batch finished: {states:?}"
    );
    assert_eq!(
        states.get("pending"),
        Some(&3),
        "nothing more was claimed: {states:?}"
    );
    let leased: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE lease_owner IS NOT NULL")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(leased, 0, "no lease left behind");
}

/// [`draining_app`] with attempts that time out after 30 s and `extra` flags, and two
/// webhooks of acme/petapis: one whose listener never answers, one healthy.
async fn hanging_and_healthy(extra: &[&str]) -> (TestApp, String, Receiver, Receiver) {
    let (app, token) = draining_app(&[&["--delivery-timeout", "30s"], extra].concat()).await;
    let (hanging, healthy) = (Receiver::start().await, Receiver::start().await);
    hanging.set_default(Reply::Hang);
    subscribe(&app, &token, "petapis", &hanging).await;
    subscribe(&app, &token, "petapis", &healthy).await;
    (app, token, hanging, healthy)
}

#[tokio::test]
async fn a_listener_that_hangs_holds_a_bounded_share_and_others_keep_flowing() {
    let (app, token, hanging, healthy) = hanging_and_healthy(&[
        "--max-in-flight",
        "20",
        "--max-in-flight-per-webhook",
        "5",
        "--poll-interval",
        "200ms",
    ])
    .await;
    publish_many(&app, &token, 50).await;
    healthy.wait_for(50, Duration::from_secs(15)).await;
    let held = hanging.captured().len();
    assert!(
        held <= 5,
        "the hanging listener holds at most its cap: {held}"
    );
}

#[tokio::test]
async fn a_callback_name_resolving_to_an_internal_address_is_refused_at_delivery_time() {
    let app = spawn_app_with(&["--allow-insecure-callbacks", "--no-dispatch"]).await;
    let token = app.token(&["acme"]).await;
    let receiver = Receiver::start().await;
    let callback = format!(
        "http://localhost:{}/buf.alpha.webhook.v1alpha1.EventService/Event",
        receiver.addr.port()
    );
    let hook = app.create(&token, "acme", "petapis", &callback).await["webhookId"]
        .as_str()
        .unwrap()
        .to_owned();
    publish(
        &app,
        &token,
        vec![(repository_push("acme", "petapis", 1), "")],
    )
    .await;
    // A batcher without --allow-insecure-callbacks, as in production.
    let mut settings = app.args.dispatch_settings();
    settings.allow_insecure_callbacks = false;
    let secrets = webhookd::app::secret_box(&app.args).unwrap();
    let metrics = webhookd::metrics::Metrics::new(100);
    let strict =
        webhookd::dispatch::Dispatcher::new(app.pool.clone(), settings, secrets, metrics).unwrap();
    assert_eq!(strict.run_once().await.unwrap(), 1);
    assert!(
        receiver.captured().is_empty(),
        "nothing reached the internal address"
    );
    let delivery = delivery_log(&app, &token, &hook).await.remove(0);
    let (_, tries) = attempts(&app, &token, &delivery.delivery_id).await;
    assert!(
        tries[0].error.contains("internal addresses; refused"),
        "{}",
        tries[0].error
    );
}

/// A TCP relay to the test's PostgreSQL that counts connection attempts and can cut every
/// connection and refuse new ones, which is how a database outage looks to a client.
pub struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    /// While set, nothing is forwarded either way and nothing is closed: the network has
    /// gone quiet, as when a route is lost, and what was sent arrives once it is back.
    stalled: Arc<AtomicBool>,
    attempts: Arc<AtomicUsize>,
    live: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    pub async fn start(app: &TestApp) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Self {
            port: listener.local_addr().unwrap().port(),
            up: Arc::new(AtomicBool::new(true)),
            stalled: Arc::new(AtomicBool::new(false)),
            attempts: Arc::new(AtomicUsize::new(0)),
            live: Arc::default(),
        };
        let options = app.db_options.clone();
        let (up, attempts, live) = (relay.up.clone(), relay.attempts.clone(), relay.live.clone());
        let stalled = relay.stalled.clone();
        tokio::spawn(async move {
            loop {
                let (client, _) = listener.accept().await.unwrap();
                attempts.fetch_add(1, Ordering::SeqCst);
                if !up.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let (options, stalled) = (options.clone(), stalled.clone());
                let task = tokio::spawn(async move {
                    quiet(&stalled).await;
                    let port = options.get_port();
                    if let Some(dir) = options.get_socket() {
                        let path = dir.join(format!(".s.PGSQL.{port}"));
                        let server = tokio::net::UnixStream::connect(path).await?;
                        forward(client, server, stalled).await
                    } else {
                        let address = (options.get_host().to_owned(), port);
                        let server = tokio::net::TcpStream::connect(address).await?;
                        forward(client, server, stalled).await
                    }
                });
                live.lock().unwrap().push(task.abort_handle());
            }
        });
        relay
    }

    /// `app`'s database URL through the relay.
    pub fn database_url(&self, app: &TestApp) -> String {
        let mut url = url::Url::parse(&app.database_url()).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        let query: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(key, _)| key != "host")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut().clear().extend_pairs(query);
        url.to_string()
    }

    /// The outage: every open connection is cut and new ones are closed at once.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.live.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// The network goes quiet: nothing is forwarded and nothing is closed, until
    /// [`Relay::restore`].
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    pub fn restore(&self) {
        self.stalled.store(false, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
    }

    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
}

/// Waits while the relay is stalled.
async fn quiet(stalled: &AtomicBool) {
    while stalled.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Forwards both ways between `client` and `server`, holding everything while stalled.
async fn forward(
    client: tokio::net::TcpStream,
    server: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    stalled: Arc<AtomicBool>,
) -> std::io::Result<()> {
    async fn pump(
        mut from: impl tokio::io::AsyncRead + Unpin,
        mut to: impl tokio::io::AsyncWrite + Unpin,
        stalled: Arc<AtomicBool>,
    ) -> std::io::Result<()> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut buffer = vec![0; 64 * 1024];
        loop {
            quiet(&stalled).await;
            let n = from.read(&mut buffer).await?;
            if n == 0 {
                return to.shutdown().await;
            }
            quiet(&stalled).await;
            to.write_all(&buffer[..n]).await?;
        }
    }
    let (client_read, client_write) = tokio::io::split(client);
    let (server_read, server_write) = tokio::io::split(server);
    tokio::try_join!(
        pump(client_read, server_write, stalled.clone()),
        pump(server_read, client_write, stalled),
    )?;
    Ok(())
}

#[tokio::test]
async fn a_database_outage_is_waited_out_without_spinning_and_publishes_wake_it_again() {
    let app = spawn_app_with(&["--allow-insecure-callbacks", "--no-dispatch"]).await;
    let token = app.token(&["acme"]).await;
    let receiver = Receiver::start().await;
    subscribe(&app, &token, "petapis", &receiver).await;
    let relay = Relay::start(&app).await;
    // Woken by publishes only: a poll of an hour never comes during the test.
    let flags = ["--wake-on-publish", "--poll-interval", "1h"];
    let (serve, _) = serve_process_at(&app, &relay.database_url(&app), &flags);
    let channel = webhookd::store::events::NOTIFY_CHANNEL;
    let before = app.listening(channel, 1, &[]).await;
    publish_many(&app, &token, 1).await;
    receiver.wait_for(1, Duration::from_secs(10)).await;

    relay.cut();
    let at_cut = relay.attempts();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = relay.attempts() - at_cut;
    // About one reconnection a second; a loop that retries at once makes thousands.
    assert!(
        during <= 8,
        "{during} connection attempts during a 3-s outage"
    );

    relay.restore();
    app.listening(channel, 1, &before).await;
    publish_many(&app, &token, 1).await;
    receiver.wait_for(2, Duration::from_secs(10)).await;
    let status = terminate(serve).await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn while_a_listener_hangs_at_its_cap_a_publish_that_commits_late_is_still_delivered() {
    // Between polls, a claim starts where the last one ended while a webhook is at its cap
    // (so as not to walk its backlog again). A delivery committed long after its due time
    // lies behind that point; the next poll, which scans from the oldest, delivers it.
    let (app, token, _hanging, healthy) =
        hanging_and_healthy(&["--max-in-flight-per-webhook", "2", "--poll-interval", "2s"]).await;
    // The outbox as a library, in the caller's transaction, which stays open a while.
    let mut tx = app.pool.begin().await.unwrap();
    let late = webhookd::publish::OutboundEvent::from_request(
        &repository_push("acme", "petapis", 1000),
        None,
    )
    .unwrap();
    webhookd::publish::publish(&mut tx, &[late]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Meanwhile the hanging listener reaches its cap and claims go past that due time.
    publish_many(&app, &token, 20).await;
    healthy.wait_for(20, Duration::from_secs(10)).await;
    tx.commit().await.unwrap();
    healthy.wait_for(21, Duration::from_secs(10)).await;
    // Received is not yet recorded: wait for the record, not for time.
    crate::helpers::wait_until(
        "the healthy listener's 21 recorded",
        Duration::from_secs(10),
        || async { states(&app).await.get("delivered") == Some(&21) },
    )
    .await;
    // Nothing of the hanging listener's is lost either: still pending, some of it leased.
    let states = states(&app).await;
    assert_eq!(
        states.get("pending"),
        Some(&21),
        "the hanging listener's 21 deliveries wait: {states:?}"
    );
}
