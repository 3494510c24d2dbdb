//! A bucket written by s3fs-fuse (the Debian package) reads the same under
//! bucketfs, and the other way round: mode, owner, mtime, directories and
//! symlinks travel in the same `x-amz-meta-*` headers and objects.

mod common;

use common::s3fs::{S3fsMount, sh};
use common::{Bucket, ServerKind};

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

#[test]
fn special_files_and_times_made_by_s3fs_read_the_same_under_bucketfs() {
    let bucket = Bucket::new(ServerKind::Moto);
    {
        let s3fs = S3fsMount::start(&bucket);
        // s3fs 1.90 sets the times of a file it is still creating at its
        // first upload, so `touch -d` goes to a file that exists.
        sh(
            s3fs.path(),
            "umask 022 && mkfifo fifo && mknod -m 600 chr c 1 7 && printf x > nanos && \
             touch -d @1600000000.123456789 nanos",
        );
    }
    // s3fs writes no rdev: its devices are 0,0 wherever they are read.
    assert_eq!(bucket.metadata("chr").get("rdev"), None);
    assert_eq!(bucket.metadata("nanos")["mtime"], "1600000000.123456789");
    let mount = bucket.mount(&[]);
    assert_eq!(
        sh(mount.path(), "stat -c '%F %t %T %a' fifo chr"),
        "fifo 0 0 644\ncharacter special file 0 0 600\n"
    );
    assert_eq!(
        sh(mount.path(), "stat -c '%.9X %.9Y %.9Z' nanos"),
        "1600000000.123456789 1600000000.123456789 1600000000.123456789\n"
    );
    let types: String = sh(mount.path(), "ls -l chr fifo | cut -c1")
        .split_whitespace()
        .collect();
    assert_eq!(types, "cp");
}

#[test]
fn special_files_and_times_made_by_bucketfs_read_the_same_under_s3fs() {
    let bucket = Bucket::new(ServerKind::Moto);
    {
        let mount = bucket.mount(&[]);
        sh(
            mount.path(),
            "umask 022 && mkfifo fifo && mknod -m 600 chr c 1 7 && mknod -m 640 blk b 7 0 && \
             python3 -c \"import socket; socket.socket(socket.AF_UNIX).bind('sock')\" && \
             touch -d @1600000000.123456789 nanos && \
             printf x > t && touch -a -d @1500000000 t && touch -m -d @1400000000 t",
        );
    }
    let s3fs = S3fsMount::start(&bucket);
    assert_eq!(
        sh(s3fs.path(), "stat -c '%F %t %T %a' fifo chr blk sock"),
        "fifo 0 0 644\ncharacter special file 0 0 600\nblock special file 0 0 640\nsocket 0 0 755\n"
    );
    assert_eq!(
        sh(s3fs.path(), "stat -c '%.9X %.9Y' nanos t"),
        "1600000000.123456789 1600000000.123456789\n1500000000.000000000 1400000000.000000000\n"
    );
}
