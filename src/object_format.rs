//! How a POSIX file is stored as an object, exactly as s3fs-fuse stores it,
//! so that a bucket moves between the two in both directions.
//!
//! User metadata (names without `x-amz-meta-`):
//! - `mode`: decimal `st_mode`, file-type bits included (s3fs's directory
//!   markers carry the permission bits only; the marker itself says directory);
//! - `uid`, `gid`: decimal;
//! - `atime`, `ctime`, `mtime`: epoch seconds, with `.NNNNNNNNN` nanoseconds
//!   unless they are zero;
//! - `rdev`: decimal device number of a character or block device;
//! - `xattr`: URL-encoded JSON object of name → base64 value.
//!
//! Content-Type comes from the name's extension; directory markers are
//! `application/x-directory`.
//!
//! A directory is a `dir/` marker (or just keys under `dir/`), but s3fs also
//! reads the old style an earlier s3fs wrote: an object `dir`, without the
//! slash, that is a directory when its mode has the S_IFDIR bits, or has no
//! file-type bits and its Content-Type is `application/x-directory` (or
//! `httpd/unix-directory`, as Nextcloud writes) — the rule of s3fs's
//! `get_mode`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::store::{ObjectHeaders, ObjectMeta};

/// Content-Type of the directory markers s3fs writes, and of its old-style
/// directory objects (`dir` without the slash).
pub const DIRECTORY_CONTENT_TYPE: &str = "application/x-directory";

/// Content-Types s3fs takes for a directory (see `get_mode` in s3fs-fuse's
/// `src/metaheader.cpp`): its own, and Nextcloud's.
const DIRECTORY_CONTENT_TYPES: [&str; 2] = [DIRECTORY_CONTENT_TYPE, "httpd/unix-directory"];

/// The metadata names this module owns; the rest of an object's metadata
/// belongs to whoever wrote it and is kept through every change we make.
const OWNED_NAMES: [&str; 8] = [
    "mode", "uid", "gid", "atime", "ctime", "mtime", "rdev", "xattr",
];

/// What s3fs's URL encoding leaves alone: unreserved characters and `/`.
const XATTR_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Extended attributes by name. Shared, since every copy of a file's headers
/// (inode, header cache, open file) holds the same ones.
pub type Xattrs = BTreeMap<String, Vec<u8>>;

/// POSIX attributes an object carries in user metadata. Absent or
/// unparsable headers are `None` and the mount options (or, for times, the
/// object's Last-Modified) stand in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PosixHeaders {
    /// Full `st_mode`, file-type bits included when the writer gave them.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<SystemTime>,
    pub ctime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
    pub rdev: Option<u64>,
    /// `None` when the object has no `xattr` header; `Some(empty)` removes it.
    pub xattrs: Option<Arc<Xattrs>>,
    /// The object's Content-Type says directory. Read only, to tell s3fs's
    /// old-style directory objects (see the module notes); never written
    /// as metadata, since Content-Type is a header of its own.
    pub has_directory_content_type: bool,
}

impl PosixHeaders {
    /// The headers of an entry created now by `uid`:`gid`; `mode` includes
    /// the file-type bits.
    pub fn created(mode: u32, uid: u32, gid: u32, now: SystemTime) -> Self {
        PosixHeaders {
            mode: Some(mode),
            uid: Some(uid),
            gid: Some(gid),
            atime: Some(now),
            ctime: Some(now),
            mtime: Some(now),
            ..PosixHeaders::default()
        }
    }

    /// POSIX: a change of contents moves mtime and ctime.
    pub fn touch_contents(&mut self, now: SystemTime) {
        self.mtime = Some(now);
        self.ctime = Some(now);
    }

    /// What a write by someone without CAP_FSETID does to the mode, as the
    /// kernel's `should_remove_suid` decides: set-user-ID goes; set-group-ID
    /// goes when group execute is set (without it, it marks mandatory
    /// locking, and stays).
    pub fn drop_setid(&mut self) {
        if let Some(mode) = self.mode.as_mut() {
            *mode &= !libc::S_ISUID;
            if *mode & libc::S_IXGRP != 0 {
                *mode &= !libc::S_ISGID;
            }
        }
    }

    /// Parses lower-cased user metadata names without the `x-amz-meta-` prefix.
    pub fn from_user_metadata(metadata: &HashMap<String, String>) -> Self {
        let number = |name: &str| {
            metadata
                .get(name)
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        let time = |name: &str| metadata.get(name).and_then(|v| parse_epoch(v));
        PosixHeaders {
            mode: number("mode"),
            uid: number("uid"),
            gid: number("gid"),
            atime: time("atime"),
            ctime: time("ctime"),
            mtime: time("mtime"),
            rdev: metadata
                .get("rdev")
                .and_then(|v| v.trim().parse::<u64>().ok()),
            xattrs: metadata.get("xattr").and_then(|v| {
                let parsed = decode_xattrs(v);
                if parsed.is_none() {
                    log::warn!("ignoring an x-amz-meta-xattr header that does not parse");
                }
                parsed.map(Arc::new)
            }),
            has_directory_content_type: false,
        }
    }

    /// The headers of an object as HEAD reported them, Content-Type included.
    pub fn from_head(meta: &ObjectMeta) -> Self {
        PosixHeaders {
            has_directory_content_type: meta
                .content_type
                .as_deref()
                .is_some_and(is_directory_content_type),
            ..PosixHeaders::from_user_metadata(&meta.user_metadata)
        }
    }

    /// Whether an object without a trailing slash that carries these
    /// headers is an old-style directory, as s3fs decides: by the mode's
    /// file-type bits, or, when it has none, by the Content-Type.
    pub fn is_old_style_directory(&self) -> bool {
        match self.mode.map(|mode| mode & libc::S_IFMT) {
            Some(libc::S_IFDIR) => true,
            None | Some(0) => self.has_directory_content_type,
            Some(_) => false,
        }
    }

    /// The user metadata these headers write, in s3fs's format.
    pub fn to_user_metadata(&self) -> HashMap<String, String> {
        let mut metadata = HashMap::new();
        let mut number = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                metadata.insert(name.to_owned(), value);
            }
        };
        number("mode", self.mode.map(|v| v.to_string()));
        number("uid", self.uid.map(|v| v.to_string()));
        number("gid", self.gid.map(|v| v.to_string()));
        number("atime", self.atime.map(format_epoch));
        number("ctime", self.ctime.map(format_epoch));
        number("mtime", self.mtime.map(format_epoch));
        number("rdev", self.rdev.map(|v| v.to_string()));
        if let Some(xattrs) = self.xattrs.as_deref().filter(|x| !x.is_empty()) {
            metadata.insert("xattr".to_owned(), encode_xattrs(xattrs));
        }
        metadata
    }
}

/// Headers for a new object `key` (a file, symlink or special file):
/// `posix` in s3fs's format and a Content-Type from the name.
pub fn new_object_headers(key: &str, posix: &PosixHeaders) -> ObjectHeaders {
    ObjectHeaders {
        user_metadata: posix.to_user_metadata(),
        content_type: Some(content_type_for(key)),
    }
}

/// Headers for a directory marker.
pub fn directory_marker_headers(posix: &PosixHeaders) -> ObjectHeaders {
    ObjectHeaders {
        user_metadata: posix.to_user_metadata(),
        content_type: Some(DIRECTORY_CONTENT_TYPE.to_owned()),
    }
}

/// `existing` (an object's headers as HEAD reported them) with `posix`
/// replacing the POSIX ones; everything else another tool wrote is kept,
/// its Content-Type too (or, when it had none, the one `key` implies).
pub fn replaced_headers(
    existing: &ObjectHeaders,
    key: &str,
    posix: &PosixHeaders,
) -> ObjectHeaders {
    let mut user_metadata = existing.user_metadata.clone();
    for name in OWNED_NAMES {
        user_metadata.remove(name);
    }
    user_metadata.extend(posix.to_user_metadata());
    ObjectHeaders {
        user_metadata,
        content_type: existing
            .content_type
            .clone()
            .or_else(|| Some(content_type_for(key))),
    }
}

/// Headers for a directory marker that replaces `existing` ones (an earlier
/// marker, or an old-style directory object): as `replaced_headers`, with
/// the directory Content-Type where the marker had none.
pub fn replaced_marker_headers(existing: &ObjectHeaders, posix: &PosixHeaders) -> ObjectHeaders {
    let mut headers = replaced_headers(existing, "", posix);
    if existing.content_type.is_none() {
        headers.content_type = Some(DIRECTORY_CONTENT_TYPE.to_owned());
    }
    headers
}

/// A Content-Type without its parameters (`; charset=...`) is one s3fs
/// takes for a directory.
fn is_directory_content_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    DIRECTORY_CONTENT_TYPES
        .iter()
        .any(|directory| essence.eq_ignore_ascii_case(directory))
}

/// The MIME type of a file name's extension, `application/octet-stream`
/// when unknown.
pub fn content_type_for(key: &str) -> String {
    let name = key.rsplit('/').next().unwrap_or(key);
    mime_guess::from_path(name)
        .first_or_octet_stream()
        .essence_str()
        .to_owned()
}

/// Epoch seconds with an optional fraction ("1600000000" or "1600000000.25").
fn parse_epoch(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let seconds: u64 = whole.parse().ok()?;
    let nanos = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().take(9).collect();
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        format!("{digits:0<9}").parse::<u32>().ok()?
    };
    UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

/// As s3fs writes it: whole seconds alone, else nine digits of nanoseconds.
/// Times before the epoch are written as the epoch.
fn format_epoch(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    match since.subsec_nanos() {
        0 => since.as_secs().to_string(),
        nanos => format!("{}.{nanos:09}", since.as_secs()),
    }
}

fn encode_xattrs(xattrs: &Xattrs) -> String {
    let json: serde_json::Map<String, serde_json::Value> = xattrs
        .iter()
        .map(|(name, value)| (name.clone(), BASE64.encode(value).into()))
        .collect();
    let json = serde_json::Value::Object(json).to_string();
    utf8_percent_encode(&json, XATTR_ENCODE).to_string()
}

fn decode_xattrs(header: &str) -> Option<Xattrs> {
    let json = percent_decode_str(header).decode_utf8().ok()?;
    let object: HashMap<String, String> = serde_json::from_str(&json).ok()?;
    object
        .into_iter()
        .map(|(name, value)| Some((name, BASE64.decode(value.trim()).ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_s3fs_headers() {
        let headers = PosixHeaders::from_user_metadata(&metadata(&[
            ("mode", "33184"),
            ("uid", "1234"),
            ("gid", "4321"),
            ("mtime", "1600000000.5"),
            ("atime", "1577836800.500000000"),
            ("ctime", "1577836801"),
            ("rdev", "2049"),
        ]));
        assert_eq!(headers.mode, Some(0o100640));
        assert_eq!(headers.uid, Some(1234));
        assert_eq!(headers.gid, Some(4321));
        assert_eq!(
            headers.mtime,
            Some(UNIX_EPOCH + Duration::new(1_600_000_000, 500_000_000))
        );
        assert_eq!(
            headers.atime,
            Some(UNIX_EPOCH + Duration::new(1_577_836_800, 500_000_000))
        );
        assert_eq!(
            headers.ctime,
            Some(UNIX_EPOCH + Duration::from_secs(1_577_836_801))
        );
        assert_eq!(headers.rdev, Some(2049));
    }

    #[test]
    fn garbage_headers_are_ignored() {
        let headers = PosixHeaders::from_user_metadata(&metadata(&[
            ("mode", "rwx"),
            ("mtime", "soon"),
            ("xattr", "%7Bnot json"),
        ]));
        assert_eq!(headers, PosixHeaders::default());
    }

    #[test]
    fn times_are_written_as_s3fs_writes_them() {
        let whole = UNIX_EPOCH + Duration::from_secs(1_796_247_056);
        let fraction = UNIX_EPOCH + Duration::new(1_577_836_801, 250_000_000);
        assert_eq!(format_epoch(whole), "1796247056");
        assert_eq!(format_epoch(fraction), "1577836801.250000000");
        assert_eq!(parse_epoch(&format_epoch(fraction)), Some(fraction));
    }

    /// The header s3fs 1.90 wrote for `user.foo` = "bar baz" and
    /// `user.x` = ff 00 2f 2b 3d.
    const S3FS_XATTR: &str =
        "%7B%22user.foo%22%3A%22YmFyIGJheg%3D%3D%22%2C%22user.x%22%3A%22/wAvKz0%3D%22%7D";

    #[test]
    fn xattrs_read_and_write_in_s3fs_format() {
        let decoded = decode_xattrs(S3FS_XATTR).unwrap();
        assert_eq!(decoded["user.foo"], b"bar baz");
        assert_eq!(decoded["user.x"], b"\xff\x00/+=");
        assert_eq!(encode_xattrs(&decoded), S3FS_XATTR);
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let headers = PosixHeaders {
            mode: Some(libc::S_IFCHR | 0o600),
            uid: Some(1),
            gid: Some(2),
            atime: Some(UNIX_EPOCH + Duration::new(3, 4)),
            ctime: Some(UNIX_EPOCH + Duration::from_secs(5)),
            mtime: Some(UNIX_EPOCH + Duration::new(6, 7)),
            rdev: Some(libc::makedev(4, 5)),
            xattrs: Some(Arc::new(Xattrs::from([(
                "user.a".to_owned(),
                vec![0, 1, 2],
            )]))),
            has_directory_content_type: false,
        };
        assert_eq!(
            PosixHeaders::from_user_metadata(&headers.to_user_metadata()),
            headers
        );
    }

    #[test]
    fn replacing_keeps_foreign_metadata_and_content_type() {
        let existing = ObjectHeaders {
            user_metadata: metadata(&[("mode", "33188"), ("xattr", S3FS_XATTR), ("owner", "etl")]),
            content_type: Some("text/csv".to_owned()),
        };
        let posix = PosixHeaders {
            mode: Some(0o100600),
            xattrs: Some(Arc::default()),
            ..PosixHeaders::default()
        };
        let replaced = replaced_headers(&existing, "data.bin", &posix);
        assert_eq!(
            replaced.user_metadata,
            metadata(&[("mode", "33152"), ("owner", "etl")])
        );
        assert_eq!(replaced.content_type.as_deref(), Some("text/csv"));
    }

    fn head(content_type: Option<&str>, pairs: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            size: 0,
            etag: "\"e\"".to_owned(),
            last_modified: UNIX_EPOCH,
            user_metadata: metadata(pairs),
            content_type: content_type.map(str::to_owned),
        }
    }

    #[test]
    fn old_style_directories_are_told_as_s3fs_tells_them() {
        let is_directory = |content_type, pairs| {
            PosixHeaders::from_head(&head(content_type, pairs)).is_old_style_directory()
        };
        let x_directory = Some("application/x-directory");
        assert!(is_directory(x_directory, &[]));
        assert!(is_directory(
            Some("httpd/unix-directory; charset=UTF-8"),
            &[]
        ));
        assert!(is_directory(x_directory, &[("mode", "493")]));
        assert!(is_directory(
            Some("binary/octet-stream"),
            &[("mode", "16877")]
        ));
        assert!(!is_directory(x_directory, &[("mode", "33188")]));
        assert!(!is_directory(Some("binary/octet-stream"), &[]));
        assert!(!is_directory(None, &[("mode", "493")]));
    }

    #[test]
    fn a_replaced_marker_keeps_what_another_tool_wrote() {
        let posix = PosixHeaders {
            mode: Some(0o40700),
            ..PosixHeaders::default()
        };
        let console = ObjectHeaders {
            user_metadata: metadata(&[("owner", "etl"), ("mode", "493")]),
            content_type: Some("binary/octet-stream".to_owned()),
        };
        let replaced = replaced_marker_headers(&console, &posix);
        assert_eq!(
            replaced.user_metadata,
            metadata(&[("owner", "etl"), ("mode", "16832")])
        );
        assert_eq!(
            replaced.content_type.as_deref(),
            Some("binary/octet-stream")
        );
        let bare = replaced_marker_headers(&ObjectHeaders::default(), &posix);
        assert_eq!(bare.content_type.as_deref(), Some(DIRECTORY_CONTENT_TYPE));
    }

    #[test]
    fn content_type_follows_the_extension() {
        assert_eq!(content_type_for("site/index.html"), "text/html");
        assert_eq!(content_type_for("a/b.dir/photo.JPG"), "image/jpeg");
        assert_eq!(content_type_for("notes"), "application/octet-stream");
        assert_eq!(content_type_for("x.unknownext"), "application/octet-stream");
    }
}
