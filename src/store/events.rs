//! The transactional outbox: an event row and, in the same transaction, one delivery row per
//! active webhook of the event's repository. Whatever transaction the caller runs these in
//! commits or rolls back the event and its deliveries together.

use std::collections::{HashMap, HashSet};

use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::OutboundEvent;
use crate::error::Result;

/// The channel `--wake-on-publish` batchers listen on.
pub const NOTIFY_CHANNEL: &str = "webhookd_deliveries";

/// What storing one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// The event's id: new, or the original one for a repeated idempotency key.
    pub event_id: Uuid,
    /// Deliveries queued for it now.
    pub deliveries_queued: i64,
    /// The idempotency key had been used before; nothing new was stored.
    pub duplicate: bool,
}

/// Stores `events` and queues their deliveries, in three statements whatever their number.
/// An event whose idempotency key was used before for the same owner (earlier, or earlier in
/// this batch) stores nothing and reports the original id.
pub async fn insert(conn: &mut PgConnection, events: &[OutboundEvent]) -> Result<Vec<Stored>> {
    let ids: Vec<Uuid> = events.iter().map(|_| Uuid::now_v7()).collect();
    let owners: Vec<&str> = events.iter().map(|e| e.owner.as_str()).collect();
    let repositories: Vec<&str> = events.iter().map(|e| e.repository.as_str()).collect();
    let kinds: Vec<i32> = events.iter().map(|e| e.event.number()).collect();
    let payloads: Vec<&[u8]> = events.iter().map(|e| e.payload.as_slice()).collect();
    // Arrays cannot carry NULLs through the typed bindings: "" stands for "no key".
    let keys: Vec<&str> = events
        .iter()
        .map(|e| e.idempotency_key.as_deref().unwrap_or(""))
        .collect();
    let inserted: Vec<Uuid> = sqlx::query_scalar!(
        r#"
        INSERT INTO events (id, owner_name, repository_name, event, payload, idempotency_key)
        SELECT id, owner_name, repository_name, event, payload, NULLIF(key, '')
        FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int[], $5::bytea[], $6::text[])
             AS t(id, owner_name, repository_name, event, payload, key)
        ON CONFLICT (owner_name, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING id
        "#,
        &ids,
        &owners as &[&str],
        &repositories as &[&str],
        &kinds,
        &payloads as &[&[u8]],
        &keys as &[&str],
    )
    .fetch_all(&mut *conn)
    .await?;
    let inserted: HashSet<Uuid> = inserted.into_iter().collect();
    let fresh: Vec<usize> = (0..events.len())
        .filter(|&i| inserted.contains(&ids[i]))
        .collect();
    let pick = |v: &[&str], rows: &[usize]| {
        rows.iter()
            .map(|&i| v[i].to_owned())
            .collect::<Vec<String>>()
    };
    let queued = sqlx::query!(
        r#"
        WITH fresh AS (
            SELECT *
            FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int[])
                 AS n(event_id, owner_name, repository_name, event)
        ), targets AS (
            -- Locked once per webhook, as a foreign key would once per delivery: a
            -- concurrent DeleteWebhook waits for this transaction, then deletes what it
            -- queued; a webhook deleted or disabled first is skipped.
            SELECT w.id, w.owner_name, w.repository_name, w.event
            FROM webhooks w
            WHERE (w.owner_name, w.repository_name, w.event) IN
                  (SELECT owner_name, repository_name, event FROM fresh)
              AND w.state = 'active'
            FOR KEY SHARE
        ), queued AS (
            INSERT INTO deliveries (id, event_id, webhook_id)
            SELECT webhookd_uuid_v7(), n.event_id, t.id
            FROM fresh n
            JOIN targets t
              ON t.owner_name = n.owner_name AND t.repository_name = n.repository_name
             AND t.event = n.event
            RETURNING event_id
        )
        SELECT event_id AS "event_id!", count(*) AS "count!" FROM queued GROUP BY event_id
        "#,
        &fresh.iter().map(|&i| ids[i]).collect::<Vec<_>>(),
        &pick(&owners, &fresh),
        &pick(&repositories, &fresh),
        &fresh.iter().map(|&i| kinds[i]).collect::<Vec<_>>(),
    )
    .fetch_all(&mut *conn)
    .await?;
    let queued: HashMap<Uuid, i64> = queued.into_iter().map(|r| (r.event_id, r.count)).collect();
    let duplicates: Vec<usize> = (0..events.len())
        .filter(|&i| !inserted.contains(&ids[i]))
        .collect();
    let originals = originals(conn, &pick(&owners, &duplicates), &pick(&keys, &duplicates)).await?;
    Ok((0..events.len())
        .map(|i| match inserted.contains(&ids[i]) {
            true => Stored {
                event_id: ids[i],
                deliveries_queued: queued.get(&ids[i]).copied().unwrap_or(0),
                duplicate: false,
            },
            false => Stored {
                event_id: originals
                    .get(&(owners[i].to_owned(), keys[i].to_owned()))
                    .copied()
                    .unwrap_or_default(),
                deliveries_queued: 0,
                duplicate: true,
            },
        })
        .collect())
}

/// The ids of the events stored under these (owner, idempotency key) pairs.
async fn originals(
    conn: &mut PgConnection,
    owners: &[String],
    keys: &[String],
) -> Result<HashMap<(String, String), Uuid>> {
    if owners.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query!(
        r#"
        SELECT e.id, e.owner_name, e.idempotency_key AS "key!"
        FROM UNNEST($1::text[], $2::text[]) AS k(owner_name, key)
        JOIN events e ON e.owner_name = k.owner_name AND e.idempotency_key = k.key
        "#,
        owners,
        keys,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.owner_name, r.key), r.id))
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
