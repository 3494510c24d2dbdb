//! Tree walks over the in-memory store (issue 13, section 1): a walk the
//! way `find` does it (list a directory, then each subdirectory in turn)
//! shows exactly what directory-by-directory listings show, costs a few
//! flat listing pages instead of a LIST per directory, a second walk within
//! the TTL costs nothing, this mount's own changes show at once, and a
//! failing HEAD during a walk changes nothing that is shown.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[path = "common/core.rs"]
mod core_fs;
#[path = "common/walker.rs"]
mod walker;

use bucketfs::config::{FsConfig, PosixMetadata};
use bucketfs::fs::{Caller, FileKind, Filesystem, ROOT_INO, SetAttr};
use bucketfs::store::memory::{FailureKind, MemoryStore, Verb};
use bytes::Bytes;
use core_fs::fs_config;
use walker::{Seen, filesystem, list_names, plain_tree, reference, walk, walk_all, walk_pausing};

const DIRS: usize = 40;
const FILES_PER_DIR: usize = 30;

/// LISTs a walk of `tree()` sends at most: the root and t/ delimited, and
/// t/'s lookup; the tentative flat page of the walk of the root; then, the
/// walk moved down to t/ (42 subdirectories), four ranges of its 1,240 keys
/// listed side by side, one page each; and, for a slow walker, a lookup of
/// the empty directory again. Listing each directory takes over 40.
const WALK_LISTS_AT_MOST: u64 = 9;

const CALLER: Caller = Caller { uid: 0, gid: 0 };

/// `DIRS` directories of `FILES_PER_DIR` files carrying s3fs headers, one
/// of them with a nested directory, an empty directory (a marker only), a
/// marker with a mode, and a file shadowed by a directory of its name.
fn tree() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    let headers: HashMap<String, String> = [("mode", "33184"), ("uid", "7")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for dir in 0..DIRS {
        for file in 0..FILES_PER_DIR {
            store.put_with_metadata(
                &format!("t/d{dir:02}/f{file:02}"),
                vec![0u8; dir + file],
                headers.clone(),
            );
        }
    }
    store.put("t/d03/nested/deeper/x", vec![1u8; 5]);
    store.put("t/empty/", Vec::new());
    let marker_mode: HashMap<String, String> = [("mode", "16832")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    store.put_with_metadata("t/marked/", Vec::new(), marker_mode);
    store.put("t/marked/inside", vec![2u8; 3]);
    store.put("t/d07", vec![3u8; 9]); // hidden by the directory t/d07/
    store.put("top-level-file", vec![4u8; 2]);
    store
}

fn total_requests(store: &MemoryStore) -> u64 {
    [Verb::List, Verb::Head, Verb::Get]
        .into_iter()
        .map(|verb| store.request_count(verb))
        .sum()
}

#[tokio::test]
async fn a_walk_is_listed_flat_and_shows_what_listing_each_directory_shows() {
    let store = tree();
    let expected = reference(&store).await;
    let ordinary_lists = store.list_count();
    assert!(
        ordinary_lists > DIRS as u64,
        "the reference lists each directory: {ordinary_lists}"
    );

    let fs = filesystem(&store, Duration::from_secs(60));
    let seen = walk_all(&fs).await;
    assert_eq!(seen.len(), expected.len());
    assert_eq!(seen, expected);
    assert_eq!(
        seen.get("/t/empty").map(|entry| entry.0),
        Some(FileKind::Directory)
    );
    assert_eq!(seen.get("/t/marked").map(|entry| entry.2), Some(0o700));
    assert_eq!(
        seen.get("/t/d07").map(|entry| entry.0),
        Some(FileKind::Directory)
    );
    let lists = store.list_count() - ordinary_lists;
    eprintln!("walk: {lists} LISTs; listing each directory: {ordinary_lists}");
    assert!(
        lists <= WALK_LISTS_AT_MOST,
        "a walk of {DIRS} directories sent {lists} LISTs (listing each: {ordinary_lists})"
    );
}

#[tokio::test]
async fn a_second_walk_within_the_ttl_sends_no_request() {
    let store = tree();
    let fs = filesystem(&store, Duration::from_secs(60));
    let first = walk_all(&fs).await;
    let before = total_requests(&store);
    let second = walk_all(&fs).await;
    assert_eq!(second, first);
    assert_eq!(
        total_requests(&store),
        before,
        "the second walk sent requests"
    );
}

#[tokio::test]
async fn a_walk_after_the_ttl_lists_again_and_sees_other_clients_changes() {
    let store = tree();
    let fs = filesystem(&store, Duration::from_millis(300));
    walk_all(&fs).await;
    store.put("t/d05/from-elsewhere", vec![9u8; 11]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let lists = store.list_count();
    let seen = walk_all(&fs).await;
    assert!(store.list_count() > lists);
    assert_eq!(
        seen.get("/t/d05/from-elsewhere").map(|entry| entry.1),
        Some(11)
    );
}

#[tokio::test]
async fn this_mounts_changes_show_at_once_in_kept_listings() {
    let store = tree();
    let fs = filesystem(&store, Duration::from_secs(60));
    walk_all(&fs).await;

    let t = fs.lookup(ROOT_INO, "t").await.unwrap().attr.ino;
    let d05 = fs.lookup(t, "d05").await.unwrap().attr.ino;
    let (entry, fh) = fs.create(d05, "new", 0o644, CALLER).await.unwrap();
    fs.write(fh, 0, Bytes::from_static(b"hello")).await.unwrap();
    fs.release(fh).await;
    fs.forget(entry.attr.ino, 1);
    fs.unlink(d05, "f00").await.unwrap();
    let f01 = fs.lookup(d05, "f01").await.unwrap().attr.ino;
    fs.setattr(
        f01,
        SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        },
    )
    .await
    .unwrap();
    fs.forget(f01, 1);

    let seen = walk_all(&fs).await;
    assert_eq!(seen.get("/t/d05/new").map(|entry| entry.1), Some(5));
    assert!(!seen.contains_key("/t/d05/f00"));
    assert_eq!(seen.get("/t/d05/f01").map(|entry| entry.2), Some(0o600));
    assert_eq!(seen, reference(&store).await);
}

#[tokio::test]
async fn a_failing_head_during_a_walk_changes_nothing_shown() {
    let store = tree();
    let expected = reference(&store).await;
    for failure_after in [0, 5, 200, 700] {
        let fs = filesystem(&store, Duration::from_secs(60));
        // Lets the walk get under way, then fails one HEAD.
        let started = store.head_count();
        let walker = async { walk_all(&fs).await };
        let failer = async {
            while store.head_count() < started + failure_after {
                tokio::task::yield_now().await;
            }
            store.fail_next(Verb::Head, FailureKind::Timeout, 1);
        };
        let (seen, ()) = tokio::join!(walker, failer);
        store.clear_failures();
        assert_eq!(seen, expected, "HEAD failed after {failure_after}");
    }
}

/// A walk that takes longer than the TTL still uses what the flat listing
/// read ahead for it: its TTL starts when the walker comes, as read-ahead's.
#[tokio::test]
async fn a_walk_slower_than_the_ttl_uses_what_was_listed_ahead() {
    let store = tree();
    let expected = reference(&store).await;
    let lists_before = store.list_count();
    let heads_before = store.request_count(Verb::Head);
    let fs = filesystem(&store, Duration::from_millis(100));
    let mut seen = Seen::new();
    // 40 directories at 10 ms each: several TTLs.
    walk_pausing(&fs, ROOT_INO, "", &mut seen, Duration::from_millis(10)).await;
    assert_eq!(seen, expected);
    let lists = store.list_count() - lists_before;
    assert!(
        lists <= WALK_LISTS_AT_MOST,
        "a walk slower than the TTL sent {lists} LISTs"
    );
    // The flat listing vouches for the directories it listed: the lookups
    // on the way in cost no probe (a LIST, or a HEAD of an old-style
    // directory object) each.
    // Besides a HEAD per file, the delimited listing of t/ HEADs each
    // subdirectory's marker, as s3fs does.
    let heads = store.request_count(Verb::Head) - heads_before;
    let expected_heads = (DIRS * FILES_PER_DIR + DIRS) as u64;
    assert!(
        heads <= expected_heads + 16,
        "{heads} HEADs, expected about {expected_heads}: the lookups probed"
    );
}

/// A slow walker whose lookups lean on the flat listing (they wait for
/// it and are answered from it) while one of its LISTs or HEADs fails: the
/// failure may fail a call, which the walker tries again, but nothing
/// shown differs from listing each directory, and no lookup is answered
/// from a walk that stopped.
#[tokio::test]
async fn a_slow_walk_with_a_failing_request_changes_nothing_shown() {
    let store = tree();
    let expected = reference(&store).await;
    // A walk sends a few LISTs and a HEAD per file.
    for (verb, points) in [(Verb::List, [0, 1, 2, 4]), (Verb::Head, [0, 5, 200, 700])] {
        for failure_after in points {
            let fs = filesystem(&store, Duration::from_millis(60));
            let started = store.request_count(verb);
            let walked = AtomicBool::new(false);
            let walker = async {
                let mut seen = Seen::new();
                walk_pausing(&fs, ROOT_INO, "", &mut seen, Duration::from_millis(5)).await;
                walked.store(true, Ordering::Relaxed);
                seen
            };
            let failer = async {
                while store.request_count(verb) < started + failure_after {
                    if walked.load(Ordering::Relaxed) {
                        panic!("the walk sent fewer than {failure_after} {verb:?}s");
                    }
                    tokio::task::yield_now().await;
                }
                store.fail_next(verb, FailureKind::Timeout, 1);
            };
            let (seen, ()) = tokio::join!(walker, failer);
            store.clear_failures();
            assert_eq!(seen, expected, "{verb:?} failed after {failure_after}");
        }
    }
}

/// A second walk after the TTL is spotted as a walk too, not listed
/// directory by directory because the first one's walk is still around.
#[tokio::test]
async fn a_second_walk_after_the_ttl_is_listed_flat_again() {
    let store = tree();
    let expected = reference(&store).await;
    let fs = filesystem(&store, Duration::from_millis(200));
    assert_eq!(walk_all(&fs).await, expected);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lists_before = store.list_count();
    assert_eq!(walk_all(&fs).await, expected);
    let lists = store.list_count() - lists_before;
    assert!(
        lists <= WALK_LISTS_AT_MOST,
        "the second walk sent {lists} LISTs"
    );
}

/// An `ls` of a directory just after its parent's may be the first descent
/// of a `find`: the flat listing of the walk starts beside the directory's
/// own, but is held to its first pages until a second descent confirms the
/// walk. An `ls` alone costs at most those pages more, and nothing after.
#[tokio::test]
async fn a_first_descent_lists_a_few_pages_ahead_and_no_more() {
    let store = plain_tree(200, 30);
    let fs = filesystem(&store, Duration::from_secs(60));
    let root = list_names(&fs, ROOT_INO).await;
    let before = store.list_count();
    let t = list_names(&fs, root["t"]).await;
    assert_eq!(t.len(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_ls = store.list_count() - before;
    // t/'s own listing, then a flat page, and perhaps a second one asked
    // for before the first was counted.
    assert!(
        (2..=3).contains(&after_ls),
        "an ls of t/ after the root cost {after_ls} LISTs"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        store.list_count() - before,
        after_ls,
        "the listing went on with no walker"
    );

    // The second descent confirms the walk: the rest of the tree comes in
    // the flat listing's pages, not a LIST per directory.
    let mut seen = Seen::new();
    walk(&fs, t["d000"], "/t/d000", &mut seen).await;
    let mut total = 0;
    for (name, ino) in &t {
        let names = list_names(&fs, *ino).await;
        assert_eq!(names.len(), 30, "t/{name}");
        total += names.len();
    }
    assert_eq!(total, 6000);
    let lists = store.list_count() - before;
    // t/'s own listing; the walk of the root held to its first page (and
    // perhaps a second); moved down to t/, four ranges of 1,500 keys in two
    // pages each.
    assert!(
        lists <= 1 + 2 + 4 * 2,
        "a walk of 6,000 keys sent {lists} LISTs"
    );
}

/// The listing of a walk that a second descent confirmed fails on its first
/// page after the hold: the walk ends, and every directory still shows what
/// listing it on its own shows.
#[tokio::test]
async fn a_failing_page_after_the_first_descents_hold_changes_nothing_shown() {
    let store = plain_tree(200, 30);
    let expected = reference(&store).await;
    let fs = filesystem(&store, Duration::from_secs(60));
    let root = list_names(&fs, ROOT_INO).await;
    let t = list_names(&fs, root["t"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The walk's listing is held now; the next LIST is the page it asks for
    // once the walker descends.
    let failed_at = store.list_count();
    store.fail_next(Verb::List, FailureKind::Timeout, 1);
    let mut seen = Seen::new();
    seen.insert("/t".to_owned(), expected["/t"]);
    let mut names: Vec<_> = t.into_iter().collect();
    names.sort();
    for (name, ino) in names {
        let path = format!("/t/{name}");
        seen.insert(path.clone(), expected[&path]);
        walk(&fs, ino, &path, &mut seen).await;
    }
    assert!(store.list_count() > failed_at, "no LIST after the hold");
    store.clear_failures();
    assert_eq!(seen, expected);
}

/// Once the walk root's entry has timed out, the kernel looks the root up
/// again whenever it resolves a path through it. While the walk lists, its
/// listings vouch for the root: the lookup sends no request and does not
/// wait for the walk to end (it waited up to 2 s, every TTL, before).
#[tokio::test]
async fn a_walks_root_looked_up_again_mid_walk_costs_no_request() {
    let store = plain_tree(40, 60);
    // Without POSIX headers, so that a HEAD can only be a probe.
    let config = FsConfig {
        metadata_ttl: Duration::from_millis(100),
        posix_metadata: PosixMetadata::ListingOnly,
        ..fs_config()
    };
    let fs = Filesystem::new(Arc::clone(&store), config, 16).expect("staging directory");
    let root = list_names(&fs, ROOT_INO).await;
    let t = list_names(&fs, root["t"]).await;
    // The first range lists its 600 keys in one page.
    store.set_latency(Verb::List, Duration::from_millis(300));
    assert_eq!(list_names(&fs, t["d000"]).await.len(), 60);
    tokio::time::sleep(Duration::from_millis(150)).await;
    // A probe is a one-key LIST of t/ (and a HEAD when the directory had
    // headers); the walk's own pages are longer.
    let (heads, probes) = (store.request_count(Verb::Head), store.one_key_list_count());
    let entry = fs.lookup(ROOT_INO, "t").await.expect("lookup of t");
    assert_eq!(entry.attr.kind, FileKind::Directory);
    assert_eq!(store.request_count(Verb::Head), heads, "t was probed");
    assert_eq!(store.one_key_list_count(), probes, "t was probed");
}
