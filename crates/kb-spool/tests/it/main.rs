//! Integration tests for kb-spool: order, restart and crash recovery, corruption, bounds,
//! segment lifecycle, the delivery worker, and a property test against a FIFO model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod deliver;
mod prop;
mod spool;

use std::path::{Path, PathBuf};

use kb_spool::{FsyncPolicy, OnCorruption, Spool, SpoolConfig};

pub(crate) fn cfg() -> SpoolConfig {
    SpoolConfig {
        max_bytes: 1 << 20,
        segment_bytes: 4096,
        fsync: FsyncPolicy::Never,
        on_corruption: OnCorruption::Fail,
        dead_keep: 10,
    }
}

pub(crate) fn open(dir: &Path) -> Spool {
    Spool::open(dir, cfg()).unwrap()
}

pub(crate) fn payload(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
}

pub(crate) fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seg-"))
        })
        .collect();
    v.sort();
    v
}

pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    segments(dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

pub(crate) fn dead_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("dead"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
        .collect();
    v.sort();
    v
}
