//! One walk under way: how far its flat listings got, where its walker is,
//! and whether a second descent has confirmed it yet.

use std::collections::BTreeMap;
use std::time::Instant;

use super::segments::Segments;
use super::{DESCENT_WINDOW, WALK_IDLE};

pub(super) struct Walk {
    pub(super) id: u64,
    pub(super) root: String,
    /// The directory whose opening (the first descent) started the walk,
    /// until a second descent confirms it; nobody waits for a walk not
    /// confirmed.
    pub(super) unconfirmed: Option<String>,
    pub(super) segments: Segments,
    /// The greatest directory the walker opened; the listing waits while
    /// the entries it kept beyond it exceed `WALK_AHEAD_ENTRIES`.
    pub(super) walker_at: String,
    /// When the walker last opened a directory under it; for a walk not
    /// confirmed yet (whose walker has not come), when it began.
    pub(super) last_visit: Instant,
    /// Entries kept by this walk in directories beyond the walker.
    pub(super) ahead: BTreeMap<String, usize>,
    pub(super) task: Option<tokio::task::AbortHandle>,
}

impl Walk {
    pub(super) fn covers(&self, prefix: &str) -> bool {
        prefix.starts_with(self.root.as_str())
    }

    pub(super) fn has_passed(&self, prefix: &str) -> bool {
        if prefix == self.root {
            // Its entries are spread over every segment.
            return self.is_done();
        }
        self.segments.has_passed(prefix)
    }

    pub(super) fn is_done(&self) -> bool {
        self.segments.are_done()
    }

    pub(super) fn has_listed_keys(&self) -> bool {
        self.segments.have_found_keys()
    }

    pub(super) fn ahead_entries(&self) -> usize {
        self.ahead.values().sum()
    }

    /// Whether the listing of `segment` may go on, with `allowed` entries
    /// kept ahead of the walker. Past that, only the earliest segment still
    /// listing goes on while its own entries ahead stay within `allowed`:
    /// the walker waits for it next, and it must not wait for the walker
    /// behind later segments' entries (so at most twice `allowed` are held).
    pub(super) fn may_list(&self, segment: usize, allowed: usize) -> bool {
        if self.ahead_entries() <= allowed {
            return true;
        }
        if self.segments.earliest_unfinished() != Some(segment) {
            return false;
        }
        let own: usize = self
            .ahead
            .iter()
            .filter(|(prefix, _)| self.segments.holding(prefix) == segment)
            .map(|(_, entries)| entries)
            .sum();
        own <= allowed
    }

    pub(super) fn is_confirmed(&self) -> bool {
        self.unconfirmed.is_none()
    }

    /// Whether opening `prefix`, a descent or not, confirms this walk: a
    /// second descent under its root, soon after the first.
    pub(super) fn confirmed_by(&self, prefix: &str, is_descent: bool) -> bool {
        self.unconfirmed
            .as_deref()
            .is_some_and(|first| prefix != first && prefix != self.root)
            && is_descent
            && self.last_visit.elapsed() < DESCENT_WINDOW
    }

    /// A confirmed walk that has not finished and whose walker is still
    /// about: another walk must not replace it.
    pub(super) fn is_busy(&self) -> bool {
        self.is_confirmed() && !self.is_done() && self.last_visit.elapsed() <= WALK_IDLE
    }

    pub(super) fn walker_reached(&mut self, prefix: &str) {
        if prefix > self.walker_at.as_str() {
            self.walker_at = prefix.to_owned();
        }
        let beyond = self.ahead.split_off(&format!("{}\u{0}", self.walker_at));
        self.ahead = beyond;
        self.last_visit = Instant::now();
    }
}

impl Drop for Walk {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::segments::halves;
    use super::*;

    /// Past the bound on entries ahead, only the range the walker waits for
    /// next goes on, and only while its own entries stay within the bound.
    #[test]
    fn over_the_bound_only_the_earliest_range_lists_within_its_own_share() {
        let mut walk = Walk {
            id: 1,
            root: "r/".to_owned(),
            unconfirmed: None,
            segments: halves(),
            walker_at: "r/a/".to_owned(),
            last_visit: Instant::now(),
            ahead: [("r/b/".to_owned(), 5), ("r/d/".to_owned(), 30)].into(),
            task: None,
        };
        assert!(walk.may_list(1, 40), "within the bound, every range lists");
        assert!(
            walk.may_list(0, 20),
            "the earliest range holds 5 of its own"
        );
        assert!(!walk.may_list(1, 20), "a later range waits");
        walk.ahead.insert("r/b/x/".to_owned(), 20);
        assert!(
            !walk.may_list(0, 20),
            "the earliest range holds 25 of its own"
        );
    }
}
