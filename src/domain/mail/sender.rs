//! The background sender: delivers queued mail, retries what the server could not take, and
//! gives up after [`super::GIVE_UP_AFTER`]. Several instances on one database share the work:
//! each mail is claimed with a lease before it is sent, so only one of them sends it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{DIGEST_LIST_LIMIT, LEASE, Mailer, SendError, kind, retry_wait};
use crate::db::{self, Db, outbox};
use crate::domain::metrics::Metrics;

/// How often the outbox is looked at when nothing is due sooner (mail queued by another
/// instance is noticed within this time; this instance's own wakes the sender at once).
pub const POLL: Duration = Duration::from_secs(5);

/// What one delivery attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing was due.
    Idle,
    /// Accepted by the mail server.
    Sent,
    /// Put back, to be tried again later.
    Retrying,
    /// Failed for good.
    Failed,
    /// A digest with nothing left to say (every request was handled meanwhile).
    Skipped,
}

impl Outcome {
    /// The outcome's name in the metrics (nothing for an attempt that found nothing due).
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Idle => "idle",
            Outcome::Sent => "sent",
            Outcome::Retrying => "retrying",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// Claims the mail due first and tries to deliver it.
pub async fn deliver_one(pool: &Db, mailer: &Mailer) -> Result<Outcome, sqlx::Error> {
    let now = db::now();
    let Some(mut mail) = outbox::claim_due(pool, now, LEASE.as_secs() as i64).await? else {
        return Ok(Outcome::Idle);
    };
    if mail.kind == kind::PENDING_DIGEST {
        // Written now, so that it lists the requests still waiting.
        let waiting = db::members::pending_emails(pool, DIGEST_LIST_LIMIT as i64).await?;
        let count = db::members::count_pending(pool).await? as usize;
        if count == 0 {
            outbox::finish(
                pool,
                &mail.id,
                "skipped",
                now,
                "nothing was waiting any more",
            )
            .await?;
            return Ok(Outcome::Skipped);
        }
        match mailer.digest(&waiting, count) {
            Ok(r) => {
                outbox::set_content(pool, &mail.id, &r.subject, &r.text, &r.html).await?;
                (mail.subject, mail.body_text, mail.body_html) = (r.subject, r.text, r.html);
            }
            Err(e) => {
                let why = format!("the digest could not be written: {e}");
                outbox::finish(pool, &mail.id, "failed", now, &why).await?;
                return Ok(Outcome::Failed);
            }
        }
    }
    let result = mailer.deliver(&mail).await;
    let now = db::now();
    Ok(match result {
        Ok(answer) => {
            outbox::finish(pool, &mail.id, "sent", now, &answer).await?;
            tracing::info!(mail = %mail.id, kind = %mail.kind, "mail sent");
            Outcome::Sent
        }
        Err(SendError::Permanent(why)) => {
            outbox::finish(pool, &mail.id, "failed", now, &why).await?;
            tracing::warn!(mail = %mail.id, kind = %mail.kind, error = %why, "mail refused for good");
            Outcome::Failed
        }
        Err(SendError::Transient(why)) if now >= mail.give_up_at => {
            let why = format!("gave up after {} attempts: {why}", mail.attempts);
            outbox::finish(pool, &mail.id, "failed", now, &why).await?;
            tracing::warn!(mail = %mail.id, kind = %mail.kind, error = %why, "mail failed");
            Outcome::Failed
        }
        Err(SendError::Transient(why)) => {
            let wait = retry_wait(mail.attempts);
            outbox::retry_later(pool, &mail.id, now + wait.as_secs() as i64, &why).await?;
            tracing::info!(
                mail = %mail.id, kind = %mail.kind, attempts = mail.attempts,
                retry_in_s = wait.as_secs(), error = %why, "mail not delivered; will retry"
            );
            Outcome::Retrying
        }
    })
}

/// Delivers mail until `stop` turns true. Does nothing when mail is off.
pub async fn run(
    pool: Db,
    mailer: Arc<Mailer>,
    mut stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    if !mailer.enabled() {
        return;
    }
    loop {
        if *stop.borrow() {
            break;
        }
        let wait = match next_step(&pool, &mailer, &metrics).await {
            Ok(wait) => wait,
            Err(e) => {
                tracing::warn!(error = %e, "outbox: the database failed; will retry");
                POLL
            }
        };
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = mailer.wake.notified() => {}
            _ = stop.changed() => {}
        }
    }
    tracing::debug!("mail sender stopped");
}

/// Sends what is due; returns how long to wait before looking again.
async fn next_step(pool: &Db, mailer: &Mailer, metrics: &Metrics) -> Result<Duration, sqlx::Error> {
    let now = db::now();
    match outbox::next_due(pool).await? {
        Some(due) if due <= now => {
            let outcome = deliver_one(pool, mailer).await?;
            metrics.mail(outcome.label());
            Ok(match outcome {
                // Someone else holds it, or took it first: look again shortly.
                Outcome::Idle => Duration::from_secs(1),
                _ => Duration::ZERO,
            })
        }
        Some(due) => Ok(Duration::from_secs((due - now) as u64).min(POLL)),
        None => Ok(POLL),
    }
}
