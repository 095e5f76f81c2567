//! Waiting for a condition instead of for time: the tests and the benchmark harness poll
//! what they wait for (a row's state, a request's arrival, a port) until a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is checked.
const POLL: Duration = Duration::from_millis(10);

/// A condition that did not hold in time.
#[derive(Debug)]
pub struct TimedOut(String);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TimedOut {}

/// Polls `check` until it holds, for at most `timeout`; the error names `what`.
pub async fn until<F: Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> Result<(), TimedOut> {
    let deadline = Instant::now() + timeout;
    while !check().await {
        if Instant::now() >= deadline {
            return Err(TimedOut(format!("not within {timeout:?}: {what}")));
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}
