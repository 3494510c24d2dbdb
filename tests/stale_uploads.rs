//! Incomplete multipart uploads left under the mounted prefix are reported
//! at mount with the command that aborts each, and never aborted. moto, as
//! s3s-fs answers ListMultipartUploads with 501. moto reports every upload
//! as initiated in 2010, so every one is old enough; the age filter itself
//! is unit-tested in `store::stale_uploads`.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{Bucket, Mount, ServerKind};

fn start_upload(bucket: &Bucket, key: &str) -> String {
    bucket
        .block_on(
            bucket
                .client()
                .create_multipart_upload()
                .bucket(&bucket.name)
                .key(key)
                .send(),
        )
        .expect("create multipart upload")
        .upload_id
        .expect("upload id")
}

fn wait_for_log(mount: &Mount, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = mount.daemon_log();
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the daemon log:\n{log}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn old_uploads_under_the_prefix_are_reported_with_the_abort_command_and_kept() {
    let bucket = Bucket::new(ServerKind::Moto);
    let inside = start_upload(&bucket, "data/pending.bin");
    let outside = start_upload(&bucket, "other/pending.bin");

    let mount = bucket.mount(&["--prefix", "data/"]);
    let command = format!(
        "aws s3api abort-multipart-upload --bucket {} --key data/pending.bin --upload-id {inside}",
        bucket.name
    );
    let log = wait_for_log(&mount, "bucketfs never aborts them itself");
    assert!(log.contains(&command), "no {command:?} in:\n{log}");
    assert!(
        !log.contains(&outside),
        "an upload outside the prefix was reported:\n{log}"
    );
    mount.unmount();

    let listed = bucket
        .block_on(
            bucket
                .client()
                .list_multipart_uploads()
                .bucket(&bucket.name)
                .send(),
        )
        .expect("list multipart uploads");
    let ids: Vec<&str> = listed
        .uploads()
        .iter()
        .filter_map(|upload| upload.upload_id())
        .collect();
    assert!(
        ids.contains(&inside.as_str()) && ids.contains(&outside.as_str()),
        "{ids:?}"
    );
}
