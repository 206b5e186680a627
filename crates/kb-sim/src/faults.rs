//! Deterministic fault injection: which fault (if any) a request gets is decided from the seed
//! and a per-server request counter, so a test run with the same seed sees the same sequence.
//!
//! Invariant: at most one of fail / timeout / null-data / truncate / malformed per request
//! (checked in that order, each with its own hash); `nan` is independent of them.

use crate::Faults;
use crate::fleet::{hash, unit};

/// What to do to one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Decision {
    pub fail: bool,
    pub timeout: bool,
    pub null_data: bool,
    pub truncate: bool,
    pub malformed: bool,
    pub nan: bool,
}

/// Decides the faults of request number `n`.
pub(crate) fn decide(f: &Faults, seed: u64, n: u64) -> Decision {
    let roll = |salt: u64, rate: f64| rate > 0.0 && unit(hash(seed, &[0xFA_17, n, salt])) < rate;
    let mut d = Decision {
        nan: roll(6, f.nan_rate),
        ..Decision::default()
    };
    if roll(1, f.fail_rate) {
        d.fail = true;
    } else if roll(2, f.timeout_rate) {
        d.timeout = true;
    } else if roll(3, f.null_data_rate) {
        d.null_data = true;
    } else if roll(4, f.truncate_rate) {
        d.truncate = true;
    } else if roll(5, f.malformed_rate) {
        d.malformed = true;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_respected_and_deterministic() {
        let f = Faults {
            fail_rate: 0.25,
            ..Faults::default()
        };
        let fails = (0..4000).filter(|n| decide(&f, 7, *n).fail).count();
        assert!((800..1200).contains(&fails), "{fails}");
        assert_eq!(decide(&f, 7, 11), decide(&f, 7, 11));
        assert_eq!(decide(&Faults::default(), 7, 1), Decision::default());
        let all = Faults {
            truncate_rate: 1.0,
            ..Faults::default()
        };
        assert!(decide(&all, 1, 5).truncate);
    }
}
