//! A listener's `Retry-After` header, in either form, through the retry policy that uses it:
//! no panic, no overflow, and never a wait past the one-hour cap (plus the schedule's own).
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhookd::dispatch::attempt::parse_retry_after;
use webhookd::dispatch::retry::{MAX_RETRY_AFTER, RetrySchedule};
use webhookd::store::queue::Outcome;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let hint = parse_retry_after(text);
    let schedule = RetrySchedule::parse("1s,2s").expect("a schedule");
    for status in [None, Some(429), Some(503)] {
        if let Outcome::RetryIn(secs) = schedule.outcome(1, status, hint) {
            assert!(secs.is_finite() && secs >= 0.0);
            assert!(secs <= MAX_RETRY_AFTER.as_secs_f64() + 2.0, "{secs}");
        }
    }
    let _ = RetrySchedule::parse(text);
});
