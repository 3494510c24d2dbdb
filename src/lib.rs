//! bucketfs: mount an S3 bucket as a POSIX filesystem.
//!
//! A POSIX call flows down, and dependencies point down only:
//! `fuse` (the only user of fuser) → `fs` (inodes, directories, handles) →
//! `cache` (metadata TTL, block cache) → `store` (the `ObjectStore` trait;
//! `store::s3` is the only user of aws-sdk-s3). `cli` and `daemon` serve
//! `main`: they turn a command line into a `config::MountConfig` and detach
//! from the terminal once the mount is live. `buffers` lends reusable memory
//! to the store and the upload staging.

pub mod buffers;
pub mod cache;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod fs;
pub mod fuse;
pub mod logging;
pub mod object_format;
pub mod runtimes;
pub mod shell;
pub mod store;
pub mod upload;
