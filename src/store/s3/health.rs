//! Whether the endpoint answers, shared by every request of one store.
//!
//! A black-holed endpoint (a host that accepts connections, or drops
//! packets, but never answers) costs each request the whole stall timeout,
//! and one FUSE call makes several requests, each with retries. So once a
//! request got no answer the endpoint is [`Health::Silent`], and every
//! attempt sent from then on probes it. If a probe gets no answer either,
//! with nothing answered in between, the endpoint is
//! [`Health::Refusing`]: for [`PROBE_INTERVAL`] requests fail at once instead
//! of each waiting a stall timeout. The first answer (response headers,
//! whatever their status) makes the endpoint [`Health::Answering`] again, so a
//! mount recovers by itself as soon as the endpoint does.
//!
//! Every attempt probes, rather than one at a time, because on a live but
//! flaky network the answers of the others are the evidence: one stalled
//! request is no black hole while the requests beside it are answered. A
//! single probe would decide for all of them on its own luck; with 5 % of
//! requests stalling, one silence in twenty would then fail every request
//! for the interval. On a dead endpoint the probes all wait their stall
//! timeout side by side, which costs no more time than waiting for one.
//!
//! A single silent request (say, a pooled connection a NAT dropped) does not
//! fail anything by itself: its retry probes, on a fresh connection.
//! Requests that wait on the store's own work (copies, completions) are sent
//! but never probe, since their answer may take longer than a stall timeout.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// After a failed probe, requests fail at once for this long rather than
/// each waiting a stall timeout. Short enough that a returning endpoint is
/// used again within seconds; long enough that one FUSE call's requests after
/// the first failure fail fast.
pub(super) const PROBE_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Health {
    Answering,
    /// An attempt got no answer at `since` and nothing has answered since.
    Silent {
        since: Instant,
    },
    /// A probe, too, got no answer, at `failed`.
    Refusing {
        since: Instant,
        failed: Instant,
    },
}

/// What a request may wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// Its answer is due within the stall timeout.
    Ordinary,
    /// The store works before it answers (copies, completions).
    ServerWork,
}

/// What an attempt may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    Send,
    /// Sent while the endpoint is silent: its outcome is evidence.
    SendAsProbe,
    /// A probe failed recently: fail without sending.
    Refuse {
        silent_for: Duration,
    },
}

/// How an attempt ended, as far as the endpoint's health goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Response headers arrived, whatever their status.
    Answered,
    /// It timed out waiting for a byte (connect, send, headers or body).
    NoAnswer,
    /// It failed without waiting (refused, reset): says nothing of a black
    /// hole, but a probe that fails so has not found the endpoint back.
    FailedFast,
    /// The caller dropped it before any outcome.
    Abandoned,
}

impl Health {
    /// The one place where the state changes when an attempt starts.
    pub(super) fn admit(&mut self, wait: Wait, now: Instant) -> Admission {
        if let Health::Refusing { since, failed } = *self {
            if now.saturating_duration_since(failed) < PROBE_INTERVAL {
                return Admission::Refuse {
                    silent_for: now.saturating_duration_since(since),
                };
            }
            *self = Health::Silent { since };
        }
        match (*self, wait) {
            (Health::Answering, _) | (Health::Silent { .. }, Wait::ServerWork) => Admission::Send,
            (Health::Silent { .. }, Wait::Ordinary) => Admission::SendAsProbe,
            (Health::Refusing { .. }, _) => unreachable!("left above"),
        }
    }

    /// The one place where the state changes when an attempt ends.
    pub(super) fn finish(&mut self, outcome: Outcome, was_probe: bool, now: Instant) {
        *self = match (*self, outcome, was_probe) {
            (_, Outcome::Answered, _) => Health::Answering,
            (Health::Answering, Outcome::NoAnswer, _) => Health::Silent { since: now },
            (Health::Answering, Outcome::FailedFast | Outcome::Abandoned, _) => Health::Answering,
            // Nothing answered since the silence began, and an attempt sent
            // after it began got no answer either. A later one extends the
            // refusal: it is the freshest evidence.
            (
                Health::Silent { since } | Health::Refusing { since, .. },
                Outcome::NoAnswer,
                true,
            ) => Health::Refusing { since, failed: now },
            // A reset or a refusal says something is there, or nothing at
            // all, and costs no wait either way: it proves no black hole.
            // Requests sent before the endpoint fell silent end as they may:
            // they say nothing new.
            (state @ (Health::Silent { .. } | Health::Refusing { .. }), _, _) => state,
        };
    }
}

/// [`Health`] shared by a store's requests.
#[derive(Debug)]
pub(super) struct EndpointHealth {
    state: Mutex<Health>,
}

impl EndpointHealth {
    pub(super) fn new() -> EndpointHealth {
        EndpointHealth {
            state: Mutex::new(Health::Answering),
        }
    }

    /// A ticket for an attempt that may be sent; `Err` with how long the
    /// endpoint has been silent when it is refused.
    pub(super) fn admit(&self, wait: Wait) -> Result<Ticket<'_>, Duration> {
        match self.lock().admit(wait, Instant::now()) {
            Admission::Send => Ok(Ticket::new(self, false)),
            Admission::SendAsProbe => Ok(Ticket::new(self, true)),
            Admission::Refuse { silent_for } => Err(silent_for),
        }
    }

    /// Reports an outcome outside an attempt's ticket (a response body that
    /// stalls after its headers).
    pub(super) fn report(&self, outcome: Outcome) {
        self.finish(outcome, false);
    }

    fn finish(&self, outcome: Outcome, was_probe: bool) {
        let (before, after) = {
            let mut state = self.lock();
            let before = *state;
            state.finish(outcome, was_probe, Instant::now());
            (before, *state)
        };
        log_change(before, after);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        // Each change is a single assignment: a panic cannot leave it half done.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Says when the endpoint falls silent, when requests start failing fast,
/// and when it answers again: the moments a user needs to match failed
/// calls against.
fn log_change(before: Health, after: Health) {
    match (before, after) {
        (Health::Answering, Health::Silent { .. }) => {
            log::info!("the endpoint left a request unanswered; the next attempts probe it");
        }
        (Health::Silent { .. }, Health::Refusing { since, .. }) => log::warn!(
            "the endpoint has not answered for {:.1?}; failing requests at once for {PROBE_INTERVAL:?}",
            since.elapsed()
        ),
        (Health::Silent { since } | Health::Refusing { since, .. }, Health::Answering) => {
            log::info!("the endpoint answers again after {:.1?}", since.elapsed());
        }
        _ => {}
    }
}

/// An admitted attempt. Reporting its outcome consumes it; dropped without
/// one (the caller gave up), it is `Abandoned`.
#[derive(Debug)]
pub(super) struct Ticket<'a> {
    health: &'a EndpointHealth,
    is_probe: bool,
    reported: bool,
}

impl<'a> Ticket<'a> {
    fn new(health: &'a EndpointHealth, is_probe: bool) -> Ticket<'a> {
        Ticket {
            health,
            is_probe,
            reported: false,
        }
    }

    pub(super) fn finish(mut self, outcome: Outcome) {
        self.reported = true;
        self.health.finish(outcome, self.is_probe);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.health.finish(Outcome::Abandoned, self.is_probe);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn one_silent_request_makes_every_next_attempt_a_probe() {
        let t0 = Instant::now();
        let mut health = Health::Answering;
        assert_eq!(health.admit(Wait::Ordinary, t0), Admission::Send);
        let silent_at = t0 + 10 * SECOND;
        health.finish(Outcome::NoAnswer, false, silent_at);
        assert_eq!(health, Health::Silent { since: silent_at });
        for _ in 0..3 {
            assert_eq!(
                health.admit(Wait::Ordinary, silent_at),
                Admission::SendAsProbe
            );
        }
        // A copy is sent, but its slow answer would prove nothing.
        assert_eq!(health.admit(Wait::ServerWork, silent_at), Admission::Send);
        // A probe is answered: the endpoint is back.
        health.finish(Outcome::Answered, true, silent_at + SECOND);
        assert_eq!(health, Health::Answering);
        assert_eq!(health.admit(Wait::Ordinary, silent_at), Admission::Send);
    }

    /// Two probes out, as on a flaky network: the one answered first wins,
    /// and the other's silence after it is a new silence, not a refusal.
    #[test]
    fn an_answer_beside_a_silent_probe_keeps_requests_flowing() {
        let t0 = Instant::now();
        let mut health = Health::Answering;
        health.finish(Outcome::NoAnswer, false, t0);
        assert_eq!(health.admit(Wait::Ordinary, t0), Admission::SendAsProbe);
        assert_eq!(health.admit(Wait::Ordinary, t0), Admission::SendAsProbe);
        health.finish(Outcome::Answered, true, t0 + SECOND / 10);
        health.finish(Outcome::NoAnswer, true, t0 + 10 * SECOND);
        assert_eq!(
            health,
            Health::Silent {
                since: t0 + 10 * SECOND
            }
        );
        assert_eq!(
            health.admit(Wait::Ordinary, t0 + 10 * SECOND),
            Admission::SendAsProbe
        );
    }

    #[test]
    fn a_failed_probe_refuses_requests_until_the_interval_passes() {
        let t0 = Instant::now();
        let mut health = Health::Answering;
        health.finish(Outcome::NoAnswer, false, t0);
        assert_eq!(health.admit(Wait::Ordinary, t0), Admission::SendAsProbe);
        let failed = t0 + 10 * SECOND;
        health.finish(Outcome::NoAnswer, true, failed);
        assert_eq!(
            health.admit(Wait::Ordinary, failed + SECOND),
            Admission::Refuse {
                silent_for: 11 * SECOND
            }
        );
        assert!(matches!(
            health.admit(Wait::ServerWork, failed + SECOND),
            Admission::Refuse { .. }
        ));
        // After the interval, requests probe again; a copy is sent but does
        // not probe.
        let later = failed + PROBE_INTERVAL;
        assert_eq!(health.admit(Wait::ServerWork, later), Admission::Send);
        assert_eq!(health.admit(Wait::Ordinary, later), Admission::SendAsProbe);
        assert_eq!(health, Health::Silent { since: t0 });
        // A refused or reset connection is no black hole: still probing.
        health.finish(Outcome::FailedFast, true, later + SECOND);
        assert_eq!(
            health.admit(Wait::Ordinary, later + 2 * SECOND),
            Admission::SendAsProbe
        );
        // Any answer, even to a request sent long ago, ends the silence.
        health.finish(Outcome::Answered, false, later + 3 * SECOND);
        assert_eq!(health, Health::Answering);
    }

    #[test]
    fn an_abandoned_probe_proves_nothing() {
        let t0 = Instant::now();
        let mut health = Health::Answering;
        health.finish(Outcome::NoAnswer, false, t0);
        assert_eq!(health.admit(Wait::Ordinary, t0), Admission::SendAsProbe);
        health.finish(Outcome::Abandoned, true, t0 + SECOND);
        assert_eq!(health, Health::Silent { since: t0 });
    }

    #[test]
    fn requests_sent_before_the_silence_do_not_decide_it() {
        let t0 = Instant::now();
        let mut health = Health::Answering;
        health.finish(Outcome::FailedFast, false, t0);
        health.finish(Outcome::Abandoned, false, t0);
        assert_eq!(health, Health::Answering);
        health.finish(Outcome::NoAnswer, false, t0);
        health.finish(Outcome::NoAnswer, false, t0 + SECOND);
        assert_eq!(health, Health::Silent { since: t0 });
    }

    #[test]
    fn tickets_report_their_outcome_and_dropped_ones_are_abandoned() {
        let health = EndpointHealth::new();
        health.report(Outcome::NoAnswer);
        let probe = health.admit(Wait::Ordinary).unwrap();
        assert!(probe.is_probe);
        drop(probe);
        assert!(matches!(*health.lock(), Health::Silent { .. }));
        let probe = health.admit(Wait::Ordinary).unwrap();
        probe.finish(Outcome::NoAnswer);
        assert!(health.admit(Wait::Ordinary).is_err());
        assert!(health.admit(Wait::ServerWork).is_err());
    }
}
