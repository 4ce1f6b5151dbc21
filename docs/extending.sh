#!/bin/sh
# The steps of docs/extending.md, as a script: adds a notices page for members, its table with
# its migration and SQL module, and the NOTICES_SHOWN setting. CI runs it on a freshly
# generated copy and then that copy's tests, so the guide cannot drift from the code.
#
#   sh docs/extending.sh        (in the project's root; then cargo test)
#
# POSIX sh and tools only. Each step is one of the guide's.
set -eu
[ -f Cargo.toml ] && [ -d src/web ] || { echo "extending.sh: run me in the project's root" >&2; exit 2; }
[ ! -e src/db/notices.rs ] || { echo "extending.sh: the notices example is already here" >&2; exit 2; }

# Writes stdin after the first line of FILE that equals LINE exactly; fails if none does.
insert_after() {
  file="$1" line="$2" tmp="$1.extending-tmp"
  text="$(cat)"
  TEXT="$text" LINE="$line" awk '
    !done && $0 == ENVIRON["LINE"] { print; print ENVIRON["TEXT"]; done = 1; next }
    { print }
    END { if (!done) exit 1 }
  ' "$file" > "$tmp" || { rm -f "$tmp"; echo "extending.sh: no line '$line' in $file" >&2; exit 1; }
  cat "$tmp" > "$file"
  rm -f "$tmp"
}

# Writes stdin before the first line of FILE that equals LINE exactly; fails if none does.
insert_before() {
  file="$1" line="$2" tmp="$1.extending-tmp"
  text="$(cat)"
  TEXT="$text" LINE="$line" awk '
    !done && $0 == ENVIRON["LINE"] { print ENVIRON["TEXT"]; print; done = 1; next }
    { print }
    END { if (!done) exit 1 }
  ' "$file" > "$tmp" || { rm -f "$tmp"; echo "extending.sh: no line '$line' in $file" >&2; exit 1; }
  cat "$tmp" > "$file"
  rm -f "$tmp"
}

# Step 1, the table: a migration, named as `sqlx migrate add notices` names it.
cat > "migrations/$(date -u +%Y%m%d%H%M%S)_notices.sql" <<'EOF'
-- Notices that admins post for the members.
CREATE TABLE notices (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    posted_by TEXT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    posted_at BIGINT NOT NULL
);
CREATE INDEX notices_by_time ON notices (posted_at);
EOF

# Step 1, its SQL module.
cat > src/db/notices.rs <<'EOF'
//! The `notices` table: what admins announce to the members.

use sqlx::{Any, Executor, FromRow};

/// A notice, as stored.
#[derive(Debug, Clone, FromRow)]
pub struct Notice {
    /// A uuid v7, so that ids sort by time.
    pub id: String,
    /// What it says, as plain text.
    pub body: String,
    /// The admin who posted it.
    pub posted_by: String,
    /// When (unix seconds).
    pub posted_at: i64,
}

/// Stores a new notice.
pub async fn insert<'c>(
    db: impl Executor<'c, Database = Any>,
    notice: &Notice,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO notices (id, body, posted_by, posted_at) VALUES ($1, $2, $3, $4)")
        .bind(&notice.id)
        .bind(&notice.body)
        .bind(&notice.posted_by)
        .bind(notice.posted_at)
        .execute(db)
        .await?;
    Ok(())
}

/// The latest `limit` notices, newest first.
pub async fn latest<'c>(
    db: impl Executor<'c, Database = Any>,
    limit: i64,
) -> Result<Vec<Notice>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, body, posted_by, posted_at FROM notices \
         ORDER BY posted_at DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}
EOF
insert_after src/db/mod.rs 'pub mod members;' <<'EOF'
pub mod notices;
EOF
# ...and the table in the list that `copy-to` copies (a test fails until it is there).
awk '
  /^const TABLES/ { in_list = 1 }
  in_list && /^];$/ {
    print "    ("
    print "        \"notices\","
    print "        &["
    print "            (\"id\", Kind::Text),"
    print "            (\"body\", Kind::Text),"
    print "            (\"posted_by\", Kind::Text),"
    print "            (\"posted_at\", Kind::Integer),"
    print "        ],"
    print "    ),"
    in_list = 0
  }
  { print }
' src/db/copy.rs > src/db/copy.rs.extending-tmp
cat src/db/copy.rs.extending-tmp > src/db/copy.rs
rm -f src/db/copy.rs.extending-tmp

# Step 2, the domain: the rule (what a notice may say) and the write.
cat > src/domain/notices.rs <<'EOF'
//! Notices: short announcements that admins post and every member reads.

use crate::db::notices::Notice;
use crate::db::{self, Db};

/// The longest notice, in characters.
pub const MAX_LENGTH: usize = 500;

/// Why a notice was not posted.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// Empty, or too long.
    #[error("a notice says something, in at most {MAX_LENGTH} characters")]
    Invalid,
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Posts a notice by the admin `admin_id`.
pub async fn post(db: &Db, admin_id: &str, body: &str) -> Result<(), PostError> {
    let body = body.trim();
    if body.is_empty() || body.chars().count() > MAX_LENGTH {
        return Err(PostError::Invalid);
    }
    let notice = Notice {
        id: uuid::Uuid::now_v7().to_string(),
        body: body.to_owned(),
        posted_by: admin_id.to_owned(),
        posted_at: db::now(),
    };
    db::notices::insert(db, &notice).await?;
    Ok(())
}

/// The `shown` latest notices, newest first.
pub async fn latest(db: &Db, shown: u32) -> Result<Vec<Notice>, sqlx::Error> {
    db::notices::latest(db, i64::from(shown)).await
}
EOF
insert_after src/domain/mod.rs 'pub mod members;' <<'EOF'
pub mod notices;
EOF

# Step 3, the setting: a field, its parsing with a clear error, and a line in .env.example.
insert_after src/config.rs '    pub contact_email: Option<EmailAddress>,' <<'EOF'
    /// How many notices `/notices` shows (`NOTICES_SHOWN`, 1 to 100).
    pub notices_shown: u32,
EOF
insert_before src/config.rs '        Ok(Config {' <<'EOF'
        let notices_shown = match var("NOTICES_SHOWN") {
            None => 20,
            Some(raw) => raw
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| invalid("NOTICES_SHOWN", "expected a whole number from 1 to 100"))?,
        };

EOF
insert_after src/config.rs '        Ok(Config {' <<'EOF'
            notices_shown,
EOF
cat >> .env.example <<'EOF'

# How many notices the notices page shows, newest first (1 to 100).
NOTICES_SHOWN=20
EOF

# Step 4, the page: its template, its struct, its handlers and its routes.
cat > templates/notices.html <<'EOF'
{% extends "base.html" %}
{% block title %}Notices{% endblock %}
{% block content %}
<h1>Notices</h1>
{% if notices.is_empty() %}
<p>No notices yet.</p>
{% else %}
<ul class="notices">
{% for notice in notices %}
  <li>{{ notice.body }}</li>
{% endfor %}
</ul>
{% endif %}
{% if site.is_admin %}
<h2>Post a notice</h2>
<form method="post" action="/notices">
  <input type="hidden" name="csrf_token" value="{{ site.csrf_token }}">
  <label for="body">Notice</label>
  <textarea id="body" name="body" required maxlength="500"></textarea>
  <button type="submit">Post</button>
</form>
{% endif %}
{% endblock %}
EOF
cat >> src/web/templates.rs <<'EOF'

/// `GET /notices`: what the admins announce, and for admins the form to post.
#[derive(Template)]
#[template(path = "notices.html")]
pub struct NoticesPage {
    /// The frame.
    pub site: Site,
    /// The latest notices, newest first.
    pub notices: Vec<crate::db::notices::Notice>,
}
EOF
cat > src/web/routes/notices.rs <<'EOF'
//! `/notices`: every member reads the notices; admins post them.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::{Admin, SignedIn, html, see_other};
use crate::config::Config;
use crate::db::Db;
use crate::domain::notices::{self, PostError};
use crate::web::error::AppError;
use crate::web::extract::CsrfForm;
use crate::web::templates::NoticesPage;

/// `GET /notices`: the latest notices, as many as `NOTICES_SHOWN`.
pub async fn page(
    me: SignedIn,
    pool: web::Data<Db>,
    config: web::Data<Config>,
) -> Result<HttpResponse, AppError> {
    let notices = notices::latest(&pool, config.notices_shown).await?;
    html(
        StatusCode::OK,
        &NoticesPage {
            site: me.frame(),
            notices,
        },
    )
}

/// Form of `POST /notices`.
#[derive(Deserialize)]
pub struct NoticeForm {
    body: String,
    csrf_token: Option<String>,
}

/// `POST /notices`: an admin posts a notice, then sees the list.
pub async fn post(
    admin: Admin,
    form: CsrfForm<NoticeForm>,
    pool: web::Data<Db>,
) -> Result<HttpResponse, AppError> {
    match notices::post(&pool, &admin.0.member.id, &form.body).await {
        Ok(()) => Ok(see_other("/notices")),
        Err(e @ PostError::Invalid) => Err(AppError::BadRequest(format!(
            "The notice was not posted: {e}."
        ))),
        Err(PostError::Database(e)) => Err(e.into()),
    }
}

crate::csrf_protected!(NoticeForm);
EOF
insert_after src/web/routes/mod.rs 'pub mod members;' <<'EOF'
pub mod notices;
EOF
insert_after src/web/routes/mod.rs '        .route("/members", web::get().to(members::members_page))' <<'EOF'
        .route("/notices", web::get().to(notices::page))
        .route("/notices", web::post().to(notices::post))
EOF

# Step 5, the test: what a member and an admin notice, against the real server and database.
cat > tests/api/notices.rs <<'EOF'
//! The notices page of docs/extending.md: admins post, members read the newest first, as
//! many as NOTICES_SHOWN; nobody else posts, and visitors are sent to sign in.

use actix_web::http::StatusCode;

use crate::helpers::spawn_app_with;

#[actix_web::test]
async fn admins_post_notices_that_members_read_newest_first() {
    let app = spawn_app_with(&[
        ("SIGNUP_MODE", "open"),
        ("ADMIN_EMAILS", "boss@example.com"),
        ("NOTICES_SHOWN", "2"),
    ])
    .await;
    let boss = app.signed_in_browser("boss@example.com").await;
    let ann = app.signed_in_browser("ann@example.com").await;

    let empty = ann.get("/notices").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.body.contains("No notices yet"), "{}", empty.body);
    assert!(!empty.body.contains("Post a notice"), "{}", empty.body);

    for body in ["Notice one", "Notice two", "Notice three"] {
        boss.submit("/notices", &[("body", body)])
            .await
            .assert_redirect_to("/notices");
    }
    let page = ann.get("/notices").await;
    let three = page.body.find("Notice three").expect("the newest notice");
    let two = page.body.find("Notice two").expect("the one before");
    assert!(three < two, "newest first: {}", page.body);
    assert!(!page.body.contains("Notice one"), "only NOTICES_SHOWN: {}", page.body);

    let by_a_member = ann.submit("/notices", &[("body", "Mine")]).await;
    assert_eq!(by_a_member.status, StatusCode::FORBIDDEN);
    let blank = boss.submit("/notices", &[("body", "   ")]).await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST);
    assert!(blank.body.contains("The notice was not posted"), "{}", blank.body);
    let visitor = app.browser().get("/notices").await;
    assert_eq!(visitor.status, StatusCode::SEE_OTHER);
    assert_eq!(app.count("SELECT COUNT(*) FROM notices").await, 3);
}
EOF
cat >> tests/api/main.rs <<'EOF'
mod notices;
EOF

# Last, the layout cargo fmt gives (the copy's CI checks it).
cargo fmt
echo "extending.sh: the notices page, its table and NOTICES_SHOWN are in; run cargo test"
