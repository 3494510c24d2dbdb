//! A bucket written by s3fs-fuse (the Debian package) reads the same under
//! bucketfs, and the other way round: mode, owner, mtime, directories and
//! symlinks travel in the same `x-amz-meta-*` headers and objects.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Bucket, ServerKind, is_mounted, run, unmount_quietly};

fn sh(cwd: &Path, script: &str) -> String {
    run(Command::new("sh").arg("-c").arg(script).current_dir(cwd)).stdout_str()
}

/// An s3fs mount in the foreground; `Drop` unmounts it and reaps s3fs.
struct S3fsMount {
    child: Child,
    mountpoint: PathBuf,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl S3fsMount {
    fn start(bucket: &Bucket) -> S3fsMount {
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
            .args(["-o", "use_path_request_style,endpoint=us-east-1"])
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
                    common::read_lossy(&log_path)
                );
            }
            assert!(Instant::now() < deadline, "s3fs did not mount in 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        mount
    }

    fn path(&self) -> &Path {
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

#[test]
fn what_s3fs_writes_bucketfs_reads_with_the_same_attributes() {
    let bucket = Bucket::new(ServerKind::Moto);
    {
        let s3fs = S3fsMount::start(&bucket);
        sh(
            s3fs.path(),
            "mkdir -p made/by && printf 'from s3fs\\n' > made/by/s3fs.txt && \
             chmod 640 made/by/s3fs.txt && chown 1234:4321 made/by/s3fs.txt && \
             touch -d @1600000000 made/by/s3fs.txt && \
             chmod 700 made && ln -s by/s3fs.txt made/link",
        );
    }
    let mount = bucket.mount(&[]);
    assert_eq!(
        sh(mount.path(), "stat -c '%a %u %g %Y' made/by/s3fs.txt").trim(),
        "640 1234 4321 1600000000"
    );
    assert_eq!(sh(mount.path(), "cat made/link"), "from s3fs\n");
    assert_eq!(sh(mount.path(), "readlink made/link"), "by/s3fs.txt\n");
    // A directory's attributes live on its marker object: seen by lookup
    // (stat) and by a listing of its parent (ls -l).
    assert_eq!(
        sh(mount.path(), "stat -c '%F %a' made").trim(),
        "directory 700"
    );
    let listed = sh(mount.path(), "ls -ld made/by . && ls -l");
    assert!(listed.contains("drwx------"), "{listed}");
}

#[test]
fn what_bucketfs_writes_s3fs_reads_with_the_same_attributes() {
    let bucket = Bucket::new(ServerKind::Moto);
    {
        let mount = bucket.mount(&[]);
        sh(
            mount.path(),
            "mkdir -p made/by && printf 'from bucketfs\\n' > made/by/bucketfs.txt && \
             chmod 640 made/by/bucketfs.txt && chown 1234:4321 made/by/bucketfs.txt && \
             touch -d @1600000000 made/by/bucketfs.txt && \
             chmod 700 made && ln -s by/bucketfs.txt made/link",
        );
    }
    let s3fs = S3fsMount::start(&bucket);
    assert_eq!(
        sh(s3fs.path(), "stat -c '%a %u %g %Y' made/by/bucketfs.txt").trim(),
        "640 1234 4321 1600000000"
    );
    assert_eq!(sh(s3fs.path(), "cat made/link"), "from bucketfs\n");
    assert_eq!(sh(s3fs.path(), "readlink made/link"), "by/bucketfs.txt\n");
    assert_eq!(
        sh(s3fs.path(), "stat -c '%F %a' made").trim(),
        "directory 700"
    );
}
