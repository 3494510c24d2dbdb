//! Caches between the filesystem core and the store: object attributes read
//! from POSIX headers (`meta`) and file contents in fixed-size blocks, in
//! memory (`block`) and, with `--cache-dir`, on local disk (`disk`).

pub mod block;
pub mod disk;
pub mod meta;
