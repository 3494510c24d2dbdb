//! Mounting and running the FUSE session, so that `main` needs no fuser type.

use std::io;
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
}

/// Unmounts from another thread (a signal handler's task) while the session runs.
pub struct Unmounter(fuser::SessionUnmounter);

impl Unmounter {
    pub fn unmount(&mut self) -> io::Result<()> {
        self.0.unmount()
    }
}

/// Detaches a busy mount (`umount -l`): processes that still have files open
/// keep them, and the session ends once they close them.
pub fn unmount_lazily(mountpoint: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())?;
    // SAFETY: path is a valid NUL-terminated string that outlives the call.
    let rc = unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Mounts the filesystem. When this returns the kernel has completed the
/// FUSE handshake, so the mount is live and requests queue until `run`.
pub fn mount<S: ObjectStore>(
    fs: Arc<Filesystem<S>>,
    runtime: Handle,
    mountpoint: &Path,
    options: &MountOptions<'_>,
) -> io::Result<MountedSession<S>> {
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
        Access::AllowRoot => SessionACL::RootAndOwner,
    };
    // One thread reads requests; the work runs on tokio.
    config.n_threads = Some(1);
    let session = fuser::Session::new(FuseAdapter::new(fs, runtime), mountpoint, &config)?;
    Ok(MountedSession { session })
}

impl<S: ObjectStore> MountedSession<S> {
    pub fn unmounter(&mut self) -> Unmounter {
        Unmounter(self.session.unmount_callable())
    }

    /// Serves requests until the file system is unmounted.
    pub fn run(self) -> io::Result<()> {
        self.session.run()
    }
}
