//! The members directory, a page at a time, kept in memory for a few seconds.
//!
//! A page of names costs the database about as much as the rest of the members page together
//! (reading a hundred rows in name order), yet it changes only when a member joins, leaves,
//! is suspended or renames themselves. So each instance keeps the pages it has shown, and
//! drops them all when it makes such a change itself; a change made elsewhere (another
//! instance on the same database, the command line) shows within the time a page is kept
//! ([`TTL`] for the server).
//!
//! The front page's question "has this site an admin yet?" is kept the same way, so that a
//! visitor's front page needs no database at all. A sign-in can only add an admin (an address in
//! `ADMIN_EMAILS`), never take one away, so it drops a kept "no admin" but keeps a kept "there
//! is one"; every other change drops both.

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

/// The front page's admin check, as last read.
struct AdminCheck {
    without_admin: bool,
    fetched: Instant,
    generation: u64,
}

/// The directory pages this instance has shown, and whether the site had an admin.
pub struct Directory {
    ttl: Duration,
    generation: AtomicU64,
    pages: Mutex<HashMap<i64, Cached>>,
    /// Moves on with every change that may take an admin away, and with a sign-in while the
    /// site may have none.
    admin_generation: AtomicU64,
    admins: Mutex<Option<AdminCheck>>,
}

impl Directory {
    /// A cache whose pages live at most `ttl`.
    pub fn new(ttl: Duration) -> Directory {
        Directory {
            ttl,
            generation: AtomicU64::new(0),
            pages: Mutex::new(HashMap::new()),
            admin_generation: AtomicU64::new(0),
            admins: Mutex::new(None),
        }
    }

    /// Whether the site has no active admin yet (the front page then says how to become one),
    /// from memory when the last answer is fresh.
    pub async fn without_admin(&self, pool: &Db) -> Result<bool, sqlx::Error> {
        // Read before the query, as for a page.
        let generation = self.admin_generation.load(Ordering::Acquire);
        if let Ok(admins) = self.admins.lock()
            && let Some(check) = admins.as_ref()
            && check.generation == generation
            && check.fetched.elapsed() < self.ttl
        {
            return Ok(check.without_admin);
        }
        let without_admin = db::members::active_admins(pool).await? == 0;
        if let Ok(mut admins) = self.admins.lock() {
            *admins = Some(AdminCheck {
                without_admin,
                fetched: Instant::now(),
                generation,
            });
        }
        Ok(without_admin)
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
        self.admin_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Call after this instance has let a member in: the pages are read again (a first
    /// sign-in may add a name or activate an invited member), and the admin check too unless
    /// it last found an admin, which a sign-in cannot take away.
    pub fn signed_in(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let had_admin = self.admins.lock().ok().is_some_and(|admins| {
            admins.as_ref().is_some_and(|check| {
                !check.without_admin
                    && check.generation == self.admin_generation.load(Ordering::Acquire)
            })
        });
        if !had_admin {
            self.admin_generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}
