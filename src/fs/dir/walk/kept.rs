//! Whole directory listings kept for the metadata TTL: what a second pass
//! over a directory is served from, and where a walk leaves the directories
//! it listed ahead of the walker. Bounded by entries, least recently used
//! first, except what a walker is still to come for (see the module notes
//! of `walk`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::fs::dir::Resolved;
use crate::fs::{FileKind, Stat};

/// Entries kept over all directories.
pub(super) const CACHED_ENTRIES: usize = 100_000;

/// A directory with more entries is not kept: it would push out many
/// smaller ones, and listing it again costs few requests per entry.
pub(in crate::fs) const MAX_DIRECTORY_ENTRIES: usize = CACHED_ENTRIES / 4;

/// How long a directory the walk listed ahead waits for the walker once
/// the walk is over (while it goes on, as long as it takes): read ahead,
/// its TTL starts when the walker comes (a walk of many directories takes
/// longer than the default 1 s TTL, which would otherwise expire what was
/// listed ahead before it is used).
pub(super) const PREFETCHED_MAX_AGE: Duration = Duration::from_secs(30);

/// One directory's entries as the store listed them, sorted by name.
#[derive(Clone)]
pub(in crate::fs) struct Listing {
    pub entries: Arc<Vec<Resolved>>,
    /// When the listing completed: its entries are trusted for the TTL
    /// from then, not from when they are served.
    pub listed_at: Instant,
}

pub(super) struct Kept {
    pub(super) listing: Listing,
    /// The directory's own attributes as its parent's listing shows them,
    /// where a walk kept it (it saw the parent's side too).
    own: Option<Stat>,
    /// The epoch when its listing began.
    epoch: u64,
    /// Listed ahead by this walk and not served yet.
    prefetched_by: Option<u64>,
}

impl Kept {
    /// Listed ahead for a walker that is still to come: while its walk goes
    /// on (a later range of a large walk is listed long before the walker
    /// gets there), else for `PREFETCHED_MAX_AGE`.
    fn awaits_walker(&self, walk_under_way: Option<u64>, ttl: Duration) -> bool {
        self.prefetched_by.is_some_and(|by| {
            walk_under_way == Some(by)
                || self.listing.listed_at.elapsed() < PREFETCHED_MAX_AGE.max(ttl)
        })
    }

    /// Whether the listing may be served: awaited by a walker, or within
    /// the TTL of a listing the walker asked for (listed ahead for a walk
    /// whose walker went away, it is not).
    fn is_current(&self, walk_under_way: Option<u64>, ttl: Duration) -> bool {
        self.awaits_walker(walk_under_way, ttl)
            || (self.prefetched_by.is_none() && self.listing.listed_at.elapsed() < ttl)
    }
}

/// The listings kept, by directory prefix. Every question takes the epoch
/// now (a listing begun before a change is never served) and the walk under
/// way (what it listed ahead waits for its walker).
pub(super) struct KeptListings {
    ttl: Duration,
    by_prefix: LruCache<String, Kept>,
    /// Over all listings kept; an empty directory counts one.
    entries: usize,
}

impl KeptListings {
    pub(super) fn new(ttl: Duration) -> KeptListings {
        KeptListings {
            ttl,
            by_prefix: LruCache::unbounded(),
            entries: 0,
        }
    }

    /// `Some(own attributes)` when the listing kept for `prefix` is
    /// current and has entries.
    pub(super) fn holding_entries(
        &self,
        prefix: &str,
        epoch: u64,
        walk_under_way: Option<u64>,
    ) -> Option<Option<Stat>> {
        let kept = self.by_prefix.peek(prefix)?;
        let holds = kept.epoch == epoch
            && kept.is_current(walk_under_way, self.ttl)
            && !kept.listing.entries.is_empty();
        holds.then(|| kept.own.clone())
    }

    /// The listing kept for `prefix`, if it may be served; served to the
    /// walker it was listed ahead for, its TTL starts now.
    pub(super) fn fresh(
        &mut self,
        prefix: &str,
        epoch: u64,
        walk_under_way: Option<u64>,
    ) -> Option<Listing> {
        let kept = self.by_prefix.get_mut(prefix)?;
        if kept.epoch != epoch || !kept.is_current(walk_under_way, self.ttl) {
            return None;
        }
        if kept.prefetched_by.is_some() {
            // Listed ahead for the walker, which has come: like read-ahead,
            // its TTL starts now.
            kept.prefetched_by = None;
            kept.listing.listed_at = Instant::now();
        }
        Some(kept.listing.clone())
    }

    /// Keeps the whole listing of `prefix`, begun at epoch `began` (the
    /// caller checked that nothing changed since), then drops what is least
    /// needed while over `CACHED_ENTRIES`.
    pub(super) fn keep(
        &mut self,
        prefix: &str,
        entries: Vec<Resolved>,
        began: u64,
        own: Option<Stat>,
        prefetched_by: Option<u64>,
        walk_under_way: Option<u64>,
    ) {
        // With no TTL nothing kept would ever be served.
        if self.ttl.is_zero() || entries.len() > MAX_DIRECTORY_ENTRIES {
            return;
        }
        // An empty directory costs its name and its map entry.
        let count = entries.len().max(1);
        if let Some(old) = self.by_prefix.put(
            prefix.to_owned(),
            Kept {
                listing: Listing {
                    entries: Arc::new(entries),
                    listed_at: Instant::now(),
                },
                epoch: began,
                own,
                prefetched_by,
            },
        ) {
            self.entries -= old.listing.entries.len().max(1);
        }
        self.entries += count;
        while self.entries > CACHED_ENTRIES {
            // What the walker is still to come for goes last: its walk
            // would not list it again, and the walker would list it alone.
            // The walk's bound on entries ahead keeps those few.
            let least_needed = self
                .by_prefix
                .iter()
                .rev()
                .find(|(_, kept)| !kept.awaits_walker(walk_under_way, self.ttl))
                .map(|(prefix, _)| prefix.clone());
            let evicted = match least_needed {
                Some(prefix) => self.by_prefix.pop(&prefix),
                None => self.by_prefix.pop_lru().map(|(_, kept)| kept),
            };
            match evicted {
                Some(old) => self.entries -= old.listing.entries.len().max(1),
                None => break,
            }
        }
    }

    /// The keys of the subdirectories a kept listing of `prefix` shows.
    pub(super) fn subdirectories(&self, prefix: &str) -> Vec<String> {
        self.by_prefix
            .peek(prefix)
            .map(|kept| {
                kept.listing
                    .entries
                    .iter()
                    .filter(|entry| entry.kind == FileKind::Directory)
                    .map(|entry| entry.key.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many entries a kept listing of `prefix` shows.
    pub(super) fn entry_count(&self, prefix: &str) -> Option<usize> {
        self.by_prefix
            .peek(prefix)
            .map(|kept| kept.listing.entries.len())
    }

    #[cfg(test)]
    pub(super) fn entries(&self) -> usize {
        self.entries
    }

    #[cfg(test)]
    pub(super) fn peek_mut(&mut self, prefix: &str) -> Option<&mut Kept> {
        self.by_prefix.peek_mut(prefix)
    }
}
