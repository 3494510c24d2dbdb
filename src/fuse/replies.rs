//! The core's attributes, callers and names in fuser's terms, and replies
//! that need more than one call.

use std::ffi::OsStr;
use std::time::UNIX_EPOCH;

use fuser::{Errno, FileAttr, FileType, Generation, INodeNo, ReplyEntry, ReplyXattr, Request};

use crate::fs::{self, Attr, Caller, Entry, FileKind, SpecialKind};

/// Block size reported to `stat`: `cp` and friends size their buffers from it.
const REPORTED_BLOCK_SIZE: u32 = 1024 * 1024;

pub(super) fn file_attr(attr: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(attr.ino),
        size: attr.size,
        blocks: attr.size.div_ceil(512),
        atime: attr.atime,
        mtime: attr.mtime,
        ctime: attr.ctime,
        crtime: UNIX_EPOCH,
        kind: match attr.kind {
            FileKind::File => FileType::RegularFile,
            FileKind::Directory => FileType::Directory,
            FileKind::Symlink => FileType::Symlink,
            FileKind::Special(SpecialKind::Fifo) => FileType::NamedPipe,
            FileKind::Special(SpecialKind::Socket) => FileType::Socket,
            FileKind::Special(SpecialKind::CharDevice) => FileType::CharDevice,
            FileKind::Special(SpecialKind::BlockDevice) => FileType::BlockDevice,
        },
        perm: attr.perm,
        nlink: attr.nlink,
        uid: attr.uid,
        gid: attr.gid,
        // The kernel's FUSE attributes hold a 32-bit device number.
        rdev: u32::try_from(attr.rdev).unwrap_or(0),
        blksize: REPORTED_BLOCK_SIZE,
        flags: 0,
    }
}

/// Answers an xattr read as the kernel asks: with the size only when it
/// offers no buffer, ERANGE when its buffer is too small.
pub(super) fn reply_xattr(reply: ReplyXattr, size: u32, data: &[u8]) {
    let Ok(len) = u32::try_from(data.len()) else {
        return reply.error(Errno::E2BIG);
    };
    if size == 0 {
        reply.size(len);
    } else if len > size {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

pub(super) fn reply_entry(reply: ReplyEntry, entry: &Entry) {
    reply.entry(&entry.ttl, &file_attr(&entry.attr), Generation(0));
}

pub(super) fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

/// A name as a key segment. Keys are UTF-8 strings, so a name that is not
/// UTF-8 cannot exist in the bucket: `not_utf8` answers it, unless it is
/// too long for any filesystem, which Linux reports first.
pub(super) fn name_of(name: &OsStr, not_utf8: Errno) -> Result<String, Errno> {
    match name.to_str() {
        Some(name) => Ok(name.to_owned()),
        None if name.len() > fs::MAX_NAME_BYTES => Err(Errno::ENAMETOOLONG),
        None => Err(not_utf8),
    }
}
