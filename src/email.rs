//! Email addresses as Portier sees them.

use std::fmt;

/// The longest address we accept (RFC 5321's path limit less the angle brackets).
pub const MAX_LENGTH: usize = 254;

/// An address that passed exactly the checks the broker makes, held in normalized form:
/// local part lowercased (Unicode), domain converted to ASCII through IDNA.
///
/// The checks follow portier_broker's own `EmailAddress::from_str` (Portier's
/// Email-Normalization spec, then the `email_address` crate with at least two domain labels,
/// no domain literal and no display name), so an address stored here (an invitation, an
/// import, `ADMIN_EMAILS`) is one its owner can sign in with.
///
/// `BJÖRN@göteborg.test` becomes `björn@xn--gteborg-90a.test`. This is the form the broker
/// puts in the `email` claim, so it is the form we store and compare.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

/// Why an address was refused; the text is shown to the visitor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Nothing was typed.
    #[error("Please enter your email address.")]
    Empty,
    /// More than [`MAX_LENGTH`] characters.
    #[error("That address is too long.")]
    TooLong,
    /// No `@`, or nothing before or after it.
    #[error("That does not look like an email address: it needs a name, an @ and a domain.")]
    Malformed,
    /// Spaces or control characters.
    #[error("An email address cannot contain spaces or control characters.")]
    BadCharacter,
    /// Characters an address cannot have (quotes, brackets, commas and the like outside a
    /// quoted local part).
    #[error("That address contains characters an email address cannot have.")]
    InvalidCharacters,
    /// The part before the `@` is longer than 64 characters.
    #[error("The part before the @ is too long (at most 64 characters).")]
    LocalPartTooLong,
    /// The domain is an IP address, which Portier does not accept.
    #[error("Please use an address at a domain name, not at an IP address.")]
    IpLiteral,
    /// IDNA refused the domain, or it has a single label (`alice@localhost`), an empty or too
    /// long label, or characters a domain name cannot have.
    #[error("The part after the @ is not a domain name that can receive email.")]
    BadDomain,
}

/// Characters that make a domain invalid even where IDNA lets them through (the broker's
/// list, from the WHATWG URL host rules).
fn is_invalid_domain_char(c: char) -> bool {
    matches!(
        c,
        '\0' | '\t' | '\n' | '\r' | ' ' | '#' | '%' | '/' | ':' | '?' | '@' | '[' | '\\' | ']'
    )
}

impl From<email_address::Error> for EmailError {
    fn from(e: email_address::Error) -> Self {
        use email_address::Error as E;
        match e {
            E::MissingSeparator | E::LocalPartEmpty => EmailError::Malformed,
            E::LocalPartTooLong => EmailError::LocalPartTooLong,
            E::DomainEmpty
            | E::DomainTooFew
            | E::SubDomainEmpty
            | E::DomainTooLong
            | E::SubDomainTooLong
            | E::DomainInvalidSeparator => EmailError::BadDomain,
            E::UnsupportedDomainLiteral | E::InvalidIPAddress => EmailError::IpLiteral,
            E::InvalidCharacter
            | E::UnbalancedQuotes
            | E::InvalidComment
            | E::UnsupportedDisplayName
            | E::MissingDisplayName
            | E::MissingEndBracket => EmailError::InvalidCharacters,
        }
    }
}

impl EmailAddress {
    /// Validates and normalizes an address typed by a person (surrounding space is ignored).
    pub fn parse(raw: &str) -> Result<EmailAddress, EmailError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(EmailError::Empty);
        }
        if raw.chars().count() > MAX_LENGTH {
            return Err(EmailError::TooLong);
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmailError::BadCharacter);
        }
        let (local, domain) = raw.rsplit_once('@').ok_or(EmailError::Malformed)?;
        if local.is_empty() || domain.is_empty() {
            return Err(EmailError::Malformed);
        }
        if domain.starts_with('[') || domain.parse::<std::net::IpAddr>().is_ok() {
            return Err(EmailError::IpLiteral);
        }
        let domain = idna::domain_to_ascii(domain).map_err(|_| EmailError::BadDomain)?;
        if domain.parse::<std::net::Ipv4Addr>().is_ok() {
            return Err(EmailError::IpLiteral);
        }
        if domain.contains(is_invalid_domain_char) {
            return Err(EmailError::BadDomain);
        }
        let normalized = format!("{}@{}", local.to_lowercase(), domain);
        if normalized.chars().count() > MAX_LENGTH {
            return Err(EmailError::TooLong);
        }
        // The broker also asks its resolver about the domain, which refuses labels that are
        // not letters, digits and inner hyphens (`exa_mple.com`); and it sends its mail with
        // lettre, which cannot address a quoted local part (`"a@b"@example.com`: the broker
        // fails there, below). Neither address can ever sign in.
        let ldh = domain.split('.').all(|label| {
            label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
        if !ldh {
            return Err(EmailError::BadDomain);
        }
        // What the broker checks last, the same way.
        email_address::EmailAddress::parse_with_options(
            &normalized,
            email_address::Options {
                minimum_sub_domains: 2,
                allow_domain_literal: false,
                allow_display_text: false,
            },
        )?;
        if local.contains(['"', '\\']) {
            return Err(EmailError::InvalidCharacters);
        }
        Ok(EmailAddress(normalized))
    }

    /// The normalized address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after the `@`, in ASCII.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EmailAddress {
    // Addresses are personal data: debug output (and so logs) shows only the domain.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress(…@{})", self.domain())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_the_broker() {
        let e = EmailAddress::parse(" BJÖRN@göteborg.test ").unwrap();
        assert_eq!(e.as_str(), "björn@xn--gteborg-90a.test");
        let e = EmailAddress::parse("İⅢ@İⅢ.example").unwrap();
        assert_eq!(e.as_str(), "i̇ⅲ@xn--iiii-qwc.example");
        let e = EmailAddress::parse("John.Doe+club@Gmail.com").unwrap();
        assert_eq!(e.as_str(), "john.doe+club@gmail.com");
        // The last @ separates the domain (and a quoted local part is refused: see the table).
        assert_eq!(
            EmailAddress::parse("\"a@b\"@example.com"),
            Err(EmailError::InvalidCharacters)
        );
    }

    #[test]
    fn refuses_what_the_broker_refuses() {
        assert_eq!(EmailAddress::parse(""), Err(EmailError::Empty));
        assert_eq!(EmailAddress::parse("alice"), Err(EmailError::Malformed));
        assert_eq!(
            EmailAddress::parse("@example.com"),
            Err(EmailError::Malformed)
        );
        assert_eq!(EmailAddress::parse("alice@"), Err(EmailError::Malformed));
        assert_eq!(
            EmailAddress::parse("alice@localhost"),
            Err(EmailError::BadDomain)
        );
        assert_eq!(
            EmailAddress::parse("alice@[127.0.0.1]"),
            Err(EmailError::IpLiteral)
        );
        assert_eq!(
            EmailAddress::parse("alice@127.0.0.1"),
            Err(EmailError::IpLiteral)
        );
        assert_eq!(
            EmailAddress::parse("al ice@example.com"),
            Err(EmailError::BadCharacter)
        );
        assert_eq!(
            EmailAddress::parse("a@exa..mple.com"),
            Err(EmailError::BadDomain)
        );
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(EmailAddress::parse(&long), Err(EmailError::TooLong));
    }

    /// The spec's examples and what portier_broker 0.15.1 refuses, address by address: the
    /// normalized form for those it accepts, the reason for those it refuses.
    #[test]
    fn the_broker_s_table() {
        use EmailError::*;
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_label = format!("a@{}.com", "b".repeat(64));
        let cases: &[(&str, Result<&str, EmailError>)] = &[
            // Portier's Email-Normalization spec.
            ("example.user@example.com", Ok("example.user@example.com")),
            ("EXAMPLE.USER@EXAMPLE.COM", Ok("example.user@example.com")),
            ("BJÖRN@göteborg.test", Ok("björn@xn--gteborg-90a.test")),
            ("İⅢ@İⅢ.example", Ok("i̇ⅲ@xn--iiii-qwc.example")),
            ("Example.User@Gmail.com", Ok("example.user@gmail.com")),
            (
                "o'brien+club@example.co.uk",
                Ok("o'brien+club@example.co.uk"),
            ),
            ("\"a@b\"@example.com", Err(InvalidCharacters)),
            // Refused by the broker, so refused here.
            ("", Err(Empty)),
            ("alice", Err(Malformed)),
            ("@example.com", Err(Malformed)),
            ("alice@", Err(Malformed)),
            ("alice@localhost", Err(BadDomain)),
            ("alice@[127.0.0.1]", Err(IpLiteral)),
            ("alice@127.0.0.1", Err(IpLiteral)),
            ("alice@exa..mple.com", Err(BadDomain)),
            ("alice@.example.com", Err(BadDomain)),
            ("al ice@example.com", Err(BadCharacter)),
            ("someone@example.com%'", Err(BadDomain)),
            ("someone@example.com'x<'\">)", Err(BadDomain)),
            ("some<one>@example.com", Err(InvalidCharacters)),
            ("some,one@example.com", Err(InvalidCharacters)),
            ("some\"one@example.com", Err(InvalidCharacters)),
            ("a@exa_mple.com", Err(BadDomain)),
            ("a@-example.com", Err(BadDomain)),
            ("a@example-.com", Err(BadDomain)),
            ("a@my-club.example.org", Ok("a@my-club.example.org")),
            (&long_local, Err(LocalPartTooLong)),
            (&long_label, Err(BadDomain)),
        ];
        for (raw, want) in cases {
            let got = EmailAddress::parse(raw);
            match (want, &got) {
                (Ok(normalized), Ok(e)) => assert_eq!(e.as_str(), *normalized, "{raw:?}"),
                (Err(reason), Err(got_reason)) => assert_eq!(got_reason, reason, "{raw:?}"),
                _ => panic!("{raw:?}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn debug_output_hides_the_local_part() {
        let e = EmailAddress::parse("secret.person@example.com").unwrap();
        assert!(!format!("{e:?}").contains("secret"));
    }
}
