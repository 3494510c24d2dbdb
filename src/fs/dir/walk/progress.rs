//! One walk under way: how far its flat listing got, where its walker is,
//! and whether a second descent has confirmed it yet.

use std::collections::BTreeMap;
use std::time::Instant;

use super::{DESCENT_WINDOW, WALK_IDLE};

/// Where one of a walk's flat listings stands.
pub(super) enum WalkProgress {
    /// Every directory whose prefix sorts at or before this key (and does
    /// not contain it) has been kept.
    ListedThrough(String),
    Done,
}

/// A walk's tree, cut into ranges of the root's subdirectories that are
/// listed side by side: a flat listing is one request after another (each
/// page needs the token of the one before), so a single one waits for
/// every round trip in turn, while listings of disjoint ranges do not wait
/// for each other.
///
/// Segment `i` holds the keys after `bounds[i - 1]` (the first: from the
/// root's first key) through `bounds[i]` (the last: to its last key). A
/// bound is a subdirectory's key without its final `/`, so no directory
/// under the root is cut in two: the keys under `d/` all sort after `d`
/// and before any bound that is not under `d/`, and no bound is.
pub(super) struct Segments {
    bounds: Vec<String>,
    progress: Vec<WalkProgress>,
    /// Whether any listing has found a key under the root yet.
    found_keys: bool,
}

impl Segments {
    /// Cuts the tree at up to `count - 1` of `subdirectories` (keys ending
    /// in `/`, in any order), spread evenly over them.
    pub(super) fn new(mut subdirectories: Vec<String>, count: usize) -> Segments {
        subdirectories.sort_unstable();
        subdirectories.dedup();
        let count = count.clamp(1, subdirectories.len().max(1));
        let mut bounds: Vec<String> = (1..count)
            .map(|at| {
                let key = &subdirectories[at * subdirectories.len() / count];
                key.strip_suffix('/').unwrap_or(key).to_owned()
            })
            .collect();
        bounds.dedup();
        let progress = (0..=bounds.len())
            .map(|_| WalkProgress::ListedThrough(String::new()))
            .collect();
        Segments {
            bounds,
            progress,
            found_keys: false,
        }
    }

    pub(super) fn count(&self) -> usize {
        self.progress.len()
    }

    /// Where segment `segment` begins and ends: the key its listing starts
    /// after (none: the root's first key) and the last key it may hold.
    pub(super) fn range(&self, segment: usize) -> (Option<&str>, Option<&str>) {
        let start = segment
            .checked_sub(1)
            .and_then(|before| self.bounds.get(before));
        let end = self.bounds.get(segment);
        (start.map(String::as_str), end.map(String::as_str))
    }

    /// The segment holding the directory `prefix`, a directory strictly
    /// under the root.
    fn holding(&self, prefix: &str) -> usize {
        self.bounds.partition_point(|bound| bound.as_str() < prefix)
    }

    pub(super) fn listed_through(&mut self, segment: usize, key: &str) {
        self.found_keys |= !key.is_empty();
        if let Some(progress) = self.progress.get_mut(segment) {
            *progress = WalkProgress::ListedThrough(key.to_owned());
        }
    }

    pub(super) fn finished(&mut self, segment: usize) {
        if let Some(progress) = self.progress.get_mut(segment) {
            *progress = WalkProgress::Done;
        }
    }

    pub(super) fn have_found_keys(&self) -> bool {
        self.found_keys
    }

    pub(super) fn are_done(&self) -> bool {
        self.progress
            .iter()
            .all(|progress| matches!(progress, WalkProgress::Done))
    }

    /// The first segment still listing: the one the walker will wait for
    /// next.
    fn earliest_unfinished(&self) -> Option<usize> {
        self.progress
            .iter()
            .position(|progress| !matches!(progress, WalkProgress::Done))
    }

    fn has_passed(&self, prefix: &str) -> bool {
        match &self.progress[self.holding(prefix)] {
            WalkProgress::Done => true,
            WalkProgress::ListedThrough(key) => key.as_str() > prefix && !key.starts_with(prefix),
        }
    }
}

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
    use super::*;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| format!("r/{name}/")).collect()
    }

    #[test]
    fn cuts_are_spread_over_the_subdirectories_in_key_order() {
        let names: Vec<String> = (0..8).rev().map(|at| format!("d{at}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let segments = Segments::new(keys(&names), 4);
        assert_eq!(segments.count(), 4);
        assert_eq!(segments.range(0), (None, Some("r/d2")));
        assert_eq!(segments.range(1), (Some("r/d2"), Some("r/d4")));
        assert_eq!(segments.range(3), (Some("r/d6"), None));
    }

    #[test]
    fn fewer_subdirectories_than_listings_make_fewer_ranges() {
        assert_eq!(Segments::new(Vec::new(), 4).count(), 1);
        assert_eq!(Segments::new(keys(&["only"]), 4).count(), 1);
        assert_eq!(Segments::new(keys(&["a", "b"]), 4).count(), 2);
        assert_eq!(Segments::new(keys(&["a", "a", "b"]), 4).count(), 2);
    }

    /// Every key under a subdirectory falls in the range holding that
    /// subdirectory, also beside names that sort between a directory's key
    /// and its keys ("d-x" and "d.x" sort before "d/").
    #[test]
    fn no_range_cuts_a_directory() {
        let names = ["d", "d-x", "d.x", "d0", "e", "e-", "f", "g"];
        let segments = Segments::new(keys(&names), 4);
        assert_eq!(segments.count(), 4);
        for name in names {
            let directory = format!("r/{name}/");
            let segment = segments.holding(&directory);
            let (start, end) = segments.range(segment);
            for key in [
                directory.clone(),
                format!("{directory}!"),
                format!("{directory}z/zz"),
            ] {
                assert!(start.is_none_or(|start| key.as_str() > start), "{key}");
                assert!(end.is_none_or(|end| key.as_str() <= end), "{key}");
            }
        }
    }

    /// Past the bound on entries ahead, only the range the walker waits for
    /// next goes on, and only while its own entries stay within the bound.
    #[test]
    fn over_the_bound_only_the_earliest_range_lists_within_its_own_share() {
        let mut walk = Walk {
            id: 1,
            root: "r/".to_owned(),
            unconfirmed: None,
            segments: Segments::new(keys(&["a", "b", "c", "d"]), 2),
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

    #[test]
    fn a_directory_is_passed_when_its_own_range_has_passed_it() {
        let mut segments = Segments::new(keys(&["a", "b", "c", "d"]), 2);
        assert_eq!(segments.range(0), (None, Some("r/c")));
        assert!(!segments.has_passed("r/a/"));
        segments.listed_through(0, "r/b/x");
        assert!(segments.has_passed("r/a/"));
        assert!(!segments.has_passed("r/b/"));
        // The other range's progress says nothing about this one's.
        segments.finished(1);
        assert!(!segments.has_passed("r/b/"));
        assert!(segments.has_passed("r/d/"));
        assert_eq!(segments.earliest_unfinished(), Some(0));
        segments.finished(0);
        assert!(segments.are_done());
    }
}
