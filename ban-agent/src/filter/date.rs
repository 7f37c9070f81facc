//! The time of a log line, taken from the line itself.
//!
//! Recognised without configuration, at the start of the line:
//! `2026-11-24 12:00:00,001` (Python logging's asctime), ISO 8601
//! (`2026-11-24T12:00:00.001+01:00`, `...Z`); and anywhere, the common log format of
//! nginx and Apache (`[24/Nov/2026:12:00:00 +0000]`). A time without a zone is local time,
//! as Python's logging writes it, converted with the system time zone.

use jiff::{civil, fmt::strtime::BrokenDownTime, tz::TimeZone};

use crate::clock::UnixMs;

/// How the time of a line is found (a jail's `datepattern`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatePattern {
    /// The common formats above.
    Auto,
    /// None: the time a line is read.
    None,
    /// A strftime format (`%Y-%m-%d %H:%M:%S,%f`), at the start of the line or right
    /// after its first `[`.
    Format(String),
}

/// Which format a line's time was found in (for `test-filter`'s report).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DateFormat {
    /// `YYYY-MM-DD HH:MM:SS[,mmm]` or ISO 8601, with or without a zone.
    Iso,
    /// `[DD/Mon/YYYY:HH:MM:SS +ZZZZ]`.
    CommonLog,
    /// The jail's `datepattern`.
    Pattern,
    /// One of a fail2ban filter's date templates (its `datepattern`, or fail2ban's own).
    Template,
    /// The journal entry's own time.
    Journal,
    /// The time field of a JSON line (a filter's `json.time`).
    Field,
    /// The container runtime's time of the message (Docker's or CRI's wrapper).
    Runtime,
}

impl DateFormat {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Iso => "YYYY-MM-DD HH:MM:SS[,fff][zone] (Python logging, ISO 8601)",
            Self::CommonLog => "[DD/Mon/YYYY:HH:MM:SS +ZZZZ] (common log format)",
            Self::Pattern => "the jail's datepattern",
            Self::Template => "the filter's date templates (fail2ban's)",
            Self::Journal => "the journal entry's time",
            Self::Field => "the JSON line's time field",
            Self::Runtime => "the container runtime's time",
        }
    }
}

/// Reads times from lines; remembers the local zone's offset per hour, since consecutive
/// lines of a log share it.
#[derive(Clone, Debug)]
pub struct DateReader {
    pattern: DatePattern,
    zone: TimeZone,
    /// (civil hour as `YYYYMMDDHH`, offset in seconds) of the last zone-less time.
    cached: Option<(i64, i32)>,
}

impl Default for DateReader {
    fn default() -> Self {
        Self::new(TimeZone::system())
    }
}

impl DateReader {
    pub fn new(zone: TimeZone) -> Self {
        Self::with_pattern(DatePattern::Auto, zone)
    }

    pub fn with_pattern(pattern: DatePattern, zone: TimeZone) -> Self {
        Self {
            pattern,
            zone,
            cached: None,
        }
    }

    /// The line's time, if it has one in a known format.
    pub fn read(&mut self, line: &str) -> Option<(UnixMs, DateFormat)> {
        match &self.pattern {
            DatePattern::Auto => {}
            DatePattern::None => return None,
            DatePattern::Format(format) => {
                return self
                    .formatted(format, line)
                    .map(|ms| (ms, DateFormat::Pattern));
            }
        }
        let bytes = line.as_bytes();
        if let Some(ms) = self.iso(bytes) {
            return Some((ms, DateFormat::Iso));
        }
        let open = memchr::memchr(b'[', bytes)?;
        common_log(&bytes[open + 1..]).map(|ms| (ms, DateFormat::CommonLog))
    }

    /// `format` at the start of the line, else right after its first `[`.
    fn formatted(&self, format: &str, line: &str) -> Option<UnixMs> {
        let at_start = BrokenDownTime::parse_prefix(format, line).ok();
        let (time, _) = at_start.or_else(|| {
            let (_, rest) = line.split_once('[')?;
            BrokenDownTime::parse_prefix(format, rest).ok()
        })?;
        // An offset (`%z`) or an epoch (`%s`) fixes the instant; else it is local time.
        let timestamp = match time.to_timestamp() {
            Ok(timestamp) => timestamp,
            Err(_) => time
                .to_datetime()
                .ok()?
                .to_zoned(self.zone.clone())
                .ok()?
                .timestamp(),
        };
        Some(timestamp.as_millisecond())
    }

    fn iso(&mut self, b: &[u8]) -> Option<UnixMs> {
        let Stamp {
            year,
            month,
            day,
            hour,
            minute,
            second,
            ..
        } = stamp(b, b"-")?;
        let mut rest = &b[STAMP_LEN..];
        let mut millis = 0;
        if let [b',' | b'.', tail @ ..] = rest {
            let n = tail.iter().take_while(|c| c.is_ascii_digit()).count();
            let frac = &tail[..n];
            for (i, d) in frac.iter().take(3).enumerate() {
                millis += i64::from(d - b'0') * [100, 10, 1][i];
            }
            rest = &tail[n..];
        }
        let zone_offset = zone(rest);
        let seconds = civil_seconds(year, month, day, hour, minute, second)?;
        let offset = match zone_offset {
            Some(offset) => offset,
            None => self.local_offset(year, month, day, hour, minute, second)?,
        };
        Some((seconds - i64::from(offset)) * 1000 + millis)
    }

    fn local_offset(
        &mut self,
        year: i64,
        month: i64,
        day: i64,
        hour: i64,
        minute: i64,
        second: i64,
    ) -> Option<i32> {
        let key = ((year * 100 + month) * 100 + day) * 100 + hour;
        if let Some((cached_key, offset)) = self.cached
            && cached_key == key
        {
            return Some(offset);
        }
        let civil = civil_time(year, month, day, hour, minute, second)?;
        let zoned = civil.to_zoned(self.zone.clone()).ok()?;
        let offset = zoned.offset().seconds();
        self.cached = Some((key, offset));
        Some(offset)
    }
}

/// The fields of `YYYY-MM-DD?HH:MM:SS` at the start of a line, as written (ASCII
/// digits, not checked against their ranges), and the byte between date and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
    pub between: u8,
}

/// The length of [`Stamp`]'s text.
pub const STAMP_LEN: usize = 19;

/// An ISO 8601 date and time at the start of `b` (`T` or a space between them), its
/// date's parts separated by one of `separators` (ours: `-`): the one scan both
/// dialects' readers start with, ours and fail2ban's templates ([`super::templates`]),
/// before any regex.
pub fn stamp(b: &[u8], separators: &[u8]) -> Option<Stamp> {
    if b.len() < STAMP_LEN
        || !separators.contains(&b[4])
        || !separators.contains(&b[7])
        || (b[10] != b' ' && b[10] != b'T')
    {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    Some(Stamp {
        year: digits(&b[0..4])?,
        month: digits(&b[5..7])?,
        day: digits(&b[8..10])?,
        hour: digits(&b[11..13])?,
        minute: digits(&b[14..16])?,
        second: digits(&b[17..19])?,
        between: b[10],
    })
}

/// `Z`, `+hh:mm`, `+hhmm` or `+hh` right after the time; `None` when there is none.
fn zone(rest: &[u8]) -> Option<i32> {
    match rest {
        [b'Z', ..] => Some(0),
        [sign @ (b'+' | b'-'), tail @ ..] => {
            let hours = digits(tail.get(0..2)?)?;
            let tail = &tail[2..];
            let minutes = match tail {
                [b':', m1, m2, ..] => digits(&[*m1, *m2])?,
                [m1, m2, ..] if m1.is_ascii_digit() => digits(&[*m1, *m2])?,
                _ => 0,
            };
            let offset = i32::try_from(hours * 3600 + minutes * 60).ok()?;
            Some(if *sign == b'-' { -offset } else { offset })
        }
        _ => None,
    }
}

/// `DD/Mon/YYYY:HH:MM:SS +ZZZZ`, after the opening bracket.
fn common_log(b: &[u8]) -> Option<UnixMs> {
    if b.len() < 26 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' || b[20] != b' ' {
        return None;
    }
    let day = digits(&b[0..2])?;
    let month = month_number(&b[3..6])?;
    let year = digits(&b[7..11])?;
    let (hour, minute, second) = (
        digits(&b[12..14])?,
        digits(&b[15..17])?,
        digits(&b[18..20])?,
    );
    let offset = zone(&b[21..26])?;
    let seconds = civil_seconds(year, month, day, hour, minute, second)?;
    Some((seconds - i64::from(offset)) * 1000)
}

fn month_number(name: &[u8]) -> Option<i64> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    MONTHS
        .iter()
        .position(|m| m.as_slice() == name)
        .map(|i| i as i64 + 1)
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

/// Seconds since the epoch of a civil time taken as UTC (days-from-civil, proleptic
/// Gregorian). Hand-written because it runs for every line and must not allocate.
fn civil_seconds(y: i64, m: i64, d: i64, hh: i64, mm: i64, ss: i64) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// A civil date and time from numbers read in a line; `None` when one is out of range.
pub fn civil_time(
    year: impl TryInto<i16>,
    month: impl TryInto<i8>,
    day: impl TryInto<i8>,
    hour: impl TryInto<i8>,
    minute: impl TryInto<i8>,
    second: impl TryInto<i8>,
) -> Option<civil::DateTime> {
    civil::DateTime::new(
        year.try_into().ok()?,
        month.try_into().ok()?,
        day.try_into().ok()?,
        hour.try_into().ok()?,
        minute.try_into().ok()?,
        second.try_into().ok()?,
        0,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() -> DateReader {
        DateReader::new(TimeZone::UTC)
    }

    #[test]
    fn python_logging_time_in_utc() {
        let line = "2026-11-24 12:00:00,001 - fastapi-auth - INFO - 203.0.113.7 - ...";
        let (ms, format) = utc().read(line).expect("a time");
        assert_eq!(format, DateFormat::Iso);
        assert_eq!(ms, 1_795_521_600_001);
    }

    #[test]
    fn zone_less_time_uses_the_given_zone() {
        let mut reader = DateReader::new(TimeZone::fixed(jiff::tz::offset(1)));
        let (ms, _) = reader.read("2026-11-24 13:00:00,000 x").expect("a time");
        assert_eq!(ms, 1_795_521_600_000, "13:00 at UTC+1 is 12:00 UTC");
    }

    #[test]
    fn iso_zones_and_common_log_format() {
        let mut r = utc();
        assert_eq!(
            r.read("2026-11-24T12:00:00Z x").map(|t| t.0),
            Some(1_795_521_600_000)
        );
        assert_eq!(
            r.read("2026-11-24T13:30:00+01:30 x").map(|t| t.0),
            Some(1_795_521_600_000)
        );
        let clf = r#"203.0.113.7 - - [24/Nov/2026:12:00:00 +0000] "POST /login HTTP/1.1" 401"#;
        assert_eq!(
            r.read(clf),
            Some((1_795_521_600_000, DateFormat::CommonLog))
        );
    }

    #[test]
    fn a_datepattern_at_the_start_or_after_a_bracket() {
        let pattern = |p: &str| DatePattern::Format(p.to_owned());
        let mut r = DateReader::with_pattern(pattern("%d.%m.%Y %H:%M:%S"), TimeZone::UTC);
        assert_eq!(
            r.read("24.11.2026 12:00:00 login failed"),
            Some((1_795_521_600_000, DateFormat::Pattern))
        );
        let mut r = DateReader::with_pattern(pattern("%s"), TimeZone::UTC);
        assert_eq!(
            r.read("host [1795521600] x").map(|t| t.0),
            Some(1_795_521_600_000)
        );
        let mut r = DateReader::with_pattern(pattern("%Y-%m-%d %H:%M:%S%.f%z"), TimeZone::UTC);
        assert_eq!(
            r.read("2026-11-24 13:00:00.5+0100 x").map(|t| t.0),
            Some(1_795_521_600_500)
        );
        assert_eq!(r.read("no time"), None);
        let mut none = DateReader::with_pattern(DatePattern::None, TimeZone::UTC);
        assert_eq!(none.read("2026-11-24 12:00:00,001 x"), None);
    }

    #[test]
    fn no_time_or_an_impossible_one() {
        let mut r = utc();
        assert_eq!(r.read("no time here"), None);
        assert_eq!(r.read("2026-13-24 12:00:00 bad month"), None);
        assert_eq!(r.read("2026-11-24 25:00:00 bad hour"), None);
    }
}
