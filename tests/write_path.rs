//! The write path through a real mount, driven with ordinary tools (`cp`,
//! shell redirections, `truncate`, `mv`, `mkdir`, `rmdir`, `rm`, `tar`,
//! `chmod`, `touch`) and checked with an independent client, a second mount,
//! or a remount.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Bucket, ServerKind, random_bytes, run, write_local};

const MIB: usize = 1024 * 1024;

fn sh(cwd: &Path, script: &str) -> common::RunOutput {
    run(Command::new("sh").arg("-c").arg(script).current_dir(cwd))
}

fn sh_status(cwd: &Path, script: &str) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .output()
        .expect("run sh")
}

#[test]
fn cp_in_a_large_file_then_read_it_through_a_second_mount_and_a_direct_get() {
    let bucket = Bucket::new(ServerKind::S3sFs);
    let source = tempfile::tempdir().unwrap();
    let body = random_bytes(42, 300 * MIB);
    let local = write_local(source.path(), "big.bin", &body);
    let first = bucket.mount(&[]);
    run(Command::new("cp").arg(&local).arg(first.join("big.bin")));
    // cp returned: close() committed the object, so every reader sees it.
    assert_eq!(
        bucket.get("big.bin"),
        body,
        "direct GET of the uploaded object"
    );
    // s3s-fs checks signatures: a payload hashed into one must match it.
    let second = bucket.mount(&["--sign-payloads"]);
    run(Command::new("cmp").arg(&local).arg(second.join("big.bin")));
    let signed = &body[..20 * MIB];
    let signed_local = write_local(source.path(), "signed.bin", signed);
    run(Command::new("cp")
        .arg(&signed_local)
        .arg(second.join("signed.bin")));
    assert_eq!(
        bucket.get("signed.bin"),
        signed,
        "object uploaded with signed payloads"
    );
}

#[test]
fn appends_truncates_and_overwrites_behave_like_a_local_file() {
    let bucket = Bucket::new(ServerKind::Moto);
    let mount = bucket.mount(&[]);
    let root = mount.path();
    sh(
        root,
        "echo one >> log.txt && echo two >> log.txt && echo three >> log.txt",
    );
    assert_eq!(bucket.get("log.txt"), b"one\ntwo\nthree\n");
    assert_eq!(sh(root, "cat log.txt").stdout_str(), "one\ntwo\nthree\n");

    sh(root, "printf 0123456789 > t && truncate -s 4 t");
    assert_eq!(bucket.get("t"), b"0123");
    sh(root, "truncate -s 8 t");
    assert_eq!(bucket.get("t"), b"0123\0\0\0\0");
    assert_eq!(sh(root, "stat -c %s t").stdout_str().trim(), "8");

    sh(
        root,
        "printf 'a long first version' > o && printf short > o",
    );
    assert_eq!(bucket.get("o"), b"short");

    // Writes past the end leave a zero-filled hole; backward writes land.
    sh(
        root,
        "printf Z | dd of=sparse bs=1 seek=100000 conv=notrunc 2>/dev/null && \
         printf C | dd of=back bs=1 seek=2 conv=notrunc 2>/dev/null && \
         printf B | dd of=back bs=1 seek=1 conv=notrunc 2>/dev/null && \
         printf A | dd of=back bs=1 seek=0 conv=notrunc 2>/dev/null",
    );
    let sparse = bucket.get("sparse");
    assert_eq!(sparse.len(), 100_001);
    assert!(sparse[..100_000].iter().all(|b| *b == 0));
    assert_eq!(bucket.get("back"), b"ABC");
}

#[test]
fn read_after_write_before_close_from_the_same_and_another_descriptor() {
    let bucket = Bucket::new(ServerKind::Moto);
    let mount = bucket.mount(&[]);
    let path = mount.join("live.txt");
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut writer = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    writer.write_all(b"not yet committed").unwrap();
    writer.seek(SeekFrom::Start(0)).unwrap();
    let mut same = String::new();
    writer.read_to_string(&mut same).unwrap();
    assert_eq!(same, "not yet committed");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not yet committed");
    let listing = sh(mount.path(), "ls -l live.txt").stdout_str();
    assert!(
        listing.contains(" 17 "),
        "listed with its current size: {listing}"
    );
    drop(writer);
    assert_eq!(bucket.get("live.txt"), b"not yet committed");
}

#[test]
fn mv_mkdir_rmdir_and_rm_rf_change_the_bucket() {
    let bucket = Bucket::new(ServerKind::Moto);
    let mut tree = Vec::new();
    for i in 0..200 {
        tree.push((
            format!("src/d{}/e{}/f{i}", i % 4, i % 3),
            bytes::Bytes::from(format!("file {i}")),
        ));
    }
    bucket.put_many(tree, 32);
    bucket.put("a.txt", "A");
    bucket.put("b.txt", "B");
    let mount = bucket.mount(&[]);
    let root = mount.path();

    sh(root, "mv a.txt c.txt");
    assert!(!bucket.list_keys("").contains("a.txt"));
    assert_eq!(bucket.get("c.txt"), b"A");
    sh(root, "mv c.txt b.txt");
    assert_eq!(
        bucket.get("b.txt"),
        b"A",
        "mv onto an existing file replaces it"
    );

    sh(root, "mv src dst");
    assert!(
        bucket.list_keys("src/").is_empty(),
        "nothing left under the old name"
    );
    assert_eq!(bucket.list_keys("dst/").len(), 200);
    assert_eq!(bucket.get("dst/d1/e1/f1"), b"file 1");
    assert_eq!(
        sh(root, "find dst -type f | wc -l").stdout_str().trim(),
        "200"
    );

    let rmdir = sh_status(root, "rmdir dst/d0");
    assert!(!rmdir.status.success());
    assert!(
        String::from_utf8_lossy(&rmdir.stderr).contains("Directory not empty"),
        "{}",
        String::from_utf8_lossy(&rmdir.stderr)
    );

    sh(root, "mkdir -p a/b/c && mkdir empty");
    assert!(bucket.list_keys("").contains("a/b/c/"));
    sh(root, "rm -rf dst");
    assert!(
        bucket.list_keys("dst/").is_empty(),
        "rm -rf leaves no key behind"
    );
    drop(mount);

    let again = bucket.mount(&[]);
    assert_eq!(
        sh(again.path(), "ls -d empty a/b/c").stdout_str(),
        "a/b/c\nempty\n",
        "directories survive a remount"
    );
    sh(again.path(), "rmdir empty");
    assert!(!bucket.list_keys("").contains("empty/"));
}

#[test]
fn chmod_chown_and_touch_persist_in_s3fs_headers() {
    let bucket = Bucket::new(ServerKind::Moto);
    bucket.put("f", "contents");
    let mount = bucket.mount(&[]);
    sh(
        mount.path(),
        "chmod 640 f && chown 1234:4321 f && touch -d @1600000000 f",
    );
    drop(mount);
    let metadata = bucket.metadata("f");
    assert_eq!(
        metadata.get("mode").map(String::as_str),
        Some("33184"),
        "{metadata:?}"
    );
    assert_eq!(metadata.get("uid").map(String::as_str), Some("1234"));
    assert_eq!(metadata.get("gid").map(String::as_str), Some("4321"));
    assert_eq!(
        metadata.get("mtime").map(String::as_str),
        Some("1600000000")
    );
    let again = bucket.mount(&[]);
    assert_eq!(
        sh(again.path(), "stat -c '%a %u %g %Y' f")
            .stdout_str()
            .trim(),
        "640 1234 4321 1600000000"
    );
    assert_eq!(
        bucket.get("f"),
        b"contents",
        "attributes changed, contents kept"
    );
}

#[test]
fn tar_x_of_2000_files_matches_the_source() {
    // moto, not s3s-fs: tar makes each directory before filling it, and
    // s3s-fs keeps no `dir/` marker objects, so an empty directory vanishes.
    let bucket = Bucket::new(ServerKind::Moto);
    let source = tempfile::tempdir().unwrap();
    for i in 0..2000 {
        write_local(
            source.path(),
            &format!("tree/d{}/f{i}.txt", i % 20),
            format!("file {i}\n").as_bytes(),
        );
    }
    let archive = source.path().join("tree.tar");
    run(Command::new("tar")
        .arg("cf")
        .arg(&archive)
        .arg("-C")
        .arg(source.path())
        .arg("tree"));
    let mount = bucket.mount(&[]);
    run(Command::new("tar")
        .arg("xf")
        .arg(&archive)
        .arg("-C")
        .arg(mount.path()));
    run(Command::new("diff")
        .arg("-r")
        .arg(source.path().join("tree"))
        .arg(mount.join("tree")));
    let files = bucket
        .list_keys("tree/")
        .into_iter()
        .filter(|key| !key.ends_with('/'))
        .count();
    assert_eq!(
        files, 2000,
        "one object per file, beside the directory markers"
    );
}

#[test]
fn a_read_only_mount_refuses_every_write() {
    let bucket = Bucket::new(ServerKind::Moto);
    bucket.put("f", "x");
    let mount = bucket.mount(&["--read-only"]);
    for script in [
        "touch new",
        "echo y > f",
        "mkdir d",
        "rm f",
        "mv f g",
        "chmod 600 f",
    ] {
        let out = sh_status(mount.path(), script);
        assert!(!out.status.success(), "{script} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("Read-only file system"),
            "{script}: {stderr}"
        );
    }
    assert_eq!(bucket.get("f"), b"x");
}

#[test]
fn a_failed_upload_fails_close_and_a_retry_succeeds_once_the_store_is_back() {
    use std::io::Write;
    use std::os::fd::IntoRawFd;

    let mut bucket = Bucket::new(ServerKind::S3sFs);
    let mount = bucket.mount(&["--request-timeout", "2", "--max-attempts", "2"]);
    let path = mount.join("precious.txt");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(b"must not be lost silently").unwrap();
    bucket.server.stop();
    let fd = file.into_raw_fd();
    // SAFETY: fd came from into_raw_fd and is closed exactly once, here.
    let rc = unsafe { libc::close(fd) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!(
        (rc, errno),
        (-1, Some(libc::EIO)),
        "close() reports the failed upload"
    );

    let source = tempfile::tempdir().unwrap();
    let local = write_local(source.path(), "copy.txt", b"copied while the store is down");
    let cp = Command::new("cp")
        .arg(&local)
        .arg(mount.join("copy.txt"))
        .output()
        .unwrap();
    assert!(!cp.status.success(), "cp must fail when its upload fails");

    bucket.server.restart();
    run(Command::new("cp").arg(&local).arg(mount.join("copy.txt")));
    assert_eq!(bucket.get("copy.txt"), b"copied while the store is down");
}

#[test]
fn a_file_renamed_before_close_lands_under_its_new_name() {
    use std::io::Write;
    let bucket = Bucket::new(ServerKind::Moto);
    let mount = bucket.mount(&[]);
    let mut file = std::fs::File::create(mount.join("draft.txt")).unwrap();
    file.write_all(b"first half, ").unwrap();
    std::fs::rename(mount.join("draft.txt"), mount.join("final.txt")).unwrap();
    file.write_all(b"second half").unwrap();
    drop(file);
    let keys = bucket.list_keys("");
    assert!(!keys.contains("draft.txt"), "old name gone: {keys:?}");
    assert_eq!(bucket.get("final.txt"), b"first half, second half");
}

#[test]
fn git_init_add_and_commit_work_inside_the_mount() {
    let bucket = Bucket::new(ServerKind::Moto);
    let mount = bucket.mount(&[]);
    sh(
        mount.path(),
        "git init -q repo && cd repo && echo hello > README && git add README && \
         git -c user.name=t -c user.email=t@example.com commit -q -m first && git log --oneline | wc -l",
    );
    assert_eq!(
        sh(
            &mount.join("repo"),
            "git status --porcelain && git log --format=%s"
        )
        .stdout_str(),
        "first\n"
    );
}

#[test]
fn symlinks_are_stored_as_s3fs_stores_them() {
    let bucket = Bucket::new(ServerKind::Moto);
    bucket.put("dir/target.txt", "pointed at\n");
    let mount = bucket.mount(&[]);
    sh(
        mount.path(),
        "ln -s dir/target.txt link && ln -s /etc/hostname dir/absolute",
    );
    assert_eq!(
        sh(mount.path(), "readlink link").stdout_str(),
        "dir/target.txt\n"
    );
    assert_eq!(sh(mount.path(), "cat link").stdout_str(), "pointed at\n");
    assert_eq!(
        sh(mount.path(), "stat -c '%F %a' link").stdout_str().trim(),
        "symbolic link 777"
    );
    assert!(!sh_status(mount.path(), "ln -s other link").status.success());
    drop(mount);

    assert_eq!(
        bucket.get("link"),
        b"dir/target.txt",
        "the body is the target"
    );
    let mode = bucket.metadata("link").get("mode").cloned();
    assert_eq!(mode.as_deref(), Some("41471"), "S_IFLNK | 0777");

    let again = bucket.mount(&[]);
    assert_eq!(
        sh(
            again.path(),
            "readlink dir/absolute && find . -type l | sort"
        )
        .stdout_str(),
        "/etc/hostname\n./dir/absolute\n./link\n"
    );
    sh(again.path(), "rm link");
    assert!(!bucket.list_keys("").contains("link"));
}

#[test]
fn appending_to_a_large_object_keeps_it_whole() {
    // s3s-fs: moto cannot complete multipart uploads for aws-sdk-s3.
    let bucket = Bucket::new(ServerKind::S3sFs);
    let mut body = random_bytes(43, 20 * MIB + 3);
    bucket.put("big.log", body.clone());
    let mount = bucket.mount(&[]);
    sh(mount.path(), "printf 'one more line\\n' >> big.log");
    body.extend_from_slice(b"one more line\n");
    assert_eq!(bucket.get("big.log"), body);
    sh(
        mount.path(),
        "printf 'X' | dd of=big.log bs=1 seek=9000000 conv=notrunc 2>/dev/null",
    );
    body[9_000_000] = b'X';
    assert_eq!(bucket.get("big.log"), body);
    // Unchanged parts were copied server side (a refused copy is logged
    // and uploaded instead).
    let log = mount.daemon_log();
    assert!(!log.contains("not copied"), "{log}");
}

#[test]
fn rm_of_a_file_open_for_reading_gives_estale_on_uncached_reads() {
    let bucket = Bucket::new(ServerKind::S3sFs);
    bucket.put("open.bin", random_bytes(44, 20 * MIB));
    let mount = bucket.mount(&[]);
    // Reads the start, removes the file through the mount, then reads far
    // past what the first read could have prefetched.
    let script = "import errno, os
fd = os.open('open.bin', os.O_RDONLY)
os.read(fd, 100)
os.unlink('open.bin')
try:
    os.pread(fd, 100, 19 * 1024 * 1024)
    print('read')
except OSError as error:
    print(errno.errorcode[error.errno])
";
    let out = run(Command::new("python3")
        .arg("-c")
        .arg(script)
        .current_dir(mount.path()));
    assert_eq!(out.stdout_str().trim(), "ESTALE");
    assert!(!bucket.list_keys("").contains("open.bin"));
    assert!(!mount.join("open.bin").exists());
}

/// Disk blocks held by the daemon's staging files (anonymous, so only
/// reachable through its descriptors).
fn staged_bytes(pid: u32, staging_parent: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| target.starts_with(staging_parent))
        })
        .filter_map(|fd| std::fs::metadata(fd.path()).ok())
        .map(|meta| meta.blocks() * 512)
        .sum()
}

#[test]
fn a_large_sequential_write_keeps_little_on_the_staging_disk() {
    let bucket = Bucket::new(ServerKind::S3sFs);
    let staging = tempfile::tempdir().unwrap();
    let staging_arg = staging.path().to_str().unwrap().to_owned();
    let mount = bucket.mount(&["--staging-dir", &staging_arg, "--max-write-buffer", "64"]);
    let pid = common::bucketfs_pids_for(mount.path())[0];
    let size_mib = 400;
    let writer = Command::new("dd")
        .arg("if=/dev/urandom")
        .arg(format!("of={}", mount.join("big.bin").display()))
        .args(["bs=1M", &format!("count={size_mib}"), "status=none"])
        .spawn()
        .unwrap();
    let sampler = std::thread::spawn({
        let parent = staging.path().to_path_buf();
        let mut writer = writer;
        move || {
            let mut most = 0;
            while writer.try_wait().unwrap().is_none() {
                most = most.max(staged_bytes(pid, &parent));
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            (most, writer.wait().unwrap())
        }
    });
    let (most_staged, status) = sampler.join().unwrap();
    assert!(status.success(), "dd failed: {status}");
    assert_eq!(bucket.get("big.bin").len(), size_mib * MIB);
    // The last 64 MiB written stay staged, plus the parts still uploading.
    eprintln!("most staged: {} MiB", most_staged / MIB as u64);
    assert!(
        most_staged < 160 * MIB as u64,
        "{} MiB staged while writing {size_mib} MiB\n{}",
        most_staged / MIB as u64,
        common::tail(&mount.daemon_log(), 30)
    );
}
