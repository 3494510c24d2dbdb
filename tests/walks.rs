//! Tree walks through a real mount (issue 13, section 1): `find`, `du` and
//! `ls -lR` over a tree of many directories show exactly the bucket's keys
//! and sizes whether the mount walks it flat or directory by directory, a
//! second walk within the TTL shows the same, and changes made through the
//! mount show in the next walk at once. The request counts of a walk are
//! checked over the in-memory store (walk_core.rs), where they are exact.

mod common;

use std::collections::BTreeSet;

use common::{
    Bucket, ServerKind, files_and_sizes, put_sized_tree, run_tool, wait_for_inode_table_within,
};

const DIRS: usize = 30;
const FILES_PER_DIR: usize = 9;

#[test]
fn find_du_and_ls_lr_see_the_whole_tree_walked_flat_and_changes_at_once() {
    let bucket = Bucket::new(ServerKind::S3sFs);
    let mut expected = BTreeSet::new();
    for dir in 0..DIRS {
        for file in 0..FILES_PER_DIR {
            let key = format!("tree/d{dir:02}/sub{}/f{file:02}", file % 3);
            let size = dir * 7 + file;
            bucket.put(&key, vec![b'x'; size]);
            expected.insert(format!("{key} {size}"));
        }
    }
    bucket.put("tree/top", vec![b'y'; 3]);
    expected.insert("tree/top 3".to_owned());
    let total_bytes: usize = expected
        .iter()
        .map(|line| line.rsplit(' ').next().unwrap().parse::<usize>().unwrap())
        .sum();

    // The reference: no TTL, so nothing is kept and no walk is listed flat.
    let reference = bucket.mount(&["--metadata-ttl", "minimal"]);
    assert_eq!(files_and_sizes(reference.path()), expected);
    let reference_ls = run_tool(
        "ls",
        ["-lR", "--time-style=+", reference.path().to_str().unwrap()],
    );
    reference.unmount();

    let mount = bucket.mount(&["--metadata-ttl", "60"]);
    assert_eq!(files_and_sizes(mount.path()), expected, "first walk");
    assert_eq!(files_and_sizes(mount.path()), expected, "second walk");
    let du = run_tool(
        "du",
        [
            "-sb",
            "--apparent-size",
            mount.join("tree").to_str().unwrap(),
        ],
    );
    let du_bytes: usize = du
        .stdout_str()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // du counts directories too (their size is 0 here).
    assert_eq!(du_bytes, total_bytes, "du -sb");
    let ls = run_tool(
        "ls",
        ["-lR", "--time-style=+", mount.path().to_str().unwrap()],
    );
    assert_eq!(
        ls.stdout_str()
            .replace(mount.path().to_str().unwrap(), "MNT"),
        reference_ls
            .stdout_str()
            .replace(&reference_ls_root(&reference_ls.stdout_str()), "MNT"),
        "ls -lR"
    );

    // Changes through the mount show in the next walk at once.
    std::fs::remove_file(mount.join("tree/d05/sub0/f00")).unwrap();
    std::fs::write(mount.join("tree/d05/sub1/new"), b"12345").unwrap();
    assert!(expected.remove("tree/d05/sub0/f00 35"));
    expected.insert("tree/d05/sub1/new 5".to_owned());
    assert_eq!(files_and_sizes(mount.path()), expected, "after changes");
    mount.unmount();
}

/// The mountpoint as `ls -lR` printed it on its first line (`PATH:`).
fn reference_ls_root(listing: &str) -> String {
    listing
        .lines()
        .next()
        .and_then(|line| line.strip_suffix(':'))
        .unwrap_or_default()
        .to_owned()
}

/// A walk over several times `--max-inodes` entries: the tree still shows
/// whole, the kernel is asked to forget the entries known longest and does,
/// so the daemon's inode table comes back within the bound, and a file the
/// kernel was made to forget reads again.
#[test]
fn a_walk_past_max_inodes_shows_the_whole_tree_and_the_table_comes_back_within_it() {
    const MAX_INODES: usize = 150;
    let bucket = Bucket::new(ServerKind::S3sFs);
    let expected = put_sized_tree(&bucket, "big", b'z');
    let mount = bucket.mount(&["--max-inodes", &MAX_INODES.to_string()]);
    assert_eq!(files_and_sizes(mount.path()), expected, "first walk");
    let ls = run_tool(
        "ls",
        ["-lR", "--time-style=+", mount.path().to_str().unwrap()],
    );
    let files_listed = ls
        .stdout_str()
        .lines()
        .filter(|line| line.starts_with('-'))
        .count();
    assert_eq!(files_listed, expected.len(), "ls -lR");
    assert_eq!(files_and_sizes(mount.path()), expected, "second walk");

    wait_for_inode_table_within(&mount, MAX_INODES);
    assert_eq!(
        std::fs::read(mount.join("big/d00/f03")).unwrap(),
        vec![b'z'; 3],
        "a file known longest reads again"
    );
    mount.unmount();
}
