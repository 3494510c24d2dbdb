//! A foreground `bucketfs -f` whose process the test owns: its pid for
//! signals and /proc, its exit status, its environment (RUST_LOG, session
//! tokens) and its stderr. `common::Mount` keeps all of these private.
//!
//! `Drop` unmounts, kills the daemon if it does not exit, and prints its
//! stderr when the test failed.

#![allow(dead_code)] // Each test binary uses a different part.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::users::{TestUser, let_others_reach};
use crate::common::{
    S3Target, bucketfs_bin, bucketfs_command, is_mounted, mountpoint_dir, read_lossy, tail,
    unmount_quietly,
};

/// As in `common`: a mount must be live within 20 s.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Daemon {
    child: Child,
    mountpoint: PathBuf,
    stderr_path: PathBuf,
    _mountpoint_dir: tempfile::TempDir,
    _log_dir: tempfile::TempDir,
    /// What a daemon run by another user needs of its own: its binary, its
    /// HOME and staging.
    _private: Option<tempfile::TempDir>,
}

impl Daemon {
    /// Starts `bucketfs -f ARGS BUCKET MNT` with `env` added (a value of
    /// `None` removes the variable) and waits for the mount.
    pub fn start(
        target: &S3Target,
        bucket: &str,
        args: &[&str],
        env: &[(&str, Option<&str>)],
    ) -> Daemon {
        let (mountpoint_dir, mountpoint) = mountpoint_dir();
        let mut cmd = bucketfs_command(target, bucket, &mountpoint, &[&["-f"], args].concat());
        cmd.env("RUST_LOG", "warn,bucketfs=debug");
        set_env(&mut cmd, env.iter().copied());
        Daemon::spawn(cmd, mountpoint_dir, mountpoint, None)
    }

    /// As `start` without extra environment, but run by the unprivileged
    /// `user` itself on a mountpoint it owns: the mount the kernel then
    /// attributes to that user, made through fusermount3.
    pub fn start_as(user: &TestUser, target: &S3Target, bucket: &str, args: &[&str]) -> Daemon {
        let (mountpoint_dir, mountpoint) = mountpoint_dir();
        let private = tempfile::Builder::new()
            .prefix("bucketfs-user-")
            .tempdir_in("/tmp")
            .expect("a directory for the user's daemon");
        for dir in [mountpoint.as_path(), private.path()] {
            std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid)).expect("chown");
        }
        let_others_reach(&mountpoint);
        let template = bucketfs_command(target, bucket, &mountpoint, &[&["-f"], args].concat());
        // The build's own directory may be closed to other users (a CI
        // checkout in a 0700 temporary directory).
        let binary = private.path().join("bucketfs");
        std::fs::copy(bucketfs_bin(), &binary).expect("copy bucketfs for the user");
        let mut cmd = Command::new(&binary);
        cmd.args(template.get_args());
        set_env(&mut cmd, template.get_envs());
        cmd.uid(user.uid)
            .gid(user.gid)
            // Its own HOME and staging: root's are closed to it.
            .env("HOME", private.path())
            .env("TMPDIR", private.path())
            .env("RUST_LOG", "warn,bucketfs=debug");
        Daemon::spawn(cmd, mountpoint_dir, mountpoint, Some(private))
    }

    /// Spawns `cmd` with its output in a log of its own and waits for the
    /// mount at `mountpoint`.
    fn spawn(
        mut cmd: Command,
        mountpoint_dir: tempfile::TempDir,
        mountpoint: PathBuf,
        private: Option<tempfile::TempDir>,
    ) -> Daemon {
        let log_dir = tempfile::Builder::new()
            .prefix("bucketfs-log-")
            .tempdir()
            .expect("log dir");
        let stderr_path = log_dir.path().join("bucketfs.stderr");
        let stderr = File::create(&stderr_path).expect("stderr file");
        cmd.stdout(stderr.try_clone().expect("clone"))
            .stderr(stderr);
        let child = cmd.spawn().expect("spawn bucketfs");
        let mut daemon = Daemon {
            child,
            mountpoint,
            stderr_path,
            _mountpoint_dir: mountpoint_dir,
            _log_dir: log_dir,
            _private: private,
        };
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        while !is_mounted(&daemon.mountpoint) {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!(
                    "bucketfs exited with {status} before mounting:\n{}",
                    daemon.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "bucketfs did not mount within {MOUNT_TIMEOUT:?}:\n{}",
                daemon.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.mountpoint.join(relative)
    }

    pub fn log(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own unreaped child, so the pid is not reused.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.child.id());
    }

    /// The exit status, once the daemon exits within `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// A line of /proc/PID/status, in kB (`VmRSS`, `VmHWM`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{field}:")))
            .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid()))
    }

    /// Open descriptors of the daemon.
    /// The daemon's open descriptors: (sockets, everything else).
    pub fn descriptors(&self) -> (usize, usize) {
        let targets: Vec<_> = std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read /proc/PID/fd")
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .collect();
        let sockets = targets
            .iter()
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count();
        (sockets, targets.len() - sockets)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        unmount_quietly(&self.mountpoint);
        if self.wait(Duration::from_secs(30)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "--- bucketfs stderr for {} (tail) ---\n{}",
                self.mountpoint.display(),
                tail(&self.log(), 80)
            );
        }
    }
}

/// Sets (`Some`) or removes (`None`) each variable of `env` in `cmd`.
fn set_env<K: AsRef<OsStr>, V: AsRef<OsStr>>(
    cmd: &mut Command,
    env: impl IntoIterator<Item = (K, Option<V>)>,
) {
    for (name, value) in env {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
}

/// Waits up to `limit` for `condition`.
pub fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Deterministic bytes addressable by offset: any range of a seeded stream
/// can be made (and checked) without making what comes before it.
pub fn pattern(seed: u64, offset: u64, buffer: &mut [u8]) {
    let mut position = offset;
    let mut filled = 0;
    while filled < buffer.len() {
        let word = splitmix64(seed ^ (position / 8).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let within = (position % 8) as usize;
        let take = (8 - within).min(buffer.len() - filled);
        buffer[filled..filled + take].copy_from_slice(&word.to_le_bytes()[within..within + take]);
        filled += take;
        position += take as u64;
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

pub fn pattern_vec(seed: u64, len: usize) -> Vec<u8> {
    let mut buffer = vec![0u8; len];
    pattern(seed, 0, &mut buffer);
    buffer
}
