//! Background work: deleting expired login attempts and sessions.

use std::time::Duration;

use tokio::sync::watch;

use crate::db::{self, Pool};

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
    /// Mails sent, failed or skipped longer ago than [`crate::mail::RETENTION`].
    pub outbox: u64,
}

/// Deletes everything that expired before `now`, batch by batch. Several instances may run
/// this on one database at the same time: each row is deleted once, by whoever gets it first.
pub async fn purge_expired(
    pool: &Pool,
    now: i64,
    audit_retention: Duration,
) -> Result<Purged, sqlx::Error> {
    let audit_before = now - audit_retention.as_secs() as i64;
    Ok(Purged {
        audit_entries: drain(|| db::audit::delete_older(pool, audit_before, PURGE_BATCH)).await?,
        login_attempts: drain(|| db::login_attempts::delete_expired(pool, now, PURGE_BATCH))
            .await?,
        sessions: drain(|| db::sessions::delete_expired(pool, now, PURGE_BATCH)).await?,
        rate_limits: drain(|| db::rate_limits::delete_expired(pool, now, PURGE_BATCH)).await?,
        outbox: drain(|| {
            db::outbox::delete_finished_before(
                pool,
                now - crate::mail::RETENTION.as_secs() as i64,
                PURGE_BATCH,
            )
        })
        .await?,
    })
}

/// Runs a batch delete until a batch comes back short; returns the total.
async fn drain<F, Fut>(mut batch: F) -> Result<u64, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, sqlx::Error>>,
{
    let mut total = 0;
    loop {
        let n = batch().await?;
        total += n;
        if n < PURGE_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Runs [`purge_expired`] every `interval` until `stop` turns true.
pub async fn run_purge(
    pool: Pool,
    interval: Duration,
    audit_retention: Duration,
    mut stop: watch::Receiver<bool>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
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
                metrics.purged(&p);
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
