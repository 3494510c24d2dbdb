//! GetObject of a range, gathered in pieces, resumed from its last byte when
//! the body breaks off, and never mixing two versions of the object.

use std::ops::Range;

use bytes::Bytes;

use super::S3Store;
use super::errors::{map_error, status_of};
use super::resume::{ResumedBody, body_error};
use super::retry::{Attempts, Retry, classify};
use crate::store::StoreError;

impl S3Store {
    /// GetObject of `range`, resumed from its last byte when the body breaks
    /// off, gathered in pieces of `piece_bytes`.
    pub(super) async fn get_pieces(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
        piece_bytes: usize,
    ) -> Result<Vec<Bytes>, StoreError> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let mut body = ResumedBody::new(&self.body_buffers, range.start, range.end, piece_bytes);
        // Resumes must read the version the first bytes came from.
        let mut pinned = if_match.map(str::to_owned);
        let mut attempts = Attempts::new(self.max_attempts);
        loop {
            let resume_at = body.next_offset();
            log::trace!("GET {key:?} bytes {resume_at}..{}", body.end);
            let result = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .range(format!("bytes={}-{}", resume_at, body.end - 1))
                .set_if_match(pinned.clone())
                .send()
                .await;
            let failure = match result {
                Ok(output) => {
                    match &pinned {
                        None => pinned = output.e_tag.clone().filter(|etag| !etag.is_empty()),
                        // Some S3-compatible servers (s3s-fs among them)
                        // ignore If-Match on GET and answer the new version;
                        // its ETag gives it away, and its bytes must not be
                        // mixed with the pinned version's.
                        Some(expected) if is_other_version(expected, output.e_tag.as_deref()) => {
                            return Err(StoreError::PreconditionFailed {
                                key: key.to_owned(),
                            });
                        }
                        Some(_) => {}
                    }
                    // The store clamps the range at the object's end.
                    if let Some(len) = output
                        .content_length
                        .and_then(|len| u64::try_from(len).ok())
                    {
                        body.end = body.end.min(resume_at + len);
                    }
                    let received_before = body.received_len();
                    let outcome = body.read(output.body).await;
                    if body.received_len() > received_before {
                        attempts.progressed();
                    }
                    match outcome {
                        Ok(()) if body.is_complete() => return Ok(body.into_pieces()),
                        // A clean end before Content-Length: a cut connection.
                        Ok(()) => {
                            log::debug!(
                                "GET {key:?} ended at {} of {}; resuming",
                                body.next_offset(),
                                body.end
                            );
                            StoreError::Other {
                                source: Box::new(TruncatedBody {
                                    key: key.to_owned(),
                                    expected_len: body.end - range.start,
                                    received_len: body.received_len(),
                                }),
                            }
                        }
                        Err(err) => body_error(err),
                    }
                }
                // S3 answers 416 when the range starts at or past the end of
                // the object (or the object is empty); clamped, that range
                // is empty.
                Err(err) if status_of(&err) == Some(416) && body.received_len() == 0 => {
                    return Ok(Vec::new());
                }
                Err(err) => {
                    let retry = classify(&err);
                    let error = map_error(err, self.object(key));
                    match attempts.after_failure(retry) {
                        Some(wait) => {
                            log::debug!("GET {key:?} failed ({error}); retrying in {wait:?}");
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        None => return Err(error),
                    }
                }
            };
            match attempts.after_failure(Retry::Transient) {
                Some(wait) => {
                    log::debug!(
                        "GET {key:?} broke off at byte {} ({failure}); resuming in {wait:?}",
                        body.next_offset()
                    );
                    tokio::time::sleep(wait).await;
                }
                None => return Err(failure),
            }
        }
    }
}

/// Whether a response's ETag names another version than `pinned`. An
/// answer without an ETag is taken at its word (If-Match was sent with it).
fn is_other_version(pinned: &str, answered: Option<&str>) -> bool {
    let bare = |etag: &str| etag.trim_start_matches("W/").trim_matches('"').to_owned();
    pinned != "*" && answered.is_some_and(|answered| bare(answered) != bare(pinned))
}

#[derive(Debug, thiserror::Error)]
#[error("body of {key} ended after {received_len} of {expected_len} bytes")]
struct TruncatedBody {
    key: String,
    expected_len: u64,
    received_len: u64,
}

#[cfg(test)]
mod tests {
    use super::is_other_version;

    #[test]
    fn an_answer_with_another_etag_is_another_version() {
        assert!(!is_other_version("\"abc\"", Some("\"abc\"")));
        assert!(!is_other_version("\"abc\"", Some("abc")));
        assert!(!is_other_version("\"abc\"", None));
        assert!(!is_other_version("*", Some("\"def\"")));
        assert!(is_other_version("\"abc\"", Some("\"def\"")));
    }
}
