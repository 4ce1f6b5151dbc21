//! Mail to members and admins: invitations, approvals, and a digest of requests to join.
//!
//! A mail is a row of the `outbox` table, written in the same transaction as what causes it,
//! so nothing is lost when the mail server is down or the site restarts; [`sender`] delivers
//! it in the background. The wording lives in `templates/mail/` (plain text and HTML, both
//! askama), never in Rust. No mail carries a sign-in token: signing in stays with the broker.

pub mod sender;

use std::time::Duration;

use askama::Template;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use sqlx::AnyConnection;
use tokio::sync::Notify;

use crate::config::Config;
use crate::db::{self, members::Member, outbox};

/// How long a mail that cannot be delivered is retried before it is failed for good.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(3 * 86_400);
/// The longest wait between two attempts.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(30 * 60);
/// The wait after the first failed attempt; it doubles with each further one.
pub const FIRST_RETRY_WAIT: Duration = Duration::from_secs(5);
/// How long one sender may hold a mail before others may take it over (longer than
/// [`SMTP_TIMEOUT`], so a mail is never delivered by two senders at once).
pub const LEASE: Duration = Duration::from_secs(90);
/// Time limit for each exchange with the mail server.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Sent and failed mails are deleted this long after they were queued.
pub const RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// The kinds of mail, as stored.
pub mod kind {
    /// To an invited address.
    pub const INVITATION: &str = "invitation";
    /// To a member an admin approved.
    pub const APPROVED: &str = "approved";
    /// To each admin: requests to join are waiting.
    pub const PENDING_DIGEST: &str = "pending_digest";
}

/// A mail written out: its subject and both parts.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The subject line.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
}

/// What every mail says about the site.
#[derive(Debug, Clone)]
pub struct SiteInfo {
    /// `SITE_NAME`.
    pub name: String,
    /// `PUBLIC_URL`, the base of every link.
    pub url: String,
    /// `CONTACT_EMAIL`, if set.
    pub contact: Option<String>,
}

/// `templates/mail/invitation.*`
pub struct Invitation<'a> {
    /// The site.
    pub site: &'a SiteInfo,
    /// The invited address.
    pub recipient: &'a str,
    /// The inviting admin's display name.
    pub inviter_name: &'a str,
    /// The inviting admin's address.
    pub inviter_email: &'a str,
}

/// `templates/mail/approved.*`
pub struct Approved<'a> {
    /// The site.
    pub site: &'a SiteInfo,
    /// The approved member's address.
    pub recipient: &'a str,
}

/// `templates/mail/pending_digest.*`
pub struct PendingDigest<'a> {
    /// The site.
    pub site: &'a SiteInfo,
    /// How many requests are waiting.
    pub count: usize,
    /// The addresses waiting (the first [`DIGEST_LIST_LIMIT`]).
    pub addresses: &'a [String],
    /// Where to approve them.
    pub link: String,
}

/// Addresses listed in one digest at most; the count says how many more.
pub const DIGEST_LIST_LIMIT: usize = 50;

macro_rules! mail_templates {
    ($data:ident, $text:ident, $text_path:literal, $html:ident, $html_path:literal) => {
        #[derive(Template)]
        #[template(path = $text_path)]
        struct $text<'a, 'b> {
            m: &'b $data<'a>,
        }
        #[derive(Template)]
        #[template(path = $html_path)]
        struct $html<'a, 'b> {
            m: &'b $data<'a>,
        }
        impl $data<'_> {
            /// Renders the mail from its templates.
            pub fn render(&self) -> Result<Rendered, askama::Error> {
                let text = $text { m: self }.render()?;
                let html = $html { m: self }.render()?;
                Ok(split_subject(&text, html))
            }
        }
    };
}

mail_templates!(
    Invitation,
    InvitationText,
    "mail/invitation.txt",
    InvitationHtml,
    "mail/invitation.html"
);
mail_templates!(
    Approved,
    ApprovedText,
    "mail/approved.txt",
    ApprovedHtml,
    "mail/approved.html"
);
mail_templates!(
    PendingDigest,
    PendingDigestText,
    "mail/pending_digest.txt",
    PendingDigestHtml,
    "mail/pending_digest.html"
);

/// The text template's first line is `Subject: …`; the rest is the body.
fn split_subject(text: &str, html: String) -> Rendered {
    let text = text.trim_start();
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    match first.strip_prefix("Subject:") {
        Some(subject) => Rendered {
            // A subject is one line: nothing a template or a value in it can add makes it two.
            subject: subject.trim().replace(['\r', '\n'], " "),
            text: rest.trim_start_matches(['\r', '\n']).to_owned(),
            html,
        },
        None => Rendered {
            subject: String::new(),
            text: text.to_owned(),
            html,
        },
    }
}

/// Why a mail could not be handed to the mail server, sorted by what to do next.
#[derive(Debug)]
pub enum SendError {
    /// The server refused it for good (a 5xx answer), or it cannot be written as a mail.
    Permanent(String),
    /// Worth trying again: a 4xx answer, a connection that failed, a time-out.
    Transient(String),
}

/// The site's mail: how to reach the mail server, and the outbox's wake-up call.
pub struct Mailer {
    /// What mails say about the site.
    pub site: SiteInfo,
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    /// The host name in Message-IDs.
    message_id_host: String,
    /// The length of a digest window, in seconds.
    digest_interval: i64,
    wake: Notify,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("enabled", &self.enabled())
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Builds the mailer from the settings (already checked by [`Config`]).
    pub fn from_config(config: &Config) -> anyhow::Result<Mailer> {
        let transport = match &config.smtp_url {
            Some(url) => Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .map_err(|e| anyhow::anyhow!("SMTP_URL cannot be used: {e}"))?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build(),
            ),
            None => None,
        };
        let from = config
            .mail_from
            .parse::<Mailbox>()
            .map_err(|e| anyhow::anyhow!("MAIL_FROM cannot be used: {e}"))?;
        Ok(Mailer {
            site: SiteInfo {
                name: config.site_name.clone(),
                url: config.public_url.clone(),
                contact: config.contact_email.as_ref().map(|e| e.to_string()),
            },
            transport,
            from,
            message_id_host: config.public_host(),
            digest_interval: config.mail_digest_interval.as_secs().max(1) as i64,
            wake: Notify::new(),
        })
    }

    /// Whether the site sends mail at all (`SMTP_URL` is set).
    pub fn enabled(&self) -> bool {
        self.transport.is_some()
    }

    /// Tells this instance's sender that a mail was queued (call after the commit).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Queues `rendered` for `recipient` through `conn` (the caller's transaction). Does
    /// nothing when mail is off.
    pub async fn queue(
        &self,
        conn: &mut AnyConnection,
        kind: &str,
        recipient: &str,
        rendered: &Rendered,
    ) -> Result<(), sqlx::Error> {
        if !self.enabled() {
            return Ok(());
        }
        let now = db::now();
        outbox::insert(
            conn,
            &outbox::Mail {
                id: uuid::Uuid::now_v7().simple().to_string(),
                kind: kind.to_owned(),
                recipient: recipient.to_owned(),
                subject: rendered.subject.clone(),
                body_text: rendered.text.clone(),
                body_html: rendered.html.clone(),
                status: "queued".into(),
                attempts: 0,
                created_at: now,
                next_attempt_at: now,
                give_up_at: now + GIVE_UP_AFTER.as_secs() as i64,
                sent_at: None,
                last_response: None,
            },
        )
        .await
    }

    /// For a request to join made at `now`: the digest window it falls in, when that digest
    /// is due and when it is given up (`None`: mail is off, no digest).
    pub fn digest_window(&self, now: i64) -> Option<(i64, i64, i64)> {
        if !self.enabled() {
            return None;
        }
        let window = now / self.digest_interval;
        let due = (window + 1) * self.digest_interval;
        Some((window, due, due + GIVE_UP_AFTER.as_secs() as i64))
    }

    /// The invitation for `recipient` from `inviter`.
    pub fn invitation(&self, recipient: &str, inviter: &Member) -> Result<Rendered, askama::Error> {
        Invitation {
            site: &self.site,
            recipient,
            inviter_name: &inviter.display_name,
            inviter_email: &inviter.email,
        }
        .render()
    }

    /// The mail to a member who was just approved.
    pub fn approved(&self, recipient: &str) -> Result<Rendered, askama::Error> {
        Approved {
            site: &self.site,
            recipient,
        }
        .render()
    }

    /// The digest listing the requests waiting now.
    pub fn digest(&self, waiting: &[String], count: usize) -> Result<Rendered, askama::Error> {
        PendingDigest {
            site: &self.site,
            count,
            addresses: waiting,
            link: format!("{}/admin?status=pending", self.site.url),
        }
        .render()
    }

    /// Hands one mail to the mail server; its answer (`250 …`) on success.
    pub async fn deliver(&self, mail: &outbox::Mail) -> Result<String, SendError> {
        let Some(transport) = &self.transport else {
            return Err(SendError::Transient("mail is off (no SMTP_URL)".into()));
        };
        let to = mail.recipient.parse::<Mailbox>().map_err(|e| {
            SendError::Permanent(format!("the address cannot be written in a mail: {e}"))
        })?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .message_id(Some(format!("<{}@{}>", mail.id, self.message_id_host)))
            .multipart(MultiPart::alternative_plain_html(
                mail.body_text.clone(),
                mail.body_html.clone(),
            ))
            .map_err(|e| SendError::Permanent(format!("the mail could not be built: {e}")))?;
        match transport.send(message).await {
            Ok(response) => {
                let lines: Vec<&str> = response.message().collect();
                Ok(format!("{} {}", response.code(), lines.join(" ")))
            }
            Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            Err(e) => Err(SendError::Transient(e.to_string())),
        }
    }
}

/// The wait before attempt `attempts + 1`, after `attempts` failed ones: 5 s, 10 s, 20 s, …,
/// at most 30 minutes.
pub fn retry_wait(attempts: i64) -> Duration {
    let doublings = attempts.clamp(1, 20) as u32 - 1;
    FIRST_RETRY_WAIT
        .saturating_mul(1 << doublings)
        .min(MAX_RETRY_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_start_within_ten_seconds_and_stay_under_half_an_hour() {
        assert_eq!(retry_wait(1), Duration::from_secs(5));
        assert_eq!(retry_wait(2), Duration::from_secs(10));
        assert_eq!(retry_wait(3), Duration::from_secs(20));
        assert_eq!(retry_wait(9), Duration::from_secs(1280));
        assert_eq!(retry_wait(10), MAX_RETRY_WAIT);
        assert_eq!(retry_wait(1000), MAX_RETRY_WAIT);
    }

    #[test]
    fn the_subject_is_the_first_line_and_one_line() {
        let r = split_subject("Subject: Hello\r\n there\n\nBody\n", String::new());
        assert_eq!(r.subject, "Hello");
        assert_eq!(r.text, " there\n\nBody\n");
        let r = split_subject("Subject: Hi\n\nBody", String::new());
        assert_eq!(r.subject, "Hi");
        assert_eq!(r.text, "Body");
    }
}
