//! Signing in, as one service with two steps: [`SignIn::start`] when a visitor asks to sign in
//! (or to change their address), [`SignIn::finish`] when the broker's answer comes back. It
//! holds the policy (rate limits, who is admitted), the nonce, the member and the audit; the
//! web handlers only read the request, call it, and start the session or pick the page.

use std::sync::Arc;

use url::Url;

use crate::config::Config;
use crate::db::Db;
use crate::db::members::Take;
use crate::db::sessions::NewSession;
use crate::domain::audit::AddressHasher;
use crate::domain::directory::Directory;
use crate::domain::mail::Mailer;
use crate::domain::members::{self, Admission, ChangeError};
use crate::domain::metrics::Metrics;
use crate::domain::portier::{
    AttemptFor, BrokerError, Purpose, Rejection, RelyingParty, StartError, VerifyError,
};
use crate::domain::rate_limit::{self, RefusalGate};
use crate::email::EmailAddress;

/// Everything a sign-in needs, built once at start; each worker has a copy on its own
/// database handle (see `Db::for_worker`).
#[derive(Clone)]
pub struct SignIn {
    /// The relying party: the broker's keys, the login attempts.
    pub rp: Arc<RelyingParty>,
    /// The database.
    pub db: Db,
    /// The settings (limits, admin addresses, sign-up mode).
    pub config: Arc<Config>,
    /// The outbox, for the mails that admitting someone sends.
    pub mailer: Arc<Mailer>,
    /// The keyed hash of addresses in the audit log and the rate limits.
    pub hasher: Arc<AddressHasher>,
    /// The in-memory gate in front of the refusal counter.
    pub gate: Arc<RefusalGate>,
    /// The members directory, told when a first sign-in changes it.
    pub directory: Arc<Directory>,
    /// The counters of `/metrics`.
    pub metrics: Arc<Metrics>,
}

/// A request to start signing in (or to confirm a new address).
pub struct Start<'a> {
    /// The address as the visitor typed it; the broker gets it as typed.
    pub typed: &'a str,
    /// The local path to go to afterwards.
    pub next: &'a str,
    /// The client network the request is counted under.
    pub network: &'a str,
    /// The hash of the binding cookie set in this browser, when binding is on.
    pub binding_hash: Option<&'a str>,
    /// What the sign-in is for.
    pub purpose: Purpose,
    /// For an address change: the member's current address, which cannot be the new one.
    pub current: Option<&'a str>,
}

/// Why a sign-in did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartRefused {
    /// The typed address is not one; the text says why (for the form).
    #[error("not an address: {0}")]
    BadAddress(String),
    /// Too many starts from this network or for this address; seconds to wait.
    #[error("rate limited")]
    RateLimited(u64),
    /// The broker could not be asked, or the attempt could not be stored.
    #[error(transparent)]
    Broker(#[from] StartError),
    /// The rate limits could not be counted.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The broker's answer, as `POST /verify` received it.
pub struct Answer<'a> {
    /// The `id_token`.
    pub token: &'a str,
    /// The hash of the binding cookie this browser presented, if any.
    pub binding_hash: Option<&'a str>,
    /// The client network, for counting refused tokens.
    pub network: &'a str,
    /// The session to start, stored with the sign-in when the member is admitted (one round
    /// trip instead of two).
    pub session: &'a NewSession,
}

/// A finished sign-in: the member to start a session for, and where they go next.
#[derive(Debug)]
pub struct Finished {
    /// The member's id.
    pub member_id: String,
    /// The local path to send them to.
    pub next: String,
    /// Whether the answer's session was stored with the sign-in; otherwise the web layer
    /// stores one.
    pub session_stored: bool,
}

/// Why a sign-in did not finish. No session is started for any of these.
#[derive(Debug, thiserror::Error)]
pub enum FinishRefused {
    /// The token is not acceptable (bad, replayed or expired).
    #[error("sign-in refused: {0}")]
    Token(Rejection),
    /// The broker vouched for `email`, but the sign-in was started in another browser.
    #[error("started in another browser: {reason:?}")]
    StartedElsewhere {
        /// The binding refusal.
        reason: Rejection,
        /// The address the broker vouched for.
        email: String,
    },
    /// Not on the member list of an invite-only site.
    #[error("not invited")]
    NotInvited,
    /// Waiting for an admin's approval.
    #[error("pending approval")]
    Pending,
    /// Suspended (or, for an address change, no longer an active member).
    #[error("suspended")]
    Suspended,
    /// The new address belongs to another member.
    #[error("that address already belongs to another member")]
    AddressTaken,
    /// Too many refused tokens from this network; seconds to wait.
    #[error("rate limited")]
    RateLimited(u64),
    /// The broker's keys could not be had.
    #[error(transparent)]
    Broker(BrokerError),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The address change failed for another reason.
    #[error(transparent)]
    Change(ChangeError),
}

impl FinishRefused {
    /// The reason's name in `clubhouse_signins_refused_total`, for a refusal the metric counts.
    fn metric(&self) -> Option<&'static str> {
        match self {
            FinishRefused::Token(r) | FinishRefused::StartedElsewhere { reason: r, .. } => {
                Some(r.name())
            }
            FinishRefused::NotInvited => Some("not_invited"),
            FinishRefused::Pending => Some("pending"),
            FinishRefused::Suspended => Some("suspended"),
            FinishRefused::AddressTaken => Some("address_taken"),
            _ => None,
        }
    }
}

impl From<VerifyError> for FinishRefused {
    fn from(e: VerifyError) -> FinishRefused {
        match e {
            VerifyError::Rejected(r) => FinishRefused::Token(r),
            VerifyError::Broker(b) => FinishRefused::Broker(b),
            VerifyError::Database(d) => FinishRefused::Database(d),
        }
    }
}

impl SignIn {
    /// Counts the start against the client's network (a bad address too: that limits
    /// probing) and a good address against itself, stores the attempt and gives the broker's
    /// URL to send the visitor to.
    pub async fn start(&self, client: &awc::Client, start: Start<'_>) -> Result<Url, StartRefused> {
        // The metrics count sign-ins; an address change is not one.
        let counted = matches!(start.purpose, Purpose::SignIn);
        let result = self.start_counted(client, start).await;
        match &result {
            Ok(_) if counted => self.metrics.signin_started(),
            Err(StartRefused::RateLimited(_)) if counted => self.metrics.rate_limited(),
            _ => {}
        }
        result
    }

    async fn start_counted(
        &self,
        client: &awc::Client,
        start: Start<'_>,
    ) -> Result<Url, StartRefused> {
        let typed = start.typed.trim();
        let parsed = EmailAddress::parse(typed);
        // A start that can go ahead is prepared first (the broker's URL and the attempt), so
        // that the counters and the attempt are written in one round trip.
        let prepared = match &parsed {
            Ok(email) if start.current != Some(email.as_str()) => Some(
                self.rp
                    .prepare(
                        client,
                        &AttemptFor {
                            login_hint: typed,
                            next_path: start.next,
                            state: None,
                            binding_hash: start.binding_hash,
                            purpose: &start.purpose,
                        },
                    )
                    .await?,
            ),
            _ => None,
        };
        let counted = rate_limit::sign_in_start(
            &self.db,
            &self.config,
            &self.hasher,
            start.network,
            parsed.as_ref().ok(),
            prepared.as_ref().map(|p| &p.attempt),
        )
        .await?;
        if let Some(wait) = counted {
            return Err(StartRefused::RateLimited(wait));
        }
        match (parsed, prepared) {
            (_, Some(prepared)) => Ok(prepared.url),
            (Err(e), None) => Err(StartRefused::BadAddress(e.to_string())),
            (Ok(_), None) => Err(StartRefused::BadAddress(
                "That is already your address.".into(),
            )),
        }
    }

    /// Checks the broker's token, consumes its nonce and admits the member (or changes their
    /// address); counts and audits a refused token.
    pub async fn finish(
        &self,
        client: &awc::Client,
        answer: Answer<'_>,
    ) -> Result<Finished, FinishRefused> {
        let result = self.finish_counted(client, &answer).await;
        match &result {
            Ok(_) => self.metrics.signin_completed(),
            Err(refusal) => {
                if let Some(reason) = refusal.metric() {
                    self.metrics.signin_refused(reason);
                }
            }
        }
        result
    }

    async fn finish_counted(
        &self,
        client: &awc::Client,
        answer: &Answer<'_>,
    ) -> Result<Finished, FinishRefused> {
        let checked = match self.rp.check(client, answer.token).await {
            Ok(c) => c,
            Err(VerifyError::Rejected(r)) => return Err(self.refused(answer.network, r).await),
            Err(e) => return Err(e.into()),
        };
        // The address the broker vouched for (the token's signature and claims are good).
        let parsed = EmailAddress::parse(&checked.email).ok();
        // The common case in one round trip: a sign-in whose attempt is there to take, the
        // member admitted, the audit entry and the attempt consumed together (at most one
        // request gets it).
        if let Some(email) = &parsed {
            let take = Take {
                nonce: &checked.nonce,
                binding_hash: answer.binding_hash,
                sent: checked.email_original.as_deref().unwrap_or(&checked.email),
            };
            let taken = members::admit_taking(
                &self.db,
                &self.config,
                &self.mailer,
                &self.hasher,
                email,
                take,
                Some(answer.session),
            )
            .await?;
            if let Some((admission, next)) = taken {
                return self.admitted(admission, next);
            }
        }
        // For the page that offers to start again from this browser.
        let vouched = parsed.map_or_else(|| checked.email.clone(), |e| e.to_string());
        // Otherwise (an address change, or a refusal to explain) the nonce is consumed on its
        // own (one statement: at most one request gets it), then the member admitted with the
        // audit entry (one more). A failure between the two leaves a spent nonce and nobody
        // signed in: the visitor starts again.
        let verified = match self
            .rp
            .consume(&self.db, checked, answer.binding_hash)
            .await
        {
            Ok(v) => v,
            Err(VerifyError::Rejected(r)) => {
                return Err(match self.refused(answer.network, r).await {
                    // Opened on another device: the page offers to start again from this one.
                    FinishRefused::Token(
                        reason @ (Rejection::BindingMissing | Rejection::BindingMismatch),
                    ) => FinishRefused::StartedElsewhere {
                        reason,
                        email: vouched,
                    },
                    other => other,
                });
            }
            Err(e) => return Err(e.into()),
        };
        match &verified.purpose {
            Purpose::SignIn => {
                let admission = members::admit(
                    &self.db,
                    &self.config,
                    &self.mailer,
                    &self.hasher,
                    &verified.email,
                    Some(answer.session),
                )
                .await?;
                self.admitted(admission, verified.next_path.clone())
            }
            Purpose::ChangeEmail { member_id } => {
                // Only an active member's address changes (checked in the change itself).
                match members::change_email(&self.db, &self.hasher, member_id, &verified.email)
                    .await
                {
                    Ok(()) => Ok(Finished {
                        member_id: member_id.clone(),
                        next: "/account?notice=email".to_owned(),
                        session_stored: false,
                    }),
                    Err(ChangeError::NotFound) => Err(FinishRefused::Suspended),
                    Err(ChangeError::EmailTaken) => Err(FinishRefused::AddressTaken),
                    Err(e) => Err(FinishRefused::Change(e)),
                }
            }
        }
    }

    /// The sign-in that `admission` decided, to `next`.
    fn admitted(&self, admission: Admission, next: String) -> Result<Finished, FinishRefused> {
        match admission {
            Admission::Admitted {
                member,
                session_stored,
            } => {
                // A first sign-in may have added a name, activated an invited member, or made
                // an admin of an address in ADMIN_EMAILS.
                self.directory.signed_in();
                Ok(Finished {
                    member_id: member.id,
                    next,
                    session_stored,
                })
            }
            Admission::NotInvited => Err(FinishRefused::NotInvited),
            Admission::Pending => Err(FinishRefused::Pending),
            Admission::Suspended => Err(FinishRefused::Suspended),
        }
    }

    /// Counts a refused token against its client network and in the folded audit entry: the
    /// refusal, or "wait" once the network is over its limit.
    async fn refused(&self, network: &str, rejection: Rejection) -> FinishRefused {
        match self
            .gate
            .refused(&self.db, &self.config, network, rejection.name())
            .await
        {
            Ok(Some(wait)) => FinishRefused::RateLimited(wait),
            Ok(None) => FinishRefused::Token(rejection),
            Err(e) => FinishRefused::Database(e),
        }
    }
}
