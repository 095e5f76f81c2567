//! Where a claim's scan of the due index may start while some webhooks are at
//! `--max-in-flight-per-webhook` (or their owners at `--max-in-flight-per-owner`), so that
//! the batcher does not walk their backlog on every claim.

use super::rooms::Saturated;
use crate::store::queue::Claim;

/// What the last claim's scan covered while some webhooks or owners were at their cap:
/// every due delivery before `from` was claimed, belonged to one of `saturated`, or was
/// locked by another claim. The next claim starts its scan at `from` if all of `saturated`
/// are still at their cap, so it does not walk their backlog again; each poll forgets it
/// and scans from the oldest (what `from` can miss: a delivery committed over
/// [`Skip::LATE_COMMIT`] after its due time, one released by a claim that rolled back, a
/// lease that expired before `from`).
pub struct Skip {
    saturated: Saturated,
    from: chrono::DateTime<chrono::Utc>,
}

impl Skip {
    /// How far behind the claim's snapshot the next scan starts, for deliveries whose
    /// transactions were still open at the claim (a publish commits after `now()`).
    pub const LATE_COMMIT: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

    /// What `claim`, made with `saturated`, covered.
    pub fn after(claim: &Claim, saturated: Saturated) -> Option<Self> {
        if saturated.is_empty() || !claim.topped_up {
            return None;
        }
        let reached = claim.snapshot_time - Self::LATE_COMMIT;
        let from = claim.full_at.map_or(reached, |at| at.min(reached));
        Some(Self { saturated, from })
    }

    /// Where a claim with `saturated` may start its scan.
    pub fn start(
        skip: Option<&Self>,
        saturated: &Saturated,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        skip.filter(|s| s.saturated.still(saturated))
            .map(|s| s.from)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};
    use uuid::Uuid;

    use super::*;
    use crate::domain::WebhookId;

    /// A claim whose snapshot is at 0 s and, when `full_at` is given, was full with its
    /// last delivery due at that second.
    fn claim(full_at: Option<i64>) -> Claim {
        let at = |secs| Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap();
        Claim {
            snapshot_time: at(0),
            full_at: full_at.map(at),
            topped_up: true,
            ..Claim::default()
        }
    }

    #[test]
    fn a_claim_remembers_where_its_scan_ended_only_while_webhooks_are_at_their_cap() {
        let (a, b) = (WebhookId(Uuid::from_u128(1)), WebhookId(Uuid::from_u128(2)));
        let hooks = |webhooks: &[WebhookId]| Saturated {
            webhooks: webhooks.to_vec(),
            owners: vec![],
        };
        let snapshot = claim(None).snapshot_time;
        // Nobody at the cap: nothing is skipped, so there is nothing to remember.
        assert!(Skip::after(&claim(None), hooks(&[])).is_none());
        // Not full: the scan reached the snapshot; the next starts a second before it.
        let skip = Skip::after(&claim(None), hooks(&[a])).unwrap();
        assert_eq!(skip.from, snapshot - Skip::LATE_COMMIT);
        // Full: the scan stopped at the last delivery it claimed...
        let skip = Skip::after(&claim(Some(-5)), hooks(&[a])).unwrap();
        assert_eq!(skip.from, snapshot - chrono::TimeDelta::seconds(5));
        // ... unless that was due within the last second.
        let skip = Skip::after(&claim(Some(0)), hooks(&[a])).unwrap();
        assert_eq!(skip.from, snapshot - Skip::LATE_COMMIT);

        // The next claim starts there while every skipped webhook is still at its cap...
        let skip = Skip::after(&claim(None), hooks(&[a])).unwrap();
        assert_eq!(Skip::start(Some(&skip), &hooks(&[a])), Some(skip.from));
        assert_eq!(Skip::start(Some(&skip), &hooks(&[a, b])), Some(skip.from));
        // ...and from the oldest once one of them is not: its backlog is claimable again.
        assert_eq!(Skip::start(Some(&skip), &hooks(&[b])), None);
        assert_eq!(Skip::start(Some(&skip), &hooks(&[])), None);
        assert_eq!(Skip::start(None, &hooks(&[a])), None);

        // Likewise for owners at their cap.
        let owners = |owners: &[&str]| Saturated {
            webhooks: vec![a],
            owners: owners.iter().map(|o| (*o).to_owned()).collect(),
        };
        let skip = Skip::after(&claim(None), owners(&["acme"])).unwrap();
        assert_eq!(
            Skip::start(Some(&skip), &owners(&["acme", "umbrella"])),
            Some(skip.from)
        );
        assert_eq!(Skip::start(Some(&skip), &owners(&["umbrella"])), None);
        assert_eq!(Skip::start(Some(&skip), &hooks(&[a])), None);
    }
}
