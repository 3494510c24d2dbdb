//! Changing the namespace: unlink, mkdir, rmdir, rename.
//!
//! S3 has no rename: a file moves by CopyObject then DeleteObject, so both
//! names exist for a moment and never neither. A file open with changes is
//! uploaded under its new name before the old one goes, and a failed upload
//! fails the rename with both the old name and the staged changes kept.

use futures::StreamExt;
use futures::stream;

use crate::fs::{Attr, Caller, Entry, Error, FileKind, Filesystem, Result, Stat, check_name};
use crate::object_format::{PosixHeaders, directory_marker_headers};
use crate::store::{ListFrom, ObjectStore, StoreError};
use crate::upload::{CopySource, copy_object};

use std::time::SystemTime;

use bytes::Bytes;

/// Keys moved at once when a directory is renamed.
const RENAME_PARALLELISM: usize = 16;

impl<S: ObjectStore> Filesystem<S> {
    pub async fn unlink(&self, parent: u64, name: &str) -> Result<()> {
        let _change = self.check_writable()?;
        let parent_key = self.directory_key(parent)?;
        let key = format!("{parent_key}{name}");
        let child = self
            .inodes
            .lock()
            .unwrap()
            .child(parent, name)
            .map(|(ino, inode)| (ino, inode.kind));
        if let Some((_, FileKind::Directory)) = child {
            return Err(Error::IsADirectory);
        }
        let writer = child.and_then(|(ino, _)| self.writes.lock().unwrap().get(&ino).cloned());
        match writer {
            // Locked across the delete, so that no commit of it recreates
            // the key in between.
            Some(writer) => {
                let mut open = writer.open.lock().await;
                open.restage_before_removal(&self.store, &self.upload)
                    .await?;
                self.store.delete(&key).await?;
                open.unlink(&self.store);
            }
            None => self.store.delete(&key).await?,
        }
        self.inodes.lock().unwrap().unlink(parent, name);
        self.forget_created(parent, name);
        self.negative.insert(parent, name);
        self.contents.set(parent, name, None);
        Ok(())
    }

    fn forget_created(&self, parent: u64, name: &str) {
        if let Some(names) = self.created_here.lock().unwrap().get_mut(&parent) {
            names.remove(name);
        }
    }

    /// Writes the marker object `name/`, so the directory exists while empty.
    pub async fn mkdir(&self, parent: u64, name: &str, mode: u32, caller: Caller) -> Result<Entry> {
        let _change = self.check_writable()?;
        let parent_key = self.directory_key(parent)?;
        check_name(name)?;
        let key = format!("{parent_key}{name}/");
        let headers = PosixHeaders::created(
            libc::S_IFDIR | (mode & 0o7777),
            caller.uid,
            caller.gid,
            SystemTime::now(),
        );
        self.store
            .put(&key, Bytes::new(), &directory_marker_headers(&headers))
            .await?;
        let stat = Stat {
            mtime: headers.mtime,
            headers,
            ..Stat::default()
        };
        let entry = self.remember(parent, name, FileKind::Directory, key, stat);
        self.contents.created(entry.attr.ino);
        Ok(entry)
    }

    /// ENOTEMPTY while any key lives under the prefix; removes the marker.
    pub async fn rmdir(&self, parent: u64, name: &str) -> Result<()> {
        let _change = self.check_writable()?;
        let parent_key = self.directory_key(parent)?;
        let child = self
            .inodes
            .lock()
            .unwrap()
            .child(parent, name)
            .map(|(_, inode)| inode.kind);
        if child.is_some_and(|kind| kind != FileKind::Directory) {
            return Err(Error::NotADirectory);
        }
        let prefix = format!("{parent_key}{name}/");
        if self.has_children(&prefix).await? {
            return Err(Error::NotEmpty);
        }
        if let Some((ino, _)) = self.inodes.lock().unwrap().child(parent, name)
            && self
                .created_here
                .lock()
                .unwrap()
                .get(&ino)
                .is_some_and(|names| !names.is_empty())
        {
            return Err(Error::NotEmpty);
        }
        self.remove_old_style_directory(&prefix).await?;
        self.store.delete(&prefix).await?;
        if let Some(ino) = self.inodes.lock().unwrap().unlink(parent, name) {
            self.contents.remove_directory(ino);
        }
        self.negative.insert(parent, name);
        self.contents.set(parent, name, None);
        Ok(())
    }

    /// Whether any key other than the marker lives under `prefix`.
    async fn has_children(&self, prefix: &str) -> Result<bool> {
        let page = self
            .store
            .list_page(prefix, false, ListFrom::Start, 2)
            .await?;
        Ok(page.objects.iter().any(|object| object.key != prefix)
            || !page.common_prefixes.is_empty())
    }

    /// rename(2). Files move by CopyObject and DeleteObject (a file being
    /// written just changes the key its commit will write); directories move
    /// key by key, which is not atomic: a failure part way leaves keys under
    /// both names, none lost.
    pub async fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        no_replace: bool,
    ) -> Result<()> {
        let _change = self.check_writable()?;
        check_name(new_name)?;
        let source = self.lookup(parent, name).await?;
        self.forget(source.attr.ino, 1);
        let destination = match self.lookup(new_parent, new_name).await {
            Ok(entry) => {
                self.forget(entry.attr.ino, 1);
                Some(entry.attr)
            }
            Err(Error::NotFound) => None,
            Err(error) => return Err(error),
        };
        if no_replace && destination.is_some() {
            return Err(Error::Exists);
        }
        let old_parent_key = self.directory_key(parent)?;
        let new_parent_key = self.directory_key(new_parent)?;
        let mut removed_old = Ok(());
        match source.attr.kind {
            FileKind::File | FileKind::Symlink | FileKind::Special(_) => {
                if destination.is_some_and(|d| d.kind == FileKind::Directory) {
                    return Err(Error::IsADirectory);
                }
                let old_key = format!("{old_parent_key}{name}");
                let new_key = format!("{new_parent_key}{new_name}");
                // A file open for writing under the new name is replaced,
                // i.e. unlinked: its later commits must not overwrite the
                // moved object. Locked across the move (the kernel already
                // serializes renames that touch the same names).
                let replaced = destination
                    .filter(|d| d.ino != source.attr.ino)
                    .and_then(|d| self.writes.lock().unwrap().get(&d.ino).cloned());
                let mut replaced = match &replaced {
                    Some(writer) => Some(writer.open.lock().await),
                    None => None,
                };
                if let Some(open) = replaced.as_mut() {
                    open.restage_before_removal(&self.store, &self.upload)
                        .await?;
                }
                let etag = self.rename_file(&source.attr, &old_key, &new_key).await?;
                removed_old = self.remove_old_key(&old_key).await;
                if let Some(open) = replaced.as_mut() {
                    open.unlink(&self.store);
                }
                drop(replaced);
                let mut inodes = self.inodes.lock().unwrap();
                inodes.rename(parent, name, new_parent, new_name, &old_key, &new_key);
                // A copy has an ETag of its own: a handle opened under the
                // new name must pin that one, not the old object's.
                if let Some(etag) = etag
                    && let Some(inode) = inodes.get_mut(source.attr.ino)
                {
                    if let Some(headers) = self.meta.headers().get(&new_key, &etag, None) {
                        inode.stat.headers = headers;
                    }
                    inode.stat.etag = etag;
                    inode.validated_at = std::time::Instant::now();
                }
                drop(inodes);
                if self.is_being_written(source.attr.ino) {
                    self.forget_created(parent, name);
                    self.created_here
                        .lock()
                        .unwrap()
                        .entry(new_parent)
                        .or_default()
                        .insert(new_name.to_owned());
                }
            }
            FileKind::Directory => {
                if let Some(destination) = destination {
                    if destination.kind != FileKind::Directory {
                        return Err(Error::NotADirectory);
                    }
                    if self
                        .has_children(&format!("{new_parent_key}{new_name}/"))
                        .await?
                    {
                        return Err(Error::NotEmpty);
                    }
                }
                let old_prefix = format!("{old_parent_key}{name}/");
                let new_prefix = format!("{new_parent_key}{new_name}/");
                if new_prefix.starts_with(&old_prefix) {
                    return Err(Error::InvalidArgument);
                }
                self.adopt_old_style_directory(&old_prefix).await?;
                self.rename_directory(&old_prefix, &new_prefix).await?;
                self.inodes.lock().unwrap().rename(
                    parent,
                    name,
                    new_parent,
                    new_name,
                    &old_prefix,
                    &new_prefix,
                );
            }
        }
        self.negative.insert(parent, name);
        self.negative.remove(new_parent, new_name);
        self.contents.set(parent, name, None);
        let moved_kind = match source.attr.kind {
            FileKind::Directory => FileKind::Directory,
            FileKind::File | FileKind::Symlink | FileKind::Special(_) => FileKind::File,
        };
        self.contents.set(new_parent, new_name, Some(moved_kind));
        removed_old
    }

    /// Puts a file's object under its new name (the old one stays, see
    /// `remove_old_key`); returns the ETag of the new object, when there is
    /// one yet.
    async fn rename_file(
        &self,
        source: &Attr,
        old_key: &str,
        new_key: &str,
    ) -> Result<Option<String>> {
        let writer = self.writes.lock().unwrap().get(&source.ino).cloned();
        let Some(writer) = writer else {
            return Ok(Some(self.move_object(source, old_key, new_key).await?.0));
        };
        let mut open = writer.open.lock().await;
        if open.is_unlinked() {
            open.key = new_key.to_owned();
            return Ok(None);
        }
        if !open.detach_stream_for_rename(&self.store) {
            // Its stream gave bytes back from staging: only completing it
            // under the old name keeps them; then it moves as an object.
            self.commit(&mut open).await?;
        }
        let etag = if open.needs_commit() {
            // The changes land under the new name before the old one goes.
            open.key = new_key.to_owned();
            if let Err(error) = self.commit(&mut open).await {
                open.key = old_key.to_owned();
                return Err(error);
            }
            open.committed_object().map(|object| object.etag.clone())
        } else {
            let size = open.size;
            let (etag, carried) = self.move_object(source, old_key, new_key).await?;
            open.moved_to(
                CopySource {
                    key: new_key.to_owned(),
                    etag: etag.clone(),
                    size,
                },
                carried,
            );
            Some(etag)
        };
        Ok(etag)
    }

    /// After a file's object exists under its new name: the old one goes.
    /// Should that fail, the rename has still happened on this mount, and
    /// the caller reports the error: the old key stays in the bucket.
    async fn remove_old_key(&self, old_key: &str) -> Result<()> {
        match self.store.delete(old_key).await {
            Ok(()) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(error) => {
                log::warn!("{old_key}: renamed, but the old key could not be removed: {error}");
                Err(error.into())
            }
        }
    }

    /// A renamed file's object under its new name: the same bytes and
    /// metadata, with the new name's Content-Type and a new ctime. An
    /// object without time headers shows its Last-Modified as atime and
    /// mtime; the copy gets a new one, so they are written out as `source`
    /// shows them.
    async fn move_object(
        &self,
        source: &Attr,
        old_key: &str,
        new_key: &str,
    ) -> Result<(String, PosixHeaders)> {
        let now = SystemTime::now();
        self.copy_with_headers(old_key, new_key, |headers| {
            headers.atime.get_or_insert(source.atime);
            headers.mtime.get_or_insert(source.mtime);
            headers.ctime = Some(now);
            Ok(())
        })
        .await
    }

    /// Copies a whole object, metadata included, whatever its size.
    async fn copy_object(&self, old_key: &str, new_key: &str, size: u64) -> Result<String> {
        Ok(copy_object(
            &*self.store,
            old_key,
            new_key,
            size,
            None,
            None,
            &self.upload,
        )
        .await?)
    }

    async fn rename_directory(&self, old_prefix: &str, new_prefix: &str) -> Result<()> {
        // Files of this directory still being written move with it.
        let writers: Vec<_> = self.writes.lock().unwrap().values().cloned().collect();
        for writer in writers {
            let mut open = writer.open.lock().await;
            if let Some(rest) = open.key.strip_prefix(old_prefix) {
                open.key = format!("{new_prefix}{rest}");
            }
        }
        loop {
            // Moved keys leave the listing, so each round lists from the top
            // rather than following a token into a listing that changed.
            let page = self
                .store
                .list_page(old_prefix, false, ListFrom::Start, 1000)
                .await?;
            let moves: Vec<(String, String, u64)> = page
                .objects
                .into_iter()
                .filter_map(|object| {
                    // A store that lists keys outside the prefix gets them
                    // ignored, not moved (nor a panic on slicing them).
                    let Some(rest) = object.key.strip_prefix(old_prefix) else {
                        log::warn!(
                            "{}: listed under {old_prefix} but outside it; not moved",
                            object.key
                        );
                        return None;
                    };
                    let new_key = format!("{new_prefix}{rest}");
                    Some((object.key, new_key, object.size))
                })
                .collect();
            let moves = moves
                .into_iter()
                .map(|(old_key, new_key, size)| async move {
                    self.copy_object(&old_key, &new_key, size).await?;
                    self.store.delete(&old_key).await?;
                    Ok::<(), Error>(())
                });
            let mut moves = stream::iter(moves).buffer_unordered(RENAME_PARALLELISM);
            while let Some(result) = moves.next().await {
                result?;
            }
            if page.next.is_none() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;

    use crate::config::{
        FsConfig, MAX_SINGLE_COPY_BYTES, OwnerConfig, PosixMetadata, STREAM_RETAIN_BYTES, WriteMode,
    };
    use crate::fs::{Caller, Error, Filesystem, ROOT_INO};
    use crate::store::memory::MemoryStore;

    const MIB: u64 = 1024 * 1024;

    fn filesystem(store: &Arc<MemoryStore>) -> Filesystem<MemoryStore> {
        let config = FsConfig {
            prefix: String::new(),
            owner: OwnerConfig {
                uid: 0,
                gid: 0,
                file_mode: 0o644,
                dir_mode: 0o755,
            },
            write_mode: WriteMode::ReadWrite,
            posix_metadata: PosixMetadata::FromHeaders,
            xattrs: true,
            metadata_ttl: Duration::from_secs(60),
            negative_metadata_ttl: Duration::from_secs(60),
            max_inodes: 250_000,
            max_cached_headers: 1_000_000,
            max_cache_size_bytes: 16 * MIB,
            read_part_size_bytes: 8 * MIB,
            write_part_size_bytes: 8 * MIB,
            max_write_buffer_bytes: 16 * MIB,
            stream_retain_bytes: STREAM_RETAIN_BYTES,
            max_single_copy_bytes: MAX_SINGLE_COPY_BYTES,
            staging_dir: None,
            disk_cache: None,
        };
        Filesystem::new(Arc::clone(store), config, 4).expect("staging directory")
    }

    /// The kernel looks a name up before it makes one, so through a mount
    /// only lookup meets a long name (tests/errno.rs); the calls that make
    /// names answer the same to any other caller of the core.
    #[tokio::test]
    async fn a_name_over_name_max_is_too_long_for_every_call_and_writes_nothing() {
        let store = Arc::new(MemoryStore::new());
        store.put("f", Bytes::from_static(b"f"));
        let fs = filesystem(&store);
        let caller = Caller { uid: 0, gid: 0 };
        let too_long = "n".repeat(256);
        let results = [
            ("lookup", fs.lookup(ROOT_INO, &too_long).await.map(drop)),
            (
                "mkdir",
                fs.mkdir(ROOT_INO, &too_long, 0o755, caller).await.map(drop),
            ),
            (
                "symlink",
                fs.symlink(ROOT_INO, &too_long, Bytes::from_static(b"f"), caller)
                    .await
                    .map(drop),
            ),
            (
                "rename",
                fs.rename(ROOT_INO, "f", ROOT_INO, &too_long, false).await,
            ),
        ];
        for (call, result) in results {
            assert!(
                matches!(result, Err(Error::NameTooLong)),
                "{call}: {result:?}"
            );
        }
        let longest = "n".repeat(255);
        fs.mkdir(ROOT_INO, &longest, 0o755, caller)
            .await
            .expect("a name of NAME_MAX bytes is fine");
        assert!(store.get(&format!("{too_long}/")).is_none());
        assert!(store.get(&too_long).is_none());
        assert!(store.get("f").is_some());
    }

    /// The kernel checks the kind before it asks (tests/errno.rs); the core
    /// must not remove anything for a caller that did not.
    #[tokio::test]
    async fn unlink_of_a_directory_and_rmdir_of_a_file_remove_nothing() {
        let store = Arc::new(MemoryStore::new());
        store.put("f", Bytes::from_static(b"f"));
        store.put("d/", Bytes::new());
        let fs = filesystem(&store);
        fs.lookup(ROOT_INO, "f").await.expect("lookup f");
        fs.lookup(ROOT_INO, "d").await.expect("lookup d");
        let rmdir = fs.rmdir(ROOT_INO, "f").await;
        assert!(matches!(rmdir, Err(Error::NotADirectory)), "{rmdir:?}");
        let unlink = fs.unlink(ROOT_INO, "d").await;
        assert!(matches!(unlink, Err(Error::IsADirectory)), "{unlink:?}");
        assert!(store.get("f").is_some() && store.get("d/").is_some());
        fs.lookup(ROOT_INO, "f").await.expect("f is still there");
    }
}
