//! Random append / peek / ack / reopen sequences against a model queue.

use std::collections::VecDeque;

use kb_spool::{FsyncPolicy, OnCorruption, Spool, SpoolConfig, SpoolError};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        kind: u16,
        len: usize,
    },
    Peek,
    /// Acknowledge the first `n` unacknowledged records (cumulatively, via the n-th seq).
    Ack {
        n: usize,
    },
    /// Drop the spool without acknowledging anything in flight (a crash), and reopen it.
    Reopen,
    /// A crash in the middle of an append: the record's bytes are cut at `cut` (a fraction),
    /// and the spool is reopened. The append never returned, so the record is not expected.
    TornAppend {
        kind: u16,
        len: usize,
        cut: f64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u16..4, 0usize..2500).prop_map(|(kind, len)| Op::Append { kind, len }),
        3 => Just(Op::Peek),
        3 => (1usize..4).prop_map(|n| Op::Ack { n }),
        1 => Just(Op::Reopen),
        1 => (0u16..4, 0usize..2500, 0.0f64..1.0)
            .prop_map(|(kind, len, cut)| Op::TornAppend { kind, len, cut }),
    ]
}

fn config() -> SpoolConfig {
    SpoolConfig {
        max_bytes: 48 * 1024,
        segment_bytes: 8 * 1024,
        fsync: FsyncPolicy::Never,
        on_corruption: OnCorruption::Fail,
        dead_keep: 4,
    }
}

fn bytes_for(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as usize ^ i) as u8).collect()
}

proptest! {
    // 64 cases by default; PROPTEST_CASES=5000 for a longer run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn spool_matches_a_fifo_model(ops in proptest::collection::vec(op(), 1..120)) {
        let tmp = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(tmp.path(), config()).unwrap();
        let mut model: VecDeque<(u64, u16, Vec<u8>)> = VecDeque::new();
        let mut last_seq = 0u64;
        for op in ops {
            match op {
                Op::Append { kind, len } => {
                    let payload = bytes_for(last_seq + 1, len);
                    match spool.append(kind, &payload) {
                        Ok(seq) => {
                            prop_assert!(seq > last_seq, "seqs increase");
                            last_seq = seq;
                            model.push_back((seq, kind, payload));
                        }
                        Err(SpoolError::Full { used, needed, max }) => {
                            prop_assert!(used + needed > max);
                        }
                        Err(e) => return Err(TestCaseError::fail(e.to_string())),
                    }
                }
                Op::Peek => {
                    let got = spool.peek().unwrap();
                    let want = model.front();
                    prop_assert_eq!(
                        got.map(|r| (r.seq, r.kind, r.payload)),
                        want.cloned()
                    );
                }
                Op::Ack { n } => {
                    if let Some(&(seq, _, _)) = model.get(n.min(model.len()).saturating_sub(1)) {
                        spool.ack(seq).unwrap();
                        while model.front().is_some_and(|(s, _, _)| *s <= seq) {
                            model.pop_front();
                        }
                    }
                }
                Op::TornAppend { kind, len, cut } => {
                    let payload = bytes_for(0, len);
                    if spool.append(kind, &payload).is_ok() {
                        drop(spool);
                        let seg = crate::segments(tmp.path()).pop().unwrap();
                        let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
                        let full = file.metadata().unwrap().len();
                        let size = 18 + len as u64;
                        let keep = ((size - 1) as f64 * cut) as u64; // 0 ..= size - 2
                        file.set_len(full - size + keep).unwrap();
                        drop(file);
                        spool = Spool::open(tmp.path(), config()).unwrap();
                        prop_assert_eq!(spool.recovery().torn_bytes, keep);
                        prop_assert_eq!(spool.recovery().records, model.len() as u64);
                    }
                }
                Op::Reopen => {
                    drop(spool);
                    spool = Spool::open(tmp.path(), config()).unwrap();
                    prop_assert_eq!(spool.recovery().torn_bytes, 0);
                    prop_assert_eq!(spool.recovery().records, model.len() as u64);
                }
            }
            let depth = spool.depth();
            prop_assert_eq!(depth.records, model.len() as u64);
            let bytes: u64 = model.iter().map(|(_, _, p)| 18 + p.len() as u64).sum();
            prop_assert_eq!(depth.bytes, bytes);
            prop_assert!(spool.disk_bytes() <= config().max_bytes);
        }
        // Everything still unacknowledged comes back, in order, after a final restart.
        drop(spool);
        let spool = Spool::open(tmp.path(), config()).unwrap();
        for (seq, kind, payload) in model {
            let r = spool.peek().unwrap().unwrap();
            prop_assert_eq!((r.seq, r.kind, r.payload), (seq, kind, payload));
            spool.ack(seq).unwrap();
        }
        prop_assert!(spool.peek().unwrap().is_none());
    }
}
