//! Multipart uploads a dead client left behind. Their parts are billed until
//! a lifecycle rule or a person aborts them, and bucketfs cannot tell an
//! upload of its own killed daemon from one another client is still writing:
//! so it only reports those old enough to be abandoned, with the command that
//! aborts each, and never aborts one itself.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{ObjectStore, PendingUpload, StoreError};

/// An upload untouched for a day is abandoned by any reasonable client: S3's
/// own lifecycle examples abort incomplete uploads after 1 to 7 days.
pub const STALE_UPLOAD_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// One page is one bounded request at mount; 1,000 is S3's page size.
const MAX_UPLOADS_LISTED: u32 = 1000;

/// What one listing at mount found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleUploads {
    /// Older than the age asked for, oldest first.
    pub stale: Vec<PendingUpload>,
    /// Uploads under the prefix, stale or not, on the page listed.
    pub listed: usize,
    /// The store has more than one page: there may be more stale ones.
    pub is_truncated: bool,
}

/// Lists one page of uploads under `prefix` and keeps those initiated more
/// than `min_age` before `now`.
pub async fn find<S: ObjectStore>(
    store: &S,
    prefix: &str,
    min_age: Duration,
    now: SystemTime,
) -> Result<StaleUploads, StoreError> {
    let page = store
        .list_multipart_uploads(prefix, MAX_UPLOADS_LISTED)
        .await?;
    let listed = page.uploads.len();
    let mut stale: Vec<PendingUpload> = page
        .uploads
        .into_iter()
        // A store that lists keys outside the prefix is not believed.
        .filter(|upload| upload.key.starts_with(prefix))
        // An upload of unknown age is not called abandoned.
        .filter(|upload| {
            upload.initiated.is_some_and(|initiated| {
                now.duration_since(initiated).is_ok_and(|age| age > min_age)
            })
        })
        .collect();
    stale.sort_by_key(|upload| upload.initiated);
    Ok(StaleUploads {
        stale,
        listed,
        is_truncated: page.is_truncated,
    })
}

/// The AWS CLI command that aborts `upload`, quoted for a POSIX shell.
pub fn abort_command(bucket: &str, upload: &PendingUpload) -> String {
    format!(
        "aws s3api abort-multipart-upload --bucket {} --key {} --upload-id {}",
        crate::shell::quote(bucket),
        crate::shell::quote(&upload.key),
        crate::shell::quote(&upload.upload_id)
    )
}

/// Logs one warning per stale upload and a summary; a failure to list is a
/// warning too, never fatal: the mount works without this report.
pub async fn report<S: ObjectStore>(
    store: Arc<S>,
    bucket: String,
    prefix: String,
    min_age: Duration,
) {
    let (bucket, prefix) = (bucket.as_str(), prefix.as_str());
    let found = match find(&*store, prefix, min_age, SystemTime::now()).await {
        Ok(found) => found,
        Err(error) => {
            log::warn!(
                "cannot list incomplete multipart uploads under {prefix:?} \
                 (they are only reported, never aborted): {error}"
            );
            return;
        }
    };
    for upload in &found.stale {
        let age_hours = upload
            .initiated
            .and_then(|initiated| SystemTime::now().duration_since(initiated).ok())
            .map_or(0, |age| age.as_secs() / 3600);
        log::warn!(
            "incomplete multipart upload of {:?} started {age_hours} h ago; its parts are \
             billed until it is aborted: {}",
            upload.key,
            abort_command(bucket, upload)
        );
    }
    let more = if found.is_truncated {
        " (more uploads exist than one listing shows)"
    } else {
        ""
    };
    if found.stale.is_empty() {
        log::debug!(
            "{} incomplete multipart upload(s) under {prefix:?}, none older than {} s{more}",
            found.listed,
            min_age.as_secs()
        );
    } else {
        log::warn!(
            "{} incomplete multipart upload(s) under {prefix:?} older than {} s, of {} listed{more}; \
             bucketfs never aborts them itself",
            found.stale.len(),
            min_age.as_secs(),
            found.listed
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::store::ObjectHeaders;

    use super::*;
    use crate::store::memory::MemoryStore;

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn only_uploads_under_the_prefix_older_than_the_age_are_stale() {
        let store = MemoryStore::new();
        let now = SystemTime::now();
        let day = Duration::from_secs(24 * 3600);
        let start = |key: &str, age: Duration| {
            let id = block_on(store.create_multipart(key, &ObjectHeaders::default())).unwrap();
            store.set_upload_initiated(&id, now - age);
            id
        };
        let old = start("data/old", 2 * day);
        let older = start("data/older", 3 * day);
        start("data/recent", Duration::from_secs(3600));
        start("elsewhere/old", 5 * day);
        let found = block_on(find(&store, "data/", STALE_UPLOAD_AGE, now)).unwrap();
        let ids: Vec<&str> = found.stale.iter().map(|u| u.upload_id.as_str()).collect();
        assert_eq!(ids, [older.as_str(), old.as_str()]);
        assert_eq!(found.listed, 3);
        assert!(!found.is_truncated);
    }

    #[test]
    fn the_abort_command_is_quoted_for_the_shell() {
        let upload = PendingUpload {
            key: "dir/it's here.txt".to_owned(),
            upload_id: "abc-123_X.y".to_owned(),
            initiated: None,
        };
        assert_eq!(
            abort_command("my-bucket", &upload),
            "aws s3api abort-multipart-upload --bucket my-bucket \
             --key 'dir/it'\\''s here.txt' --upload-id abc-123_X.y"
        );
    }
}
