//! A writable file system that keeps names and sizes and drops every byte written: what `cp` or
//! `dd` into a FUSE mount costs the machine when the daemon does nothing with the data. Run
//! beside a raw upload of the same bytes (bench/write.sh's `raw+fuse`), it shows what a FUSE
//! client's writes add to that upload on this machine before any work of the client's own.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use fuser::{
    BsdFileFlags, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyCreate, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::{BUCKETFS_TTL, ROOT, ask_for_bucketfs_settings, file_attr, uid_gid};

struct Node {
    parent: u64,
    name: OsString,
    kind: FileType,
    size: u64,
}

/// fuser calls with `&self`; one request at a time takes the lock.
pub struct Sink {
    state: Mutex<State>,
}

struct State {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
}

impl Sink {
    pub fn new() -> Self {
        Sink {
            state: Mutex::new(State::new()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn new() -> Self {
        let root = Node {
            parent: ROOT,
            name: OsString::new(),
            kind: FileType::Directory,
            size: 0,
        };
        State {
            nodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
        }
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let node = self.nodes.get(&ino)?;
        let perm = if node.kind == FileType::Directory {
            0o755
        } else {
            0o644
        };
        Some(file_attr(
            ino,
            node.kind,
            perm,
            node.size,
            UNIX_EPOCH,
            uid_gid(),
        ))
    }

    fn child(&self, parent: u64, name: &OsStr) -> Option<u64> {
        self.nodes
            .iter()
            .find(|(ino, node)| **ino != ROOT && node.parent == parent && node.name == name)
            .map(|(&ino, _)| ino)
    }

    fn add(&mut self, parent: INodeNo, name: &OsStr, kind: FileType) -> Result<FileAttr, Errno> {
        if self.child(parent.0, name).is_some() {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(
            ino,
            Node {
                parent: parent.0,
                name: name.to_owned(),
                kind,
                size: 0,
            },
        );
        Ok(self.attr(ino).expect("just added"))
    }
}

impl fuser::Filesystem for Sink {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        ask_for_bucketfs_settings(config);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let state = self.state();
        match state.child(parent.0, name).and_then(|ino| state.attr(ino)) {
            Some(attr) => reply.entry(&BUCKETFS_TTL, &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().attr(ino.0) {
            Some(attr) => reply.attr(&BUCKETFS_TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.state();
        let Some(node) = state.nodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if let Some(size) = size {
            node.size = size;
        }
        reply.attr(&BUCKETFS_TTL, &state.attr(ino.0).expect("present"));
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        match self.state().add(parent, name, FileType::Directory) {
            Ok(attr) => reply.entry(&BUCKETFS_TTL, &attr, Generation(0)),
            Err(errno) => reply.error(errno),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.state().add(parent, name, FileType::RegularFile) {
            Ok(attr) => reply.created(
                &BUCKETFS_TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(errno) => reply.error(errno),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut state = self.state();
        let Some(node) = state.nodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        node.size = node.size.max(offset + data.len() as u64);
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.state();
        match state.child(parent.0, name) {
            Some(ino) => {
                state.nodes.remove(&ino);
                reply.ok();
            }
            None => reply.error(Errno::ENOENT),
        }
    }
}
