//! An unprivileged user made for one test, and a mountpoint it can reach:
//! what checks that the kernel, not root's privileges, decides who may do
//! what on a mount (`--allow-other` with `default_permissions`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::run_with_timeout;

/// Users made by this process so far: tests of one binary run in parallel,
/// and each needs a name of its own.
static USERS_MADE: AtomicU32 = AtomicU32::new(0);

/// A user made for one test, removed with its group afterwards.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    /// Its own group's id (`--user-group`).
    pub gid: u32,
}

impl TestUser {
    pub fn create() -> TestUser {
        let name = format!(
            "bfs{}u{}",
            std::process::id(),
            USERS_MADE.fetch_add(1, Ordering::SeqCst)
        );
        let useradd = run_with_timeout(
            Command::new("useradd")
                .args(["--no-create-home", "--user-group", "--shell", "/bin/sh"])
                .arg(&name),
            Duration::from_secs(30),
        );
        assert!(
            useradd.success(),
            "this test needs useradd (shadow-utils/passwd) to create an unprivileged user: {}",
            useradd.describe()
        );
        let id = |option: &str| -> u32 {
            let out = run_with_timeout(
                Command::new("id").args([option, &name]),
                Duration::from_secs(10),
            );
            out.stdout_str().trim().parse().expect("a numeric id")
        };
        let (uid, gid) = (id("-u"), id("-g"));
        TestUser { name, uid, gid }
    }

    /// Runs `program args` as this user; whether it succeeded, and stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> (bool, String) {
        let out = run_with_timeout(
            Command::new("runuser")
                .args(["-u", &self.name, "--", program])
                .args(args),
            Duration::from_secs(30),
        );
        (out.success(), out.stderr_str())
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// Lets every user traverse the directories above `mountpoint`, so that
/// only the mount's own options decide who enters: the test runner's
/// private TMPDIR (scripts/test.sh makes it 0700) would otherwise turn the
/// other user away before the kernel ever asks the mount.
pub fn let_others_reach(mountpoint: &Path) {
    for ancestor in mountpoint.ancestors().skip(1) {
        let Ok(metadata) = std::fs::metadata(ancestor) else {
            continue;
        };
        let mode = metadata.permissions().mode();
        if mode & 0o011 != 0o011 {
            std::fs::set_permissions(ancestor, std::fs::Permissions::from_mode(mode | 0o011))
                .expect("make an ancestor of the mountpoint traversable");
        }
    }
}
