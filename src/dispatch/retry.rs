//! The retry policy: a pure function from how an attempt ended (its HTTP status, if an
//! answer arrived, and the listener's `Retry-After`) to what happens to the delivery.

use std::time::Duration;

use rand::Rng as _;

use crate::domain::{FileRetries, FileWebhook};
use crate::store::queue::Outcome;

/// The default delays before each retry; the first attempt is immediate, so a delivery is
/// attempted up to 11 times over about 31 hours.
pub const DEFAULT_SCHEDULE: &str = "5s,30s,2m,10m,30m,1h,2h,4h,8h,16h";
/// Each delay is stretched or shrunk by up to this fraction, so that retries of many
/// deliveries that failed together do not arrive together.
const JITTER: f64 = 0.2;
/// A listener's `Retry-After` can lengthen a delay up to this, never shorten it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What follows attempt number `attempt` (1-based) of a configuration file webhook, Angos's
/// way: a 2xx is delivered; anything else (410 included, and whatever the listener's
/// `Retry-After`) is retried after [`FileWebhook::retry_delay`] while `max_retries` last.
pub fn file_outcome(file: FileRetries, attempt: i32, status: Option<i32>) -> Outcome {
    let attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
    match status {
        Some(200..=299) => Outcome::Delivered,
        _ if attempt <= file.max_retries => {
            Outcome::RetryIn(FileWebhook::retry_delay(attempt).as_secs_f64())
        }
        _ => Outcome::Failed,
    }
}

/// The delays before each retry (`--retry-schedule`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

impl RetrySchedule {
    /// Parses a comma-separated list of durations, e.g. `5s,30s,2m`. An empty string means
    /// no retries.
    ///
    /// # Errors
    /// Names the entry that is not a duration.
    pub fn parse(text: &str) -> Result<Self, String> {
        let delays = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(delays))
    }

    /// The longest a delivery can take to run through the schedule: every delay at its
    /// longest jitter (a listener's `Retry-After` aside).
    pub fn longest(&self) -> Duration {
        self.0.iter().map(|d| d.mul_f64(1.0 + JITTER)).sum()
    }

    /// The number of retries after the first attempt.
    pub fn retries(&self) -> usize {
        self.0.len()
    }

    /// What follows attempt number `attempt` of the schedule (1-based) that got `status`
    /// (`None`: no answer, a network error or a timeout) and `retry_after`. 2xx is
    /// delivered; 410 Gone fails the delivery and disables the webhook; anything else is
    /// retried while the schedule lasts.
    pub fn outcome(
        &self,
        attempt: i32,
        status: Option<i32>,
        retry_after: Option<Duration>,
    ) -> Outcome {
        match status {
            Some(200..=299) => Outcome::Delivered,
            Some(410) => Outcome::FailedAndDisable("the listener answered 410 Gone".into()),
            _ => {
                let index = usize::try_from(attempt)
                    .unwrap_or(usize::MAX)
                    .saturating_sub(1);
                match self.0.get(index) {
                    None => Outcome::Failed,
                    Some(base) => {
                        let jittered = base.as_secs_f64()
                            * rand::rng().random_range(1.0 - JITTER..=1.0 + JITTER);
                        let hinted =
                            retry_after.map_or(0.0, |r| r.min(MAX_RETRY_AFTER).as_secs_f64());
                        Outcome::RetryIn(jittered.max(hinted))
                    }
                }
            }
        }
    }
}

impl std::str::FromStr for RetrySchedule {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 503 with this `Retry-After`, in seconds.
    fn failure(schedule: &RetrySchedule, attempt: i32, retry_after: Option<u64>) -> Outcome {
        schedule.outcome(attempt, Some(503), retry_after.map(Duration::from_secs))
    }

    #[test]
    fn follows_the_schedule_with_jitter_then_gives_up() {
        let schedule = RetrySchedule::parse(DEFAULT_SCHEDULE).expect("default parses");
        assert_eq!(schedule.retries(), 10);
        for (attempt, base) in [(1, 5.0), (2, 30.0), (3, 120.0), (10, 16.0 * 3600.0)] {
            let Outcome::RetryIn(secs) = failure(&schedule, attempt, None) else {
                panic!("retry")
            };
            assert!(
                (base * 0.8..=base * 1.2).contains(&secs),
                "{attempt}: {secs}"
            );
        }
        assert_eq!(failure(&schedule, 11, None), Outcome::Failed);
        assert!(matches!(
            schedule.outcome(1, None, None),
            Outcome::RetryIn(_)
        ));
        assert_eq!(schedule.outcome(1, Some(204), None), Outcome::Delivered);
        assert!(matches!(
            schedule.outcome(1, Some(410), None),
            Outcome::FailedAndDisable(_)
        ));
        for status in [302, 404, 408, 429, 500] {
            assert!(matches!(
                schedule.outcome(1, Some(status), None),
                Outcome::RetryIn(_)
            ));
        }
    }

    #[test]
    fn retry_after_lengthens_within_bounds_but_never_shortens() {
        let schedule = RetrySchedule::parse("10s,10s").expect("parses");
        let Outcome::RetryIn(secs) = failure(&schedule, 1, Some(120)) else {
            panic!("retry")
        };
        assert_eq!(secs, 120.0);
        let Outcome::RetryIn(secs) = failure(&schedule, 1, Some(1)) else {
            panic!("retry")
        };
        assert!(secs >= 8.0);
        let Outcome::RetryIn(secs) = failure(&schedule, 1, Some(86_400)) else {
            panic!("retry")
        };
        assert_eq!(secs, 3600.0);
    }

    #[test]
    fn parses_lists_and_names_bad_entries() {
        assert_eq!(RetrySchedule::parse("").expect("empty").retries(), 0);
        assert_eq!(
            RetrySchedule::parse("100ms, 1s").expect("list").retries(),
            2
        );
        assert!(
            RetrySchedule::parse("5s,soon")
                .unwrap_err()
                .contains("\"soon\"")
        );
    }
}
