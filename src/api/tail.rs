//! The live tail, `webhookd.v1.DeliveryService/TailDeliveries`: every attempt as it is
//! recorded, by any process.
//!
//! The recorders' statements notify `webhookd_attempts` with the ids of the attempts they
//! wrote (sent at commit; see `store/queue/record_attempts.sql`) of the owners some reader
//! follows: each API process with readers has one [`TailHub`], which marks the owners its
//! readers follow in `tail_follows` (before a reader's stream opens) and renews them while
//! they stay, because a notifying commit takes PostgreSQL's database-wide NOTIFY lock and
//! the delivery path must not pay that while nobody reads. The delivery path never waits
//! for a reader. The hub's LISTEN connection is drained at once into a bounded queue, and
//! a task reads each notification's attempts once (for the owners its readers follow) and
//! hands them to every reader's own bounded queue. A reader that falls behind loses what
//! does not fit and is told how many; a hub that falls behind (or loses its connection, or
//! cannot renew its rows) tells every reader it was interrupted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use buffa::MessageField;
use connectrpc::{ConnectError, RequestContext, Response, ServiceResult, ServiceStream};
use futures_util::StreamExt as _;
use sqlx::PgPool;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::ApiContext;
use super::auth::{authenticate, authenticate_header, listed_owner, subscription_not_found};
use super::deliveries::{attempt_to_proto, to_proto};
use crate::domain::WebhookId;
use crate::error::{Error, Result};
use crate::proto::webhookd::v1 as pb;
use crate::store;
use crate::store::deliveries::Tailed;
use crate::store::notifications::{Notice, Notifications};

/// The channel the recorder notifies.
pub const CHANNEL: &str = "webhookd_attempts";
/// Attempts kept for one reader that has not read them yet: several of the hub's reads, so
/// that a reader that keeps up on average is not cut off by one burst.
pub const READER_QUEUE: usize = 8192;
/// Notifications kept for the hub's reading task while it reads earlier ones.
const HUB_QUEUE: usize = 256;
/// The most attempts the hub reads in one query (a recorder's statement writes up to 1000).
const HUB_BATCH: usize = 1000;
/// How long a new reader waits for the hub's LISTEN connection.
const LISTEN_WAIT: Duration = Duration::from_secs(10);
/// How often a reader's token is checked again (a revoked one ends the stream).
const RECHECK: Duration = Duration::from_secs(30);
/// How often the hub renews its `tail_follows` rows, and how long one lasts unrenewed.
const FOLLOW_RENEW: Duration = Duration::from_secs(10);
const FOLLOW_TTL: Duration = Duration::from_secs(60);

/// One process's readers of the tail, and the tasks that feed them (started with the first).
pub struct TailHub {
    /// Names this hub's rows in `tail_follows`.
    id: Uuid,
    pool: PgPool,
    stop: CancellationToken,
    readers: Mutex<Vec<Arc<Reader>>>,
    /// Held while the hub's rows are written, so that a renewal that did not see a new
    /// reader cannot delete the row written for it.
    writing: tokio::sync::Mutex<()>,
    listening: watch::Sender<bool>,
    started: OnceLock<()>,
}

/// One reader: what it follows, its queue, and what it was not sent.
struct Reader {
    owner: String,
    subscription: Option<WebhookId>,
    queue: mpsc::Sender<Arc<Tailed>>,
    missed: AtomicU64,
    interrupted: AtomicBool,
    /// Wakes the reader for a notice when its queue is empty.
    notice: Notify,
}

impl Reader {
    fn wants(&self, attempt: &Tailed) -> bool {
        attempt.owner == self.owner
            && self
                .subscription
                .is_none_or(|s| s == attempt.delivery.webhook_id)
    }

    fn interrupt(&self) {
        self.interrupted.store(true, Ordering::Relaxed);
        self.notice.notify_one();
    }
}

/// A reader's registration, removed when dropped (the stream ended or the caller left).
struct Following {
    hub: Arc<TailHub>,
    reader: Arc<Reader>,
    queue: mpsc::Receiver<Arc<Tailed>>,
}

impl Drop for Following {
    fn drop(&mut self) {
        let mut readers = self.hub.readers.lock().expect("tail readers lock");
        readers.retain(|r| !Arc::ptr_eq(r, &self.reader));
    }
}

impl TailHub {
    /// A hub of `pool`'s notifications whose streams end at `stop`.
    pub fn new(pool: PgPool, stop: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            id: Uuid::new_v4(),
            pool,
            stop,
            readers: Mutex::new(Vec::new()),
            writing: tokio::sync::Mutex::new(()),
            listening: watch::channel(false).0,
            started: OnceLock::new(),
        })
    }

    /// Registers a reader, once the hub listens and its owner is marked followed.
    async fn follow(
        self: &Arc<Self>,
        owner: String,
        subscription: Option<WebhookId>,
    ) -> Result<Following> {
        self.started.get_or_init(|| {
            let (notified, unread) = mpsc::channel(HUB_QUEUE);
            tokio::spawn(self.clone().listen(notified));
            tokio::spawn(self.clone().read(unread));
            tokio::spawn(self.clone().renew());
        });
        let following = self.register(owner, subscription);
        let mut listening = self.listening.subscribe();
        if !matches!(
            tokio::time::timeout(LISTEN_WAIT, listening.wait_for(|l| *l)).await,
            Ok(Ok(_))
        ) {
            // The LISTEN connection is not up (the database is unreachable); logged there.
            return Err(Error::Unavailable(sqlx::Error::PoolTimedOut));
        }
        let _writing = self.writing.lock().await;
        let mut conn = store::acquire(&self.pool).await?;
        store::tail_follows::follow(&mut conn, self.id, &following.reader.owner, FOLLOW_TTL)
            .await?;
        Ok(following)
    }

    /// Adds a reader to those handed attempts.
    fn register(self: &Arc<Self>, owner: String, subscription: Option<WebhookId>) -> Following {
        let (queue, receiver) = mpsc::channel(READER_QUEUE);
        let reader = Arc::new(Reader {
            owner,
            subscription,
            queue,
            missed: AtomicU64::new(0),
            interrupted: AtomicBool::new(false),
            notice: Notify::new(),
        });
        self.readers
            .lock()
            .expect("tail readers lock")
            .push(reader.clone());
        Following {
            hub: self.clone(),
            reader,
            queue: receiver,
        }
    }

    /// The owners the readers follow, each once.
    fn owners(&self) -> Vec<String> {
        owners_of(&self.readers())
    }

    /// Renews the hub's `tail_follows` rows every [`FOLLOW_RENEW`] (dropping those of owners
    /// no longer followed) until the process stops, then drops them all. A failed renewal
    /// interrupts the readers: their owners' rows may lapse.
    async fn renew(self: Arc<Self>) {
        // The hub's rows are all gone (its last renewal found no readers).
        let mut cleared = false;
        loop {
            let stopping = tokio::select! {
                () = tokio::time::sleep(FOLLOW_RENEW) => false,
                () = self.stop.cancelled() => true,
            };
            let _writing = self.writing.lock().await;
            let owners = if stopping { Vec::new() } else { self.owners() };
            // An idle hub writes nothing.
            if owners.is_empty() && cleared && !stopping {
                continue;
            }
            let renewed = async {
                let mut conn = store::acquire(&self.pool).await?;
                store::tail_follows::renew(&mut conn, self.id, &owners, FOLLOW_TTL).await
            };
            match renewed.await {
                Ok(()) => cleared = owners.is_empty(),
                Err(e) => {
                    tracing::warn!(error.cause_chain = ?anyhow::Error::from(e),
                        "renewing the live tail's followed owners failed; its readers are told");
                    cleared = false;
                    self.interrupt_all();
                }
            }
            if stopping {
                return;
            }
        }
    }

    fn readers(&self) -> Vec<Arc<Reader>> {
        self.readers.lock().expect("tail readers lock").clone()
    }

    fn interrupt_all(&self) {
        for reader in self.readers() {
            reader.interrupt();
        }
    }

    /// Drains the LISTEN connection into `notified` (never waiting for the reading task, so
    /// that the server's notification queue never backs up behind this process).
    async fn listen(self: Arc<Self>, notified: mpsc::Sender<Vec<(Uuid, i32)>>) {
        let mut notifications = Notifications::new(self.pool.clone(), &[CHANNEL]);
        let mut first = true;
        loop {
            let notice = tokio::select! {
                notice = notifications.next() => notice,
                () = self.stop.cancelled() => return,
            };
            match notice {
                Notice::Listening => {
                    if !std::mem::take(&mut first) {
                        self.interrupt_all();
                    }
                    self.listening.send_replace(true);
                }
                Notice::Lost => {
                    self.listening.send_replace(false);
                }
                Notice::Notified(n) => {
                    if self.readers.lock().expect("tail readers lock").is_empty() {
                        continue;
                    }
                    let attempts = parse_payload(n.payload());
                    if notified.try_send(attempts).is_err() {
                        tracing::warn!("the live tail fell behind; its readers are told");
                        self.interrupt_all();
                    }
                }
            }
        }
    }

    /// Reads the notified attempts, a few notifications at a time, and hands each to the
    /// readers that follow it.
    async fn read(self: Arc<Self>, mut unread: mpsc::Receiver<Vec<(Uuid, i32)>>) {
        loop {
            let mut attempts = tokio::select! {
                Some(attempts) = unread.recv() => attempts,
                () = self.stop.cancelled() => return,
            };
            while attempts.len() < HUB_BATCH {
                match unread.try_recv() {
                    Ok(more) => attempts.extend(more),
                    Err(_) => break,
                }
            }
            let readers = self.readers();
            let owners = owners_of(&readers);
            if owners.is_empty() {
                continue;
            }
            let tailed = async {
                let mut conn = store::acquire(&self.pool).await?;
                store::deliveries::tailed(&mut conn, &attempts, &owners).await
            };
            let tailed = match tailed.await {
                Ok(tailed) => tailed,
                Err(e) => {
                    tracing::warn!(error.cause_chain = ?anyhow::Error::from(e),
                        "reading attempts for the live tail failed; its readers are told");
                    self.interrupt_all();
                    continue;
                }
            };
            for attempt in tailed {
                hand_out(&readers, Arc::new(attempt));
            }
        }
    }
}

/// The owners `readers` follow, each once.
fn owners_of(readers: &[Arc<Reader>]) -> Vec<String> {
    let mut owners: Vec<String> = readers.iter().map(|r| r.owner.clone()).collect();
    owners.sort_unstable();
    owners.dedup();
    owners
}

/// Queues `attempt` for each of `readers` that follows it; one whose queue is full is
/// counted as having missed it instead.
fn hand_out(readers: &[Arc<Reader>], attempt: Arc<Tailed>) {
    for reader in readers.iter().filter(|r| r.wants(&attempt)) {
        if let Err(mpsc::error::TrySendError::Full(_)) = reader.queue.try_send(attempt.clone()) {
            reader.missed.fetch_add(1, Ordering::Relaxed);
            reader.notice.notify_one();
        }
    }
}

/// What a reader is sent next.
#[derive(Debug)]
enum Sent {
    Attempt(Arc<Tailed>),
    Missed(u64),
    Interrupted,
}

impl Following {
    /// The reader's next message: notices first, then its queue, oldest first. Waits for
    /// one; cancel-safe.
    async fn next(&mut self) -> Sent {
        loop {
            if self.reader.interrupted.swap(false, Ordering::Relaxed) {
                return Sent::Interrupted;
            }
            let missed = self.reader.missed.swap(0, Ordering::Relaxed);
            if missed > 0 {
                return Sent::Missed(missed);
            }
            tokio::select! {
                Some(attempt) = self.queue.recv() => return Sent::Attempt(attempt),
                () = self.reader.notice.notified() => {}
            }
        }
    }
}

/// A notification's "id:number,..." as attempts; malformed entries (none are sent) skipped.
fn parse_payload(payload: &str) -> Vec<(Uuid, i32)> {
    payload
        .split(',')
        .filter_map(|entry| {
            let (id, number) = entry.split_once(':')?;
            Some((Uuid::parse_str(id).ok()?, number.parse().ok()?))
        })
        .collect()
}

/// The TailDeliveries RPC.
pub async fn tail_deliveries(
    api: &Arc<ApiContext>,
    ctx: &RequestContext,
    req: &pb::TailDeliveriesRequest,
) -> ServiceResult<ServiceStream<pb::TailDeliveriesResponse>> {
    let scope = authenticate(api, ctx).await?;
    let owner = listed_owner(&scope, &req.owner)?;
    let subscription = match req.subscription_id.as_str() {
        "" => None,
        id => {
            let id = WebhookId::parse(id).ok_or_else(subscription_not_found)?;
            let mut conn = store::acquire(&api.pool).await?;
            match store::webhooks::owner_of(&mut conn, id).await? {
                Some(o) if o == owner => Some(id),
                _ => return Err(subscription_not_found().into()),
            }
        }
    };
    let following = api.tail.follow(owner, subscription).await?;
    let authorization = ctx
        .header("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let state = Stream {
        api: api.clone(),
        following,
        authorization,
        recheck: tokio::time::Instant::now() + RECHECK,
        done: false,
    };
    Ok(Response::stream(
        futures_util::stream::unfold(state, Stream::next).boxed(),
    ))
}

/// A reader's stream.
struct Stream {
    api: Arc<ApiContext>,
    following: Following,
    authorization: Option<String>,
    recheck: tokio::time::Instant,
    done: bool,
}

impl Stream {
    async fn next(mut self) -> Option<(Result<pb::TailDeliveriesResponse, ConnectError>, Self)> {
        if self.done {
            return None;
        }
        let stop = self.following.hub.stop.clone();
        loop {
            let recheck = self.recheck;
            tokio::select! {
                sent = self.following.next() => {
                    let message = match sent {
                        Sent::Attempt(attempt) => to_message(&attempt),
                        Sent::Missed(n) => notice(n, false),
                        Sent::Interrupted => notice(0, true),
                    };
                    return Some((Ok(message), self));
                }
                () = tokio::time::sleep_until(recheck) => {
                    self.recheck += RECHECK;
                    if let Err(e) = self.still_allowed().await {
                        self.done = true;
                        return Some((Err(e.into()), self));
                    }
                }
                () = stop.cancelled() => return None,
            }
        }
    }

    /// Whether the token still covers the owner followed (it may have been revoked).
    async fn still_allowed(&self) -> Result<()> {
        let scope = authenticate_header(&self.api, self.authorization.as_deref()).await?;
        if scope.covers(&self.following.reader.owner) {
            Ok(())
        } else {
            Err(Error::PermissionDenied(
                "this token no longer covers the owner followed".into(),
            ))
        }
    }
}

fn notice(missed: u64, interrupted: bool) -> pb::TailDeliveriesResponse {
    pb::TailDeliveriesResponse {
        missed: i64::try_from(missed).unwrap_or(i64::MAX),
        interrupted,
        ..Default::default()
    }
}

fn to_message(attempt: &Tailed) -> pb::TailDeliveriesResponse {
    let id = attempt.delivery.id.to_string();
    pb::TailDeliveriesResponse {
        delivery: MessageField::some(to_proto(attempt.delivery.clone())),
        attempt: MessageField::some(attempt_to_proto(
            &id,
            attempt.number,
            attempt.record.clone(),
        )),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_and_skip_what_is_malformed() {
        let id = Uuid::new_v4();
        assert_eq!(
            parse_payload(&format!("{id}:3,nonsense,{id}:x,{id}:12")),
            vec![(id, 3), (id, 12)]
        );
        assert!(parse_payload("").is_empty());
    }

    fn attempt(owner: &str, webhook: WebhookId) -> Arc<Tailed> {
        let now = chrono::Utc::now();
        Arc::new(Tailed {
            owner: owner.to_owned(),
            delivery: crate::domain::Delivery {
                id: crate::domain::DeliveryId(Uuid::new_v4()),
                webhook_id: webhook,
                event_id: crate::domain::EventId(Uuid::new_v4()),
                state: crate::domain::DeliveryState::Delivered,
                attempt_count: 1,
                create_time: now,
                next_attempt_time: now,
                last_attempt_time: Some(now),
                last_http_status: Some(200),
                event_type: "push".into(),
            },
            number: 1,
            record: crate::domain::AttemptRecord::default(),
        })
    }

    #[tokio::test]
    async fn a_slow_reader_is_told_what_it_missed_and_others_are_not_slowed() {
        let pool = PgPool::connect_lazy("postgresql://nobody@127.0.0.1:1/none").unwrap();
        let hub = TailHub::new(pool, CancellationToken::new());
        // No database here: the fan-out alone.
        let hook = WebhookId(Uuid::new_v4());
        let other = WebhookId(Uuid::new_v4());
        let mut slow = hub.register("acme".into(), None);
        let mut filtered = hub.register("acme".into(), Some(other));
        let mut stranger = hub.register("globex".into(), None);
        for _ in 0..READER_QUEUE + 5 {
            hand_out(&hub.readers(), attempt("acme", hook));
        }
        hand_out(&hub.readers(), attempt("acme", other));
        // The filtered reader got its one attempt, first; the stranger nothing.
        let Sent::Attempt(first) = filtered.next().await else {
            panic!("an attempt first")
        };
        assert_eq!(first.delivery.webhook_id, other);
        assert!(stranger.queue.is_empty());
        assert_eq!(stranger.reader.missed.load(Ordering::Relaxed), 0);
        // The slow one: told first how many did not fit, then sent the queue in order.
        assert!(matches!(slow.next().await, Sent::Missed(6)));
        for _ in 0..READER_QUEUE {
            assert!(matches!(slow.next().await, Sent::Attempt(_)));
        }
        hub.interrupt_all();
        assert!(matches!(slow.next().await, Sent::Interrupted));
        assert!(matches!(stranger.next().await, Sent::Interrupted));
        // A reader gone is no longer handed anything.
        drop(filtered);
        assert_eq!(hub.readers().len(), 2);
    }
}
