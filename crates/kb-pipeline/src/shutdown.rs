//! A cloneable shutdown signal that every loop and wait watches.
//!
//! [`Shutdown::trigger`] is idempotent; [`Shutdown::sleep`] returns early with `Err` once
//! shutdown is requested, so no loop sleeps through it.

use std::time::Duration;

use tokio::sync::watch;

/// A shutdown signal shared by every task of the process.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: std::sync::Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

/// Returned by waits that shutdown interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("shutting down")]
pub struct ShutdownRequested;

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// Makes a signal that has not fired.
    pub fn new() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            tx: std::sync::Arc::new(tx),
            rx,
        }
    }

    /// Requests shutdown of every holder of a clone of this signal.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Returns true once shutdown has been requested.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits until shutdown is requested.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An error means every sender is gone, which also means shutdown.
        let _closed = rx.wait_for(|v| *v).await;
    }

    /// Sleeps for `d`, or returns `Err` as soon as shutdown is requested.
    pub async fn sleep(&self, d: Duration) -> Result<(), ShutdownRequested> {
        if self.is_triggered() {
            return Err(ShutdownRequested);
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = self.wait() => Err(ShutdownRequested),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleep_ends_early_on_trigger() {
        let s = Shutdown::new();
        let s2 = s.clone();
        let t = tokio::spawn(async move { s2.sleep(Duration::from_secs(3600)).await });
        s.trigger();
        assert_eq!(t.await.unwrap(), Err(ShutdownRequested));
        assert!(s.is_triggered());
    }
}
