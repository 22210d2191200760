//! UTC calendar arithmetic: day and month numbers (the ledger's and replay's), dates, RFC 3339.

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let m = i64::from(m);
    let d = i64::from(d);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date (year, month 1-12, day 1-31) of a day number.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // d is 1..=31 and m 1..=12 by construction.
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// The system clock as Unix ms (0 before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// UTC day number of a Unix time in ms.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// Month number (`year * 12 + month - 1`, as the ledger counts) of a Unix time in ms.
pub fn month_of(ms: i64) -> i64 {
    let (y, m, _) = civil_from_days(day_of(ms));
    y * 12 + i64::from(m) - 1
}

/// `YYYY-MM-DD` of a day number.
pub fn date_string(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time in ms, with `.mmm` when the milliseconds are not 0.
pub fn rfc3339(ms: i64) -> String {
    let day = day_of(ms);
    let in_day = ms.rem_euclid(DAY_MS);
    let secs = in_day / 1000;
    let millis = in_day % 1000;
    let frac = if millis == 0 {
        String::new()
    } else {
        format!(".{millis:03}")
    };
    format!(
        "{}T{:02}:{:02}:{:02}{frac}Z",
        date_string(day),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn digits(s: &str, what: &str) -> Result<i64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad {what} {s:?}"));
    }
    s.parse::<i64>()
        .map_err(|e| format!("bad {what} {s:?}: {e}"))
}

/// Parses an RFC 3339 timestamp (`2026-01-05T09:30:00Z`, `…+02:00`, fractional seconds,
/// a space instead of `T`) into Unix ms.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let err = |m: String| format!("timestamp {s:?} is not RFC 3339: {m}");
    if !s.is_ascii() {
        return Err(err("non-ASCII characters".into()));
    }
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(err("expected YYYY-MM-DDTHH:MM:SS and a zone".into()));
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(err("expected HH:MM:SS".into()));
    }
    let year = digits(&s[0..4], "year").map_err(err)?;
    let month = digits(&s[5..7], "month").map_err(err)?;
    let day = digits(&s[8..10], "day").map_err(err)?;
    let hour = digits(&s[11..13], "hour").map_err(err)?;
    let minute = digits(&s[14..16], "minute").map_err(err)?;
    let second = digits(&s[17..19], "second").map_err(err)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(err("date out of range".into()));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(err("time out of range".into()));
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let end = frac
            .bytes()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        if end == 0 {
            return Err(err("empty fraction".into()));
        }
        let mut ms_digits: String = frac[..end].chars().take(3).collect();
        while ms_digits.len() < 3 {
            ms_digits.push('0');
        }
        millis = digits(&ms_digits, "fraction").map_err(err)?;
        rest = &frac[end..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            if rest.as_bytes()[3] != b':' {
                return Err(err("bad zone offset".into()));
            }
            let h = digits(&rest[1..3], "zone hour").map_err(err)?;
            let m = digits(&rest[4..6], "zone minute").map_err(err)?;
            let off = h * 60 + m;
            if rest.starts_with('-') { -off } else { off }
        }
        _ => return Err(err(format!("bad zone {rest:?}"))),
    };
    // month and day were range-checked above.
    let days = days_from_civil(
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    );
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    Ok(secs * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for days in [-1000, 0, 1, 59, 60, 365, 10_957, 20_454, 40_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(date_string(0), "1970-01-01");
        assert_eq!(days_from_civil(2026, 1, 1), 20_454);
    }

    #[test]
    fn parses_rfc3339_variants() {
        let base = days_from_civil(2026, 1, 5) * DAY_MS + 9 * 3_600_000 + 30 * 60_000;
        assert_eq!(parse_rfc3339("2026-01-05T09:30:00Z"), Ok(base));
        assert_eq!(parse_rfc3339("2026-01-05T09:30:00.250Z"), Ok(base + 250));
        assert_eq!(parse_rfc3339("2026-01-05T11:30:00+02:00"), Ok(base));
        assert_eq!(parse_rfc3339("2026-01-05 09:30:00.5z"), Ok(base + 500));
        assert!(parse_rfc3339("2026-01-05").is_err());
        assert!(parse_rfc3339("2026-13-05T09:30:00Z").is_err());
        assert!(parse_rfc3339("2026-01-05T09:30:00").is_err());
        assert!(parse_rfc3339("2026-01-05T09:30:00+0200").is_err());
        assert_eq!(rfc3339(base), "2026-01-05T09:30:00Z");
        assert_eq!(rfc3339(base + 250), "2026-01-05T09:30:00.250Z");
        assert_eq!(parse_rfc3339(&rfc3339(base + 7)), Ok(base + 7));
    }

    #[test]
    fn months_follow_the_ledger() {
        let jan31 = days_from_civil(2026, 1, 31) * DAY_MS;
        assert_eq!(month_of(jan31), 2026 * 12);
        assert_eq!(month_of(jan31 + DAY_MS), 2026 * 12 + 1);
    }
}
