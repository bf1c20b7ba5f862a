//! ModSecurity timestamps: `dd/Mon/YYYY:HH:MM:SS[.uuuuuu] ±HHMM`.
//!
//! ModSecurity 2 prints the UTC offset as a sign followed by `%.2d` of the *signed*
//! hours and minutes, so zones west of UTC come out with a doubled sign (`--0500`) and
//! half-hour zones west of UTC as `--03-30` (ARCHITECTURE.md, "The formats we read"). Any `-` in the
//! offset means "west of UTC"; the digits are the magnitude. Microseconds exist from
//! 2.9.4 on; libmodsecurity 3 prints none.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use thiserror::Error;

/// A timestamp that is not in ModSecurity's format; the text says which part is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("bad timestamp `{text}`: {why}")]
pub struct TimeError {
    /// The timestamp as found (lossy UTF-8).
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Parses `28/Nov/2026:02:14:31.009836 +0000` (the text between the brackets).
pub fn parse_modsec_time(text: &[u8]) -> Result<DateTime<FixedOffset>, TimeError> {
    let err = |why| TimeError {
        text: String::from_utf8_lossy(text).into_owned(),
        why,
    };
    let (stamp, offset) = match text.iter().position(|&b| b == b' ') {
        Some(sp) => (&text[..sp], &text[sp + 1..]),
        None => return Err(err("no UTC offset after the time")),
    };
    let naive = parse_local(stamp).map_err(err)?;
    let offset = parse_offset(offset).map_err(err)?;
    naive
        .and_local_timezone(offset)
        .single()
        .ok_or_else(|| err("time out of range"))
}

/// Parses `dd/Mon/YYYY:HH:MM:SS[.f{1,9}]`.
fn parse_local(s: &[u8]) -> Result<NaiveDateTime, &'static str> {
    if s.len() < 20
        || s[2] != b'/'
        || s[6] != b'/'
        || s[11] != b':'
        || s[14] != b':'
        || s[17] != b':'
    {
        return Err("expected dd/Mon/YYYY:HH:MM:SS");
    }
    let day = digits(&s[0..2]).ok_or("day is not two digits")?;
    let month = MONTHS
        .iter()
        .position(|m| m.as_slice() == &s[3..6])
        .ok_or("unknown month name")? as u32
        + 1;
    let year = digits(&s[7..11]).ok_or("year is not four digits")?;
    let hour = digits(&s[12..14]).ok_or("hour is not two digits")?;
    let min = digits(&s[15..17]).ok_or("minute is not two digits")?;
    let sec = digits(&s[18..20]).ok_or("second is not two digits")?;
    let nanos = match &s[20..] {
        [] => 0,
        [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => {
            let value = digits(frac).ok_or("fraction of a second is not digits")?;
            value * 10u32.pow(9 - frac.len() as u32)
        }
        _ => return Err("unexpected text after the seconds"),
    };
    let date = NaiveDate::from_ymd_opt(year as i32, month, day).ok_or("no such date")?;
    let time = NaiveTime::from_hms_nano_opt(hour, min, sec, nanos).ok_or("no such time of day")?;
    Ok(NaiveDateTime::new(date, time))
}

/// Parses `+0000`, `+0530`, `-0500`, `--0500`, `--03-30`.
fn parse_offset(s: &[u8]) -> Result<FixedOffset, &'static str> {
    let signs = s.iter().take_while(|&&b| b == b'+' || b == b'-').count();
    if signs == 0 || signs > 2 {
        return Err("UTC offset must start with + or - (ModSecurity may double it: --0500)");
    }
    let mut negative = s[..signs].contains(&b'-');
    let rest = &s[signs..];
    let (hh, mm) = match rest {
        [h1, h2, b'-', m1, m2] => {
            negative = true;
            ([*h1, *h2], [*m1, *m2])
        }
        [h1, h2, m1, m2] => ([*h1, *h2], [*m1, *m2]),
        _ => return Err("UTC offset must be HHMM after the sign"),
    };
    let hours = digits(&hh).ok_or("UTC offset hours are not digits")?;
    let minutes = digits(&mm).ok_or("UTC offset minutes are not digits")?;
    if hours > 23 || minutes > 59 {
        return Err("UTC offset out of range");
    }
    let secs = (hours * 3600 + minutes * 60) as i32;
    FixedOffset::east_opt(if negative { -secs } else { secs }).ok_or("UTC offset out of range")
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
}

/// Parses libmodsecurity 3's JSON `time_stamp`, written with `%c` in the C locale
/// (`Sat Nov 28 02:13:43 2026`): local time with no offset at all.
pub fn parse_ctime(text: &str) -> Option<NaiveDateTime> {
    // `%c` pads the day with a space ("Nov  8"); fold runs of spaces first.
    let folded = text.split_whitespace().collect::<Vec<_>>().join(" ");
    NaiveDateTime::parse_from_str(&folded, "%a %b %d %H:%M:%S %Y").ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn utc(text: &str) -> String {
        parse_modsec_time(text.as_bytes())
            .unwrap()
            .with_timezone(&Utc)
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string()
    }

    #[test]
    fn microseconds_and_plain_offsets() {
        assert_eq!(
            utc("28/Nov/2026:02:14:31.009836 +0000"),
            "2026-11-28 02:14:31.009836"
        );
        assert_eq!(
            utc("28/Nov/2026:07:44:31 +0530"),
            "2026-11-28 02:14:31.000000"
        );
    }

    #[test]
    fn doubled_sign_means_west_of_utc() {
        assert_eq!(
            utc("27/Nov/2026:21:00:14.465993 --0500"),
            "2026-11-28 02:00:14.465993"
        );
        assert_eq!(
            utc("27/Nov/2026:21:00:14 -0500"),
            "2026-11-28 02:00:14.000000"
        );
        assert_eq!(
            utc("27/Nov/2026:22:30:00 --03-30"),
            "2026-11-28 02:00:00.000000"
        );
    }

    #[test]
    fn offset_crossing_a_year_boundary() {
        assert_eq!(
            utc("31/Dec/2026:23:30:00 --0100"),
            "2027-01-01 00:30:00.000000"
        );
    }

    #[test]
    fn malformed_times_say_what_is_wrong() {
        for (text, why) in [
            ("28/Nov/2026:02:14:31", "no UTC offset"),
            ("28/Xyz/2026:02:14:31 +0000", "unknown month"),
            ("31/Feb/2026:02:14:31 +0000", "no such date"),
            ("28/Nov/2026:25:14:31 +0000", "no such time"),
            ("28/Nov/2026:02:14:31 0000", "must start with"),
            ("28/Nov/2026:02:14:31 +---0000", "must start with"),
            ("28/Nov/2026:02:14:31 +2500", "out of range"),
            ("28/Nov/2026:02:14:31.12x +0000", "not digits"),
        ] {
            let e = parse_modsec_time(text.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn ctime_of_libmodsecurity3_json() {
        let t = parse_ctime("Sat Nov 28 02:13:43 2026").unwrap();
        assert_eq!(
            Utc.from_utc_datetime(&t).to_rfc3339(),
            "2026-11-28T02:13:43+00:00"
        );
        assert!(parse_ctime("Sun Nov  8 02:13:43 2026").is_some());
        assert!(parse_ctime("yesterday").is_none());
    }
}
