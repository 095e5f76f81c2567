//! Which owners the live tail's readers follow (`tail_follows`, migration 20261209000001):
//! the recorders notify only those owners' attempts. Each serving process's hub writes its
//! own rows (see `api::tail`) and renews them while its readers stay.

use std::time::Duration;

use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::Result;

/// Marks `owner` followed by `hub` for `ttl`, committed before the reader's stream opens
/// (so every attempt recorded after it is notified).
///
/// # Errors
/// Database errors.
pub async fn follow(conn: &mut PgConnection, hub: Uuid, owner: &str, ttl: Duration) -> Result<()> {
    sqlx::query!(
        r#"
        INSERT INTO tail_follows (hub_id, owner_name, expire_time)
        VALUES ($1, $2, now() + make_interval(secs => $3))
        ON CONFLICT (hub_id, owner_name) DO UPDATE SET expire_time = EXCLUDED.expire_time
        "#,
        hub,
        owner,
        ttl.as_secs_f64(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Makes `owners` exactly what `hub` follows, for `ttl` from now (none: the hub's rows go),
/// and drops other hubs' rows that expired (a process that died without leaving). The
/// rows upserted and those deleted are disjoint (one statement may not change a row twice).
///
/// # Errors
/// Database errors.
pub async fn renew(
    conn: &mut PgConnection,
    hub: Uuid,
    owners: &[String],
    ttl: Duration,
) -> Result<()> {
    sqlx::query!(
        r#"
        WITH renewed AS (
            INSERT INTO tail_follows (hub_id, owner_name, expire_time)
            SELECT $1, o, now() + make_interval(secs => $3)
            FROM UNNEST($2::text[]) AS o
            ON CONFLICT (hub_id, owner_name) DO UPDATE SET expire_time = EXCLUDED.expire_time
        )
        DELETE FROM tail_follows
        WHERE CASE WHEN hub_id = $1 THEN owner_name <> ALL ($2::text[])
                   ELSE expire_time < now() END
        "#,
        hub,
        owners,
        ttl.as_secs_f64(),
    )
    .execute(conn)
    .await?;
    Ok(())
}
