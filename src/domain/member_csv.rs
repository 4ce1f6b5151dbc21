//! Member lists as CSV: the export, and the import with its row-by-row check.
//!
//! An export can be imported back: the import needs an `email` column, takes `display_name`,
//! `role` and `status` when present (in any order), and ignores other columns.

use std::collections::HashSet;

use crate::db::{Db, members::Member};
use crate::domain::members::{self, Imported, check_display_name};
use crate::domain::members::{Role, Status};
use crate::email::EmailAddress;

/// The export's header.
pub const HEADER: [&str; 6] = [
    "email",
    "display_name",
    "role",
    "status",
    "created_at",
    "last_login_at",
];

fn time(t: Option<i64>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// Whether a spreadsheet would read `cell` as a formula: it starts with `=`, `+`, `-`, `@`, a
/// tab or a carriage return (OWASP's list), possibly after apostrophes.
fn reads_as_formula(cell: &str) -> bool {
    cell.trim_start_matches('\'')
        .starts_with(['=', '+', '-', '@', '\t', '\r'])
}

/// A cell as the export writes it: one that a spreadsheet would run as a formula gets a leading
/// `'`, which spreadsheets show as text. A cell that starts with apostrophes before such a
/// character gets one more, so that [`restore`] can undo exactly this.
pub fn neutralize(cell: &str) -> std::borrow::Cow<'_, str> {
    if reads_as_formula(cell) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

/// Undoes [`neutralize`]: removes the one `'` it adds. Other cells are left as they are, so a
/// name such as `'Tis` in a file written by hand keeps its apostrophe.
pub fn restore(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if reads_as_formula(rest) => rest,
        _ => cell,
    }
}

/// The member list as CSV. No cell can run as a spreadsheet formula (see [`neutralize`]).
pub fn export(members: &[Member]) -> Result<String, csv::Error> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(HEADER)?;
    for m in members {
        let cells = [
            m.email.clone(),
            m.display_name.clone(),
            m.role.to_string(),
            m.status.to_string(),
            time(Some(m.created_at)),
            time(m.last_login_at),
        ];
        out.write_record(cells.iter().map(|c| neutralize(c).into_owned()))?;
    }
    let bytes = out.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// One row of an import, checked.
#[derive(Debug, Clone)]
pub struct ImportRow {
    /// The line it is on (1 is the header).
    pub line: u64,
    /// The address as written.
    pub raw_email: String,
    /// What is wrong with it, if anything.
    pub error: Option<String>,
    /// The normalized address.
    pub email: Option<EmailAddress>,
    /// The display name, when given.
    pub display_name: Option<String>,
    /// The role, when given.
    pub role: Option<String>,
    /// The status, when given.
    pub status: Option<String>,
}

/// A checked import: every row, and whether any is bad.
#[derive(Debug, Default)]
pub struct Import {
    /// The rows, in file order.
    pub rows: Vec<ImportRow>,
    /// A problem with the file as a whole (no header, no `email` column, not CSV).
    pub file_error: Option<String>,
}

impl Import {
    /// Whether anything is wrong; if so, nothing may be written.
    pub fn has_errors(&self) -> bool {
        self.file_error.is_some() || self.rows.iter().any(|r| r.error.is_some())
    }
}

/// Checks every row of `text` without writing anything.
pub fn check(text: &str) -> Import {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|c| c.to_lowercase()).collect(),
        Err(e) => {
            return Import {
                rows: vec![],
                file_error: Some(format!("not CSV: {e}")),
            };
        }
    };
    let col = |name: &str| header.iter().position(|c| c == name);
    let Some(email_col) = col("email") else {
        return Import {
            rows: vec![],
            file_error: Some("the first line must be a header with an email column".into()),
        };
    };
    let (name_col, role_col, status_col) = (col("display_name"), col("role"), col("status"));
    let mut seen = HashSet::new();
    let mut import = Import::default();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                import.rows.push(ImportRow {
                    line,
                    raw_email: String::new(),
                    error: Some(format!("not CSV: {e}")),
                    email: None,
                    display_name: None,
                    role: None,
                    status: None,
                });
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        // Every cell is read as the export wrote it: a formula guard it added is taken off.
        let field = |i: Option<usize>| {
            i.and_then(|i| record.get(i))
                .map(restore)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let raw_email = restore(record.get(email_col).unwrap_or_default()).to_owned();
        if record.iter().all(str::is_empty) {
            continue;
        }
        let mut row = ImportRow {
            line,
            raw_email: raw_email.clone(),
            error: None,
            email: None,
            display_name: field(name_col),
            role: field(role_col).map(|r| r.to_lowercase()),
            status: field(status_col).map(|s| s.to_lowercase()),
        };
        let mut problems = Vec::new();
        match EmailAddress::parse(&raw_email) {
            Ok(e) => {
                if !seen.insert(e.as_str().to_owned()) {
                    problems.push("the address appears twice in the file".to_owned());
                }
                row.email = Some(e);
            }
            Err(e) => problems.push(e.to_string()),
        }
        if let Some(role) = &row.role
            && Role::parse(role).is_none()
        {
            problems.push(format!("role {role:?} is not member or admin"));
        }
        if let Some(status) = &row.status
            && Status::parse(status).is_none()
        {
            problems.push(format!(
                "status {status:?} is not invited, pending, active or suspended"
            ));
        }
        if let Some(name) = &row.display_name
            && let Err(why) = check_display_name(name)
        {
            problems.push(why);
        }
        if !problems.is_empty() {
            row.error = Some(problems.join("; "));
        }
        import.rows.push(row);
    }
    import
}

pub use crate::domain::members::{Applied, ApplyError};

/// Writes a checked import in one transaction (see [`members::import`]); nothing when a row
/// has an error.
pub async fn apply(pool: &Db, actor: Option<&str>, import: &Import) -> Result<Applied, ApplyError> {
    if import.has_errors() {
        return Err(ApplyError::HasErrors);
    }
    let rows: Vec<Imported<'_>> = import
        .rows
        .iter()
        .filter_map(|row| {
            Some(Imported {
                email: row.email.as_ref()?,
                display_name: row.display_name.as_deref(),
                // Checked when the file was read: only known names are left.
                role: row.role.as_deref().and_then(Role::parse),
                status: row.status.as_deref().and_then(Status::parse),
            })
        })
        .collect();
    members::import(pool, actor, &rows).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_every_row_with_its_line() {
        let import = check(
            "Name,Email,Role,Extra\n\
             Alice,Alice@Example.COM,admin,x\n\
             Bob,not-an-address,member,\n\
             ,carol@example.com,boss,\n\
             Dup,alice@example.com,,\n",
        );
        assert!(import.file_error.is_none());
        assert_eq!(import.rows.len(), 4);
        assert_eq!(
            import.rows[0].email.as_ref().unwrap().as_str(),
            "alice@example.com"
        );
        assert!(import.rows[0].error.is_none());
        assert_eq!(import.rows[1].line, 3);
        assert!(
            import.rows[1]
                .error
                .as_ref()
                .unwrap()
                .contains("does not look like")
        );
        assert!(import.rows[2].error.as_ref().unwrap().contains("boss"));
        assert!(import.rows[3].error.as_ref().unwrap().contains("twice"));
        assert!(import.has_errors());
    }

    #[test]
    fn formulas_are_neutralized_and_the_import_undoes_exactly_that() {
        for (value, exported) in [
            ("=HYPERLINK(\"https://evil.example\",\"x\")", "'=HYPERLINK"),
            ("+1 555", "'+1"),
            ("-5", "'-5"),
            ("@SUM(A1)", "'@SUM"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("'=already", "''=already"),
            ("''-twice", "'''-twice"),
        ] {
            assert!(neutralize(value).starts_with(exported), "{value:?}");
            assert_eq!(restore(&neutralize(value)), value);
        }
        for plain in ["Alice", "'Tis", "O'Brien", "a=b", "", "'", "1+1"] {
            assert_eq!(neutralize(plain), plain);
            assert_eq!(restore(plain), plain, "{plain:?}");
        }
    }

    #[test]
    fn needs_an_email_column() {
        assert!(check("name,role\nx,member\n").file_error.is_some());
        assert!(check("").file_error.is_some());
    }

    #[test]
    fn an_export_reads_back() {
        let m = Member {
            id: "1".into(),
            email: "a@example.com".into(),
            display_name: "A, \"quoted\"".into(),
            role: Role::Admin,
            status: Status::Active,
            created_at: 1_700_000_000,
            last_login_at: None,
        };
        let text = export(&[m]).unwrap();
        assert!(text.starts_with("email,display_name,role,status,created_at,last_login_at\n"));
        let import = check(&text);
        assert!(!import.has_errors(), "{import:?}");
        assert_eq!(
            import.rows[0].display_name.as_deref(),
            Some("A, \"quoted\"")
        );
        assert_eq!(import.rows[0].role.as_deref(), Some("admin"));
    }
}
