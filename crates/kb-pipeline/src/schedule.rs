//! Cron schedules (five fields, as in the seed's `schedule:` section, or six with seconds).
//!
//! Parsing and "next fire time" come from the `croner` crate; [`Schedule::wait_next`] sleeps
//! until the next fire time and returns early on shutdown. Missed ticks are skipped, not
//! replayed: every run catches up on all unsynced windows anyway.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use croner::Cron;
use croner::parser::CronParser;

use crate::shutdown::{Shutdown, ShutdownRequested};

/// A parsed cron schedule, evaluated in UTC.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: Cron,
}

/// Why a cron string was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid cron expression {expr:?}: {reason}")]
pub struct ScheduleError {
    pub expr: String,
    pub reason: String,
}

impl Schedule {
    /// Parses a cron expression such as `0 */1 * * *`.
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let cron = CronParser::new().parse(expr).map_err(|e| ScheduleError {
            expr: expr.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Schedule {
            expr: expr.to_string(),
            cron,
        })
    }

    /// Returns the expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// Returns the first fire time strictly after `after` (unix seconds), if any.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let t: DateTime<Utc> = Utc.timestamp_opt(after, 0).single()?;
        self.cron
            .find_next_occurrence(&t, false)
            .ok()
            .map(|t| t.timestamp())
    }

    /// Sleeps until the next fire time after now; returns it, or `Err` on shutdown.
    pub async fn wait_next(&self, shutdown: &Shutdown) -> Result<i64, ShutdownRequested> {
        let now = Utc::now().timestamp();
        let Some(next) = self.next_after(now) else {
            // A schedule that never fires again: wait for shutdown.
            shutdown.wait().await;
            return Err(ShutdownRequested);
        };
        let wait = Duration::from_secs(u64::try_from(next - now).unwrap_or(0));
        shutdown.sleep(wait).await?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_schedules_parse_and_fire_when_expected() {
        let hourly = Schedule::parse("0 */1 * * *").unwrap();
        // 2023-11-14T22:13:20Z -> 23:00.
        assert_eq!(hourly.next_after(1_700_000_000), Some(1_700_002_800));
        let daily = Schedule::parse("0 2 * * *").unwrap();
        assert_eq!(daily.next_after(1_700_000_000), Some(1_700_013_600));
        assert!(Schedule::parse("every hour").is_err());
    }
}
