//! The walk itself: one flat listing of a tree, its keys placed into the
//! directories they belong to, each directory handed to [`Walks`] as the
//! listing passes its last key.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;

use super::{MAX_DIRECTORY_ENTRIES, Walks};
use crate::config::PosixMetadata;
use crate::fs::dir::{Resolved, resolve_file};
use crate::fs::metadata::MetadataRequests;
use crate::fs::{FileKind, Stat, is_valid_name};
use crate::object_format::PosixHeaders;
use crate::store::{ListFrom, ListPage, ListedObject, ObjectStore};

/// Keys per flat listing page: S3's maximum, from the first page on. Walks
/// once began with 100 keys doubling to 1,000, so that the first
/// subdirectory was ready early; since the walk starts at the first descent
/// its first page is on its way while that directory is listed on its own,
/// and the small pages only cost round trips: measured 2026-12-05 on s3s-fs,
/// `find` over 10,000 keys 0.51 s instead of 0.64 s (medians of 12,
/// alternating), a `tar` of 2,000 files after a remount 0.33 s instead of
/// 0.39 s (medians of 5, bench/cache.sh).
const FLAT_PAGE_KEYS: u32 = 1000;

/// A directory the flat listing is inside of.
struct OpenDirectory {
    prefix: String,
    files: Vec<Resolved>,
    /// Subdirectories by name, with their marker's attributes if any.
    directories: Vec<(String, Option<Stat>)>,
}

impl OpenDirectory {
    fn new(prefix: String) -> OpenDirectory {
        OpenDirectory {
            prefix,
            files: Vec::new(),
            directories: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.files.len() + self.directories.len()
    }

    /// What `into_entries` will show for the subdirectory `name`.
    fn subdirectory_stat(
        &self,
        name: &str,
        is_old_style: impl Fn(&PosixHeaders) -> bool,
        implicit: &Stat,
    ) -> Stat {
        let marker = self
            .directories
            .iter()
            .rev()
            .find(|(directory, _)| directory == name)
            .and_then(|(_, marker)| marker.clone());
        let shadowed = self.files.iter().find(|file| file.name == name);
        directory_entry_stat(marker, shadowed, is_old_style, implicit)
    }

    /// Its entries as a delimited listing shows them: a directory hides a
    /// file of its name, whose attributes it takes when that file is an
    /// old-style directory object and it has no marker.
    fn into_entries(
        self,
        is_old_style: impl Fn(&PosixHeaders) -> bool,
        implicit: &Stat,
    ) -> Vec<Resolved> {
        let mut files: HashMap<String, Resolved> = self
            .files
            .into_iter()
            .map(|file| (file.name.clone(), file))
            .collect();
        let mut entries = Vec::with_capacity(files.len() + self.directories.len());
        for (name, marker) in self.directories {
            let shadowed = files.remove(&name);
            let stat = directory_entry_stat(marker, shadowed.as_ref(), &is_old_style, implicit);
            entries.push(Resolved {
                key: format!("{}{name}/", self.prefix),
                name,
                kind: FileKind::Directory,
                stat,
            });
        }
        for (_, file) in files {
            if is_old_style(&file.stat.headers) {
                entries.push(Resolved {
                    key: format!("{}/", file.key),
                    kind: FileKind::Directory,
                    stat: crate::fs::dir::directory_stat(file.stat),
                    name: file.name,
                });
            } else {
                entries.push(file);
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        // An old-style object beside a marker-less prefix of its name.
        entries.dedup_by(|later, earlier| later.name == earlier.name);
        entries
    }
}

/// The attributes a listing shows for a subdirectory: its marker's, else
/// those of an old-style directory object of its name that it shadows, else
/// a directory's without attributes of its own.
fn directory_entry_stat(
    marker: Option<Stat>,
    shadowed: Option<&Resolved>,
    is_old_style: impl Fn(&PosixHeaders) -> bool,
    implicit: &Stat,
) -> Stat {
    marker
        .or_else(|| {
            shadowed
                .filter(|file| is_old_style(&file.stat.headers))
                .map(|file| crate::fs::dir::directory_stat(file.stat.clone()))
        })
        .unwrap_or_else(|| implicit.clone())
}

/// What a walk needs of the filesystem.
pub(in crate::fs) struct WalkContext<S> {
    pub meta: Arc<MetadataRequests<S>>,
    pub walks: Arc<Walks>,
    pub posix_metadata: PosixMetadata,
    pub implicit_directory_stat: Stat,
}

/// Lists everything under `root` flat, in ranges side by side, and keeps
/// every directory under it as a listing passes its last key.
pub(in crate::fs) async fn walk<S: ObjectStore>(cx: WalkContext<S>, id: u64, root: String) {
    // Whatever ends this task (a panic, an abort), waiters must not wait
    // for it: it ends the walk unless the walk finished.
    let _ends = EndsWalk {
        walks: &cx.walks,
        id,
    };
    let listings = (0..cx.walks.listings()).map(|_| async {
        while let Some(range) = cx.walks.claim_range(id).await {
            walk_segment(&cx, id, &root, range).await;
        }
    });
    futures::future::join_all(listings).await;
}

/// One of a walk's listings: the keys after `start` through `end`.
pub(super) struct SegmentRange {
    pub(super) segment: usize,
    pub(super) start: Option<String>,
    pub(super) end: Option<String>,
    /// The only listing of its walk, which sees every entry of the root.
    pub(super) whole_root: bool,
}

async fn walk_segment<S: ObjectStore>(
    cx: &WalkContext<S>,
    id: u64,
    root: &str,
    range: SegmentRange,
) {
    // The next page is listed while this one's HEADs run, as a client
    // listing and HEADing by hand would.
    let (sender, mut pages) = tokio::sync::mpsc::channel(1);
    // The end moves earlier when the first page shows the range too large.
    let (segment, mut end) = (range.segment, range.end.clone());
    let list = async move {
        let mut continuation: Option<String> = None;
        loop {
            let Ok(slot) = sender.reserve().await else {
                return; // the walk stopped
            };
            if !cx.walks.room_to_walk(id, segment).await {
                return;
            }
            let from = match (&continuation, &range.start) {
                (Some(token), _) => ListFrom::Continue(token),
                (None, Some(start)) => ListFrom::After(start),
                (None, None) => ListFrom::Start,
            };
            let page = cx
                .meta
                .list_page(
                    root,
                    false,
                    from,
                    cx.walks.page_keys(id, segment, FLAT_PAGE_KEYS),
                )
                .await
                .map(|page| {
                    if let Some(last) = page.objects.last()
                        && let Some(now) =
                            cx.walks
                                .walk_page_seen(id, segment, &last.key, page.objects.len())
                    {
                        end = now;
                    }
                    end_at(page, end.as_deref())
                });
            continuation = page.as_ref().ok().and_then(|page| page.next.clone());
            slot.send(page);
            if continuation.is_none() {
                return; // the last page, or a failure
            }
        }
    };
    let place_pages = async move {
        let mut walked = Walked::new(cx, id, root, segment, range.whole_root);
        while let Some(page) = pages.recv().await {
            let page = match page {
                Ok(page) => page,
                Err(error) => return walked.stop(&format!("listing failed: {error}")),
            };
            if cx.posix_metadata == PosixMetadata::FromHeaders {
                cx.meta.load_headers_from_disk(&page.objects).await;
            }
            let mut resolved = futures::stream::iter(page.objects)
                .map(|object| resolve(cx, object))
                .buffered(cx.meta.max_concurrency());
            // Placed as they come, so that directories complete early.
            while let Some(object) = resolved.next().await {
                let placed = object.and_then(|(object, stat)| walked.place(object, stat));
                if let Err(why) = placed {
                    return walked.stop(&why);
                }
            }
            cx.walks
                .walk_listed_through(id, segment, &walked.listed_through);
            if page.next.is_none() {
                return walked.finish();
            }
        }
        // The listing loop gave up: the walk is over already.
    };
    tokio::join!(list, place_pages);
}

/// `page` without the keys after `end`, and its last page if it had any.
fn end_at(mut page: ListPage, end: Option<&str>) -> ListPage {
    let Some(end) = end else {
        return page;
    };
    if let Some(past) = page
        .objects
        .iter()
        .position(|object| object.key.as_str() > end)
    {
        page.objects.truncate(past);
        page.next = None;
    }
    page
}

struct EndsWalk<'a> {
    walks: &'a Walks,
    id: u64,
}

impl Drop for EndsWalk<'_> {
    fn drop(&mut self) {
        self.walks.walk_ended(self.id);
    }
}

/// The directories one of a walk's listings is inside of, and how far it
/// got.
struct Walked<'a, S> {
    cx: &'a WalkContext<S>,
    id: u64,
    root: &'a str,
    segment: usize,
    /// Whether this listing sees all of the root's entries, and keeps it.
    whole_root: bool,
    /// The namespace epoch when the walk began.
    epoch: u64,
    open: Vec<OpenDirectory>,
    listed_through: String,
}

impl<'a, S: ObjectStore> Walked<'a, S> {
    fn new(
        cx: &'a WalkContext<S>,
        id: u64,
        root: &'a str,
        segment: usize,
        whole_root: bool,
    ) -> Self {
        Walked {
            cx,
            id,
            root,
            segment,
            whole_root,
            epoch: cx.walks.epoch(),
            open: vec![OpenDirectory::new(root.to_owned())],
            listed_through: String::new(),
        }
    }

    fn place(&mut self, object: ListedObject, stat: Stat) -> Result<(), String> {
        let key = object.key.clone();
        if !self.listed_through.is_empty() && key <= self.listed_through {
            return Err(format!("{key:?} listed twice or out of order"));
        }
        let (cx, id, epoch) = (self.cx, self.id, self.epoch);
        if !place(&mut self.open, object, stat, |directory, parent| {
            keep(cx, id, epoch, directory, parent);
        }) {
            return Err(format!("{key:?} is outside the tree"));
        }
        if self
            .open
            .iter()
            .any(|directory| directory.len() > MAX_DIRECTORY_ENTRIES)
        {
            return Err("a directory too large to hold".to_owned());
        }
        self.listed_through = key;
        Ok(())
    }

    fn finish(mut self) {
        // A listing of one range saw only part of the root's entries.
        let kept_below = usize::from(!self.whole_root);
        while self.open.len() > kept_below {
            let directory = self.open.pop().expect("non-empty");
            keep(self.cx, self.id, self.epoch, directory, self.open.last());
        }
        self.cx.walks.segment_listed(self.id, self.segment);
    }

    fn stop(self, why: &str) {
        log::debug!("walk of {:?} stopped ({why}); walked as usual", self.root);
        self.cx.walks.walk_ended(self.id);
    }
}

/// Keeps `directory`, with the attributes `parent` (still open: a
/// directory closes before its parent) shows for it.
fn keep<S>(
    cx: &WalkContext<S>,
    id: u64,
    epoch: u64,
    directory: OpenDirectory,
    parent: Option<&OpenDirectory>,
) {
    let is_old_style = |headers: &PosixHeaders| {
        cx.posix_metadata == PosixMetadata::FromHeaders && headers.is_old_style_directory()
    };
    let own = parent.and_then(|parent| {
        let name = directory.prefix[parent.prefix.len()..].strip_suffix('/')?;
        Some(parent.subdirectory_stat(name, is_old_style, &cx.implicit_directory_stat))
    });
    let prefix = directory.prefix.clone();
    let entries = directory.into_entries(is_old_style, &cx.implicit_directory_stat);
    cx.walks.walk_kept(id, &prefix, entries, epoch, own);
}

/// A listed key's attributes, as a delimited listing resolves them; an
/// error when a HEAD failed (the walk stops: a directory missing a file
/// must not be kept).
async fn resolve<S: ObjectStore>(
    cx: &WalkContext<S>,
    object: ListedObject,
) -> Result<(ListedObject, Stat), String> {
    if object.key.ends_with('/') {
        let stat = if cx.posix_metadata == PosixMetadata::FromHeaders {
            crate::fs::dir::directory_marker_stat(&cx.meta, &object.key, Some(&object)).await
        } else {
            None
        };
        return Ok((
            object,
            stat.unwrap_or_else(|| cx.implicit_directory_stat.clone()),
        ));
    }
    let file = resolve_file(&cx.meta, cx.posix_metadata, object.clone())
        .await
        .map_err(|error| format!("HEAD of {:?}: {error}", object.key))?;
    Ok((object, file.stat))
}

/// Puts one listed key where it belongs, closing (and handing to `close`)
/// every open directory the key is past. False when the key is not under
/// the innermost open directory after closing, which keys in order never
/// are.
fn place(
    open: &mut Vec<OpenDirectory>,
    object: ListedObject,
    stat: Stat,
    mut close: impl FnMut(OpenDirectory, Option<&OpenDirectory>),
) -> bool {
    let key = object.key;
    while open.len() > 1 && !key.starts_with(open.last().expect("non-empty").prefix.as_str()) {
        let closed = open.pop().expect("non-empty");
        close(closed, open.last());
    }
    let Some(innermost) = open.last() else {
        return false;
    };
    if !key.starts_with(innermost.prefix.as_str()) {
        return false;
    }
    // Keys S3 could not hold are skipped, as a delimited listing skips them.
    if key.len() > crate::fs::dir::MAX_KEY_BYTES {
        return true;
    }
    let rest = key[innermost.prefix.len()..].to_owned();
    let mut components: Vec<&str> = rest.split('/').collect();
    let leaf = components.pop().unwrap_or_default();
    // Invalid names are skipped, as a delimited listing skips them.
    if components.iter().any(|name| !is_valid_name(name)) {
        return true;
    }
    let is_marker = leaf.is_empty();
    let deepest = components.len();
    for (depth, name) in components.into_iter().enumerate() {
        let parent = open.last_mut().expect("non-empty");
        let prefix = format!("{}{name}/", parent.prefix);
        let marker = (is_marker && depth + 1 == deepest).then(|| stat.clone());
        parent.directories.push((name.to_owned(), marker));
        open.push(OpenDirectory::new(prefix));
    }
    if !is_marker && is_valid_name(leaf) {
        let innermost = open.last_mut().expect("non-empty");
        innermost.files.push(Resolved {
            name: leaf.to_owned(),
            kind: FileKind::File,
            key,
            stat,
        });
    }
    true
}
