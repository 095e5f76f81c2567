//! An event on its way into the outbox: validated, routed, and already encoded. Built from
//! the BSR's `EventRequest` here, once, whichever way it arrives (the Publish RPC, a Rust
//! producer, `webhookd publish`).

use buffa::Message as _;

use super::{OwnerName, RepositoryName, WebhookEvent};
use crate::error::{Error, Result};
use crate::proto::buf::alpha::webhook::v1alpha1::__buffa::oneof::event_payload::Payload;
use crate::proto::buf::alpha::webhook::v1alpha1::EventRequest;

/// The longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// A validated event, ready to store.
#[derive(Debug, Clone)]
pub struct OutboundEvent {
    /// The owner of the repository it happened in (routing, and the idempotency scope).
    pub owner: OwnerName,
    /// The repository it happened in (routing).
    pub repository: RepositoryName,
    /// Its kind.
    pub event: WebhookEvent,
    /// The encoded `buf.alpha.webhook.v1alpha1.EventRequest`, sent to listeners as is.
    pub payload: Vec<u8>,
    /// Repeating a key (per owner) publishes nothing new.
    pub idempotency_key: Option<String>,
}

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
