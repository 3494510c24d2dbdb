//! Extended attributes, kept where s3fs keeps them: in the entry's
//! `x-amz-meta-xattr` header (see `crate::object_format`). Reading one is
//! answered from the headers the lookup already fetched, so the kernel's
//! probes (`security.capability` before every write, ACL checks by `ls`)
//! cost no request; changing one is a header change like chmod: one
//! CopyObject, a marker PUT, or a ride on the commit of a file being written.

use std::sync::Arc;
use std::time::SystemTime;

use crate::config::PosixMetadata;
use crate::fs::attrs::check_metadata_space;
use crate::fs::metadata::Sharing;
use crate::fs::{Error, Filesystem, Result};
use crate::object_format::{PosixHeaders, Xattrs};
use crate::store::ObjectStore;

/// What `setxattr` may do to a name, from its `XATTR_CREATE` and
/// `XATTR_REPLACE` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrWrite {
    CreateOrReplace,
    /// Fails with `Exists` if the name is set.
    CreateOnly,
    /// Fails with `NoAttribute` if the name is not set.
    ReplaceOnly,
}

impl XattrWrite {
    pub fn from_flags(flags: i32) -> Result<XattrWrite> {
        match (
            flags & libc::XATTR_CREATE != 0,
            flags & libc::XATTR_REPLACE != 0,
        ) {
            (false, false) => Ok(XattrWrite::CreateOrReplace),
            (true, false) => Ok(XattrWrite::CreateOnly),
            (false, true) => Ok(XattrWrite::ReplaceOnly),
            (true, true) => Err(Error::InvalidArgument),
        }
    }
}

impl<S: ObjectStore> Filesystem<S> {
    /// Extended attributes live in headers, so a mount that reads none
    /// (`--no-posix-metadata`) keeps none either.
    pub fn xattrs_enabled(&self) -> bool {
        self.config.xattrs && self.config.posix_metadata == PosixMetadata::FromHeaders
    }

    pub async fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        let name = std::str::from_utf8(name).map_err(|_| Error::NoAttribute)?;
        let xattrs = self.current_xattrs(ino).await?;
        xattrs
            .and_then(|xattrs| xattrs.get(name).cloned())
            .ok_or(Error::NoAttribute)
    }

    pub async fn listxattr(&self, ino: u64) -> Result<Vec<String>> {
        let xattrs = self.current_xattrs(ino).await?;
        Ok(xattrs.map_or_else(Vec::new, |xattrs| xattrs.keys().cloned().collect()))
    }

    pub async fn setxattr(
        &self,
        ino: u64,
        name: &[u8],
        value: &[u8],
        write: XattrWrite,
    ) -> Result<()> {
        // The header is JSON, whose names are text.
        let name = std::str::from_utf8(name).map_err(|_| Error::InvalidArgument)?;
        let now = SystemTime::now();
        self.change_headers(ino, |headers| {
            match (write, has_xattr(headers, name)) {
                (XattrWrite::CreateOnly, true) => return Err(Error::Exists),
                (XattrWrite::ReplaceOnly, false) => return Err(Error::NoAttribute),
                _ => {}
            }
            edit_xattrs(headers, now, |xattrs| {
                xattrs.insert(name.to_owned(), value.to_vec());
            });
            // A file being written has no object to copy yet: its own
            // headers are checked here, before they ride on its commit.
            check_metadata_space(&headers.to_user_metadata())
        })
        .await
    }

    pub async fn removexattr(&self, ino: u64, name: &[u8]) -> Result<()> {
        let name = std::str::from_utf8(name).map_err(|_| Error::NoAttribute)?;
        let now = SystemTime::now();
        self.change_headers(ino, |headers| {
            if !has_xattr(headers, name) {
                return Err(Error::NoAttribute);
            }
            edit_xattrs(headers, now, |xattrs| {
                xattrs.remove(name);
            });
            Ok(())
        })
        .await
    }

    /// The entry's attributes as of its last confirmation, refreshed first
    /// once its TTL has passed, as `stat` would be.
    async fn current_xattrs(&self, ino: u64) -> Result<Option<Arc<Xattrs>>> {
        self.revalidate(ino, Sharing::JoinInFlight).await?;
        let inodes = self.inodes.lock().unwrap();
        let inode = inodes.get(ino).ok_or(Error::NotFound)?;
        Ok(inode.stat.headers.xattrs.clone())
    }
}

fn has_xattr(headers: &PosixHeaders, name: &str) -> bool {
    headers
        .xattrs
        .as_deref()
        .is_some_and(|xattrs| xattrs.contains_key(name))
}

/// An xattr change is a change of the inode: POSIX moves ctime.
fn edit_xattrs(headers: &mut PosixHeaders, now: SystemTime, edit: impl FnOnce(&mut Xattrs)) {
    let mut xattrs = headers.xattrs.as_deref().cloned().unwrap_or_default();
    edit(&mut xattrs);
    // An empty set removes the header (see `PosixHeaders::xattrs`).
    headers.xattrs = Some(Arc::new(xattrs));
    headers.ctime = Some(now);
}
