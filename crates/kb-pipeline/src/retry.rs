//! Retries with exponential backoff and full jitter, honouring a server's `Retry-After`.
//!
//! Every adapter error says whether retrying may help ([`Retryable::retry_hint`]); the loop in
//! [`retry`] reads only that, never error strings. Delays follow "full jitter" (AWS
//! architecture blog, "Exponential Backoff And Jitter"): a uniform random delay in
//! `[0, min(cap, base × 2^attempt)]`, so many clients that failed together do not retry together.
//! A `Retry-After` from the server replaces the random delay (capped by `max_delay`).
//!
//! This is a small loop rather than a crate such as `backon` because it must combine full jitter,
//! a server-given delay, a total-time cap and the shutdown signal in one place.

use std::future::Future;
use std::time::Duration;

use crate::shutdown::Shutdown;

/// Whether a failed operation may succeed if tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryHint {
    /// Try again, after at least `after` if the server said so.
    Retry { after: Option<Duration> },
    /// Trying again cannot help (bad request, bad data, bad credentials).
    Permanent,
}

/// Errors that know whether retrying may help.
pub trait Retryable {
    /// Returns whether to retry, and after how long if the server said.
    fn retry_hint(&self) -> RetryHint;
}

/// How to retry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Delay cap for the first retry; doubles each time.
    pub base_delay: Duration,
    /// Largest delay between two attempts.
    pub max_delay: Duration,
    /// No retry starts after this much time since the first attempt.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// Returns the full-jitter delay before retry number `retry` (0 for the first retry), using
    /// `unit`, a uniform random number in `[0, 1)`.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let exp = self.base_delay.as_secs_f64() * 2f64.powi(retry.min(30) as i32);
        let cap = exp.min(self.max_delay.as_secs_f64());
        Duration::from_secs_f64(cap * unit.clamp(0.0, 1.0))
    }
}

/// Why [`retry`] gave up.
#[derive(Debug)]
pub enum RetryError<E> {
    /// The last error, after `attempts` attempts.
    Failed { error: E, attempts: u32 },
    /// Shutdown was requested while waiting to retry.
    ShutDown { error: E, attempts: u32 },
}

impl<E> RetryError<E> {
    /// Returns the last error.
    pub fn into_inner(self) -> E {
        match self {
            RetryError::Failed { error, .. } | RetryError::ShutDown { error, .. } => error,
        }
    }

    /// Returns the number of attempts made.
    pub fn attempts(&self) -> u32 {
        match self {
            RetryError::Failed { attempts, .. } | RetryError::ShutDown { attempts, .. } => {
                *attempts
            }
        }
    }
}

/// Runs `op` until it succeeds, fails permanently, runs out of attempts or time, or shutdown is
/// requested. `on_retry` is told of every error that will be retried, with the delay chosen.
pub async fn retry<T, E, F, Fut>(
    policy: RetryPolicy,
    shutdown: &Shutdown,
    mut op: F,
    mut on_retry: impl FnMut(&E, u32, Duration),
) -> Result<T, RetryError<E>>
where
    E: Retryable,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = tokio::time::Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let after = match error.retry_hint() {
            RetryHint::Permanent => {
                return Err(RetryError::Failed {
                    error,
                    attempts: attempt,
                });
            }
            RetryHint::Retry { after } => after,
        };
        if attempt >= policy.max_attempts.max(1) || started.elapsed() >= policy.max_elapsed {
            return Err(RetryError::Failed {
                error,
                attempts: attempt,
            });
        }
        let delay = match after {
            Some(d) => d.min(policy.max_delay),
            None => policy.delay(attempt - 1, fastrand::f64()),
        };
        on_retry(&error, attempt, delay);
        if shutdown.sleep(delay).await.is_err() {
            return Err(RetryError::ShutDown {
                error,
                attempts: attempt,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[derive(Debug)]
    struct E(RetryHint);
    impl Retryable for E {
        fn retry_hint(&self) -> RetryHint {
            self.0
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_elapsed: Duration::from_secs(10),
        }
    }

    #[test]
    fn delay_is_capped_full_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(0, 1.0), Duration::from_millis(500));
        assert_eq!(p.delay(2, 1.0), Duration::from_secs(2));
        assert_eq!(p.delay(20, 1.0), Duration::from_secs(30));
        assert_eq!(p.delay(3, 0.0), Duration::ZERO);
    }

    #[tokio::test]
    async fn retries_transient_then_succeeds() {
        let calls = Cell::new(0);
        let r = retry(
            fast(),
            &Shutdown::new(),
            |_| {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n < 3 {
                        Err(E(RetryHint::Retry { after: None }))
                    } else {
                        Ok(n)
                    }
                }
            },
            |_, _, _| {},
        )
        .await;
        assert_eq!(r.unwrap(), 3);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried_and_attempts_are_capped() {
        let r: Result<(), _> = retry(
            fast(),
            &Shutdown::new(),
            |_| async { Err(E(RetryHint::Permanent)) },
            |_, _, _| {},
        )
        .await;
        assert_eq!(r.unwrap_err().attempts(), 1);
        let r: Result<(), _> = retry(
            fast(),
            &Shutdown::new(),
            |_| async {
                Err(E(RetryHint::Retry {
                    after: Some(Duration::from_millis(1)),
                }))
            },
            |_, _, d| assert_eq!(d, Duration::from_millis(1), "retry-after wins"),
        )
        .await;
        assert_eq!(r.unwrap_err().attempts(), 4);
    }
}
