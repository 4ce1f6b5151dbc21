//! The Portier relying party: start a sign-in at the broker, and finish it with the token the
//! broker posts back. Used by the web routes and by the conformance adapter alike.

pub mod broker;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use url::Url;

use crate::db::{self, Db, login_attempts::LoginAttempt};
use crate::email::EmailAddress;
pub use broker::{Broker, BrokerError};
pub use token::{CheckError, CheckedToken, Rejection};

/// How long a started sign-in stays usable: the broker's own session lifetime.
pub const ATTEMPT_TTL: Duration = Duration::from_secs(15 * 60);

/// This site as a Portier client.
pub struct RelyingParty {
    pool: Db,
    broker: Arc<Broker>,
    client_id: String,
    redirect_uri: String,
}

/// A sign-in that could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The broker's discovery document could not be had.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The broker published an authorization endpoint that is not a URL.
    #[error("the broker's authorization_endpoint is not a URL: {0}")]
    BadEndpoint(String),
    /// The attempt could not be stored.
    #[error("could not store the login attempt")]
    Database(#[from] sqlx::Error),
}

/// A sign-in that could not be finished.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The token or its sign-in is not acceptable.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The broker's keys could not be fetched.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The nonce could not be looked up.
    #[error("could not look up the login attempt")]
    Database(#[from] sqlx::Error),
}

impl From<CheckError> for VerifyError {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::Rejected(r) => VerifyError::Rejected(r),
            CheckError::Broker(b) => VerifyError::Broker(b),
        }
    }
}

/// What a login attempt is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// Signing in.
    SignIn,
    /// Confirming a new address for this member.
    ChangeEmail {
        /// The member whose address changes.
        member_id: String,
    },
}

/// What a sign-in is started for.
#[derive(Debug, Clone, Copy)]
pub struct AttemptFor<'a> {
    /// The address as the visitor typed it; the broker gets it as typed.
    pub login_hint: &'a str,
    /// Where to go afterwards: must already be a safe local path.
    pub next_path: &'a str,
    /// The `state` to send the broker, if any.
    pub state: Option<&'a str>,
    /// With it, only a request presenting the same binding cookie can finish the sign-in.
    pub binding_hash: Option<&'a str>,
    /// Signing in, or confirming a new address.
    pub purpose: &'a Purpose,
}

/// A sign-in ready to start: the attempt to store, and the broker URL that carries its nonce.
#[derive(Debug)]
pub struct Prepared {
    /// The attempt, not stored yet.
    pub attempt: LoginAttempt,
    /// Where to send the visitor once it is stored.
    pub url: Url,
}

/// A finished sign-in: who, what for, and where they wanted to go.
#[derive(Debug, Clone)]
pub struct Verified {
    /// What the attempt was started for.
    pub purpose: Purpose,
    /// The address as the broker normalized it (the `email` claim).
    pub email: EmailAddress,
    /// The `email` claim exactly as the broker sent it.
    pub email_claim: String,
    /// The local path stored when the sign-in started.
    pub next_path: String,
}

impl RelyingParty {
    /// A relying party with origin `client_id` (our `PUBLIC_URL`) trusting `broker`.
    pub fn new(pool: Db, broker: Arc<Broker>, client_id: &str) -> RelyingParty {
        RelyingParty {
            pool,
            broker,
            client_id: client_id.to_owned(),
            redirect_uri: format!("{client_id}/verify"),
        }
    }

    /// Whether the broker's discovery document is cached or can be fetched now.
    pub async fn broker_ready(&self, client: &awc::Client) -> Result<(), BrokerError> {
        self.broker.discovery(client).await.map(|_| ())
    }

    /// How often the broker's documents were fetched, for the metrics page.
    pub fn broker_fetches(&self) -> crate::domain::metrics::BrokerFetches {
        self.broker.fetches()
    }

    /// Stores a new attempt for `request` and returns the broker URL to send the visitor to.
    pub async fn start(
        &self,
        client: &awc::Client,
        request: &AttemptFor<'_>,
    ) -> Result<Url, StartError> {
        let prepared = self.prepare(client, request).await?;
        db::login_attempts::insert(&self.pool, &prepared.attempt).await?;
        Ok(prepared.url)
    }

    /// [`RelyingParty::start`] without storing the attempt: the caller stores it (with the
    /// rate limits, in one round trip) before sending the visitor to `url`.
    pub async fn prepare(
        &self,
        client: &awc::Client,
        request: &AttemptFor<'_>,
    ) -> Result<Prepared, StartError> {
        let AttemptFor {
            login_hint,
            next_path,
            state,
            binding_hash,
            purpose,
        } = *request;
        // Ask the broker first: if it is unreachable, nothing is stored.
        let discovery = self.broker.discovery(client).await?;
        let mut url = Url::parse(&discovery.authorization_endpoint)
            .map_err(|_| StartError::BadEndpoint(discovery.authorization_endpoint.clone()))?;

        let mut raw = [0u8; 24];
        rand::rng().fill_bytes(&mut raw);
        let nonce = URL_SAFE_NO_PAD.encode(raw);
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("login_hint", login_hint)
                .append_pair("scope", "openid email")
                .append_pair("nonce", &nonce)
                .append_pair("response_type", "id_token")
                .append_pair("response_mode", "form_post")
                .append_pair("client_id", &self.client_id)
                .append_pair("redirect_uri", &self.redirect_uri);
            if let Some(state) = state {
                query.append_pair("state", state);
            }
        }
        let now = db::now();
        let attempt = LoginAttempt {
            nonce,
            email: login_hint.to_owned(),
            next_path: next_path.to_owned(),
            created_at: now,
            expires_at: now + ATTEMPT_TTL.as_secs() as i64,
            binding_hash: binding_hash.map(str::to_owned),
            purpose: match purpose {
                Purpose::SignIn => "sign_in".to_owned(),
                Purpose::ChangeEmail { .. } => "change_email".to_owned(),
            },
            member_id: match purpose {
                Purpose::SignIn => None,
                Purpose::ChangeEmail { member_id } => Some(member_id.clone()),
            },
        };
        Ok(Prepared { attempt, url })
    }

    /// Checks `id_token` completely and consumes its nonce. Succeeds at most once per nonce,
    /// however many requests carry the token at the same time. `binding_hash` is the hash of
    /// the binding cookie the request carries; a refused binding leaves the attempt unused,
    /// so the browser that started it can still finish it.
    pub async fn verify(
        &self,
        client: &awc::Client,
        id_token: &str,
        binding_hash: Option<&str>,
    ) -> Result<Verified, VerifyError> {
        let checked = self.check(client, id_token).await?;
        self.consume(&self.pool, checked, binding_hash).await
    }

    /// The first half of [`RelyingParty::verify`]: everything about the token but its nonce.
    /// Needs no database.
    pub async fn check(
        &self,
        client: &awc::Client,
        id_token: &str,
    ) -> Result<CheckedToken, VerifyError> {
        Ok(token::check(&self.broker, client, &self.client_id, id_token, db::now()).await?)
    }

    /// The second half of [`RelyingParty::verify`]: consumes the nonce of a checked token (one
    /// statement when it is good).
    pub async fn consume(
        &self,
        db: &Db,
        checked: CheckedToken,
        binding_hash: Option<&str>,
    ) -> Result<Verified, VerifyError> {
        let now = db::now();
        let Some(attempt) = db::login_attempts::take(db, &checked.nonce, binding_hash).await?
        else {
            let stored = db::login_attempts::exists(db, &checked.nonce).await?;
            return Err(match (stored, binding_hash) {
                (false, _) => Rejection::UnknownNonce,
                (true, None) => Rejection::BindingMissing,
                (true, Some(_)) => Rejection::BindingMismatch,
            }
            .into());
        };
        if attempt.expires_at <= now {
            return Err(Rejection::ExpiredNonce.into());
        }
        // The nonce was issued for the address we sent; the broker echoes it in email_original
        // (or, from brokers that do not normalize, in email itself).
        let sent = checked.email_original.as_deref().unwrap_or(&checked.email);
        if sent != attempt.email {
            return Err(Rejection::EmailMismatch.into());
        }
        let email = EmailAddress::parse(&checked.email).map_err(|_| Rejection::BadEmail)?;
        let purpose = match (attempt.purpose.as_str(), attempt.member_id) {
            ("change_email", Some(member_id)) => Purpose::ChangeEmail { member_id },
            _ => Purpose::SignIn,
        };
        Ok(Verified {
            purpose,
            email,
            email_claim: checked.email,
            next_path: attempt.next_path,
        })
    }
}
