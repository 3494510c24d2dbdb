//! Names and attributes: looking a name up (from the inode table while
//! fresh, else from the store), remembering what the kernel was told, and
//! refreshing a stale entry's attributes.

use super::*;
use crate::store::ListFrom;

impl<S: ObjectStore> Filesystem<S> {
    /// Looks a name up in a directory: answered from the inode table while
    /// fresh, else by a HEAD of the object and a one-key listing of the prefix,
    /// sent together. The name is a directory when keys live under the
    /// prefix or when the object is an old-style directory object (see
    /// `crate::object_format`).
    pub async fn lookup(&self, parent: u64, name: &str) -> Result<Entry> {
        let parent_key = self.directory_key(parent)?;
        match check_name(name) {
            Ok(()) => {}
            Err(Error::InvalidArgument) => return Err(Error::NotFound),
            Err(error) => return Err(error),
        }
        /// What the inode table or the parent's listing knew of the name.
        #[derive(Clone, Copy)]
        struct KnownEntry {
            kind: FileKind,
            /// Its attributes came from headers, not from the mount options.
            had_headers: bool,
        }
        /// What the inode table says of the name.
        enum InTable {
            Answered(Entry),
            /// Known, but no longer trusted without asking again.
            Stale(KnownEntry, String),
            Unknown,
        }
        // `vouched`: a walk's listing of the directory says it exists.
        let in_table = |vouched: bool| {
            let mut inodes = self.inodes.lock().unwrap();
            match inodes.child(parent, name) {
                Some((ino, child))
                    if self.is_fresh(child)
                        || child.is_being_written
                        || (child.kind == FileKind::Directory
                            && (vouched || self.listings.is_confirmed(ino))) =>
                {
                    let attr = self.attr(ino, child.kind, &child.stat);
                    inodes.add_lookup(ino);
                    InTable::Answered(self.entry(attr))
                }
                Some((_, child)) => InTable::Stale(
                    KnownEntry {
                        kind: child.kind,
                        had_headers: child.stat.headers != PosixHeaders::default(),
                    },
                    child.key.clone(),
                ),
                None => InTable::Unknown,
            }
        };
        let known = match in_table(false) {
            InTable::Answered(entry) => return Ok(entry),
            // A directory a walk is listing: the walk says soon enough
            // whether it still has entries, without a probe of its own.
            InTable::Stale(known, key)
                if known.kind == FileKind::Directory && self.walks.vouches_for(&key).await =>
            {
                match in_table(true) {
                    InTable::Answered(entry) => return Ok(entry),
                    InTable::Stale(known, _) => Some(known),
                    InTable::Unknown => None,
                }
            }
            InTable::Stale(known, _) => Some(known),
            InTable::Unknown => None,
        };
        if self.negative.is_absent(parent, name) {
            return Err(Error::NotFound);
        }
        if known.is_none() {
            // A name the kernel got from a plain readdir (no inode here)
            // that a walk listed as a directory.
            let dir_prefix = format!("{parent_key}{name}/");
            if let Some(stat) = self.walks.vouched_directory(&dir_prefix).await {
                return Ok(self.remember(parent, name, FileKind::Directory, dir_prefix, stat));
            }
        }
        let known = match known {
            Some(known) => Some(known),
            None => match self.known_in_directory(parent, &parent_key, name).await {
                Known::Absent => return Err(Error::NotFound),
                Known::Present(kind) => Some(KnownEntry {
                    kind,
                    had_headers: false,
                }),
                Known::Unknown => None,
            },
        };
        let key = format!("{parent_key}{name}");
        let dir_prefix = format!("{key}/");
        // A name already known is revalidated as what it was, with one
        // request; only a change of kind (or a new name) costs both.
        if known.is_some_and(|known| known.kind == FileKind::File) {
            match self.head(&key, Sharing::JoinInFlight).await {
                Ok(meta) => {
                    let stat = Stat::from_head(&meta);
                    if !self.is_old_style_directory(&stat.headers) {
                        return Ok(self.remember(parent, name, FileKind::File, key, stat));
                    }
                }
                Err(error) if matches!(*error, StoreError::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        if let Some(KnownEntry {
            kind: FileKind::Directory,
            had_headers,
        }) = known
        {
            let stat = match self.probe_directory(&dir_prefix).await? {
                Some(dir::DirectoryProbe::Marker(stat)) => Some(stat),
                // Attributes without a marker came from an old-style
                // directory object, which only a HEAD finds again.
                Some(dir::DirectoryProbe::KeysOnly) if had_headers => {
                    let head = self.head(&key, Sharing::JoinInFlight).await;
                    Some(self.unmarked_directory_stat(&key, head.as_ref().ok()))
                }
                Some(dir::DirectoryProbe::KeysOnly) => Some(self.implicit_directory_stat()),
                None => None,
            };
            if let Some(stat) = stat {
                return Ok(self.remember(parent, name, FileKind::Directory, dir_prefix, stat));
            }
        }
        let (head, directory) = tokio::join!(
            self.head(&key, Sharing::JoinInFlight),
            self.probe_directory(&dir_prefix)
        );
        let stat = match directory? {
            Some(dir::DirectoryProbe::Marker(stat)) => {
                self.warn_if_shadowed(&key, head.as_ref().ok());
                Some(stat)
            }
            Some(dir::DirectoryProbe::KeysOnly) => {
                Some(self.unmarked_directory_stat(&key, head.as_ref().ok()))
            }
            None => None,
        };
        if let Some(stat) = stat {
            return Ok(self.remember(parent, name, FileKind::Directory, dir_prefix, stat));
        }
        match head {
            Ok(meta) => {
                let stat = Stat::from_head(&meta);
                if self.is_old_style_directory(&stat.headers) {
                    let stat = dir::directory_stat(stat);
                    return Ok(self.remember(parent, name, FileKind::Directory, dir_prefix, stat));
                }
                Ok(self.remember(parent, name, FileKind::File, key, stat))
            }
            Err(error) if matches!(*error, StoreError::NotFound { .. }) => {
                self.negative.insert(parent, name);
                self.contents.set(parent, name, None);
                self.contents.missed(parent);
                Err(Error::NotFound)
            }
            Err(error) => Err(error.into()),
        }
    }

    pub(super) async fn head(&self, key: &str, sharing: Sharing) -> HeadResult {
        self.meta.head(key, sharing).await
    }

    /// Whether anything lives under `prefix`, and the directory's
    /// attributes if it has a marker: one flat one-key listing, which shows
    /// the marker first if there is one (it sorts before every key under
    /// it). Not delimited: to group keys into common prefixes a server may
    /// read the whole subtree (s3s-fs does: 45 ms at 10,000 keys, seconds at
    /// a million), where the first key at any depth answers the question.
    pub(super) async fn probe_directory(
        &self,
        prefix: &str,
    ) -> Result<Option<dir::DirectoryProbe>> {
        let page = self
            .meta
            .list_page(prefix, false, ListFrom::Start, 1)
            .await?;
        if !dir::lists_anything_under(&page, prefix) {
            return Ok(None);
        }
        let marker = page.objects.first().filter(|object| object.key == prefix);
        let stat = match (self.config.posix_metadata, marker) {
            (PosixMetadata::FromHeaders, Some(marker)) => {
                dir::directory_marker_stat(&self.meta, prefix, Some(marker)).await
            }
            _ => None,
        };
        Ok(Some(stat.map_or(
            dir::DirectoryProbe::KeysOnly,
            dir::DirectoryProbe::Marker,
        )))
    }

    /// A directory known only from keys under it: no size, ETag or headers of
    /// its own, and the mount time as mtime.
    pub(super) fn implicit_directory_stat(&self) -> Stat {
        Stat {
            mtime: Some(self.mounted_at),
            ..Stat::default()
        }
    }

    pub(super) fn remember(
        &self,
        parent: u64,
        name: &str,
        kind: FileKind,
        key: String,
        stat: Stat,
    ) -> Entry {
        self.remember_listed(parent, name, kind, key, stat, None)
    }

    /// `remember`, for an entry reported by the listing `listed_in`.
    pub(super) fn remember_listed(
        &self,
        parent: u64,
        name: &str,
        kind: FileKind,
        key: String,
        stat: Stat,
        listed_in: Option<u64>,
    ) -> Entry {
        let attr = {
            let mut inodes = self.inodes.lock().unwrap();
            let ino = inodes.remember(parent, name, kind, key, stat.clone(), listed_in);
            self.attr(ino, kind, &stat)
        };
        self.negative.remove(parent, name);
        self.contents.set(parent, name, Some(kind));
        self.entry(attr)
    }

    /// The kernel dropped `count` references; once it holds none, whatever
    /// was kept by inode number goes with the inode.
    pub fn forget(&self, ino: u64, count: u64) {
        let Some(forgotten) = self.inodes.lock().unwrap().forget(ino, count) else {
            return;
        };
        if forgotten.kind == FileKind::Directory {
            self.contents.remove_directory(ino);
            self.listings.forget(ino);
            let mut created_here = self.created_here.lock().unwrap();
            if created_here.get(&ino).is_some_and(HashSet::is_empty) {
                created_here.remove(&ino);
            }
        }
    }

    /// Entries (parent, name) the kernel should be asked to forget because
    /// the inode table holds more than `--max-inodes`, enough to bring it to
    /// nine tenths of that (at most `MAX_RELEASED_AT_ONCE`), and how many it
    /// holds. Empty while within the bound.
    pub fn entries_over_budget(&self) -> (usize, Vec<(u64, String)>) {
        let mut inodes = self.inodes.lock().unwrap();
        let held = inodes.len();
        let budget = self.config.max_inodes;
        if held <= budget {
            return (held, Vec::new());
        }
        let excess = (held - budget / 10 * 9).min(MAX_RELEASED_AT_ONCE);
        (held, inodes.oldest_entries(excess))
    }

    pub fn max_inodes(&self) -> usize {
        self.config.max_inodes
    }

    pub async fn getattr(&self, ino: u64) -> Result<Entry> {
        self.revalidate(ino, Sharing::JoinInFlight).await?;
        let inodes = self.inodes.lock().unwrap();
        let inode = inodes.get(ino).ok_or(Error::NotFound)?;
        Ok(self.entry(self.attr(ino, inode.kind, &inode.stat)))
    }

    /// Refreshes a file's stat from the store once its TTL has passed.
    /// Directories are not rechecked: their attributes come from the mount;
    /// nor are files this mount is writing: the local stat is the truth.
    pub(super) async fn revalidate(&self, ino: u64, sharing: Sharing) -> Result<()> {
        let key = {
            let inodes = self.inodes.lock().unwrap();
            let inode = inodes.get(ino).ok_or(Error::NotFound)?;
            if inode.kind == FileKind::Directory || inode.is_being_written || self.is_fresh(inode) {
                return Ok(());
            }
            inode.key.clone()
        };
        let meta = self.head(&key, sharing).await?;
        let stat = Stat::from_head(&meta);
        let mut inodes = self.inodes.lock().unwrap();
        if let Some(inode) = inodes.get_mut(ino)
            && !inode.is_being_written
        {
            inode.stat = stat;
            inode.validated_at = std::time::Instant::now();
        }
        Ok(())
    }
}
