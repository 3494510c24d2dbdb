//! A ranged GetObject gathered over as many responses as it takes: a body
//! that breaks off is asked again from its last byte.

use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::byte_stream::error::Error as ByteStreamError;
use bytes::{Bytes, BytesMut};

use super::errors::has_source;
use super::transport::Stalled;
use crate::store::StoreError;

/// The bytes of one ranged GET, gathered over the responses it took.
pub(super) struct ResumedBody {
    start: u64,
    /// Exclusive; lowered to the object's end once a response tells it.
    pub(super) end: u64,
    chunks: Vec<Bytes>,
    received_len: u64,
}

impl ResumedBody {
    pub(super) fn new(start: u64, end: u64) -> ResumedBody {
        ResumedBody {
            start,
            end,
            chunks: Vec::new(),
            received_len: 0,
        }
    }

    pub(super) fn received_len(&self) -> u64 {
        self.received_len
    }

    /// Where the next response must start.
    pub(super) fn next_offset(&self) -> u64 {
        self.start + self.received_len
    }

    pub(super) fn is_complete(&self) -> bool {
        self.next_offset() >= self.end
    }

    /// Keeps every byte of `body` that arrives, up to an error or its end.
    pub(super) async fn read(&mut self, mut body: ByteStream) -> Result<(), ByteStreamError> {
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            self.received_len += chunk.len() as u64;
            self.chunks.push(chunk);
        }
        Ok(())
    }

    /// A body that arrived in one chunk is returned without a copy.
    pub(super) fn into_bytes(mut self) -> Bytes {
        if self.chunks.len() <= 1 {
            return self.chunks.pop().unwrap_or_default();
        }
        let mut data = BytesMut::with_capacity(self.received_len as usize);
        for chunk in &self.chunks {
            data.extend_from_slice(chunk);
        }
        data.freeze()
    }
}

/// A GetObject body that broke off: a stall is a timeout, anything else
/// (a reset, a connection closed early) another failure.
pub(super) fn body_error(err: ByteStreamError) -> StoreError {
    if has_source::<Stalled>(&err) {
        return StoreError::Timeout;
    }
    StoreError::Other {
        source: Box::new(err),
    }
}
