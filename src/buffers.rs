//! Reused memory for request bodies: GET bodies gathered from the network,
//! parts read back from staging for upload.
//!
//! A streaming reader or writer moves every byte through a fresh buffer of a
//! part's size. Fresh memory costs a page fault per 4 KiB the first time it is
//! written, and the allocator hands large buffers back to the kernel when
//! they are freed, so at line rate the daemon spent more CPU faulting pages
//! in than copying bytes (measured: two faults per page read). Buffers that
//! come back here keep their pages, and the next GET writes into warm memory.
//!
//! A buffer goes back to the pool when the last `Bytes` slice of it is
//! dropped (the block cache evicting it, a reader done with it), so the
//! pool never holds memory that is still in use, and keeps at most
//! `max_retained_bytes` of idle buffers. Readers give buffers back in
//! bursts, and each one dropped past that bound is one faulted in again
//! (with 32 MiB, four parallel readers faulted in a fresh page for almost
//! every byte they read; 128 MiB cut that sixfold but broke the memory
//! bound of tests/load.rs, so the bound should follow the mount's budgets).
//! Idle buffers are also given back to the system once the pool has gone
//! unused for a while (`release_when_quiet`).
//!
//! A buffer keeps the bytes of its last use when it comes back, and
//! `fill_with` lends those out to be overwritten instead of zeroing a part's
//! worth first: zeroing 8 MiB before every part read back from staging was
//! 8 % of the daemon's CPU while writing (perf, 1 GiB `cp`). Only bytes the
//! current use wrote are ever shown (`as_ref`).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;

pub struct BufferPool {
    idle: Mutex<Idle>,
    max_retained_bytes: usize,
}

#[derive(Default)]
struct Idle {
    buffers: Vec<Vec<u8>>,
    /// A buffer was lent since the last `release_if_unused`.
    lent: bool,
}

impl BufferPool {
    pub fn new(max_retained_bytes: usize) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            idle: Mutex::new(Idle::default()),
            max_retained_bytes,
        })
    }

    /// Gives the idle buffers back to the system whenever the pool lent
    /// nothing for `quiet`, so a mount that stopped reading or writing does
    /// not keep their memory. Needs a Tokio runtime; without one the idle
    /// buffers are only bounded.
    pub fn release_when_quiet(self: &Arc<Self>, quiet: Duration) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool: Weak<BufferPool> = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(quiet).await;
                match pool.upgrade() {
                    Some(pool) => pool.release_if_unused(),
                    None => return,
                }
            }
        });
    }

    /// Drops the idle buffers if none was lent since the last call.
    fn release_if_unused(&self) {
        let released = {
            let mut idle = self.idle.lock().unwrap();
            if std::mem::take(&mut idle.lent) {
                return;
            }
            std::mem::take(&mut idle.buffers)
        };
        drop(released);
    }

    /// An empty buffer with room for `capacity` bytes: an idle one that is
    /// large enough but not more than twice that (the smallest such), else a
    /// new one. A small GET must not pin a part-sized buffer.
    pub fn take(self: &Arc<Self>, capacity: usize) -> PooledBuffer {
        let fits = |buffer: &Vec<u8>| {
            buffer.capacity() >= capacity && buffer.capacity() <= capacity.saturating_mul(2)
        };
        let reused = {
            let mut idle = self.idle.lock().unwrap();
            idle.lent = true;
            let best = idle
                .buffers
                .iter()
                .enumerate()
                .filter(|(_, buffer)| fits(buffer))
                .min_by_key(|(_, buffer)| buffer.capacity())
                .map(|(index, _)| index);
            best.map(|index| idle.buffers.swap_remove(index))
        };
        PooledBuffer {
            data: reused.unwrap_or_else(|| Vec::with_capacity(capacity)),
            len: 0,
            pool: Arc::clone(self),
        }
    }

    fn give_back(&self, buffer: Vec<u8>) {
        let mut idle = self.idle.lock().unwrap();
        let retained: usize = idle.buffers.iter().map(Vec::capacity).sum();
        if retained + buffer.capacity() <= self.max_retained_bytes {
            idle.buffers.push(buffer);
        }
    }

    #[cfg(test)]
    fn idle_bytes(&self) -> usize {
        let idle = self.idle.lock().unwrap();
        idle.buffers.iter().map(Vec::capacity).sum()
    }
}

/// A buffer on loan from a `BufferPool`, returned to it on drop.
pub struct PooledBuffer {
    /// Initialized memory: this use's bytes, then what earlier uses left.
    data: Vec<u8>,
    /// This use's bytes: `data[..len]`.
    len: usize,
    pool: Arc<BufferPool>,
}

impl PooledBuffer {
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if end <= self.data.len() {
            self.data[self.len..end].copy_from_slice(bytes);
        } else {
            self.data.truncate(self.len);
            self.data.extend_from_slice(bytes);
        }
        self.len = end;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fills the buffer with up to `len` bytes that `read` writes into a
    /// slice and counts; the buffer ends after the bytes it counted. The
    /// slice may hold an earlier use's bytes: `read` must write every byte
    /// it counts.
    pub fn fill_with<E>(
        &mut self,
        len: usize,
        read: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<(), E> {
        self.len = 0;
        if self.data.len() < len {
            self.data.resize(len, 0);
        }
        let filled = read(&mut self.data[..len])?;
        self.len = filled.min(len);
        Ok(())
    }

    /// Shared, immutable bytes; the buffer returns to the pool once the
    /// last slice of them is dropped.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PooledBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.data));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_returns_when_its_last_slice_is_dropped_and_is_reused() {
        let pool = BufferPool::new(1 << 20);
        let mut buffer = pool.take(1000);
        buffer.extend_from_slice(&[7; 1000]);
        let bytes = buffer.freeze();
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.idle_bytes(), 0, "a slice still uses it");
        assert_eq!(&slice[..], &[7; 10]);
        drop(slice);
        assert!(pool.idle_bytes() >= 1000);
        let small = pool.take(100);
        assert!(
            small.data.capacity() < 1000,
            "too large to lend for 100 bytes"
        );
        let again = pool.take(600);
        assert!(again.data.capacity() >= 1000, "the idle buffer is reused");
        assert_eq!(again.len(), 0, "and comes back empty");
        assert_eq!(pool.idle_bytes(), 0);
    }

    #[test]
    fn a_reused_buffer_shows_only_the_bytes_of_its_new_use() {
        let pool = BufferPool::new(1 << 20);
        let mut first = pool.take(1000);
        first.extend_from_slice(&[7; 1000]);
        drop(first.freeze());
        let mut filled = pool.take(1000);
        filled
            .fill_with(1000, |space| {
                assert_eq!(space.len(), 1000);
                space[..300].fill(1);
                Ok::<_, ()>(300)
            })
            .unwrap();
        assert_eq!(filled.as_ref(), &[1; 300][..], "not the earlier 7s");
        drop(filled);
        let mut appended = pool.take(1000);
        assert!(appended.is_empty());
        appended.extend_from_slice(&[2; 10]);
        appended.extend_from_slice(&[3; 1200]);
        let bytes = appended.freeze();
        assert_eq!(bytes.len(), 1210);
        assert!(bytes[..10].iter().all(|&b| b == 2) && bytes[10..].iter().all(|&b| b == 3));
    }

    #[test]
    fn idle_buffers_go_once_the_pool_was_unused_for_a_round() {
        let pool = BufferPool::new(1 << 20);
        drop(pool.take(1000));
        pool.release_if_unused();
        assert!(pool.idle_bytes() >= 1000, "lent since the last round");
        pool.release_if_unused();
        assert_eq!(pool.idle_bytes(), 0);
    }

    #[test]
    fn idle_buffers_are_bounded() {
        let pool = BufferPool::new(1500);
        let first = pool.take(1000);
        let second = pool.take(1000);
        drop(first);
        drop(second);
        assert!(pool.idle_bytes() <= 1500);
        assert!(pool.idle_bytes() >= 1000);
    }
}
