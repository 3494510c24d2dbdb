//! Whether listings confirmed a directory recently: one under way, or one
//! that ended within the TTL, vouches for the directory to its lookups.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When listings last confirmed that a directory exists, by inode: a
/// listing is under way, or was within the TTL.
pub struct DirectoryConfirmations {
    ttl: Duration,
    by_directory: Mutex<HashMap<u64, Confirmation>>,
}

#[derive(Default)]
struct Confirmation {
    listings_under_way: usize,
    /// When the last listing stopped being under way.
    confirmed_at: Option<Instant>,
}

impl Confirmation {
    fn is_current(&self, ttl: Duration) -> bool {
        self.listings_under_way > 0 || self.confirmed_at.is_some_and(|at| at.elapsed() < ttl)
    }
}

impl DirectoryConfirmations {
    pub fn new(ttl: Duration) -> Self {
        DirectoryConfirmations {
            ttl,
            by_directory: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_confirmed(&self, ino: u64) -> bool {
        let by_directory = self.by_directory.lock().unwrap();
        by_directory
            .get(&ino)
            .is_some_and(|confirmation| confirmation.is_current(self.ttl))
    }

    /// The kernel forgot the directory: its number will not be asked about
    /// again, unless a listing of it is still under way.
    pub fn forget(&self, ino: u64) {
        let mut by_directory = self.by_directory.lock().unwrap();
        if by_directory
            .get(&ino)
            .is_some_and(|confirmation| confirmation.listings_under_way == 0)
        {
            by_directory.remove(&ino);
        }
    }

    /// Marks a listing of `ino`, which has found entries, as under way until
    /// the guard is dropped.
    pub(super) fn under_way(self: &Arc<Self>, ino: u64) -> UnderWay {
        let mut by_directory = self.by_directory.lock().unwrap();
        // Dropping what has expired keeps the map to the directories listed
        // within one TTL.
        by_directory.retain(|_, confirmation| confirmation.is_current(self.ttl));
        by_directory.entry(ino).or_default().listings_under_way += 1;
        UnderWay {
            confirmations: Arc::clone(self),
            ino,
        }
    }
}

/// A listing under way; its end starts the TTL of the confirmation.
pub(super) struct UnderWay {
    confirmations: Arc<DirectoryConfirmations>,
    ino: u64,
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        let mut by_directory = self.confirmations.by_directory.lock().unwrap();
        let confirmation = by_directory.entry(self.ino).or_default();
        confirmation.listings_under_way -= 1;
        confirmation.confirmed_at = Some(Instant::now());
    }
}
