//! The background purge: every `PURGE_INTERVAL`, the rows that expired are deleted from each
//! table of [`Expiring::ALL`], through the one statement of [`crate::db::purge`].

use std::time::Duration;

use tokio::sync::watch;

use crate::db::purge::Expiring;
use crate::db::{self, Db};
use crate::domain::mail::RETENTION;

/// Rows deleted per statement: keeps each write short so sign-ins are not held up.
pub const PURGE_BATCH: i64 = 1000;

/// What one purge removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    /// Expired login attempts deleted.
    pub login_attempts: u64,
    /// Expired sessions deleted.
    pub sessions: u64,
    /// Rate-limit counters whose window ended.
    pub rate_limits: u64,
    /// Audit entries older than the retention period.
    pub audit_entries: u64,
    /// Mails sent, failed or skipped longer ago than [`RETENTION`].
    pub outbox: u64,
}

/// The cut-off of `table` at `now`: rows that expired before it are deleted.
fn cut_off(table: Expiring, now: i64, audit_retention: Duration) -> i64 {
    match table {
        Expiring::AuditLog => now - audit_retention.as_secs() as i64,
        Expiring::Outbox => now - RETENTION.as_secs() as i64,
        Expiring::LoginAttempts | Expiring::Sessions | Expiring::RateLimits => now,
    }
}

/// Deletes everything that expired before `now`, table by table and batch by batch. Several
/// instances may run this on one database at the same time: each row is deleted once, by
/// whoever gets it first.
pub async fn purge_expired(
    pool: &Db,
    now: i64,
    audit_retention: Duration,
) -> Result<Purged, sqlx::Error> {
    let mut purged = Purged::default();
    for table in Expiring::ALL {
        let before = cut_off(table, now, audit_retention);
        let mut deleted = 0;
        loop {
            let n = db::purge::delete_batch(pool, table, before, PURGE_BATCH).await?;
            deleted += n;
            if n < PURGE_BATCH as u64 {
                break;
            }
        }
        *purged.of_mut(table) = deleted;
    }
    Ok(purged)
}

impl Purged {
    fn of_mut(&mut self, table: Expiring) -> &mut u64 {
        match table {
            Expiring::AuditLog => &mut self.audit_entries,
            Expiring::LoginAttempts => &mut self.login_attempts,
            Expiring::Sessions => &mut self.sessions,
            Expiring::RateLimits => &mut self.rate_limits,
            Expiring::Outbox => &mut self.outbox,
        }
    }

    /// What was deleted from each table, with the table's name in the metrics.
    pub fn by_table(&self) -> [(&'static str, u64); 5] {
        [
            ("login_attempts", self.login_attempts),
            ("sessions", self.sessions),
            ("rate_limits", self.rate_limits),
            ("audit_entries", self.audit_entries),
            ("outbox", self.outbox),
        ]
    }
}

/// Runs [`purge_expired`] every `interval` until `stop` turns true.
pub async fn run_purge(
    pool: Db,
    interval: Duration,
    audit_retention: Duration,
    mut stop: watch::Receiver<bool>,
    metrics: std::sync::Arc<crate::domain::metrics::Metrics>,
) {
    // The first run is one interval after start, not at start: start-up stays quick, and
    // several instances started together do not all purge at once.
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        let started = std::time::Instant::now();
        match purge_expired(&pool, db::now(), audit_retention).await {
            Ok(p) if p == Purged::default() => tracing::debug!("purge: nothing expired"),
            Ok(p) => {
                for (table, rows) in p.by_table() {
                    metrics.purged(table, rows);
                }
                tracing::info!(
                    login_attempts = p.login_attempts,
                    sessions = p.sessions,
                    rate_limits = p.rate_limits,
                    audit_entries = p.audit_entries,
                    outbox = p.outbox,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "purged expired rows"
                )
            }
            Err(e) => tracing::warn!(error = %e, "purge failed; will retry"),
        }
    }
    tracing::debug!("purge task stopped");
}
