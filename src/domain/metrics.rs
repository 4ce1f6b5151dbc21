//! Counters for `GET /metrics`, in the Prometheus text format.
//!
//! Plain atomics, one set per instance: Prometheus scrapes every instance and adds them up.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the request latency histogram, in seconds.
const LATENCY_BOUNDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The tables the background purge deletes from, as the metric labels them.
pub const PURGED_TABLES: [&str; 5] = [
    "login_attempts",
    "sessions",
    "rate_limits",
    "audit_entries",
    "outbox",
];

/// The outcomes of a delivery attempt, as the metric labels them.
pub const MAIL_OUTCOMES: [&str; 4] = ["sent", "retrying", "failed", "skipped"];

/// What the site counts.
#[derive(Default)]
pub struct Metrics {
    signins_started: AtomicU64,
    signins_completed: AtomicU64,
    signins_refused: Mutex<BTreeMap<&'static str, u64>>,
    rate_limited: AtomicU64,
    purged: [AtomicU64; 5],
    mails: [AtomicU64; 4],
    latency_buckets: [AtomicU64; LATENCY_BOUNDS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

/// How often the broker's documents were fetched, for the metrics page.
#[derive(Debug, Default, Clone, Copy)]
pub struct BrokerFetches {
    /// Discovery documents fetched.
    pub discovery: u64,
    /// Key sets fetched.
    pub keys: u64,
    /// Fetches of either that failed.
    pub failed: u64,
}

impl Metrics {
    /// A sign-in was sent to the broker.
    pub fn signin_started(&self) {
        self.signins_started.fetch_add(1, Ordering::Relaxed);
    }

    /// A sign-in ended with a new session.
    pub fn signin_completed(&self) {
        self.signins_completed.fetch_add(1, Ordering::Relaxed);
    }

    /// A sign-in was refused; `reason` is a short snake_case name.
    pub fn signin_refused(&self, reason: &'static str) {
        if let Ok(mut by_reason) = self.signins_refused.lock() {
            *by_reason.entry(reason).or_default() += 1;
        }
    }

    /// A request was refused by a rate limit.
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// Rows of `table` (one of [`PURGED_TABLES`]) deleted by a purge.
    pub fn purged(&self, table: &str, rows: u64) {
        if let Some(i) = PURGED_TABLES.iter().position(|t| *t == table) {
            self.purged[i].fetch_add(rows, Ordering::Relaxed);
        }
    }

    /// One delivery attempt of the outbox, by its outcome (one of [`MAIL_OUTCOMES`]).
    pub fn mail(&self, outcome: &str) {
        if let Some(i) = MAIL_OUTCOMES.iter().position(|o| *o == outcome) {
            self.mails[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One request answered after `elapsed`.
    pub fn request(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BOUNDS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn render(&self, broker: BrokerFetches) -> String {
        let mut out = String::new();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "clubhouse_signins_started_total",
            "Sign-ins sent to the broker.",
            &[("", get(&self.signins_started))],
        );
        counter(
            &mut out,
            "clubhouse_signins_completed_total",
            "Sign-ins that started a session.",
            &[("", get(&self.signins_completed))],
        );
        let refused: Vec<(String, u64)> = self
            .signins_refused
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(reason, n)| (format!("reason=\"{reason}\""), *n))
                    .collect()
            })
            .unwrap_or_default();
        let refused: Vec<(&str, u64)> = refused.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        counter(
            &mut out,
            "clubhouse_signins_refused_total",
            "Sign-ins refused after the broker answered, by reason.",
            &refused,
        );
        counter(
            &mut out,
            "clubhouse_rate_limited_total",
            "Requests refused by a rate limit.",
            &[("", get(&self.rate_limited))],
        );
        counter(
            &mut out,
            "clubhouse_broker_fetches_total",
            "Documents fetched from the broker.",
            &[
                ("document=\"discovery\"", broker.discovery),
                ("document=\"keys\"", broker.keys),
            ],
        );
        counter(
            &mut out,
            "clubhouse_broker_fetch_failures_total",
            "Fetches from the broker that failed.",
            &[("", broker.failed)],
        );
        let purged: Vec<String> = PURGED_TABLES
            .iter()
            .map(|t| format!("table=\"{t}\""))
            .collect();
        let purged: Vec<(&str, u64)> = purged
            .iter()
            .zip(&self.purged)
            .map(|(label, n)| (label.as_str(), get(n)))
            .collect();
        counter(
            &mut out,
            "clubhouse_purged_rows_total",
            "Expired rows deleted by the background purge.",
            &purged,
        );
        let mails: Vec<String> = MAIL_OUTCOMES
            .iter()
            .map(|o| format!("outcome=\"{o}\""))
            .collect();
        let mails: Vec<(&str, u64)> = mails
            .iter()
            .zip(&self.mails)
            .map(|(label, n)| (label.as_str(), get(n)))
            .collect();
        counter(
            &mut out,
            "clubhouse_mail_attempts_total",
            "Delivery attempts of queued mail, by outcome.",
            &mails,
        );
        let name = "clubhouse_http_request_duration_seconds";
        let _ = writeln!(out, "# HELP {name} Time to answer a request.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BOUNDS) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", get(bucket));
        }
        let count = get(&self.latency_count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = get(&self.latency_sum_micros) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
        out
    }
}

fn counter(out: &mut String, name: &str, help: &str, values: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    for (labels, value) in values {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.signin_started();
        m.signin_refused("unknown_nonce");
        m.signin_refused("unknown_nonce");
        m.request(Duration::from_millis(3));
        m.request(Duration::from_secs(20));
        let text = m.render(BrokerFetches {
            discovery: 1,
            keys: 2,
            failed: 0,
        });
        assert!(text.contains("clubhouse_signins_started_total 1\n"));
        assert!(text.contains("clubhouse_signins_refused_total{reason=\"unknown_nonce\"} 2\n"));
        assert!(text.contains("clubhouse_broker_fetches_total{document=\"keys\"} 2\n"));
        assert!(text.contains("clubhouse_http_request_duration_seconds_bucket{le=\"0.001\"} 0\n"));
        assert!(text.contains("clubhouse_http_request_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("clubhouse_http_request_duration_seconds_bucket{le=\"10\"} 1\n"));
        assert!(text.contains("clubhouse_http_request_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("clubhouse_http_request_duration_seconds_count 2\n"));
    }
}
