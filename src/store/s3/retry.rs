//! Which failed attempts are worth another, and how long to wait first.
//!
//! Throttling (503 SlowDown, 429 and the throttling codes), server errors
//! (500, 502, 503, 504, InternalError, RequestTimeout), connection failures
//! and stalls are retried; everything else (404, 403, 412, malformed
//! requests) fails at once, since sending it again cannot change the answer.
//! An attempt the endpoint's health refused (not sent: the endpoint looks
//! dead) counts as a transient failure, so a request with attempts to spare
//! outlives a short refusal and one at its last attempt fails at once.
//!
//! Waits grow exponentially with "full jitter" (a uniform draw below the
//! ceiling), which spreads the retries of many requests failing together;
//! see the AWS Architecture Blog, "Exponential Backoff And Jitter".

use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use rand::Rng;

use super::errors::has_source;
use super::transport::EndpointSilent;

/// First ceiling for a transient failure: most resets and 500s pass within
/// a fraction of a second.
const TRANSIENT_BASE: Duration = Duration::from_millis(200);
/// First ceiling when the store asks to slow down: S3 scales its partitions
/// over seconds, so retrying at once only adds load.
const THROTTLED_BASE: Duration = Duration::from_secs(1);
/// The AWS SDKs' standard retry mode caps its back-off at 20 s.
const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// Error codes S3 and compatible stores send when they want fewer requests.
const THROTTLING_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestLimitExceeded",
    "TooManyRequests",
    "TooManyRequestsException",
];

/// Codes of a failure on the store's side that another attempt may not meet.
const TRANSIENT_CODES: &[&str] = &[
    "InternalError",
    "ServiceUnavailable",
    // S3's 400 for a connection on which it stopped waiting for our bytes.
    "RequestTimeout",
];

/// Whether a failed attempt is worth another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    Throttled,
    Transient,
    Never,
}

pub(super) fn classify<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Retry {
    match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code();
            classify_service(status, code)
        }
        SdkError::DispatchFailure(failure) => {
            if failure.is_user() {
                Retry::Never
            } else if is_refused_by_health(err) {
                // Counts as an attempt and backs off: a request with
                // attempts to spare outlives a short refusal, one at its
                // last attempt fails at once.
                Retry::Transient
            } else {
                // Timeouts, stalls, refused and reset connections.
                Retry::Transient
            }
        }
        // The response broke off or stalled while it was read.
        SdkError::ResponseError(_) | SdkError::TimeoutError(_) => Retry::Transient,
        _ => Retry::Never,
    }
}

pub(super) fn classify_service(status: u16, code: Option<&str>) -> Retry {
    if code.is_some_and(|code| THROTTLING_CODES.contains(&code)) || status == 429 {
        Retry::Throttled
    } else if code.is_some_and(|code| TRANSIENT_CODES.contains(&code))
        || matches!(status, 500 | 502 | 503 | 504)
    {
        Retry::Transient
    } else {
        Retry::Never
    }
}

fn is_refused_by_health<E>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::DispatchFailure(failure) => failure
            .as_connector_error()
            .is_some_and(|error| has_source::<EndpointSilent>(error)),
        _ => false,
    }
}

/// The attempts of one request: how many remain and how long to wait before
/// the next.
#[derive(Debug)]
pub(super) struct Attempts {
    max_attempts: u32,
    /// Failures since the last progress.
    failures: u32,
}

impl Attempts {
    pub(super) fn new(max_attempts: u32) -> Attempts {
        Attempts {
            max_attempts: max_attempts.max(1),
            failures: 0,
        }
    }

    /// Counts a failure; the wait before the next attempt, or `None` when the
    /// failure is final.
    pub(super) fn after_failure(&mut self, retry: Retry) -> Option<Duration> {
        self.failures += 1;
        if retry == Retry::Never || self.failures >= self.max_attempts {
            return None;
        }
        Some(jittered(
            backoff_ceiling(retry, self.failures),
            &mut rand::rng(),
        ))
    }

    /// A resumed transfer that moved bytes starts its count again: only
    /// failures in a row without progress end it.
    pub(super) fn progressed(&mut self) {
        self.failures = 0;
    }
}

/// The ceiling of the wait after the `failures`th failure in a row.
pub(super) fn backoff_ceiling(retry: Retry, failures: u32) -> Duration {
    let base = match retry {
        Retry::Throttled => THROTTLED_BASE,
        Retry::Transient | Retry::Never => TRANSIENT_BASE,
    };
    let exponent = failures.saturating_sub(1).min(16);
    base.saturating_mul(1 << exponent).min(MAX_BACKOFF)
}

/// Between half the ceiling and the ceiling ("equal jitter"): spread enough
/// that clients do not retry in step, and never so short that a request's
/// attempts all fall inside one refusal interval of the endpoint's health
/// (`health::PROBE_INTERVAL`, 5 s): the half-ceilings of six failures add
/// up to 6.3 s, so a request with 7 attempts or more outlives a refusal.
fn jittered(ceiling: Duration, rng: &mut impl Rng) -> Duration {
    ceiling.mul_f64(rng.random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn the_ceiling_doubles_up_to_the_cap() {
        let ms = Duration::from_millis;
        let ceilings: Vec<Duration> = (1..=9)
            .map(|n| backoff_ceiling(Retry::Transient, n))
            .collect();
        assert_eq!(
            ceilings,
            [
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(6400),
                ms(12800),
                MAX_BACKOFF,
                MAX_BACKOFF
            ]
        );
        assert_eq!(backoff_ceiling(Retry::Throttled, 1), Duration::from_secs(1));
        assert_eq!(backoff_ceiling(Retry::Throttled, 3), Duration::from_secs(4));
        assert_eq!(backoff_ceiling(Retry::Throttled, 1000), MAX_BACKOFF);
    }

    #[test]
    fn jitter_spreads_waits_between_half_the_ceiling_and_the_ceiling() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let ceiling = Duration::from_secs(1);
        let waits: Vec<Duration> = (0..1000).map(|_| jittered(ceiling, &mut rng)).collect();
        assert!(
            waits
                .iter()
                .all(|wait| *wait <= ceiling && *wait >= ceiling / 2)
        );
        assert!(waits.iter().any(|wait| *wait < ceiling * 11 / 20));
        assert!(waits.iter().any(|wait| *wait > ceiling * 19 / 20));
    }

    #[test]
    fn attempts_end_at_the_limit_or_at_a_final_error() {
        let mut attempts = Attempts::new(3);
        assert!(attempts.after_failure(Retry::Transient).is_some());
        assert!(attempts.after_failure(Retry::Throttled).is_some());
        assert_eq!(attempts.after_failure(Retry::Transient), None);

        let mut attempts = Attempts::new(3);
        assert_eq!(attempts.after_failure(Retry::Never), None);

        // Progress forgives earlier failures.
        let mut attempts = Attempts::new(2);
        assert!(attempts.after_failure(Retry::Transient).is_some());
        attempts.progressed();
        assert!(attempts.after_failure(Retry::Transient).is_some());
        assert_eq!(attempts.after_failure(Retry::Transient), None);

        assert_eq!(Attempts::new(1).after_failure(Retry::Transient), None);
        assert_eq!(Attempts::new(0).after_failure(Retry::Transient), None);
    }

    #[test]
    fn throttling_and_server_errors_are_retried_others_not() {
        assert_eq!(classify_service(503, Some("SlowDown")), Retry::Throttled);
        assert_eq!(classify_service(429, None), Retry::Throttled);
        assert_eq!(
            classify_service(400, Some("RequestLimitExceeded")),
            Retry::Throttled
        );
        for status in [500, 502, 503, 504] {
            assert_eq!(classify_service(status, None), Retry::Transient, "{status}");
        }
        assert_eq!(
            classify_service(400, Some("RequestTimeout")),
            Retry::Transient
        );
        for (status, code) in [
            (404, Some("NoSuchKey")),
            (403, Some("AccessDenied")),
            (412, Some("PreconditionFailed")),
            (400, Some("InvalidArgument")),
            (416, None),
            (501, Some("NotImplemented")),
        ] {
            assert_eq!(
                classify_service(status, code),
                Retry::Never,
                "{status} {code:?}"
            );
        }
    }
}
