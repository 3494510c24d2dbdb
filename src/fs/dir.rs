//! Directory listings, streamed one ListObjectsV2 page at a time.
//!
//! An open directory holds one page of resolved entries and the continuation
//! token of the next, never the whole listing, so a directory of millions of
//! keys costs a few pages of memory. Offsets number entries from the start of
//! the listing (`.` is 0, `..` is 1, children from 2), so `readdir` resumes
//! where the kernel stopped; an offset before the held page restarts the
//! listing.
//!
//! Directories made by other tools list as directories: a prefix with or
//! without a `d/` marker, and s3fs's old-style directory object `d` (see
//! `crate::object_format`), which lists as the directory `d/` and gives it
//! its attributes unless a marker does.
//!
//! A file `a` is hidden when a prefix `a/` exists. The prefix may come on a
//! later page than the file (`a!` sorts between `a` and `a/`), so files that a
//! later page could shadow are carried over to it before they are shown.
//!
//! Pages are listed and resolved ahead of the kernel by one task per open
//! directory (`list_ahead`), as a client listing and HEADing by hand would
//! do: as soon as a page arrives, the next one is requested and the page's
//! HEADs (for POSIX headers) start, `--max-concurrency` at a time. The
//! kernel's next readdirplus then usually finds its page resolved, and the
//! LIST requests follow each other without waiting for the kernel. The task
//! keeps at most `lister::PAGES_AHEAD` resolved pages waiting, so it costs a bounded
//! number of requests beyond what the reader consumes, and it is aborted when
//! the directory is closed or rewound.
//!
//! A listing page also confirms that its directory exists. While a listing
//! is under way, and for the TTL after its last page, a lookup of the
//! directory needs no request (`DirectoryConfirmations`): during `ls -l` of a
//! big directory the kernel revalidates the directory's own entry on the
//! `lstat` path walks once its entry TTL runs out, and a one-key listing of
//! it costs as much as a page on stores that read the whole directory for
//! every listing (s3s-fs).
//!
//! What a store lists is checked before it is shown, since a buggy or hostile
//! store must not crash the mount or loop it forever: a key outside the
//! directory's prefix, a key longer than S3 allows, a common prefix without
//! the delimiter, and a key at or before one already listed (pages come in
//! key order, so that is a repeat) are skipped with a warning. A page that
//! hands back the continuation token it was asked with, or a run of pages
//! with nothing new, ends the listing with an error instead of a loop.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use crate::fs::{DirEntry, Error, FileKind, Filesystem, Result, Stat, is_valid_name};
use crate::store::{ListPage, ObjectStore, StoreError};

mod confirmations;
mod lister;
mod markers;
pub(super) mod walk;

pub use confirmations::DirectoryConfirmations;
pub(in crate::fs) use lister::resolve_file;
use lister::{ListedFile, Lister, ResolvedPage};
pub(super) use markers::{DirectoryProbe, directory_marker_stat, directory_stat};

/// Keys per ListObjectsV2 page: S3's maximum.
const LIST_PAGE_KEYS: u32 = 1000;

/// Entries handed out per `readdirplus` call. The kernel's buffer (one page,
/// 4 KiB) takes fewer; entries it does not take are given back, so this only
/// bounds that waste.
const ENTRIES_PER_CALL: usize = 128;

/// First child's offset, after `.` and `..`.
const FIRST_CHILD_OFFSET: u64 = 2;

/// S3's limit on a key's length, in bytes of UTF-8 (S3 object key naming
/// rules). A longer key cannot be an object this mount could ever write.
const MAX_KEY_BYTES: usize = 1024;

/// Pages in a row that list only what was already listed before the listing
/// counts as a loop. S3 never repeats a key; one such page is already a
/// store bug, this many is a store that will not move on.
const MAX_PAGES_WITHOUT_PROGRESS: usize = 8;

#[derive(Clone)]
pub(super) struct Resolved {
    name: String,
    kind: FileKind,
    key: String,
    stat: Stat,
}

pub struct DirStream {
    ino: u64,
    /// Identifies this pass over the directory (see `Filesystem::is_fresh`).
    generation: u64,
    prefix: String,
    page: Vec<Resolved>,
    /// Offset of `page[0]`.
    page_offset: u64,
    /// Token of the first page not taken from the lister yet; a new lister
    /// starts there.
    continuation: Option<String>,
    /// Files held back until the next page shows whether a prefix shadows them.
    carried: Vec<ListedFile>,
    is_listed_to_end: bool,
    /// The greatest key or prefix taken from the pages so far: the store
    /// lists in key order, so an entry at or before it is a repeat.
    listed_through: String,
    pages_without_progress: usize,
    /// Started at the first page wanted; dropped (and aborted) on failure,
    /// rewind and close.
    lister: Option<Lister>,
    /// What this pass listed so far, to be kept whole once it reaches the
    /// end; `None` once it was too large, or for a pass served from what
    /// was kept.
    collected: Option<Vec<Resolved>>,
    /// The namespace epoch when this pass began (see `walk`).
    epoch: Option<u64>,
}

impl DirStream {
    pub fn new(ino: u64, prefix: String, generation: u64) -> Self {
        DirStream {
            ino,
            generation,
            prefix,
            page: Vec::new(),
            page_offset: FIRST_CHILD_OFFSET,
            continuation: None,
            carried: Vec::new(),
            is_listed_to_end: false,
            listed_through: String::new(),
            pages_without_progress: 0,
            lister: None,
            collected: Some(Vec::new()),
            epoch: None,
        }
    }

    fn restart(&mut self, generation: u64) {
        *self = DirStream::new(self.ino, std::mem::take(&mut self.prefix), generation);
    }
}

impl<S: ObjectStore> Filesystem<S> {
    /// Entries from `offset` on, with attributes; an empty result ends the
    /// listing. See `DirEntry` for the lookup references they carry.
    pub async fn readdirplus(&self, fh: u64, offset: u64) -> Result<Vec<DirEntry>> {
        let stream = self
            .dirs
            .lock()
            .unwrap()
            .get(&fh)
            .cloned()
            .ok_or(Error::BadHandle { fh })?;
        // Held across the listing: readdir calls on one handle run in order.
        let mut stream = stream.lock().await;
        let mut entries = Vec::new();
        if offset < FIRST_CHILD_OFFSET {
            let (dot, dotdot) = self.dot_entries(stream.ino)?;
            for (name, entry, next_offset) in [(".", dot, 1), ("..", dotdot, 2)] {
                if next_offset > offset {
                    entries.push(DirEntry {
                        name: name.to_owned(),
                        next_offset,
                        entry,
                        counts_as_lookup: false,
                    });
                }
            }
        }
        let offset = offset.max(FIRST_CHILD_OFFSET);
        if offset < stream.page_offset {
            stream.restart(
                self.next_listing
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            );
        }
        while offset >= stream.page_offset + stream.page.len() as u64 && !stream.is_listed_to_end {
            self.next_page(&mut stream).await?;
        }
        let start = (offset - stream.page_offset) as usize;
        let parent = stream.ino;
        for (index, child) in stream
            .page
            .iter()
            .enumerate()
            .skip(start)
            .take(ENTRIES_PER_CALL)
        {
            let entry = self.remember_listed(
                parent,
                &child.name,
                child.kind,
                child.key.clone(),
                child.stat.clone(),
                Some(stream.generation),
            );
            entries.push(DirEntry {
                name: child.name.clone(),
                next_offset: stream.page_offset + index as u64 + 1,
                entry,
                counts_as_lookup: true,
            });
        }
        Ok(entries)
    }

    /// Replaces the held page with the next non-empty one, or marks the end.
    async fn next_page(&self, stream: &mut DirStream) -> Result<()> {
        stream.page_offset += stream.page.len() as u64;
        stream.page.clear();
        if stream.epoch.is_none() {
            stream.epoch = Some(self.walks.epoch());
            if let Some(listing) = self.kept_listing(&stream.prefix).await {
                let mut page = (*listing.entries).clone();
                self.add_created_here(stream.ino, &mut page, true);
                stream.page = page;
                stream.collected = None;
                stream.is_listed_to_end = true;
                self.listing_completed(stream, listing.listed_at);
                return Ok(());
            }
        }
        while stream.page.is_empty() && !stream.is_listed_to_end {
            if stream.lister.is_none() {
                stream.lister = Some(lister::start(
                    self,
                    stream.ino,
                    stream.prefix.clone(),
                    stream.continuation.clone(),
                ));
            }
            let lister = stream.lister.as_mut().expect("just started");
            let mut page = match lister.pages.recv().await {
                Some(Ok(page)) => page,
                // The next call starts a new lister at the same page.
                Some(Err(error)) => {
                    stream.lister = None;
                    return Err(error);
                }
                None => {
                    stream.lister = None;
                    return Err(Error::from(StoreError::Other {
                        source: "listing task ended without a page".into(),
                    }));
                }
            };
            if let Err(error) = self.keep_sane_entries(stream, &mut page) {
                stream.lister = None;
                return Err(error);
            }
            stream.continuation = page.next.clone();
            let is_last_page = page.next.is_none();
            stream.is_listed_to_end = is_last_page;

            let mut directories: Vec<(String, String)> = Vec::new();
            for prefix in &page.common_prefixes {
                match directory_name(&stream.prefix, prefix) {
                    Some(name) => directories.push((name.to_owned(), prefix.clone())),
                    None => self.warn_once(prefix, "not a valid directory name"),
                }
            }
            let directory_names: HashSet<&str> =
                directories.iter().map(|(n, _)| n.as_str()).collect();

            // The last key or prefix of this page: a prefix `f/` for a file
            // `f` can only come later if it sorts after everything here.
            let last_on_page = page
                .files
                .iter()
                .map(|file| file.key.as_str())
                .chain(page.common_prefixes.iter().map(String::as_str))
                .max()
                .unwrap_or("")
                .to_owned();

            let mut resolved = Vec::with_capacity(page.files.len() + directories.len());
            let mut carried = Vec::new();
            // Old-style directory objects beside a prefix of the same name,
            // for the attributes of a directory that has no marker.
            let mut old_style_stats: HashMap<String, Stat> = HashMap::new();
            for file in std::mem::take(&mut stream.carried)
                .into_iter()
                .chain(page.files)
            {
                if file.key == stream.prefix {
                    continue; // this directory's own marker
                }
                let Some(name) = file_name(&stream.prefix, &file.key) else {
                    self.warn_once(&file.key, "not a valid file name");
                    continue;
                };
                let is_directory = self.is_old_style_directory(&file.stat.headers);
                if directory_names.contains(name) {
                    if is_directory {
                        old_style_stats.insert(name.to_owned(), file.stat);
                    } else {
                        self.warn_shadowed(&file.key);
                    }
                    continue;
                }
                if !is_last_page && format!("{}/", file.key).as_str() > last_on_page.as_str() {
                    carried.push(file);
                    continue;
                }
                resolved.push(if is_directory {
                    Resolved {
                        name: name.to_owned(),
                        kind: FileKind::Directory,
                        key: format!("{}/", file.key),
                        stat: directory_stat(file.stat),
                    }
                } else {
                    Resolved {
                        name: name.to_owned(),
                        kind: FileKind::File,
                        key: file.key,
                        stat: file.stat,
                    }
                });
            }
            stream.carried = carried;

            let mut directory_stats = page.directory_stats;
            resolved.extend(directories.into_iter().map(|(name, key)| {
                let stat = directory_stats
                    .remove(&key)
                    .or_else(|| old_style_stats.remove(&name).map(directory_stat))
                    .unwrap_or_else(|| self.implicit_directory_stat());
                Resolved {
                    name,
                    kind: FileKind::Directory,
                    stat,
                    key,
                }
            }));
            if !self.walks.keeps_listings() {
                stream.collected = None;
            }
            if let Some(collected) = stream.collected.as_mut() {
                if collected.len() + resolved.len() > walk::MAX_DIRECTORY_ENTRIES {
                    stream.collected = None;
                } else {
                    collected.extend(resolved.iter().cloned());
                }
            }
            self.add_created_here(stream.ino, &mut resolved, is_last_page);
            resolved.sort_by(|a, b| a.name.cmp(&b.name));
            stream.page = resolved;
            if is_last_page {
                stream.lister = None;
                if let (Some(mut collected), Some(epoch)) = (stream.collected.take(), stream.epoch)
                {
                    collected.sort_by(|a, b| a.name.cmp(&b.name));
                    self.walks.keep(&stream.prefix, collected, epoch);
                }
                self.listing_completed(stream, Instant::now());
            }
        }
        Ok(())
    }

    /// Files created here and not uploaded yet: listed once, from the inode
    /// table, at the end of the listing; the store's entry of such a name is
    /// left out.
    fn add_created_here(&self, ino: u64, page: &mut Vec<Resolved>, is_last_page: bool) {
        let created = self.created_names(ino);
        if created.is_empty() {
            return;
        }
        page.retain(|entry| !created.contains(&entry.name));
        if is_last_page {
            let inodes = self.inodes.lock().unwrap();
            for name in created {
                if let Some((_, inode)) = inodes.child(ino, &name) {
                    page.push(Resolved {
                        name,
                        kind: inode.kind,
                        key: inode.key.clone(),
                        stat: inode.stat.clone(),
                    });
                }
            }
        }
        page.sort_by(|a, b| a.name.cmp(&b.name));
    }

    fn listing_completed(&self, stream: &DirStream, at: Instant) {
        self.completed_listings
            .lock()
            .unwrap()
            .put(stream.generation, at);
        self.walks.completed(&stream.prefix);
    }

    /// The whole listing of `prefix` without listing it: kept from a pass
    /// within the TTL, or from a walk under way (waiting for it to get
    /// there), which this pass may start.
    async fn kept_listing(&self, prefix: &str) -> Option<walk::Listing> {
        let parent = (prefix != self.config.prefix).then(|| parent_prefix(prefix));
        match self.walks.opened(prefix, parent) {
            walk::Opened::Kept(entries) => Some(entries),
            walk::Opened::AwaitWalk => self.walks.listed_by_walk(prefix).await,
            walk::Opened::StartWalk { root, id } => {
                self.spawn_walk(root, id);
                self.walks.listed_by_walk(prefix).await
            }
            walk::Opened::ListAndStartWalk { root, id } => {
                self.spawn_walk(root, id);
                None
            }
            walk::Opened::List => None,
        }
    }

    fn spawn_walk(&self, root: String, id: u64) {
        let context = walk::WalkContext {
            meta: Arc::clone(&self.meta),
            walks: Arc::clone(&self.walks),
            posix_metadata: self.config.posix_metadata,
            implicit_directory_stat: self.implicit_directory_stat(),
        };
        let task = self.spawn_listing(walk::walk(context, id, root));
        self.walks.walk_started(id, task.abort_handle());
    }

    /// Drops from a page what no store keeping to S3's rules would list (see
    /// the module notes), with a warning; fails when the store loops.
    fn keep_sane_entries(&self, stream: &mut DirStream, page: &mut ResolvedPage) -> Result<()> {
        let listed = page.files.len() + page.common_prefixes.len();
        let mut seen = HashSet::new();
        let mut is_sane = |key: &str| {
            let why = if !key.starts_with(stream.prefix.as_str()) {
                "listed outside the directory asked for"
            } else if key.len() > MAX_KEY_BYTES {
                "longer than S3's 1,024 bytes"
            } else if key <= stream.listed_through.as_str() || !seen.insert(key.to_owned()) {
                "listed twice, or out of order"
            } else {
                return true;
            };
            self.warn_once(key, why);
            false
        };
        page.files.retain(|file| is_sane(&file.key));
        page.common_prefixes.retain(|prefix| is_sane(prefix));
        if let Some(last) = page
            .files
            .iter()
            .map(|file| &file.key)
            .chain(&page.common_prefixes)
            .max()
        {
            stream.listed_through.clone_from(last);
        }
        let is_repeat = listed > 0 && page.files.is_empty() && page.common_prefixes.is_empty();
        stream.pages_without_progress = if is_repeat {
            stream.pages_without_progress + 1
        } else {
            0
        };
        let why = if page.next.is_some() && page.next == stream.continuation {
            "the store answered a page with the continuation token it was asked with"
        } else if stream.pages_without_progress >= MAX_PAGES_WITHOUT_PROGRESS {
            "the store keeps listing keys it already listed"
        } else {
            return Ok(());
        };
        log::warn!("listing of {:?} stopped: {why}", stream.prefix);
        Err(Error::from(StoreError::Other {
            source: format!("listing of {:?} stopped: {why}", stream.prefix).into(),
        }))
    }
}

/// The directory holding the directory `prefix` (`a/b/` → `a/`, `a/` → ``).
fn parent_prefix(prefix: &str) -> &str {
    let inner = prefix.strip_suffix('/').unwrap_or(prefix);
    inner.rfind('/').map_or("", |slash| &prefix[..=slash])
}

/// The name a listed object `key` has in the directory `prefix`, if it can
/// be a file there.
pub(super) fn file_name<'k>(prefix: &str, key: &'k str) -> Option<&'k str> {
    key.strip_prefix(prefix)
        .filter(|name| key.len() <= MAX_KEY_BYTES && is_valid_name(name))
}

/// The name a listed common prefix (`prefix` + name + `/`) has in the
/// directory `prefix`, if it can be a directory there.
pub(super) fn directory_name<'k>(prefix: &str, common_prefix: &'k str) -> Option<&'k str> {
    common_prefix
        .strip_prefix(prefix)?
        .strip_suffix('/')
        .filter(|name| common_prefix.len() <= MAX_KEY_BYTES && is_valid_name(name))
}

/// Whether a listing of `prefix` shows anything under it, as a directory
/// probe asks; entries outside it do not count.
pub(super) fn lists_anything_under(page: &ListPage, prefix: &str) -> bool {
    page.objects
        .iter()
        .any(|object| object.key.starts_with(prefix))
        || page
            .common_prefixes
            .iter()
            .any(|common| common.starts_with(prefix))
}
