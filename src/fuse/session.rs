//! Mounting and running the FUSE session, so that `main` needs no fuser type.
//!
//! When it may (root, or CAP_SYS_ADMIN), bucketfs opens /dev/fuse and calls
//! mount(2) itself with the type `fuse.bucketfs` and the bucket as source, so
//! that `mount`, `findmnt` and /proc/mounts say what is mounted there. fuser's
//! own mount(2) always uses the bare type `fuse`. Without the privilege
//! (EACCES on /dev/fuse, EPERM from mount(2)), fuser mounts through the setuid
//! `fusermount3`, which applies the same type from the `subtype` option.
//!
//! Either way, [`mount`] returns only after the kernel's INIT handshake, and a
//! failed handshake leaves nothing mounted.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use fuser::{Config, MountOption, SessionACL};
use tokio::runtime::Handle;

use crate::config::{Access, WriteMode};
use crate::fs::Filesystem;
use crate::fuse::FuseAdapter;
use crate::store::ObjectStore;

/// What the kernel should know about the mount, beyond the filesystem itself.
pub struct MountOptions<'a> {
    /// Shown as the mount's source by `mount` and in /proc/mounts.
    pub source: &'a str,
    pub access: Access,
    pub write_mode: WriteMode,
}

pub struct MountedSession<S: ObjectStore> {
    session: fuser::Session<FuseAdapter<S>>,
    fs: Arc<Filesystem<S>>,
}

/// Unmounts from another thread (a signal handler's task) while the session runs.
pub struct Unmounter(UnmountVia);

enum UnmountVia {
    /// fuser mounted (through fusermount3) and knows how to undo it.
    Fuser(fuser::SessionUnmounter),
    /// We called mount(2); fuser does not know there is a mount.
    Kernel {
        mountpoint: CString,
        /// A duplicate of the session's /dev/fuse descriptor, only to ask
        /// whether the connection still stands (see [`is_connected`]).
        device: OwnedFd,
    },
}

impl Unmounter {
    /// Unmounts; fails with EBUSY while files are open.
    pub fn unmount(&mut self) -> io::Result<()> {
        match &mut self.0 {
            UnmountVia::Fuser(unmounter) => unmounter.unmount(),
            UnmountVia::Kernel { mountpoint, device } => {
                // Already unmounted (`umount`, `fusermount3 -u`): a second
                // umount could hit a new mount at the same path.
                if !is_connected(device) {
                    return Ok(());
                }
                // SAFETY: mountpoint is a valid NUL-terminated string that
                // outlives the call.
                if unsafe { libc::umount2(mountpoint.as_ptr(), 0) } == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            }
        }
    }
}

/// Detaches a busy mount (`umount -l`): processes that still have files open
/// keep them, and the session ends once they close them.
pub fn unmount_lazily(mountpoint: &Path) -> io::Result<()> {
    let path = CString::new(mountpoint.as_os_str().as_bytes())?;
    // SAFETY: path is a valid NUL-terminated string that outlives the call.
    let rc = unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Detaches a mount whose daemon died. Unprivileged users may not call
/// umount2, but fusermount3 lets them detach their own FUSE mounts.
pub fn clear_dead_mount(mountpoint: &Path) -> io::Result<()> {
    match unmount_lazily(mountpoint) {
        Err(error) if error.raw_os_error() == Some(libc::EPERM) => {
            let output = std::process::Command::new("fusermount3")
                .args(["-u", "-z", "--"])
                .arg(mountpoint)
                .stdin(std::process::Stdio::null())
                .output()?;
            if output.status.success() {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "fusermount3 -u -z: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                )))
            }
        }
        result => result,
    }
}

/// The file system type `mount` and /proc/mounts show.
const FS_TYPE: &str = "fuse.bucketfs";

/// Mode of the root directory, in the kernel's `rootmode=` syntax (octal
/// `S_IFDIR`); the permission bits come from our getattr.
const ROOT_MODE: &str = "40000";

/// Kernel readahead for the mount, in KiB. The kernel's default for a FUSE
/// mount is 128 KiB, so a streaming reader arrives in 128 KiB requests, each
/// a round trip through the daemon: at line rate that cost more CPU than the
/// bytes. With a larger window the kernel sends requests of 1 MiB (the most
/// one carries), several at once. Measured on 2 cores, 1 GiB read by one and
/// by four readers: see docs/benchmarks.md.
const READAHEAD_KB: u32 = 4096;

/// Sets the mount's readahead through sysfs, which only root may write;
/// otherwise the kernel's default stays. The device number comes from
/// /proc/self/mountinfo: a `stat` of the mountpoint would wait for the
/// session, which does not answer before `run`.
fn raise_readahead(mountpoint: &Path) {
    let Some(device) = mount_device(mountpoint) else {
        log::debug!(
            "{}: not found in /proc/self/mountinfo",
            mountpoint.display()
        );
        return;
    };
    let knob = format!("/sys/class/bdi/{device}/read_ahead_kb");
    match std::fs::write(&knob, READAHEAD_KB.to_string()) {
        Ok(()) => log::debug!("readahead {READAHEAD_KB} KiB ({knob})"),
        Err(error) => log::debug!("kernel readahead left at its default: {knob}: {error}"),
    }
}

/// The `major:minor` of the mount at `mountpoint` (the last one there).
fn mount_device(mountpoint: &Path) -> Option<String> {
    let mountinfo = std::fs::read("/proc/self/mountinfo").ok()?;
    let wanted = escape_mountinfo_path(mountpoint.as_os_str().as_bytes());
    let device = mountinfo
        .split(|&byte| byte == b'\n')
        .map(|line| line.split(|&byte| byte == b' ').collect::<Vec<_>>())
        .rfind(|fields| fields.get(4) == Some(&wanted.as_slice()))?
        .get(2)
        .copied()?;
    String::from_utf8(device.to_vec()).ok()
}

/// Paths in mountinfo have space, tab, newline and backslash as octal escapes.
fn escape_mountinfo_path(path: &[u8]) -> Vec<u8> {
    let mut escaped = Vec::with_capacity(path.len());
    for &byte in path {
        match byte {
            b' ' | b'\t' | b'\n' | b'\\' => escaped.extend(format!("\\{byte:03o}").bytes()),
            _ => escaped.push(byte),
        }
    }
    escaped
}

/// Mounts the filesystem. When this returns the kernel has completed the
/// FUSE handshake, so the mount is live and requests queue until `run`.
pub fn mount<S: ObjectStore>(
    fs: Arc<Filesystem<S>>,
    runtime: Handle,
    mountpoint: &Path,
    options: &MountOptions<'_>,
) -> io::Result<(MountedSession<S>, Unmounter)> {
    let config = session_config(options);
    let adapter = FuseAdapter::new(Arc::clone(&fs), runtime);
    let device = match mount_directly(mountpoint, options) {
        Ok(device) => device,
        // Not root: /dev/fuse is often root-only (EACCES) and mount(2)
        // needs CAP_SYS_ADMIN (EPERM); the setuid fusermount3 has both.
        Err(error) if matches!(error.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
            log::debug!("cannot mount directly ({error}); mounting through fusermount3");
            let mut session = fuser::Session::new(adapter, mountpoint, &config)?;
            raise_readahead(mountpoint);
            let unmounter = Unmounter(UnmountVia::Fuser(session.unmount_callable()));
            return Ok((MountedSession { session, fs }, unmounter));
        }
        Err(error) => return Err(error),
    };
    let unmounter = Unmounter(UnmountVia::Kernel {
        mountpoint: CString::new(mountpoint.as_os_str().as_bytes())?,
        device: device.try_clone().inspect_err(|_| {
            let _ = unmount_lazily(mountpoint);
        })?,
    });
    match fuser::Session::from_fd(adapter, device, config.acl, config) {
        Ok(session) => {
            raise_readahead(mountpoint);
            Ok((MountedSession { session, fs }, unmounter))
        }
        Err(error) => {
            // The handshake failed and the device is closed: the mount is
            // dead ("Transport endpoint is not connected") until detached.
            if let Err(unmount_error) = unmount_lazily(mountpoint) {
                log::warn!(
                    "cannot detach the failed mount at {}: {unmount_error}",
                    mountpoint.display()
                );
            }
            Err(error)
        }
    }
}

fn session_config(options: &MountOptions<'_>) -> Config {
    let mut mount_options = vec![
        MountOption::FSName(options.source.to_owned()),
        MountOption::Subtype("bucketfs".to_owned()),
        // The kernel checks mode bits against the caller, as on any local
        // file system, instead of every caller seeing everything.
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    mount_options.push(match options.write_mode {
        WriteMode::ReadOnly => MountOption::RO,
        WriteMode::ReadWrite => MountOption::RW,
    });
    let mut config = Config::default();
    config.mount_options = mount_options;
    config.acl = match options.access {
        Access::Owner => SessionACL::Owner,
        Access::AllowOther => SessionACL::All,
        // The kernel knows only allow_other; fuser turns away other users.
        Access::AllowRoot => SessionACL::RootAndOwner,
    };
    // One thread reads requests; the work runs on tokio.
    config.n_threads = Some(1);
    config
}

/// Opens /dev/fuse and mounts it at `mountpoint` with mount(2), as
/// mount.fuse3 and fusermount3 do, but with our type and source. Returns the
/// device, on which the kernel's INIT request is waiting.
fn mount_directly(mountpoint: &Path, options: &MountOptions<'_>) -> io::Result<OwnedFd> {
    let device: OwnedFd = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map(File::into)?;
    // SAFETY: getuid and getgid cannot fail and touch no memory of ours.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut data = format!(
        "fd={},rootmode={ROOT_MODE},user_id={uid},group_id={gid},default_permissions",
        device.as_raw_fd()
    );
    if options.access != Access::Owner {
        data.push_str(",allow_other");
    }
    let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
    if options.write_mode == WriteMode::ReadOnly {
        flags |= libc::MS_RDONLY;
    }
    let source = CString::new(options.source)?;
    let target = CString::new(mountpoint.as_os_str().as_bytes())?;
    let fs_type = CString::new(FS_TYPE)?;
    let data = CString::new(data)?;
    // SAFETY: all four strings are valid, NUL-terminated and outlive the
    // call; the kernel reads `data` as a string because FUSE's is one.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fs_type.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(device)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether the FUSE connection behind `device` still stands: the kernel
/// reports POLLERR on the device once the file system is unmounted or aborted.
fn is_connected(device: &OwnedFd) -> bool {
    let mut poll = libc::pollfd {
        fd: device.as_fd().as_raw_fd(),
        events: 0,
        revents: 0,
    };
    loop {
        // SAFETY: `poll` is one valid pollfd, as the count says.
        match unsafe { libc::poll(&mut poll, 1, 0) } {
            0 => return true,
            1 => return poll.revents & libc::POLLERR == 0,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            // poll on an open descriptor fails only without memory; assume
            // still mounted, so the caller tries to unmount.
            _ => return true,
        }
    }
}

impl<S: ObjectStore> MountedSession<S> {
    /// Serves requests until the file system is unmounted.
    pub fn run(self) -> io::Result<()> {
        let _budget = super::inode_budget::keep(self.fs, self.session.notifier());
        self.session.run()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_escape_what_the_kernel_escapes() {
        assert_eq!(escape_mountinfo_path(b"/mnt/a b\\c"), b"/mnt/a\\040b\\134c");
        assert_eq!(
            escape_mountinfo_path("/mnt/é".as_bytes()),
            "/mnt/é".as_bytes()
        );
    }

    #[test]
    fn the_root_mount_has_a_device() {
        let device = mount_device(Path::new("/")).expect("/ is mounted");
        assert!(device.contains(':'), "{device}");
    }
}
