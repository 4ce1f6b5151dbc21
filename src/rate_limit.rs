//! Rate limits: at most `count` events per `window`, counted in the database so that they hold
//! across restarts and across instances sharing it.

use std::fmt;
use std::time::Duration;

use crate::config::parse_duration;
use crate::db::{self, Pool};

/// A limit such as `10/1m`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Events allowed per window.
    pub count: u32,
    /// The window.
    pub window: Duration,
}

impl fmt::Debug for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.count, self.window.as_secs())
    }
}

impl Limit {
    /// Parses `COUNT/WINDOW` (`10/1m`, `5/15m`, `100/1h`) or `off` (returns `Ok(None)`).
    pub fn parse(raw: &str) -> Result<Option<Limit>, String> {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let bad = || format!("{raw:?} is not a limit; expected COUNT/WINDOW like 10/1m, or off");
        let (count, window) = raw.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let window = parse_duration(window).ok_or_else(bad)?;
        if count == 0 || window.is_zero() {
            return Err(bad());
        }
        Ok(Some(Limit { count, window }))
    }
}

/// Counts one event in each bucket, each against its own limit, in one statement.
/// `Ok(None)` when all allow it; `Ok(Some(seconds))` when any limit is reached, with the
/// seconds until the last such window ends (for `Retry-After`).
pub async fn check(
    pool: &Pool,
    counted: &[(String, Limit)],
    now: i64,
) -> Result<Option<u64>, sqlx::Error> {
    let hits: Vec<db::rate_limits::Hit<'_>> = counted
        .iter()
        .map(|(bucket, limit)| {
            let window = limit.window.as_secs().max(1) as i64;
            let window_start = now - now.rem_euclid(window);
            db::rate_limits::Hit {
                bucket,
                window_start,
                expires_at: window_start + window,
            }
        })
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
