//! Whether the endpoint answers, shared by every request of one store.
//!
//! A black-holed endpoint (a host that accepts connections, or drops
//! packets, but never answers) costs each request the whole stall timeout,
//! and one FUSE call makes several requests, each with retries. So once a
//! request got no answer the endpoint is [`Health::Silent`]: the next attempt
//! is sent as a probe, one at a time; requests that come while it is out wait
//! for its outcome, and for [`PROBE_INTERVAL`] after a failed probe requests
//! fail at once instead of waiting too. The first answer (response headers,
//! whatever their status) makes the endpoint [`Health::Answering`] again, so a
//! mount recovers by itself as soon as the endpoint does.
//!
//! A single silent request (say, a pooled connection a NAT dropped) does not
//! fail anything by itself: its retry is the probe, on a fresh connection.
//! Requests that wait on the store's own work (copies, completions) are sent
//! but never serve as the probe, whose outcome must come within the stall
//! timeout.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// After a failed probe, requests fail at once for this long rather than
/// each waiting a stall timeout. Short enough that a returning endpoint is
/// used again within seconds; long enough that one FUSE call's requests after
/// the first failure fail fast.
pub(super) const PROBE_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Health {
    Answering,
    /// No answer since `since`.
    Silent {
        since: Instant,
        probe: Probe,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Probe {
    /// The next ordinary attempt probes.
    Due,
    InFlight,
    /// The last probe got no answer then.
    FailedAt(Instant),
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
    /// Sent as the one probe; its outcome must be reported.
    SendAsProbe,
    /// A probe is out: wait for its outcome, then ask again.
    AwaitProbe,
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
        match (*self, wait) {
            (Health::Answering, _) => Admission::Send,
            (
                Health::Silent {
                    probe: Probe::InFlight,
                    ..
                },
                _,
            ) => Admission::AwaitProbe,
            (
                Health::Silent {
                    since,
                    probe: Probe::FailedAt(failed),
                },
                _,
            ) if now.saturating_duration_since(failed) < PROBE_INTERVAL => Admission::Refuse {
                silent_for: now.saturating_duration_since(since),
            },
            (Health::Silent { .. }, Wait::ServerWork) => Admission::Send,
            (Health::Silent { since, .. }, Wait::Ordinary) => {
                *self = Health::Silent {
                    since,
                    probe: Probe::InFlight,
                };
                Admission::SendAsProbe
            }
        }
    }

    /// The one place where the state changes when an attempt ends.
    pub(super) fn finish(&mut self, outcome: Outcome, was_probe: bool, now: Instant) {
        *self = match (*self, outcome, was_probe) {
            (_, Outcome::Answered, _) => Health::Answering,
            (Health::Answering, Outcome::NoAnswer, _) => Health::Silent {
                since: now,
                probe: Probe::Due,
            },
            (Health::Answering, Outcome::FailedFast | Outcome::Abandoned, _) => Health::Answering,
            (Health::Silent { since, .. }, Outcome::NoAnswer, true) => Health::Silent {
                since,
                probe: Probe::FailedAt(now),
            },
            // A reset or a refusal says something is there, or nothing at
            // all, and costs no wait either way: it proves no black hole, so
            // the next attempt probes again rather than everyone failing.
            // (One stalled request and a reset after it, under a flaky
            // network, must not fail every request for the interval.)
            (Health::Silent { since, .. }, Outcome::FailedFast | Outcome::Abandoned, true) => {
                Health::Silent {
                    since,
                    probe: Probe::Due,
                }
            }
            // Requests sent before the endpoint fell silent end as they may;
            // only the probe decides.
            (silent @ Health::Silent { .. }, _, false) => silent,
        };
    }
}

/// [`Health`] shared by a store's requests, with a wake-up for those that
/// wait on a probe.
#[derive(Debug)]
pub(super) struct EndpointHealth {
    state: Mutex<Health>,
    probe_ended: Notify,
}

impl EndpointHealth {
    pub(super) fn new() -> EndpointHealth {
        EndpointHealth {
            state: Mutex::new(Health::Answering),
            probe_ended: Notify::new(),
        }
    }

    /// Asks until the attempt may be sent, waiting at most `max_wait` for a
    /// probe; `Err` with how long the endpoint has been silent otherwise.
    pub(super) async fn admit(
        &self,
        wait: Wait,
        max_wait: Duration,
    ) -> Result<Ticket<'_>, Duration> {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let notified = self.probe_ended.notified();
            tokio::pin!(notified);
            // Registered before the state is read, so that a probe ending in
            // between still wakes us.
            notified.as_mut().enable();
            let admission = self.lock().admit(wait, Instant::now());
            match admission {
                Admission::Send => return Ok(Ticket::new(self, false)),
                Admission::SendAsProbe => return Ok(Ticket::new(self, true)),
                Admission::Refuse { silent_for } => return Err(silent_for),
                Admission::AwaitProbe => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return Err(self.silent_for());
                    }
                }
            }
        }
    }

    /// How long the endpoint has not answered; zero while it answers.
    fn silent_for(&self) -> Duration {
        match *self.lock() {
            Health::Answering => Duration::ZERO,
            Health::Silent { since, .. } => Instant::now().saturating_duration_since(since),
        }
    }

    /// Reports an outcome outside an attempt's ticket (a response body that
    /// stalls after its headers).
    pub(super) fn report(&self, outcome: Outcome) {
        self.finish(outcome, false);
    }

    fn finish(&self, outcome: Outcome, was_probe: bool) {
        self.lock().finish(outcome, was_probe, Instant::now());
        if was_probe || outcome == Outcome::Answered {
            self.probe_ended.notify_waiters();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        // Each change is a single assignment: a panic cannot leave it half done.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// An admitted attempt. Reporting its outcome consumes it; dropped without
/// one (the caller gave up), it is `Abandoned`, so a probe never stays "in
/// flight" forever.
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
    fn one_silent_request_makes_the_next_attempt_a_probe() {
        let t0 = Instant::now();
        let mut health = Health::Answering;
        assert_eq!(health.admit(Wait::Ordinary, t0), Admission::Send);
        health.finish(Outcome::NoAnswer, false, t0 + 10 * SECOND);
        let silent_at = t0 + 10 * SECOND;
        assert_eq!(
            health,
            Health::Silent {
                since: silent_at,
                probe: Probe::Due
            }
        );
        assert_eq!(
            health.admit(Wait::Ordinary, silent_at),
            Admission::SendAsProbe
        );
        // Others wait for the probe, copies included.
        assert_eq!(
            health.admit(Wait::Ordinary, silent_at),
            Admission::AwaitProbe
        );
        assert_eq!(
            health.admit(Wait::ServerWork, silent_at),
            Admission::AwaitProbe
        );
        // The probe is answered: everything is sent again.
        health.finish(Outcome::Answered, true, silent_at + SECOND);
        assert_eq!(health, Health::Answering);
        assert_eq!(health.admit(Wait::Ordinary, silent_at), Admission::Send);
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
        // After the interval, one request probes again; a copy is sent but
        // does not probe.
        let later = failed + PROBE_INTERVAL;
        assert_eq!(health.admit(Wait::ServerWork, later), Admission::Send);
        assert_eq!(health.admit(Wait::Ordinary, later), Admission::SendAsProbe);
        assert_eq!(health.admit(Wait::Ordinary, later), Admission::AwaitProbe);
        // A refused or reset connection is no black hole: the next one probes.
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
    fn an_abandoned_probe_lets_the_next_request_probe() {
        let t0 = Instant::now();
        let mut health = Health::Answering;
        health.finish(Outcome::NoAnswer, false, t0);
        assert_eq!(health.admit(Wait::Ordinary, t0), Admission::SendAsProbe);
        health.finish(Outcome::Abandoned, true, t0 + SECOND);
        assert_eq!(
            health.admit(Wait::Ordinary, t0 + SECOND),
            Admission::SendAsProbe
        );
    }

    #[test]
    fn fast_failures_while_answering_change_nothing() {
        let t0 = Instant::now();
        let mut health = Health::Answering;
        health.finish(Outcome::FailedFast, false, t0);
        health.finish(Outcome::Abandoned, false, t0);
        assert_eq!(health, Health::Answering);
        // Requests sent before the silence do not decide it.
        health.finish(Outcome::NoAnswer, false, t0);
        health.admit(Wait::Ordinary, t0);
        health.finish(Outcome::NoAnswer, false, t0 + SECOND);
        assert_eq!(
            health,
            Health::Silent {
                since: t0,
                probe: Probe::InFlight
            }
        );
    }

    #[tokio::test]
    async fn waiters_wake_when_the_probe_ends_and_give_up_at_their_bound() {
        let millis = Duration::from_millis;
        let health = std::sync::Arc::new(EndpointHealth::new());
        health.report(Outcome::NoAnswer);
        let probe = health.admit(Wait::Ordinary, SECOND).await.unwrap();
        assert!(probe.is_probe);
        // Nobody ends the probe: the waiter gives up after its bound.
        let started = tokio::time::Instant::now();
        assert!(health.admit(Wait::Ordinary, millis(200)).await.is_err());
        assert!(started.elapsed() >= millis(200));
        // The probe is answered while another waits: it is sent.
        let waiter = {
            let health = std::sync::Arc::clone(&health);
            tokio::spawn(async move {
                health
                    .admit(Wait::Ordinary, 10 * SECOND)
                    .await
                    .map(|ticket| ticket.is_probe)
            })
        };
        tokio::time::sleep(millis(100)).await;
        let started = tokio::time::Instant::now();
        probe.finish(Outcome::Answered);
        assert_eq!(waiter.await.unwrap(), Ok(false));
        assert!(started.elapsed() < 5 * SECOND);
    }
}
