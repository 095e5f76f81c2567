//! Retention (`--retention`): finished deliveries whose last attempt is older than the
//! retention period go, with their attempts, and then the events no delivery refers to any
//! more. Pending deliveries (held ones included) are never removed, whatever their age.
//!
//! It runs in small batches, resting four times as long as each took, each its own short
//! transaction that locks only the rows it removes (`FOR UPDATE SKIP LOCKED`; a claim never wants a finished delivery, and a
//! Redeliver racing it waits for one batch at most), and walks the tables in primary-key
//! order (both ids are time-ordered UUIDv7s), so it needs no index of its own and costs the
//! delivery path nothing. Every process runs it; two running at once take disjoint rows.
//!
//! Events: a delivery row has no index by event (publishing would pay for one), but each is
//! inserted by its event's own transaction, so its id's time lies between its event's
//! `create_time` and the end of that transaction. An event is removed only once it is
//! [`margin`] older than the deliveries' cutoff: by then every delivery of it that is left
//! lies in the part of the table the first step has already emptied of finished deliveries,
//! and checking that none refers to it reads only the survivors (pending ones, and finished
//! ones redelivered since) in its batch's time span.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::Result;

/// The most rows one batch removes.
const BATCH: i64 = 500;
/// After each batch, retention rests this many times as long as the batch took: at most a
/// fifth of one connection's time, less when the database is busy (its batches take longer),
/// so that removing a backlog never takes a large share of what delivery needs
/// (BENCHMARKS.md, scenario 12).
const REST_FACTOR: u32 = 4;

/// What one pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Finished deliveries (with their attempts).
    pub deliveries: u64,
    /// Events no delivery refers to.
    pub events: u64,
}

/// How much older than the deliveries' cutoff an event must be to go: an hour, or half the
/// retention when that is shorter (tests). Far longer than any publish transaction.
pub fn margin(retention: Duration) -> Duration {
    (retention / 2).min(Duration::from_secs(3600))
}

/// The smallest UUIDv7 of the millisecond `time` (for walking ids by time).
pub fn v7_floor(time: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(time.timestamp_millis()).unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    Uuid::from_bytes(bytes)
}

/// Runs a pass every `interval` until `stop`, removing what is older than `retention`.
pub async fn run_until(
    pool: PgPool,
    retention: Duration,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        match pass(&pool, retention, &stop).await {
            Ok(removed) if removed != Removed::default() => tracing::info!(
                deliveries = removed.deliveries,
                events = removed.events,
                "retention removed finished deliveries and unreferenced events"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error.cause_chain = ?anyhow::Error::from(e),
                "retention pass failed; trying again at the next"),
        }
    }
}

/// One pass: every finished delivery last attempted before `now - retention`, then every
/// event older than that by [`margin`] that no delivery refers to. Stops between batches
/// when `stop` is cancelled.
///
/// # Errors
/// Database errors.
pub async fn pass(pool: &PgPool, retention: Duration, stop: &CancellationToken) -> Result<Removed> {
    let now = Utc::now();
    let cutoff = now - chrono::TimeDelta::from_std(retention).unwrap_or(chrono::TimeDelta::MAX);
    let mut removed = Removed::default();
    let mut after = Uuid::nil();
    while !stop.is_cancelled() {
        let started = Instant::now();
        let mut conn = super::acquire(pool).await?;
        let (n, last) = remove_deliveries(&mut conn, after, cutoff).await?;
        drop(conn);
        removed.deliveries += n;
        match last {
            Some(last) if n == BATCH as u64 => after = last,
            _ => break,
        }
        rest(started, stop).await;
    }
    let events_cutoff =
        cutoff - chrono::TimeDelta::from_std(margin(retention)).unwrap_or(chrono::TimeDelta::MAX);
    let mut after = Uuid::nil();
    while !stop.is_cancelled() {
        let started = Instant::now();
        let mut conn = super::acquire(pool).await?;
        let (n, last) = remove_events(&mut conn, after, events_cutoff, margin(retention)).await?;
        drop(conn);
        removed.events += n;
        match last {
            Some(last) => after = last,
            None => break,
        }
        rest(started, stop).await;
    }
    Ok(removed)
}

/// Rests [`REST_FACTOR`] times as long as the batch begun at `started` took, or until `stop`.
async fn rest(started: Instant, stop: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(started.elapsed() * REST_FACTOR) => {}
        () = stop.cancelled() => {}
    }
}

/// Removes up to a batch of finished deliveries after id `after` last attempted before
/// `cutoff`, and their attempts; how many, and the last id removed.
async fn remove_deliveries(
    conn: &mut PgConnection,
    after: Uuid,
    cutoff: DateTime<Utc>,
) -> Result<(u64, Option<Uuid>)> {
    let row = sqlx::query!(
        r#"
        WITH doomed AS (
            SELECT d.id
            FROM deliveries d
            WHERE d.id > $1 AND d.id < $2
              AND d.state <> 'pending' AND d.last_attempt_time < $3
            ORDER BY d.id
            LIMIT $4
            FOR UPDATE SKIP LOCKED
        ), gone AS (
            DELETE FROM deliveries d USING doomed WHERE d.id = doomed.id RETURNING d.id
        ), attempts AS (
            DELETE FROM delivery_attempts a
            WHERE a.delivery_id IN (SELECT id FROM gone)
        ), executions AS (
            DELETE FROM harbor_execution_ids x
            WHERE x.delivery_id IN (SELECT id FROM gone)
        )
        SELECT count(*) AS "removed!", max(id::text)::uuid AS last FROM gone
        "#,
        after,
        v7_floor(cutoff),
        cutoff,
        BATCH,
    )
    .fetch_one(conn)
    .await?;
    Ok((u64::try_from(row.removed).unwrap_or(0), row.last))
}

/// Walks up to a batch of events after id `after` and removes those created before `cutoff`
/// that no delivery refers to (its deliveries were inserted within `margin` of it); how
/// many, and the last id walked (`None`: the walk is done, the batch held no event old
/// enough).
async fn remove_events(
    conn: &mut PgConnection,
    after: Uuid,
    cutoff: DateTime<Utc>,
    margin: Duration,
) -> Result<(u64, Option<Uuid>)> {
    // Event ids come from the publishing process's clock: the walk's bound allows five
    // minutes of skew past the database's cutoff; create_time (the database's) decides.
    let row = sqlx::query!(
        r#"
        WITH batch AS (
            SELECT e.id, e.create_time
            FROM events e
            WHERE e.id > $1 AND e.id < $2
            ORDER BY e.id
            LIMIT $4
        ), old AS (
            SELECT id, create_time FROM batch WHERE create_time < $3
        ), span AS (
            SELECT min(create_time) AS low, max(create_time) AS high FROM old
        ), needed AS (
            -- The deliveries that may refer to these events: those inserted in the batch's
            -- time span and its margin, by the primary key.
            SELECT DISTINCT d.event_id
            FROM deliveries d, span s
            WHERE d.id >= webhookd_uuid_v7_floor(s.low)
              AND d.id < webhookd_uuid_v7_floor(s.high + make_interval(secs => $5))
              AND d.event_id IN (SELECT id FROM old)
        ), gone AS (
            DELETE FROM events e
            USING old
            WHERE e.id = old.id AND old.id NOT IN (SELECT event_id FROM needed)
            RETURNING e.id
        )
        SELECT (SELECT count(*) FROM gone) AS "removed!",
               CASE WHEN EXISTS (SELECT 1 FROM old) THEN (SELECT max(id::text)::uuid FROM batch)
               END AS last
        "#,
        after,
        v7_floor(cutoff + chrono::TimeDelta::minutes(5)),
        cutoff,
        BATCH,
        margin.as_secs_f64(),
    )
    .fetch_one(conn)
    .await?;
    Ok((u64::try_from(row.removed).unwrap_or(0), row.last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v7_floor_sorts_before_every_id_of_its_millisecond_and_after_the_last_one() {
        let time = DateTime::from_timestamp_millis(1_796_000_000_123).unwrap();
        let floor = v7_floor(time);
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, 1_796_000_000, 123_000_000);
        let same = Uuid::new_v7(ts);
        let before = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            1_796_000_000,
            122_000_000,
        ));
        assert!(floor <= same && before < floor, "{before} {floor} {same}");
        assert_eq!(margin(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(
            margin(Duration::from_secs(30 * 86_400)),
            Duration::from_secs(3600)
        );
    }
}
