//! Publishing events into the transactional outbox, for the `Publish` RPC and for Rust
//! producers that share webhookd's database.
//!
//! A producer publishes inside its own transaction, so that its state change and the event
//! commit or roll back together:
//!
//! ```ignore
//! let mut tx = pool.begin().await?;
//! sqlx::query("UPDATE commits SET pushed = true WHERE id = $1").bind(id).execute(&mut *tx).await?;
//! let event = webhookd::publish::OutboundEvent::from_request(&event_request, Some("push-42"))?;
//! webhookd::publish::publish(&mut tx, &[event]).await?;
//! tx.commit().await?; // the deliveries exist from here on, and not before
//! ```

mod group;
mod policies;

use sqlx::PgConnection;

pub use self::group::GroupCommit;
pub use self::policies::{Failure, Policies, Synced};
pub use crate::domain::OutboundEvent;
use crate::error::{Error, Result};
use crate::store;
pub use crate::store::events::Stored;

/// The most events one `publish` call (and one Publish RPC) takes.
pub const MAX_BATCH: usize = 1000;

/// Stores `events` and queues their deliveries on `conn`, which should be inside the
/// caller's transaction: nothing is delivered unless and until it commits. Wakes
/// `--wake-on-publish` batchers at commit.
///
/// # Errors
/// `InvalidArgument` for more than [`MAX_BATCH`] events; database errors.
pub async fn publish(conn: &mut PgConnection, events: &[OutboundEvent]) -> Result<Vec<Stored>> {
    if events.len() > MAX_BATCH {
        return Err(Error::InvalidArgument(format!(
            "{} events in one batch; the limit is {MAX_BATCH}",
            events.len()
        )));
    }
    store::events::insert(conn, events).await
}

/// What a publish did: its events as stored, and the configuration file's `optional`
/// webhooks that failed while it waited.
#[derive(Debug)]
pub struct Published {
    /// One per event, in order.
    pub stored: Vec<Stored>,
    /// The `optional` webhooks that failed (the events were stored all the same).
    pub failures: Vec<Failure>,
}

/// [`publish`], delivering first the configuration file's `required` and `optional`
/// webhooks that `policies` holds (see [`Policies`]): the caller's transaction stays open
/// while they are delivered. Their deliveries are recorded in that transaction.
///
/// # Errors
/// `FailedPrecondition` naming a `required` webhook that failed (nothing is written then);
/// as [`publish`].
pub async fn publish_with(
    conn: &mut PgConnection,
    events: &[OutboundEvent],
    policies: &Policies,
) -> Result<Published> {
    if events.len() > MAX_BATCH {
        return Err(Error::InvalidArgument(format!(
            "{} events in one batch; the limit is {MAX_BATCH}",
            events.len()
        )));
    }
    let set = policies.live().current();
    let synced = if set.has_sync() {
        let skip = store::events::used_keys(conn, events).await?;
        policies.deliver_or_refuse(&set, events, &skip).await?
    } else {
        Synced::default()
    };
    let (stored, _) = store::events::insert_handing(conn, events, None, None, &set).await?;
    let finished = Synced::finished(synced.deliveries, &stored);
    store::queue::record_finished(conn, &finished).await?;
    Ok(Published {
        stored,
        failures: synced.failures,
    })
}
