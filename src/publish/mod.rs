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

use buffa::Message as _;
use sqlx::PgConnection;

pub use self::group::GroupCommit;
pub use crate::domain::OutboundEvent;
use crate::domain::{MAX_IDEMPOTENCY_KEY_BYTES, OwnerName, RepositoryName, WebhookEvent};
use crate::error::{Error, Result};
use crate::proto::buf::alpha::webhook::v1alpha1::__buffa::oneof::event_payload::Payload;
use crate::proto::buf::alpha::webhook::v1alpha1::EventRequest;
use crate::store;
pub use crate::store::events::Stored;

/// The most events one `publish` call (and one Publish RPC) takes.
pub const MAX_BATCH: usize = 1000;

impl OutboundEvent {
    /// Validates an `EventRequest` and encodes it once, for storage and delivery as is.
    /// The event is routed by its payload's repository (`owner_name`, `name`).
    ///
    /// # Errors
    /// `InvalidArgument` naming the offending field.
    pub fn from_request(request: &EventRequest, idempotency_key: Option<&str>) -> Result<Self> {
        let invalid = |why: String| Error::InvalidArgument(why);
        let event = WebhookEvent::from_number(request.event.to_i32())
            .map_err(|e| invalid(format!("event: {e}")))?;
        let push = match request.payload.as_option().and_then(|p| p.payload.as_ref()) {
            Some(Payload::RepositoryPush(push)) => push,
            None => {
                return Err(invalid(
                    "payload.repository_push is required for WEBHOOK_EVENT_REPOSITORY_PUSH".into(),
                ));
            }
        };
        let repository = push.repository.as_option().ok_or_else(|| {
            invalid("payload.repository_push.repository is required (it routes the event)".into())
        })?;
        let in_repository = |e: Error| invalid(format!("payload.repository_push.repository.{e}"));
        let owner = OwnerName::parse(&repository.owner_name).map_err(in_repository)?;
        let name = RepositoryName::parse(&repository.name).map_err(|e| {
            invalid(format!(
                "payload.repository_push.repository.name {}",
                strip_field(&e)
            ))
        })?;
        let idempotency_key = match idempotency_key {
            None | Some("") => None,
            Some(key) if key.len() > MAX_IDEMPOTENCY_KEY_BYTES => {
                return Err(invalid(format!(
                    "idempotency_key is {} bytes long; the limit is {MAX_IDEMPOTENCY_KEY_BYTES}",
                    key.len()
                )));
            }
            Some(key) => Some(key.to_owned()),
        };
        Ok(Self {
            owner,
            repository: name,
            event,
            payload: request.encode_to_vec(),
            idempotency_key,
        })
    }
}

/// A name error's message without its leading field name.
fn strip_field(error: &Error) -> String {
    let text = error.to_string();
    text.split_once(' ')
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or(text)
}

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
