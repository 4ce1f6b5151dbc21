//! Checking an id_token from the broker: everything but the nonce, which needs the database.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::broker::{Broker, BrokerError};

/// Clock difference we tolerate on `exp` and `iat`, as the Portier clients do.
pub const LEEWAY_SECS: u64 = 180;
/// Longest token we look at; the broker's are about 1 KiB.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Why a token (or the sign-in it should finish) was refused. Each is logged by name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not a JWT, or its JSON is not what the broker sends.
    #[error("the token is malformed")]
    Malformed,
    /// The header names an algorithm other than RS256 (`none`, `HS256`, `RS384`, …).
    #[error("the token uses an algorithm we do not accept ({0})")]
    Algorithm(String),
    /// The header has no `kid`, or the broker does not publish that key.
    #[error("the token is signed with a key the broker does not publish")]
    UnknownKey,
    /// The signature does not match the key.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// `iss` is not our broker.
    #[error("the token was issued by another broker")]
    WrongIssuer,
    /// `aud` is not this site.
    #[error("the token was issued for another site")]
    WrongAudience,
    /// `exp` is past, beyond the leeway.
    #[error("the token has expired")]
    Expired,
    /// `iat` is in the future, beyond the leeway.
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// A claim we need is absent or of the wrong type.
    #[error("the token lacks the {0} claim")]
    MissingClaim(&'static str),
    /// The `email` claim is not an address.
    #[error("the token's email claim is not a usable address")]
    BadEmail,
    /// No sign-in was started with this nonce, or it was already used.
    #[error("the sign-in is unknown or was already finished")]
    UnknownNonce,
    /// The sign-in was started too long ago.
    #[error("the sign-in was started too long ago")]
    ExpiredNonce,
    /// The sign-in is bound to a browser, and this request carries no binding cookie.
    #[error("the sign-in was started in a browser whose cookie this request does not carry")]
    BindingMissing,
    /// The sign-in is bound to another browser.
    #[error("the sign-in was started in another browser")]
    BindingMismatch,
    /// The token is for another address than the one the sign-in was started with.
    #[error("the token is for another address than the sign-in was started with")]
    EmailMismatch,
}

impl Rejection {
    /// A short snake_case name for metrics and logs (no token data).
    pub fn name(&self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::Algorithm(_) => "algorithm",
            Rejection::UnknownKey => "unknown_key",
            Rejection::BadSignature => "bad_signature",
            Rejection::WrongIssuer => "wrong_issuer",
            Rejection::WrongAudience => "wrong_audience",
            Rejection::Expired => "expired",
            Rejection::IssuedInFuture => "issued_in_future",
            Rejection::MissingClaim(_) => "missing_claim",
            Rejection::BadEmail => "bad_email",
            Rejection::UnknownNonce => "unknown_nonce",
            Rejection::ExpiredNonce => "expired_nonce",
            Rejection::BindingMissing => "binding_missing",
            Rejection::BindingMismatch => "binding_mismatch",
            Rejection::EmailMismatch => "email_mismatch",
        }
    }
}

/// The claims of a token that passed every check but the nonce.
#[derive(Debug, Clone)]
pub struct CheckedToken {
    /// The normalized address the broker vouches for.
    pub email: String,
    /// The address as we sent it, when the broker says.
    pub email_original: Option<String>,
    /// The nonce, to be matched with a login attempt.
    pub nonce: String,
}

#[derive(Deserialize)]
struct Claims {
    iat: Option<serde_json::Number>,
    nonce: Option<String>,
    email: Option<String>,
    email_original: Option<String>,
}

/// A failure to check a token: a refusal, or a broker we could not ask for keys.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The token is not acceptable.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The broker's keys could not be fetched.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// Checks signature, algorithm, issuer, audience, expiry and issue time of `token`.
pub async fn check(
    broker: &Broker,
    client: &awc::Client,
    audience: &str,
    token: &str,
    now: i64,
) -> Result<CheckedToken, CheckError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Rejection::Malformed.into());
    }
    let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
        ErrorKind::InvalidAlgorithmName => Rejection::Algorithm("unknown".into()),
        _ => Rejection::Malformed,
    })?;
    if header.alg != Algorithm::RS256 {
        return Err(Rejection::Algorithm(format!("{:?}", header.alg)).into());
    }
    let kid = header.kid.ok_or(Rejection::UnknownKey)?;
    let key = broker
        .key(client, &kid)
        .await?
        .ok_or(Rejection::UnknownKey)?;
    // The header's algorithm must be the one the key is published for.
    if key.algorithm != header.alg {
        return Err(Rejection::Algorithm(format!("{:?}", header.alg)).into());
    }

    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = LEEWAY_SECS;
    validation.set_issuer(&[broker.origin()]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation).map_err(|e| match e
        .kind()
    {
        ErrorKind::InvalidSignature => Rejection::BadSignature,
        ErrorKind::InvalidIssuer => Rejection::WrongIssuer,
        ErrorKind::InvalidAudience => Rejection::WrongAudience,
        ErrorKind::ExpiredSignature => Rejection::Expired,
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => Rejection::MissingClaim("iss"),
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => Rejection::MissingClaim("aud"),
        ErrorKind::MissingRequiredClaim(_) => Rejection::MissingClaim("exp"),
        ErrorKind::InvalidClaimFormat(_) => Rejection::Malformed,
        _ => Rejection::Malformed,
    })?;
    let claims = data.claims;

    // jsonwebtoken does not look at iat; it may be an integer or a float.
    let iat = claims
        .iat
        .and_then(|n| n.as_f64())
        .ok_or(Rejection::MissingClaim("iat"))?;
    if iat > (now as f64) + LEEWAY_SECS as f64 {
        return Err(Rejection::IssuedInFuture.into());
    }
    let nonce = claims.nonce.ok_or(Rejection::MissingClaim("nonce"))?;
    let email = claims.email.ok_or(Rejection::MissingClaim("email"))?;
    Ok(CheckedToken {
        email,
        email_original: claims.email_original,
        nonce,
    })
}
