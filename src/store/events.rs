//! The transactional outbox: an event row and, in the same transaction, one delivery row per
//! active webhook of the event's repository. Whatever transaction the caller runs these in
//! commits or rolls back the event and its deliveries together.

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

/// Stores `event` and queues its deliveries, unless its idempotency key was used before for
/// the same owner, in which case nothing is written and the original id is returned.
pub async fn insert(conn: &mut PgConnection, event: &OutboundEvent) -> Result<Stored> {
    let owner = event.owner.as_str();
    let inserted = sqlx::query_scalar!(
        r#"
        INSERT INTO events (id, owner_name, repository_name, event, payload, idempotency_key)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT ON CONSTRAINT events_idempotency_key DO NOTHING
        RETURNING id
        "#,
        Uuid::now_v7(),
        owner,
        event.repository.as_str(),
        event.event.number(),
        &event.payload[..],
        event.idempotency_key.as_deref(),
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(event_id) = inserted else {
        let original = sqlx::query_scalar!(
            r#"SELECT id FROM events WHERE owner_name = $1 AND idempotency_key = $2"#,
            owner,
            event.idempotency_key.as_deref(),
        )
        .fetch_one(&mut *conn)
        .await?;
        return Ok(Stored {
            event_id: original,
            deliveries_queued: 0,
            duplicate: true,
        });
    };
    let queued = sqlx::query!(
        r#"
        INSERT INTO deliveries (id, event_id, webhook_id)
        SELECT gen_random_uuid(), $1, id
        FROM webhooks
        WHERE owner_name = $2 AND repository_name = $3 AND event = $4 AND state = 'active'
        "#,
        event_id,
        owner,
        event.repository.as_str(),
        event.event.number(),
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(Stored {
        event_id,
        deliveries_queued: i64::try_from(queued).unwrap_or(i64::MAX),
        duplicate: false,
    })
}

/// Wakes `--wake-on-publish` batchers when the surrounding transaction commits (NOTIFY is
/// transactional: a rolled-back publish wakes nobody).
pub async fn notify_batchers(conn: &mut PgConnection) -> Result<()> {
    sqlx::query!(r#"SELECT pg_notify($1, '')"#, NOTIFY_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}
