//! A ranged GetObject gathered over as many responses as it takes: a body
//! that breaks off is asked again from its last byte.

use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::byte_stream::error::Error as ByteStreamError;
use std::sync::Arc;

use bytes::Bytes;

use super::errors::has_source;
use super::transport::Stalled;
use crate::buffers::{BufferPool, PooledBuffer};
use crate::store::StoreError;

/// The bytes of one ranged GET, gathered over the responses it took.
pub(super) struct ResumedBody {
    start: u64,
    /// Exclusive; lowered to the object's end once a response tells it.
    pub(super) end: u64,
    /// Each chunk is copied here as it arrives, so that the HTTP client can
    /// reuse its receive buffer at once instead of allocating new ones
    /// while a whole part is gathered.
    data: PooledBuffer,
}

impl ResumedBody {
    pub(super) fn new(buffers: &Arc<BufferPool>, start: u64, end: u64) -> ResumedBody {
        ResumedBody {
            start,
            end,
            data: buffers.take((end - start) as usize),
        }
    }

    pub(super) fn received_len(&self) -> u64 {
        self.data.len() as u64
    }

    /// Where the next response must start.
    pub(super) fn next_offset(&self) -> u64 {
        self.start + self.received_len()
    }

    pub(super) fn is_complete(&self) -> bool {
        self.next_offset() >= self.end
    }

    /// Keeps every byte of `body` that arrives, up to an error or its end.
    pub(super) async fn read(&mut self, mut body: ByteStream) -> Result<(), ByteStreamError> {
        while let Some(chunk) = body.next().await {
            self.data.extend_from_slice(&chunk?);
        }
        Ok(())
    }

    pub(super) fn into_bytes(self) -> Bytes {
        self.data.freeze()
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
