//! The ids that cross module boundaries, each its own type so that a delivery id can never
//! be passed where a webhook id is wanted. All are UUIDs; their text is the UUID's.

use std::fmt;

use uuid::Uuid;

/// Defines a UUID id type: `generate`, `parse` (of its text), `Display`.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $generate:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new id.
            pub fn generate() -> Self {
                Self($generate)
            }

            /// Parses the textual form; `None` when it is not a UUID.
            pub fn parse(value: &str) -> Option<Self> {
                Uuid::try_parse(value).ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// The id of a webhook subscription (random).
    WebhookId,
    Uuid::new_v4()
);
uuid_id!(
    /// The id of a delivery (one event to one webhook), sent as `webhook-id` (random).
    DeliveryId,
    Uuid::new_v4()
);
uuid_id!(
    /// The id of a stored event (time-ordered, so that events insert in index order).
    EventId,
    Uuid::now_v7()
);

/// The raw UUIDs of `ids`, as SQL array parameters take them.
pub fn uuids<T: Copy + Into<Uuid>>(ids: &[T]) -> Vec<Uuid> {
    ids.iter().map(|&id| id.into()).collect()
}

impl From<WebhookId> for Uuid {
    fn from(id: WebhookId) -> Self {
        id.0
    }
}

impl From<DeliveryId> for Uuid {
    fn from(id: DeliveryId) -> Self {
        id.0
    }
}

impl From<EventId> for Uuid {
    fn from(id: EventId) -> Self {
        id.0
    }
}
