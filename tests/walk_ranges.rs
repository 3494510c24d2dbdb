//! Tree walks in ranges listed side by side, over the in-memory store
//! (issue 13, section 1): a walk that sends no HEADs cuts its tree into
//! ranges of its root's subdirectories, lists them side by side, and shows
//! what listing each directory on its own shows, also when a page of any
//! range fails; a walk that HEADs every key lists one page at a time.

use std::sync::Arc;
use std::time::Duration;

#[path = "common/core.rs"]
mod core_fs;
#[path = "common/walker.rs"]
mod walker;

use bucketfs::fs::{FileKind, Filesystem, ROOT_INO};
use bucketfs::runtimes::ListingRuntime;
use bucketfs::store::memory::{FailureKind, MemoryStore, Verb};
use walker::{Seen, filesystem, filesystem_without_headers, list_names, reference_under_t, walk};

/// A tree under `t/` whose top holds many directories, each beside a file
/// of its name (which the directory shadows), some beside names that sort
/// between a directory's key and its keys (`a05-x/`, `a05.z`), and a few
/// nested directories: wherever a walk cuts the tree into ranges, a cut
/// lands next to such names.
fn wide_tree() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    for dir in 0..40 {
        let name = format!("t/a{dir:02}");
        for file in 0..3 {
            store.put(&format!("{name}/f{file}"), vec![0u8; dir + file]);
        }
        store.put(&name, vec![1u8; 4]);
        if dir % 5 == 0 {
            store.put(&format!("{name}-x/inside"), vec![2u8; 5]);
            store.put(&format!("{name}.z"), vec![3u8; 6]);
        }
        if dir % 7 == 0 {
            store.put(&format!("{name}/sub/deep"), vec![4u8; 7]);
        }
    }
    store
}

/// Walks `t` of `wide_tree` on `fs`, each LIST taking 20 ms, checks that
/// it shows what listing each directory on its own shows, and returns the
/// most LISTs that were in flight at once.
async fn walk_wide_tree_counting_lists(
    store: &Arc<MemoryStore>,
    fs: &Filesystem<MemoryStore>,
) -> usize {
    let expected = reference_under_t(store).await;
    let root = list_names(fs, ROOT_INO).await;
    store.set_latency(Verb::List, Duration::from_millis(20));
    store.take_peak_in_flight(Verb::List);
    let mut seen = Seen::new();
    walk(fs, root["t"], "/t", &mut seen).await;
    let peak = store.take_peak_in_flight(Verb::List);
    assert_eq!(seen, expected);
    peak
}

/// The listings of a walk's ranges run side by side, and together show what
/// listing each directory on its own shows.
#[tokio::test]
async fn a_walk_lists_ranges_of_its_roots_directories_side_by_side() {
    let store = wide_tree();
    let fs = filesystem_without_headers(&store);
    let peak = walk_wide_tree_counting_lists(&store, &fs).await;
    assert!(peak >= 3, "at most {peak} LISTs were in flight at once");
}

/// A walk that HEADs every key waits on its HEADs, not on its pages: it
/// lists the tree in one listing, a page at a time.
#[tokio::test]
async fn a_walk_reading_headers_lists_one_page_at_a_time() {
    let store = wide_tree();
    let fs = filesystem(&store, Duration::from_secs(60));
    let peak = walk_wide_tree_counting_lists(&store, &fs).await;
    assert!(peak <= 2, "{peak} LISTs were in flight at once");
}

/// The daemon runs walks on a listing runtime of its own (one thread, see
/// `bucketfs::runtimes`), while the walker's requests run on another: the
/// walker waits for the walk's directories across the two, and sees what
/// listing each directory on its own shows, with and without headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_on_the_listing_runtime_shows_the_same_tree() {
    let listing = ListingRuntime::start().expect("listing runtime");
    for headers in [false, true] {
        let store = wide_tree();
        let fs = if headers {
            filesystem(&store, Duration::from_secs(60))
        } else {
            filesystem_without_headers(&store)
        };
        let fs = fs.with_listing_runtime(listing.handle());
        walk_wide_tree_counting_lists(&store, &fs).await;
    }
}

/// Whichever of a walk's listings fails, the walk ends and every directory
/// still shows what listing it on its own shows: in ranges (without
/// headers) and in one listing (with them).
#[tokio::test]
async fn a_failing_page_in_any_range_changes_nothing_shown() {
    let store = wide_tree();
    let expected = reference_under_t(&store).await;
    store.set_latency(Verb::List, Duration::from_millis(5));
    for (failing, headers) in (1..8).flat_map(|failing| [(failing, false), (failing, true)]) {
        let fs = if headers {
            filesystem(&store, Duration::from_secs(60))
        } else {
            filesystem_without_headers(&store)
        };
        let delay = Duration::from_millis(5 * failing);
        let seen = walk_t_failing_a_list_after(&store, &fs, &expected, delay).await;
        assert_eq!(
            seen, expected,
            "a walk whose LIST failed after {failing} x 5 ms, headers: {headers}"
        );
    }
}

/// Walks `t` on `fs` as `walk` does, but once the walk is under way (at
/// `t`'s second entry: the descent into the first directory confirmed it,
/// and its listings are running) makes the next LIST fail after `delay`,
/// so that, as `delay` grows, the failure lands on different pages.
/// Returns what the walk saw, `expected` being what each entry of `t` is.
async fn walk_t_failing_a_list_after(
    store: &MemoryStore,
    fs: &Filesystem<MemoryStore>,
    expected: &Seen,
    delay: Duration,
) -> Seen {
    let root = list_names(fs, ROOT_INO).await;
    let t = list_names(fs, root["t"]).await;
    let mut names: Vec<_> = t.into_iter().collect();
    names.sort();
    let mut seen = Seen::new();
    for (index, (name, ino)) in names.into_iter().enumerate() {
        let path = format!("/t/{name}");
        seen.insert(path.clone(), expected[&path]);
        if index == 1 {
            tokio::time::sleep(delay).await;
            store.fail_next(Verb::List, FailureKind::Timeout, 1);
        }
        if expected[&path].0 == FileKind::Directory {
            walk(fs, ino, &path, &mut seen).await;
        }
    }
    store.clear_failures();
    seen
}

/// Walks `t` on a mount without headers, each LIST of the walk taking
/// `list_latency` if given, checks that it shows what listing each
/// directory on its own shows, and returns the LISTs the walk sent and how
/// many of them started after a key (the ranges after the first).
async fn walk_t_without_headers_counting_lists(
    store: &Arc<MemoryStore>,
    list_latency: Option<Duration>,
) -> (u64, u64) {
    let expected = reference_under_t(store).await;
    let fs = filesystem_without_headers(store);
    let root = list_names(&fs, ROOT_INO).await;
    let lists_before = store.list_count();
    let ranges_before = store.lists_after_key_count();
    if let Some(latency) = list_latency {
        store.set_latency(Verb::List, latency);
    }
    let mut seen = Seen::new();
    walk(&fs, root["t"], "/t", &mut seen).await;
    assert_eq!(seen, expected);
    (
        store.list_count() - lists_before,
        store.lists_after_key_count() - ranges_before,
    )
}

/// `t/dDD/fFFFF` for 40 directories of 2,000 empty files: 80,000 keys, 80
/// pages of a flat listing.
fn large_tree() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    for dir in 0..40 {
        for file in 0..2000 {
            store.put(&format!("t/d{dir:02}/f{file:04}"), Vec::new());
        }
    }
    store
}

/// A large tree is cut into ranges of a few pages, which the listings take
/// in turn as they are free, rather than into a quarter per listing: past
/// the bound on entries ahead of the walker, the quarters left the walker
/// waiting on its own quarter's listing alone, one page at a time. The
/// last page of each range asks for about what is left in it.
#[tokio::test]
async fn a_large_tree_is_listed_in_ranges_of_a_few_pages() {
    let store = large_tree();
    let (lists, ranges) =
        walk_t_without_headers_counting_lists(&store, Some(Duration::from_millis(5))).await;
    // Ranges of about 10,000 keys (five directories, as the first
    // descent's directory says), and at most three here, a sixteenth of the
    // directories, four per listing. In quarters: 3.
    assert!(
        ranges >= 5,
        "the walk listed {ranges} ranges after the first"
    );
    // The 80 pages, a part page ending each range, t/'s own listing and
    // the first descent's, and the walk of the root before it moved down.
    assert!(
        lists <= 80 + ranges + 4,
        "a walk of 80,000 keys in {ranges} ranges sent {lists} LISTs"
    );
}

/// `t/a000` to `t/a199` holding ten files each, then `t/b` holding 20,000:
/// every count of keys a directory says ten, so the range holding `t/b`
/// first asks for a page of a few keys.
fn uneven_tree() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    for dir in 0..200 {
        for file in 0..10 {
            store.put(&format!("t/a{dir:03}/f{file}"), Vec::new());
        }
    }
    for file in 0..20_000 {
        store.put(&format!("t/b/f{file:05}"), Vec::new());
    }
    store
}

/// A range whose short last page came back full asks for whole pages
/// from then on: a count of keys a directory that is far too low costs a
/// few LISTs, not a page of a few keys after another.
#[tokio::test]
async fn a_count_far_too_low_costs_a_few_lists() {
    let store = uneven_tree();
    let (lists, _) = walk_t_without_headers_counting_lists(&store, None).await;
    // 22 pages of keys; per range (at most sixteen) a short page and one
    // ending it; t/'s and the first directory's own listings. Pages of a
    // few keys through t/b would be about a thousand.
    assert!(lists <= 22 + 16 * 2 + 4, "the walk sent {lists} LISTs");
}

/// The same walk with a LIST failing a little later each time: the walk
/// ends, the listings waiting to claim a range stop, and every directory
/// shows what listing it on its own shows.
#[tokio::test]
async fn a_failing_page_while_ranges_are_claimed_changes_nothing_shown() {
    let store = uneven_tree();
    let expected = reference_under_t(&store).await;
    store.set_latency(Verb::List, Duration::from_millis(2));
    for failing in 1..6 {
        let fs = filesystem_without_headers(&store);
        let delay = Duration::from_millis(3 * failing);
        let seen = walk_t_failing_a_list_after(&store, &fs, &expected, delay).await;
        assert_eq!(
            seen, expected,
            "a walk whose LIST failed after {failing} x 3 ms"
        );
    }
}
