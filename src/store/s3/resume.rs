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

/// The bytes of one ranged GET, gathered over the responses it took, in
/// pieces of a fixed size from the range's start.
pub(super) struct ResumedBody {
    start: u64,
    /// Exclusive; lowered to the object's end once a response tells it.
    pub(super) end: u64,
    piece_bytes: usize,
    buffers: Arc<BufferPool>,
    full_pieces: Vec<Bytes>,
    full_len: u64,
    /// Each chunk is copied into the piece being filled as it arrives, so
    /// that the HTTP client can reuse its receive buffer at once instead of
    /// allocating new ones while a whole part is gathered.
    filling: Option<PooledBuffer>,
}

impl ResumedBody {
    pub(super) fn new(
        buffers: &Arc<BufferPool>,
        start: u64,
        end: u64,
        piece_bytes: usize,
    ) -> ResumedBody {
        ResumedBody {
            start,
            end,
            piece_bytes: piece_bytes.max(1),
            buffers: Arc::clone(buffers),
            full_pieces: Vec::new(),
            full_len: 0,
            filling: None,
        }
    }

    pub(super) fn received_len(&self) -> u64 {
        self.full_len + self.filling.as_ref().map_or(0, |piece| piece.len() as u64)
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
            self.keep(&chunk?);
        }
        Ok(())
    }

    fn keep(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let left =
                usize::try_from(self.end.saturating_sub(self.next_offset())).unwrap_or(usize::MAX);
            let piece_bytes = self.piece_bytes;
            let piece = self
                .filling
                .get_or_insert_with(|| self.buffers.take(piece_bytes.min(left.max(1))));
            let taken = (piece_bytes - piece.len()).min(bytes.len());
            piece.extend_from_slice(&bytes[..taken]);
            bytes = &bytes[taken..];
            if piece.len() == piece_bytes {
                self.finish_piece();
            }
        }
    }

    fn finish_piece(&mut self) {
        if let Some(piece) = self.filling.take().filter(|piece| !piece.is_empty()) {
            self.full_len += piece.len() as u64;
            self.full_pieces.push(piece.freeze());
        }
    }

    pub(super) fn into_pieces(mut self) -> Vec<Bytes> {
        self.finish_piece();
        self.full_pieces
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_gathered_into_pieces_of_the_asked_size_from_the_range_start() {
        let pool = BufferPool::new(1 << 20);
        let mut body = ResumedBody::new(&pool, 100, 110, 4);
        body.keep(b"abc");
        body.keep(b"defgh");
        assert_eq!(body.next_offset(), 108);
        // A resumed response goes on filling the piece the last one left.
        body.keep(b"ij");
        assert!(body.is_complete());
        assert_eq!(body.into_pieces(), vec![&b"abcd"[..], b"efgh", b"ij"]);
    }

    #[test]
    fn a_range_smaller_than_a_piece_is_one_piece() {
        let pool = BufferPool::new(1 << 20);
        let mut body = ResumedBody::new(&pool, 0, 5, usize::MAX);
        body.keep(b"hello");
        assert_eq!(body.into_pieces(), vec![&b"hello"[..]]);
    }
}
