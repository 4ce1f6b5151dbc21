//! The audit log: who did what, kept for `AUDIT_RETENTION`.
//!
//! Entries name members by id and addresses only by SHA-256, so deleting a member leaves no
//! readable trace of their address.

use sqlx::{Any, Executor};

use crate::db::{self, audit::Entry};
use crate::security::sha256_hex;

/// Everything the log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A member signed in.
    SignIn,
    /// A verified address was refused entry; the detail says why.
    SignInRefused,
    /// A member signed out.
    SignOut,
    /// A member ended one of their sessions.
    SessionRevoked,
    /// A member ended all their other sessions.
    OtherSessionsRevoked,
    /// A verified address asked to join and is waiting for approval.
    MemberRequested,
    /// An admin invited an address.
    MemberInvited,
    /// An admin approved a pending member.
    MemberApproved,
    /// An admin rejected a pending member.
    MemberRejected,
    /// An admin suspended a member.
    MemberSuspended,
    /// An admin reactivated a member.
    MemberReactivated,
    /// An admin changed a member's role; the detail is the new role.
    RoleChanged,
    /// An admin removed a member.
    MemberRemoved,
    /// Members were imported from CSV; the detail gives the counts.
    MembersImported,
    /// A member changed their display name.
    DisplayNameChanged,
    /// A member changed their address after verifying the new one.
    EmailChanged,
    /// A member deleted their own account.
    AccountDeleted,
    /// An admin was added from the command line.
    AdminAdded,
    /// An admin asked for a failed mail to be sent again; the detail is the mail's id.
    MailRetried,
}

impl Action {
    /// Every action, for the admin page's filter.
    pub const ALL: [Action; 19] = [
        Action::SignIn,
        Action::SignInRefused,
        Action::SignOut,
        Action::SessionRevoked,
        Action::OtherSessionsRevoked,
        Action::MemberRequested,
        Action::MemberInvited,
        Action::MemberApproved,
        Action::MemberRejected,
        Action::MemberSuspended,
        Action::MemberReactivated,
        Action::RoleChanged,
        Action::MemberRemoved,
        Action::MembersImported,
        Action::DisplayNameChanged,
        Action::EmailChanged,
        Action::AccountDeleted,
        Action::AdminAdded,
        Action::MailRetried,
    ];

    /// The name stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::SignIn => "sign_in",
            Action::SignInRefused => "sign_in_refused",
            Action::SignOut => "sign_out",
            Action::SessionRevoked => "session_revoked",
            Action::OtherSessionsRevoked => "other_sessions_revoked",
            Action::MemberRequested => "member_requested",
            Action::MemberInvited => "member_invited",
            Action::MemberApproved => "member_approved",
            Action::MemberRejected => "member_rejected",
            Action::MemberSuspended => "member_suspended",
            Action::MemberReactivated => "member_reactivated",
            Action::RoleChanged => "role_changed",
            Action::MemberRemoved => "member_removed",
            Action::MembersImported => "members_imported",
            Action::DisplayNameChanged => "display_name_changed",
            Action::EmailChanged => "email_changed",
            Action::AccountDeleted => "account_deleted",
            Action::AdminAdded => "admin_added",
            Action::MailRetried => "mail_retried",
        }
    }
}

/// One entry to record.
#[derive(Debug, Default)]
pub struct Event<'a> {
    /// The member who acted (None: a visitor, or the command line).
    pub actor: Option<&'a str>,
    /// The member acted upon.
    pub subject: Option<&'a str>,
    /// The address concerned (stored hashed).
    pub email: Option<&'a str>,
    /// A reason or value; never an address.
    pub detail: &'a str,
}

/// Appends an entry (inside the caller's transaction when given one).
pub async fn record<'c>(
    db: impl Executor<'c, Database = Any>,
    action: Action,
    event: Event<'_>,
) -> Result<(), sqlx::Error> {
    db::audit::insert(
        db,
        &Entry {
            // Time-ordered (uuid v7, monotonic within a process): entries of one second keep
            // their order.
            id: uuid::Uuid::now_v7().to_string(),
            at: db::now(),
            action: action.as_str().to_owned(),
            actor_id: event.actor.map(str::to_owned),
            subject_id: event.subject.map(str::to_owned),
            email_hash: event.email.map(sha256_hex),
            detail: event.detail.to_owned(),
        },
    )
    .await
}
