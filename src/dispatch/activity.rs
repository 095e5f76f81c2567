//! What each subscription was last sent and how it last answered, gathered by the recorder
//! from the attempts it records and written about once a second (one statement however many
//! attempts: see `store::activity`), so that reading a subscription's last trigger and last
//! response costs the delivery path one small write a second, not one per attempt. The same
//! write carries each subscription's run of failures (auto-disable, `store::health`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::domain::{AttemptRecord, WebhookId};
use crate::store::activity::{Health, HourTally, LastResponse, Noted};

/// The activity noted since the last write.
#[derive(Debug, Default)]
pub struct ActivityBuffer {
    triggers: HashMap<(WebhookId, &'static str), DateTime<Utc>>,
    responses: HashMap<WebhookId, (DateTime<Utc>, LastResponse, Health)>,
    hours: HashMap<(WebhookId, DateTime<Utc>), HourTally>,
}

impl ActivityBuffer {
    /// Notes an attempt of a delivery of `webhook` of an event of type `event_type`
    /// published at `published`, and what it came to (`succeeded`: delivered).
    pub fn note(
        &mut self,
        webhook: WebhookId,
        event_type: &'static str,
        published: DateTime<Utc>,
        record: &AttemptRecord,
        succeeded: bool,
    ) {
        let trigger = self
            .triggers
            .entry((webhook, event_type))
            .or_insert(published);
        *trigger = (*trigger).max(published);
        let response = LastResponse {
            time: record.start_time,
            code: record.http_status,
            message: message(record),
        };
        let time = response.time;
        let newest = self.responses.entry(webhook).or_insert((
            published,
            response.clone(),
            Health::default(),
        ));
        newest.0 = newest.0.max(published);
        if time >= newest.1.time {
            newest.1 = response;
        }
        newest.2.note(time, succeeded);
        self.hours
            .entry((webhook, hour_of(time)))
            .or_default()
            .note(record.duration_ms, succeeded);
    }

    /// Whether nothing was noted.
    pub fn is_empty(&self) -> bool {
        self.triggers.is_empty()
    }

    /// The rows to write, the buffer emptied.
    pub fn take(&mut self) -> Vec<Noted> {
        let mut rows: Vec<Noted> = self
            .triggers
            .drain()
            .map(|((webhook, event_type), trigger_time)| Noted {
                webhook,
                event_type,
                trigger_time,
                response: None,
            })
            .collect();
        rows.extend(
            self.responses
                .drain()
                .map(|(webhook, (trigger_time, response, health))| Noted {
                    webhook,
                    event_type: "",
                    trigger_time,
                    response: Some((response, health)),
                }),
        );
        rows
    }

    /// The hours to add to (subscription, start of the hour, tally), the buffer's emptied.
    pub fn take_hours(&mut self) -> Vec<(WebhookId, DateTime<Utc>, HourTally)> {
        self.hours
            .drain()
            .map(|((webhook, hour), tally)| (webhook, hour, tally))
            .collect()
    }
}

/// The start of the (UTC) hour `time` falls in.
fn hour_of(time: DateTime<Utc>) -> DateTime<Utc> {
    let seconds = time.timestamp();
    DateTime::from_timestamp(seconds - seconds.rem_euclid(3600), 0).unwrap_or(time)
}

/// The message of an attempt's answer: its status's reason, or why there was none.
fn message(record: &AttemptRecord) -> String {
    match (record.http_status, &record.error) {
        (Some(code), _) => http::StatusCode::from_u16(u16::try_from(code).unwrap_or(0))
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
            .to_owned(),
        (None, Some(error)) => error.clone(),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(start: i64, status: Option<i32>) -> AttemptRecord {
        AttemptRecord {
            start_time: DateTime::from_timestamp(start, 0).unwrap(),
            http_status: status,
            error: status.is_none().then(|| "timed out".to_owned()),
            ..AttemptRecord::default()
        }
    }

    #[test]
    fn the_newest_trigger_and_answer_win() {
        let mut buffer = ActivityBuffer::default();
        let webhook = WebhookId(uuid::Uuid::new_v4());
        let at = |s| DateTime::from_timestamp(s, 0).unwrap();
        buffer.note(
            webhook,
            "artifact.pushed",
            at(20),
            &record(30, Some(503)),
            false,
        );
        buffer.note(
            webhook,
            "artifact.pushed",
            at(10),
            &record(40, Some(200)),
            true,
        );
        buffer.note(webhook, "tag.created", at(5), &record(35, None), false);
        let mut rows = buffer.take();
        rows.sort_by_key(|n| n.event_type);
        assert!(buffer.is_empty());
        let kinds: Vec<_> = rows
            .iter()
            .map(|n| (n.event_type, n.trigger_time))
            .collect();
        assert_eq!(
            kinds,
            [
                ("", at(20)),
                ("artifact.pushed", at(20)),
                ("tag.created", at(5))
            ]
        );
        let (answer, health) = rows[0].response.clone().unwrap();
        assert_eq!((answer.time, answer.code), (at(40), Some(200)));
        assert_eq!(answer.message, "OK");
        // The failure at 35 came before the success at 40: no run of failures is left.
        assert_eq!(health.last_success, Some(at(40)));
        assert_eq!((health.failures, health.first_failure), (0, None));
    }

    #[test]
    fn hours_count_attempts_successes_and_durations() {
        let mut buffer = ActivityBuffer::default();
        let webhook = WebhookId(uuid::Uuid::new_v4());
        let at = |s| DateTime::from_timestamp(s, 0).unwrap();
        let timed = |start, status, ms| AttemptRecord {
            duration_ms: ms,
            ..record(start, status)
        };
        buffer.note(webhook, "push", at(0), &timed(7200, Some(200), 30), true);
        buffer.note(webhook, "push", at(0), &timed(10_799, None, 90), false);
        buffer.note(webhook, "push", at(0), &timed(10_800, Some(200), 10), true);
        let mut hours = buffer.take_hours();
        hours.sort_by_key(|h| h.1);
        assert_eq!(
            hours,
            [
                (
                    webhook,
                    at(7200),
                    HourTally {
                        attempts: 2,
                        successes: 1,
                        duration_ms_sum: 120,
                        duration_ms_max: 90
                    }
                ),
                (
                    webhook,
                    at(10_800),
                    HourTally {
                        attempts: 1,
                        successes: 1,
                        duration_ms_sum: 10,
                        duration_ms_max: 10
                    }
                ),
            ]
        );
        assert!(buffer.take_hours().is_empty());
    }

    #[test]
    fn a_success_ends_the_run_of_failures_and_later_failures_start_another() {
        let at = |s| DateTime::from_timestamp(s, 0).unwrap();
        let mut health = Health::default();
        health.note(at(10), false);
        health.note(at(12), false);
        assert_eq!((health.failures, health.first_failure), (2, Some(at(10))));
        health.note(at(20), true);
        health.note(at(15), false);
        assert_eq!((health.failures, health.first_failure), (0, None));
        health.note(at(30), false);
        assert_eq!(
            (health.failures, health.first_failure, health.last_failure),
            (1, Some(at(30)), Some(at(30)))
        );
    }
}
