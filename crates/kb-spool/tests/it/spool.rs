//! The spool itself: order, cumulative acks, restart replay, torn tails, corruption, bounds,
//! segment rollover and deletion, and random-byte robustness.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use kb_spool::{FsyncPolicy, OnCorruption, Record, Spool, SpoolConfig, SpoolDepth, SpoolError};

use crate::{cfg, dead_files, dir_bytes, open, payload, segments};

/// Bytes of a record on disk: 18-byte header plus payload.
const H: u64 = 18;
/// Bytes of a segment header.
const SH: u64 = 16;

#[test]
fn append_peek_ack_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let s = open(&dir);
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(s.is_empty());
    assert_eq!(s.peek().unwrap(), None);
    let a = s.append(1, b"one").unwrap();
    let b = s.append(2, b"two!").unwrap();
    let c = s.append(3, b"").unwrap();
    assert!(a < b && b < c);
    assert_eq!(
        s.depth(),
        SpoolDepth {
            records: 3,
            bytes: 3 * H + 7
        }
    );
    let r = s.peek().unwrap().unwrap();
    assert_eq!(
        r,
        Record {
            seq: a,
            kind: 1,
            payload: b"one".to_vec()
        }
    );
    // Peeking again gives the same record until it is acknowledged.
    assert_eq!(s.peek().unwrap().unwrap().seq, a);
    s.ack(a).unwrap();
    s.ack(a).unwrap(); // acking twice is harmless
    let r = s.peek().unwrap().unwrap();
    assert_eq!((r.seq, r.kind, r.payload.as_slice()), (b, 2, &b"two!"[..]));
    s.ack(b).unwrap();
    let r = s.peek().unwrap().unwrap();
    assert_eq!((r.seq, r.kind, r.payload.len()), (c, 3, 0));
    assert!(matches!(
        s.ack(c + 1),
        Err(SpoolError::AckBeyondEnd { seq, newest: Some(n) }) if seq == c + 1 && n == c
    ));
    s.ack(c).unwrap();
    assert_eq!(s.peek().unwrap(), None);
    assert_eq!(s.depth(), SpoolDepth::default());
    assert!(s.is_empty());
}

#[test]
fn ack_is_cumulative() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    let seqs: Vec<u64> = (0..30)
        .map(|i| s.append(0, &payload(i, 500)).unwrap())
        .collect();
    assert!(segments(tmp.path()).len() > 2);
    s.ack(seqs[20]).unwrap();
    assert_eq!(s.peek().unwrap().unwrap().seq, seqs[21]);
    assert_eq!(s.depth().records, 9);
    assert_eq!(s.depth().bytes, 9 * (H + 500));
}

#[test]
fn restart_replays_unacked_in_order_and_not_acked() {
    let tmp = tempfile::tempdir().unwrap();
    let mut seqs = Vec::new();
    {
        let s = open(tmp.path());
        for i in 0..20 {
            seqs.push(s.append(i as u16, &payload(i, 700)).unwrap());
        }
        for &q in &seqs[..7] {
            assert_eq!(s.peek().unwrap().unwrap().seq, q);
            s.ack(q).unwrap();
        }
    }
    let s = open(tmp.path());
    assert_eq!(s.recovery().records, 13);
    assert_eq!(s.recovery().torn_bytes, 0);
    assert_eq!(s.depth().records, 13);
    for (i, &q) in seqs.iter().enumerate().skip(7) {
        let r = s.peek().unwrap().unwrap();
        assert_eq!((r.seq, r.kind), (q, i as u16));
        assert_eq!(r.payload, payload(i as u64, 700));
        s.ack(q).unwrap();
    }
    assert_eq!(s.peek().unwrap(), None);
    // Sequence numbers keep growing across restarts, even once everything is acknowledged.
    let next = s.append(0, b"x").unwrap();
    assert!(next > *seqs.last().unwrap());
    drop(s);
    let s = open(tmp.path());
    assert_eq!(s.peek().unwrap().unwrap().seq, next);
}

#[test]
fn fsync_always_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let c = SpoolConfig {
        fsync: FsyncPolicy::Always,
        ..cfg()
    };
    {
        let s = Spool::open(tmp.path(), c.clone()).unwrap();
        for i in 0..10 {
            s.append(1, &payload(i, 1000)).unwrap();
        }
        s.ack(3).unwrap();
    }
    let s = Spool::open(tmp.path(), c).unwrap();
    assert_eq!(s.peek().unwrap().unwrap().seq, 4);
    assert_eq!(s.depth().records, 7);
}

fn last_segment_len(dir: &std::path::Path) -> (std::path::PathBuf, u64) {
    let p = segments(dir).pop().unwrap();
    let len = std::fs::metadata(&p).unwrap().len();
    (p, len)
}

#[test]
fn torn_tail_is_truncated_on_open() {
    // Cut the last record in its payload, and in its header.
    for cut in [5u64, 100 + 10] {
        let tmp = tempfile::tempdir().unwrap();
        {
            let s = open(tmp.path());
            for i in 0..3 {
                s.append(7, &payload(i, 100)).unwrap();
            }
        }
        let (seg, len) = last_segment_len(tmp.path());
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - cut)
            .unwrap();
        let s = open(tmp.path());
        assert_eq!(s.recovery().torn_bytes, H + 100 - cut, "cut {cut}");
        assert_eq!(s.depth().records, 2, "cut {cut}");
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), SH + 2 * (H + 100));
        // Appends continue after the good records.
        let q = s.append(7, b"after").unwrap();
        assert_eq!(q, 3);
        let mut got = Vec::new();
        while let Some(r) = s.peek().unwrap() {
            got.push(r.payload.clone());
            s.ack(r.seq).unwrap();
        }
        assert_eq!(
            got,
            vec![payload(0, 100), payload(1, 100), b"after".to_vec()]
        );
    }
}

#[test]
fn zero_tail_after_whole_records_keeps_them() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let s = open(tmp.path());
        for i in 0..3 {
            s.append(7, &payload(i, 100)).unwrap();
        }
    }
    let (seg, len) = last_segment_len(tmp.path());
    OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&[0u8; 40])
        .unwrap();
    let s = open(tmp.path());
    assert_eq!(s.recovery().torn_bytes, 40);
    assert_eq!(s.depth().records, 3);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len);
}

#[test]
fn segment_torn_in_its_header_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let s = open(tmp.path());
        s.append(1, b"a").unwrap();
    }
    // A crash right after creating the next segment, before its header was complete.
    std::fs::write(tmp.path().join(format!("seg-{:020}.log", 2)), b"KBSP").unwrap();
    let s = open(tmp.path());
    assert_eq!(s.recovery().torn_bytes, 4);
    assert_eq!(segments(tmp.path()).len(), 1);
    assert_eq!(s.append(1, b"b").unwrap(), 2);
}

#[test]
fn crc_corruption_in_the_middle_is_an_error_naming_file_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let s = open(tmp.path());
        for i in 0..3 {
            s.append(7, &payload(i, 100)).unwrap();
        }
    }
    let seg = segments(tmp.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let second = SH + H + 100;
    bytes[(second + H + 50) as usize] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    match Spool::open(tmp.path(), cfg()) {
        Err(SpoolError::Corrupt {
            path,
            offset,
            reason,
        }) => {
            assert_eq!(path, seg);
            assert_eq!(offset, second);
            assert!(reason.contains("crc"), "{reason}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    let msg = Spool::open(tmp.path(), cfg()).unwrap_err().to_string();
    assert!(
        msg.contains(&seg.display().to_string()) && msg.contains("offset 134"),
        "{msg}"
    );

    // Quarantine: the bad region goes to dead/, the good record before it stays.
    let q = SpoolConfig {
        on_corruption: OnCorruption::Quarantine,
        ..cfg()
    };
    let s = Spool::open(tmp.path(), q).unwrap();
    let rep = s.recovery();
    assert_eq!(rep.quarantined.len(), 1);
    assert_eq!(rep.quarantined[0].offset, second);
    assert_eq!(rep.quarantined[0].bytes, 2 * (H + 100));
    assert_eq!(
        std::fs::read(&rep.quarantined[0].dead_file).unwrap(),
        bytes[second as usize..]
    );
    assert_eq!(dead_files(tmp.path(), "txt").len(), 1);
    assert_eq!(s.depth().records, 1);
    assert_eq!(s.peek().unwrap().unwrap().payload, payload(0, 100));
    // Appends go on with the next sequence number.
    assert_eq!(s.append(1, b"x").unwrap(), 2);
}

#[test]
fn corruption_in_an_older_segment_is_not_taken_for_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let s = open(tmp.path());
        for i in 0..12 {
            s.append(7, &payload(i, 1000)).unwrap();
        }
    }
    let segs = segments(tmp.path());
    assert!(segs.len() >= 3);
    // Truncating a segment that is not the last loses data: corruption, not a torn tail.
    let f = OpenOptions::new().write(true).open(&segs[0]).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - 10).unwrap();
    let err = Spool::open(tmp.path(), cfg()).unwrap_err();
    assert!(
        matches!(&err, SpoolError::Corrupt { path, .. } if *path == segs[0]),
        "{err}"
    );
}

#[test]
fn corruption_found_at_peek_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    s.append(1, &payload(0, 64)).unwrap();
    let seg = segments(tmp.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[(SH + H + 3) as usize] ^= 1;
    std::fs::write(&seg, &bytes).unwrap();
    let err = s.peek().unwrap_err();
    assert!(
        matches!(&err, SpoolError::Corrupt { path, offset: 16, .. } if *path == seg),
        "{err}"
    );
}

#[test]
fn bad_ack_file_fails_or_replays_everything() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let s = open(tmp.path());
        for i in 0..3 {
            s.append(1, &payload(i, 10)).unwrap();
        }
        s.ack(2).unwrap();
    }
    std::fs::write(tmp.path().join("ack"), [0xabu8; 600]).unwrap();
    let err = Spool::open(tmp.path(), cfg()).unwrap_err();
    assert!(err.to_string().contains("ack"), "{err}");
    let q = SpoolConfig {
        on_corruption: OnCorruption::Quarantine,
        ..cfg()
    };
    let s = Spool::open(tmp.path(), q).unwrap();
    // At-least-once: without a valid ack, every record still on disk replays.
    assert_eq!(s.peek().unwrap().unwrap().seq, 1);
    assert_eq!(s.depth().records, 3);
}

#[test]
fn torn_ack_slot_falls_back_to_the_previous_head() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let s = open(tmp.path());
        for i in 0..5 {
            s.append(1, &payload(i, 10)).unwrap();
        }
        s.ack(1).unwrap(); // generation 1: slot at 512
        s.ack(3).unwrap(); // generation 2: slot at 0
    }
    let ack = tmp.path().join("ack");
    let mut bytes = std::fs::read(&ack).unwrap();
    bytes[10] ^= 0xff; // tear the newest slot
    std::fs::write(&ack, &bytes).unwrap();
    let s = open(tmp.path());
    assert_eq!(s.peek().unwrap().unwrap().seq, 2);
}

#[test]
fn full_at_max_bytes_and_too_large() {
    let tmp = tempfile::tempdir().unwrap();
    let c = SpoolConfig {
        max_bytes: 16 * 1024,
        segment_bytes: 4096,
        ..cfg()
    };
    let s = Spool::open(tmp.path(), c).unwrap();
    let mut n = 0u64;
    let err = loop {
        match s.append(1, &payload(n, 1000)) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
        assert!(n < 100);
    };
    assert!(
        matches!(err, SpoolError::Full { max: 16384, .. }),
        "{err:?}"
    );
    assert!(s.disk_bytes() <= 16 * 1024);
    assert_eq!(dir_bytes(tmp.path()), s.disk_bytes());
    assert_eq!(s.depth().records, n);
    // Still full for the next try; nothing was written.
    assert!(matches!(
        s.append(1, &payload(0, 1000)),
        Err(SpoolError::Full { .. })
    ));
    assert_eq!(s.depth().records, n);
    // Draining makes room.
    while let Some(r) = s.peek().unwrap() {
        s.ack(r.seq).unwrap();
    }
    s.append(1, &payload(0, 1000)).unwrap();
    assert!(matches!(
        s.append(1, &vec![0u8; 20_000]),
        Err(SpoolError::TooLarge { len: 20_000, .. })
    ));
    // A record larger than a segment but within max_bytes gets a segment of its own.
    let big = s.append(2, &payload(9, 9000)).unwrap();
    s.ack(big - 1).unwrap();
    assert_eq!(s.peek().unwrap().unwrap().payload, payload(9, 9000));
}

#[test]
fn segments_roll_over_and_acked_ones_are_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    let seqs: Vec<u64> = (0..40)
        .map(|i| s.append(0, &payload(i, 1000)).unwrap())
        .collect();
    let before = dir_bytes(tmp.path());
    let nseg = segments(tmp.path()).len();
    assert_eq!(nseg, 10, "four 1018-byte records per 4096-byte segment");
    assert_eq!(before, s.disk_bytes());
    for &q in &seqs[..20] {
        assert_eq!(s.peek().unwrap().unwrap().seq, q);
        s.ack(q).unwrap();
    }
    let after = dir_bytes(tmp.path());
    assert!(after < before / 2 + 4096, "{after} vs {before}");
    assert_eq!(after, s.disk_bytes());
    assert!(segments(tmp.path()).len() < nseg);
    for &q in &seqs[20..] {
        s.ack(q).unwrap();
    }
    // The last segment stays (appends go there) until it rolls over.
    assert_eq!(segments(tmp.path()).len(), 1);
    s.append(0, &payload(0, 4000)).unwrap();
    assert_eq!(
        segments(tmp.path()).len(),
        1,
        "the acked last segment was replaced"
    );
    assert_eq!(s.disk_bytes(), SH + H + 4000);
    drop(s);
    let s = open(tmp.path());
    assert_eq!(s.depth().records, 1);
}

#[test]
fn invalid_config_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let c = SpoolConfig {
        max_bytes: 1000,
        segment_bytes: 4096,
        ..cfg()
    };
    assert!(matches!(
        Spool::open(tmp.path(), c),
        Err(SpoolError::Config(_))
    ));
}

#[test]
fn garbage_files_never_panic() {
    // Random bytes in place of segments and the ack file: errors, never panics.
    for seed in 0..50u64 {
        let mut rng = fastrand_like(seed);
        let tmp = tempfile::tempdir().unwrap();
        {
            let s = open(tmp.path());
            for i in 0..5 {
                s.append(1, &payload(i, 300)).unwrap();
            }
            s.ack(2).unwrap();
        }
        for p in segments(tmp.path())
            .into_iter()
            .chain([tmp.path().join("ack")])
        {
            let mut b = std::fs::read(&p).unwrap();
            for _ in 0..3 {
                let i = (rng() as usize) % b.len().max(1);
                if let Some(x) = b.get_mut(i) {
                    *x ^= (rng() as u8) | 1;
                }
            }
            std::fs::write(&p, &b).unwrap();
        }
        for on_corruption in [OnCorruption::Fail, OnCorruption::Quarantine] {
            let c = SpoolConfig {
                on_corruption,
                ..cfg()
            };
            if let Ok(s) = Spool::open(tmp.path(), c) {
                while let Ok(Some(r)) = s.peek() {
                    if s.ack(r.seq).is_err() {
                        break;
                    }
                }
            }
        }
    }
}

fn fastrand_like(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}
