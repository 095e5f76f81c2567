//! The retry policy: pure functions from an attempt's outcome to what happens next.

use std::time::Duration;

use rand::Rng as _;

use crate::domain::Verdict;

/// The default delays before each retry; the first attempt is immediate, so a delivery is
/// attempted up to 11 times over about 31 hours.
pub const DEFAULT_SCHEDULE: &str = "5s,30s,2m,10m,30m,1h,2h,4h,8h,16h";
/// Each delay is stretched or shrunk by up to this fraction, so that retries of many
/// deliveries that failed together do not arrive together.
const JITTER: f64 = 0.2;
/// A listener's `Retry-After` can lengthen a delay up to this, never shorten it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How an attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A 2xx answer.
    Success,
    /// 410 Gone: the listener wants no more deliveries.
    Gone,
    /// Anything else: a network error, a timeout, 408, 429, 5xx, any other status.
    Failure {
        /// The listener's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
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

    /// The number of retries after the first attempt.
    pub fn retries(&self) -> usize {
        self.0.len()
    }

    /// What follows attempt number `attempt` (1-based) ending in `outcome`.
    pub fn verdict(&self, attempt: i32, outcome: &Outcome) -> Verdict {
        match outcome {
            Outcome::Success => Verdict::Delivered,
            Outcome::Gone => Verdict::FailedAndDisable("the listener answered 410 Gone".into()),
            Outcome::Failure { retry_after } => {
                let index = usize::try_from(attempt)
                    .unwrap_or(usize::MAX)
                    .saturating_sub(1);
                match self.0.get(index) {
                    None => Verdict::Failed,
                    Some(base) => {
                        let jittered = base.as_secs_f64()
                            * rand::rng().random_range(1.0 - JITTER..=1.0 + JITTER);
                        let hinted =
                            retry_after.map_or(0.0, |r| r.min(MAX_RETRY_AFTER).as_secs_f64());
                        Verdict::RetryIn(jittered.max(hinted))
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

    fn failure(retry_after: Option<u64>) -> Outcome {
        Outcome::Failure {
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn follows_the_schedule_with_jitter_then_gives_up() {
        let schedule = RetrySchedule::parse(DEFAULT_SCHEDULE).expect("default parses");
        assert_eq!(schedule.retries(), 10);
        for (attempt, base) in [(1, 5.0), (2, 30.0), (3, 120.0), (10, 16.0 * 3600.0)] {
            let Verdict::RetryIn(secs) = schedule.verdict(attempt, &failure(None)) else {
                panic!("retry")
            };
            assert!(
                (base * 0.8..=base * 1.2).contains(&secs),
                "{attempt}: {secs}"
            );
        }
        assert_eq!(schedule.verdict(11, &failure(None)), Verdict::Failed);
        assert_eq!(schedule.verdict(1, &Outcome::Success), Verdict::Delivered);
        assert!(matches!(
            schedule.verdict(1, &Outcome::Gone),
            Verdict::FailedAndDisable(_)
        ));
    }

    #[test]
    fn retry_after_lengthens_within_bounds_but_never_shortens() {
        let schedule = RetrySchedule::parse("10s,10s").expect("parses");
        let Verdict::RetryIn(secs) = schedule.verdict(1, &failure(Some(120))) else {
            panic!("retry")
        };
        assert_eq!(secs, 120.0);
        let Verdict::RetryIn(secs) = schedule.verdict(1, &failure(Some(1))) else {
            panic!("retry")
        };
        assert!(secs >= 8.0);
        let Verdict::RetryIn(secs) = schedule.verdict(1, &failure(Some(86_400))) else {
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
