//! The FUSE adapter: the only code that knows `fuser`.
//!
//! Each callback turns its borrowed arguments into owned ones, spawns the
//! work on the tokio runtime and returns, so the dispatch loop never waits on
//! the network; the task answers the reply. Every path answers (an unanswered
//! reply would reach the kernel as EIO). Failures are logged here, once.

mod dispatch;
mod errno;
mod inode_budget;
mod replies;
mod session;

pub use session::{
    MountOptions, MountedSession, Unmounter, clear_dead_mount, mount, unmount_lazily,
};

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    Errno, FileHandle, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner,
    OpenAccMode, OpenFlags, ReplyAttr, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use tokio::runtime::Handle;

use bytes::Bytes;

use crate::buffers::BufferPool;
use crate::fs::{self, OpenIntent, PageCache, SetAttr};
use crate::store::ObjectStore;
use dispatch::run_inline;
use errno::failure;
use replies::{caller, file_attr, name_of, reply_entry, reply_xattr};

/// Readahead we ask the kernel for; it caps this at what it supports. Large,
/// so that kernel readahead is never what limits a streaming reader.
const MAX_READAHEAD_BYTES: u32 = 16 * 1024 * 1024;

/// Background requests (readahead among them) the kernel keeps in flight;
/// its default of 12 serializes large sequential reads.
const MAX_BACKGROUND_REQUESTS: u16 = 64;

/// Idle write buffers kept for reuse: a streaming writer's requests (up to
/// 1 MiB each) are copied into memory that is already mapped, instead of a
/// fresh allocation per request that faults in every page (measured: most
/// of the daemon's page faults while writing 1 GiB).
const IDLE_WRITE_BUFFER_BYTES: usize = 16 * 1024 * 1024;

pub struct FuseAdapter<S> {
    fs: Arc<fs::Filesystem<S>>,
    runtime: Handle,
    write_buffers: Arc<BufferPool>,
}

impl<S: ObjectStore> FuseAdapter<S> {
    pub fn new(fs: Arc<fs::Filesystem<S>>, runtime: Handle) -> Self {
        FuseAdapter {
            fs,
            runtime,
            write_buffers: BufferPool::new(IDLE_WRITE_BUFFER_BYTES),
        }
    }

    /// Runs `work` on the dispatch thread up to its first wait, and hands it
    /// to the runtime only if it has to wait (for the network, the disk or a
    /// lock). Most requests of a tool creating small files (lookups answered
    /// from cache, create, write, getattr, release) never wait, and each hop
    /// to a runtime thread and back costs two wake-ups, which on a small VM
    /// cost more than the work. A future that returns pending registers the
    /// runtime task's waker when the runtime polls it again, as the `Future`
    /// contract requires, so nothing waits on the throw-away waker used here.
    ///
    /// A panic in a request ends that request only: caught here on the
    /// dispatch thread, or by the runtime on its threads. Either way the
    /// request's future is dropped, and with it its reply, which fuser then
    /// answers with EIO; the dispatch loop and every other request go on.
    fn run(&self, work: impl Future<Output = ()> + Send + 'static) {
        run_inline(&self.runtime, work);
    }
}

impl<S: ObjectStore> fuser::Filesystem for FuseAdapter<S> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(nearest) = config.set_max_readahead(MAX_READAHEAD_BYTES) {
            let _ = config.set_max_readahead(nearest);
        }
        let _ = config.set_max_background(MAX_BACKGROUND_REQUESTS);
        // Attributes with every directory entry: `ls -l` then needs no lookup
        // per entry.
        if config
            .add_capabilities(InitFlags::FUSE_DO_READDIRPLUS)
            .is_err()
        {
            log::info!("kernel does not support readdirplus; listing uses lookups");
        }
        // O_TRUNC arrives with open, so truncating a file never fetches it first.
        if config
            .add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC)
            .is_err()
        {
            log::info!("kernel does not pass O_TRUNC to open");
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = match name_of(name, Errno::ENOENT) {
            Ok(name) => name,
            Err(errno) => return reply.error(errno),
        };
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            match fs.lookup(parent.0, &name).await {
                Ok(entry) => reply_entry(reply, &entry),
                Err(error) => reply.error(failure("lookup", parent.0, &error)),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            match fs.getattr(ino.0).await {
                Ok(entry) => reply.attr(&entry.ttl, &file_attr(&entry.attr)),
                Err(error) => reply.error(failure("getattr", ino.0, &error)),
            }
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let intent = match flags.acc_mode() {
            OpenAccMode::O_RDONLY => OpenIntent::Read,
            OpenAccMode::O_WRONLY | OpenAccMode::O_RDWR => OpenIntent::Write {
                truncate: flags.0 & libc::O_TRUNC != 0,
                // FUSE tells the caller's uid, not its capabilities.
                drops_setid: req.uid() != 0,
            },
        };
        // A reader's close() has nothing to report (flush of a reader
        // returns at once), so the kernel need not ask: one round trip less
        // for every file `tar`, `cp` or `cat` reads.
        let no_flush = match intent {
            OpenIntent::Read => FopenFlags::FOPEN_NOFLUSH,
            OpenIntent::Write { .. } => FopenFlags::empty(),
        };
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            match fs.open(ino.0, intent).await {
                Ok((fh, page_cache)) => {
                    let flags = match page_cache {
                        PageCache::Keep => FopenFlags::FOPEN_KEEP_CACHE,
                        PageCache::Invalidate => FopenFlags::empty(),
                    };
                    reply.opened(FileHandle(fh), flags | no_flush)
                }
                Err(error) => reply.error(failure("open", ino.0, &error)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: fuser::ReplyData,
    ) {
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            match fs.read(fh.0, offset, size).await {
                Ok(bytes) => reply.data(&bytes),
                Err(error) => reply.error(failure("read", ino.0, &error)),
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            fs.release(fh.0).await;
            reply.ok();
        });
    }

    /// Every close(): the upload finishes before close() returns, and its
    /// failure is close()'s.
    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            match fs.flush(fh.0).await {
                Ok(()) => reply.ok(),
                Err(error) => reply.error(failure("flush", ino.0, &error)),
            }
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            match fs.flush(fh.0).await {
                Ok(()) => reply.ok(),
                Err(error) => reply.error(failure("fsync", ino.0, &error)),
            }
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(error) => reply.error(failure("opendir", ino.0, &error)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            let entries = match fs.readdirplus(fh.0, offset).await {
                Ok(entries) => entries,
                Err(error) => return reply.error(failure("readdirplus", ino.0, &error)),
            };
            let mut entries = entries.into_iter();
            for entry in entries.by_ref() {
                let attr = file_attr(&entry.entry.attr);
                if reply.add(
                    attr.ino,
                    entry.next_offset,
                    &entry.name,
                    &entry.entry.ttl,
                    &attr,
                    Generation(0),
                ) {
                    // Did not fit: the kernel never saw it, so give back its reference.
                    if entry.counts_as_lookup {
                        fs.forget(attr.ino.0, 1);
                    }
                    break;
                }
            }
            for entry in entries.filter(|e| e.counts_as_lookup) {
                fs.forget(entry.entry.attr.ino, 1);
            }
            reply.ok();
        });
    }

    /// Used only by kernels without readdirplus.
    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            let entries = match fs.readdirplus(fh.0, offset).await {
                Ok(entries) => entries,
                Err(error) => return reply.error(failure("readdir", ino.0, &error)),
            };
            let mut is_full = false;
            for entry in entries {
                let attr = file_attr(&entry.entry.attr);
                if !is_full {
                    is_full = reply.add(attr.ino, entry.next_offset, attr.kind, &entry.name);
                }
                // Plain readdir takes no references.
                if entry.counts_as_lookup {
                    fs.forget(attr.ino.0, 1);
                }
            }
            reply.ok();
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // A bucket has no fixed size; report a large, constant capacity so
        // that `df` and tools that check free space before writing work.
        const BLOCK: u64 = 4096;
        const TOTAL_BLOCKS: u64 = (1u64 << 50) / BLOCK; // 1 PiB
        const FILES: u64 = 1 << 32;
        reply.statfs(
            TOTAL_BLOCKS,
            TOTAL_BLOCKS,
            TOTAL_BLOCKS,
            FILES,
            FILES,
            BLOCK as u32,
            255,
            BLOCK as u32,
        );
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<fuser::TimeOrNow>,
        mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _ = req;
        // UTIME_OMIT arrives as None; UTIME_NOW is resolved here, once, so
        // that atime and mtime set together are equal.
        let now = SystemTime::now();
        let resolve = |time: fuser::TimeOrNow| match time {
            fuser::TimeOrNow::SpecificTime(time) => time,
            fuser::TimeOrNow::Now => now,
        };
        let change = SetAttr {
            size,
            mode,
            uid,
            gid,
            atime: atime.map(resolve),
            mtime: mtime.map(resolve),
        };
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            match fs.setattr(ino.0, change).await {
                Ok(entry) => reply.attr(&entry.ttl, &file_attr(&entry.attr)),
                Err(error) => reply.error(failure("setattr", ino.0, &error)),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let name = match name_of(name, Errno::EINVAL) {
            Ok(name) => name,
            Err(errno) => return reply.error(errno),
        };
        let caller = caller(req);
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            let mode = (mode & libc::S_IFMT) | (mode & 0o7777 & !umask);
            match fs
                .mknod(parent.0, &name, mode, u64::from(rdev), caller)
                .await
            {
                Ok(entry) => reply_entry(reply, &entry),
                Err(error) => reply.error(failure("mknod", parent.0, &error)),
            }
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let name = match name_of(name, Errno::EINVAL) {
            Ok(name) => name,
            Err(errno) => return reply.error(errno),
        };
        let caller = caller(req);
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            match fs.mkdir(parent.0, &name, mode & !umask, caller).await {
                Ok(entry) => reply_entry(reply, &entry),
                Err(error) => reply.error(failure("mkdir", parent.0, &error)),
            }
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = match name_of(name, Errno::ENOENT) {
            Ok(name) => name,
            Err(errno) => return reply.error(errno),
        };
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            match fs.unlink(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(error) => reply.error(failure("unlink", parent.0, &error)),
            }
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = match name_of(name, Errno::ENOENT) {
            Ok(name) => name,
            Err(errno) => return reply.error(errno),
        };
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            match fs.rmdir(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(error) => reply.error(failure("rmdir", parent.0, &error)),
            }
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let name = match name_of(link_name, Errno::EINVAL) {
            Ok(name) => name,
            Err(errno) => return reply.error(errno),
        };
        let target = Bytes::copy_from_slice(target.as_os_str().as_bytes());
        let caller = caller(req);
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            match fs.symlink(parent.0, &name, target, caller).await {
                Ok(entry) => reply_entry(reply, &entry),
                Err(error) => reply.error(failure("symlink", parent.0, &error)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: fuser::ReplyData) {
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            match fs.readlink(ino.0).await {
                Ok(target) => reply.data(&target),
                Err(error) => reply.error(failure("readlink", ino.0, &error)),
            }
        });
    }

    // With extended attributes off, ENOSYS (rather than EOPNOTSUPP) makes
    // the kernel answer EOPNOTSUPP itself from then on, so `ls -l`, `cp -a`
    // and every write (the kernel asks for `security.capability` first) do
    // not pay a round trip asking.
    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if !self.fs.xattrs_enabled() {
            return reply.error(Errno::ENOSYS);
        }
        let name = name.as_bytes().to_vec();
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            match fs.getxattr(ino.0, &name).await {
                Ok(value) => reply_xattr(reply, size, &value),
                Err(error) => reply.error(failure("getxattr", ino.0, &error)),
            }
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if !self.fs.xattrs_enabled() {
            return reply.error(Errno::ENOSYS);
        }
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            match fs.listxattr(ino.0).await {
                Ok(names) => {
                    let mut list = Vec::new();
                    for name in names {
                        list.extend_from_slice(name.as_bytes());
                        list.push(0);
                    }
                    reply_xattr(reply, size, &list);
                }
                Err(error) => reply.error(failure("listxattr", ino.0, &error)),
            }
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        if !self.fs.xattrs_enabled() {
            return reply.error(Errno::ENOSYS);
        }
        let write = match fs::XattrWrite::from_flags(flags) {
            Ok(write) => write,
            Err(error) => return reply.error(failure("setxattr", ino.0, &error)),
        };
        let name = name.as_bytes().to_vec();
        let value = value.to_vec();
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            match fs.setxattr(ino.0, &name, &value, write).await {
                Ok(()) => reply.ok(),
                Err(error) => reply.error(failure("setxattr", ino.0, &error)),
            }
        });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if !self.fs.xattrs_enabled() {
            return reply.error(Errno::ENOSYS);
        }
        let name = name.as_bytes().to_vec();
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            match fs.removexattr(ino.0, &name).await {
                Ok(()) => reply.ok(),
                Err(error) => reply.error(failure("removexattr", ino.0, &error)),
            }
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, new_name) = match (
            name_of(name, Errno::EINVAL),
            name_of(newname, Errno::EINVAL),
        ) {
            (Ok(name), Ok(new_name)) => (name, new_name),
            (Err(errno), _) | (_, Err(errno)) => return reply.error(errno),
        };
        if flags.contains(fuser::RenameFlags::RENAME_EXCHANGE) {
            // Two objects cannot swap keys atomically.
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(fuser::RenameFlags::RENAME_NOREPLACE);
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            match fs
                .rename(parent.0, &name, newparent.0, &new_name, no_replace)
                .await
            {
                Ok(()) => reply.ok(),
                Err(error) => reply.error(failure("rename", parent.0, &error)),
            }
        });
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        // Objects cannot share contents under two keys.
        reply.error(Errno::EPERM);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: fuser::ReplyCreate,
    ) {
        let name = match name_of(name, Errno::EINVAL) {
            Ok(name) => name,
            Err(errno) => return reply.error(errno),
        };
        let caller = caller(req);
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            match fs.create(parent.0, &name, mode & !umask, caller).await {
                Ok((entry, fh)) => reply.created(
                    &entry.ttl,
                    &file_attr(&entry.attr),
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                ),
                Err(error) => reply.error(failure("create", parent.0, &error)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: fuser::ReplyWrite,
    ) {
        let mut buffer = self.write_buffers.take(data.len());
        buffer.extend_from_slice(data);
        let data = buffer.freeze();
        let fs = Arc::clone(&self.fs);
        self.run(async move {
            match fs.write(fh.0, offset, data).await {
                Ok(written) => reply.written(written),
                Err(error) => reply.error(failure("write", ino.0, &error)),
            }
        });
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // The kernel checks permissions itself (mounted with default_permissions).
        reply.ok();
    }
}
