//! Validated domain values ("parse, don't validate"). Everything past `api/` works with these
//! types, so a function that takes a [`CallbackUrl`] can never see an unchecked string.

mod callback_url;
mod delivery;
mod event;
mod family;
mod file_webhooks;
pub mod header_record;
mod ids;
mod names;
mod page;
mod subscription;
mod token;
mod webhook;

pub use callback_url::{CallbackUrl, EVENT_PATH_SUFFIX, MAX_CALLBACK_URL_BYTES, is_internal_ip};
pub use delivery::{AttemptRecord, Delivery, DeliveryState, MASKED, RecordedRequest};
pub use event::{EventKind, MAX_IDEMPOTENCY_KEY_BYTES, MAX_TAGS, OutboundEvent};
pub use family::{
    BSR_PUSH, Family, Format, GITHUB_TYPES, MAX_EVENT_NAME_CHARS, OPERATIONAL_TYPES,
    REGISTRY_TYPES, RegistryType, SUBSCRIPTION_DISABLED, SUBSCRIPTION_FAILING, registry_type,
    valid_github_name,
};
pub use file_webhooks::*;
pub use ids::{DeliveryId, EventId, WebhookId, uuids};
pub use names::{MAX_NAME_CHARS, MAX_REGISTRY_NAME_CHARS, OwnerName, RepositoryName};
pub use page::{PageCursor, PageKey};
pub use subscription::*;
pub use token::{ApiToken, TokenHash, TokenScope};
pub use webhook::{NewWebhook, Webhook, WebhookEvent};
