//! The members directory, a page at a time, kept in memory for a few seconds.
//!
//! A page of names costs the database about as much as the rest of the members page together
//! (reading a hundred rows in name order), yet it changes only when a member joins, leaves,
//! is suspended or renames themselves. So each instance keeps the pages it has shown, and
//! drops them all when it makes such a change itself; a change made elsewhere (another
//! instance on the same database, the command line) shows within the time a page is kept
//! ([`TTL`] for the server).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::db::{self, Db};

/// How long a page is kept: the longest a change made elsewhere takes to show.
pub const TTL: Duration = Duration::from_secs(5);

/// Names per page of the directory.
pub const PAGE_SIZE: i64 = 100;

/// Pages kept at most; beyond that the oldest are dropped (a page is a few KiB).
const MAX_PAGES: usize = 64;

/// One page of the directory.
#[derive(Debug, Clone)]
pub struct Page {
    /// Display names of active members, in name order.
    pub names: Arc<Vec<String>>,
    /// Whether there are more names after this page.
    pub has_next: bool,
}

struct Cached {
    page: Page,
    fetched: Instant,
    generation: u64,
}

/// The directory pages this instance has shown.
pub struct Directory {
    ttl: Duration,
    generation: AtomicU64,
    pages: Mutex<HashMap<i64, Cached>>,
}

impl Directory {
    /// A cache whose pages live at most `ttl`.
    pub fn new(ttl: Duration) -> Directory {
        Directory {
            ttl,
            generation: AtomicU64::new(0),
            pages: Mutex::new(HashMap::new()),
        }
    }

    /// Page `number` (from 1), from memory when it is fresh.
    pub async fn page(&self, pool: &Db, number: i64) -> Result<Page, sqlx::Error> {
        // Read before the query: a change that commits meanwhile makes this copy stale.
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(page) = self.fresh(number, generation) {
            return Ok(page);
        }
        // One more than a page, to know whether there is a next one.
        let mut names =
            db::members::active_names(pool, PAGE_SIZE + 1, (number - 1) * PAGE_SIZE).await?;
        let has_next = names.len() as i64 > PAGE_SIZE;
        names.truncate(PAGE_SIZE as usize);
        let page = Page {
            names: Arc::new(names),
            has_next,
        };
        if let Ok(mut pages) = self.pages.lock() {
            if pages.len() >= MAX_PAGES {
                pages.clear();
            }
            pages.insert(
                number,
                Cached {
                    page: page.clone(),
                    fetched: Instant::now(),
                    generation,
                },
            );
        }
        Ok(page)
    }

    fn fresh(&self, number: i64, generation: u64) -> Option<Page> {
        let pages = self.pages.lock().ok()?;
        let cached = pages.get(&number)?;
        (cached.generation == generation && cached.fetched.elapsed() < self.ttl)
            .then(|| cached.page.clone())
    }

    /// Call after this instance has committed a change that may show in the directory (a
    /// member joined, left, changed status or name): every page is read again.
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}
