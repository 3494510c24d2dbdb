//! What a directory holds, whole, for directories where names are being
//! looked up and not found: a tool creating files (`cp -r`, `tar x`,
//! `rsync`) looks up every new name first, and on S3 each miss costs a HEAD
//! of `name` and a listing of `name/`, which on a store that reads the whole
//! directory for every listing (s3s-fs, a plain filesystem) grows with the
//! directory. One listing of the directory answers every miss for the TTL.
//!
//! A directory gets such a snapshot when this mount creates it (it is empty
//! then), or when it has a second miss within a second (or the TTL, if
//! shorter): it is listed whole,
//! up to `MAX_LISTED_PAGES` pages. While the snapshot is younger than the
//! TTL, a name it lacks is absent without a request, which is the trust a
//! negative lookup already gets. Once it is older, the next miss lists the
//! directory again, so a busy directory costs one listing per TTL instead of
//! two requests per new name. Names this mount creates, commits, renames or
//! removes update the snapshot at once (also while it is being re-listed),
//! so it never hides this mount's own files.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::fs::dir::{directory_name, file_name};
use crate::fs::{FileKind, Filesystem, Result};
use crate::store::{ListFrom, ObjectStore};

/// Keys per listing page: S3's maximum.
const PAGE_KEYS: u32 = 1000;

/// Pages a listing of a directory may take before the directory counts as
/// too large to keep whole: beyond that, re-listing it every TTL costs more
/// than the misses it saves and delays the lookup that waits for it.
const MAX_LISTED_PAGES: usize = 4;

/// Directories tracked at once; each holds at most
/// `MAX_LISTED_PAGES * PAGE_KEYS` names (a few hundred KiB).
const TRACKED_DIRECTORIES: usize = 64;

/// Two misses within this time (or the TTL, if shorter) make a directory
/// busy enough to list whole: a tool filling it misses many times a second,
/// while a long TTL alone says nothing about how busy a directory is.
const BUSY_WINDOW: Duration = Duration::from_secs(1);

/// How long a directory found too large is not listed whole again.
const TOO_LARGE_BACKOFF: Duration = Duration::from_secs(60);

/// What a directory's snapshot says of a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    Absent,
    Present(FileKind),
    /// No snapshot to ask: look the name up in the store.
    Unknown,
}

#[derive(Default)]
struct Contents {
    /// Every name in the directory as of `listed_at`, with this mount's own
    /// changes since.
    names: HashMap<String, FileKind>,
    listed_at: Option<Instant>,
    /// When a lookup here last found nothing: a directory is listed whole
    /// only while names keep missing.
    last_miss: Option<Instant>,
    too_large_at: Option<Instant>,
    /// Changes made while a listing is under way, replayed over its result.
    changes_while_listing: Option<Vec<(String, Option<FileKind>)>>,
    /// Held while the directory is listed, so concurrent misses share one
    /// listing.
    listing: Arc<tokio::sync::Mutex<()>>,
}

impl Contents {
    fn is_fresh(&self, ttl: Duration) -> bool {
        self.listed_at.is_some_and(|at| at.elapsed() < ttl)
    }

    fn set(&mut self, name: &str, kind: Option<FileKind>) {
        match kind {
            Some(kind) => self.names.insert(name.to_owned(), kind),
            None => self.names.remove(name),
        };
        if let Some(changes) = self.changes_while_listing.as_mut() {
            changes.push((name.to_owned(), kind));
        }
    }
}

/// How listing a directory whole ended.
enum Listed {
    Names(HashMap<String, FileKind>),
    /// More than `MAX_LISTED_PAGES` pages.
    TooLarge,
    Failed,
}

enum Check {
    Answer(Known),
    /// Stale or missing snapshot of a directory where names keep missing.
    List(Arc<tokio::sync::Mutex<()>>),
}

pub struct DirectoryContents {
    ttl: Duration,
    directories: Mutex<LruCache<u64, Contents>>,
}

impl DirectoryContents {
    pub fn new(ttl: Duration) -> Self {
        DirectoryContents {
            ttl,
            directories: Mutex::new(LruCache::new(
                NonZeroUsize::new(TRACKED_DIRECTORIES).expect("non-zero"),
            )),
        }
    }

    fn check(&self, directory: u64, name: &str) -> Check {
        let mut directories = self.directories.lock().unwrap();
        let Some(contents) = directories.get_mut(&directory) else {
            return Check::Answer(Known::Unknown);
        };
        if contents.is_fresh(self.ttl) {
            return Check::Answer(match contents.names.get(name) {
                Some(kind) => Known::Present(*kind),
                None => {
                    contents.last_miss = Some(Instant::now());
                    Known::Absent
                }
            });
        }
        let is_busy = contents
            .last_miss
            .is_some_and(|at| at.elapsed() < self.ttl.min(BUSY_WINDOW));
        let is_too_large = contents
            .too_large_at
            .is_some_and(|at| at.elapsed() < TOO_LARGE_BACKOFF);
        if is_busy && !is_too_large {
            Check::List(Arc::clone(&contents.listing))
        } else {
            Check::Answer(Known::Unknown)
        }
    }

    /// A directory this mount just created: empty.
    pub fn created(&self, directory: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let contents = Contents {
            listed_at: Some(Instant::now()),
            ..Contents::default()
        };
        self.directories.lock().unwrap().put(directory, contents);
    }

    /// A lookup in `directory` asked the store and found nothing.
    pub fn missed(&self, directory: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut directories = self.directories.lock().unwrap();
        let now = Instant::now();
        match directories.get_mut(&directory) {
            Some(contents) => contents.last_miss = Some(now),
            None => {
                directories.put(
                    directory,
                    Contents {
                        last_miss: Some(now),
                        ..Contents::default()
                    },
                );
            }
        }
    }

    /// This mount made `name` exist (`Some`) or vanish (`None`), or learnt
    /// so from the store.
    pub fn set(&self, directory: u64, name: &str, kind: Option<FileKind>) {
        if let Some(contents) = self.directories.lock().unwrap().peek_mut(&directory) {
            contents.set(name, kind);
        }
    }

    pub fn remove_directory(&self, directory: u64) {
        self.directories.lock().unwrap().pop(&directory);
    }

    fn listing_started(&self, directory: u64) -> Instant {
        if let Some(contents) = self.directories.lock().unwrap().peek_mut(&directory) {
            contents.changes_while_listing = Some(Vec::new());
        }
        Instant::now()
    }

    /// Installs the outcome of a listing sent at `started`.
    fn listing_done(&self, directory: u64, started: Instant, listed: Listed) {
        let mut directories = self.directories.lock().unwrap();
        let Some(contents) = directories.peek_mut(&directory) else {
            return; // removed meanwhile
        };
        let changes = contents.changes_while_listing.take().unwrap_or_default();
        if let Listed::Names(names) = listed {
            contents.names = names;
            contents.listed_at = Some(started);
            for (name, kind) in changes {
                contents.set(&name, kind);
            }
            return;
        }
        contents.names.clear();
        contents.listed_at = None;
        if matches!(listed, Listed::TooLarge) {
            contents.too_large_at = Some(Instant::now());
        }
    }
}

impl<S: ObjectStore> Filesystem<S> {
    /// What the snapshot of `directory` (key `prefix`) says of `name`,
    /// listing the directory first where that pays (see the module notes).
    pub(super) async fn known_in_directory(
        &self,
        directory: u64,
        prefix: &str,
        name: &str,
    ) -> Known {
        let listing = match self.contents.check(directory, name) {
            Check::Answer(known) => return known,
            Check::List(listing) => listing,
        };
        let _listing = listing.lock().await;
        // Whoever held the lock may have just listed it.
        if let Check::Answer(known @ (Known::Absent | Known::Present(_))) =
            self.contents.check(directory, name)
        {
            return known;
        }
        let started = self.contents.listing_started(directory);
        let listed = self.list_names(prefix).await.unwrap_or_else(|error| {
            log::debug!("listing {prefix:?} for lookups failed: {error}");
            Listed::Failed
        });
        self.contents.listing_done(directory, started, listed);
        match self.contents.check(directory, name) {
            Check::Answer(known) => known,
            Check::List(_) => Known::Unknown,
        }
    }

    /// Every name under `prefix`, unless it takes more than
    /// `MAX_LISTED_PAGES` pages. A name that is both a file and a directory
    /// is the directory, as elsewhere.
    async fn list_names(&self, prefix: &str) -> Result<Listed> {
        let mut names = HashMap::new();
        let mut continuation = None;
        for _ in 0..MAX_LISTED_PAGES {
            let page = self
                .meta
                .list_page(
                    prefix,
                    true,
                    ListFrom::continuing(continuation.as_deref()),
                    PAGE_KEYS,
                )
                .await?;
            // What a listing of the directory would not show (see `dir.rs`,
            // which warns about it) is not a name here either.
            for object in &page.objects {
                if let Some(name) = file_name(prefix, &object.key) {
                    names.entry(name.to_owned()).or_insert(FileKind::File);
                }
            }
            for common_prefix in &page.common_prefixes {
                if let Some(name) = directory_name(prefix, common_prefix) {
                    names.insert(name.to_owned(), FileKind::Directory);
                }
            }
            continuation = page.next;
            if continuation.is_none() {
                return Ok(Listed::Names(names));
            }
        }
        Ok(Listed::TooLarge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_millis(200);

    #[test]
    fn created_directory_is_empty_until_the_ttl() {
        let contents = DirectoryContents::new(TTL);
        contents.created(7);
        assert!(matches!(
            contents.check(7, "x"),
            Check::Answer(Known::Absent)
        ));
        contents.set(7, "x", Some(FileKind::File));
        assert!(matches!(
            contents.check(7, "x"),
            Check::Answer(Known::Present(FileKind::File))
        ));
        std::thread::sleep(TTL / 2);
        assert!(matches!(
            contents.check(7, "y"),
            Check::Answer(Known::Absent)
        ));
        std::thread::sleep(TTL / 2 + TTL / 10);
        // Stale now, and names kept missing: the next lookup lists the directory.
        assert!(matches!(contents.check(7, "z"), Check::List(_)));
        std::thread::sleep(TTL);
        // A directory where nothing missed for a TTL is not listed.
        assert!(matches!(
            contents.check(7, "z"),
            Check::Answer(Known::Unknown)
        ));
    }

    #[test]
    fn one_miss_is_not_enough_to_list() {
        let contents = DirectoryContents::new(TTL);
        assert!(matches!(
            contents.check(3, "x"),
            Check::Answer(Known::Unknown)
        ));
        contents.missed(3);
        assert!(matches!(contents.check(3, "y"), Check::List(_)));
    }

    #[test]
    fn changes_during_a_listing_win_over_it() {
        let contents = DirectoryContents::new(TTL);
        contents.missed(3);
        let started = contents.listing_started(3);
        contents.set(3, "new", Some(FileKind::File));
        contents.set(3, "gone", None);
        let listed: HashMap<String, FileKind> = [
            ("gone".to_owned(), FileKind::File),
            ("old".to_owned(), FileKind::Directory),
        ]
        .into_iter()
        .collect();
        contents.listing_done(3, started, Listed::Names(listed));
        let known = |name| match contents.check(3, name) {
            Check::Answer(known) => known,
            Check::List(_) => panic!("listed just now"),
        };
        assert_eq!(known("new"), Known::Present(FileKind::File));
        assert_eq!(known("gone"), Known::Absent);
        assert_eq!(known("old"), Known::Present(FileKind::Directory));
    }

    #[test]
    fn too_large_directories_are_left_alone() {
        let contents = DirectoryContents::new(TTL);
        contents.missed(3);
        let started = contents.listing_started(3);
        contents.listing_done(3, started, Listed::TooLarge);
        contents.missed(3);
        assert!(matches!(
            contents.check(3, "x"),
            Check::Answer(Known::Unknown)
        ));
    }

    #[test]
    fn zero_ttl_keeps_nothing() {
        let contents = DirectoryContents::new(Duration::ZERO);
        contents.created(7);
        contents.missed(7);
        assert!(matches!(
            contents.check(7, "x"),
            Check::Answer(Known::Unknown)
        ));
    }
}
