//! A read-only copy of a directory's regular files and directories, read into memory at start:
//! what `tar c` of many small files through FUSE can reach. It answers the requests bucketfs
//! answers on that path (lookup, getattr, open, read, flush, release, opendir, readdirplus) with
//! bucketfs's default lifetimes and open flags, so that the kernel sends it the same requests.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyOpen, Request,
};

use crate::{BUCKETFS_TTL, ROOT, ask_for_bucketfs_settings, file_attr};

struct Node {
    parent: u64,
    kind: FileType,
    perm: u16,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
    bytes: Vec<u8>,
    /// In name order, the order of an S3 listing and so of bucketfs's readdir.
    children: BTreeMap<OsString, u64>,
    /// bucketfs lets the kernel keep a file's pages from the second open on within a mount (the
    /// ETag seen at the last open is unchanged), not at the first.
    opened_before: AtomicBool,
}

pub struct Tree {
    /// Inode `n` is `nodes[n - 1]`.
    nodes: Vec<Node>,
}

impl Tree {
    /// Reads every regular file and directory under `dir`; anything else is left out.
    pub fn load(dir: &Path) -> std::io::Result<Tree> {
        let mut tree = Tree { nodes: Vec::new() };
        tree.add(dir, ROOT)?;
        Ok(tree)
    }

    /// Adds `path` (a directory or a regular file) under inode `parent`; returns its inode.
    fn add(&mut self, path: &Path, parent: u64) -> std::io::Result<u64> {
        let meta = std::fs::symlink_metadata(path)?;
        let kind = if meta.is_dir() {
            FileType::Directory
        } else {
            FileType::RegularFile
        };
        let bytes = if meta.is_file() {
            std::fs::read(path)?
        } else {
            Vec::new()
        };
        self.nodes.push(Node {
            parent,
            kind,
            perm: (meta.mode() & 0o7777) as u16,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.modified()?,
            bytes,
            children: BTreeMap::new(),
            opened_before: AtomicBool::new(false),
        });
        let ino = self.nodes.len() as u64;
        if meta.is_dir() {
            for dirent in std::fs::read_dir(path)? {
                let dirent = dirent?;
                let file_type = dirent.file_type()?;
                if file_type.is_dir() || file_type.is_file() {
                    let child = self.add(&dirent.path(), ino)?;
                    self.nodes[ino as usize - 1]
                        .children
                        .insert(dirent.file_name(), child);
                }
            }
        }
        Ok(ino)
    }

    pub fn summary(&self) -> String {
        let files = self
            .nodes
            .iter()
            .filter(|n| n.kind == FileType::RegularFile);
        let bytes: usize = files.clone().map(|n| n.bytes.len()).sum();
        let dirs = self.nodes.len() - files.clone().count();
        format!("{} files, {bytes} bytes, {dirs} directories", files.count())
    }

    fn node(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(usize::try_from(ino).ok()?.checked_sub(1)?)
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let node = self.node(ino)?;
        let size = node.bytes.len() as u64;
        Some(file_attr(
            ino,
            node.kind,
            node.perm,
            size,
            node.mtime,
            (node.uid, node.gid),
        ))
    }

    /// A directory's entries from `offset` on, `.` and `..` first as bucketfs lists them, each
    /// with the offset that follows it.
    fn entries(&self, ino: u64, offset: u64) -> Result<Vec<(u64, u64, &OsStr)>, Errno> {
        let node = self.node(ino).ok_or(Errno::ENOENT)?;
        if node.kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        let dots = [(ino, OsStr::new(".")), (node.parent, OsStr::new(".."))];
        let children = node
            .children
            .iter()
            .map(|(name, &child)| (child, name.as_os_str()));
        Ok(dots
            .into_iter()
            .chain(children)
            .enumerate()
            .skip(offset as usize)
            .map(|(index, (child, name))| (child, index as u64 + 1, name))
            .collect())
    }
}

impl fuser::Filesystem for Tree {
    /// bucketfs's init flags: its readahead and background, readdirplus, atomic O_TRUNC.
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        ask_for_bucketfs_settings(config);
        let _ = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS);
        let _ = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self
            .node(parent.0)
            .and_then(|dir| dir.children.get(name))
            .and_then(|&ino| self.attr(ino));
        match found {
            Some(attr) => reply.entry(&BUCKETFS_TTL, &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino.0) {
            Some(attr) => reply.attr(&BUCKETFS_TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let Some(node) = self.node(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let flags = if node.opened_before.swap(true, Ordering::Relaxed) {
            FopenFlags::FOPEN_KEEP_CACHE
        } else {
            FopenFlags::empty()
        };
        // As bucketfs answers a read-only open: no FLUSH at close.
        reply.opened(FileHandle(ino.0), flags | FopenFlags::FOPEN_NOFLUSH);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(node) = self.node(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        reply.data(crate::read_at(&node.bytes, offset, size));
    }

    /// bucketfs answers every close's flush (fuser's default, ENOSYS, would stop the kernel from
    /// sending them); a read-only open carries FOPEN_NOFLUSH there and here, so only a kernel
    /// without it sends one.
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

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        match self.entries(ino.0, offset) {
            Ok(entries) => {
                for (child, next_offset, name) in entries {
                    let Some(attr) = self.attr(child) else {
                        continue;
                    };
                    if reply.add(
                        INodeNo(child),
                        next_offset,
                        name,
                        &BUCKETFS_TTL,
                        &attr,
                        Generation(0),
                    ) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(errno) => reply.error(errno),
        }
    }

    /// Only for kernels without readdirplus.
    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.entries(ino.0, offset) {
            Ok(entries) => {
                for (child, next_offset, name) in entries {
                    let Some(attr) = self.attr(child) else {
                        continue;
                    };
                    if reply.add(INodeNo(child), next_offset, attr.kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(errno) => reply.error(errno),
        }
    }
}
