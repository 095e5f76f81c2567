//! The transactional outbox: an event row and, in the same transaction, one delivery row per
//! active webhook of the event's repository. Whatever transaction the caller runs these in
//! commits or rolls back the event and its deliveries together.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::queue::{ClaimedDelivery, EventHead, Leased, TargetRow};
use super::routing::{self, Routed};
use crate::domain::{
    DeliveryId, EventId, Family, LiveSet, OutboundEvent, Subscription, WebhookId, uuids,
};
use crate::error::{Error, Result};

/// The channel `--wake-on-publish` batchers listen on.
pub const NOTIFY_CHANNEL: &str = "webhookd_deliveries";

/// What storing one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// The event's id: new, or the original one for a repeated idempotency key.
    pub event_id: EventId,
    /// Deliveries queued for it now.
    pub deliveries_queued: i64,
    /// The idempotency key had been used before; nothing new was stored.
    pub duplicate: bool,
}

/// What a publish may lease straight to the batcher of the process that publishes (see
/// `publish.sql`): at most `limit` deliveries, for `lease_secs`, to webhooks with room for
/// all of theirs (`busy_room` for the webhooks in `busy`, `room` for the others).
#[derive(Debug, Clone)]
pub struct Handoff {
    /// The batcher's lease owner.
    pub worker: Uuid,
    /// How long the lease lasts.
    pub lease_secs: f64,
    /// The most deliveries handed.
    pub limit: i64,
    /// The room of a webhook with nothing in flight.
    pub room: i32,
    /// Webhooks with attempts in flight...
    pub busy: Vec<WebhookId>,
    /// ...and the room each has left.
    pub busy_room: Vec<i32>,
    /// Owners with `--max-in-flight-per-owner` attempts in flight: none of theirs is handed.
    pub full_owners: Vec<String>,
}

/// Stores `events` and queues their deliveries in one statement, whatever their number (a
/// second one, rare, finds the originals of repeated idempotency keys), and wakes the
/// `--wake-on-publish` batchers at commit when anything was queued. An event whose
/// idempotency key was used before for the same owner (earlier, or earlier in this batch)
/// stores nothing and reports the original id.
///
/// Run on a connection outside a transaction, the statement is its own transaction: when
/// this returns `Ok`, the events are durable.
pub async fn insert(conn: &mut PgConnection, events: &[OutboundEvent]) -> Result<Vec<Stored>> {
    Ok(
        insert_handing(conn, events, None, None, &LiveSet::default())
            .await?
            .0,
    )
}

/// [`insert`], refusing (storing nothing) when an owner's queued deliveries have reached
/// `max_queued` by its folded count (see [`super::owner_counts`]; a publish that starts
/// below it is taken whole), and leasing what `handoff` allows to its batcher; returns
/// those deliveries too. The configuration file's `async` webhooks in `files` are queued
/// for too.
///
/// # Errors
/// `ResourceExhausted` naming the owner at `max_queued`; database errors.
pub async fn insert_handing(
    conn: &mut PgConnection,
    events: &[OutboundEvent],
    max_queued: Option<u64>,
    handoff: Option<&Handoff>,
    files: &LiveSet,
) -> Result<(Vec<Stored>, Leased)> {
    let ids: Vec<EventId> = events.iter().map(|_| EventId::generate()).collect();
    let mut owners = routing::owners_to_route(events);
    let mut routed = routing::route(conn, &ids, events, owners.clone(), files).await?;
    let mut tries = 0;
    let rows = loop {
        let rows = publish_rows(conn, &ids, events, max_queued, handoff, &routed).await?;
        let missed: Vec<String> = rows
            .iter()
            .filter(|r| r.missed == Some(true) && r.over_queued.is_none())
            .filter_map(|r| r.owner_name.clone())
            .collect();
        if missed.is_empty() || rows.iter().any(|r| r.over_queued.is_some()) {
            break rows;
        }
        // Owners routing did not know to look at, or subscriptions created since: the
        // statement stored nothing; route them too and run it again.
        tries += 1;
        if tries > 3 {
            return Err(Error::Internal(anyhow::anyhow!(
                "the subscriptions of {missed:?} changed during four publish attempts"
            )));
        }
        routing::remember(&missed);
        owners.extend(missed);
        routed = routing::route(conn, &ids, events, owners.clone(), files).await?;
    };
    if let Some(refused) = rows.iter().find(|r| r.over_queued.is_some()) {
        return Err(Error::ResourceExhausted(format!(
            "{} has {} deliveries queued, the most allowed is {} \
             (--max-queued-per-owner); publish again once its listeners have caught up",
            refused.owner_name.as_deref().unwrap_or_default(),
            refused.over_queued.unwrap_or_default(),
            max_queued.unwrap_or_default(),
        )));
    }
    let (queued, handed) = PublishRow::split(rows, &ids, events);
    let duplicates: Vec<usize> = (0..events.len())
        .filter(|&i| !queued.contains_key(&ids[i]))
        .collect();
    let originals = originals(conn, events, &duplicates).await?;
    let stored = (0..events.len())
        .map(|i| match queued.get(&ids[i]) {
            Some(&deliveries_queued) => Stored {
                event_id: ids[i],
                deliveries_queued,
                duplicate: false,
            },
            None => Stored::duplicate(&originals, &events[i]),
        })
        .collect();
    Ok((stored, handed))
}

impl Stored {
    /// What storing `event`, whose idempotency key was used before, did: nothing, under
    /// the id of the event first stored with that key (found in `originals`).
    fn duplicate(originals: &HashMap<(&str, &str), EventId>, event: &OutboundEvent) -> Self {
        let original = originals.get(&(event.owner.as_str(), key(event)));
        Stored {
            event_id: original.copied().unwrap_or(EventId(Uuid::nil())),
            deliveries_queued: 0,
            duplicate: true,
        }
    }
}

/// Runs `publish.sql` for `events`, stored under `ids`.
async fn publish_rows(
    conn: &mut PgConnection,
    ids: &[EventId],
    events: &[OutboundEvent],
    max_queued: Option<u64>,
    handoff: Option<&Handoff>,
    routed: &Routed,
) -> Result<Vec<PublishRow>> {
    let column = |value: fn(&OutboundEvent) -> &str| events.iter().map(value).collect::<Vec<_>>();
    let busy = handoff.map(|h| uuids(&h.busy)).unwrap_or_default();
    let (natives, natives_handed) = handoff.map_or((vec![], 0), |h| routed.handing(h));
    // Families and types, left empty for a batch of BSR events alone (see publish.sql).
    let (families, types) = if events.iter().all(|e| e.kind.family() == Family::Bsr) {
        (vec![], vec![])
    } else {
        (
            events.iter().map(|e| e.kind.family().as_str()).collect(),
            column(|e| e.kind.stored_type()),
        )
    };
    let rows = sqlx::query_file_as!(
        PublishRow,
        "src/store/queue/publish.sql",
        &uuids(ids),
        &column(|e| e.owner.as_str()) as &[&str],
        &column(|e| e.repository.as_str()) as &[&str],
        &events.iter().map(|e| e.kind.number()).collect::<Vec<_>>(),
        &events
            .iter()
            .map(|e| e.payload.as_slice())
            .collect::<Vec<_>>() as &[&[u8]],
        // Arrays cannot carry NULLs through the typed bindings: "" stands for "no key".
        &column(key) as &[&str],
        NOTIFY_CHANNEL,
        handoff.map(|h| h.worker),
        handoff.map_or(0, |h| h.limit - natives_handed),
        handoff.map_or(0.0, |h| h.lease_secs),
        &busy,
        handoff.map_or(&[][..], |h| &h.busy_room[..]),
        handoff.map_or(0, |h| h.room),
        max_queued.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        handoff.map_or(&[][..], |h| &h.full_owners[..]),
        &routed.event_ids,
        &routed.webhook_ids,
        &routed.parts,
        &routed.considered,
        &families as &[&str],
        &types as &[&str],
        &natives,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

impl Routed {
    /// The native subscriptions whose deliveries `handoff` takes, and how many deliveries
    /// that is: by the rules `publish.sql` hands BSR webhooks by, in id order, each active
    /// one whose deliveries all fit in its room, of an owner not at its cap, while the total
    /// fits in the handoff's limit.
    fn handing(&self, handoff: &Handoff) -> (Vec<Uuid>, i64) {
        let mut counts: HashMap<Uuid, i64> = HashMap::new();
        for webhook in &self.webhook_ids {
            *counts.entry(*webhook).or_default() += 1;
        }
        let mut webhooks: Vec<(Uuid, i64)> = counts.into_iter().collect();
        webhooks.sort_unstable();
        let busy: HashMap<Uuid, i32> = (handoff.busy.iter().map(|w| w.0))
            .zip(handoff.busy_room.iter().copied())
            .collect();
        let (mut handed, mut total) = (vec![], 0);
        for (webhook, count) in webhooks {
            let room = busy.get(&webhook).copied().unwrap_or(handoff.room);
            let eligible = self.states.get(&webhook).is_some_and(|(owner, active)| {
                *active && !handoff.full_owners.iter().any(|o| o == owner)
            });
            if eligible && count <= i64::from(room) && total + count <= handoff.limit {
                handed.push(webhook);
                total += count;
            }
        }
        (handed, total)
    }
}

/// One row of `publish.sql`'s answer; which columns are set says what it is.
struct PublishRow {
    event_id: Option<Uuid>,
    queued: Option<i64>,
    delivery_id: Option<Uuid>,
    webhook_id: Option<Uuid>,
    part: Option<i16>,
    create_time: Option<DateTime<Utc>>,
    target: Option<TargetRow>,
    owner_name: Option<String>,
    over_queued: Option<i64>,
    missed: Option<bool>,
}

impl PublishRow {
    /// The deliveries queued per stored event (0 for one with none), and what was handed
    /// to the batcher; `ids[i]` is `events[i]`'s id.
    fn split(
        rows: Vec<Self>,
        ids: &[EventId],
        events: &[OutboundEvent],
    ) -> (HashMap<EventId, i64>, Leased) {
        let by_id: HashMap<EventId, &OutboundEvent> = ids.iter().copied().zip(events).collect();
        let mut queued: HashMap<EventId, i64> = HashMap::with_capacity(rows.len());
        let mut handed = Leased::default();
        for row in rows {
            match (row.event_id, row.delivery_id, row.target) {
                (Some(event), Some(delivery), _) => {
                    let Some(outbound) = by_id.get(&EventId(event)) else {
                        continue;
                    };
                    handed.deliveries.push(ClaimedDelivery {
                        id: DeliveryId(delivery),
                        webhook_id: WebhookId(row.webhook_id.unwrap_or_default()),
                        attempt_count: 0,
                        scheduled_attempts: 0,
                        payload: outbound.payload.clone(),
                        event: EventHead {
                            id: EventId(event),
                            family: outbound.kind.family(),
                            event_type: outbound.kind.stored_type().to_owned(),
                            create_time: row.create_time.unwrap_or_else(Utc::now),
                            part: row.part.unwrap_or_default(),
                        },
                    });
                }
                (Some(event), _, _) => {
                    *queued.entry(EventId(event)).or_default() += row.queued.unwrap_or(0);
                }
                (None, None, Some(target)) => {
                    let (webhook, target) = target.into_target();
                    handed.targets.insert(webhook, target);
                }
                // The wake-up's row, and those of owners over their limit or missed.
                _ => {}
            }
        }
        (queued, handed)
    }
}

/// An event's idempotency key, "" for none.
fn key(event: &OutboundEvent) -> &str {
    event.idempotency_key.as_deref().unwrap_or("")
}

/// Which of `events` carry an idempotency key their owner used before (and so publish
/// nothing).
///
/// # Errors
/// Database errors.
pub async fn used_keys(conn: &mut PgConnection, events: &[OutboundEvent]) -> Result<Vec<bool>> {
    let keyed: Vec<usize> = (0..events.len())
        .filter(|&i| events[i].idempotency_key.is_some())
        .collect();
    let originals = originals(conn, events, &keyed).await?;
    Ok(events
        .iter()
        .map(|e| e.idempotency_key.is_some() && originals.contains_key(&(e.owner.as_str(), key(e))))
        .collect())
}

/// The ids of the events stored earlier under the owners and keys of `events[duplicates]`.
async fn originals<'a>(
    conn: &mut PgConnection,
    events: &'a [OutboundEvent],
    duplicates: &[usize],
) -> Result<HashMap<(&'a str, &'a str), EventId>> {
    if duplicates.is_empty() {
        return Ok(HashMap::new());
    }
    let owners: Vec<&str> = duplicates
        .iter()
        .map(|&i| events[i].owner.as_str())
        .collect();
    let keys: Vec<&str> = duplicates.iter().map(|&i| key(&events[i])).collect();
    let rows = sqlx::query!(
        r#"
        SELECT k.n AS "n!",
               (SELECT e.id FROM events e
                WHERE e.owner_name = k.owner_name AND e.idempotency_key = k.key) AS id
        FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS k(owner_name, key, n)
        "#,
        &owners as &[&str],
        &keys as &[&str],
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let i = usize::try_from(r.n - 1).ok()?;
            Some(((*owners.get(i)?, *keys.get(i)?), EventId(r.id?)))
        })
        .collect())
}

/// Wakes `--wake-on-publish` batchers when the surrounding transaction commits (NOTIFY is
/// transactional: a rolled-back publish wakes nobody).
pub async fn notify_batchers(conn: &mut PgConnection) -> Result<()> {
    sqlx::query!(r#"SELECT pg_notify($1, '')"#, NOTIFY_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// Queues a `ping` event to subscription `subscription` alone, rendered in its format at
/// delivery time: an event of its family with type `ping` and an empty payload, and one
/// delivery, in one statement (so nothing is half-written); wakes the
/// `--wake-on-publish` batchers. Returns the delivery's id.
///
/// # Errors
/// `NotFound` when the subscription was deleted or disabled meanwhile; database errors.
pub async fn ping(conn: &mut PgConnection, subscription: &Subscription) -> Result<DeliveryId> {
    let delivery = DeliveryId::generate();
    let queued = sqlx::query_scalar!(
        r#"
        WITH hook AS (
            SELECT id, owner_name, repository_name FROM webhooks
            WHERE id = $1 AND state <> 'disabled'
            FOR KEY SHARE
        ), event AS (
            INSERT INTO events (id, owner_name, repository_name, event, payload, family, event_type)
            SELECT $2, owner_name, repository_name, 0, '', $3, 'ping' FROM hook
            RETURNING id
        ), queued AS (
            INSERT INTO deliveries (id, event_id, webhook_id)
            SELECT $4, id, $1 FROM event
            RETURNING id
        ), counted AS (
            INSERT INTO owner_count_changes (owner_name, queued)
            SELECT owner_name, 1 FROM hook WHERE EXISTS (SELECT 1 FROM queued)
        )
        SELECT id FROM queued
        "#,
        subscription.id.0,
        EventId::generate().0,
        subscription.family.as_str(),
        delivery.0,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if queued.is_none() {
        return Err(Error::NotFound(
            "no such subscription (it was deleted or disabled meanwhile)".into(),
        ));
    }
    notify_batchers(conn).await?;
    Ok(delivery)
}

/// Queues the newest event of type `event_type` of subscription `subscription`'s family and
/// repository (of any repository of its owner when it is owner-wide) to it again, as a new
/// delivery (GitHub's "test" of a hook re-sends the latest push). Returns the delivery's
/// id, or `None` when there is no such event (or the subscription was deleted or disabled
/// meanwhile).
///
/// # Errors
/// Database errors.
pub async fn resend_latest(
    conn: &mut PgConnection,
    subscription: &Subscription,
    event_type: &str,
) -> Result<Option<DeliveryId>> {
    let delivery = DeliveryId::generate();
    let queued = sqlx::query_scalar!(
        r#"
        WITH hook AS (
            SELECT id, owner_name, repository_name, all_repositories FROM webhooks
            WHERE id = $1 AND state <> 'disabled'
            FOR KEY SHARE
        ), latest AS (
            SELECT e.id FROM events e, hook h
            WHERE e.owner_name = h.owner_name
              AND (h.all_repositories OR e.repository_name = h.repository_name)
              AND e.family = $2 AND e.event_type = $3
            ORDER BY e.create_time DESC
            LIMIT 1
        ), queued AS (
            INSERT INTO deliveries (id, event_id, webhook_id)
            SELECT $4, id, $1 FROM latest
            RETURNING id
        ), counted AS (
            INSERT INTO owner_count_changes (owner_name, queued)
            SELECT owner_name, 1 FROM hook WHERE EXISTS (SELECT 1 FROM queued)
        )
        SELECT id FROM queued
        "#,
        subscription.id.0,
        subscription.family.as_str(),
        event_type,
        delivery.0,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if queued.is_none() {
        return Ok(None);
    }
    notify_batchers(conn).await?;
    Ok(Some(delivery))
}
