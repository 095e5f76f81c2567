//! Webhooks defined in the configuration file the Angos way (section B.1 of the reference
//! facts): `[event_webhook.NAME]` tables, enabled for every repository by `[global]
//! event_webhooks` or per repository by `[repository."NAME"] event_webhooks` (which
//! replaces the global list for that repository). Parsed and checked in `config_file`;
//! here, what they are and which events each is sent.
//!
//! An Angos repository (its configuration entry, what Angos's payload calls `repository`)
//! is a webhookd owner: `production/app` is repository `app` of owner `production`, and
//! `[repository."production"]` applies to it. `repository_filter` is matched against the
//! namespace (`production/app`), as Angos's documentation describes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{EventKind, OutboundEvent, registry_type};

/// Angos's event kinds, in its documentation's order.
pub const ANGOS_KINDS: &[&str] = &[
    "manifest.push",
    "manifest.pull",
    "manifest.delete",
    "blob.push",
    "blob.pull",
    "tag.create",
    "tag.delete",
];

/// Angos's default per-request timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// The most retries Angos accepts.
pub const MAX_RETRIES: u32 = 16;
/// The default retries of a `required` webhook (the others': none).
pub const DEFAULT_REQUIRED_RETRIES: u32 = 3;
/// Angos's first retry delay, doubled on each retry...
pub const FIRST_RETRY_MS: u64 = 100;
/// ...up to this.
pub const MAX_RETRY_MS: u64 = 10_000;

/// When a webhook is delivered, and what its failure does (Angos's `policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Delivered before the publish is answered; its failure fails the publish.
    Required,
    /// Delivered before the publish is answered; its failure is reported, not fatal.
    Optional,
    /// Queued in the outbox with the publish, delivered by a batcher.
    Async,
}

impl Policy {
    /// Angos's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Required => "required",
            Policy::Optional => "optional",
            Policy::Async => "async",
        }
    }

    /// The policy named `name` (lowercase, as Angos reads it).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "required" => Some(Policy::Required),
            "optional" => Some(Policy::Optional),
            "async" => Some(Policy::Async),
            _ => None,
        }
    }

    /// Delivered while the publish waits.
    pub fn is_sync(self) -> bool {
        self != Policy::Async
    }
}

/// One `[event_webhook.NAME]` table.
#[derive(Clone, PartialEq, Eq)]
pub struct FileWebhook {
    /// The table's name: the subscription's name and the metrics' `webhook` label.
    pub name: String,
    /// Where its requests go.
    pub url: String,
    /// When it is delivered.
    pub policy: Policy,
    /// The Angos kinds it is sent (at least one).
    pub events: Vec<&'static str>,
    /// Sent as `Authorization: Bearer <token>` and the key of `X-Registry-Signature-256`.
    /// Never logged.
    pub token: Option<String>,
    /// Each request's timeout.
    pub timeout_ms: u64,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Regular expressions, OR-matched against the namespace; empty for every one.
    pub repository_filter: Vec<String>,
}

impl std::fmt::Debug for FileWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWebhook")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("policy", &self.policy)
            .field("events", &self.events)
            .field("token", &self.token.as_ref().map(|_| "..."))
            .field("timeout_ms", &self.timeout_ms)
            .field("max_retries", &self.max_retries)
            .field("repository_filter", &self.repository_filter)
            .finish()
    }
}

/// How a configuration file webhook is attempted: each request with its `timeout_ms`, and
/// retried `max_retries` times, Angos's way ([`FileWebhook::retry_delay`]; any answer but a
/// 2xx is retried, a 410 too, and nothing disables it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRetries {
    /// Each request's timeout.
    pub timeout: std::time::Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
}

impl FileWebhook {
    /// Its timeout and retries.
    pub fn retries(&self) -> FileRetries {
        FileRetries {
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            max_retries: self.max_retries,
        }
    }

    /// The delay before retry `retry` (1-based): `min(100 ms × 2^(retry-1), 10 s)`, no
    /// jitter, as Angos waits.
    pub fn retry_delay(retry: u32) -> std::time::Duration {
        let factor = 1u64
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u64::MAX);
        std::time::Duration::from_millis(FIRST_RETRY_MS.saturating_mul(factor).min(MAX_RETRY_MS))
    }
}

/// The file's webhooks and where each is enabled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileWebhooks {
    /// Every `[event_webhook.*]` table, by name.
    pub webhooks: BTreeMap<String, FileWebhook>,
    /// `[global] event_webhooks`: enabled for every repository without a list of its own.
    pub global: Vec<String>,
    /// `[repository."NAME"] event_webhooks`, where set.
    pub repositories: BTreeMap<String, Vec<String>>,
}

impl FileWebhooks {
    /// Whether the file defines none.
    pub fn is_empty(&self) -> bool {
        self.webhooks.is_empty()
    }
}

/// One file webhook matched to one event: the requests (parts) it is sent.
#[derive(Debug, Clone)]
pub struct FileMatch {
    /// The webhook.
    pub webhook: Arc<LiveWebhook>,
    /// The parts of the event it is sent (see [`angos_parts`]).
    pub parts: Vec<i16>,
}

/// A file webhook as publishing uses it: its definition, its subscription's id, its
/// compiled filter.
#[derive(Debug)]
pub struct LiveWebhook {
    /// The definition.
    pub definition: FileWebhook,
    /// Its subscription's id (the row the file's webhooks are kept as).
    pub id: uuid::Uuid,
    /// `repository_filter`, compiled.
    pub filter: super::Filters,
}

/// The file's webhooks as publishing routes to them: one immutable set, swapped whole on a
/// reload.
#[derive(Debug, Default)]
pub struct LiveSet {
    /// By name.
    pub webhooks: BTreeMap<String, Arc<LiveWebhook>>,
    /// The global list.
    pub global: Vec<String>,
    /// The per-repository lists.
    pub repositories: BTreeMap<String, Vec<String>>,
}

impl LiveSet {
    /// Whether any of its webhooks is delivered at publish time (`required`, `optional`).
    pub fn has_sync(&self) -> bool {
        self.webhooks
            .values()
            .any(|w| w.definition.policy.is_sync())
    }

    /// The file's webhooks that `event` goes to, with the parts each gets: those enabled
    /// for its owner (its own list, else the global one) whose events include the part's
    /// Angos kind and whose filter matches its namespace.
    pub fn matches(&self, event: &OutboundEvent) -> Vec<FileMatch> {
        let EventKind::Registry { event_type, .. } = &event.kind else {
            return vec![];
        };
        let kinds = registry_type(event_type).map_or(&[][..], |t| t.angos);
        if kinds.is_empty() {
            return vec![];
        }
        let names = self
            .repositories
            .get(event.owner.as_str())
            .unwrap_or(&self.global);
        let namespace = format!("{}/{}", event.owner.as_str(), event.repository.as_str());
        let mut matched = vec![];
        for name in names {
            let Some(webhook) = self.webhooks.get(name) else {
                continue;
            };
            if !webhook.filter.matches(&namespace) {
                continue;
            }
            let parts: Vec<i16> = angos_parts(&event.kind)
                .into_iter()
                .filter(|&part| webhook.definition.events.contains(&part_kind(kinds, part)))
                .collect();
            if !parts.is_empty() {
                matched.push(FileMatch {
                    webhook: webhook.clone(),
                    parts,
                });
            }
        }
        matched
    }
}

/// The parts an Angos subscriber gets for `kind`.
pub fn angos_parts(kind: &EventKind) -> Vec<i16> {
    let EventKind::Registry { event_type, tags } = kind else {
        return vec![];
    };
    let angos = registry_type(event_type).map_or(&[][..], |t| t.angos);
    match angos {
        [] => vec![],
        // The manifest's request, then one per tag.
        [_, _] => {
            let tags = i16::try_from(tags.len()).unwrap_or(i16::MAX);
            (0..=tags).collect()
        }
        _ => vec![0],
    }
}

/// The Angos kind of part `part` of an event sent as `kinds`: the first kind for part 0,
/// the second (one per tag) for the others.
pub fn part_kind(kinds: &[&'static str], part: i16) -> &'static str {
    let index = usize::from(part > 0).min(kinds.len().saturating_sub(1));
    kinds.get(index).copied().unwrap_or("")
}

/// The Angos kind of part `part` of an event of stored type `event_type`; `None` when Angos
/// has none.
pub fn angos_kind(event_type: &str, part: i16) -> Option<&'static str> {
    let kinds = registry_type(event_type)?.angos;
    (!kinds.is_empty()).then(|| part_kind(kinds, part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_from_100ms_up_to_10s() {
        let ms: Vec<u128> = (1..=9)
            .map(|n| FileWebhook::retry_delay(n).as_millis())
            .collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(FileWebhook::retry_delay(64).as_millis(), 10_000);
    }

    #[test]
    fn parts_have_angos_kinds() {
        assert_eq!(angos_kind("artifact.pushed", 0), Some("manifest.push"));
        assert_eq!(angos_kind("artifact.pushed", 2), Some("tag.create"));
        assert_eq!(angos_kind("artifact.deleted", 1), Some("tag.delete"));
        assert_eq!(angos_kind("blob.pushed", 0), Some("blob.push"));
        assert_eq!(angos_kind("scan.completed", 0), None);
    }
}
