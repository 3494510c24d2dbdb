//! Checks of the test harness itself, none of which mounts: the servers
//! start, keep odd keys verbatim, check signatures (s3s-fs) and go away on
//! drop. When one of these fails, the mount tests' failures mean nothing.

mod common;

use std::net::{Ipv4Addr, TcpStream};

use bytes::Bytes;
use common::{Bucket, ServerKind, random_bytes, s3_client};

fn assert_port_closed(port: u16) {
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "server on port {port} still accepts connections after drop"
    );
}

#[test]
fn moto_keeps_odd_keys_and_metadata_and_stops_on_drop() {
    let bucket = Bucket::new(ServerKind::Moto);
    let keys = [
        "with space.txt",
        "unicodé-日本語.txt",
        "plus+sign.txt",
        "100%.txt",
        "hash#tag.txt",
        "bad/../x",
        "../escape.txt",
        "marker/",
        "a",
        "a/x",
    ];
    for key in keys {
        bucket.put(key, format!("content of {key}"));
    }
    let listed = bucket.list_keys("");
    let expected: std::collections::BTreeSet<String> = keys.iter().map(|k| k.to_string()).collect();
    assert_eq!(listed, expected, "moto did not store the keys verbatim");
    for key in keys {
        assert_eq!(
            bucket.get(key),
            format!("content of {key}").into_bytes(),
            "{key:?}"
        );
    }

    bucket.put_with_metadata("meta", "m", &[("mode", "33184"), ("uid", "1234")]);
    let metadata = bucket.metadata("meta");
    assert_eq!(metadata.get("mode").map(String::as_str), Some("33184"));
    assert_eq!(metadata.get("uid").map(String::as_str), Some("1234"));
    assert!(bucket.last_modified_secs("meta") > 1_600_000_000);

    let port = bucket.server.port();
    drop(bucket);
    assert_port_closed(port);
}

#[test]
fn moto_multipart_and_parallel_puts_round_trip() {
    let bucket = Bucket::new(ServerKind::Moto);
    let body = Bytes::from(random_bytes(7, 11 * 1024 * 1024 + 3));
    bucket.put_multipart("big", body.clone(), 5 * 1024 * 1024);
    assert!(
        bucket.get("big") == body,
        "multipart object differs from what was uploaded"
    );

    let objects: Vec<(String, Bytes)> = (0..200)
        .map(|i| (format!("many/{i:04}"), Bytes::from(format!("{i}\n"))))
        .collect();
    bucket.put_many(objects, 32);
    assert_eq!(bucket.list_keys("many/").len(), 200);
}

#[test]
fn s3s_fs_checks_signatures_and_stops_on_drop() {
    let bucket = Bucket::new(ServerKind::S3sFs);
    bucket.put("dir/file.txt", "hello");
    assert_eq!(bucket.get("dir/file.txt"), b"hello");

    let mut wrong = bucket.target();
    wrong.secret_key.push_str("-wrong");
    let client = s3_client(&wrong);
    let result = bucket.block_on(client.list_objects_v2().bucket(&bucket.name).send());
    assert!(
        result.is_err(),
        "s3s-fs accepted a request signed with the wrong secret key"
    );

    let port = bucket.server.port();
    drop(bucket);
    assert_port_closed(port);
}
