//! FILES read-only files of SIZE_MIB MiB each (`big`, `big1`, `big2`, ...), all served from one
//! buffer: what `dd` of a big file through FUSE can reach.

use std::ffi::OsStr;
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, KernelConfig,
    LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, Request,
};

use crate::{ROOT, ask_for_bucketfs_settings, file_attr, uid_gid};

/// Nothing here ever changes, so the kernel may keep it all.
const TTL: Duration = Duration::from_secs(3600);

pub struct BigFiles {
    bytes: Vec<u8>,
    files: u64,
}

impl BigFiles {
    pub fn new(size_mib: usize, files: u64) -> Self {
        // Not zeros: a page of zeros could be shared or skipped somewhere on the way.
        let mut bytes = vec![0u8; size_mib << 20];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for chunk in bytes.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        BigFiles { bytes, files }
    }

    /// File `index` is inode 2 + index.
    fn name_of(index: u64) -> String {
        if index == 0 {
            "big".to_owned()
        } else {
            format!("big{index}")
        }
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let (kind, perm, size) = if ino == ROOT {
            (FileType::Directory, 0o755, 0)
        } else if (2..2 + self.files).contains(&ino) {
            (FileType::RegularFile, 0o444, self.bytes.len() as u64)
        } else {
            return None;
        };
        Some(file_attr(ino, kind, perm, size, UNIX_EPOCH, uid_gid()))
    }
}

impl fuser::Filesystem for BigFiles {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        ask_for_bucketfs_settings(config);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = (parent.0 == ROOT)
            .then(|| (0..self.files).find(|&i| OsStr::new(&Self::name_of(i)) == name))
            .flatten()
            .and_then(|i| self.attr(2 + i));
        match found {
            Some(attr) => reply.entry(&TTL, &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // As bucketfs answers a read-only open: no FLUSH at close.
        reply.opened(FileHandle(0), FopenFlags::FOPEN_NOFLUSH);
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        reply.data(crate::read_at(&self.bytes, offset, size));
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino.0 != ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let mut entries = vec![
            (ROOT, FileType::Directory, ".".to_owned()),
            (ROOT, FileType::Directory, "..".to_owned()),
        ];
        entries.extend((0..self.files).map(|i| (2 + i, FileType::RegularFile, Self::name_of(i))));
        for (index, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), index as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
