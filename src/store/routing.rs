//! Routing of native subscriptions: which of an owner's subscriptions an event goes to, by
//! family, scope, event type and filters, and as how many requests (parts). Filters are
//! regular expressions matched here with the `regex` crate (linear time, bounded size), not
//! in PostgreSQL, whose engine backtracks; the publish statement inserts what this chose
//! and refuses a batch whose owners have a subscription this did not consider (see
//! `queue/publish.sql`). BSR webhooks are routed by the statement itself.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{EventId, Family, Filters, Format, LiveSet, OutboundEvent, angos_parts};
use crate::error::Result;

/// The most entries each per-process cache keeps; past that it is emptied and refilled.
const MAX_CACHED: usize = 10_000;

/// The deliveries routing chose, as the publish statement takes them.
#[derive(Debug, Default)]
pub struct Routed {
    /// Each delivery's event...
    pub event_ids: Vec<Uuid>,
    /// ...subscription...
    pub webhook_ids: Vec<Uuid>,
    /// ...and part.
    pub parts: Vec<i16>,
    /// Every subscription considered.
    pub considered: Vec<Uuid>,
    /// The owner of each subscription considered, and whether it was active (not paused).
    pub states: HashMap<Uuid, (String, bool)>,
}

/// A native subscription, as routing reads it.
struct Candidate {
    id: Uuid,
    owner: String,
    repository: String,
    all_repositories: bool,
    family: String,
    event_types: Vec<String>,
    format: String,
    filters: Arc<(Filters, Filters)>,
    active: bool,
}

/// Owners known to have native subscriptions: the publish statement's BSR events are routed
/// here only for them (and for the owners it reports as `missed`).
fn known_owners() -> &'static Mutex<HashSet<String>> {
    static OWNERS: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    OWNERS.get_or_init(Mutex::default)
}

/// Compiled filters by subscription, with the patterns they were compiled from.
type FilterCache = HashMap<Uuid, (Vec<String>, Vec<String>, Arc<(Filters, Filters)>)>;

fn filter_cache() -> &'static Mutex<FilterCache> {
    static FILTERS: OnceLock<Mutex<FilterCache>> = OnceLock::new();
    FILTERS.get_or_init(Mutex::default)
}

/// The owners of `events` to route before the statement: those of non-BSR events, and
/// those of BSR events known to have native subscriptions.
pub fn owners_to_route(events: &[OutboundEvent]) -> HashSet<String> {
    let known = known_owners().lock().unwrap_or_else(|e| e.into_inner());
    events
        .iter()
        .filter(|e| e.kind.family() != Family::Bsr || known.contains(e.owner.as_str()))
        .map(|e| e.owner.as_str().to_owned())
        .collect()
}

/// Remembers that `owners` have native subscriptions (the statement said so).
pub fn remember(owners: &[String]) {
    let mut known = known_owners().lock().unwrap_or_else(|e| e.into_inner());
    if known.len() + owners.len() > MAX_CACHED {
        known.clear();
    }
    known.extend(owners.iter().cloned());
}

/// Routes `events` (stored under `ids`) to the native subscriptions of `owners` and to the
/// `async` webhooks of the configuration file's `files`. Nothing is
/// locked here: the publish statement locks (FOR KEY SHARE) the subscriptions it queues
/// for, skipping one deleted or disabled meanwhile, and refuses the batch should one have
/// been created meanwhile; locking every candidate here cost a row lock per subscription
/// per publish (BENCHMARKS.md, scenario 11).
pub async fn route(
    conn: &mut PgConnection,
    ids: &[EventId],
    events: &[OutboundEvent],
    owners: HashSet<String>,
    files: &LiveSet,
) -> Result<Routed> {
    let mut routed = Routed::default();
    route_file_webhooks(&mut routed, ids, events, files);
    if owners.is_empty() {
        return Ok(routed);
    }
    let names: Vec<String> = owners.iter().cloned().collect();
    let rows = sqlx::query!(
        r#"
        SELECT id, owner_name, repository_name, all_repositories, family, event_types,
               repository_filters, tag_filters, format, state = 'active' AS "active!"
        FROM webhooks
        WHERE owner_name = ANY ($1) AND face <> 'bsr' AND state <> 'disabled'
        "#,
        &names,
    )
    .fetch_all(&mut *conn)
    .await?;
    let candidates: Vec<Candidate> = rows
        .into_iter()
        .map(|r| Candidate {
            filters: compiled(r.id, r.repository_filters, r.tag_filters),
            id: r.id,
            owner: r.owner_name,
            repository: r.repository_name,
            all_repositories: r.all_repositories,
            family: r.family,
            event_types: r.event_types,
            format: r.format,
            active: r.active,
        })
        .collect();
    {
        // Owners with none are forgotten: their BSR events skip routing again.
        let with: HashSet<&str> = candidates.iter().map(|c| c.owner.as_str()).collect();
        let mut known = known_owners().lock().unwrap_or_else(|e| e.into_inner());
        known.retain(|o| !owners.contains(o) || with.contains(o.as_str()));
        for owner in with {
            if known.len() < MAX_CACHED {
                known.insert(owner.to_owned());
            }
        }
    }
    let mut by_owner: HashMap<&str, Vec<&Candidate>> = HashMap::new();
    for c in &candidates {
        by_owner.entry(c.owner.as_str()).or_default().push(c);
    }
    for (id, event) in ids.iter().zip(events) {
        let Some(subscriptions) = by_owner.get(event.owner.as_str()) else {
            continue;
        };
        for subscription in subscriptions {
            for part in parts(subscription, event) {
                routed.event_ids.push(id.0);
                routed.webhook_ids.push(subscription.id);
                routed.parts.push(part);
            }
        }
    }
    routed.considered = candidates.iter().map(|c| c.id).collect();
    routed
        .states
        .extend(candidates.into_iter().map(|c| (c.id, (c.owner, c.active))));
    Ok(routed)
}

/// Routes `events` to the configuration file's `async` webhooks in `set` (the `required`
/// and `optional` ones are delivered while the publish waits, see
/// [`super::file_webhooks`]). Their subscriptions are owned by `''` and always active while
/// in the file.
fn route_file_webhooks(
    routed: &mut Routed,
    ids: &[EventId],
    events: &[OutboundEvent],
    set: &LiveSet,
) {
    if set.webhooks.is_empty() {
        return;
    }
    for (id, event) in ids.iter().zip(events) {
        for matched in set.matches(event) {
            if matched.webhook.definition.policy.is_sync() {
                continue;
            }
            for part in matched.parts {
                routed.event_ids.push(id.0);
                routed.webhook_ids.push(matched.webhook.id);
                routed.parts.push(part);
            }
            routed
                .states
                .insert(matched.webhook.id, (String::new(), true));
        }
    }
}

/// The parts of `event` that go to `subscription`: none when it does not match; for the
/// Angos format, one per request Angos sends for it (a push by tag is `manifest.push` and
/// a `tag.create` per tag; a type Angos has no kind for, none); else one.
fn parts(subscription: &Candidate, event: &OutboundEvent) -> Vec<i16> {
    let kind = &event.kind;
    let (repository_filters, tag_filters) = &*subscription.filters;
    let matches = subscription.family == kind.family().as_str()
        && (subscription.all_repositories || subscription.repository == event.repository.as_str())
        && (subscription.event_types.is_empty()
            || subscription
                .event_types
                .iter()
                .any(|t| t == kind.type_name()))
        && repository_filters.matches(event.repository.as_str())
        && (tag_filters.is_empty()
            || tag_filters.matches_any(kind.tags().iter().map(String::as_str)));
    if !matches {
        return vec![];
    }
    if Format::from_stored(&subscription.format) != Some(Format::Angos) {
        return vec![0];
    }
    angos_parts(kind)
}

/// The compiled filters of subscription `id`, from the cache while its patterns are the
/// same.
fn compiled(id: Uuid, repository: Vec<String>, tags: Vec<String>) -> Arc<(Filters, Filters)> {
    let mut cache = filter_cache().lock().unwrap_or_else(|e| e.into_inner());
    if let Some((r, t, filters)) = cache.get(&id)
        && *r == repository
        && *t == tags
    {
        return filters.clone();
    }
    let filters = Arc::new((
        Filters::stored(repository.clone()),
        Filters::stored(tags.clone()),
    ));
    if cache.len() >= MAX_CACHED {
        cache.clear();
    }
    cache.insert(id, (repository, tags, filters.clone()));
    filters
}
