//! The audit log: who did what, kept for `AUDIT_RETENTION`.
//!
//! Entries name members by id and addresses only by a keyed hash (HMAC-SHA256 with a key
//! derived from the session key), so deleting a member leaves no readable trace of their
//! address: a bare SHA-256 could be reversed by hashing a list of likely addresses, the keyed
//! hash only by someone who also holds the key.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sqlx::{Any, Executor};

use crate::db::{self, Db, audit::Entry};

/// Hashes addresses for the audit log and the rate limits' counters: HMAC-SHA256 under a key
/// of its own, derived from the session cookie key (so it is kept wherever that key is kept:
/// `SESSION_KEY`, or the database).
#[derive(Clone)]
pub struct AddressHasher {
    /// The HMAC with its key already absorbed: each hash starts from a copy of it.
    keyed: Hmac<Sha256>,
}

/// An address as the audit log keeps it; made only by [`AddressHasher::hash`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressHash(String);

impl AddressHasher {
    /// The hasher for a site with this session cookie key.
    pub fn new(cookie_key: &actix_web::cookie::Key) -> AddressHasher {
        let mut mac = keyed(cookie_key.master());
        mac.update(b"clubhouse: audit and rate-limit address hashes, v1");
        AddressHasher {
            keyed: keyed(&mac.finalize().into_bytes()),
        }
    }

    /// The keyed hash of a normalized address, as lowercase hex.
    pub fn hash(&self, email: &str) -> AddressHash {
        let mut mac = self.keyed.clone();
        mac.update(email.as_bytes());
        AddressHash(format!("{:x}", mac.finalize().into_bytes()))
    }
}

impl AddressHash {
    /// The hash as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn keyed(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

/// The hasher for this site, after converting the log's old address hashes if it has any
/// (see [`key_old_hashes`]). The server and the command line call this before writing.
pub async fn prepare_hasher(
    pool: &Db,
    cookie_key: &actix_web::cookie::Key,
) -> Result<AddressHasher, sqlx::Error> {
    let hasher = AddressHasher::new(cookie_key);
    let converted = key_old_hashes(pool, &hasher).await?;
    if converted > 0 {
        tracing::info!(
            entries = converted,
            "the audit log's address hashes are now keyed (HMAC-SHA256)"
        );
    }
    Ok(hasher)
}

/// The setting that records that the log's address hashes are keyed.
const HASHES_KEYED: &str = "audit_address_hashes";

/// Converts the address hashes of a log written before they were keyed (bare SHA-256), once:
/// the hash of a current member's address becomes its keyed hash, and any other (an address
/// no longer on the list) becomes the keyed hash of the old value, so that entries about one
/// address still match each other but can no longer be reversed. In one transaction; later
/// starts find the setting and do nothing.
pub async fn key_old_hashes(pool: &Db, hasher: &AddressHasher) -> Result<u64, sqlx::Error> {
    let mut tx = db::begin_write(pool).await?;
    if db::settings::get(&mut *tx, HASHES_KEYED).await?.is_some() {
        tx.rollback().await?;
        return Ok(0);
    }
    let by_bare_hash: std::collections::HashMap<String, String> = db::members::all(&mut *tx)
        .await?
        .into_iter()
        .map(|m| (format!("{:x}", Sha256::digest(m.email.as_bytes())), m.email))
        .collect();
    let old = db::audit::email_hashes(&mut *tx).await?;
    let mut converted = 0;
    for (id, bare) in old {
        let keyed = match by_bare_hash.get(&bare) {
            Some(email) => hasher.hash(email),
            None => hasher.hash(&format!("sha256:{bare}")),
        };
        db::audit::set_email_hash(&mut *tx, &id, keyed.as_str()).await?;
        converted += 1;
    }
    db::settings::set(&mut *tx, HASHES_KEYED, "hmac-sha256-v1").await?;
    tx.commit().await?;
    Ok(converted)
}

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

/// One entry to record, built from its action: `Event::new(Action::SignIn).by(id).on(id)`,
/// then [`Event::record`].
#[derive(Debug)]
#[must_use = "an event is written only by Event::record"]
pub struct Event<'a> {
    action: Action,
    actor: Option<&'a str>,
    subject: Option<&'a str>,
    email: Option<AddressHash>,
    detail: &'a str,
}

impl<'a> Event<'a> {
    /// An entry for `action`, by nobody in particular (a visitor, or the command line).
    pub fn new(action: Action) -> Event<'a> {
        Event {
            action,
            actor: None,
            subject: None,
            email: None,
            detail: "",
        }
    }

    /// The member who acted.
    pub fn by(self, actor: &'a str) -> Event<'a> {
        self.by_opt(Some(actor))
    }

    /// The member who acted, if one did.
    pub fn by_opt(self, actor: Option<&'a str>) -> Event<'a> {
        Event { actor, ..self }
    }

    /// The member acted upon.
    pub fn on(self, subject: &'a str) -> Event<'a> {
        Event {
            subject: Some(subject),
            ..self
        }
    }

    /// The address concerned, as its keyed hash.
    pub fn address(self, hash: AddressHash) -> Event<'a> {
        Event {
            email: Some(hash),
            ..self
        }
    }

    /// A reason or a value; never an address.
    pub fn detail(self, detail: &'a str) -> Event<'a> {
        Event { detail, ..self }
    }

    /// Appends the entry (inside the caller's transaction when given one).
    pub async fn record<'c>(
        self,
        db: impl Executor<'c, Database = Any>,
    ) -> Result<(), sqlx::Error> {
        db::audit::insert(
            db,
            &Entry {
                // Time-ordered (uuid v7, monotonic within a process): entries of one second
                // keep their order.
                id: uuid::Uuid::now_v7().to_string(),
                at: db::now(),
                action: self.action.as_str().to_owned(),
                actor_id: self.actor.map(str::to_owned),
                subject_id: self.subject.map(str::to_owned),
                email_hash: self.email.map(|h| h.0),
                detail: self.detail.to_owned(),
                occurrences: 1,
            },
        )
        .await
    }
}

/// Counts one more occurrence of something that may repeat many times a minute (a refused
/// sign-in token, say): all occurrences of `action` with the same `detail` within one minute
/// are one entry, whose count grows. `detail` names the client and the reason.
pub async fn record_folded<'c>(
    db: impl Executor<'c, Database = Any>,
    action: Action,
    detail: &str,
) -> Result<(), sqlx::Error> {
    let now = db::now();
    let minute = now - now.rem_euclid(60);
    // The entry's id is a digest of what it folds, so every instance finds the same one.
    let digest = Sha256::digest(format!("{}|{minute}|{detail}", action.as_str()));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    let id = uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string();
    db::audit::insert(
        db,
        &Entry {
            id,
            at: now,
            action: action.as_str().to_owned(),
            actor_id: None,
            subject_id: None,
            email_hash: None,
            detail: detail.to_owned(),
            occurrences: 1,
        },
    )
    .await
}
