//! Serves FILES read-only files of SIZE_MIB MiB each (`big`, `big1`, `big2`, ...) from one buffer
//! in memory, with bucketfs's FUSE settings (src/fuse/mod.rs and src/fuse/session.rs): the same
//! max_readahead and max_background, one thread reading requests, the same mount options. Reading
//! a file with `dd` then measures the ceiling FUSE itself puts on any FUSE client of this machine:
//! no network, no cache, one copy from our buffer into the reply.
//!
//! Usage: fuse-ceiling MOUNTPOINT [SIZE_MIB (1024)] [FILES (4)]
//! Runs in the foreground until unmounted (`fusermount3 -u MOUNTPOINT`).

use std::ffi::OsStr;
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, KernelConfig,
    LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen,
    Request,
};

/// bucketfs's values (src/fuse/mod.rs); keep them in step.
const MAX_READAHEAD_BYTES: u32 = 16 * 1024 * 1024;
const MAX_BACKGROUND_REQUESTS: u16 = 64;
const REPORTED_BLOCK_SIZE: u32 = 1024 * 1024;
const TTL: Duration = Duration::from_secs(3600);
const ROOT: u64 = 1;

struct Ceiling {
    bytes: Vec<u8>,
    files: u64,
}

impl Ceiling {
    /// File `index` is inode 2 + index.
    fn name_of(index: u64) -> String {
        if index == 0 {
            "big".to_owned()
        } else {
            format!("big{index}")
        }
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let (kind, perm, size, nlink) = if ino == ROOT {
            (FileType::Directory, 0o755, 0, 2)
        } else if (2..2 + self.files).contains(&ino) {
            (FileType::RegularFile, 0o444, self.bytes.len() as u64, 1)
        } else {
            return None;
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind,
            perm,
            nlink,
            // SAFETY: getuid/getgid cannot fail and touch no memory of ours.
            uid: unsafe { libc::getuid() },
            gid: unsafe { libc::getgid() },
            rdev: 0,
            blksize: REPORTED_BLOCK_SIZE,
            flags: 0,
        })
    }
}

impl fuser::Filesystem for Ceiling {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(nearest) = config.set_max_readahead(MAX_READAHEAD_BYTES) {
            let _ = config.set_max_readahead(nearest);
        }
        let _ = config.set_max_background(MAX_BACKGROUND_REQUESTS);
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
        reply.opened(FileHandle(0), FopenFlags::empty());
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
        let len = self.bytes.len() as u64;
        let start = offset.min(len) as usize;
        let end = (offset + u64::from(size)).min(len) as usize;
        reply.data(&self.bytes[start..end]);
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

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(mountpoint) = args.get(1) else {
        eprintln!("usage: fuse-ceiling MOUNTPOINT [SIZE_MIB] [FILES]");
        std::process::exit(2);
    };
    let size_mib: usize = args
        .get(2)
        .map_or(Ok(1024), |s| s.parse())
        .expect("SIZE_MIB");
    let files: u64 = args.get(3).map_or(Ok(4), |s| s.parse()).expect("FILES");
    // Not zeros: a page of zeros could be shared or skipped somewhere on the way.
    let mut bytes = vec![0u8; size_mib << 20];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for chunk in bytes.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("fuse-ceiling".to_owned()),
        MountOption::Subtype("fuse-ceiling".to_owned()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::RO,
    ];
    // bucketfs: one thread reads requests.
    config.n_threads = Some(1);
    fuser::mount(Ceiling { bytes, files }, mountpoint, &config)
}
