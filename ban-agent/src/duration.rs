//! Durations as fail2ban writes them, so that a fail2ban user's `bantime = 10M` means ten
//! minutes here too: a number of seconds, or numbers each followed by a unit, units taken
//! case-insensitively (`10m`, `10M`, `10 min`, `1h30m`, `1.5h`, `2 weeks`, `1mo`). Months
//! are `mo`/`mon`/`month(s)`, never `m`. Units below a second are refused: bans and
//! windows count whole seconds.
//!
//! Written here, not taken from humantime: humantime reads `M` as months and `m` as
//! minutes, which is exactly the trap a fail2ban configuration falls into.

use std::time::Duration;

use thiserror::Error;

/// Seconds per unit, for every spelling fail2ban accepts (`days?|da|dd?`, ...) and the
/// common abbreviations (`mins`, `hrs`, `secs`).
const UNITS: [(&[&str], f64); 7] = [
    (&["s", "ss", "sec", "secs", "second", "seconds"], 1.0),
    (&["m", "mm", "mi", "min", "mins", "minute", "minutes"], 60.0),
    (
        &["h", "hh", "ho", "hou", "hr", "hrs", "hour", "hours"],
        3600.0,
    ),
    (&["d", "dd", "da", "day", "days"], 86_400.0),
    (&["w", "ww", "we", "wee", "week", "weeks"], 604_800.0),
    // fail2ban's month and year: 365.25 days a year.
    (&["mo", "mon", "month", "months"], 2_629_800.0),
    (&["y", "yy", "ye", "yea", "year", "years"], 31_557_600.0),
];

/// Spellings of units below a second, refused with a word of why.
const SUB_SECOND: [&str; 6] = ["ms", "msec", "millis", "us", "µs", "ns"];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("{text:?} is not a duration: {why}")]
    Invalid { text: String, why: String },
}

/// The units, for messages.
pub const UNITS_HELP: &str = "a number of seconds, or numbers with units such as \"10m\" \
    (minutes; \"10M\" too, as in fail2ban), \"1h 30m\", \"2d\", \"1w\", \"1mo\" (months), \"1y\"";

/// Parses `text` as fail2ban does.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let invalid = |why: String| DurationError::Invalid {
        text: text.to_owned(),
        why,
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid("it is empty".to_owned()));
    }
    let mut seconds = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid(format!(
                "expected a number at {:?}",
                rest.chars().take(12).collect::<String>()
            )));
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| invalid(format!("{:?} is not a number", &rest[..digits])))?;
        rest = rest[digits..].trim_start();
        let letters = rest
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(rest.len());
        let unit = rest[..letters].to_lowercase();
        rest = rest[letters..].trim_start_matches([' ', ',']);
        seconds += number * unit_seconds(&unit).map_err(invalid)?;
    }
    if !seconds.is_finite() || seconds > 1e15 {
        return Err(invalid("it is too long".to_owned()));
    }
    // Whole seconds, as fail2ban counts them; the numbers have no sign.
    Ok(Duration::from_secs(seconds as u64))
}

fn unit_seconds(unit: &str) -> Result<f64, String> {
    if unit.is_empty() {
        return Ok(1.0);
    }
    if let Some((_, seconds)) = UNITS.iter().find(|(names, _)| names.contains(&unit)) {
        return Ok(*seconds);
    }
    if SUB_SECOND.contains(&unit) {
        return Err(format!(
            "{unit:?} is below a second, and bans and windows count whole seconds (for \
             minutes write \"m\", for months \"mo\")"
        ));
    }
    Err(format!("{unit:?} is not a unit"))
}

/// A duration in the units [`parse`] reads back: `10m`, `1h 30m`, `7d`, `10mo`.
pub fn show(duration: Duration) -> String {
    const SHOWN: [(&str, u64); 6] = [
        ("y", 31_557_600),
        ("mo", 2_629_800),
        ("d", 86_400),
        ("h", 3600),
        ("m", 60),
        ("s", 1),
    ];
    let mut left = duration.as_secs();
    if left == 0 {
        return "0s".to_owned();
    }
    let mut parts = Vec::new();
    for (unit, seconds) in SHOWN {
        if left >= seconds {
            parts.push(format!("{}{unit}", left / seconds));
            left %= seconds;
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> u64 {
        parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .as_secs()
    }

    #[test]
    fn fail2ban_units_case_insensitive_and_m_is_minutes() {
        assert_eq!(secs("10M"), 600);
        assert_eq!(secs("10m"), 600);
        assert_eq!(secs("10 min"), 600);
        assert_eq!(secs("10mm"), 600);
        assert_eq!(secs("10 Minutes"), 600);
        assert_eq!(secs("600"), 600);
        assert_eq!(secs("1H"), 3600);
        assert_eq!(secs("1h30m"), 5400);
        assert_eq!(secs("1h 30m 15s"), 5415);
        assert_eq!(secs("1.5h"), 5400);
        assert_eq!(secs("2d"), 172_800);
        assert_eq!(secs("1w"), 604_800);
        assert_eq!(secs("1mo"), 2_629_800);
        assert_eq!(secs("1 month"), 2_629_800);
        assert_eq!(secs("1y"), 31_557_600);
    }

    #[test]
    fn what_show_writes_parse_reads_back() {
        for seconds in [
            1, 59, 60, 61, 3599, 3600, 5400, 86_399, 86_400, 604_800, 2_629_800,
        ]
        .into_iter()
        .chain([26_298_000, 31_557_600, 31_557_601, 99_999_999])
        {
            let shown = show(Duration::from_secs(seconds));
            assert_eq!(secs(&shown), seconds, "{shown}");
        }
        assert_eq!(show(Duration::from_secs(600)), "10m");
        assert_eq!(show(Duration::from_secs(26_298_000)), "10mo");
    }

    #[test]
    fn refusals_say_what_was_meant() {
        let error = |text: &str| parse(text).expect_err(text).to_string();
        assert!(
            error("10ms").contains("below a second"),
            "{}",
            error("10ms")
        );
        assert!(error("10 parsecs").contains("\"parsecs\" is not a unit"));
        assert!(error("ten minutes").contains("expected a number"));
        assert!(error("").contains("empty"));
        assert!(error("1e99y").contains("not a unit") || error("1e99y").contains("too long"));
    }
}
