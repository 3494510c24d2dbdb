//! The side of [`Walks`] that a walk's listings talk to: claiming the next
//! range, waiting for room ahead of the walker, and telling how far they
//! got.

use super::progress::Walk;
use super::{DESCENT_WINDOW, Go, SegmentRange, WALK_AHEAD_ENTRIES, WALK_IDLE, Walks};
use crate::fs::Stat;
use crate::fs::dir::Resolved;

impl Walks {
    /// The walk `id` listed a directory whole.
    pub(super) fn walk_kept(
        &self,
        id: u64,
        prefix: &str,
        entries: Vec<Resolved>,
        epoch: u64,
        own: Option<Stat>,
    ) {
        let mut state = self.lock();
        let count = entries.len();
        let is_ahead = match state.walk_numbered(id) {
            Some(walk) => prefix > walk.walker_at.as_str(),
            None => return,
        };
        self.keep_locked(&mut state, prefix, entries, epoch, own, Some(id));
        if is_ahead && let Some(walk) = state.walk.as_mut() {
            walk.ahead.insert(prefix.to_owned(), count);
        }
        drop(state);
        self.progressed.notify_waiters();
    }

    /// How many listings a walk runs side by side.
    pub(super) fn listings(&self) -> usize {
        self.lock().listings
    }

    /// The next range of walk `id` for a listing that is free, once the
    /// walk may list it (see `room_to_walk`); `None` when every range is
    /// claimed or the walk is over. Until a second descent confirms the
    /// walk, only the first range is claimed.
    pub(super) async fn claim_range(&self, id: u64) -> Option<SegmentRange> {
        self.when_walk_may_list(id, |walk| {
            let Some(segment) = walk.segments.next_to_claim() else {
                return Go::Stop;
            };
            let may_claim = if walk.is_confirmed() {
                walk.segments.may_claim() && walk.may_list(segment, WALK_AHEAD_ENTRIES)
            } else {
                segment == 0
            };
            if !may_claim {
                return Go::Wait;
            }
            let Some((segment, whole_root)) = walk.segments.claim() else {
                return Go::Stop;
            };
            let (start, end) = walk.segments.range(segment);
            Go::Now(SegmentRange {
                segment,
                start: start.map(str::to_owned),
                end: end.map(str::to_owned),
                whole_root,
            })
        })
        .await
    }

    /// How many keys the next page of walk `id`'s listing of `segment`
    /// asks for (see `Segments::page_keys`).
    pub(super) fn page_keys(&self, id: u64, segment: usize, page: u32) -> u32 {
        let mut state = self.lock();
        match state.walk_numbered(id) {
            Some(walk) => walk.segments.page_keys(segment, page),
            None => page,
        }
    }

    /// A page of walk `id`'s listing of `segment` came, ending at `last`
    /// (before its keys past the range's end were dropped): where the
    /// segment ends now (see `Segments::page_seen`), `None` when the walk is
    /// over.
    pub(super) fn walk_page_seen(
        &self,
        id: u64,
        segment: usize,
        last: &str,
        keys: usize,
    ) -> Option<Option<String>> {
        let mut state = self.lock();
        let walk = state.walk_numbered(id)?;
        let end = walk.segments.page_seen(segment, last, keys)?;
        drop(state);
        self.progressed.notify_waiters();
        Some(end)
    }

    pub(super) fn walk_listed_through(&self, id: u64, segment: usize, key: &str) {
        let mut state = self.lock();
        if let Some(walk) = state.walk_numbered(id) {
            walk.segments.listed_through(segment, key);
        }
        drop(state);
        self.progressed.notify_waiters();
    }

    /// One of walk `id`'s listings reached the end of its range.
    pub(super) fn segment_listed(&self, id: u64, segment: usize) {
        let mut state = self.lock();
        if let Some(walk) = state.walk_numbered(id) {
            walk.segments.finished(segment);
            if walk.is_done() {
                walk.task = None;
            }
        }
        drop(state);
        self.progressed.notify_waiters();
    }

    /// The walk `id`'s task ended, or one of its listings failed. A walk
    /// that listed every range stays (its kept listings answer the walker);
    /// any other goes, so that nobody waits for it.
    pub(super) fn walk_ended(&self, id: u64) {
        let mut state = self.lock();
        if state.walk_numbered(id).is_some_and(|walk| !walk.is_done()) {
            state.walk = None;
        }
        drop(state);
        self.progressed.notify_waiters();
    }

    /// Waits while walk `id`'s listing of `segment` is far enough ahead of
    /// its walker; false when the walk is over.
    pub(super) async fn room_to_walk(&self, id: u64, segment: usize) -> bool {
        self.when_walk_may_list(id, |walk| {
            // Until a second descent confirms the walk, the first range
            // alone lists, held to its first page: once a page put entries
            // ahead of the walker, it waits.
            let may_list = if walk.is_confirmed() {
                walk.may_list(segment, WALK_AHEAD_ENTRIES)
            } else {
                segment == 0 && walk.ahead_entries() == 0
            };
            if may_list { Go::Now(()) } else { Go::Wait }
        })
        .await
        .is_some()
    }

    /// What `step` says for walk `id`, waiting while it says `Wait`; `None`
    /// when it says `Stop` or the walk is over (abandoned here when its
    /// walker went away).
    async fn when_walk_may_list<T>(
        &self,
        id: u64,
        mut step: impl FnMut(&mut Walk) -> Go<T>,
    ) -> Option<T> {
        // Looked at now and then for the idle limit too.
        self.on_progress(Some(WALK_IDLE / 4), |state| {
            let Some(walk) = state.walk_numbered(id) else {
                return Go::Stop;
            };
            if walk.last_visit.elapsed() > WALK_IDLE
                || (!walk.is_confirmed() && walk.last_visit.elapsed() > DESCENT_WINDOW)
            {
                log::debug!("walk of {:?} abandoned: the walker went away", walk.root);
                state.walk = None;
                return Go::Stop;
            }
            step(walk)
        })
        .await
    }
}
