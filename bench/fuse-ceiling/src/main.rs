//! The FUSE ceiling: a file system that serves files from memory with bucketfs's FUSE settings
//! (src/fuse/mod.rs and src/fuse/session.rs): the same max_readahead and max_background, one
//! thread reading requests, the same mount options. Reading it with the very commands a benchmark
//! runs on bucketfs then measures the ceiling FUSE itself puts on any FUSE client of this machine:
//! no network, no cache, one copy from our memory into the reply.
//!
//! Two modes:
//!   fuse-ceiling MOUNTPOINT [SIZE_MIB (1024)] [FILES (4)]
//!       FILES big files (`big`, `big1`, ...) of SIZE_MIB MiB each, one buffer (big.rs): `dd`.
//!   fuse-ceiling --tree DIR MOUNTPOINT
//!       a copy of DIR's regular files and directories, read into memory at start (tree.rs): the
//!       many small files of `tar c`, with bucketfs's readdirplus and attribute lifetimes.
//!   fuse-ceiling MOUNTPOINT --sink
//!       writable, every byte written dropped (sink.rs): what writing through FUSE costs alone.
//! Runs in the foreground until unmounted (`fusermount3 -u MOUNTPOINT`); the mount appears only
//! once everything is in memory.

mod big;
mod sink;
mod tree;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Config, FileAttr, FileType, INodeNo, KernelConfig, MountOption};

/// bucketfs's values (src/fuse/mod.rs); keep them in step.
const MAX_READAHEAD_BYTES: u32 = 16 * 1024 * 1024;
const MAX_BACKGROUND_REQUESTS: u16 = 64;
const REPORTED_BLOCK_SIZE: u32 = 1024 * 1024;
const ROOT: u64 = 1;
/// bucketfs's default --metadata-ttl, which it gives the kernel for entries and attributes alike;
/// the modes that stand in for bucketfs's own requests (tree, sink) answer with it too.
const BUCKETFS_TTL: Duration = Duration::from_secs(1);

/// The kernel settings bucketfs asks for in its init, but for readdirplus, which only the tree
/// mode serves.
fn ask_for_bucketfs_settings(config: &mut KernelConfig) {
    if let Err(nearest) = config.set_max_readahead(MAX_READAHEAD_BYTES) {
        let _ = config.set_max_readahead(nearest);
    }
    let _ = config.set_max_background(MAX_BACKGROUND_REQUESTS);
}

fn bucketfs_session_config() -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("fuse-ceiling".to_owned()),
        MountOption::Subtype("fuse-ceiling".to_owned()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        // Read-write, as bucketfs mounts by default, although nothing here is writable but the
        // sink: on a read-write FUSE mount the kernel marks atime stale after every read, so an
        // fstat after reading (tar does one per file) costs a GETATTR, which a read-only mount
        // never sends. A read-only ceiling measured tar 2,000 round trips short of bucketfs.
        MountOption::RW,
    ];
    // bucketfs: one thread reads requests.
    config.n_threads = Some(1);
    config
}

/// What a read of `size` bytes at `offset` gets of `bytes`: short at the end.
fn read_at(bytes: &[u8], offset: u64, size: u32) -> &[u8] {
    let len = bytes.len() as u64;
    let start = offset.min(len) as usize;
    let end = offset.saturating_add(u64::from(size)).min(len) as usize;
    &bytes[start..end]
}

/// An entry's attributes as every mode reports them: nlink by kind, atime and ctime as mtime.
fn file_attr(
    ino: u64,
    kind: FileType,
    perm: u16,
    size: u64,
    mtime: SystemTime,
    (uid, gid): (u32, u32),
) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: mtime,
        mtime,
        ctime: mtime,
        crtime: UNIX_EPOCH,
        kind,
        perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid,
        gid,
        rdev: 0,
        blksize: REPORTED_BLOCK_SIZE,
        flags: 0,
    }
}

fn uid_gid() -> (u32, u32) {
    // SAFETY: getuid/getgid cannot fail and touch no memory of ours.
    unsafe { (libc::getuid(), libc::getgid()) }
}

fn usage() -> ! {
    eprintln!(
        "usage: fuse-ceiling MOUNTPOINT [SIZE_MIB] [FILES]\n       fuse-ceiling --tree DIR MOUNTPOINT\n       fuse-ceiling MOUNTPOINT --sink"
    );
    std::process::exit(2);
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = bucketfs_session_config();
    match args.as_slice() {
        [mountpoint, flag] if flag == "--sink" => {
            fuser::mount(sink::Sink::new(), mountpoint, &config)
        }
        [flag, dir, mountpoint] if flag == "--tree" => {
            let tree = tree::Tree::load(Path::new(dir))?;
            eprintln!("fuse-ceiling: {dir}: {}", tree.summary());
            fuser::mount(tree, mountpoint, &config)
        }
        [mountpoint, rest @ ..] if !mountpoint.starts_with('-') && rest.len() <= 2 => {
            let size_mib: usize = rest
                .first()
                .map_or(Ok(1024), |s| s.parse())
                .expect("SIZE_MIB");
            let files: u64 = rest.get(1).map_or(Ok(4), |s| s.parse()).expect("FILES");
            fuser::mount(big::BigFiles::new(size_mib, files), mountpoint, &config)
        }
        _ => usage(),
    }
}
