//! Pages written as Markdown files in `CONTENT_DIR`: `content/notice-board.md` is served at
//! `/pages/notice-board`, subfolders map to paths.
//!
//! Each file starts with a small front matter between `---` lines:
//!
//! ```text
//! ---
//! title: Notice board
//! access: members        # public, members (default) or admins
//! order: 10              # optional; lower comes first in the navigation
//! nav: true              # optional; false keeps it out of the navigation
//! ---
//! ```
//!
//! Pages are rendered once and kept in memory. The folder is looked at again at most every
//! [`RESCAN_EVERY`]; a changed file is rendered again, a new one appears, a deleted one goes.
//! A broken file stops the start with its name and line; found later, it is logged and only
//! that page shows an error.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd};

/// The file (`index.md`) whose text is the front page; it is not served under `/pages/`.
pub const FRONT_PAGE: &str = "index";

/// How often the folder is checked for changes, at most.
pub const RESCAN_EVERY: Duration = Duration::from_secs(2);

/// Who may read a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Anyone.
    Public,
    /// Active members.
    Members,
    /// Admins.
    Admins,
}

impl Access {
    fn parse(s: &str) -> Option<Access> {
        match s {
            "public" => Some(Access::Public),
            "members" => Some(Access::Members),
            "admins" => Some(Access::Admins),
            _ => None,
        }
    }
}

/// A rendered page.
#[derive(Debug, Clone)]
pub struct Page {
    /// Its path under `/pages/`, e.g. `notice-board` or `club/rules`.
    pub slug: String,
    /// The title from the front matter.
    pub title: String,
    /// Who may read it.
    pub access: Access,
    /// Its place in the navigation.
    pub order: i64,
    /// Whether it is listed in the navigation.
    pub nav: bool,
    /// The HTML of its body.
    pub html: String,
}

/// A problem in a content file, with where it is.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ContentError {
    /// The file.
    pub file: String,
    /// The line (1-based).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

enum Entry {
    Ok(Page),
    Broken(ContentError),
}

struct Loaded {
    modified: SystemTime,
    entry: Entry,
}

struct State {
    files: HashMap<String, Loaded>,
    scanned: Instant,
}

/// The pages of `CONTENT_DIR`.
pub struct Content {
    dir: PathBuf,
    allow_html: bool,
    state: RwLock<State>,
}

/// What a visitor gets for a slug.
pub enum Lookup {
    /// The page.
    Found(Page),
    /// There is such a file, but it is broken.
    Broken(ContentError),
    /// No such page.
    Missing,
}

/// A link in the navigation.
#[derive(Debug, Clone)]
pub struct NavLink {
    /// Where it goes.
    pub href: String,
    /// What it says.
    pub title: String,
}

fn valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 200
        && slug.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('-')
                && seg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        })
}

impl Content {
    /// Loads every page of `dir`; the first broken file is the error. A missing folder is an
    /// empty site.
    pub fn load(dir: &Path, allow_html: bool) -> Result<Content, ContentError> {
        let content = Content {
            dir: dir.to_owned(),
            allow_html,
            state: RwLock::new(State {
                files: HashMap::new(),
                scanned: Instant::now(),
            }),
        };
        let files = content.scan_files();
        let mut state = content.write();
        for (slug, (path, modified)) in files {
            match content.read_page(&slug, &path) {
                Ok(page) => {
                    state.files.insert(
                        slug,
                        Loaded {
                            modified,
                            entry: Entry::Ok(page),
                        },
                    );
                }
                Err(e) => return Err(e),
            }
        }
        drop(state);
        Ok(content)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Every `.md` file below the folder: slug to (path, modification time).
    fn scan_files(&self) -> BTreeMap<String, (PathBuf, SystemTime)> {
        let mut found = BTreeMap::new();
        let mut dirs = vec![self.dir.clone()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "md")
                    && let Ok(rel) = path.with_extension("").strip_prefix(&self.dir)
                {
                    let slug = rel.to_string_lossy().replace('\\', "/");
                    if valid_slug(&slug) {
                        found.insert(
                            slug,
                            (
                                path.clone(),
                                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                            ),
                        );
                    }
                }
            }
        }
        found
    }

    /// Looks at the folder again if the last look is older than [`RESCAN_EVERY`].
    fn refresh(&self) {
        if self.read().scanned.elapsed() < RESCAN_EVERY {
            return;
        }
        let files = self.scan_files();
        let mut state = self.write();
        if state.scanned.elapsed() < RESCAN_EVERY {
            return;
        }
        state.scanned = Instant::now();
        state.files.retain(|slug, _| files.contains_key(slug));
        for (slug, (path, modified)) in files {
            if state
                .files
                .get(&slug)
                .is_some_and(|l| l.modified == modified)
            {
                continue;
            }
            let entry = match self.read_page(&slug, &path) {
                Ok(page) => Entry::Ok(page),
                Err(e) => {
                    tracing::error!(error = %e, "a content page could not be read; it shows an error until fixed");
                    Entry::Broken(e)
                }
            };
            state.files.insert(slug, Loaded { modified, entry });
        }
    }

    /// The page at `slug`. Anything that is not a plain lowercase path (`..`, dots,
    /// backslashes, encoded characters) is simply missing, and so is [`FRONT_PAGE`], which
    /// is shown at `/` instead.
    pub fn get(&self, slug: &str) -> Lookup {
        if !valid_slug(slug) || slug == FRONT_PAGE {
            return Lookup::Missing;
        }
        self.lookup(slug)
    }

    /// The owner's front page text (`index.md`), if there is one. A broken one is logged and
    /// the built-in text is shown instead.
    pub fn front_page(&self) -> Option<Page> {
        match self.lookup(FRONT_PAGE) {
            Lookup::Found(page) => Some(page),
            Lookup::Broken(e) => {
                tracing::warn!(error = %e, "the front page file is broken; showing the built-in text");
                None
            }
            Lookup::Missing => None,
        }
    }

    fn lookup(&self, slug: &str) -> Lookup {
        self.refresh();
        match self.read().files.get(slug).map(|l| &l.entry) {
            Some(Entry::Ok(page)) => Lookup::Found(page.clone()),
            Some(Entry::Broken(e)) => Lookup::Broken(e.clone()),
            None => Lookup::Missing,
        }
    }

    /// The pages a visitor with `level` may see and that are in the navigation, in order.
    pub fn nav(&self, level: Option<Access>) -> Vec<NavLink> {
        self.refresh();
        let state = self.read();
        let mut pages: Vec<&Page> = state
            .files
            .values()
            .filter_map(|l| match &l.entry {
                Entry::Ok(p) if p.nav && p.slug != FRONT_PAGE && may_read(level, p.access) => {
                    Some(p)
                }
                _ => None,
            })
            .collect();
        pages.sort_by(|a, b| a.order.cmp(&b.order).then_with(|| a.title.cmp(&b.title)));
        pages
            .into_iter()
            .map(|p| NavLink {
                href: format!("/pages/{}", p.slug),
                title: p.title.clone(),
            })
            .collect()
    }

    fn read_page(&self, slug: &str, path: &Path) -> Result<Page, ContentError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ContentError {
            file: file.clone(),
            line: 1,
            message: format!("cannot be read: {e}"),
        })?;
        parse_page(slug, &file, &text, self.allow_html)
    }
}

/// Whether a visitor of `level` (None: anonymous) may read a page with `access`.
pub fn may_read(level: Option<Access>, access: Access) -> bool {
    match level {
        None => access == Access::Public,
        Some(level) => level >= access,
    }
}

/// Parses front matter and Markdown.
pub fn parse_page(
    slug: &str,
    file: &str,
    text: &str,
    allow_html: bool,
) -> Result<Page, ContentError> {
    let err = |line: usize, message: String| ContentError {
        file: file.to_owned(),
        line,
        message,
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, first)) if first.trim_end() == "---" => {}
        _ => {
            return Err(err(
                1,
                "expected front matter starting with a line `---`".into(),
            ));
        }
    }
    // The front page is for everyone, so that is its default; it may not be anything else.
    let front = slug == FRONT_PAGE;
    let default_access = if front {
        Access::Public
    } else {
        Access::Members
    };
    let (mut title, mut access, mut order, mut nav) = (None, default_access, 0i64, true);
    let mut body_start = None;
    for (i, line) in lines.by_ref() {
        let n = i + 1;
        let line = line.split(" #").next().unwrap_or("").trim();
        if line == "---" {
            body_start = Some(i + 1);
            break;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| err(n, format!("expected `key: value`, found {line:?}")))?;
        let value = value.trim().trim_matches('"');
        match key.trim() {
            "title" if !value.is_empty() => title = Some(value.to_owned()),
            "title" => return Err(err(n, "the title is empty".into())),
            "access" => {
                access = Access::parse(value).ok_or_else(|| {
                    err(
                        n,
                        format!("access {value:?} is not public, members or admins"),
                    )
                })?
            }
            "order" => {
                order = value
                    .parse()
                    .map_err(|_| err(n, format!("order {value:?} is not a whole number")))?
            }
            "nav" => {
                nav = match value {
                    "true" | "yes" => true,
                    "false" | "no" => false,
                    _ => return Err(err(n, format!("nav {value:?} is not true or false"))),
                }
            }
            other => {
                return Err(err(
                    n,
                    format!("unknown key {other:?} (expected title, access, order or nav)"),
                ));
            }
        }
    }
    let body_start = body_start
        .ok_or_else(|| err(1, "the front matter is not closed by a line `---`".into()))?;
    if front && access != Access::Public {
        return Err(err(
            1,
            "index.md is the front page, which every visitor sees: its access must be public"
                .into(),
        ));
    }
    let title = title.ok_or_else(|| err(1, "the front matter has no title".into()))?;
    let body: String = text.lines().skip(body_start).collect::<Vec<_>>().join("\n");
    Ok(Page {
        slug: slug.to_owned(),
        title,
        access,
        order,
        nav,
        html: render(&body, allow_html),
    })
}

fn safe_url(url: &str) -> bool {
    let lower: String = url
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect::<String>()
        .to_lowercase();
    match lower.split_once(':') {
        // A scheme: only web and mail ones. (A colon after a slash, ? or # is not a scheme.)
        Some((scheme, _)) if !scheme.contains(['/', '?', '#']) => {
            matches!(scheme, "http" | "https" | "mailto")
        }
        _ => true,
    }
}

fn anchor(text: &str, used: &mut HashMap<String, usize>) -> String {
    let mut slug = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_matches('-').to_owned();
    let slug = if slug.is_empty() {
        "section".to_owned()
    } else {
        slug
    };
    let n = used.entry(slug.clone()).or_insert(0);
    *n += 1;
    if *n == 1 { slug } else { format!("{slug}-{n}") }
}

/// Markdown to HTML: raw HTML is shown as text unless allowed, links and images with other
/// schemes than http, https and mailto lose their target, and headings get ids.
pub fn render(markdown: &str, allow_html: bool) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let events: Vec<Event> = Parser::new_ext(markdown, options).collect();
    // Heading texts, for their ids.
    let mut used = HashMap::new();
    let mut ids = Vec::new();
    let mut current: Option<String> = None;
    for e in &events {
        match e {
            Event::Start(Tag::Heading { .. }) => current = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(c) = current.as_mut() {
                    c.push_str(t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                ids.push(anchor(&current.take().unwrap_or_default(), &mut used))
            }
            _ => {}
        }
    }
    let mut ids = ids.into_iter();
    let mut dropped_links = 0usize;
    let events = events.into_iter().filter_map(|e| match e {
        Event::Html(h) | Event::InlineHtml(h) if !allow_html => Some(Event::Text(h)),
        Event::Start(Tag::Heading {
            level,
            id,
            classes,
            attrs,
        }) => Some(Event::Start(Tag::Heading {
            level,
            id: id.or_else(|| ids.next().map(CowStr::from)),
            classes,
            attrs,
        })),
        Event::Start(Tag::Link { dest_url, .. }) if !safe_url(&dest_url) => {
            dropped_links += 1;
            None
        }
        Event::End(TagEnd::Link) if dropped_links > 0 => {
            dropped_links -= 1;
            None
        }
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) if !safe_url(&dest_url) => Some(Event::Start(Tag::Image {
            link_type,
            dest_url: CowStr::from(""),
            title,
            id,
        })),
        other => Some(other),
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_errors_name_the_line() {
        let e = parse_page(
            "x",
            "content/x.md",
            "---\ntitle: X\naccess: vip\n---\nbody",
            false,
        )
        .unwrap_err();
        assert_eq!((e.line, e.file.as_str()), (3, "content/x.md"));
        assert!(
            e.to_string().starts_with("content/x.md:3: access \"vip\""),
            "{e}"
        );
        let e = parse_page("x", "f.md", "title: X\n", false).unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse_page("x", "f.md", "---\ntitle: X\ncolour: red\n---\n", false).unwrap_err();
        assert_eq!(e.line, 3);
        let e = parse_page("x", "f.md", "---\ntitle: X\n", false).unwrap_err();
        assert!(e.message.contains("not closed"));
    }

    #[test]
    fn defaults_and_values() {
        let p = parse_page(
            "a/b",
            "f.md",
            "---\ntitle: \"Hello\"\norder: -3\nnav: false\n---\n# Hi\n",
            false,
        )
        .unwrap();
        assert_eq!(
            (p.title.as_str(), p.access, p.order, p.nav),
            ("Hello", Access::Members, -3, false)
        );
        assert!(p.html.contains(r#"<h1 id="hi">Hi</h1>"#), "{}", p.html);
    }

    #[test]
    fn raw_html_is_escaped_unless_allowed_and_bad_links_dropped() {
        let md = "<script>alert(1)</script>\n\nA [bad](javascript:alert(1)) and [good](https://example.org) and [rel](/pages/x) and [sneaky](JaVa\tScRiPt:alert(1)).\n\n![x](data:text/html,hi)";
        let html = render(md, false);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.to_lowercase().contains("javascript"), "{html}");
        assert!(html.contains("A bad and"), "{html}");
        assert!(html.contains(r#"<a href="https://example.org">good</a>"#));
        assert!(html.contains(r#"<a href="/pages/x">rel</a>"#));
        assert!(!html.contains("data:text"), "{html}");
        assert!(render("<b>ok</b>", true).contains("<b>ok</b>"));
    }

    #[test]
    fn headings_get_unique_anchors() {
        let html = render("# Meeting notes\n## Meeting notes\n## Café & co.", false);
        assert!(
            html.contains(r#"id="meeting-notes""#) && html.contains(r#"id="meeting-notes-2""#),
            "{html}"
        );
        assert!(html.contains(r#"id="café-co""#), "{html}");
    }

    #[test]
    fn slugs_are_plain_paths() {
        for ok in ["about", "club/rules", "notice-board", "a_b/c2"] {
            assert!(valid_slug(ok), "{ok}");
        }
        for bad in [
            "", "..", "../Cargo", "a/../b", ".hidden", "a//b", "A", "a.md", "a\\b", "%2e%2e", "-x",
        ] {
            assert!(!valid_slug(bad), "{bad}");
        }
    }
}
