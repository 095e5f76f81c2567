//! Validated domain values ("parse, don't validate"). Everything past `api/` works with these
//! types, so a function that takes a [`CallbackUrl`] can never see an unchecked string.

mod callback_url;
mod delivery;
mod event;
mod ids;
mod names;
mod page;
mod token;
mod webhook;

pub use callback_url::{CallbackUrl, EVENT_PATH_SUFFIX, MAX_CALLBACK_URL_BYTES, is_internal_ip};
pub use delivery::{AttemptRecord, Delivery, DeliveryState};
pub use event::{MAX_IDEMPOTENCY_KEY_BYTES, OutboundEvent};
pub use ids::{DeliveryId, EventId, WebhookId, uuids};
pub use names::{MAX_NAME_CHARS, OwnerName, RepositoryName};
pub use page::{PageCursor, PageKey};
pub use token::{ApiToken, TokenHash, TokenScope};
pub use webhook::{NewWebhook, Webhook, WebhookEvent};
