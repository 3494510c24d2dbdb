//! Whole directory listings kept for the metadata TTL, and tree walks served
//! from one flat listing.
//!
//! `find`, `du`, `ls -R` and backup scanners open every directory of a
//! tree in turn. Listed one directory at a time, that costs a LIST per
//! directory, and a second walk costs them all again. Here:
//!
//! - A directory listed to its end is kept ([`Walks::keep`]), so another
//!   pass over it within the TTL costs no request.
//! - Two descents in a row (a directory opened just after the listing of
//!   its parent completed, twice) mark a walk: the tree under the upper
//!   parent is then listed flat (ListObjectsV2 without a delimiter, pages
//!   back to back, HEADs for POSIX headers as the pages arrive), and every
//!   directory under it is filled from that one listing as the listing
//!   passes its last key. A directory the walker opens before the listing
//!   got there waits for it. The flat listing starts at the first descent,
//!   beside that directory's own listing, held at the first page that puts
//!   entries ahead of the walker until the second descent confirms the
//!   walk: a walker does not wait for the round trips that tell a walk from
//!   a single `ls`, and a single `ls` costs about that page more.
//! - A flat listing is one page after another, each waiting for the token
//!   of the one before. So a walk cuts its tree into ranges of the root's
//!   subdirectories (from the root's own listing, which the walker came
//!   through), and `WALK_LISTINGS` listings side by side each take the next
//!   range in key order whenever they are free, listing it from its first
//!   key (StartAfter) to its last. A range holds about `SEGMENT_KEYS` keys,
//!   judged from the directory of the first descent and from the pages, and
//!   a small tree is still cut into a few ranges per listing: in a large
//!   tree the ranges just ahead of the walker are listed side by side
//!   within the bound on entries ahead (four quarters left the walker
//!   waiting on its quarter's listing alone while the others waited on that
//!   bound), and in a small one the walker finds the ranges done in turn
//!   rather than all at the end. The first range lists alone until the
//!   walk is confirmed. Not when the walk HEADs every key for POSIX
//!   headers: then the HEADs set its pace, and one listing keeps ahead.
//!   The last page of a range asks for about the keys left in it, so a
//!   walk lists few keys twice, for a LIST or so more per range than one
//!   listing, and finishes in a fraction of its time. A walk
//!   in ranges whose root has one subdirectory (`find MNT` in a bucket
//!   under one top directory) moves down to it when confirmed.
//! - The listings stay at most `WALK_AHEAD_ENTRIES` entries ahead of the
//!   walker (the greatest directory it has opened), except the range the
//!   walker waits for next, which may hold as many again of its own: a tree
//!   too large to hold costs bounded memory and, if the walk stops, a
//!   bounded number of requests. A walk is abandoned when the walker has
//!   not come for `WALK_IDLE`.
//!
//! Kept listings are what the store said, not what this mount changed since:
//! every change this mount makes to the namespace or to attributes bumps an
//! epoch (at its start and at its end), and a listing is served only if no
//! change started or ended since its listing began. Other clients' changes
//! show after the TTL, the trust every cached attribute gets.
//!
//! Memory: at most `CACHED_ENTRIES` entries kept (414 bytes each for a
//! typical key with POSIX headers, allocator included, measured by
//! tests/metadata_memory.rs; about 40 MiB), least recently used directories dropped
//! first, except those listed ahead for a walker still to come, which go
//! last; a directory with more than a quarter of that is never kept.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use tokio::sync::Notify;

use super::Resolved;
use crate::fs::Stat;
use kept::KeptListings;
pub(in crate::fs) use kept::{Listing, MAX_DIRECTORY_ENTRIES};
use progress::Walk;
use segments::Segments;

mod flat;
mod kept;
mod listings;
mod progress;
mod segments;

use flat::SegmentRange;
pub(in crate::fs) use flat::{WalkContext, walk};

/// How long a lookup of a directory the walk has not reached yet waits for
/// it (see `Walks::vouched`). The walker is usually right behind the
/// listing's HEADs, a fraction of a second away.
const LOOKUP_WAITS_FOR_WALK: Duration = Duration::from_secs(2);

/// How far the flat listing may run ahead of the walker.
const WALK_AHEAD_ENTRIES: usize = 20_000;

/// Flat listings a walk runs side by side, each taking the next range of
/// the root's subdirectories (see `Segments`), when it sends no HEADs.
const WALK_LISTINGS: usize = 4;

/// Flat listings of a walk that reads POSIX headers. Such a walk waits on
/// its HEADs, `--max-concurrency` at a time for the 1,000 keys of a page,
/// not on its pages, so more listings side by side only add requests and
/// CPU: by hand, `find` over 10,000 keys with headers took 2.06 to 2.12 s
/// with one listing and 2.24 to 2.48 s with four (four runs each, the
/// server on the same two CPUs).
const WALK_LISTINGS_WITH_HEADS: usize = 1;

/// A descent counts when the parent's listing completed this recently.
const DESCENT_WINDOW: Duration = Duration::from_secs(5);

/// A walk whose walker has not opened a directory under it for this long is
/// over: `find` opens the next directory within milliseconds.
const WALK_IDLE: Duration = Duration::from_secs(10);

/// Recently completed listings remembered for spotting descents.
const RECENT_COMPLETIONS: usize = 256;

struct State {
    epoch: u64,
    kept: KeptListings,
    completed: LruCache<String, Instant>,
    /// The parent of the last descent, and when.
    last_descent: Option<(String, Instant)>,
    walk: Option<Walk>,
    next_walk: u64,
    /// Flat listings a walk runs side by side.
    listings: usize,
}

impl State {
    /// The walk under way, if it is walk `id`: a walk's listings and task
    /// act only while their walk is the one under way.
    fn walk_numbered(&mut self, id: u64) -> Option<&mut Walk> {
        self.walk.as_mut().filter(|walk| walk.id == id)
    }

    /// Makes a walk of `root` the one under way, replacing any other.
    fn begin_walk(&mut self, root: &str, walker_at: &str, unconfirmed: Option<&str>) -> u64 {
        let id = self.next_walk;
        self.next_walk += 1;
        // The root's own listing, the walker's way in, tells where to cut.
        let subdirectories = self.kept.subdirectories(root);
        self.walk = Some(Walk {
            id,
            root: root.to_owned(),
            unconfirmed: unconfirmed.map(str::to_owned),
            segments: Segments::new(subdirectories, self.listings),
            walker_at: walker_at.to_owned(),
            last_visit: Instant::now(),
            ahead: BTreeMap::new(),
            task: None,
        });
        id
    }

    /// The walk whose walker has been about lately, if any.
    fn walk_under_way(&self) -> Option<u64> {
        self.walk
            .as_ref()
            .filter(|walk| walk.last_visit.elapsed() <= WALK_IDLE)
            .map(|walk| walk.id)
    }
}

/// What the caller of [`Walks::opened`] should do.
pub(in crate::fs) enum Opened {
    /// Serve these entries; no request needed.
    Kept(Listing),
    /// A walk under way covers the directory: wait for it (`listed_by_walk`).
    AwaitWalk,
    /// A walk just started at this root: spawn its listing and wait for it.
    StartWalk { root: String, id: u64 },
    /// List the directory as usual, and spawn the listing of a walk that
    /// may be starting at this root (see the module notes).
    ListAndStartWalk { root: String, id: u64 },
    /// List the directory as usual.
    List,
}

pub(in crate::fs) struct Walks {
    ttl: Duration,
    state: Mutex<State>,
    progressed: Notify,
}

impl Walks {
    /// `heads`: whether a walk sends a HEAD per key (for POSIX headers).
    pub(in crate::fs) fn new(ttl: Duration, heads: bool) -> Walks {
        Walks {
            ttl,
            state: Mutex::new(State {
                epoch: 0,
                kept: KeptListings::new(ttl),
                completed: LruCache::new(NonZeroUsize::new(RECENT_COMPLETIONS).expect("non-zero")),
                last_descent: None,
                walk: None,
                next_walk: 1,
                listings: if heads {
                    WALK_LISTINGS_WITH_HEADS
                } else {
                    WALK_LISTINGS
                },
            }),
            progressed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current epoch, for a listing about to begin.
    pub(in crate::fs) fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// A change to the namespace or to attributes is starting or has ended.
    pub(in crate::fs) fn changed(&self) {
        let mut state = self.lock();
        state.epoch += 1;
        // A walk under way lists what may just have changed.
        state.walk = None;
        drop(state);
        self.progressed.notify_waiters();
    }

    /// A pass over the directory `prefix` (with parent `parent`, none for the
    /// mount's root) begins at its first entry.
    pub(in crate::fs) fn opened(&self, prefix: &str, parent: Option<&str>) -> Opened {
        if self.ttl.is_zero() {
            return Opened::List; // nothing could be kept
        }
        let mut guard = self.lock();
        let state: &mut State = &mut guard;
        let now = Instant::now();
        let is_descent = parent.is_some_and(|parent| {
            state
                .completed
                .peek(parent)
                .is_some_and(|at| at.elapsed() < DESCENT_WINDOW)
        });
        let mut may_move_down = false;
        let cuts_into_ranges = state.listings > 1;
        if let Some(walk) = state.walk.as_mut() {
            if walk.covers(prefix) {
                if walk.confirmed_by(prefix, is_descent) {
                    log::debug!("walk of {:?} confirmed at {prefix:?}", walk.root);
                    // The first descent's directory, listed whole by now,
                    // tells how many keys a subdirectory holds before the
                    // walk's first page does: the ranges start at once.
                    if let Some(entries) = walk
                        .unconfirmed
                        .take()
                        .and_then(|first| state.kept.entry_count(&first))
                    {
                        walk.segments.subdirectory_listed(entries);
                    }
                    state.last_descent = None;
                    may_move_down = cuts_into_ranges && !walk.segments.can_cut();
                }
                if walk.is_confirmed() {
                    walk.walker_reached(prefix);
                    // The listing may be waiting for the walker.
                    self.progressed.notify_waiters();
                }
            } else if walk.last_visit.elapsed() > WALK_IDLE {
                state.walk = None;
            }
        }
        // `find MNT` in a bucket under one top directory: the walk starts
        // again one level down, where the tree can be cut into ranges that
        // are listed side by side.
        if may_move_down
            && let Some(parent) = parent
            && state.walk.as_ref().is_some_and(|walk| walk.root != parent)
            && state.kept.subdirectories(parent).len() > 1
        {
            let id = state.begin_walk(parent, prefix, None);
            log::debug!("walk moved down to {parent:?} at {prefix:?}");
            return Opened::StartWalk {
                root: parent.to_owned(),
                id,
            };
        }
        if let Some(entries) = self.fresh(state, prefix) {
            return Opened::Kept(entries);
        }
        // A walk that listed everything and has nothing fresh for this
        // directory is over: the next walk (a second `find` after the TTL)
        // must be able to start.
        if state
            .walk
            .as_ref()
            .is_some_and(|walk| walk.covers(prefix) && walk.is_done())
        {
            state.walk = None;
        }
        if state
            .walk
            .as_ref()
            .is_some_and(|walk| walk.covers(prefix) && walk.is_confirmed())
        {
            return Opened::AwaitWalk;
        }
        let Some(parent) = parent else {
            return Opened::List;
        };
        if !is_descent {
            state.last_descent = None;
            return Opened::List;
        }
        let root = match state.last_descent.take() {
            Some((earlier, at))
                if at.elapsed() < DESCENT_WINDOW && parent.starts_with(&earlier) =>
            {
                earlier
            }
            _ => {
                state.last_descent = Some((parent.to_owned(), now));
                if state.walk.as_ref().is_some_and(Walk::is_busy) {
                    return Opened::List;
                }
                let id = state.begin_walk(parent, prefix, Some(prefix));
                log::debug!("a walk of {parent:?} may start at {prefix:?}: listing it flat");
                return Opened::ListAndStartWalk {
                    root: parent.to_owned(),
                    id,
                };
            }
        };
        let id = state.begin_walk(&root, prefix, None);
        log::debug!("walk of {root:?} spotted at {prefix:?}: listing it flat");
        Opened::StartWalk { root, id }
    }

    pub(in crate::fs) fn walk_started(&self, id: u64, task: tokio::task::AbortHandle) {
        let mut state = self.lock();
        match state.walk_numbered(id) {
            Some(walk) => walk.task = Some(task),
            None => task.abort(),
        }
    }

    /// The kept entries of `prefix` once the walk under way has listed it;
    /// `None` when no walk covers it, or the walk passed it without keeping
    /// it (nothing under it, or too large) or ended before it.
    pub(in crate::fs) async fn listed_by_walk(&self, prefix: &str) -> Option<Listing> {
        self.when_walked(prefix, |state| self.fresh(state, prefix))
            .await
    }

    /// Whether a listing this mount holds for `prefix`, fresh or listed
    /// ahead for a walker that has not come yet, found entries under it,
    /// once the walk under way (if it covers `prefix`) got there: then the
    /// directory exists, and the kernel's lookup of it on the way in (its
    /// entry from the parent's listing having timed out) needs no request
    /// of its own. Peeks: the listing's TTL still starts when it is served.
    pub(in crate::fs) async fn vouches_for(&self, prefix: &str) -> bool {
        self.vouched(prefix).await.is_some()
    }

    /// `vouches_for`, with the directory's attributes when a walk kept it:
    /// enough to answer a lookup of a name the inode table does not have.
    pub(in crate::fs) async fn vouched_directory(&self, prefix: &str) -> Option<Stat> {
        self.vouched(prefix).await.flatten()
    }

    /// Waits for the walk at most `LOOKUP_WAITS_FOR_WALK`: a lookup far
    /// ahead of the walker must not wait for a walk that waits for the
    /// walker; it probes instead.
    async fn vouched(&self, prefix: &str) -> Option<Option<Stat>> {
        let walked = self.when_walked(prefix, |state| {
            self.holding_entries(state, prefix).or_else(|| {
                // The root of the walk under way: its listings, which
                // found keys under it, vouch for it until they end. (Its
                // own listing, the walker's way in, is older than the TTL
                // long before a large walk ends, and the kernel looks the
                // root up again whenever a path through it is resolved.)
                state
                    .walk
                    .as_ref()
                    .is_some_and(|walk| {
                        walk.root == prefix && walk.is_confirmed() && walk.has_listed_keys()
                    })
                    .then_some(None)
            })
        });
        tokio::time::timeout(LOOKUP_WAITS_FOR_WALK, walked)
            .await
            .ok()
            .flatten()
    }

    /// What `found` finds, waiting while the walk under way covers `prefix`
    /// and has not listed past it yet.
    async fn when_walked<T>(
        &self,
        prefix: &str,
        found: impl Fn(&mut State) -> Option<T>,
    ) -> Option<T> {
        self.on_progress(None, |state| {
            if let Some(found) = found(state) {
                return Go::Now(found);
            }
            // Nobody waits for a walk that may not be one.
            match state
                .walk
                .as_ref()
                .filter(|walk| walk.covers(prefix) && walk.is_confirmed())
            {
                Some(walk) if !walk.has_passed(prefix) => Go::Wait,
                _ => Go::Stop,
            }
        })
        .await
    }

    /// What `step` says, looking again whenever a walk made progress (and
    /// every `tick`, if given) while it says `Wait`; `None` once it says
    /// `Stop`. The notification is armed before `step` looks, so none
    /// between the look and the wait is missed.
    async fn on_progress<T>(
        &self,
        tick: Option<Duration>,
        mut step: impl FnMut(&mut State) -> Go<T>,
    ) -> Option<T> {
        loop {
            let notified = self.progressed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match step(&mut self.lock()) {
                Go::Now(value) => return Some(value),
                Go::Stop => return None,
                Go::Wait => {}
            }
            match tick {
                Some(tick) => {
                    let _ = tokio::time::timeout(tick, notified).await;
                }
                None => notified.await,
            }
        }
    }

    /// `Some(own attributes)` when the listing kept for `prefix` is
    /// current and has entries.
    fn holding_entries(&self, state: &mut State, prefix: &str) -> Option<Option<Stat>> {
        let walk_under_way = state.walk_under_way();
        state
            .kept
            .holding_entries(prefix, state.epoch, walk_under_way)
    }

    fn fresh(&self, state: &mut State, prefix: &str) -> Option<Listing> {
        let walk_under_way = state.walk_under_way();
        state.kept.fresh(prefix, state.epoch, walk_under_way)
    }

    /// Whether whole listings are kept at all: with no TTL nothing kept
    /// would ever be served, so listings need not copy their entries.
    pub(in crate::fs) fn keeps_listings(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// A pass over `prefix` reached its end: for spotting descents into it.
    pub(in crate::fs) fn completed(&self, prefix: &str) {
        self.lock().completed.put(prefix.to_owned(), Instant::now());
    }

    /// Keeps the whole listing of `prefix`, begun at `epoch`.
    pub(in crate::fs) fn keep(&self, prefix: &str, entries: Vec<Resolved>, epoch: u64) {
        let mut state = self.lock();
        self.keep_locked(&mut state, prefix, entries, epoch, None, None);
    }

    fn keep_locked(
        &self,
        state: &mut State,
        prefix: &str,
        entries: Vec<Resolved>,
        epoch: u64,
        own: Option<Stat>,
        prefetched_by: Option<u64>,
    ) {
        if epoch != state.epoch {
            return;
        }
        let walk_under_way = state.walk_under_way();
        state
            .kept
            .keep(prefix, entries, epoch, own, prefetched_by, walk_under_way);
    }
}

/// What a wait on the walks' progress does next (see `Walks::on_progress`).
enum Go<T> {
    Now(T),
    Wait,
    Stop,
}

/// A change to the namespace or to attributes under way: kept listings from
/// before its end are not served (see the module notes).
pub(in crate::fs) struct Change {
    walks: Arc<Walks>,
}

impl Change {
    pub(in crate::fs) fn new(walks: &Arc<Walks>) -> Change {
        walks.changed();
        Change {
            walks: Arc::clone(walks),
        }
    }
}

impl Drop for Change {
    fn drop(&mut self) {
        self.walks.changed();
    }
}

#[cfg(test)]
mod tests {
    use super::kept::{CACHED_ENTRIES, PREFETCHED_MAX_AGE};
    use super::*;
    use crate::fs::FileKind;

    fn entries(count: usize) -> Vec<Resolved> {
        (0..count)
            .map(|at| Resolved {
                name: format!("f{at}"),
                kind: FileKind::File,
                key: format!("f{at}"),
                stat: Stat::default(),
            })
            .collect()
    }

    /// A large walk lists its later ranges long before the walker gets
    /// there, while the directories the walker passes fill the kept
    /// listings: those listed ahead must outlast them, or the walker lists
    /// them again one by one.
    #[test]
    fn what_the_walker_is_still_to_come_for_is_dropped_last() {
        let walks = Walks::new(Duration::from_secs(60), false);
        walks.keep("u/", entries(10), 0);
        let id = walks.lock().begin_walk("t/", "t/a/", None);
        walks.walk_kept(id, "t/z/", entries(10), 0, None);
        for at in 0..CACHED_ENTRIES / 1000 + 5 {
            walks.keep(&format!("t/b{at:03}/"), entries(1000), 0);
        }
        let mut state = walks.lock();
        assert!(walks.fresh(&mut state, "u/").is_none(), "u/ was kept");
        assert!(
            walks.fresh(&mut state, "t/z/").is_some(),
            "t/z/ was dropped"
        );
        assert!(state.kept.entries() <= CACHED_ENTRIES);
    }

    /// Listed ahead for a walk that is over (its walker went away), a
    /// listing is served no longer than `PREFETCHED_MAX_AGE`.
    #[test]
    fn a_listing_ahead_outlives_its_age_only_while_its_walk_goes_on() {
        let walks = Walks::new(Duration::from_secs(1), false);
        let id = walks.lock().begin_walk("t/", "t/a/", None);
        walks.walk_kept(id, "t/z/", entries(3), 0, None);
        let mut state = walks.lock();
        let kept = state.kept.peek_mut("t/z/").expect("kept");
        kept.listing.listed_at = kept
            .listing
            .listed_at
            .checked_sub(PREFETCHED_MAX_AGE + Duration::from_secs(1))
            .expect("the clock started long enough ago");
        assert!(walks.holding_entries(&mut state, "t/z/").is_some());
        let walk = state.walk.as_mut().expect("walk");
        walk.last_visit = walk
            .last_visit
            .checked_sub(WALK_IDLE + Duration::from_secs(1))
            .expect("the clock started long enough ago");
        assert!(walks.holding_entries(&mut state, "t/z/").is_none());
        assert!(walks.fresh(&mut state, "t/z/").is_none());
    }
}
