//! Rate limits: at most `count` events per `window`, counted in the database so that they hold
//! across restarts and across instances sharing it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Config;
pub use crate::config::Limit;
use crate::db::{self, Db, login_attempts::LoginAttempt};
use crate::domain::audit::{self, Action, AddressHasher};
use crate::email::EmailAddress;

/// A hit on `bucket` now, in the current window of `limit`.
fn hit_of(bucket: &str, limit: Limit, now: i64) -> db::rate_limits::Hit<'_> {
    let window = limit.window.as_secs().max(1) as i64;
    let window_start = now - now.rem_euclid(window);
    db::rate_limits::Hit {
        bucket,
        window_start,
        expires_at: window_start + window,
    }
}

/// Counts one event in each bucket, each against its own limit, in one statement.
/// `Ok(None)` when all allow it; `Ok(Some(seconds))` when any limit is reached, with the
/// seconds until the last such window ends (for `Retry-After`).
pub async fn check(
    pool: &Db,
    counted: &[(String, Limit)],
    now: i64,
) -> Result<Option<u64>, sqlx::Error> {
    let hits: Vec<db::rate_limits::Hit<'_>> = counted
        .iter()
        .map(|(bucket, limit)| hit_of(bucket, *limit, now))
        .collect();
    if hits.is_empty() {
        return Ok(None);
    }
    let counts = db::rate_limits::hit(pool, &hits).await?;
    Ok(hits
        .iter()
        .zip(&counts)
        .zip(counted)
        .filter(|((_, count), (_, limit))| **count > i64::from(limit.count))
        .map(|((hit, _), _)| (hit.expires_at - now).max(1) as u64)
        .max())
}

/// Counts the start of a sign-in (or of an address change: both make the broker mail the
/// address) from client network `network`, for `email` when it is an address.
///
/// Three limits: per network (`RATE_LIMIT_LOGIN_PER_IP`), per address *from that network*
/// (`RATE_LIMIT_LOGIN_PER_EMAIL`), and per address from all networks together
/// (`RATE_LIMIT_LOGIN_PER_EMAIL_ALL`, higher). The last is counted only for starts the first
/// two let through, so that one network cannot use it up: someone who starts sign-ins for a
/// member's address from elsewhere is stopped by their own limits, and the member, on their
/// own network, still signs in. Together they still cap the mail an inbox gets.
///
/// `Ok(Some(seconds))` when a limit is reached. Otherwise `attempt`, if given, is stored: with
/// all three limits on (the default), in the same round trip as the counters, and all of it or
/// none.
pub async fn sign_in_start(
    pool: &Db,
    config: &Config,
    hasher: &AddressHasher,
    network: &str,
    email: Option<&EmailAddress>,
    attempt: Option<&LoginAttempt>,
) -> Result<Option<u64>, sqlx::Error> {
    let now = db::now();
    let per_network = format!("login-ip:{network}");
    // Addresses are counted by their keyed hash: no address is stored for this.
    let per_address = email.map(|e| {
        let hash = hasher.hash(e.as_str());
        (
            format!("login-email:{}:{network}", hash.as_str()),
            format!("login-email-all:{}", hash.as_str()),
        )
    });
    // With all three limits (the default), one statement counts them all.
    if let (Some((from_network, everywhere)), Some(per_ip), Some(per_email), Some(all)) = (
        &per_address,
        config.rate_limit_login_per_ip,
        config.rate_limit_login_per_email,
        config.rate_limit_login_per_email_all,
    ) {
        let buckets = [
            (everywhere.as_str(), all),
            (per_network.as_str(), per_ip),
            (from_network.as_str(), per_email),
        ];
        let hits: Vec<db::rate_limits::Hit<'_>> =
            buckets.iter().map(|(b, l)| hit_of(b, *l, now)).collect();
        let counts = match attempt {
            Some(attempt) => {
                let limits = [all, per_ip, per_email].map(|l| i64::from(l.count));
                db::login_attempts::insert_within_limits(
                    pool,
                    hits[0],
                    [hits[1], hits[2]],
                    limits,
                    attempt,
                )
                .await?
            }
            None => {
                db::rate_limits::hit_with_ceiling(
                    pool,
                    hits[0],
                    [hits[1], hits[2]],
                    [i64::from(per_ip.count), i64::from(per_email.count)],
                )
                .await?
            }
        };
        let over = |i: usize| counts[i] > i64::from(buckets[i].1.count);
        let wait = |i: usize| (hits[i].expires_at - now).max(1) as u64;
        // A start the local limits refuse did not count against the ceiling.
        let local = [1, 2].into_iter().filter(|i| over(*i)).map(wait).max();
        return Ok(local.or_else(|| over(0).then(|| wait(0))));
    }
    // A limit is off: the ones that are on, the ceiling after the others.
    let mut local = Vec::with_capacity(2);
    if let Some(limit) = config.rate_limit_login_per_ip {
        local.push((per_network, limit));
    }
    if let (Some((from_network, _)), Some(limit)) =
        (&per_address, config.rate_limit_login_per_email)
    {
        local.push((from_network.clone(), limit));
    }
    if let Some(wait) = check(pool, &local, now).await? {
        return Ok(Some(wait));
    }
    if let (Some((_, everywhere)), Some(limit)) =
        (per_address, config.rate_limit_login_per_email_all)
        && let Some(wait) = check(pool, &[(everywhere, limit)], now).await?
    {
        return Ok(Some(wait));
    }
    if let Some(attempt) = attempt {
        db::login_attempts::insert(pool, attempt).await?;
    }
    Ok(None)
}

/// Refused sign-in tokens, per client network: counted in the database (`verify-refused:`
/// buckets) until a network reaches `RATE_LIMIT_REFUSED_PER_IP`, then remembered here, in this
/// process, until its window ends, so that a flood of garbage costs no write at all once it
/// is over the limit. Audit entries for refusals are folded per network, reason and minute.
#[derive(Default)]
pub struct RefusalGate {
    closed: Mutex<HashMap<String, Instant>>,
}

/// The most networks the gate remembers; beyond that, ended windows are forgotten first.
const GATE_CAPACITY: usize = 10_000;

impl RefusalGate {
    fn closed_for(&self, network: &str) -> Option<u64> {
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        let until = *closed.get(network)?;
        let now = Instant::now();
        if now < until {
            Some((until - now).as_secs().max(1))
        } else {
            closed.remove(network);
            None
        }
    }

    fn close(&self, network: &str, seconds: u64) {
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if closed.len() >= GATE_CAPACITY {
            closed.retain(|_, until| *until > now);
        }
        if closed.len() < GATE_CAPACITY {
            closed.insert(network.to_owned(), now + Duration::from_secs(seconds));
        }
    }

    /// Records that a token from `network` was refused for `reason`: counts it against the
    /// network's limit and in the folded audit entry. `Ok(Some(seconds))` when the network
    /// is over its limit (nothing more is written for it until the window ends).
    pub async fn refused(
        &self,
        pool: &Db,
        config: &Config,
        network: &str,
        reason: &str,
    ) -> Result<Option<u64>, sqlx::Error> {
        if let Some(wait) = self.closed_for(network) {
            return Ok(Some(wait));
        }
        if let Some(limit) = config.rate_limit_refused_per_ip {
            let counted = [(format!("verify-refused:{network}"), limit)];
            if let Some(wait) = check(pool, &counted, db::now()).await? {
                self.close(network, wait);
                let detail = format!("too_many_refusals from {network}");
                audit::record_folded(pool, Action::SignInRefused, &detail).await?;
                return Ok(Some(wait));
            }
        }
        let detail = format!("{reason} from {network}");
        audit::record_folded(pool, Action::SignInRefused, &detail).await?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_limits() {
        assert_eq!(
            Limit::parse("10/1m"),
            Ok(Some(Limit {
                count: 10,
                window: Duration::from_secs(60)
            }))
        );
        assert_eq!(
            Limit::parse("5/15m"),
            Ok(Some(Limit {
                count: 5,
                window: Duration::from_secs(900)
            }))
        );
        assert_eq!(Limit::parse("off"), Ok(None));
        for bad in ["", "10", "ten/1m", "0/1m", "10/0s", "10/1w", "/1m"] {
            assert!(Limit::parse(bad).is_err(), "{bad}");
        }
    }
}
