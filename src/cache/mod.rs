//! Caches between the filesystem core and the store: object attributes read
//! from POSIX headers (`meta`) and file contents in fixed-size blocks (`block`).

pub mod block;
pub mod meta;
