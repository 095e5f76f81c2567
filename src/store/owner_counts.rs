//! Each owner's count of queued (pending) deliveries and of webhooks, for
//! `--max-queued-per-owner` and `--max-webhooks-per-owner`. The statements that change them
//! append the change to `owner_count_changes`; [`fold`] moves the changes into
//! `owner_counts`, which Publish and CreateWebhook read (see migration 20261201000003 for
//! why two tables).

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::error::Result;

/// How often `serve` folds the changes: about how far behind the counts may be.
pub const FOLD_INTERVAL: Duration = Duration::from_secs(1);

/// One owner's folded counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnerCounts {
    /// Pending deliveries.
    pub queued: i64,
    /// Webhooks.
    pub webhooks: i64,
}

/// Moves every committed change into the owners' counts, in one transaction (a reader sees
/// each change in exactly one of the two tables). One fold runs at a time across processes
/// (a transaction-scoped advisory lock; the others skip their turn). Returns how many
/// changes it folded.
///
/// # Errors
/// Database errors.
pub async fn fold(conn: &mut PgConnection) -> Result<i64> {
    let folded = sqlx::query_scalar!(
        r#"
        WITH turn AS (
            SELECT pg_try_advisory_xact_lock(hashtext('webhookd_owner_counts_fold')) AS mine
        ), changes AS (
            DELETE FROM owner_count_changes
            WHERE (SELECT mine FROM turn)
            RETURNING owner_name, queued, webhooks
        ), summed AS (
            SELECT owner_name, sum(queued)::bigint AS queued, sum(webhooks)::bigint AS webhooks,
                   count(*) AS n
            FROM changes
            GROUP BY owner_name
        ), applied AS (
            INSERT INTO owner_counts AS c (owner_name, queued, webhooks)
            SELECT owner_name, queued, webhooks FROM summed
            ON CONFLICT (owner_name) DO UPDATE
                SET queued = c.queued + EXCLUDED.queued, webhooks = c.webhooks + EXCLUDED.webhooks
        )
        SELECT COALESCE(sum(n), 0)::bigint AS "folded!" FROM summed
        "#,
    )
    .fetch_one(conn)
    .await?;
    Ok(folded)
}

/// An owner's folded counts (zeros for an owner never counted).
///
/// # Errors
/// Database errors.
pub async fn get(conn: &mut PgConnection, owner: &str) -> Result<OwnerCounts> {
    let counts = sqlx::query_as!(
        OwnerCounts,
        r#"SELECT queued, webhooks FROM owner_counts WHERE owner_name = $1"#,
        owner
    )
    .fetch_optional(conn)
    .await?;
    Ok(counts.unwrap_or_default())
}

/// Folds every [`FOLD_INTERVAL`] until `stop` is cancelled; a failed fold is logged and
/// tried again at the next turn (the changes wait in their table).
pub async fn fold_until(pool: PgPool, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(FOLD_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        let folded = async {
            let mut conn = super::acquire(&pool).await?;
            fold(&mut conn).await
        };
        if let Err(e) = folded.await {
            tracing::warn!(error.cause_chain = ?anyhow::Error::from(e),
                "folding the owners' counts failed; trying again");
        }
    }
}
