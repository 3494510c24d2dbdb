//! The in-memory bucket answers as S3 does: listings, ranges, conditional
//! reads, multipart uploads, copies and injected failures.

use super::*;

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

fn store_with(keys: &[&str]) -> MemoryStore {
    let store = MemoryStore::new();
    for key in keys {
        store.put(key, Bytes::from(key.to_string()));
    }
    store
}

/// Lists every page of size `max_keys`; returns (objects, prefixes, pages).
fn list_all(
    store: &MemoryStore,
    prefix: &str,
    delimited: bool,
    max_keys: u32,
) -> (Vec<String>, Vec<String>, usize) {
    let mut objects = Vec::new();
    let mut prefixes = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = block_on(store.list_page(
            prefix,
            delimited,
            ListFrom::continuing(token.as_deref()),
            max_keys,
        ))
        .unwrap();
        pages += 1;
        assert!(page.objects.len() + page.common_prefixes.len() <= max_keys as usize);
        objects.extend(page.objects.into_iter().map(|object| object.key));
        prefixes.extend(page.common_prefixes);
        match page.next {
            Some(next) => token = Some(next),
            None => return (objects, prefixes, pages),
        }
    }
}

const TREE: &[&str] = &[
    "a-b",
    "a/",
    "a/x",
    "a/y/z",
    "a0",
    "b",
    "dir/",
    "dir/f1",
    "dir/f2",
    "dir/sub/g",
    "dir/sub/h",
    "dir/sub2/i",
    "dir0",
];

#[test]
fn delimited_listing_rolls_up_directories() {
    let store = store_with(TREE);
    let (objects, prefixes, _) = list_all(&store, "", true, 1000);
    assert_eq!(objects, ["a-b", "a0", "b", "dir0"]);
    assert_eq!(prefixes, ["a/", "dir/"]);

    let (objects, prefixes, _) = list_all(&store, "dir/", true, 1000);
    assert_eq!(objects, ["dir/", "dir/f1", "dir/f2"]);
    assert_eq!(prefixes, ["dir/sub/", "dir/sub2/"]);
}

#[test]
fn pagination_returns_every_entry_once() {
    let store = store_with(TREE);
    let full = list_all(&store, "", true, 1000);
    for max_keys in 1..=7 {
        let (objects, prefixes, pages) = list_all(&store, "", true, max_keys);
        assert_eq!(
            (&objects, &prefixes),
            (&full.0, &full.1),
            "max_keys {max_keys}"
        );
        assert_eq!(
            pages,
            6_usize.div_ceil(max_keys as usize),
            "max_keys {max_keys}"
        );
    }
    let (objects, _, pages) = list_all(&store, "dir/", false, 2);
    assert_eq!(
        objects,
        [
            "dir/",
            "dir/f1",
            "dir/f2",
            "dir/sub/g",
            "dir/sub/h",
            "dir/sub2/i"
        ]
    );
    assert_eq!(pages, 3);
}

#[test]
fn prefix_need_not_end_at_a_delimiter() {
    let store = store_with(TREE);
    let (objects, prefixes, _) = list_all(&store, "dir", true, 1000);
    assert_eq!(objects, ["dir0"]);
    assert_eq!(prefixes, ["dir/"]);
}

#[test]
fn listing_reports_size_and_etag() {
    let store = MemoryStore::new();
    let etag = store.put("k", "hello");
    let page = block_on(store.list_page("", true, ListFrom::Start, 10)).unwrap();
    assert_eq!(page.objects[0].size, 5);
    assert_eq!(page.objects[0].etag, etag);
    assert_eq!(page.next, None);
}

#[test]
fn ranges_are_clamped_at_the_end() {
    let store = MemoryStore::new();
    store.put("k", "0123456789");
    let get = |range| block_on(store.get_range("k", range, None)).unwrap();
    assert_eq!(get(2..5), "234");
    assert_eq!(get(8..100), "89");
    assert_eq!(get(10..20), "");
    assert_eq!(get(3..3), "");
    assert_eq!(store.get_count(), 3, "an empty range sends no request");
}

#[test]
fn if_match_detects_a_replaced_object() {
    let store = MemoryStore::new();
    let first = store.put("k", "old");
    assert_eq!(
        block_on(store.get_range("k", 0..3, Some(&first))).unwrap(),
        "old"
    );
    let second = store.put("k", "new");
    assert_ne!(first, second);
    assert!(matches!(
        block_on(store.get_range("k", 0..3, Some(&first))),
        Err(StoreError::PreconditionFailed { key }) if key == "k"
    ));
    assert_eq!(
        block_on(store.get_range("k", 0..3, Some("*"))).unwrap(),
        "new"
    );
}

#[test]
fn head_reports_metadata_and_missing_keys() {
    let store = MemoryStore::new();
    let metadata = HashMap::from([("Mode".to_owned(), "0644".to_owned())]);
    let etag = store.put_with_metadata("k", "abc", metadata);
    let meta = block_on(store.head("k")).unwrap();
    assert_eq!((meta.size, meta.etag), (3, etag));
    assert_eq!(meta.user_metadata["mode"], "0644");

    assert!(store.delete("k"));
    assert!(matches!(
        block_on(store.head("k")),
        Err(StoreError::NotFound { key }) if key == "k"
    ));
    assert_eq!(store.head_count(), 2);
}

#[test]
fn injected_failures_hit_only_the_next_requests() {
    let store = store_with(&["k"]);
    store.fail_next(Verb::Head, FailureKind::Timeout, 2);
    assert!(matches!(
        block_on(store.head("k")),
        Err(StoreError::Timeout)
    ));
    assert!(matches!(
        block_on(store.head("k")),
        Err(StoreError::Timeout)
    ));
    assert!(block_on(store.head("k")).is_ok());
    assert!(block_on(store.list_page("", true, ListFrom::Start, 10)).is_ok());
    assert_eq!((store.head_count(), store.list_count()), (3, 1));

    store.fail_next(Verb::Get, FailureKind::NotFound, 1);
    assert!(matches!(
        block_on(store.get_range("k", 0..1, None)),
        Err(StoreError::NotFound { key }) if key == "k"
    ));
}

fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// The code S3 would have answered, from the source of an `Other`.
fn rejection_code(err: StoreError) -> String {
    match err {
        StoreError::Other { source } => source.to_string(),
        other => panic!("expected a rejection, got {other:?}"),
    }
    .split(':')
    .next()
    .unwrap()
    .to_owned()
}

fn part_of(len: usize, byte: u8) -> Bytes {
    Bytes::from(vec![byte; len])
}

const MIN_PART: usize = MIN_PART_SIZE_BYTES as usize;

#[test]
fn put_stores_body_and_lower_cased_metadata() {
    let store = MemoryStore::new();
    let etag = block_on(ObjectStore::put(
        &store,
        "k",
        Bytes::from_static(b"body"),
        &metadata(&[("Mode", "0644")]).into(),
    ))
    .unwrap();
    let (data, user_metadata) = store.get("k").unwrap();
    assert_eq!(data, "body");
    assert_eq!(user_metadata, metadata(&[("mode", "0644")]));
    assert_eq!(block_on(store.head("k")).unwrap().etag, etag);
    assert_eq!(store.request_count(Verb::Put), 1);

    let second = block_on(ObjectStore::put(
        &store,
        "k",
        Bytes::new(),
        &ObjectHeaders::default(),
    ))
    .unwrap();
    assert_ne!(second, etag);
    assert_eq!(store.get("k").unwrap(), (Bytes::new(), HashMap::new()));
}

#[test]
fn multipart_concatenates_listed_parts_in_order() {
    let store = MemoryStore::new();
    store.put("k", "old");
    let upload = block_on(store.create_multipart("k", &metadata(&[("A", "1")]).into())).unwrap();
    assert_eq!(store.pending_uploads(), 1);
    let first = block_on(store.upload_part("k", &upload, 1, part_of(MIN_PART, b'a'))).unwrap();
    // Replaced by the next upload of the same number, as in S3.
    block_on(store.upload_part("k", &upload, 2, part_of(3, b'x'))).unwrap();
    let second = block_on(store.upload_part("k", &upload, 2, part_of(1, b'b'))).unwrap();
    // Uploaded but not listed: dropped at completion.
    block_on(store.upload_part("k", &upload, 3, part_of(1, b'c'))).unwrap();
    assert_eq!(
        store.get("k").unwrap().0,
        "old",
        "nothing changes before completion"
    );

    let etag = block_on(store.complete_multipart(
        "k",
        &upload,
        &[(1, first), (2, second.trim_matches('"').to_owned())],
    ))
    .unwrap();
    let (data, user_metadata) = store.get("k").unwrap();
    assert_eq!(data.len(), MIN_PART + 1);
    assert!(data[..MIN_PART].iter().all(|&byte| byte == b'a'));
    assert_eq!(data[MIN_PART], b'b');
    assert_eq!(user_metadata, metadata(&[("a", "1")]));
    assert!(etag.ends_with("-2\""), "{etag}");
    assert_eq!(block_on(store.head("k")).unwrap().etag, etag);
    assert_eq!(store.pending_uploads(), 0);
    assert_eq!(
        [
            Verb::CreateMultipart,
            Verb::UploadPart,
            Verb::CompleteMultipart
        ]
        .map(|verb| store.request_count(verb)),
        [1, 4, 1]
    );
    // The upload is gone: completing again is NoSuchUpload.
    let again = block_on(store.complete_multipart("k", &upload, &[(1, "x".to_owned())]));
    assert_eq!(rejection_code(again.unwrap_err()), "NoSuchUpload");
}

#[test]
fn complete_rejects_what_s3_rejects_and_keeps_the_upload() {
    let store = MemoryStore::new();
    let upload = block_on(store.create_multipart("k", &ObjectHeaders::default())).unwrap();
    let small = block_on(store.upload_part("k", &upload, 1, part_of(MIN_PART - 1, 0))).unwrap();
    let last = block_on(store.upload_part("k", &upload, 2, part_of(1, 1))).unwrap();
    let complete = |parts: &[(u32, String)]| {
        rejection_code(block_on(store.complete_multipart("k", &upload, parts)).unwrap_err())
    };
    assert_eq!(
        complete(&[(1, small.clone()), (2, last.clone())]),
        "EntityTooSmall"
    );
    assert_eq!(
        complete(&[(2, last.clone()), (1, small.clone())]),
        "InvalidPartOrder"
    );
    assert_eq!(complete(&[(1, last.clone())]), "InvalidPart");
    assert_eq!(complete(&[(7, last.clone())]), "InvalidPart");
    assert_eq!(complete(&[]), "MalformedXML");
    assert_eq!(store.pending_uploads(), 1);
    assert_eq!(store.get("k"), None);

    // A single part may be small: it is the last.
    let etag = block_on(store.complete_multipart("k", &upload, &[(1, small)])).unwrap();
    assert_eq!(
        block_on(store.head("k")).unwrap().size,
        MIN_PART_SIZE_BYTES - 1
    );
    assert!(etag.ends_with("-1\""));
}

#[test]
fn uploads_are_tied_to_their_key_and_part_numbers_are_bounded() {
    let store = MemoryStore::new();
    let upload = block_on(store.create_multipart("k", &ObjectHeaders::default())).unwrap();
    let err = block_on(store.upload_part("other", &upload, 1, part_of(1, 0))).unwrap_err();
    assert_eq!(rejection_code(err), "NoSuchUpload");
    let err = block_on(store.upload_part("k", "no-such-id", 1, part_of(1, 0))).unwrap_err();
    assert_eq!(rejection_code(err), "NoSuchUpload");
    for number in [0, MAX_PART_NUMBER + 1] {
        let err = block_on(store.upload_part("k", &upload, number, part_of(1, 0))).unwrap_err();
        assert_eq!(rejection_code(err), "InvalidArgument");
    }
    assert!(block_on(store.upload_part("k", &upload, MAX_PART_NUMBER, part_of(1, 0))).is_ok());
}

#[test]
fn abort_drops_the_parts() {
    let store = MemoryStore::new();
    let upload = block_on(store.create_multipart("k", &ObjectHeaders::default())).unwrap();
    let part = block_on(store.upload_part("k", &upload, 1, part_of(1, 0))).unwrap();
    block_on(store.abort_multipart("k", &upload)).unwrap();
    assert_eq!(store.pending_uploads(), 0);
    let err = block_on(store.complete_multipart("k", &upload, &[(1, part)])).unwrap_err();
    assert_eq!(rejection_code(err), "NoSuchUpload");
    let err = block_on(store.abort_multipart("k", &upload)).unwrap_err();
    assert_eq!(rejection_code(err), "NoSuchUpload");
    assert_eq!(store.get("k"), None);
    assert_eq!(store.request_count(Verb::AbortMultipart), 2);
}

#[test]
fn upload_part_copy_takes_a_range_of_the_pinned_source() {
    let store = MemoryStore::new();
    let mut body = vec![b's'; MIN_PART];
    body.extend_from_slice(b"tail");
    let source_etag = store.put("source", body);
    let upload = block_on(store.create_multipart("k", &ObjectHeaders::default())).unwrap();
    let copy = |number, range: Range<u64>, etag: Option<&str>| {
        block_on(store.upload_part_copy("k", &upload, number, "source", range, etag))
    };
    let first = copy(1, 0..MIN_PART_SIZE_BYTES, Some(&source_etag)).unwrap();
    let end = MIN_PART_SIZE_BYTES + 4;
    let second = copy(2, MIN_PART_SIZE_BYTES + 1..end, None).unwrap();
    assert_ne!(first, second);
    assert_eq!(
        rejection_code(copy(3, 0..end + 1, None).unwrap_err()),
        "InvalidArgument"
    );
    assert_eq!(
        rejection_code(copy(3, 2..2, None).unwrap_err()),
        "InvalidArgument"
    );
    assert!(matches!(
        copy(3, 0..1, Some("\"stale\"")),
        Err(StoreError::PreconditionFailed { key }) if key == "source"
    ));
    assert!(matches!(
        block_on(store.upload_part_copy("k", &upload, 3, "missing", 0..1, None)),
        Err(StoreError::NotFound { key }) if key == "missing"
    ));
    block_on(store.complete_multipart("k", &upload, &[(1, first), (2, second)])).unwrap();
    let data = store.get("k").unwrap().0;
    assert_eq!(data.len(), MIN_PART + 3);
    assert_eq!(&data[MIN_PART - 1..], b"sail");
    assert_eq!(store.request_count(Verb::UploadPartCopy), 6);
}

#[test]
fn copy_replaces_or_keeps_metadata_and_checks_the_source_etag() {
    let store = MemoryStore::new();
    let etag = store.put_with_metadata("src", "data", metadata(&[("mode", "0644")]));
    let kept = block_on(store.copy("src", "kept", Some(&etag), None)).unwrap();
    assert_eq!(
        store.get("kept").unwrap(),
        (Bytes::from("data"), metadata(&[("mode", "0644")]))
    );
    assert_eq!(block_on(store.head("kept")).unwrap().etag, kept);

    let replaced = metadata(&[("Mode", "0600")]).into();
    block_on(store.copy("src", "replaced", None, Some(&replaced))).unwrap();
    assert_eq!(
        store.get("replaced").unwrap().1,
        metadata(&[("mode", "0600")])
    );

    // Only a metadata change may copy an object onto itself.
    let err = block_on(store.copy("src", "src", None, None)).unwrap_err();
    assert_eq!(rejection_code(err), "InvalidRequest");
    block_on(store.copy("src", "src", Some(&etag), Some(&ObjectHeaders::default()))).unwrap();
    assert_eq!(
        store.get("src").unwrap(),
        (Bytes::from("data"), HashMap::new())
    );

    assert!(matches!(
        block_on(store.copy("src", "late", Some(&etag), None)),
        Err(StoreError::PreconditionFailed { key }) if key == "src"
    ));
    assert!(matches!(
        block_on(store.copy("missing", "dst", None, None)),
        Err(StoreError::NotFound { key }) if key == "missing"
    ));
    assert_eq!(store.get("late"), None);
    assert_eq!(store.request_count(Verb::Copy), 6);
}

#[test]
fn delete_of_a_missing_key_succeeds() {
    let store = store_with(&["k"]);
    block_on(ObjectStore::delete(&store, "k")).unwrap();
    assert_eq!(store.get("k"), None);
    block_on(ObjectStore::delete(&store, "k")).unwrap();
    assert_eq!(store.request_count(Verb::Delete), 2);
}

#[test]
fn write_verbs_fail_on_demand_without_side_effects() {
    let store = store_with(&["src"]);
    let verbs = [
        Verb::Put,
        Verb::CreateMultipart,
        Verb::UploadPart,
        Verb::UploadPartCopy,
        Verb::CompleteMultipart,
        Verb::AbortMultipart,
        Verb::Delete,
        Verb::Copy,
    ];
    let upload = block_on(store.create_multipart("k", &ObjectHeaders::default())).unwrap();
    let part = block_on(store.upload_part("k", &upload, 1, part_of(1, 0))).unwrap();
    for verb in verbs {
        store.fail_next(verb, FailureKind::Timeout, 1);
    }
    let body = Bytes::from_static(b"new");
    let none = ObjectHeaders::default();
    let results = [
        block_on(ObjectStore::put(&store, "src", body.clone(), &none)).map(drop),
        block_on(store.create_multipart("k", &none)).map(drop),
        block_on(store.upload_part("k", &upload, 2, body)).map(drop),
        block_on(store.upload_part_copy("k", &upload, 2, "src", 0..1, None)).map(drop),
        block_on(store.complete_multipart("k", &upload, &[(1, part.clone())])).map(drop),
        block_on(store.abort_multipart("k", &upload)),
        block_on(ObjectStore::delete(&store, "src")),
        block_on(store.copy("src", "dst", None, None)).map(drop),
    ];
    for (verb, result) in verbs.iter().zip(results) {
        assert!(matches!(result, Err(StoreError::Timeout)), "{verb:?}");
    }
    assert_eq!(store.get("src").unwrap().0, "src");
    assert_eq!((store.get("k"), store.get("dst")), (None, None));
    assert_eq!(store.pending_uploads(), 1);
    // The queues are drained: the upload still completes with its one part.
    block_on(store.complete_multipart("k", &upload, &[(1, part)])).unwrap();
    assert_eq!(store.request_count(Verb::CompleteMultipart), 2);
}
