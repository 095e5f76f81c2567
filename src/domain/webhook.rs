//! A webhook subscription: one repository event delivered to one callback URL.

use super::{CallbackUrl, OwnerName, RepositoryName, WebhookId};
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};

/// The events a webhook can subscribe to; the numbers are those of the BSR's `WebhookEvent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookEvent {
    /// A successful `buf push` to the repository (`WEBHOOK_EVENT_REPOSITORY_PUSH = 1`).
    RepositoryPush,
}

impl WebhookEvent {
    /// Accepts the wire number of a subscribable event; `UNSPECIFIED` (0) and unknown
    /// numbers are rejected with a message that lists what is accepted.
    pub fn from_number(number: i32) -> Result<Self> {
        match number {
            1 => Ok(WebhookEvent::RepositoryPush),
            0 => Err(Error::InvalidArgument(
                "webhook_event is required: use WEBHOOK_EVENT_REPOSITORY_PUSH".into(),
            )),
            n => Err(Error::InvalidArgument(format!(
                "webhook_event {n} is not supported: use WEBHOOK_EVENT_REPOSITORY_PUSH"
            ))),
        }
    }

    /// The wire number, as stored in the database.
    pub fn number(self) -> i32 {
        match self {
            WebhookEvent::RepositoryPush => 1,
        }
    }
}

/// A validated request to subscribe a callback URL to a repository event.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// The owner of the repository.
    pub owner: OwnerName,
    /// The repository.
    pub repository: RepositoryName,
    /// The event subscribed to.
    pub event: WebhookEvent,
    /// Where deliveries go.
    pub callback_url: CallbackUrl,
}

/// A stored webhook subscription.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Its id.
    pub id: WebhookId,
    /// The owner of the repository.
    pub owner: String,
    /// The repository.
    pub repository: String,
    /// The event number subscribed to.
    pub event: i32,
    /// Where deliveries go.
    pub callback_url: String,
    /// When it was created.
    pub create_time: DateTime<Utc>,
    /// When it was last changed.
    pub update_time: DateTime<Utc>,
}
