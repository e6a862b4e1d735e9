//! The `--as-of` moment: RFC 3339 (`2026-12-01T09:30:00Z`), `now`, or a relative time
//! such as `2 days ago`, `90 minutes ago`, `1 week ago`.

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// Parses `spec` relative to `now`; the error is one line naming the value.
pub fn parse(spec: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    let s = spec.trim();
    if s.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let bad = || {
        format!(
            "--as-of {spec:?} is neither an RFC 3339 time (2026-12-01T09:30:00Z) nor a relative time (\"2 days ago\")"
        )
    };
    let words: Vec<&str> = s.split_whitespace().collect();
    let [n, unit, "ago"] = words.as_slice() else {
        return Err(bad());
    };
    let n: i64 = n.parse().map_err(|_| bad())?;
    if n < 0 {
        return Err(bad());
    }
    let secs = match unit.trim_end_matches('s') {
        "second" | "sec" => 1,
        "minute" | "min" => 60,
        "hour" => 3600,
        "day" => 86_400,
        "week" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(secs)
        .and_then(|s| now.checked_sub(Duration::seconds(s)))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_relative_and_bad() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        assert_eq!(parse("now", now).unwrap(), now);
        assert_eq!(
            parse("2 days ago", now).unwrap().unix_timestamp(),
            1_000_000 - 2 * 86_400
        );
        assert_eq!(
            parse("1 hour ago", now).unwrap().unix_timestamp(),
            1_000_000 - 3600
        );
        assert_eq!(
            parse("1970-01-02T00:00:00Z", now).unwrap().unix_timestamp(),
            86_400
        );
        let e = parse("yesterday-ish", now).unwrap_err();
        assert!(e.contains("--as-of \"yesterday-ish\""), "{e}");
        assert!(parse("3 fortnights ago", now).is_err());
    }
}
