//! Membership policy: who may enter once the broker has vouched for an address, and every
//! change to the member list. Each change is written together with its audit entry in one
//! transaction.

use crate::config::{Config, SignupMode};
pub use crate::db::members::{Role, Status};
use crate::db::sessions::NewSession;
use crate::db::{self, Db, members::Member, members::MemberChange};
use crate::domain::audit::{Action, AddressHasher, Event};
use crate::domain::mail::{Mailer, kind as mail_kind};
use crate::email::EmailAddress;

/// The outcome of a verified sign-in.
#[derive(Debug)]
pub enum Admission {
    /// Welcome in; `session_stored` when the session given to the sign-in was stored with it.
    Admitted {
        /// The member as they are now.
        member: Member,
        /// Whether the session was stored in the same round trip.
        session_stored: bool,
    },
    /// Not on the member list, and this site is invite-only.
    NotInvited,
    /// Waiting for an admin's approval (asked just now, or earlier).
    Pending,
    /// Suspended by an admin.
    Suspended,
}

fn new_member(email: &EmailAddress, role: Role, status: Status, now: i64) -> Member {
    Member {
        id: uuid::Uuid::new_v4().to_string(),
        email: email.as_str().to_owned(),
        display_name: default_display_name(email),
        role,
        status,
        created_at: now,
        last_login_at: None,
    }
}

/// A member signed out (their session is ended by the web layer): the audit log says so.
pub async fn signed_out(db: &Db, id: &str) -> Result<(), sqlx::Error> {
    Event::new(Action::SignOut).by(id).on(id).record(db).await
}

/// How many requests to join wait for an admin's approval.
pub async fn waiting_for_approval(db: &Db) -> Result<i64, sqlx::Error> {
    db::members::count_pending(db).await
}

/// Decides on `email`, which the broker has just verified, and records the decision with it
/// (a refusal is recorded too), in one round trip on the common paths: a member signing in
/// again, a first sign-in, a request to join with its digest. `session`, when given, is
/// stored in the same round trip if the member is admitted. Nobody learns whether an address
/// is a member before the broker has verified it.
pub async fn admit(
    db: &Db,
    config: &Config,
    mailer: &Mailer,
    hasher: &AddressHasher,
    email: &EmailAddress,
    session: Option<&NewSession>,
) -> Result<Admission, sqlx::Error> {
    match decide(db, config, mailer, hasher, email, None, session).await? {
        Some((admission, _)) => Ok(admission),
        // Without an attempt to take, the sign-in always records something.
        None => Err(sqlx::Error::RowNotFound),
    }
}

/// [`admit`], and the login attempt `take` consumed in the same round trip: the decision and
/// the local path the attempt asked for, or `None` when no such attempt was there to take
/// (then nothing was written; the caller finds out why).
pub async fn admit_taking(
    db: &Db,
    config: &Config,
    mailer: &Mailer,
    hasher: &AddressHasher,
    email: &EmailAddress,
    take: db::members::Take<'_>,
    session: Option<&NewSession>,
) -> Result<Option<(Admission, String)>, sqlx::Error> {
    Ok(
        decide(db, config, mailer, hasher, email, Some(take), session)
            .await?
            .and_then(|(admission, next)| Some((admission, next?))),
    )
}

async fn decide(
    db: &Db,
    config: &Config,
    mailer: &Mailer,
    hasher: &AddressHasher,
    email: &EmailAddress,
    take: Option<db::members::Take<'_>>,
    session: Option<&NewSession>,
) -> Result<Option<(Admission, Option<String>)>, sqlx::Error> {
    let now = db::now();
    let is_admin = config.admin_emails.contains(email);
    let allowed_domain = config.allowed_domains.iter().any(|d| d == email.domain());
    // Who is added when nobody has the address yet.
    let fresh_status = match config.signup_mode {
        _ if is_admin || allowed_domain => Some(Status::Active),
        SignupMode::Open => Some(Status::Active),
        SignupMode::Approval => Some(Status::Pending),
        SignupMode::Invite => None,
    };
    let fresh = fresh_status.map(|status| {
        let role = if is_admin { Role::Admin } else { Role::Member };
        let mut fresh = new_member(email, role, status, now);
        if status == Status::Active {
            fresh.last_login_at = Some(now);
        }
        fresh
    });
    let hash = hasher.hash(email.as_str());
    // Time-ordered ids (uuid v7): a request to join comes before its refusal.
    let request_entry_id = uuid::Uuid::now_v7().to_string();
    let entry_id = uuid::Uuid::now_v7().to_string();
    let write = db::members::SignInWrite {
        email: email.as_str(),
        now,
        make_admin: is_admin,
        fresh: fresh.as_ref(),
        entry_id: &entry_id,
        request_entry_id: &request_entry_id,
        email_hash: hash.as_str(),
        digest: mailer.digest_window(now),
        take,
        session,
    };
    let Some(mut signed) = db::members::sign_in(db, &write).await? else {
        return Ok(None);
    };
    if signed.member.is_none() && fresh.is_some() {
        // Another first sign-in of this address added it a moment ago: sign in to its row
        // (the attempt, if any, is already taken).
        let again = db::members::SignInWrite {
            take: None,
            ..write
        };
        if let Some(s) = db::members::sign_in(db, &again).await? {
            signed.member = s.member;
            signed.session_stored = s.session_stored;
        }
    }
    let next = signed.next_path;
    let Some(member) = signed.member else {
        Event::new(Action::SignInRefused)
            .address(hash)
            .detail("not_invited")
            .record(db)
            .await?;
        return Ok(Some((Admission::NotInvited, next)));
    };
    let admission = match member.status {
        Status::Active => Admission::Admitted {
            member,
            session_stored: signed.session_stored,
        },
        Status::Suspended => Admission::Suspended,
        // `invited` became `active` in the same statement.
        Status::Pending | Status::Invited => Admission::Pending,
    };
    Ok(Some((admission, next)))
}

/// The local part of the address, until the member chooses a name (without any character a
/// display name may not hold).
pub fn default_display_name(email: &EmailAddress) -> String {
    email
        .as_str()
        .rsplit_once('@')
        .map(|(local, _)| {
            local
                .chars()
                .filter(|c| !is_forbidden_in_name(*c))
                .collect()
        })
        .unwrap_or_default()
}

/// Characters a display name may not hold: control characters (line breaks, tabs, escapes)
/// and the bidirectional embeddings, overrides and isolates, which make a name read
/// differently from what it is (`U+202E` shows "evil.exe" reversed, for instance).
pub fn is_forbidden_in_name(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Checks a display name (already trimmed): 1 to [`MAX_NAME`] characters, none of them
/// [forbidden](is_forbidden_in_name). The error says what is wrong.
pub fn check_display_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(format!(
            "A display name has 1 to {MAX_NAME} characters; this one has {}.",
            name.chars().count()
        ));
    }
    if let Some(c) = name.chars().find(|c| is_forbidden_in_name(*c)) {
        return Err(format!(
            "A display name cannot hold line breaks, tabs or other control characters, nor \
             characters that change the direction of the text (this one holds U+{:04X}).",
            u32::from(c)
        ));
    }
    Ok(())
}

/// Why a change to the member list was not made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// No such member.
    #[error("no such member")]
    NotFound,
    /// The change would leave the site without an active admin.
    #[error("the last active admin cannot be demoted, suspended or removed")]
    LastAdmin,
    /// The member is not (or no longer) in the state the change applies to: approving a member
    /// another admin has just approved, rejecting one they have just approved. The text names
    /// the state they are in now.
    #[error(
        "this member is {0} now: their state changed after the page you acted on was shown \
         (perhaps another admin acted on them meanwhile), so the change you chose no longer \
         applies"
    )]
    NotApplicable(String),
    /// The member is listed in `ADMIN_EMAILS`, so demoting or removing them would be undone
    /// at their next sign-in.
    #[error(
        "{0} is listed in ADMIN_EMAILS, so they would be an admin again at their next sign-in. \
         Take the address out of ADMIN_EMAILS and restart the site first (or suspend them, \
         which takes effect at once)"
    )]
    ListedAdmin(String),
    /// The address belongs to another member.
    #[error("that address already belongs to another member")]
    EmailTaken,
    /// The value is not acceptable; the text says why.
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// Explains a refused guarded update: not there, last admin, or not applicable.
async fn why_not(pool: &Db, id: &str) -> ChangeError {
    match db::members::find_by_id(pool, id).await {
        Err(e) => ChangeError::Database(e),
        Ok(None) => ChangeError::NotFound,
        Ok(Some(m)) if m.role == Role::Admin && m.status == Status::Active => {
            ChangeError::LastAdmin
        }
        Ok(Some(m)) => ChangeError::NotApplicable(m.status.to_string()),
    }
}

/// Whether `email` is listed in `ADMIN_EMAILS`: such a member is an admin whenever they sign
/// in, whatever the admin page did.
pub fn is_listed_admin(admin_emails: &[EmailAddress], email: &str) -> bool {
    admin_emails.iter().any(|e| e.as_str() == email)
}

/// Refuses to demote or remove a member listed in `ADMIN_EMAILS` (the next sign-in would undo
/// it), unless they are the last active admin: then the last-admin rule refuses, with its own
/// reason.
pub async fn refuse_listed_admin(
    pool: &Db,
    admin_emails: &[EmailAddress],
    id: &str,
) -> Result<(), ChangeError> {
    let Some(member) = db::members::find_by_id(pool, id).await? else {
        return Ok(());
    };
    if !is_listed_admin(admin_emails, &member.email) {
        return Ok(());
    }
    let last = member.role == Role::Admin
        && member.status == Status::Active
        && db::members::active_admins(pool).await? <= 1;
    if last {
        return Ok(());
    }
    Err(ChangeError::ListedAdmin(member.email))
}

/// An admin's change of status: approve (`pending` to `active`), suspend (`active` to
/// `suspended`, ending the member's sessions at once) or reactivate.
pub async fn change_status(
    pool: &Db,
    mailer: &Mailer,
    actor: &str,
    id: &str,
    action: Action,
) -> Result<(), ChangeError> {
    let (from, to) = match action {
        Action::MemberApproved => (Status::Pending, Status::Active),
        Action::MemberSuspended => (Status::Active, Status::Suspended),
        Action::MemberReactivated => (Status::Suspended, Status::Active),
        _ => return Err(ChangeError::Invalid("not a status change".into())),
    };
    let mut change = MemberChange::begin(pool).await?;
    if !db::members::set_status(&mut change, id, from, to).await? {
        change.rollback().await?;
        return Err(why_not(pool, id).await);
    }
    if to == Status::Suspended {
        db::sessions::delete_for_member(change.conn(), id, None).await?;
    }
    if action == Action::MemberApproved && mailer.enabled() {
        let member = db::members::find_by_id(change.conn(), id)
            .await?
            .ok_or(ChangeError::NotFound)?;
        let mail = mailer.approved(&member.email).map_err(|e| {
            ChangeError::Invalid(format!("the approval mail could not be written: {e}"))
        })?;
        mailer
            .queue(change.conn(), mail_kind::APPROVED, &member.email, &mail)
            .await?;
    }
    Event::new(action)
        .by(actor)
        .on(id)
        .record(change.conn())
        .await?;
    change.commit().await?;
    mailer.wake();
    Ok(())
}

/// An admin rejects a pending request: the row is deleted, only if it is still pending (another
/// admin may have approved it since the page was shown).
pub async fn reject(pool: &Db, actor: &str, id: &str) -> Result<(), ChangeError> {
    let mut change = MemberChange::begin(pool).await?;
    if !db::members::delete_if_status(&mut change, id, Status::Pending).await? {
        change.rollback().await?;
        return Err(why_not(pool, id).await);
    }
    Event::new(Action::MemberRejected)
        .by(actor)
        .on(id)
        .record(change.conn())
        .await?;
    change.commit().await?;
    Ok(())
}

/// An admin changes a member's role (`member` or `admin`).
pub async fn change_role(pool: &Db, actor: &str, id: &str, role: Role) -> Result<(), ChangeError> {
    let mut change = MemberChange::begin(pool).await?;
    if !db::members::set_role(&mut change, id, role).await? {
        change.rollback().await?;
        return match db::members::find_by_id(pool, id).await? {
            None => Err(ChangeError::NotFound),
            Some(m) if m.role == role => Ok(()),
            Some(_) => Err(ChangeError::LastAdmin),
        };
    }
    Event::new(Action::RoleChanged)
        .by(actor)
        .on(id)
        .detail(role.as_str())
        .record(change.conn())
        .await?;
    change.commit().await?;
    Ok(())
}

/// Removes a member and their sessions; `action` says whether an admin removed them or they
/// deleted their own account. Only a hash of the address stays, in the audit log.
pub async fn remove(
    pool: &Db,
    hasher: &AddressHasher,
    actor: &str,
    id: &str,
    action: Action,
) -> Result<(), ChangeError> {
    let mut change = MemberChange::begin(pool).await?;
    let Some(member) = db::members::find_by_id(change.conn(), id).await? else {
        change.rollback().await?;
        return Err(ChangeError::NotFound);
    };
    if !db::members::delete(&mut change, id).await? {
        change.rollback().await?;
        return Err(why_not(pool, id).await);
    }
    // An invitation not yet sent would invite someone who is no longer on the list.
    db::outbox::drop_queued_to(change.conn(), &member.email).await?;
    Event::new(action)
        .by(actor)
        .on(id)
        .address(hasher.hash(&member.email))
        .record(change.conn())
        .await?;
    change.commit().await?;
    Ok(())
}

/// Makes an address an active admin, creating the member if needed (the command line's
/// `admin add`). An existing member keeps their name. Returns the member's id.
pub async fn add_admin(
    pool: &Db,
    hasher: &AddressHasher,
    email: &EmailAddress,
) -> Result<String, ChangeError> {
    let mut change = MemberChange::begin(pool).await?;
    let existing = db::members::find_by_email(change.conn(), email.as_str()).await?;
    let mut member = new_member(email, Role::Admin, Status::Active, db::now());
    if let Some(old) = &existing {
        member.display_name = old.display_name.clone();
    }
    db::members::upsert(&mut change, &member, true, true).await?;
    let id = existing.map(|m| m.id).unwrap_or(member.id);
    Event::new(Action::AdminAdded)
        .on(&id)
        .address(hasher.hash(email.as_str()))
        .record(change.conn())
        .await?;
    change.commit().await?;
    Ok(id)
}

/// What inviting a list of addresses did, address by address.
#[derive(Debug, Default)]
pub struct InviteReport {
    /// Newly invited.
    pub invited: Vec<String>,
    /// Whether their invitations were queued as mail (otherwise the owner sends them).
    pub mailed: bool,
    /// With mail off: each newly invited address and the invitation to send it by hand.
    pub to_send_by_hand: Vec<(String, String)>,
    /// Already on the member list (left as they are).
    pub existing: Vec<String>,
    /// Not addresses: what was typed, and why.
    pub invalid: Vec<(String, String)>,
}

/// An admin invites addresses (separated by commas, semicolons, spaces or lines). With mail
/// on, each new invitation is queued as a mail in the same transaction as the invitation;
/// with mail off, the report holds the text to send by hand.
pub async fn invite(
    pool: &Db,
    mailer: &Mailer,
    hasher: &AddressHasher,
    inviter: &Member,
    text: &str,
) -> Result<InviteReport, ChangeError> {
    let actor = inviter.id.as_str();
    let mut report = InviteReport {
        mailed: mailer.enabled(),
        ..InviteReport::default()
    };
    let now = db::now();
    let mut tx = db::begin_write(pool).await?;
    for raw in text
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|s| !s.is_empty())
    {
        match EmailAddress::parse(raw) {
            Err(e) => report
                .invalid
                .push((raw.chars().take(254).collect(), e.to_string())),
            Ok(email) => {
                let fresh = new_member(&email, Role::Member, Status::Invited, now);
                if db::members::insert_if_absent(&mut *tx, &fresh).await? {
                    Event::new(Action::MemberInvited)
                        .by(actor)
                        .on(&fresh.id)
                        .address(hasher.hash(email.as_str()))
                        .record(&mut *tx)
                        .await?;
                    let mail = mailer.invitation(email.as_str(), inviter).map_err(|e| {
                        ChangeError::Invalid(format!("the invitation could not be written: {e}"))
                    })?;
                    if mailer.enabled() {
                        mailer
                            .queue(&mut tx, mail_kind::INVITATION, email.as_str(), &mail)
                            .await?;
                    } else {
                        let by_hand = format!("Subject: {}\n\n{}", mail.subject, mail.text);
                        report.to_send_by_hand.push((email.to_string(), by_hand));
                    }
                    report.invited.push(email.to_string());
                } else {
                    report.existing.push(email.to_string());
                }
            }
        }
    }
    tx.commit().await?;
    mailer.wake();
    Ok(report)
}

/// The longest display name accepted.
pub const MAX_NAME: usize = 80;

/// A member renames themselves.
pub async fn rename(pool: &Db, id: &str, name: &str) -> Result<(), ChangeError> {
    let name = name.trim();
    check_display_name(name).map_err(ChangeError::Invalid)?;
    let mut tx = db::begin_write(pool).await?;
    db::members::set_display_name(&mut *tx, id, name).await?;
    Event::new(Action::DisplayNameChanged)
        .by(id)
        .on(id)
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Gives a member the address they have just verified, keeping their id, role and history,
/// and ends all their sessions (the caller starts a new one for the browser that verified).
/// Only an active member's address changes, checked in the same statement: one suspended or
/// removed while the broker was verifying gets `NotFound`.
pub async fn change_email(
    pool: &Db,
    hasher: &AddressHasher,
    id: &str,
    email: &EmailAddress,
) -> Result<(), ChangeError> {
    let mut tx = db::begin_write(pool).await?;
    match db::members::set_email(&mut *tx, id, email.as_str()).await {
        Ok(true) => {}
        Ok(false) => return Err(ChangeError::NotFound),
        Err(e) if matches!(&e, sqlx::Error::Database(d) if d.is_unique_violation()) => {
            return Err(ChangeError::EmailTaken);
        }
        Err(e) => return Err(e.into()),
    }
    db::sessions::delete_for_member(&mut *tx, id, None).await?;
    Event::new(Action::EmailChanged)
        .by(id)
        .on(id)
        .address(hasher.hash(email.as_str()))
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// A member ends one of their own sessions (by its public handle). Another member's handle
/// matches nothing.
pub async fn end_session(pool: &Db, member_id: &str, handle: &str) -> Result<(), sqlx::Error> {
    let mut tx = db::begin_write(pool).await?;
    if db::sessions::delete_by_handle(&mut *tx, member_id, handle).await? {
        Event::new(Action::SessionRevoked)
            .by(member_id)
            .on(member_id)
            .record(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// A member ends all their sessions but the one with handle `keep`.
pub async fn end_other_sessions(
    pool: &Db,
    member_id: &str,
    keep: &str,
) -> Result<u64, sqlx::Error> {
    let mut tx = db::begin_write(pool).await?;
    let ended = db::sessions::delete_for_member(&mut *tx, member_id, Some(keep)).await?;
    let detail = ended.to_string();
    Event::new(Action::OtherSessionsRevoked)
        .by(member_id)
        .on(member_id)
        .detail(&detail)
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(ended)
}

/// An admin asks for a failed mail to be tried again.
pub async fn retry_mail(pool: &Db, actor: &str, id: &str) -> Result<(), ChangeError> {
    let now = db::now();
    let give_up_at = now + crate::domain::mail::GIVE_UP_AFTER.as_secs() as i64;
    let mut tx = db::begin_write(pool).await?;
    if !db::outbox::requeue_failed(&mut *tx, id, now, give_up_at).await? {
        tx.rollback().await?;
        return match db::outbox::find(pool, id).await? {
            None => Err(ChangeError::NotFound),
            Some(mail) => Err(ChangeError::NotApplicable(mail.status)),
        };
    }
    Event::new(Action::MailRetried)
        .by(actor)
        .detail(id)
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// What an applied import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Members created.
    pub created: u64,
    /// Members updated.
    pub updated: u64,
}

/// Why an import was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Some rows are bad: nothing was written.
    #[error("the file has errors; nothing was written")]
    HasErrors,
    /// It would leave the site without an active admin: nothing was written.
    #[error("the import would leave the site without an active admin; nothing was written")]
    LastAdmin,
    /// The database failed: nothing was written.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// A member as an import gives them: the address, and what the file says of the rest.
#[derive(Debug, Clone, Copy)]
pub struct Imported<'a> {
    /// The normalized address.
    pub email: &'a EmailAddress,
    /// The display name, if the file gives one.
    pub display_name: Option<&'a str>,
    /// The role, if the file gives one.
    pub role: Option<Role>,
    /// The status, if the file gives one.
    pub status: Option<Status>,
}

/// Writes an import in one transaction: creates or updates each member by address. New
/// members default to role `member` and status `invited`; an existing member keeps what the
/// file leaves out. Nothing is written if the site would be left without an active admin.
pub async fn import(
    pool: &Db,
    actor: Option<&str>,
    rows: &[Imported<'_>],
) -> Result<Applied, ApplyError> {
    let now = db::now();
    let mut applied = Applied::default();
    // The guarded transaction: no other change to roles or statuses runs until this one ends,
    // so the admin count before and after is exact.
    let mut change = MemberChange::begin(pool).await?;
    let admins_before = db::members::active_admins(change.conn()).await?;
    for row in rows {
        let email = row.email;
        let member = Member {
            id: uuid::Uuid::new_v4().to_string(),
            email: email.as_str().to_owned(),
            display_name: row
                .display_name
                .map_or_else(|| default_display_name(email), str::to_owned),
            role: row.role.unwrap_or(Role::Member),
            status: row.status.unwrap_or(Status::Invited),
            created_at: now,
            last_login_at: None,
        };
        let existing = db::members::find_by_email(change.conn(), email.as_str()).await?;
        // An existing member keeps their display name unless the file gives one.
        let member = match (&existing, &row.display_name) {
            (Some(old), None) => Member {
                display_name: old.display_name.clone(),
                ..member
            },
            _ => member,
        };
        if db::members::upsert(
            &mut change,
            &member,
            row.role.is_some(),
            row.status.is_some(),
        )
        .await?
        {
            applied.created += 1;
        } else {
            applied.updated += 1;
        }
        if member.status == Status::Suspended
            && row.status.is_some()
            && let Some(old) = existing
        {
            db::sessions::delete_for_member(change.conn(), &old.id, None).await?;
        }
    }
    if admins_before > 0 && db::members::active_admins(change.conn()).await? == 0 {
        change.rollback().await?;
        return Err(ApplyError::LastAdmin);
    }
    let detail = format!("created={} updated={}", applied.created, applied.updated);
    Event::new(Action::MembersImported)
        .by_opt(actor)
        .detail(&detail)
        .record(change.conn())
        .await?;
    change.commit().await?;
    Ok(applied)
}
