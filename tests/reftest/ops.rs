//! The operations a case is made of, and the proptest strategy that draws
//! them. Operations name files and handles symbolically (`Name`, an index
//! into the open handles, an offset relative to the current size), so that
//! every sequence is meaningful whatever the state it meets, and shrinking
//! keeps it meaningful.

use bucketfs::store::memory::{FailureKind, Verb};
use proptest::prelude::*;

/// The smallest part S3 accepts, the part size of the mounts under test:
/// large writes cross it so that multipart and streamed uploads happen.
pub const PART: u64 = 5 * 1024 * 1024;

/// The three names a case plays with: two in the root, one in `d/`, so that
/// renames go within a directory and across directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Name {
    A,
    B,
    C,
}

impl Name {
    pub const ALL: [Name; 3] = [Name::A, Name::B, Name::C];

    pub fn key(self) -> &'static str {
        match self {
            Name::A => "a",
            Name::B => "b",
            Name::C => "d/c",
        }
    }

    pub fn file_name(self) -> &'static str {
        match self {
            Name::A => "a",
            Name::B => "b",
            Name::C => "c",
        }
    }

    pub fn is_in_subdirectory(self) -> bool {
        self == Name::C
    }
}

/// How `open` is called: O_RDONLY, O_RDWR, O_RDWR|O_TRUNC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    Read,
    Write,
    WriteTruncate,
}

/// An offset or a size, relative to the file's size when the step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Start,
    End,
    /// This many 65536ths of the way into the file.
    Within(u16),
    /// This many bytes past the end (a hole for a write, zeros for a
    /// truncate).
    Beyond(u32),
}

impl At {
    pub fn resolve(self, size: u64) -> u64 {
        match self {
            At::Start => 0,
            At::End => size,
            At::Within(fraction) => size * u64::from(fraction) / 65536,
            At::Beyond(gap) => size + u64::from(gap),
        }
    }
}

/// A verb of `MemoryStore` whose next requests fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailVerb {
    Head,
    Get,
    List,
    Put,
    CreateMultipart,
    UploadPart,
    UploadPartCopy,
    CompleteMultipart,
    Copy,
    Delete,
}

impl FailVerb {
    pub fn verb(self) -> Verb {
        match self {
            FailVerb::Head => Verb::Head,
            FailVerb::Get => Verb::Get,
            FailVerb::List => Verb::List,
            FailVerb::Put => Verb::Put,
            FailVerb::CreateMultipart => Verb::CreateMultipart,
            FailVerb::UploadPart => Verb::UploadPart,
            FailVerb::UploadPartCopy => Verb::UploadPartCopy,
            FailVerb::CompleteMultipart => Verb::CompleteMultipart,
            FailVerb::Copy => Verb::Copy,
            FailVerb::Delete => Verb::Delete,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// What `open(O_CREAT|O_TRUNC)` does: `create` if the lookup misses,
    /// else a truncating open of the existing file.
    Create(Name),
    Open(Name, OpenMode),
    /// A write through the `handle`th open handle open for writing, split
    /// into 1 MiB calls as the kernel splits a large `write(2)`.
    Write {
        handle: u8,
        at: At,
        len: u32,
    },
    Read {
        handle: u8,
        at: At,
        len: u32,
    },
    /// `fsync(2)`: `Filesystem::flush` without a release.
    Fsync(u8),
    /// `close(2)`: flush, then release (the handle is always released, as
    /// the kernel does, whatever the flush returned).
    Close(u8),
    /// `truncate(2)` by name.
    Truncate(Name, At),
    /// `ftruncate(2)` through the `handle`th open handle.
    Ftruncate(u8, At),
    /// `chmod(2)` by name, to one of a few modes.
    Chmod(Name, u16),
    Rename(Name, Name),
    Unlink(Name),
    /// Another client uploads this many bytes under the name.
    OtherPut(Name, u32),
    /// Another client deletes the name's object.
    OtherDelete(Name),
    /// The next `count` requests of `verb` fail (with `Timeout` or `Other`)
    /// during `op`; the failures left over are dropped after it.
    Failing {
        verb: FailVerb,
        count: u8,
        timeout: bool,
        op: Box<Op>,
    },
}

impl Op {
    pub fn failure_kind(timeout: bool) -> FailureKind {
        if timeout {
            FailureKind::Timeout
        } else {
            FailureKind::Other
        }
    }
}

/// How many uploaded bytes of a streamed file stay staged
/// (`FsConfig::stream_retain_bytes`): none, so that streamed bytes leave
/// staging at once, or more than a case ever writes. A mount keeps
/// `STREAM_RETAIN_BYTES` (64 MiB, not an option): `Nothing` stands for a file
/// past 64 MiB plus a part, at the cost of a 10 MiB one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retain {
    Nothing,
    Everything,
}

impl Retain {
    pub fn bytes(self) -> u64 {
        match self {
            Retain::Nothing => 0,
            Retain::Everything => 64 * 1024 * 1024,
        }
    }
}

fn name() -> impl Strategy<Value = Name> {
    prop_oneof![Just(Name::A), Just(Name::B), Just(Name::C)]
}

fn at() -> impl Strategy<Value = At> {
    prop_oneof![
        3 => Just(At::End),
        1 => Just(At::Start),
        2 => any::<u16>().prop_map(At::Within),
        1 => (1u32..300_000).prop_map(At::Beyond),
        1 => (PART as u32 - 3000..PART as u32 + 3000).prop_map(At::Beyond),
    ]
}

/// Mostly small writes; some cross a part boundary on their own.
fn write_len() -> impl Strategy<Value = u32> {
    let part = PART as u32;
    prop_oneof![
        6 => 0u32..4096,
        2 => 4096u32..200_000,
        1 => part - 3000..part + 3000,
        1 => 2 * part - 3000..2 * part + 3000,
    ]
}

fn open_mode() -> impl Strategy<Value = OpenMode> {
    prop_oneof![
        Just(OpenMode::Read),
        Just(OpenMode::Write),
        Just(OpenMode::WriteTruncate)
    ]
}

fn fail_verb() -> impl Strategy<Value = FailVerb> {
    prop_oneof![
        Just(FailVerb::Head),
        Just(FailVerb::Get),
        Just(FailVerb::List),
        Just(FailVerb::Put),
        Just(FailVerb::CreateMultipart),
        Just(FailVerb::UploadPart),
        Just(FailVerb::UploadPartCopy),
        Just(FailVerb::CompleteMultipart),
        Just(FailVerb::Copy),
        Just(FailVerb::Delete),
    ]
}

fn plain_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => name().prop_map(Op::Create),
        3 => (name(), open_mode()).prop_map(|(name, mode)| Op::Open(name, mode)),
        6 => (any::<u8>(), at(), write_len())
            .prop_map(|(handle, at, len)| Op::Write { handle, at, len }),
        3 => (any::<u8>(), at(), 1u32..300_000)
            .prop_map(|(handle, at, len)| Op::Read { handle, at, len }),
        2 => any::<u8>().prop_map(Op::Fsync),
        3 => any::<u8>().prop_map(Op::Close),
        1 => (name(), at()).prop_map(|(name, at)| Op::Truncate(name, at)),
        1 => (any::<u8>(), at()).prop_map(|(handle, at)| Op::Ftruncate(handle, at)),
        1 => (name(), prop_oneof![Just(0o600u16), Just(0o640), Just(0o755)])
            .prop_map(|(name, mode)| Op::Chmod(name, mode)),
        2 => (name(), name()).prop_map(|(from, to)| Op::Rename(from, to)),
        1 => name().prop_map(Op::Unlink),
        1 => (name(), prop_oneof![3 => 0u32..5000, 1 => PART as u32..PART as u32 + 5000])
            .prop_map(|(name, len)| Op::OtherPut(name, len)),
        1 => name().prop_map(Op::OtherDelete),
    ]
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => plain_op(),
        2 => (fail_verb(), 1u8..4, any::<bool>(), plain_op()).prop_map(
            |(verb, count, timeout, op)| Op::Failing {
                verb,
                count,
                timeout,
                op: Box::new(op),
            }
        ),
    ]
}

pub fn case() -> impl Strategy<Value = (Retain, Vec<Op>)> {
    (
        prop_oneof![Just(Retain::Nothing), Just(Retain::Everything)],
        proptest::collection::vec(op(), 1..32),
    )
}
