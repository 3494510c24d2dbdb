//! Parsers of option values, for clap: each returns the one-line reason a
//! value is refused.

use std::time::Duration;

pub(super) fn parse_bucket(name: &str) -> Result<String, String> {
    if name.is_empty() {
        Err("the bucket name is empty".to_owned())
    } else if name.contains('/') {
        Err("a bucket name has no '/'; use --prefix to mount part of a bucket".to_owned())
    } else {
        Ok(name.to_owned())
    }
}

/// Keys never start with '/' in practice, and the prefix must end at a
/// directory boundary, or `logs` would also match `logs-old/`.
pub(super) fn parse_prefix(prefix: &str) -> Result<String, String> {
    let trimmed = prefix.trim_start_matches('/');
    if trimmed.is_empty() || trimmed.ends_with('/') {
        Ok(trimmed.to_owned())
    } else {
        Ok(format!("{trimmed}/"))
    }
}

pub(super) fn parse_mode(text: &str) -> Result<u16, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|d| (b'0'..=b'7').contains(&d)) {
        return Err("not an octal mode (digits 0-7, e.g. 0644)".to_owned());
    }
    match u16::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err("permission bits go up to 7777".to_owned()),
    }
}

pub(super) fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| "not a number of seconds (e.g. 1 or 0.5)".to_owned())?;
    if seconds.is_nan() || seconds < 0.0 {
        return Err("not a number of seconds (e.g. 1 or 0.5)".to_owned());
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| "too many seconds".to_owned())
}

/// What `--metadata-ttl indefinite` means: long enough never to expire
/// while mounted, short enough that adding it to a clock cannot overflow.
pub const INDEFINITE_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

pub(super) fn parse_ttl(text: &str) -> Result<Duration, String> {
    match text {
        "indefinite" => Ok(INDEFINITE_TTL),
        "minimal" => Ok(Duration::ZERO),
        _ => parse_seconds(text)
            .map(|ttl| ttl.min(INDEFINITE_TTL))
            .map_err(|_| {
                "not a number of seconds (e.g. 1 or 0.5), indefinite or minimal".to_owned()
            }),
    }
}

pub(super) fn parse_timeout(text: &str) -> Result<Duration, String> {
    match parse_seconds(text)? {
        Duration::ZERO => Err("a timeout must be above 0".to_owned()),
        timeout => Ok(timeout),
    }
}
