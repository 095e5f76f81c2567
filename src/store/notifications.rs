//! LISTEN with reconnection, for everything that reacts to NOTIFY: the API caches (tokens
//! revoked, webhooks changed) and the batcher's `--wake-on-publish`. A lost connection is
//! logged once with its cause, retried at most once per [`Notifications::RETRY`] (so an
//! unreachable database is not hammered), and its return is reported, because whatever
//! was notified while nobody listened is lost and the caller must assume anything changed.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgNotification};
use tokio::time::Instant;

/// What [`Notifications::next`] saw.
#[derive(Debug)]
pub enum Notice {
    /// Listening (again): anything may have changed since the last notification.
    Listening,
    /// A notification.
    Notified(PgNotification),
    /// The connection was lost (logged); [`Notifications::next`] reconnects.
    Lost,
}

/// A LISTEN connection on some channels that comes back by itself.
pub struct Notifications {
    pool: PgPool,
    channels: &'static [&'static str],
    listener: Option<PgListener>,
    /// While the connection is down: when to try again.
    retry_at: Option<Instant>,
    /// The connection was lost (and that was logged) and is not back yet.
    down: bool,
}

impl Notifications {
    /// How long a lost connection waits between reconnection attempts.
    pub const RETRY: Duration = Duration::from_secs(1);

    /// Listens on `channels` with a connection of `pool`'s server, from the first
    /// [`Self::next`].
    pub fn new(pool: PgPool, channels: &'static [&'static str]) -> Self {
        Self {
            pool,
            channels,
            listener: None,
            retry_at: None,
            down: false,
        }
    }

    /// Waits for the next notice. Cancel-safe: a call dropped while it waits loses no
    /// notification, and keeps the retry time for the next call.
    pub async fn next(&mut self) -> Notice {
        loop {
            if let Some(at) = self.retry_at {
                tokio::time::sleep_until(at).await;
            }
            let Some(listener) = &mut self.listener else {
                match self.connect().await {
                    Ok(listener) => {
                        self.listener = Some(listener);
                        self.retry_at = None;
                        if std::mem::take(&mut self.down) {
                            tracing::info!(channels = ?self.channels, "LISTEN connection back");
                        }
                        return Notice::Listening;
                    }
                    Err(e) => {
                        self.lost(&e);
                        continue;
                    }
                }
            };
            match listener.try_recv().await {
                Ok(Some(notification)) => return Notice::Notified(notification),
                Ok(None) => self.lost(&"the server closed the connection"),
                Err(e) => self.lost(&e),
            }
            self.listener = None;
            return Notice::Lost;
        }
    }

    async fn connect(&self) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen_all(self.channels.iter().copied()).await?;
        Ok(listener)
    }

    /// Logs the loss once per outage and schedules the next try.
    fn lost(&mut self, cause: &dyn std::fmt::Display) {
        if !self.down {
            tracing::warn!(error = %cause, channels = ?self.channels,
                "LISTEN connection lost; retrying once a second");
            self.down = true;
        }
        self.retry_at = Some(Instant::now() + Self::RETRY);
    }
}
