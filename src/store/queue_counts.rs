//! Each owner's count of queued (pending) deliveries, for `--max-queued-per-owner`. The
//! statements that change how many deliveries an owner has pending append the change to
//! `owner_queue_changes`; [`fold`] moves them into `owner_queue_counts`, which Publish reads
//! (see migration 20261201000003 for why two tables).

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::error::Result;

/// How often `serve` folds the changes: how far behind the count Publish checks may be.
pub const FOLD_INTERVAL: Duration = Duration::from_secs(1);

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
            SELECT pg_try_advisory_xact_lock(hashtext('webhookd_queue_counts_fold')) AS mine
        ), changes AS (
            DELETE FROM owner_queue_changes
            WHERE (SELECT mine FROM turn)
            RETURNING owner_name, queued
        ), summed AS (
            SELECT owner_name, sum(queued)::bigint AS queued, count(*) AS n
            FROM changes
            GROUP BY owner_name
        ), applied AS (
            INSERT INTO owner_queue_counts AS c (owner_name, queued)
            SELECT owner_name, queued FROM summed
            ON CONFLICT (owner_name) DO UPDATE SET queued = c.queued + EXCLUDED.queued
        )
        SELECT COALESCE(sum(n), 0)::bigint AS "folded!" FROM summed
        "#,
    )
    .fetch_one(conn)
    .await?;
    Ok(folded)
}

/// An owner's folded count (0 for an owner never counted).
///
/// # Errors
/// Database errors.
pub async fn queued(conn: &mut PgConnection, owner: &str) -> Result<i64> {
    let queued = sqlx::query_scalar!(
        r#"SELECT queued FROM owner_queue_counts WHERE owner_name = $1"#,
        owner
    )
    .fetch_optional(conn)
    .await?;
    Ok(queued.unwrap_or(0))
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
                "folding the owners' queued counts failed; trying again");
        }
    }
}
