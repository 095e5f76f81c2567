//! An event on its way into the outbox: validated, routed, and already encoded. Built here,
//! once, whichever way it arrives (the Publish RPC, a Rust producer, `webhookd publish`),
//! from the BSR's `EventRequest`, a `webhookd.v1.RegistryEvent` or a
//! `webhookd.v1.GitHubEvent`.

use buffa::{Message as _, MessageField};
use buffa_types::google::protobuf::Timestamp;

use super::{BSR_PUSH, Family, OwnerName, RepositoryName, WebhookEvent, registry_type};
use crate::error::{Error, Result};
use crate::proto::buf::alpha::webhook::v1alpha1::__buffa::oneof::event_payload::Payload;
use crate::proto::buf::alpha::webhook::v1alpha1::EventRequest;
use crate::proto::webhookd::v1::{GitHubEvent, RegistryEvent};

/// The longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;
/// The most tags one registry event carries.
pub const MAX_TAGS: usize = 100;

/// What an event is, by family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A BSR event.
    Bsr(WebhookEvent),
    /// A registry event of this type, with its tags (tag filters match them).
    Registry {
        /// One of `REGISTRY_TYPES`.
        event_type: &'static str,
        /// The tags concerned.
        tags: Vec<String>,
    },
    /// A GitHub-style event of this name.
    GitHub(String),
    /// One of webhookd's operational events (`OPERATIONAL_TYPES`).
    Operational(&'static str),
}

impl EventKind {
    /// Its family.
    pub fn family(&self) -> Family {
        match self {
            EventKind::Bsr(_) => Family::Bsr,
            EventKind::Registry { .. } => Family::Registry,
            EventKind::GitHub(_) => Family::GitHub,
            EventKind::Operational(_) => Family::Webhookd,
        }
    }

    /// The BSR's event number; 0 for other families.
    pub fn number(&self) -> i32 {
        match self {
            EventKind::Bsr(event) => event.number(),
            _ => 0,
        }
    }

    /// The event type, as subscriptions list it.
    pub fn type_name(&self) -> &str {
        match self {
            EventKind::Bsr(_) => BSR_PUSH,
            EventKind::Registry { event_type, .. } => event_type,
            EventKind::GitHub(name) => name,
            EventKind::Operational(name) => name,
        }
    }

    /// The type as stored: empty for the BSR (its number says it).
    pub fn stored_type(&self) -> &str {
        match self {
            EventKind::Bsr(_) => "",
            _ => self.type_name(),
        }
    }

    /// The tags (registry events).
    pub fn tags(&self) -> &[String] {
        match self {
            EventKind::Registry { tags, .. } => tags,
            _ => &[],
        }
    }
}

/// A validated event, ready to store.
#[derive(Debug, Clone)]
pub struct OutboundEvent {
    /// The owner of the repository it happened in (routing, and the idempotency scope).
    pub owner: OwnerName,
    /// The repository it happened in (routing).
    pub repository: RepositoryName,
    /// What it is.
    pub kind: EventKind,
    /// The stored payload: the encoded `EventRequest` or `RegistryEvent`, or a GitHub
    /// event's JSON, rendered for each subscriber at delivery time.
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
        Ok(Self {
            owner,
            repository: name,
            kind: EventKind::Bsr(event),
            payload: request.encode_to_vec(),
            idempotency_key: parse_key(idempotency_key)?,
        })
    }

    /// Validates a registry event and encodes it once; an unset `occur_time` becomes now,
    /// so that every rendering tells the same time.
    ///
    /// # Errors
    /// `InvalidArgument` naming the offending field (under `registry.`).
    pub fn from_registry(event: &RegistryEvent, idempotency_key: Option<&str>) -> Result<Self> {
        let invalid = |why: String| Error::InvalidArgument(format!("registry.{why}"));
        let event_type = registry_type(&event.kind)
            .ok_or_else(|| {
                invalid(format!(
                    "kind {:?} is not a registry event type (ListEventTypes lists them)",
                    event.kind
                ))
            })?
            .name;
        let owner = OwnerName::parse_in(Family::Registry, "owner", &event.owner)
            .map_err(|e| invalid(e.to_string()))?;
        let repository =
            RepositoryName::parse_in(Family::Registry, "repository", &event.repository)
                .map_err(|e| invalid(e.to_string()))?;
        if !event.digest.is_empty() && !valid_digest(&event.digest) {
            return Err(invalid(format!(
                "digest {:?} is not \"sha256:\" and 64 hex digits or \"sha512:\" and 128",
                event.digest
            )));
        }
        if event.tags.len() > MAX_TAGS {
            return Err(invalid(format!(
                "tags has {} entries; the limit is {MAX_TAGS}",
                event.tags.len()
            )));
        }
        if let Some((i, tag)) = event.tags.iter().enumerate().find(|(_, t)| !valid_tag(t)) {
            return Err(invalid(format!(
                "tags[{i}] {tag:?} is not an OCI tag (up to 128 letters, digits, '_', '.' \
                 and '-', not starting with '.' or '-')"
            )));
        }
        if event.size < 0 {
            return Err(invalid("size may not be negative".into()));
        }
        let mut stored = event.clone();
        if stored.occur_time.as_option().is_none() {
            stored.occur_time = MessageField::some(Timestamp::from(chrono::Utc::now()));
        }
        Ok(Self {
            owner,
            repository,
            kind: EventKind::Registry {
                event_type,
                tags: event.tags.clone(),
            },
            payload: stored.encode_to_vec(),
            idempotency_key: parse_key(idempotency_key)?,
        })
    }

    /// Validates a GitHub-style event; its payload must be a JSON object, stored (and sent)
    /// byte for byte.
    ///
    /// # Errors
    /// `InvalidArgument` naming the offending field (under `github.`).
    pub fn from_github(event: &GitHubEvent, idempotency_key: Option<&str>) -> Result<Self> {
        let invalid = |why: String| Error::InvalidArgument(format!("github.{why}"));
        Family::GitHub
            .check_type("name", &event.name)
            .map_err(|e| invalid(e.to_string()))?;
        let owner = OwnerName::parse_in(Family::GitHub, "owner", &event.owner)
            .map_err(|e| invalid(e.to_string()))?;
        let repository = RepositoryName::parse_in(Family::GitHub, "repository", &event.repository)
            .map_err(|e| invalid(e.to_string()))?;
        if let Err(e) =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&event.payload_json)
        {
            return Err(invalid(format!("payload_json is not a JSON object: {e}")));
        }
        Ok(Self {
            owner,
            repository,
            kind: EventKind::GitHub(event.name.clone()),
            payload: event.payload_json.clone().into_bytes(),
            idempotency_key: parse_key(idempotency_key)?,
        })
    }

    /// One of webhookd's own operational events about a subscription of `owner` (and of
    /// `repository`, empty for an owner-wide one), its JSON `payload` built by webhookd.
    pub(crate) fn operational(
        owner: &str,
        repository: &str,
        event_type: &'static str,
        payload: &serde_json::Value,
    ) -> Self {
        Self {
            owner: OwnerName::stored(owner),
            repository: RepositoryName::stored(repository),
            kind: EventKind::Operational(event_type),
            payload: payload.to_string().into_bytes(),
            idempotency_key: None,
        }
    }
}

/// An idempotency key: empty is none.
fn parse_key(key: Option<&str>) -> Result<Option<String>> {
    match key {
        None | Some("") => Ok(None),
        Some(key) if key.len() > MAX_IDEMPOTENCY_KEY_BYTES => Err(Error::InvalidArgument(format!(
            "idempotency_key is {} bytes long; the limit is {MAX_IDEMPOTENCY_KEY_BYTES}",
            key.len()
        ))),
        Some(key) => Ok(Some(key.to_owned())),
    }
}

/// Whether `digest` is `sha256:` and 64 lowercase hex digits, or `sha512:` and 128.
fn valid_digest(digest: &str) -> bool {
    let hex = |h: &str, n: usize| {
        h.len() == n
            && h.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    };
    match digest.split_once(':') {
        Some(("sha256", h)) => hex(h, 64),
        Some(("sha512", h)) => hex(h, 128),
        _ => false,
    }
}

/// Whether `tag` is an OCI tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    tag.len() <= 128
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A name error's message without its leading field name.
fn strip_field(error: &Error) -> String {
    let text = error.to_string();
    text.split_once(' ')
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or(text)
}
