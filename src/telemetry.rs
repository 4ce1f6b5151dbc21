//! Logging setup.

use std::fmt::Write as _;

use actix_web::web;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{FmtSpan, Writer};

use crate::config::LogFormat;

/// Sends logs to standard error, as text or as one JSON object per line. `RUST_LOG` filters
/// (default: `info`, quieter for sqlx). Each request is logged once, when it ends, with its
/// id, route and status.
///
/// Every value is written escaped: a line break, carriage return or escape sequence in a value
/// that came from outside (the broker's `error_description`, a form, a header) appears as
/// `\n`, `\r` or `\u{1b}`, so that it cannot start a line of its own that looks like the
/// site's. JSON escapes them by itself; the text format does it in [`write_field`].
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,actix_server=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::CLOSE)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .fmt_fields(tracing_subscriber::fmt::format::debug_fn(write_field).delimited(" "))
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Writes one field of a text log line, `name=value` (the message bare), with every control
/// character in the value escaped.
fn write_field(
    writer: &mut Writer<'_>,
    field: &tracing::field::Field,
    value: &dyn std::fmt::Debug,
) -> std::fmt::Result {
    let mut text = String::new();
    write!(text, "{value:?}")?;
    if field.name() != "message" {
        write!(writer, "{}=", field.name())?;
    }
    writer.write_str(&escape_controls(&text))
}

/// `text` with each control character written as its Rust escape (`\n`, `\t`, `\u{1b}`).
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// The request span for `TracingLogger`: the standard fields (request id, route, client IP
/// by the trusted-proxy rule, status). Unlike the default builder it adds no event for error responses: `AppError`
/// already logs what matters at the right level, and the default would log the redirect to
/// the sign-in page as an error, with the whole error value (and any backtrace) in the line.
pub struct RequestSpan;

impl tracing_actix_web::RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &actix_web::dev::ServiceRequest) -> tracing::Span {
        let span = tracing_actix_web::root_span!(level = tracing::Level::INFO, request);
        if span.is_disabled() {
            return span;
        }
        // The client as the rate limits see it: `X-Forwarded-For` only from a trusted proxy
        // (the macro's default believes it from anyone).
        let trusted = request
            .app_data::<web::Data<crate::config::Config>>()
            .map(|c| c.trusted_proxies.clone())
            .unwrap_or_default();
        let client = crate::web::security::client_ip(request.request(), &trusted)
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        span.record("http.client_ip", client.as_str());
        span
    }

    fn on_request_end<B: actix_web::body::MessageBody>(
        span: tracing::Span,
        outcome: &Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>,
    ) {
        let status = match outcome {
            Ok(response) => response.status(),
            Err(error) => error.as_response_error().status_code(),
        };
        span.record("http.status_code", status.as_u16());
    }
}
