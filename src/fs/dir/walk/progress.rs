//! One walk under way: how far its flat listing got, where its walker is,
//! and whether a second descent has confirmed it yet.

use std::collections::BTreeMap;
use std::time::Instant;

use super::{DESCENT_WINDOW, WALK_IDLE};

/// Where the flat listing of a walk stands.
pub(super) enum WalkProgress {
    /// Every directory whose prefix sorts at or before this key (and does
    /// not contain it) has been kept.
    ListedThrough(String),
    Done,
}

pub(super) struct Walk {
    pub(super) id: u64,
    pub(super) root: String,
    /// The directory whose opening (the first descent) started the walk,
    /// until a second descent confirms it; nobody waits for a walk not
    /// confirmed.
    pub(super) unconfirmed: Option<String>,
    pub(super) progress: WalkProgress,
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
        match &self.progress {
            WalkProgress::Done => true,
            WalkProgress::ListedThrough(key) => key.as_str() > prefix && !key.starts_with(prefix),
        }
    }

    pub(super) fn ahead_entries(&self) -> usize {
        self.ahead.values().sum()
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
        self.is_confirmed()
            && !matches!(self.progress, WalkProgress::Done)
            && self.last_visit.elapsed() <= WALK_IDLE
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
