//! An event on its way into the outbox: validated, routed, and already encoded.

use super::{OwnerName, RepositoryName, WebhookEvent};

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
