//! s3fs-fuse (the Debian package) mounted beside bucketfs on the same
//! bucket, for the tests that check both read what the other wrote.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Bucket, is_mounted, run, unmount_quietly};

pub fn sh(cwd: &Path, script: &str) -> String {
    run(Command::new("sh").arg("-c").arg(script).current_dir(cwd)).stdout_str()
}

/// An s3fs mount in the foreground; `Drop` unmounts it and reaps s3fs.
pub struct S3fsMount {
    child: Child,
    mountpoint: PathBuf,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl S3fsMount {
    /// Mounted with `use_xattr`, so that extended attributes travel too.
    pub fn start(bucket: &Bucket) -> S3fsMount {
        let target = bucket.target();
        let mountpoint_dir = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let passwd = work.path().join("passwd");
        std::fs::write(
            &passwd,
            format!("{}:{}\n", target.access_key, target.secret_key),
        )
        .unwrap();
        std::fs::set_permissions(&passwd, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let mountpoint = mountpoint_dir.path().to_path_buf();
        let log_path = work.path().join("s3fs.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new("s3fs")
            .arg(&bucket.name)
            .arg(&mountpoint)
            .arg("-f")
            .args(["-o", &format!("url={}", target.endpoint_url)])
            .args(["-o", "use_path_request_style,endpoint=us-east-1,use_xattr"])
            .args(["-o", &format!("passwd_file={}", passwd.display())])
            // Read what bucketfs wrote, not what s3fs cached before.
            .args(["-o", "stat_cache_expire=1"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start s3fs (Debian package s3fs; scripts/setup-test-deps.sh installs it)");
        let mut mount = S3fsMount {
            child,
            mountpoint,
            _dirs: (mountpoint_dir, work),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_mounted(&mount.mountpoint) {
            if let Ok(Some(status)) = mount.child.try_wait() {
                panic!(
                    "s3fs exited before mounting: {status}\n{}",
                    super::read_lossy(&log_path)
                );
            }
            assert!(Instant::now() < deadline, "s3fs did not mount in 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        mount
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for S3fsMount {
    fn drop(&mut self) {
        // s3fs uploads at close, so everything written is in the bucket
        // already; unmounting just ends the process.
        unmount_quietly(&self.mountpoint);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
