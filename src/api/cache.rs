//! Per-process caches of what nearly every API request reads: verified API tokens, and the
//! first page of each repository's webhooks (ListWebhooks). A cache hit costs no database
//! round trip.
//!
//! Both follow changes made by any process. A change is announced by NOTIFY: `token revoke`
//! in the statement that revokes; CreateWebhook and DeleteWebhook right after their commit,
//! batched with whatever other changes are waiting (a NOTIFY in their own transaction
//! would serialise every create's commit: see `store::webhooks::announce_changes`); the
//! batcher, disabling a webhook on HTTP 410, in its transaction (that is rare). Every
//! `serve` process LISTENs and drops what changed when an announcement arrives, within
//! milliseconds of the change (as for any NOTIFY, delivery follows the commit); the process
//! that made a change drops it at once, before it answers. The caches are used
//! only while that LISTEN connection is up: when it drops, they are emptied and bypassed
//! until a new one listens, so an announcement is never missed. A generation counter keeps
//! a lookup that raced an invalidation from storing what it read before it. Entries also
//! expire after their TTL (`--token-cache-ttl`, `--list-cache-ttl`): that bounds a change
//! made behind webhookd's back in SQL, and a create or delete whose process died between
//! its commit and its announcement. `0s` turns a cache off. Tokens the database does not
//! know are remembered apart, whether or not LISTEN is up (a random token that was never
//! made never will be, so a new token still works at once), and at most
//! [`MAX_TOKEN_LOOKUPS`] lookups go to the database at once.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgNotification;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::domain::{TokenHash, TokenScope, Webhook};
use crate::error::Result;
use crate::store;
use crate::store::notifications::{Notice, Notifications};
use crate::store::tokens::Lookup;

/// The most entries a cache keeps; past that it is emptied and refilled by use.
const MAX_ENTRIES: usize = 10_000;
/// The longest first page kept (the default per-repository cap is 20).
const MAX_CACHED_PAGE: usize = 100;
/// How long a token the database does not know is refused from memory. Such a token can
/// never become valid (tokens are 256 random bits), so this only bounds the memory a
/// flood of repeated bad tokens takes.
const UNKNOWN_TTL: Duration = Duration::from_secs(60);
/// The most token lookups that go to the database at once: a flood of random tokens takes
/// no more of the API's pool than this.
const MAX_TOKEN_LOOKUPS: usize = 4;

/// The caches of one `serve` process.
pub struct ApiCache {
    /// True while a LISTEN connection is up; nothing is served from a cache otherwise.
    listening: AtomicBool,
    /// Bumped by every invalidation, so that a lookup that raced one does not store what it
    /// read before it.
    generation: AtomicU64,
    tokens: Expiring<TokenHash, TokenScope>,
    /// Tokens the database does not know. Served whether or not LISTEN is up: nothing
    /// announced can make them known.
    unknown: Expiring<TokenHash, ()>,
    /// Room for [`MAX_TOKEN_LOOKUPS`].
    lookups: tokio::sync::Semaphore,
    lists: Expiring<(String, String), Arc<Vec<Webhook>>>,
    /// To [`announce_changes`]: changed repositories, as `owner/repository`.
    announcements: mpsc::Sender<String>,
}

/// A map whose entries are served for `ttl`.
struct Expiring<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> Expiring<K, V> {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, (V, Instant)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.lock();
        let (value, since) = entries.get(key)?;
        (since.elapsed() < self.ttl).then(|| value.clone())
    }
}

impl ApiCache {
    /// Empty caches keeping tokens for `token_ttl` and first pages for `list_ttl` (zero:
    /// never). They serve nothing until [`ApiCache::listen`] is running; what
    /// [`ApiCache::webhooks_changed`] announces goes to the receiver, for
    /// [`announce_changes`].
    pub fn new(token_ttl: Duration, list_ttl: Duration) -> (Arc<Self>, mpsc::Receiver<String>) {
        let (announcements, receiver) = mpsc::channel(4096);
        let cache = Arc::new(Self {
            listening: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            tokens: Expiring::new(token_ttl),
            unknown: Expiring::new(UNKNOWN_TTL),
            lookups: tokio::sync::Semaphore::new(MAX_TOKEN_LOOKUPS),
            lists: Expiring::new(list_ttl),
            announcements,
        });
        (cache, receiver)
    }

    fn enabled<K, V>(&self, cache: &Expiring<K, V>) -> bool {
        !cache.ttl.is_zero() && self.listening.load(Ordering::Acquire)
    }

    /// Stores `value` unless an invalidation happened since `generation` was read. Checked
    /// under the lock that invalidation also takes.
    fn store<K: Eq + Hash, V: Clone>(
        &self,
        cache: &Expiring<K, V>,
        generation: u64,
        key: K,
        value: V,
    ) {
        let mut entries = cache.lock();
        if self.generation.load(Ordering::Acquire) == generation {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(key, (value, Instant::now()));
        }
    }

    /// The live token's scope: from the cache when it can be trusted, else from the
    /// database (and then remembered). A token the database does not know is remembered
    /// too, and refused without asking it again; at most [`MAX_TOKEN_LOOKUPS`] lookups ask
    /// the database at once.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    pub async fn find_scope(&self, pool: &PgPool, hash: TokenHash) -> Result<Option<TokenScope>> {
        let enabled = self.enabled(&self.tokens);
        if enabled && let Some(scope) = self.tokens.get(&hash) {
            return Ok(Some(scope));
        }
        if self.unknown.get(&hash).is_some() {
            return Ok(None);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let lookup = {
            let _room = self.lookups.acquire().await.map_err(|_| {
                crate::error::Error::Internal(anyhow::anyhow!("the token lookups are closed"))
            })?;
            let mut conn = store::acquire(pool).await?;
            store::tokens::find(&mut conn, hash).await?
        };
        match lookup {
            Lookup::Live(scope) => {
                if enabled {
                    self.store(&self.tokens, generation, hash, scope.clone());
                }
                Ok(Some(scope))
            }
            Lookup::Revoked => Ok(None),
            Lookup::Unknown => {
                self.remember_unknown(hash);
                Ok(None)
            }
        }
    }

    fn remember_unknown(&self, hash: TokenHash) {
        let mut entries = self.unknown.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(hash, ((), Instant::now()));
    }

    /// The first `limit` webhooks of a repository, in ListWebhooks order: from the cache
    /// when it can be trusted, else from the database (and then remembered).
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    pub async fn first_page(
        &self,
        pool: &PgPool,
        owner: &str,
        repository: &str,
        limit: i64,
    ) -> Result<Arc<Vec<Webhook>>> {
        let enabled = self.enabled(&self.lists);
        let key = (owner.to_owned(), repository.to_owned());
        if enabled && let Some(page) = self.lists.get(&key) {
            return Ok(page);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let mut conn = store::acquire(pool).await?;
        let page =
            Arc::new(store::webhooks::list_page(&mut conn, owner, repository, None, limit).await?);
        if enabled && page.len() <= MAX_CACHED_PAGE {
            self.store(&self.lists, generation, key, page.clone());
        }
        Ok(page)
    }

    /// A repository's webhooks changed (and the change is committed): drops its cached first
    /// page here at once, and queues the announcement to the other processes.
    pub async fn webhooks_changed(&self, owner: &str, repository: &str) {
        self.forget_list(owner, repository);
        let _ = self
            .announcements
            .send(format!("{owner}/{repository}"))
            .await;
    }

    fn forget_list(&self, owner: &str, repository: &str) {
        self.invalidate(&self.lists, |lists| {
            lists.remove(&(owner.to_owned(), repository.to_owned()));
        });
    }

    fn tokens_changed(&self) {
        self.invalidate(&self.tokens, HashMap::clear);
    }

    fn clear(&self) {
        self.tokens_changed();
        self.invalidate(&self.lists, HashMap::clear);
    }

    /// Changes `cache` and bumps the generation under its lock (see [`ApiCache::store`]).
    fn invalidate<K: Eq + Hash, V: Clone>(
        &self,
        cache: &Expiring<K, V>,
        change: impl FnOnce(&mut HashMap<K, (V, Instant)>),
    ) {
        let mut entries = cache.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        change(&mut entries);
    }

    /// Keeps the caches honest until `shutdown`: listens for changes, drops what changed,
    /// and bypasses the caches whenever the LISTEN connection is down.
    pub async fn listen(self: Arc<Self>, pool: PgPool, shutdown: CancellationToken) {
        const CHANNELS: &[&str] = &[
            store::tokens::REVOKED_CHANNEL,
            store::webhooks::CHANGED_CHANNEL,
        ];
        if self.tokens.ttl.is_zero() && self.lists.ttl.is_zero() {
            return;
        }
        let mut notifications = Notifications::new(pool, CHANNELS);
        loop {
            let notice = tokio::select! {
                notice = notifications.next() => notice,
                () = shutdown.cancelled() => return,
            };
            match notice {
                Notice::Listening => {
                    // Anything changed while nobody listened is gone from the caches too.
                    self.clear();
                    self.listening.store(true, Ordering::Release);
                }
                Notice::Notified(change) => self.apply(&change),
                Notice::Lost => {
                    // Read from the database until the connection is back.
                    self.listening.store(false, Ordering::Release);
                    self.clear();
                }
            }
        }
    }

    /// Drops what one announcement says changed.
    fn apply(&self, change: &PgNotification) {
        if change.channel() != store::webhooks::CHANGED_CHANNEL {
            return self.tokens_changed();
        }
        for changed in change.payload().lines() {
            match changed.split_once('/') {
                Some((owner, repository)) => self.forget_list(owner, repository),
                None => self.clear(),
            }
        }
    }
}

/// Announces the changes [`ApiCache::webhooks_changed`] queues, everything waiting in one
/// statement. Runs until every [`ApiCache`] is gone. An announcement that fails is logged:
/// other processes then serve those repositories' cached pages until `--list-cache-ttl`
/// runs out.
pub async fn announce_changes(mut queued: mpsc::Receiver<String>, pool: PgPool) {
    let mut changed: Vec<String> = Vec::new();
    while queued.recv_many(&mut changed, 1000).await > 0 {
        changed.sort();
        changed.dedup();
        let sent = async {
            let mut conn = store::acquire(&pool).await?;
            store::webhooks::announce_changes(&mut conn, &changed).await
        };
        if let Err(e) = sent.await {
            tracing::warn!(error.cause_chain = ?anyhow::Error::from(e), repositories = changed.len(),
                "could not announce webhook changes; other processes may list them stale until --list-cache-ttl");
        }
        changed.clear();
    }
}
