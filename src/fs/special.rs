//! Entries that are neither regular files nor directories, stored as
//! s3fs-fuse stores them, so that either reads what the other made:
//! - a symbolic link is an object whose body is the target and whose
//!   `x-amz-meta-mode` carries S_IFLNK;
//! - a FIFO, socket or device is an empty object whose mode carries its
//!   type, with a device's number in `x-amz-meta-rdev`.
//!
//! Without POSIX metadata (`--no-posix-metadata`) each is a small regular
//! file.

use std::time::SystemTime;

use bytes::Bytes;

use super::write::Caller;
use super::{Entry, Error, FileKind, Filesystem, Result, Stat, check_name};
use crate::object_format::{PosixHeaders, new_object_headers};
use crate::store::ObjectStore;

/// Linux's PATH_MAX: no target is longer, so one GET of this much reads it.
const MAX_TARGET_BYTES: u64 = 4096;

impl<S: ObjectStore> Filesystem<S> {
    pub async fn symlink(
        &self,
        parent: u64,
        name: &str,
        target: Bytes,
        caller: Caller,
    ) -> Result<Entry> {
        let headers = PosixHeaders::created(
            libc::S_IFLNK | 0o777,
            caller.uid,
            caller.gid,
            SystemTime::now(),
        );
        self.put_entry(parent, name, headers, target).await
    }

    /// mknod: a FIFO, socket, character or block device (`mode` carries the
    /// type), or an empty regular file (mknod(2) of S_IFREG; `open` with
    /// O_CREAT comes through `create` instead).
    pub async fn mknod(
        &self,
        parent: u64,
        name: &str,
        mode: u32,
        rdev: u64,
        caller: Caller,
    ) -> Result<Entry> {
        let file_type = mode & libc::S_IFMT;
        let is_device = file_type == libc::S_IFCHR || file_type == libc::S_IFBLK;
        let other = [libc::S_IFIFO, libc::S_IFSOCK, libc::S_IFREG];
        if !(is_device || other.contains(&file_type)) {
            return Err(Error::InvalidArgument);
        }
        let mut headers = PosixHeaders::created(
            file_type | (mode & 0o7777),
            caller.uid,
            caller.gid,
            SystemTime::now(),
        );
        headers.rdev = is_device.then_some(rdev);
        self.put_entry(parent, name, headers, Bytes::new()).await
    }

    /// A new entry `name` made by one PutObject of its complete object: it
    /// exists once this returns. EEXIST if the name is taken, by any kind.
    async fn put_entry(
        &self,
        parent: u64,
        name: &str,
        headers: PosixHeaders,
        body: Bytes,
    ) -> Result<Entry> {
        let _change = self.check_writable()?;
        let parent_key = self.directory_key(parent)?;
        check_name(name)?;
        if self.lookup(parent, name).await.is_ok_and(|entry| {
            self.forget(entry.attr.ino, 1);
            true
        }) {
            return Err(Error::Exists);
        }
        let key = format!("{parent_key}{name}");
        let size = body.len() as u64;
        let etag = self
            .store
            .put(&key, body, &new_object_headers(&key, &headers))
            .await?;
        self.meta
            .headers()
            .insert(&key, &etag, headers.clone(), None);
        self.negative.remove(parent, name);
        let stat = Stat {
            size,
            mtime: headers.mtime,
            etag,
            headers,
        };
        Ok(self.remember(parent, name, FileKind::File, key, stat))
    }

    pub async fn readlink(&self, ino: u64) -> Result<Bytes> {
        let key = {
            let inodes = self.inodes.lock().unwrap();
            inodes.get(ino).ok_or(Error::NotFound)?.key.clone()
        };
        if self.getattr(ino).await?.attr.kind != FileKind::Symlink {
            return Err(Error::InvalidArgument);
        }
        // Pinned like every GET, so that a link replaced since its stat was
        // taken fails instead of reading another object's body.
        let etag = {
            let inodes = self.inodes.lock().unwrap();
            inodes.get(ino).ok_or(Error::NotFound)?.stat.etag.clone()
        };
        let etag = if etag.is_empty() {
            self.store.head(&key).await?.etag
        } else {
            etag
        };
        let if_match = (!etag.is_empty()).then_some(etag.as_str());
        Ok(self
            .store
            .get_range(&key, 0..MAX_TARGET_BYTES, if_match)
            .await?)
    }
}
