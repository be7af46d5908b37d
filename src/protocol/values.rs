//! Reading header values the way every protocol's rate-limit headers need.

use http::HeaderMap;

/// A header's value, trimmed, if it is present and visible ASCII.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

/// A Unix-seconds header (integer, or decimal rounded down).
pub fn header_seconds(headers: &HeaderMap, name: &str) -> Option<i64> {
    let text = header_str(headers, name)?;
    if let Ok(secs) = text.parse::<i64>() {
        return Some(secs);
    }
    let secs: f64 = text.parse().ok()?;
    secs.is_finite().then_some(secs.floor() as i64)
}

/// `retry-after` in whole seconds (rounded up), if it is a non-negative number.
pub fn retry_after(headers: &HeaderMap) -> Option<i64> {
    let secs: f64 = header_str(headers, "retry-after")?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some(secs.ceil() as i64)
}
