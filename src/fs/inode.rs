//! The inode table: what the kernel knows by number.
//!
//! Every entry the kernel received from lookup, create or readdirplus holds a
//! lookup count; FUSE `forget` returns them, and an inode whose count reaches
//! zero is dropped. So memory follows what the kernel caches, not the size of
//! the bucket; after a walk that is every entry the kernel was given, until
//! memory pressure makes it forget them, or until the table holds more than
//! `--max-inodes`: then the FUSE adapter asks the kernel to drop the entries
//! this table has known longest ([`InodeTable::oldest_entries`]), and the
//! kernel's forgets follow. Oldest files first, then directories; not least
//! recently used: it costs nothing per lookup, and a walk (what fills the
//! table) is done with its oldest files, while the directories it numbered
//! with their parent may still be ahead of it. An entry still in use comes
//! back with one lookup.
//! Numbers are never reused, so the generation is always 0.

use std::collections::HashMap;
use std::time::Instant;

use crate::fs::{FileKind, ROOT_INO, Stat};

#[derive(Debug, Clone)]
pub struct Inode {
    pub parent: u64,
    pub name: String,
    pub kind: FileKind,
    /// Full key: a file's object key, or a directory's prefix ending in `/`
    /// (the root's prefix may be empty).
    pub key: String,
    pub stat: Stat,
    /// When `stat` was last confirmed by the store.
    pub validated_at: Instant,
    /// Open for writing on this mount: `stat` is kept locally (its size is the
    /// staged size) and what the store says must not overwrite it.
    pub is_being_written: bool,
    /// The directory listing (by generation) that last reported this entry;
    /// the entry is trusted until the TTL after that listing completed.
    pub listed_in: Option<u64>,
    /// The ETag of the object as the last open saw it: while it is the same,
    /// the kernel's cached pages of this inode are still the object's.
    /// Kept here, so that it goes when the kernel forgets the inode.
    pub last_opened_etag: Option<String>,
    lookups: u64,
}

pub struct InodeTable {
    /// Boxed: a map's table holds a slot for each of up to twice as many
    /// entries as it has, and it doubles by copying; with 272-byte inodes
    /// inline, a million of them peaked at 1.06 GiB (by hand, 1,000,000 keys).
    inodes: HashMap<u64, Box<Inode>>,
    children: HashMap<(u64, String), u64>,
    next_ino: u64,
    /// Where the next `oldest_entries` goes on from: numbers below it were
    /// offered already (or forgotten) since the last wrap.
    release_cursor: u64,
}

/// Numbers looked at per `oldest_entries` call at most, whatever it finds:
/// after many forgets most numbers are gone, and one call must stay short.
const MAX_NUMBERS_SCANNED: u64 = 1 << 18;

impl InodeTable {
    pub fn new(root_key: String, root_stat: Stat) -> Self {
        let root = Inode {
            parent: ROOT_INO,
            name: String::new(),
            kind: FileKind::Directory,
            key: root_key,
            stat: root_stat,
            validated_at: Instant::now(),
            is_being_written: false,
            listed_in: None,
            last_opened_etag: None,
            // The kernel never forgets the root.
            lookups: 1,
        };
        InodeTable {
            inodes: HashMap::from([(ROOT_INO, Box::new(root))]),
            children: HashMap::new(),
            next_ino: ROOT_INO + 1,
            release_cursor: ROOT_INO + 1,
        }
    }

    pub fn get(&self, ino: u64) -> Option<&Inode> {
        self.inodes.get(&ino).map(Box::as_ref)
    }

    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Inode> {
        self.inodes.get_mut(&ino).map(Box::as_mut)
    }

    /// The child the kernel may already know under this name.
    pub fn child(&self, parent: u64, name: &str) -> Option<(u64, &Inode)> {
        let ino = *self.children.get(&(parent, name.to_owned()))?;
        self.inodes.get(&ino).map(|inode| (ino, inode.as_ref()))
    }

    /// Records that the kernel now holds one more reference to this child,
    /// confirmed by the store just now. The child keeps its number while its
    /// kind is unchanged; a name that became a directory (or stopped being
    /// one) gets a new number, so the kernel never sees an inode change type.
    pub fn remember(
        &mut self,
        parent: u64,
        name: &str,
        kind: FileKind,
        key: String,
        stat: Stat,
        listed_in: Option<u64>,
    ) -> u64 {
        let slot = (parent, name.to_owned());
        if let Some(&ino) = self.children.get(&slot)
            && let Some(inode) = self.inodes.get_mut(&ino)
            && inode.kind == kind
        {
            if !inode.is_being_written {
                inode.stat = stat;
                inode.validated_at = Instant::now();
                inode.key = key;
                inode.listed_in = listed_in;
            }
            inode.lookups += 1;
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(
            ino,
            Box::new(Inode {
                parent,
                name: name.to_owned(),
                kind,
                key,
                stat,
                validated_at: Instant::now(),
                is_being_written: false,
                listed_in,
                last_opened_etag: None,
                lookups: 1,
            }),
        );
        self.children.insert(slot, ino);
        ino
    }

    /// Forgets the name (unlink, rmdir): the inode lives on while the kernel
    /// holds it, but a lookup of the name no longer finds it.
    pub fn unlink(&mut self, parent: u64, name: &str) -> Option<u64> {
        self.children.remove(&(parent, name.to_owned()))
    }

    /// Moves a name; a child already at the destination loses its name. Keys
    /// of the moved inode and, for a directory, of every inode below it, are
    /// rewritten from `old_key` to `new_key`.
    pub fn rename(
        &mut self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        old_key: &str,
        new_key: &str,
    ) {
        self.children.remove(&(new_parent, new_name.to_owned()));
        if let Some(ino) = self.children.remove(&(parent, name.to_owned())) {
            self.children.insert((new_parent, new_name.to_owned()), ino);
            if let Some(inode) = self.inodes.get_mut(&ino) {
                inode.parent = new_parent;
                inode.name = new_name.to_owned();
            }
        }
        for inode in self.inodes.values_mut() {
            if let Some(rest) = inode.key.strip_prefix(old_key)
                && (inode.key.len() == old_key.len() || old_key.ends_with('/'))
            {
                inode.key = format!("{new_key}{rest}");
            }
        }
    }

    /// One more kernel reference to an inode it already has (a lookup answered
    /// from the table).
    pub fn add_lookup(&mut self, ino: u64) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.lookups += 1;
        }
    }

    /// FUSE forget: drops the inode once the kernel holds no reference, and
    /// returns it then, so that the caller can drop what it kept about it.
    pub fn forget(&mut self, ino: u64, count: u64) -> Option<Inode> {
        if ino == ROOT_INO {
            return None;
        }
        let inode = self.inodes.get_mut(&ino)?;
        inode.lookups = inode.lookups.saturating_sub(count);
        if inode.lookups > 0 {
            return None;
        }
        let inode = *self.inodes.remove(&ino)?;
        let slot = (inode.parent, inode.name.clone());
        if self.children.get(&slot) == Some(&ino) {
            self.children.remove(&slot);
        }
        Some(inode)
    }

    pub fn len(&self) -> usize {
        self.inodes.len()
    }

    /// Up to `count` entries (parent, name) for the kernel to forget, those
    /// this table numbered first: the root, files being written and inodes
    /// that lost their name (the kernel holds those only while they are
    /// open) are passed over. Goes on from where the last call stopped, so
    /// entries the kernel keeps anyway (an open file, a working directory)
    /// do not stand in front of the others on every call.
    ///
    /// Files go before directories: a walk numbers a directory when it
    /// lists the parent, long before it comes to it, so the oldest entries
    /// are mostly directories still ahead of the walker, and each one
    /// forgotten costs a probe when the walker gets there. Directories are
    /// few beside their files; they are offered only when the numbers
    /// looked at hold too few files.
    pub fn oldest_entries(&mut self, count: usize) -> Vec<(u64, String)> {
        let first = ROOT_INO + 1;
        let mut entries = Vec::new();
        let mut directories = Vec::new();
        let mut scanned = 0;
        let limit = (self.next_ino - first).min(MAX_NUMBERS_SCANNED);
        while entries.len() < count && scanned < limit {
            if self.release_cursor >= self.next_ino {
                self.release_cursor = first;
            }
            let ino = self.release_cursor;
            self.release_cursor += 1;
            scanned += 1;
            let Some(inode) = self.inodes.get(&ino) else {
                continue;
            };
            if inode.is_being_written {
                continue;
            }
            let slot = (inode.parent, inode.name.clone());
            if self.children.get(&slot) != Some(&ino) {
                continue;
            }
            match inode.kind {
                FileKind::Directory => directories.push(slot),
                _ => entries.push(slot),
            }
        }
        let missing = count - entries.len();
        entries.extend(directories.into_iter().take(missing));
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat() -> Stat {
        Stat::default()
    }

    #[test]
    fn forget_releases_inodes() {
        let mut table = InodeTable::new(String::new(), stat());
        let a = table.remember(ROOT_INO, "a", FileKind::File, "a".into(), stat(), None);
        let again = table.remember(ROOT_INO, "a", FileKind::File, "a".into(), stat(), None);
        assert_eq!(a, again, "a known name keeps its number");
        table.forget(a, 1);
        assert!(table.get(a).is_some(), "one reference left");
        table.forget(a, 1);
        assert!(table.get(a).is_none());
        assert!(table.child(ROOT_INO, "a").is_none());
        assert_eq!(table.len(), 1, "only the root is left");
    }

    #[test]
    fn the_oldest_named_entries_are_offered_first_and_each_once_per_round() {
        let mut table = InodeTable::new(String::new(), stat());
        let dir = table.remember(
            ROOT_INO,
            "d",
            FileKind::Directory,
            "d/".into(),
            stat(),
            None,
        );
        let names = ["a", "b", "c", "e", "f"];
        let inos: Vec<u64> = names
            .iter()
            .map(|name| {
                table.remember(dir, name, FileKind::File, format!("d/{name}"), stat(), None)
            })
            .collect();
        table.get_mut(inos[1]).unwrap().is_being_written = true;
        table.unlink(dir, "c");
        table.forget(inos[3], 1);

        let offered = |entries: Vec<(u64, String)>| -> Vec<String> {
            entries.into_iter().map(|(_, name)| name).collect()
        };
        // b is being written, c has no name, e is gone; the directory d,
        // numbered first, is passed over while files are at hand.
        assert_eq!(offered(table.oldest_entries(2)), ["a", "f"]);
        assert_eq!(
            offered(table.oldest_entries(10)),
            ["a", "f", "d"],
            "one round at most per call, the directory when files run short"
        );
        assert!(table.oldest_entries(0).is_empty());
    }

    #[test]
    fn a_name_that_changes_kind_gets_a_new_number() {
        let mut table = InodeTable::new(String::new(), stat());
        let file = table.remember(ROOT_INO, "a", FileKind::File, "a".into(), stat(), None);
        let dir = table.remember(
            ROOT_INO,
            "a",
            FileKind::Directory,
            "a/".into(),
            stat(),
            None,
        );
        assert_ne!(file, dir);
        table.forget(file, 1);
        assert_eq!(table.child(ROOT_INO, "a").map(|(ino, _)| ino), Some(dir));
    }
}
