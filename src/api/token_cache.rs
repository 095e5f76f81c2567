//! A cache of verified API tokens, so that a request costs its own query and not a token
//! lookup as well.
//!
//! Revocation stays immediate: `webhookd token revoke` sends a NOTIFY in the same
//! statement that revokes, and every `serve` process LISTENs and empties its cache when one
//! arrives. The cache is used only while that LISTEN connection is up: when it drops,
//! the cache is emptied and bypassed until a new one is listening, so a revocation can never
//! be missed. Entries also expire after `--token-cache-ttl`, which bounds how long a token
//! revoked behind webhookd's back (by SQL) keeps working; `0s` turns the cache off. Unknown
//! and revoked tokens are never cached, so a new token works at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::domain::{TokenHash, TokenScope};
use crate::error::Result;
use crate::store;

/// The most tokens kept; past that the cache is emptied and refilled by use.
const MAX_ENTRIES: usize = 10_000;

/// Verified tokens of one process.
pub struct TokenCache {
    ttl: Duration,
    /// True while a LISTEN connection is up; nothing is served from the cache otherwise.
    listening: AtomicBool,
    /// Bumped by every invalidation, so that a lookup that raced one does not store what it
    /// read before it.
    generation: AtomicU64,
    entries: Mutex<HashMap<TokenHash, (TokenScope, Instant)>>,
}

impl TokenCache {
    /// An empty cache keeping entries for `ttl` (zero: never cache). It serves nothing until
    /// [`TokenCache::listen`] is running.
    pub fn new(ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            ttl,
            listening: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// The live token's scope: from the cache when it can be trusted, else from the
    /// database (and then remembered).
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    pub async fn find_scope(&self, pool: &PgPool, hash: TokenHash) -> Result<Option<TokenScope>> {
        let enabled = !self.ttl.is_zero() && self.listening.load(Ordering::Acquire);
        if enabled && let Some(scope) = self.cached(&hash) {
            return Ok(Some(scope));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let mut conn = store::acquire(pool).await?;
        let scope = store::tokens::find_scope(&mut conn, hash).await?;
        if enabled && let Some(scope) = &scope {
            let mut entries = self.lock();
            // Checked under the lock that invalidation also takes: an invalidation after
            // the lookup began means what was read may already be revoked.
            if self.generation.load(Ordering::Acquire) == generation {
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
                entries.insert(hash, (scope.clone(), Instant::now()));
            }
        }
        Ok(scope)
    }

    fn cached(&self, hash: &TokenHash) -> Option<TokenScope> {
        let entries = self.lock();
        let (scope, since) = entries.get(hash)?;
        (since.elapsed() < self.ttl).then(|| scope.clone())
    }

    fn invalidate(&self) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenHash, (TokenScope, Instant)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the cache honest until `shutdown`: listens for revocations, empties the cache
    /// on each, and bypasses it whenever the LISTEN connection is down.
    pub async fn listen(self: Arc<Self>, pool: PgPool, shutdown: CancellationToken) {
        if self.ttl.is_zero() {
            return;
        }
        loop {
            let connected = async {
                let mut listener = PgListener::connect_with(&pool).await?;
                listener.listen(store::tokens::REVOKED_CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            let mut listener = tokio::select! {
                connected = connected => connected,
                () = shutdown.cancelled() => return,
            };
            if let Ok(listener) = &mut listener {
                // Anything revoked while nobody listened is gone from the cache too.
                self.invalidate();
                self.listening.store(true, Ordering::Release);
                loop {
                    let received = tokio::select! {
                        received = listener.try_recv() => received,
                        () = shutdown.cancelled() => return,
                    };
                    self.invalidate();
                    match received {
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            self.listening.store(false, Ordering::Release);
            self.invalidate();
            tracing::warn!(
                "token revocation listener down; tokens are checked in the database until it is back"
            );
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}
