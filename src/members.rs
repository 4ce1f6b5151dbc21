//! Membership policy: who may enter once the broker has vouched for an address.
//!
//! For now every verified address becomes an active member, and addresses listed in
//! `ADMIN_EMAILS` become admins. A member whose status is not `active` is refused.

use crate::db::{self, Pool, members::Member};
use crate::email::EmailAddress;

/// The outcome of a verified sign-in.
#[derive(Debug)]
pub enum Admission {
    /// Welcome in.
    Admitted(Member),
    /// Known, but not allowed in (the member's status says why).
    Refused(Member),
}

/// Records the sign-in of `email` (already verified by the broker) and decides on it.
pub async fn admit(
    pool: &Pool,
    admin_emails: &[EmailAddress],
    email: &EmailAddress,
) -> Result<Admission, sqlx::Error> {
    let role = if admin_emails.contains(email) {
        "admin"
    } else {
        "member"
    };
    let now = db::now();
    let member = db::members::record_sign_in(
        pool,
        &Member {
            id: uuid::Uuid::new_v4().to_string(),
            email: email.as_str().to_owned(),
            display_name: default_display_name(email),
            role: role.to_owned(),
            status: "active".to_owned(),
            created_at: now,
            last_login_at: Some(now),
        },
    )
    .await?;
    Ok(if member.status == "active" {
        Admission::Admitted(member)
    } else {
        Admission::Refused(member)
    })
}

/// The local part of the address, until the member chooses a name.
pub fn default_display_name(email: &EmailAddress) -> String {
    email
        .as_str()
        .rsplit_once('@')
        .map(|(local, _)| local.to_owned())
        .unwrap_or_default()
}
