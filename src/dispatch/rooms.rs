//! How many more attempts each webhook and owner may start in this process: the attempts in
//! flight, counted per webhook (`--max-in-flight-per-webhook`) and per owner
//! (`--max-in-flight-per-owner`), and the room a claim keeps to.

use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::WebhookId;
use crate::store::queue::Room;

/// Attempts in flight in this process, per webhook and per owner (entries at 0 removed).
#[derive(Debug, Default)]
pub struct InFlightCounts {
    /// Per webhook.
    pub webhooks: HashMap<WebhookId, u32>,
    /// Per owner.
    pub owners: HashMap<Arc<str>, u32>,
}

impl InFlightCounts {
    /// Counts an attempt starting.
    pub fn start(&mut self, webhook: WebhookId, owner: &Arc<str>) {
        *self.webhooks.entry(webhook).or_default() += 1;
        *self.owners.entry(owner.clone()).or_default() += 1;
    }

    /// Counts an attempt ending; whether its webhook or its owner was at `caps` (and so
    /// has room again).
    pub fn end(&mut self, webhook: WebhookId, owner: &Arc<str>, caps: Caps) -> bool {
        let webhook_freed = count_down(&mut self.webhooks, &webhook) == Some(caps.per_webhook);
        let owner_freed = count_down(&mut self.owners, owner) == Some(caps.per_owner);
        webhook_freed || owner_freed
    }
}

/// Takes one from `key`'s count (removing it at 0); the count it had.
fn count_down<K: Eq + std::hash::Hash>(counts: &mut HashMap<K, u32>, key: &K) -> Option<u32> {
    let n = counts.get_mut(key)?;
    let had = *n;
    *n -= 1;
    if *n == 0 {
        counts.remove(key);
    }
    Some(had)
}

/// The in-flight caps.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// `--max-in-flight-per-webhook`.
    pub per_webhook: u32,
    /// `--max-in-flight-per-owner`.
    pub per_owner: u32,
}

/// The webhooks and owners a claim skips, each sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Saturated {
    /// Webhooks at `--max-in-flight-per-webhook`.
    pub webhooks: Vec<WebhookId>,
    /// Owners at `--max-in-flight-per-owner`.
    pub owners: Vec<String>,
}

impl Saturated {
    /// Whether nothing is skipped.
    pub fn is_empty(&self) -> bool {
        self.webhooks.is_empty() && self.owners.is_empty()
    }

    /// Whether everything `self` skips, `now` skips too.
    pub fn still(&self, now: &Saturated) -> bool {
        self.webhooks
            .iter()
            .all(|w| now.webhooks.binary_search(w).is_ok())
            && self
                .owners
                .iter()
                .all(|o| now.owners.binary_search(o).is_ok())
    }
}

/// A claim's view of the room: the counts when it began, plus what it has taken.
#[derive(Debug, Clone)]
pub struct Rooms {
    caps: Caps,
    webhooks: HashMap<WebhookId, u32>,
    owners: HashMap<Arc<str>, u32>,
}

impl Rooms {
    /// The room `counts` leaves under `caps`.
    pub fn of(counts: &InFlightCounts, caps: Caps) -> Self {
        Self {
            caps,
            webhooks: counts.webhooks.clone(),
            owners: counts.owners.clone(),
        }
    }

    /// What has no room left.
    pub fn saturated(&self) -> Saturated {
        let mut webhooks: Vec<WebhookId> = (self.webhooks.iter())
            .filter(|&(_, &n)| n >= self.caps.per_webhook)
            .map(|(&webhook, _)| webhook)
            .collect();
        webhooks.sort_unstable();
        let mut owners: Vec<String> = (self.owners.iter())
            .filter(|&(_, &n)| n >= self.caps.per_owner)
            .map(|(owner, _)| owner.to_string())
            .collect();
        owners.sort_unstable();
        Saturated { webhooks, owners }
    }
}

impl Room for Rooms {
    fn take(&mut self, webhook: WebhookId, owner: &str) -> bool {
        let at_webhook = self.webhooks.get(&webhook).copied().unwrap_or(0);
        let at_owner = self.owners.get(owner).copied().unwrap_or(0);
        if at_webhook >= self.caps.per_webhook || at_owner >= self.caps.per_owner {
            return false;
        }
        *self.webhooks.entry(webhook).or_default() += 1;
        *self.owners.entry(Arc::from(owner)).or_default() += 1;
        true
    }

    fn full(&self) -> (Vec<WebhookId>, Vec<String>) {
        let Saturated { webhooks, owners } = self.saturated();
        (webhooks, owners)
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn a_claim_takes_no_more_than_each_webhook_and_owner_has_room_for() {
        let caps = Caps {
            per_webhook: 2,
            per_owner: 3,
        };
        let (a, b, c) = (
            WebhookId(Uuid::from_u128(1)),
            WebhookId(Uuid::from_u128(2)),
            WebhookId(Uuid::from_u128(3)),
        );
        let mut counts = InFlightCounts::default();
        let acme: Arc<str> = Arc::from("acme");
        counts.start(a, &acme);
        let mut rooms = Rooms::of(&counts, caps);
        // a has one in flight: one more; then acme's third goes to b, and acme is full.
        assert!(rooms.take(a, "acme"));
        assert!(!rooms.take(a, "acme"), "a is at its cap");
        assert!(rooms.take(b, "acme"));
        assert!(!rooms.take(b, "acme"), "acme is at its cap");
        // Another owner is not held back.
        assert!(rooms.take(c, "globex"));
        assert_eq!(
            rooms.saturated(),
            Saturated {
                webhooks: vec![a],
                owners: vec!["acme".to_owned()],
            }
        );
        assert!(rooms.take(c, "globex"));
        assert!(!rooms.take(c, "globex"), "c is at its cap");
        // The claim's view is its own: the counts are untouched until attempts start.
        assert_eq!(counts.owners.get("acme"), Some(&1));
        assert!(!counts.end(a, &acme, caps), "a was below its cap");
        assert!(counts.webhooks.is_empty() && counts.owners.is_empty());
    }
}
