//! The command line: `clubhouse` (or `clubhouse serve`) runs the site; the other commands
//! manage the database named by `DATABASE_URL`, like the server does.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::db::{self, Db};
use crate::domain::audit::{self, AddressHasher};
use crate::domain::{member_csv, members};
use crate::email::EmailAddress;
use crate::web::sessions;

/// A members-only website that signs people in with Portier.
#[derive(Debug, Parser)]
#[command(name = "clubhouse", version, about)]
pub struct Cli {
    /// What to do; without one, the site is served.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the site (the default).
    Serve,
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Manage admins.
    Admin {
        /// What to do.
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Manage the member list.
    Members {
        /// What to do.
        #[command(subcommand)]
        command: MembersCommand,
    },
    /// Copy the whole site (members, sessions, audit log, settings and the session key) from
    /// DATABASE_URL into another, empty database, e.g. from SQLite to Postgres. Stop the site
    /// first; afterwards, point DATABASE_URL at the new database.
    CopyTo {
        /// The database to copy into (its migrations are applied first); it must be empty.
        target_url: String,
    },
    /// Write a consistent copy of the database to FILE, safe while the site runs (SQLite,
    /// with VACUUM INTO). On PostgreSQL, prints the pg_dump command to use instead. Applies
    /// no migrations: a backup taken before an upgrade holds the data as it was.
    Backup {
        /// The new file (it must not exist yet).
        file: PathBuf,
    },
}

/// `clubhouse admin …`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Make EMAIL an active admin, adding the member if needed.
    Add {
        /// The address (normalized as the broker does).
        email: String,
    },
}

/// `clubhouse members …`
#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Print the member list.
    List,
    /// Print the member list as CSV (email,display_name,role,status,created_at,last_login_at).
    Export,
    /// Create or update members from a CSV file with a header row (`email` required;
    /// `display_name`, `role`, `status` optional; other columns ignored). Every row is checked
    /// first; if any is bad, each bad row is printed with its line number and nothing is
    /// written.
    Import {
        /// The CSV file.
        file: PathBuf,
    },
}

async fn open(config: &Config, migrate: bool) -> anyhow::Result<Db> {
    let pool = db::connect(&config.database_url)
        .await
        .with_context(|| format!("could not open {}", config.database_url_redacted()))?;
    if migrate {
        db::migrate(&pool)
            .await
            .context("could not apply the database migrations")?;
    }
    Ok(pool)
}

/// The audit log's address hasher, as the server makes it (the log's old hashes converted).
async fn hasher(config: &Config, pool: &Db) -> anyhow::Result<AddressHasher> {
    let key = sessions::cookie_key(config.session_key.as_ref(), pool)
        .await
        .context("could not load the session key")?;
    audit::prepare_hasher(pool, &key)
        .await
        .context("could not convert the audit log's address hashes")
}

/// Runs a command other than `serve`, writing its output to `out`.
pub async fn run(command: Command, config: &Config, out: &mut impl Write) -> anyhow::Result<()> {
    if let Command::Backup { file } = &command {
        return backup(config, file, out).await;
    }
    let pool = open(config, true).await?;
    let result = match command {
        Command::Serve => bail!("serve is not run here"),
        Command::Migrate => {
            writeln!(
                out,
                "migrations applied to {}",
                config.database_url_redacted()
            )?;
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::Add { email },
        } => match hasher(config, &pool).await {
            Ok(hasher) => add_admin(&pool, &hasher, &email, out).await,
            Err(e) => Err(e),
        },
        Command::Members { command } => match command {
            MembersCommand::List => list(&pool, out).await,
            MembersCommand::Export => {
                let members = db::members::all(&pool).await?;
                out.write_all(member_csv::export(&members)?.as_bytes())?;
                Ok(())
            }
            MembersCommand::Import { file } => import(&pool, &file, out).await,
        },
        Command::CopyTo { target_url } => copy_to(&pool, &target_url, out).await,
        Command::Backup { .. } => bail!("backup is run above"),
    };
    pool.close().await;
    result
}

async fn backup(config: &Config, file: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let url = secrecy::ExposeSecret::expose_secret(&config.database_url);
    if db::Engine::of_url(url) == db::Engine::Postgres {
        bail!(
            "DATABASE_URL is a PostgreSQL database, which pg_dump backs up consistently while \
             the site runs:\n  pg_dump --format=custom --file={} '{}'\nRestore it with \
             pg_restore --clean --if-exists --dbname=… (see docs/operating.md, \"Backups\").",
            file.display(),
            config.database_url_redacted()
        );
    }
    if file.exists() {
        bail!(
            "{} exists already; a backup never overwrites a file, so choose a new name",
            file.display()
        );
    }
    let target = file
        .to_str()
        .context("the backup file's name must be valid UTF-8")?;
    let pool = open(config, false).await?;
    let written = db::backup_sqlite(&pool, target).await;
    pool.close().await;
    written.with_context(|| format!("could not write the backup to {}", file.display()))?;
    // Read the copy back: it must be a sound database holding the site.
    let members = db::check_sqlite_copy(target)
        .await
        .with_context(|| format!("the backup {} is not sound", file.display()))?;
    let bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    writeln!(
        out,
        "backup written to {} ({members} members, {bytes} bytes); to restore it, stop the site \
         and put it in place of the database file (see the README, \"Backups\")",
        file.display()
    )?;
    Ok(())
}

async fn copy_to(source: &Db, target_url: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let shown = crate::config::redact_url(target_url);
    let target = db::connect(&secrecy::SecretString::from(target_url.to_owned()))
        .await
        .with_context(|| format!("could not open {shown}"))?;
    db::migrate(&target)
        .await
        .with_context(|| format!("could not apply the migrations to {shown}"))?;
    let copied = db::copy::copy_all(source, &target).await;
    let result = match copied {
        Ok(copied) => {
            // Read back: the target holds what the source holds.
            let there = db::copy::counts(&target).await?;
            if there != copied {
                bail!("the copy in {shown} does not match: {there:?} against {copied:?}");
            }
            for (table, n) in &copied {
                writeln!(out, "{table}: {n} rows")?;
            }
            writeln!(
                out,
                "copied into {shown}; point DATABASE_URL there before starting the site"
            )?;
            Ok(())
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("nothing was copied to {shown}"))),
    };
    target.close().await;
    result
}

async fn add_admin(
    pool: &Db,
    hasher: &AddressHasher,
    raw: &str,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let email =
        EmailAddress::parse(raw).map_err(|e| anyhow::anyhow!("{raw} cannot be used: {e}"))?;
    members::add_admin(pool, hasher, &email).await?;
    writeln!(out, "{email} is now an active admin")?;
    Ok(())
}

async fn list(pool: &Db, out: &mut impl Write) -> anyhow::Result<()> {
    let members = db::members::all(pool).await?;
    writeln!(
        out,
        "{:<40} {:<24} {:<7} {:<10} last sign-in",
        "email", "display name", "role", "status"
    )?;
    for m in &members {
        let last = m
            .last_login_at
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| "never".into());
        writeln!(
            out,
            "{:<40} {:<24} {:<7} {:<10} {last}",
            m.email, m.display_name, m.role, m.status
        )?;
    }
    writeln!(out, "{} members", members.len())?;
    Ok(())
}

async fn import(pool: &Db, file: &PathBuf, out: &mut impl Write) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("could not read {}", file.display()))?;
    let checked = member_csv::check(&text);
    if let Some(problem) = &checked.file_error {
        bail!("{}: {problem}; nothing was written", file.display());
    }
    let bad: Vec<String> = checked
        .rows
        .iter()
        .filter_map(|r| {
            r.error
                .as_ref()
                .map(|e| format!("line {}: {}: {e}", r.line, r.raw_email))
        })
        .collect();
    if !bad.is_empty() {
        bail!(
            "{} bad rows; nothing was written:\n{}",
            bad.len(),
            bad.join("\n")
        );
    }
    let applied = member_csv::apply(pool, None, &checked).await?;
    writeln!(
        out,
        "imported {}: {} created, {} updated",
        file.display(),
        applied.created,
        applied.updated
    )?;
    Ok(())
}
