//! Group commit for the Publish RPC: publishes that arrive while another is being written
//! share one statement and one durable commit, and each caller still gets its own answer.
//!
//! A lone publish is written at once, so grouping adds no wait at a low rate; under load the
//! calls that queue while a group is being written form the next one. Invariants: a caller
//! is answered only after its events are committed (the statement runs outside any
//! transaction, so it commits before it returns); a group holds at most [`MAX_BATCH`]
//! events; and a group that fails is written again call by call, so that one call's
//! failure is never another's.
//!
//! In a process that also runs the batcher (with `--wake-on-publish`), each group first
//! reserves room in it, and the statement leases that many of the new deliveries to it; once
//! the callers are answered, the batcher attempts them without claiming them.
//!
//! The configuration file's `required` and `optional` webhooks are delivered by each call
//! before it joins a group (see [`Policies`]); a call with such deliveries to record has its
//! group written in a transaction that records them too.

use std::ops::Range;
use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::task::TaskTracker;

use super::{MAX_BATCH, OutboundEvent, Policies, Published, Stored, Synced};
use crate::dispatch::{Dispatcher, Reservation};
use crate::domain::LiveSet;
use crate::error::{Error, Result};
use crate::store;
use crate::store::queue::{Finished, Leased};

/// How many groups are written at once; each writer has a connection of its own (see
/// [`store::publish_pool`]).
const WRITERS: usize = 2;

/// One call's events and where its answer goes.
struct Call {
    events: Vec<OutboundEvent>,
    /// The configuration file's webhooks as they stood when the call started: its
    /// publish-time deliveries were chosen from them, and its `async` ones are routed from
    /// them, so that a reload in between neither skips nor doubles a webhook.
    set: Arc<LiveSet>,
    /// Its publish-time deliveries, by the index of their event in `events`.
    synced: Vec<(usize, Finished)>,
    answer: oneshot::Sender<Result<Vec<Stored>>>,
}

/// The publishing side of the group writers; cheap to clone.
#[derive(Clone)]
pub struct GroupCommit {
    calls: mpsc::Sender<Call>,
    pool: PgPool,
    policies: Policies,
}

impl GroupCommit {
    /// Starts the writers on `pool`'s database (with a pool of their own), on `tasks`; they
    /// stop once every clone of the returned handle is dropped and what was queued is
    /// written. With `batcher` (this process's), each group leases what that batcher has
    /// room for to it as it queues it, and hands it over once committed: the first attempt
    /// needs no claim. Each call first delivers the configuration file's `required` and
    /// `optional` webhooks by `policies`, and each group is routed to its `async` ones as
    /// they stood when its calls started (one set per group). A group that would take an owner past
    /// `max_queued` deliveries queued (`--max-queued-per-owner`) stores nothing; its calls
    /// are then written one by one, and those of that owner refused.
    pub fn start(
        pool: PgPool,
        batcher: Option<Dispatcher>,
        max_queued: u64,
        policies: Policies,
        tasks: &TaskTracker,
    ) -> Self {
        let (calls, queue) = mpsc::channel(MAX_BATCH);
        let queue = Arc::new(Mutex::new(queue));
        let pool = store::publish_pool(&pool, WRITERS as u32);
        for _ in 0..WRITERS {
            let writer = Writer {
                pool: pool.clone(),
                batcher: batcher.clone(),
                max_queued,
            };
            tasks.spawn(writer.run(queue.clone()));
        }
        Self {
            calls,
            pool,
            policies,
        }
    }

    /// Delivers the configuration file's `required` and `optional` webhooks that match
    /// `events` (validated, at most [`MAX_BATCH`]), then stores the events and queues their
    /// deliveries, in one commit with whatever other calls are waiting; returns once they
    /// are durable.
    ///
    /// # Errors
    /// `FailedPrecondition` naming a `required` webhook that failed (nothing is stored);
    /// `ResourceExhausted` past `--max-queued-per-owner`; database errors; `Unavailable`
    /// while the server shuts down.
    pub async fn publish(&self, events: Vec<OutboundEvent>) -> Result<Published> {
        let set = self.policies.live().current();
        let synced = if set.has_sync() {
            let skip = if events.iter().any(|e| e.idempotency_key.is_some()) {
                let mut conn = store::acquire(&self.pool).await?;
                store::events::used_keys(&mut conn, &events).await?
            } else {
                Vec::new()
            };
            self.policies
                .deliver_or_refuse(&set, &events, &skip)
                .await?
        } else {
            Synced::default()
        };
        let (answer, answered) = oneshot::channel();
        let closed = || Error::Unavailable(sqlx::Error::PoolClosed);
        let call = Call {
            events,
            set,
            synced: synced.deliveries,
            answer,
        };
        self.calls.send(call).await.map_err(|_| closed())?;
        let stored = answered.await.map_err(|_| closed())??;
        Ok(Published {
            stored,
            failures: synced.failures,
        })
    }

    /// [`GroupCommit::publish`] of one event (a relay's): how it was stored. The
    /// `optional` webhooks that failed are logged (by the delivery itself), not returned.
    ///
    /// # Errors
    /// As [`GroupCommit::publish`].
    pub async fn publish_one(&self, event: OutboundEvent) -> Result<Stored> {
        let published = self.publish(vec![event]).await?;
        published
            .stored
            .into_iter()
            .next()
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("a publish of one event stored none")))
    }
}

/// One writer: takes the calls that are waiting, up to [`MAX_BATCH`] events, and writes them.
struct Writer {
    pool: PgPool,
    batcher: Option<Dispatcher>,
    max_queued: u64,
}

impl Writer {
    async fn run(self, queue: Arc<Mutex<mpsc::Receiver<Call>>>) {
        // A call that did not fit in the last group: the first of the next.
        let mut held = None;
        loop {
            let group = take_group(&queue, &mut held).await;
            if group.is_empty() {
                return;
            }
            self.commit(group).await;
        }
    }

    /// Writes a group in one statement and answers each call with its share, then hands
    /// what the statement leased to the batcher; if that fails for another reason than the
    /// database being unavailable, writes each call on its own and answers it with its own
    /// result.
    async fn commit(&self, group: Vec<Call>) {
        let Some(set) = group.first().map(|c| c.set.clone()) else {
            return;
        };
        let mut events = Vec::with_capacity(group.iter().map(|c| c.events.len()).sum());
        let mut synced = Vec::new();
        let mut answers: Vec<(Range<usize>, oneshot::Sender<_>)> = Vec::with_capacity(group.len());
        for call in group {
            let start = events.len();
            events.extend(call.events);
            let range = start..events.len();
            synced.push((range.clone(), call.synced));
            answers.push((range, call.answer));
        }
        let reservation = self.batcher.as_ref().and_then(Dispatcher::reserve);
        let all_synced = || {
            synced
                .iter()
                .flat_map(|(range, calls)| calls.iter().map(|(i, f)| (range.start + i, f.clone())))
                .collect::<Vec<_>>()
        };
        // An answer nobody waits for any more (the caller went away) is dropped: its events
        // are stored all the same, as if the response had been lost on the way.
        match self
            .insert(&events, &set, reservation.as_ref(), all_synced())
            .await
        {
            Ok((stored, leased)) => {
                for (range, answer) in answers {
                    let _ = answer.send(Ok(stored[range].to_vec()));
                }
                if let Some(reservation) = reservation {
                    reservation.deliver(leased);
                }
            }
            Err(e) if answers.len() == 1 => {
                if let Some((_, answer)) = answers.pop() {
                    let _ = answer.send(Err(e));
                }
            }
            // The database is down for every call alike: writing them one by one would only
            // wait out the pool's timeout once per call.
            Err(Error::Unavailable(cause)) => {
                let why = cause.to_string();
                for (_, answer) in answers {
                    let cause = sqlx::Error::Io(std::io::Error::other(why.clone()));
                    let _ = answer.send(Err(Error::Unavailable(cause)));
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, calls = answers.len(),
                    "a group failed; writing its calls one by one");
                for ((range, answer), (_, own)) in answers.into_iter().zip(synced) {
                    let alone = self.insert(&events[range], &set, None, own).await;
                    let _ = answer.send(alone.map(|(stored, _)| stored));
                }
            }
        }
    }

    /// One statement on a connection of its own, routing to `set`'s `async` webhooks: it
    /// commits before it returns. With publish-time deliveries to record (by event index in
    /// `events`), one transaction that records them too.
    async fn insert(
        &self,
        events: &[OutboundEvent],
        files: &LiveSet,
        reservation: Option<&Reservation>,
        synced: Vec<(usize, Finished)>,
    ) -> Result<(Vec<Stored>, Leased)> {
        let mut conn = store::acquire(&self.pool).await?;
        let handoff = reservation.map(Reservation::handoff);
        let max_queued = Some(self.max_queued);
        if synced.is_empty() {
            return store::events::insert_handing(&mut conn, events, max_queued, handoff, files)
                .await;
        }
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let (stored, leased) =
            store::events::insert_handing(&mut tx, events, max_queued, handoff, files).await?;
        store::queue::record_finished(&mut tx, &Synced::finished(synced, &stored)).await?;
        tx.commit().await?;
        Ok((stored, leased))
    }
}

/// The next group: `held`, or the next call to arrive, and every call already waiting that
/// fits beside it and started on the same configuration file webhooks (after a reload, the
/// first call on the new set starts the next group). Empty once the queue is closed and
/// drained.
async fn take_group(queue: &Mutex<mpsc::Receiver<Call>>, held: &mut Option<Call>) -> Vec<Call> {
    let mut queue = queue.lock().await;
    let first = match held.take() {
        Some(call) => call,
        None => match queue.recv().await {
            Some(call) => call,
            None => return Vec::new(),
        },
    };
    let mut events = first.events.len();
    let mut group = vec![first];
    while let Ok(call) = queue.try_recv() {
        if events + call.events.len() > MAX_BATCH || !Arc::ptr_eq(&call.set, &group[0].set) {
            *held = Some(call);
            break;
        }
        events += call.events.len();
        group.push(call);
    }
    group
}
