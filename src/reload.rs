//! Hot reload of the configuration file's webhooks (`[event_webhook.*]`, `[global]`,
//! `[repository.*]`): the file is read again every second, and at once on `SIGHUP`; when
//! its webhooks changed, the new set is stored (see [`store::file_webhooks::sync`]) and
//! swapped in whole. A file that no longer reads or checks keeps the old set, and the log
//! says why, once per edit. Deliveries in flight finish on the definition they were claimed
//! with; those claimed after the swap go by the new one. Everything else in the file
//! (`[serve]`, `[ingest.*]`) is read at start only.

use std::path::PathBuf;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::domain::FileWebhooks;
use crate::secret_box::SecretBox;
use crate::store;
use crate::store::file_webhooks::Live;

/// How often the file is read.
const POLL: Duration = Duration::from_secs(1);

/// What a reload needs.
pub struct Reloader {
    /// The file.
    pub path: PathBuf,
    /// Where the webhooks are stored.
    pub pool: PgPool,
    /// Seals their tokens.
    pub secrets: SecretBox,
    /// The set to swap.
    pub live: Live,
}

impl Reloader {
    /// Stores `webhooks` and makes them the live set.
    ///
    /// # Errors
    /// Database errors; the live set is unchanged then.
    pub async fn apply(&self, webhooks: &FileWebhooks) -> crate::Result<()> {
        let mut conn = store::acquire(&self.pool).await?;
        let set = store::file_webhooks::sync(&mut conn, webhooks, &self.secrets).await?;
        self.live.install(set);
        Ok(())
    }

    /// Watches the file until `stop`, starting from `loaded` (what is live).
    pub async fn run(self, mut loaded: FileWebhooks, stop: CancellationToken) {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| tracing::warn!(error = %e, "SIGHUP will not reload the file"))
            .ok();
        let mut last_text = std::fs::read_to_string(&self.path).ok();
        loop {
            let signalled = async {
                match hangup.as_mut() {
                    Some(h) => drop(h.recv().await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(POLL) => {}
                () = signalled => last_text = None,
            }
            let text = match std::fs::read_to_string(&self.path) {
                Ok(text) => text,
                Err(e) => {
                    if last_text.is_some() {
                        tracing::warn!(file = %self.path.display(), error = %e,
                            "cannot read the configuration file; keeping its webhooks as they were");
                    }
                    last_text = None;
                    continue;
                }
            };
            if last_text.as_deref() == Some(text.as_str()) {
                continue;
            }
            last_text = Some(text.clone());
            let checked = crate::config::serve_command().and_then(|serve| {
                crate::config_file::parse(&text, &self.path.display().to_string(), &serve)
            });
            let webhooks = match checked {
                Ok(file) => file.webhooks,
                Err(e) => {
                    tracing::warn!(error = %e,
                        "the configuration file changed but does not check; keeping its \
                         webhooks as they were");
                    continue;
                }
            };
            if webhooks == loaded {
                continue;
            }
            match self.apply(&webhooks).await {
                Ok(()) => {
                    tracing::info!(file = %self.path.display(), webhooks = webhooks.webhooks.len(),
                        "reloaded the configuration file's webhooks");
                    loaded = webhooks;
                }
                Err(e) => {
                    tracing::warn!(error = %e,
                        "could not store the reloaded webhooks; trying again in a second");
                    last_text = None;
                }
            }
        }
    }
}
