//! Email addresses as Portier sees them.

use std::fmt;

/// The longest address we accept (RFC 5321's path limit less the angle brackets).
pub const MAX_LENGTH: usize = 254;

/// An address that passed the checks the broker also makes, held in normalized form:
/// local part lowercased (Unicode), domain converted to ASCII through IDNA.
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
    /// The domain is an IP address, which Portier does not accept.
    #[error("Please use an address at a domain name, not at an IP address.")]
    IpLiteral,
    /// IDNA refused the domain, or it has a single label (`alice@localhost`).
    #[error("The part after the @ is not a domain name that can receive email.")]
    BadDomain,
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
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) {
            return Err(EmailError::BadDomain);
        }
        let normalized = format!("{}@{}", local.to_lowercase(), domain);
        if normalized.chars().count() > MAX_LENGTH {
            return Err(EmailError::TooLong);
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
        // The last @ separates the domain.
        let e = EmailAddress::parse("\"a@b\"@example.com").unwrap();
        assert_eq!(e.domain(), "example.com");
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

    #[test]
    fn debug_output_hides_the_local_part() {
        let e = EmailAddress::parse("secret.person@example.com").unwrap();
        assert!(!format!("{e:?}").contains("secret"));
    }
}
