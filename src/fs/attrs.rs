//! Attribute changes: truncate, chmod, chown, utimens, and (through
//! `change_headers`) anything else kept in an entry's headers.
//!
//! A file's attributes live in its object's s3fs headers, so changing them
//! means a new object: a truncation goes through the staged copy like a
//! write; a header change of a file nobody writes is one CopyObject onto
//! itself; a header change of a file open for writing rides on its commit.
//! A directory's attributes live on its marker object; the mount's root has
//! none, so its attributes live in memory for as long as the mount.

use std::collections::HashMap;
use std::time::SystemTime;

use bytes::Bytes;

use crate::fs::write::replace_headers_keeping;
use crate::fs::{Entry, Error, FileKind, Filesystem, ROOT_INO, Result};
use crate::object_format::{
    PosixHeaders, directory_marker_headers, replaced_headers, replaced_marker_headers,
};
use crate::store::{
    MAX_USER_METADATA_BYTES, ObjectMeta, ObjectStore, StoreError, user_metadata_bytes,
};
use crate::upload::CopySource;

/// What a setattr call changes. Times are resolved by the caller
/// (UTIME_NOW is a time; UTIME_OMIT is `None`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    pub size: Option<u64>,
    /// Permission bits (the file type is kept).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
}

impl SetAttr {
    /// POSIX: chmod, chown and utimens change ctime; a truncation changes
    /// mtime and ctime (applied where the size changes).
    fn apply(&self, headers: &mut PosixHeaders, now: SystemTime) {
        if let Some(mode) = self.mode {
            let file_type = headers.mode.unwrap_or(0) & libc::S_IFMT;
            headers.mode = Some(file_type | (mode & 0o7777));
        }
        if self.uid.is_some() {
            headers.uid = self.uid;
        }
        if self.gid.is_some() {
            headers.gid = self.gid;
        }
        if self.atime.is_some() {
            headers.atime = self.atime;
        }
        if self.mtime.is_some() {
            headers.mtime = self.mtime;
        }
        headers.ctime = Some(now);
    }
}

impl<S: ObjectStore> Filesystem<S> {
    pub async fn setattr(&self, ino: u64, change: SetAttr) -> Result<Entry> {
        let _change = self.check_writable()?;
        match change.size {
            Some(size) => {
                if self.kind_of(ino)? == FileKind::Directory {
                    return Err(Error::IsADirectory);
                }
                self.truncate(ino, size, change).await?;
            }
            None => {
                let now = SystemTime::now();
                self.change_headers(ino, |headers| {
                    change.apply(headers, now);
                    Ok(())
                })
                .await?;
            }
        }
        self.getattr(ino).await
    }

    fn kind_of(&self, ino: u64) -> Result<FileKind> {
        let inodes = self.inodes.lock().unwrap();
        Ok(inodes.get(ino).ok_or(Error::NotFound)?.kind)
    }

    /// Changes what an entry's headers say, with at most one request that
    /// changes the bucket: `change` sees the headers as they are (filled
    /// with what `stat` shows where the object has none, so that a partial
    /// change writes complete headers) and may refuse with an error, in
    /// which case nothing is sent.
    pub(super) async fn change_headers(
        &self,
        ino: u64,
        change: impl FnOnce(&mut PosixHeaders) -> Result<()>,
    ) -> Result<()> {
        let _change = self.check_writable()?;
        if self.kind_of(ino)? == FileKind::Directory {
            return self.change_directory_headers(ino, change).await;
        }
        if self.is_being_written(ino) {
            return self.change_through_staging(ino, change).await;
        }
        self.change_object_headers(ino, change).await
    }

    /// A truncation goes through the staged copy, committed now unless a
    /// descriptor that will flush holds it. If this call fails, its reference
    /// drops uncommitted and, were it the last, the file is no longer open
    /// for writing.
    async fn truncate(&self, ino: u64, size: u64, change: SetAttr) -> Result<()> {
        let writer = self.writer_for(ino, size == 0).await?;
        {
            let mut open = writer.shared().open.lock().await;
            open.prepare_change(&self.store, &self.upload, size).await?;
            open.staging
                .set_len(size)
                .await
                .map_err(|error| Error::from(crate::upload::UploadError::Staging(error)))?;
            let changed_from = size.min(open.size);
            open.mark_changed(changed_from..u64::MAX);
            open.size = size;
            let now = SystemTime::now();
            open.headers.touch_contents(now);
            change.apply(&mut open.headers, now);
            self.update_local_stat(&open);
            if writer.is_only_holder() {
                self.commit(&mut open).await?;
            }
        }
        self.release_writer(writer).await;
        Ok(())
    }

    /// A file open for writing here: its new headers go up with its next
    /// commit, now if no descriptor will flush it.
    async fn change_through_staging(
        &self,
        ino: u64,
        change: impl FnOnce(&mut PosixHeaders) -> Result<()>,
    ) -> Result<()> {
        let writer = self.writer_for(ino, false).await?;
        let result = async {
            let mut open = writer.shared().open.lock().await;
            let mut headers = open.headers.clone();
            self.fill_from_stat(ino, &mut headers)?;
            change(&mut headers)?;
            open.headers = headers;
            self.update_local_stat(&open);
            if writer.is_only_holder() {
                self.commit(&mut open).await?;
            }
            Ok(())
        }
        .await;
        self.release_writer(writer).await;
        result
    }

    /// A committed file: a CopyObject onto itself that replaces the POSIX
    /// headers and keeps the rest of its metadata and its Content-Type.
    async fn change_object_headers(
        &self,
        ino: u64,
        change: impl FnOnce(&mut PosixHeaders) -> Result<()>,
    ) -> Result<()> {
        let key = {
            let inodes = self.inodes.lock().unwrap();
            inodes.get(ino).ok_or(Error::NotFound)?.key.clone()
        };
        let (etag, headers) = self
            .copy_with_headers(&key, &key, |headers| {
                self.fill_from_stat(ino, headers)?;
                change(headers)
            })
            .await?;
        if let Some(inode) = self.inodes.lock().unwrap().get_mut(ino) {
            inode.stat.etag = etag;
            inode.stat.headers = headers;
            inode.validated_at = std::time::Instant::now();
        }
        Ok(())
    }

    /// HEADs `key`, then copies it to `destination` (itself, or a new name)
    /// pinned to the version the HEAD saw, with its POSIX headers as
    /// `change` leaves them and the rest of its metadata kept. Returns the
    /// new ETag and headers, which are cached.
    pub(super) async fn copy_with_headers(
        &self,
        key: &str,
        destination: &str,
        change: impl FnOnce(&mut PosixHeaders) -> Result<()>,
    ) -> Result<(String, PosixHeaders)> {
        let meta = self.store.head(key).await?;
        let mut headers = PosixHeaders::from_head(&meta);
        change(&mut headers)?;
        // Its Content-Type is the new name's, when it moves.
        headers.has_directory_content_type &= destination == key;
        let existing = meta.headers();
        check_metadata_space(&replaced_headers(&existing, destination, &headers).user_metadata)?;
        let object = CopySource {
            key: key.to_owned(),
            etag: meta.etag,
            size: meta.size,
        };
        let etag = replace_headers_keeping(
            &*self.store,
            &object,
            destination,
            &headers,
            &existing,
            &self.upload,
        )
        .await?;
        self.meta
            .headers()
            .insert(destination, &etag, headers.clone(), None);
        Ok((etag, headers))
    }

    /// A directory's headers live on its marker object `d/`. An existing
    /// marker, whoever wrote it, is copied onto itself like a file's object
    /// (see `copy_with_headers`), so that its other metadata and its
    /// Content-Type stay. A directory without one (only keys under it, or
    /// an old-style directory object) gets one; see `create_marker`. The
    /// root has no marker: its headers change in memory only.
    ///
    /// The marker is read by a HEAD here rather than taken from the lookup:
    /// listings keep only the POSIX headers of what they saw, and another
    /// tool may have changed the marker since; the copy is pinned to what
    /// the HEAD saw.
    async fn change_directory_headers(
        &self,
        ino: u64,
        change: impl FnOnce(&mut PosixHeaders) -> Result<()>,
    ) -> Result<()> {
        let key = {
            let inodes = self.inodes.lock().unwrap();
            inodes.get(ino).ok_or(Error::NotFound)?.key.clone()
        };
        let change = |headers: &mut PosixHeaders| {
            self.fill_from_stat(ino, headers)?;
            change(headers)?;
            // The markers s3fs creates carry no file-type bits, those its
            // chmod writes do; with them, no reader need guess.
            if let Some(mode) = headers.mode.as_mut()
                && *mode & libc::S_IFMT == 0
            {
                *mode |= libc::S_IFDIR;
            }
            Ok(())
        };
        let headers = if ino == ROOT_INO {
            let mut headers = self
                .inodes
                .lock()
                .unwrap()
                .get(ino)
                .ok_or(Error::NotFound)?
                .stat
                .headers
                .clone();
            change(&mut headers)?;
            headers
        } else {
            match self.store.head(&key).await {
                Ok(marker) => self.change_marker(&key, marker, change).await?,
                Err(StoreError::NotFound { .. }) => self.create_marker(&key, change).await?,
                Err(error) => return Err(error.into()),
            }
        };
        if let Some(inode) = self.inodes.lock().unwrap().get_mut(ino) {
            inode.stat.headers = headers;
        }
        Ok(())
    }

    /// Rewrites the marker `key` with its POSIX headers as `change` leaves
    /// them and everything else kept.
    async fn change_marker(
        &self,
        key: &str,
        marker: ObjectMeta,
        change: impl FnOnce(&mut PosixHeaders) -> Result<()>,
    ) -> Result<PosixHeaders> {
        let mut headers = PosixHeaders::from_head(&marker);
        change(&mut headers)?;
        let replaced = replaced_marker_headers(&marker.headers(), &headers);
        check_metadata_space(&replaced.user_metadata)?;
        let etag = if marker.size == 0 {
            // An empty marker is written anew rather than copied onto
            // itself: one request either way, and stores that keep
            // directories as directories (s3s-fs) take the PUT but fail
            // the copy. `tar x` sets every directory's times.
            self.store.put(key, Bytes::new(), &replaced).await?
        } else {
            let object = CopySource {
                key: key.to_owned(),
                etag: marker.etag,
                size: marker.size,
            };
            // `replaced` as the existing headers: replacing the POSIX ones
            // again changes nothing, and its Content-Type is the marker's.
            replace_headers_keeping(
                &*self.store,
                &object,
                key,
                &headers,
                &replaced,
                &self.upload,
            )
            .await?
        };
        self.meta
            .headers()
            .insert(key, &etag, headers.clone(), None);
        Ok(headers)
    }

    /// Writes the missing marker `key`. An old-style directory object (`d`
    /// for the marker `d/`) gives it its headers and other metadata, and
    /// then goes, if empty, as s3fs's chmod means to do (`IS_REPLACEDIR` in
    /// s3fs-fuse's `s3fs_chmod`; s3fs 1.90 aborts or fails with ENOENT
    /// instead). The marker is written first, so that a failure between the
    /// two loses nothing: where both exist, the marker wins for bucketfs
    /// and s3fs alike.
    async fn create_marker(
        &self,
        key: &str,
        change: impl FnOnce(&mut PosixHeaders) -> Result<()>,
    ) -> Result<PosixHeaders> {
        let old_style = self.old_style_object(key).await?;
        let mut headers = old_style
            .as_ref()
            .map(PosixHeaders::from_head)
            .unwrap_or_default();
        change(&mut headers)?;
        let object_headers = match &old_style {
            Some(object) => replaced_marker_headers(&object.headers(), &headers),
            None => directory_marker_headers(&headers),
        };
        check_metadata_space(&object_headers.user_metadata)?;
        let etag = self.store.put(key, Bytes::new(), &object_headers).await?;
        self.meta
            .headers()
            .insert(key, &etag, headers.clone(), None);
        if let Some(object) = old_style
            && object.size == 0
        {
            let old_key = old_style_key(key);
            // Left behind, it is harmless: the marker wins.
            if let Err(error) = self.store.delete(old_key).await {
                log::warn!("{old_key}: replaced by the marker {key}, but not removed: {error}");
            }
        }
        Ok(headers)
    }

    /// The old-style directory object of the directory `prefix`, if it has
    /// one. An object there that is not one is a file the directory hides:
    /// not the directory's to change.
    async fn old_style_object(&self, prefix: &str) -> Result<Option<ObjectMeta>> {
        match self.store.head(old_style_key(prefix)).await {
            Ok(object) if self.is_old_style_directory(&PosixHeaders::from_head(&object)) => {
                Ok(Some(object))
            }
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Before the directory `prefix` is moved key by key: an old-style
    /// directory object lies outside the prefix and would stay behind, so
    /// a marker takes its place first (as a change of attributes does), and
    /// the directory moves with its attributes.
    pub(super) async fn adopt_old_style_directory(&self, prefix: &str) -> Result<()> {
        if self.old_style_object(prefix).await?.is_none() {
            return Ok(());
        }
        match self.store.head(prefix).await {
            // The marker has the attributes already; the object only hides.
            Ok(_) => self.remove_old_style_directory(prefix).await,
            Err(StoreError::NotFound { .. }) => {
                self.create_marker(prefix, |_| Ok(())).await?;
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Before the directory `prefix` goes: its old-style directory object,
    /// which would bring it back, goes too.
    pub(super) async fn remove_old_style_directory(&self, prefix: &str) -> Result<()> {
        if self.old_style_object(prefix).await?.is_some() {
            match self.store.delete(old_style_key(prefix)).await {
                Ok(()) | Err(StoreError::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// Completes `headers` with what `stat` shows for the fields the object
    /// does not carry, so that a change of one attribute does not leave the
    /// others to the mount options of whichever mount reads it next.
    fn fill_from_stat(&self, ino: u64, headers: &mut PosixHeaders) -> Result<()> {
        let attr = {
            let inodes = self.inodes.lock().unwrap();
            let inode = inodes.get(ino).ok_or(Error::NotFound)?;
            self.attr(ino, inode.kind, &inode.stat)
        };
        if headers.mode.is_none() {
            let file_type = match attr.kind {
                // s3fs's markers carry the permission bits only.
                FileKind::Directory => libc::S_IFDIR,
                _ => libc::S_IFREG,
            };
            headers.mode = Some(file_type | u32::from(attr.perm));
        }
        headers.uid.get_or_insert(attr.uid);
        headers.gid.get_or_insert(attr.gid);
        headers.atime.get_or_insert(attr.atime);
        headers.mtime.get_or_insert(attr.mtime);
        headers.ctime.get_or_insert(attr.ctime);
        Ok(())
    }
}

/// Refuses user metadata over S3's limit before any request; where an
/// object's is replaced, another tool's metadata counts against it too.
pub(super) fn check_metadata_space(user_metadata: &HashMap<String, String>) -> Result<()> {
    if user_metadata_bytes(user_metadata) > MAX_USER_METADATA_BYTES {
        return Err(Error::NoMetadataSpace);
    }
    Ok(())
}

/// The key of the old-style directory object of the directory `prefix`:
/// `d` for `d/`.
fn old_style_key(prefix: &str) -> &str {
    prefix.strip_suffix('/').unwrap_or(prefix)
}
