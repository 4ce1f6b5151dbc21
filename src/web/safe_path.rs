//! Where a visitor may be sent after signing in: local paths only.

/// Where signed-in members land when no (usable) destination was asked for.
pub const DEFAULT_NEXT: &str = "/members";

/// Returns `raw` when it is a path on this site, `None` otherwise.
///
/// Refused: anything not starting with a single `/` (so `//evil.test` and `https://…` and
/// `javascript:`), backslashes (browsers read `/\evil.test` as `//evil.test`), control
/// characters, and the percent-encoded forms of all of these, which a later decoding step could
/// turn back into them.
pub fn local_path(raw: &str) -> Option<&str> {
    if raw.len() > 2048 || !raw.starts_with('/') {
        return None;
    }
    let decoded = percent_decode_repeatedly(raw)?;
    let bad_char = |c: char| c == '\\' || c.is_control();
    if raw.chars().any(bad_char) || decoded.chars().any(bad_char) {
        return None;
    }
    if raw.starts_with("//") || decoded.starts_with("//") {
        return None;
    }
    Some(raw)
}

/// `raw` when it is a local path, else [`DEFAULT_NEXT`].
pub fn next_or_default(raw: Option<&str>) -> &str {
    raw.and_then(local_path).unwrap_or(DEFAULT_NEXT)
}

/// Decodes `%XX` until nothing changes (at most a few rounds); `None` if it does not settle or
/// does not decode to UTF-8.
fn percent_decode_repeatedly(raw: &str) -> Option<String> {
    let mut current = raw.to_owned();
    for _ in 0..4 {
        let next = percent_decode(&current)?;
        if next == current {
            return Some(current);
        }
        current = next;
    }
    None
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_local_paths() {
        for ok in [
            "/",
            "/members",
            "/pages/notes?x=1#top",
            "/a%20b",
            "/caf%C3%A9",
        ] {
            assert_eq!(local_path(ok), Some(ok), "{ok}");
        }
    }

    #[test]
    fn refuses_everything_that_leaves_the_site() {
        for bad in [
            "",
            "members",
            "//evil.test",
            "/\\evil.test",
            "https://evil.test",
            "javascript:alert(1)",
            "%2F%2Fevil.test",
            "/%2Fevil.test",
            "/%5Cevil.test",
            "/%255Cevil.test",
            "/\tevil",
            "/%0D%0ALocation:%20x",
            "/%ff",
        ] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
        assert_eq!(next_or_default(Some("//evil.test")), DEFAULT_NEXT);
        assert_eq!(next_or_default(None), DEFAULT_NEXT);
    }
}
