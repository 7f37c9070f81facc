//! fail2ban's date templates: `datepattern` values (strptime fields such as `%b %d
//! %H:%M:%S`, fail2ban's `%Ex…` strict fields, `{^LN-BEG}`, `{DATE}`, `{UNB}`, `EPOCH`,
//! `LEPOCH`, `TAI64N`, several patterns one per line) and, when a filter sets none, its
//! default templates. The matched date text is cut out of the line before the regexes
//! see it, as fail2ban does.
//!
//! fail2ban moves the templates that hit most to the front as it reads a log; we search
//! them in their fixed order and take an anchored match at once, else the leftmost match
//! (ties to the first template), which is what fail2ban decides for a log's first line.

use std::sync::{
    OnceLock,
    atomic::{AtomicUsize, Ordering},
};

use jiff::{Timestamp, tz::TimeZone};
use regex::Regex;

use super::FilterError;

/// fail2ban's default templates (`DateDetectorCache.DEFAULT_TEMPLATES`), in its order.
const DEFAULTS: [&str; 17] = [
    r"%ExY(?P<_sep>[-/.])%m(?P=_sep)%d(?:T|  ?)%H:%M:%S(?:[.,]%f)?(?:\s*%z)?",
    r"(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"(?:%a )?%b %d %ExY %k:%M:%S(?:\.%f)?",
    r"%d(?P<_sep>[-/])%m(?P=_sep)(?:%ExY|%Exy) %k:%M:%S",
    r"%d(?P<_sep>[-/])%b(?P=_sep)%ExY[ :]?%H:%M:%S(?:\.%f)?(?: %z)?",
    r"%m/%d/%ExY:%H:%M:%S",
    r"%m-%d-%ExY %k:%M:%S(?:\.%f)?",
    "EPOCH",
    r"{^LN-BEG}%H:%M:%S",
    r"^<%m/%d/%Exy@%H:%M:%S>",
    r"%Exy%Exm%Exd  ?%H:%M:%S",
    r"%b %d, %ExY %I:%M:%S %p",
    r"^%b-%d-%Exy %k:%M:%S",
    r"%ExY%Exm%Exd(?:T|  ?)%ExH%ExM%ExS(?:[.,]%f)?(?:\s*%z)?",
    r"(?:%Z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"(?:%z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    "TAI64N",
];

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// What a `%` field stands for (Python's `_strptime.TimeRE` with fail2ban's changes).
fn field(name: &str, year_digit: char) -> Option<String> {
    let weekdays = "monday|tuesday|wednesday|thursday|friday|saturday|sunday";
    let zone_abbr = "[A-Z](?:[A-Z]{2,4})?";
    Some(match name {
        "a" => "(?P<a>mon|tue|wed|thu|fri|sat|sun)".into(),
        "A" => format!("(?P<A>{weekdays})"),
        "b" => "(?P<b>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)".into(),
        "B" => format!("(?P<B>{})", MONTHS.join("|")),
        "d" => r"(?P<d>[1-2]\d|[0 ]?[1-9]|3[0-1])".into(),
        "f" => r"(?P<f>[0-9]{1,6})".into(),
        "H" => r"(?P<H>[0-1]?\d|2[0-3])".into(),
        "I" => r"(?P<I>1[0-2]|0[1-9]|[1-9])".into(),
        "j" => r"(?P<j>36[0-6]|3[0-5]\d|[1-2]\d\d|0[1-9]\d|00[1-9]|[1-9]\d|0[1-9]|[1-9])".into(),
        "m" => r"(?P<m>0?[1-9]|1[0-2])".into(),
        "M" => r"(?P<M>[0-5]?\d)".into(),
        "S" => r"(?P<S>[0-5]?\d|6[0-1])".into(),
        "p" => "(?P<p>am|pm)".into(),
        "U" => r"(?P<U>5[0-3]|[0-4]\d|\d)".into(),
        "W" => r"(?P<W>5[0-3]|[0-4]\d|\d)".into(),
        "w" => "(?P<w>[0-6])".into(),
        "y" | "Exy" => r"(?P<y>\d\d)".into(),
        "Y" => r"(?P<Y>\d\d\d\d)".into(),
        "z" => r"(?P<z>Z|UTC|GMT|[+-][01]\d(?::?\d{2})?)".into(),
        "Z" => "(?P<Z>Z|[A-Z]{3,5})".into(),
        "k" => r" ?(?P<H>[0-2]?\d)".into(),
        "l" => r" ?(?P<I>1?\d)".into(),
        "Exd" => r"(?P<d>[1-2]\d|0[1-9]|3[0-1])".into(),
        "Exm" => "(?P<m>0[1-9]|1[0-2])".into(),
        "ExH" => r"(?P<H>[0-1]\d|2[0-3])".into(),
        "Exk" => r" ?(?P<H>[0-1]?\d|2[0-3])".into(),
        "Exl" => r" ?(?P<I>1[0-2]|\d)".into(),
        "ExM" => r"(?P<M>[0-5]\d)".into(),
        "ExS" => r"(?P<S>[0-5]\d|6[0-1])".into(),
        // Years this century up to three years ahead, as fail2ban's strict year.
        "ExY" => format!(r"(?P<Y>20[0-{year_digit}]\d)"),
        "ExZ" => format!("(?P<Z>{zone_abbr})"),
        "Exz" => format!(r"(?P<z>(?:{zone_abbr})?[+-][01]\d(?::?\d{{2}})?|{zone_abbr})"),
        "c" => "%a %b %d %H:%M:%S %Y".into(),
        "x" => "%m/%d/%y".into(),
        "X" => "%H:%M:%S".into(),
        "%" => "%".into(),
        _ => return None,
    })
}

/// How a template turns its match into a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimeForm {
    Fields,
    Epoch { long: bool },
    Tai64n,
}

/// One compiled template.
#[derive(Clone, Debug)]
struct Template {
    /// The regex's text, compiled when first needed ([`Template::regex`]): most lines'
    /// dates are read by a scan, and most of fail2ban's 30 default templates never run,
    /// while compiling them all was a quarter of a filter's start.
    source: String,
    compiled: OnceLock<Regex>,
    kind: TimeForm,
    /// Anchored at the line's start (or end): taken at once when it matches.
    anchored: bool,
    /// Groups that hold the date text, the first that took part wins.
    date_groups: Vec<usize>,
    /// A date this template's regex finds at a line's start that a scan reads without
    /// it (see [`DateDetector::scan`]).
    scan: Option<Scan>,
}

impl Template {
    fn regex(&self) -> &Regex {
        self.compiled.get_or_init(|| {
            // A template of a filter's own `datepattern` is compiled when it is made (its
            // errors are the filter's); only fail2ban's defaults come here uncompiled, and
            // `filter::templates::tests` compiles every one of them.
            Regex::new(&self.source).expect("fail2ban's default date templates compile")
        })
    }
}

/// A date found in a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// Byte range of the date text, cut from the line before matching.
    pub start: usize,
    pub end: usize,
    /// Milliseconds since the epoch; `None` when the text is not a valid date.
    pub time: Option<i64>,
}

/// A filter's date templates.
#[derive(Debug)]
pub struct DateDetector {
    templates: Vec<Template>,
    /// The anchored template that found the last date (`usize::MAX`: none yet): tried
    /// first, as fail2ban does, since a log's lines share their format. Atomic so that a
    /// compiled filter can sit in a shared configuration.
    last: std::sync::atomic::AtomicUsize,
    /// `datepattern = {NONE}`: lines have no date.
    none: bool,
}

impl Clone for DateDetector {
    fn clone(&self) -> Self {
        Self {
            templates: self.templates.clone(),
            last: AtomicUsize::new(self.last.load(Ordering::Relaxed)),
            none: self.none,
        }
    }
}

impl DateDetector {
    /// The templates of `datepattern` (one pattern per line), or fail2ban's defaults.
    /// `year`: this year, which bounds the strict year field `%ExY`.
    pub fn new(datepattern: Option<&str>, year: i16) -> Result<Self, FilterError> {
        let year_digit = char::from(b'0' + ((year + 3).rem_euclid(100) / 10) as u8);
        let build = Builder {
            year_digit,
            lazy: false,
        };
        let Some(patterns) = datepattern else {
            return Ok(Self {
                templates: build.cached_defaults()?,
                last: AtomicUsize::new(usize::MAX),
                none: false,
            });
        };
        let mut templates = Vec::new();
        let mut none = false;
        for pattern in patterns.lines().map(str::trim).filter(|p| !p.is_empty()) {
            let key = if pattern.contains('%') {
                pattern.to_owned()
            } else {
                pattern.to_uppercase()
            };
            match key.as_str() {
                "{^LN-BEG}" => {
                    templates.extend(build.cached_defaults()?.into_iter().filter(|t| t.anchored))
                }
                "{DEFAULT}" => templates.extend(build.cached_defaults()?),
                "{NONE}" => none = true,
                _ if key.contains("{DATE}") => {
                    templates.extend(build.defaults(Some(pattern))?);
                }
                _ => templates.push(build.template(pattern, Wrap::Word)?),
            }
        }
        Ok(Self {
            templates,
            last: AtomicUsize::new(usize::MAX),
            none,
        })
    }

    /// The date of `line`. `now` (ms) completes dates without a year or a day; `zone` is
    /// the log's time zone for dates without one.
    pub fn find(&self, line: &str, now: i64, zone: &TimeZone) -> Option<Found> {
        if self.none {
            return None;
        }
        let last = self.last.load(Ordering::Relaxed);
        if let Some((index, found)) = self.scan(line, last, now, zone) {
            if self.templates[index].anchored {
                self.last.store(index, Ordering::Relaxed);
            }
            return Some(found);
        }
        if let Some(template) = self.templates.get(last)
            && let Some(captures) = template.regex().captures(line)
            && let Some(span) = template.date_groups.iter().find_map(|&g| captures.get(g))
        {
            return Some(found(template, &captures, span, now, zone));
        }
        let mut best: Option<(usize, usize, &Template, regex::Captures<'_>)> = None;
        for (index, template) in self.templates.iter().enumerate() {
            let Some(captures) = template.regex().captures(line) else {
                continue;
            };
            let Some(span) = template.date_groups.iter().find_map(|&g| captures.get(g)) else {
                continue;
            };
            let whole = captures.get(0).map_or(0, |m| m.start());
            if template.anchored || whole <= 1 {
                if template.anchored {
                    self.last.store(index, Ordering::Relaxed);
                }
                return Some(found(template, &captures, span, now, zone));
            }
            if best.as_ref().is_none_or(|(start, ..)| whole < *start) {
                best = Some((whole, span.start(), template, captures));
            }
        }
        let (_, _, template, captures) = best?;
        let span = template.date_groups.iter().find_map(|&g| captures.get(g))?;
        Some(found(template, &captures, span, now, zone))
    }
}

impl DateDetector {
    /// The date at the start of `line` read without a regex, and the template whose
    /// regex would have found it, when that template is the one to decide the line:
    /// - the first template, when it is ISO 8601 (fail2ban's first default, or a
    ///   `datepattern` such as `^%Y-%m-%d %H:%M:%S,%f`) and no other was the last line's;
    /// - fail2ban's second default (syslog's `Aug 14 11:59:59`), when it is second
    ///   behind an anchored ISO template (which cannot match a line that starts with a
    ///   letter) and the last line's was one of the two.
    ///
    /// `None` whenever unsure: the regexes decide, as they always did.
    fn scan(&self, line: &str, last: usize, now: i64, zone: &TimeZone) -> Option<(usize, Found)> {
        let first = self.templates.first()?;
        let fresh = |upto: usize| last <= upto || last == usize::MAX;
        let Some(Scan::Iso(iso)) = first.scan else {
            return None;
        };
        if fresh(0)
            && let Some(found) = iso.read(line, now, zone)
        {
            return Some((0, found));
        }
        let starts_with_letter = line.as_bytes().first().is_some_and(u8::is_ascii_alphabetic);
        let second = self.templates.get(1)?;
        if first.anchored && second.scan == Some(Scan::Syslog) && starts_with_letter && fresh(1) {
            return syslog(line, now, zone).map(|found| (1, found));
        }
        None
    }
}

/// The dates a template's regex finds that a scan reads without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    Iso(IsoShape),
    /// fail2ban's second default template at a line's start (its `{^LN-BEG}` twin).
    Syslog,
}

/// The date of fail2ban's second default template, `(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?:
/// %ExY)?`, at the start of `line` (`Aug 14 11:59:59`, `Aug  4 01:02:03.5`), exactly as
/// its regex would find it there; `None` when unsure (a weekday first, a one-digit day
/// or hour, a year or a word character after the time, a field out of range).
fn syslog(line: &str, now: i64, zone: &TimeZone) -> Option<Found> {
    let b = line.as_bytes();
    if b.len() < 15 {
        return None;
    }
    let name = [
        b[0].to_ascii_lowercase(),
        b[1].to_ascii_lowercase(),
        b[2].to_ascii_lowercase(),
    ];
    if b[3] != b' ' || b[6] != b' ' {
        return None;
    }
    // A weekday first (`Mon Aug 14`) is no month: the regexes decide.
    let month = MONTHS.iter().position(|m| m.as_bytes()[..3] == name)?;
    let digit = |at: usize, most: u8| {
        (b'0'..=most)
            .contains(&b[at])
            .then(|| i32::from(b[at] - b'0'))
    };
    let day = match b[4] {
        b' ' => digit(5, b'9').filter(|&d| d > 0)?,
        _ => Some(digit(4, b'3')? * 10 + digit(5, b'9')?).filter(|d| (1..=31).contains(d))?,
    };
    if b[9] != b':' || b[12] != b':' {
        return None;
    }
    let hour = digit(7, b'2')? * 10 + digit(8, b'9')?;
    let minute = digit(10, b'5')? * 10 + digit(11, b'9')?;
    let second = digit(13, b'5')? * 10 + digit(14, b'9')?;
    let mut end = 15;
    if b.get(end) == Some(&b'.') {
        let n = b[end + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        match n {
            0 => {}
            1..=6 => end += 1 + n,
            _ => return None,
        }
    }
    match b.get(end..) {
        Some([b' ', b'2', b'0', ..]) => return None,
        Some([next, ..]) if next.is_ascii_alphanumeric() || *next == b'_' || !next.is_ascii() => {
            return None;
        }
        _ => {}
    }
    let fields = Fields {
        year: None,
        month: Some(i32::try_from(month).ok()? + 1),
        day: Some(day),
        hour,
        minute,
        second,
        offset: None,
    };
    Some(Found {
        start: 0,
        end,
        time: fields.time(now, zone),
    })
}

fn found(
    template: &Template,
    captures: &regex::Captures<'_>,
    span: regex::Match<'_>,
    now: i64,
    zone: &TimeZone,
) -> Found {
    let time = match template.kind {
        TimeForm::Fields => fields_time(captures, now, zone),
        TimeForm::Epoch { long } => epoch_time(span.as_str(), long),
        TimeForm::Tai64n => span
            .as_str()
            .get(2..17)
            .and_then(|hex| i64::from_str_radix(hex, 16).ok())
            // Fifteen hex digits of seconds can exceed what milliseconds hold.
            .and_then(|s| s.checked_mul(1000)),
    };
    Found {
        start: span.start(),
        end: span.end(),
        time,
    }
}

/// What an ISO 8601 template writes after the seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fraction {
    /// Nothing (`%S` ends the date).
    Absent,
    /// This separator and `%f` (`,%f`, `.%f`).
    Required(u8),
    /// `(?:[.,]%f)?`.
    Optional,
}

/// An ISO 8601 template as fail2ban writes its first default
/// (`%ExY(?P<_sep>[-/.])%m(?P=_sep)%d(?:T|  ?)%H:%M:%S(?:[.,]%f)?(?:\s*%z)?`), or as a
/// `datepattern` for Python's logging (`^%Y-%m-%d %H:%M:%S,%f`): read with
/// [`date::stamp`](super::date::stamp) when a line starts with it, and given to the
/// regex whenever the scan cannot be sure to find what the regex would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct IsoShape {
    /// `%ExY`: the years `2000` to `20{digit}9`; `None`: `%Y`, any four digits.
    strict_year: Option<u8>,
    /// The bytes allowed between year, month and day (`-`, or fail2ban's `[-/.]`, each
    /// place on its own: the back-reference is read as "either separator").
    separators: &'static [u8],
    /// The bytes allowed between date and time.
    between: &'static [u8],
    fraction: Fraction,
    /// `(?:\s*%z)?`: an optional zone after the time.
    zone: bool,
}

impl IsoShape {
    /// The shape of a template's pattern (without its `^` or `{^LN-BEG}`), when it is one.
    fn of(body: &str, year_digit: char) -> Option<Self> {
        let mut rest = body;
        let mut eat = |text: &str| match rest.strip_prefix(text) {
            Some(after) => {
                rest = after;
                true
            }
            None => false,
        };
        let strict_year = if eat("%ExY") {
            Some(u8::try_from(year_digit).ok()?.checked_sub(b'0')?)
        } else if eat("%Y") {
            None
        } else {
            return None;
        };
        let class = eat("(?P<_sep>[-/.])");
        if !(class || eat("-")) || !eat("%m") {
            return None;
        }
        if !(if class { eat("(?P=_sep)") } else { eat("-") }) || !eat("%d") {
            return None;
        }
        let between: &'static [u8] = if eat("(?:T|  ?)") {
            b"T "
        } else if eat(" ") {
            b" "
        } else if eat("T") {
            b"T"
        } else {
            return None;
        };
        if !eat("%H:%M:%S") {
            return None;
        }
        let fraction = if eat("(?:[.,]%f)?") {
            Fraction::Optional
        } else if eat(",%f") {
            Fraction::Required(b',')
        } else if eat(".%f") {
            Fraction::Required(b'.')
        } else {
            Fraction::Absent
        };
        let zone = eat(r"(?:\s*%z)?");
        let separators: &'static [u8] = if class { b"-/." } else { b"-" };
        rest.is_empty().then_some(Self {
            strict_year,
            separators,
            between,
            fraction,
            zone,
        })
    }

    /// The date at the start of `line`, exactly as the template's regex would find it
    /// there; `None` when unsure (the regex decides). Every field must be written in
    /// two digits and in its range, the date must end where the regex's would (no zone
    /// after it, which is left to the regex, and no word character), else `None`.
    fn read(self, line: &str, now: i64, zone: &TimeZone) -> Option<Found> {
        let b = line.as_bytes();
        let s = super::date::stamp(b, self.separators)?;
        let year_ok = match self.strict_year {
            Some(digit) => (2000..=2009 + 10 * i64::from(digit)).contains(&s.year),
            None => true,
        };
        let in_range = (1..=12).contains(&s.month)
            && (1..=31).contains(&s.day)
            && s.hour <= 23
            && s.minute <= 59
            && s.second <= 59;
        if !year_ok || !in_range || !self.between.contains(&s.between) {
            return None;
        }
        let mut end = super::date::STAMP_LEN;
        let digits_after = |at: usize| {
            b.get(at + 1..).map_or(0, |tail| {
                tail.iter().take_while(|c| c.is_ascii_digit()).count()
            })
        };
        match self.fraction {
            Fraction::Absent => {}
            Fraction::Required(sep) => {
                let n = digits_after(end);
                if b.get(end) != Some(&sep) || !(1..=6).contains(&n) {
                    return None;
                }
                end += 1 + n;
            }
            Fraction::Optional => {
                if matches!(b.get(end), Some(b'.' | b',')) {
                    match digits_after(end) {
                        0 => {}
                        n @ 1..=6 => end += 1 + n,
                        _ => return None,
                    }
                }
            }
        }
        if self.zone {
            let spaces = b[end..]
                .iter()
                .take_while(|c| c.is_ascii_whitespace())
                .count();
            let after = &b[end + spaces..];
            let zone_ahead = match after {
                [b'Z' | b'U' | b'G', ..] => true,
                [b'+' | b'-', b'0' | b'1', digit, ..] => digit.is_ascii_digit(),
                [next, ..] => !next.is_ascii(),
                [] => false,
            };
            if zone_ahead {
                return None;
            }
        }
        // The regex ends at a word's end: the next character is no word character.
        if let Some(&next) = b.get(end)
            && (next.is_ascii_alphanumeric() || next == b'_' || !next.is_ascii())
        {
            return None;
        }
        let field = |value: i64| i32::try_from(value).ok();
        let fields = Fields {
            year: Some(field(s.year)?),
            month: Some(field(s.month)?),
            day: Some(field(s.day)?),
            hour: field(s.hour)?,
            minute: field(s.minute)?,
            second: field(s.second)?,
            offset: None,
        };
        Some(Found {
            start: 0,
            end,
            time: fields.time(now, zone),
        })
    }
}

/// How a pattern is bounded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wrap {
    /// At a word's start and end (fail2ban's default).
    Word,
    /// At the line's start (`{^LN-BEG}`), at most two non-word characters in.
    LineStart,
    /// Nowhere (`{UNB}`).
    Unbounded,
}

#[derive(Clone, Copy)]
struct Builder {
    year_digit: char,
    /// Leave each template's regex to be compiled when first needed: fail2ban's
    /// defaults, known to compile. A filter's own patterns are compiled at once, so that
    /// their errors are said when the filter is read.
    lazy: bool,
}

/// fail2ban's default templates, compiled once per process and year digit: every
/// filter without a `datepattern` (and every `{^LN-BEG}`) shares them.
static DEFAULT_TEMPLATES: std::sync::Mutex<Option<(char, Vec<Template>)>> =
    std::sync::Mutex::new(None);

impl Builder {
    fn cached_defaults(&self) -> Result<Vec<Template>, FilterError> {
        let mut cache = DEFAULT_TEMPLATES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((digit, templates)) = cache.as_ref()
            && *digit == self.year_digit
        {
            return Ok(templates.clone());
        }
        let templates = Self {
            lazy: true,
            ..*self
        }
        .defaults(None)?;
        *cache = Some((self.year_digit, templates.clone()));
        Ok(templates)
    }

    /// The default templates; each unanchored one also gets a line-start twin, tried
    /// first. `pre`: a `{DATE}` pattern to embed them in.
    fn defaults(&self, pre: Option<&str>) -> Result<Vec<Template>, FilterError> {
        let mut anchored = Vec::new();
        let mut plain = Vec::new();
        for pattern in DEFAULTS {
            if let Some(pre) = pre {
                let unbound = pattern
                    .trim_start_matches("{^LN-BEG}")
                    .trim_start_matches('^');
                let embedded = pre.replace("{DATE}", unbound);
                plain.push(self.template(&embedded, Wrap::Word)?);
                continue;
            }
            let template = self.template(pattern, Wrap::Word)?;
            if !template.anchored {
                anchored.push(self.template(pattern, Wrap::LineStart)?);
            }
            plain.push(template);
        }
        anchored.extend(plain);
        Ok(anchored)
    }

    fn template(&self, pattern: &str, wrap: Wrap) -> Result<Template, FilterError> {
        let fail = |problem: String| FilterError::DatePattern {
            pattern: pattern.to_owned(),
            problem,
        };
        let mut wrap = wrap;
        let mut body = pattern.trim();
        if let Some(rest) = body.strip_prefix("{UNB}") {
            body = rest;
            wrap = Wrap::Unbounded;
        }
        if let Some(rest) = body.strip_prefix("{^LN-BEG}") {
            body = rest;
            if wrap == Wrap::Word {
                wrap = Wrap::LineStart;
            }
        }
        let upper = body.to_uppercase();
        let mut alpha = false;
        let (kind, regex_body, date_groups) = match upper.as_str() {
            "EPOCH" | "LEPOCH" => {
                let long = upper == "LEPOCH";
                let epoch = epoch_regex(long);
                if wrap == Wrap::LineStart {
                    (
                        TimeForm::Epoch { long },
                        format!(r"(?:\[({epoch})\]|({epoch}))"),
                        vec![1, 2],
                    )
                } else {
                    (
                        TimeForm::Epoch { long },
                        format!(r"(?:^\[({epoch})\]|^({epoch})|\baudit\(({epoch}):\d+\))"),
                        vec![1, 2, 3],
                    )
                }
            }
            "TAI64N" => (TimeForm::Tai64n, "(@[0-9a-f]{24})".to_owned(), vec![1]),
            _ if upper.contains("{EPOCH}") || upper.contains("{LEPOCH}") => {
                let long = upper.contains("{LEPOCH}");
                let inner = format!("({})", epoch_regex(long));
                let replaced = ["{EPOCH}", "{epoch}", "{LEPOCH}", "{lepoch}"]
                    .iter()
                    .fold(body.to_owned(), |text, tag| text.replace(tag, &inner));
                (TimeForm::Epoch { long }, format!("({replaced})"), vec![2])
            }
            _ => {
                let expanded = self.expand(body).map_err(fail)?;
                alpha = expanded.1;
                (TimeForm::Fields, expanded.0, vec![1])
            }
        };
        let scan = match (kind, wrap) {
            (TimeForm::Fields, Wrap::LineStart) if body == DEFAULTS[1] => Some(Scan::Syslog),
            (TimeForm::Fields, Wrap::Word | Wrap::LineStart) => {
                IsoShape::of(body.strip_prefix('^').unwrap_or(body), self.year_digit).map(Scan::Iso)
            }
            _ => None,
        };
        let (regex, anchored) = bound(&regex_body, wrap, kind);
        // Month and day names are matched in any case, as fail2ban does.
        let regex = if alpha { format!("(?i){regex}") } else { regex };
        let compiled = OnceLock::new();
        if !self.lazy {
            let _set = compiled.set(Regex::new(&regex).map_err(|e| fail(e.to_string()))?);
        }
        Ok(Template {
            source: regex,
            compiled,
            kind,
            anchored,
            date_groups,
            scan,
        })
    }

    /// Replaces `%` fields, groups the whole date as group 1, and handles fail2ban's
    /// separator back-reference (`(?P<_sep>…)…(?P=_sep)`), which the linear engine
    /// cannot run: the second separator takes any of the same characters.
    fn expand(&self, pattern: &str) -> Result<(String, bool), String> {
        let mut out = String::new();
        let mut rest = pattern;
        let mut alpha = false;
        while let Some(at) = rest.find('%') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            // A field is one character after `%` (or after `%Ex`), whatever its width in
            // bytes: a pattern is arbitrary text.
            let letter = |from: usize| {
                after
                    .get(from..)
                    .and_then(|tail| tail.chars().next())
                    .map(|c| &after[..from + c.len_utf8()])
            };
            let name = if after.starts_with("Ex") && after.len() > 2 {
                letter(2).ok_or("a '%Ex' at the end of the pattern")?
            } else {
                letter(0).ok_or("a '%' at the end of the pattern")?
            };
            let text = field(name, self.year_digit).ok_or_else(|| {
                format!("%{name} is not a date field (write %% for a percent sign)")
            })?;
            if matches!(name, "a" | "A" | "b" | "B" | "p" | "c") {
                alpha = true;
            }
            if text.contains('%') && name != "%" {
                out.push_str(&self.expand(&text)?.0);
            } else {
                out.push_str(&text);
            }
            rest = &after[name.len()..];
        }
        out.push_str(rest);
        let mut sep = None;
        if let Some(start) = out.find("(?P<_sep>") {
            let inner_start = start + "(?P<_sep>".len();
            if let Some(len) = out[inner_start..].find(')') {
                sep = Some(out[inner_start..inner_start + len].to_owned());
                out.replace_range(start..start + "(?P<_sep>".len(), "(?:");
            }
        }
        if let Some(sep) = sep {
            out = out.replace("(?P=_sep)", &format!("(?:{sep})"));
        }
        Ok((out, alpha))
    }
}

fn epoch_regex(long: bool) -> &'static str {
    if long {
        r"\d{10,11}(?:\d{3}(?:\.\d{1,6}|\d{3})?)?"
    } else {
        r"\d{10,11}\b(?:\.\d{3,6})?"
    }
}

/// Wraps a template body as fail2ban's `setRegex` does: the date as group 1 (epoch
/// bodies bring their own groups), then the word or line bounds. `(?=^|\b|\W)` and
/// `(?=\b|\W|$)` both mean "not between two word characters", which the linear engine
/// writes `(?:\b{start-half}|\b{end-half})`.
fn bound(body: &str, wrap: Wrap, kind: TimeForm) -> (String, bool) {
    let not_inside_word = r"(?:\b{start-half}|\b{end-half})";
    let starts_anchored =
        body.starts_with('^') || body.starts_with("(^") || body.starts_with("(?:^");
    let ends_anchored = body.ends_with('$') && !body.ends_with(r"\$");
    let grouped = match kind {
        TimeForm::Fields if has_group(body) => body.to_owned(),
        TimeForm::Fields => {
            let (head, tail) = match body.strip_prefix('^') {
                Some(rest) => ("^", rest),
                None => ("", body),
            };
            let (tail, end) = match tail.strip_suffix('$').filter(|_| ends_anchored) {
                Some(rest) => (rest, "$"),
                None => (tail, ""),
            };
            format!("{head}({tail}){end}")
        }
        _ => body.to_owned(),
    };
    let no_end = ends_anchored || body.ends_with(r"\b") || body.ends_with(r"\s");
    let (prefix, anchored) = match wrap {
        Wrap::Unbounded => ("", starts_anchored),
        _ if starts_anchored => ("", true),
        Wrap::LineStart => (r"^(?:\W{0,2})?", true),
        Wrap::Word => (not_inside_word, false),
    };
    let suffix = if wrap == Wrap::Unbounded || no_end {
        ""
    } else {
        not_inside_word
    };
    (
        format!("{prefix}{grouped}{suffix}"),
        anchored || ends_anchored,
    )
}

/// Whether a pattern has a capturing group of its own (a `(` neither escaped nor
/// followed by `?`), which then holds the date instead of the whole match.
fn has_group(body: &str) -> bool {
    let bytes = body.as_bytes();
    (0..bytes.len()).any(|i| {
        bytes[i] == b'('
            && (i == 0 || bytes[i - 1] != b'\\')
            && bytes.get(i + 1) != Some(&b'?')
            && !(i >= 2 && &bytes[i - 2..i] == b"(?")
    })
}

/// Seconds (with a fraction) since the epoch, or milli/microseconds for `LEPOCH`.
fn epoch_time(text: &str, long: bool) -> Option<i64> {
    let value: f64 = text.parse().ok()?;
    let seconds = if long && text.len() >= 13 {
        if text.len() >= 16 && !text.contains('.') {
            value / 1_000_000.0
        } else {
            value / 1000.0
        }
    } else {
        value
    };
    Some((seconds * 1000.0).round() as i64)
}

/// The time of a strptime match (fail2ban's `reGroupDictStrptime`): a missing year is
/// this year (last year if that would put the date more than a day ahead), a missing
/// day is today (yesterday if ahead); fractions of seconds are dropped, as fail2ban does.
fn fields_time(c: &regex::Captures<'_>, now: i64, zone: &TimeZone) -> Option<i64> {
    let num = |name: &str| {
        c.name(name)
            .and_then(|m| m.as_str().trim().parse::<i32>().ok())
    };
    let text = |name: &str| c.name(name).map(|m| m.as_str().to_lowercase());
    let year = num("Y").or_else(|| num("y").map(|y| if y <= 2000 { y + 2000 } else { y }));
    let month = num("m").or_else(|| {
        let name = text("B").or_else(|| text("b"))?;
        MONTHS
            .iter()
            .position(|m| m.starts_with(&name[..name.len().min(3)]) && m.starts_with(&name))
            .map(|i| i as i32 + 1)
    });
    let day = num("d");
    let hour = match num("I") {
        Some(h12) => match text("p").as_deref() {
            Some("pm") if h12 != 12 => h12 + 12,
            Some("pm") => 12,
            _ if h12 == 12 => 0,
            _ => h12,
        },
        None => num("H").unwrap_or(0),
    };
    let (minute, second) = (num("M").unwrap_or(0), num("S").unwrap_or(0));
    let offset = c
        .name("z")
        .or_else(|| c.name("Z"))
        .and_then(|m| zone_offset_minutes(m.as_str()));
    Fields {
        year,
        month,
        day,
        hour,
        minute,
        second,
        offset,
    }
    .time(now, zone)
}

/// The fields of a date as a template read them, before they are completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fields {
    year: Option<i32>,
    month: Option<i32>,
    day: Option<i32>,
    hour: i32,
    minute: i32,
    second: i32,
    /// Minutes east of UTC, when the date has a zone.
    offset: Option<i32>,
}

impl Fields {
    /// The time, completed as fail2ban completes it (see [`fields_time`]).
    fn time(self, now: i64, zone: &TimeZone) -> Option<i64> {
        let now_zoned = Timestamp::from_millisecond(now)
            .ok()?
            .to_zoned(zone.clone());
        let Self {
            year,
            month,
            day,
            hour,
            minute,
            second,
            offset,
        } = self;
        let assume_year = year.is_none();
        let y = year.unwrap_or_else(|| i32::from(now_zoned.year()));
        let assume_today = month.is_none() && day.is_none();
        let (month, day) = match (month, day) {
            (Some(m), Some(d)) => (m, d),
            _ => (i32::from(now_zoned.month()), i32::from(now_zoned.day())),
        };
        let to_ms = |year: i32| civil_ms([year, month, day, hour, minute, second], offset, zone);
        let mut time = to_ms(y)?;
        if assume_today && time > now {
            time -= 86_400_000;
        }
        if assume_year && time > now + 86_400_000 {
            time = to_ms(y - 1)?;
        }
        Some(time)
    }
}

/// The time of `[year, month, day, hour, minute, second]` as fail2ban's templates read
/// it: at `offset` minutes east of UTC, else in `zone`; a leap second (`:60`, `:61`) is
/// the seconds after `:59`.
fn civil_ms(fields: [i32; 6], offset: Option<i32>, zone: &TimeZone) -> Option<i64> {
    let [year, month, day, hour, minute, second] = fields;
    // Python's dates start at year 1: fail2ban finds no time in `0000-12-30`.
    if year < 1 {
        return None;
    }
    let civil = super::date::civil_time(year, month, day, hour, minute, second.min(59))?;
    let ts = match offset {
        Some(minutes) => {
            let utc = civil.to_zoned(TimeZone::UTC).ok()?.timestamp();
            utc.as_millisecond() - i64::from(minutes) * 60_000
        }
        None => civil
            .to_zoned(zone.clone())
            .ok()?
            .timestamp()
            .as_millisecond(),
    };
    Some(ts + i64::from(second.max(59) - 59) * 1000)
}

/// Minutes east of UTC of a zone written in a log: `Z`, `UTC`, `GMT`, `+0100`, `-05:00`,
/// `+01`, an abbreviation (`CET`, `EST`), or both (`CET+0100`).
fn zone_offset_minutes(text: &str) -> Option<i32> {
    let text = text.trim();
    let split = text.find(['+', '-']).unwrap_or(text.len());
    let (abbr, numeric) = text.split_at(split);
    let base = if abbr.is_empty() {
        0
    } else {
        abbreviation_minutes(abbr)?
    };
    if numeric.is_empty() {
        return Some(base);
    }
    let sign = if numeric.starts_with('-') { -1 } else { 1 };
    let digits: String = numeric[1..]
        .chars()
        .filter(|c| c.is_ascii_digit())
        .collect();
    let (hours, minutes) = match digits.len() {
        1 | 2 => (digits.parse::<i32>().ok()?, 0),
        4 => (
            digits[..2].parse::<i32>().ok()?,
            digits[2..].parse::<i32>().ok()?,
        ),
        _ => return None,
    };
    Some(base + sign * (hours * 60 + minutes))
}

/// Offsets of the zone abbreviations logs commonly carry (fixed: a summer-time
/// abbreviation names its own offset).
fn abbreviation_minutes(abbr: &str) -> Option<i32> {
    let hours: f32 = match abbr {
        "Z" | "UTC" | "GMT" | "UT" | "WET" => 0.0,
        "CET" | "WEST" | "BST" | "WAT" => 1.0,
        "CEST" | "EET" | "CAT" | "SAST" => 2.0,
        "EEST" | "MSK" | "EAT" | "IDT" => 3.0,
        "GST" => 4.0,
        "PKT" => 5.0,
        "IST" => 5.5,
        "ICT" | "WIB" => 7.0,
        "HKT" | "SGT" | "AWST" | "PHT" => 8.0,
        "JST" | "KST" => 9.0,
        "ACST" => 9.5,
        "AEST" => 10.0,
        "AEDT" => 11.0,
        "NZST" => 12.0,
        "NZDT" => 13.0,
        "NST" => -3.5,
        "ADT" => -3.0,
        "AST" | "EDT" => -4.0,
        "EST" | "CDT" => -5.0,
        "CST" | "MDT" => -6.0,
        "MST" | "PDT" => -7.0,
        "PST" | "AKDT" => -8.0,
        "AKST" => -9.0,
        "HST" => -10.0,
        _ if abbr.len() == 1 => military(abbr.chars().next()?)? as f32,
        _ => return None,
    };
    Some((hours * 60.0) as i32)
}

/// The military zone letters: A–I and K–M east, N–Y west, Z is UTC.
fn military(letter: char) -> Option<i32> {
    match letter {
        'A'..='I' => Some(letter as i32 - 'A' as i32 + 1),
        'K'..='M' => Some(letter as i32 - 'K' as i32 + 10),
        'N'..='Y' => Some(-(letter as i32 - 'N' as i32 + 1)),
        'Z' => Some(0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fail2ban's test "now": 2005-08-14 12:00:00 CEST.
    const NOW: i64 = 1_124_013_600_000;

    fn zone() -> TimeZone {
        TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").expect("zone")
    }

    fn find(pattern: Option<&str>, line: &str) -> Option<(String, i64)> {
        let detector = DateDetector::new(pattern, 2026).expect("templates");
        let found = detector.find(line, NOW, &zone())?;
        Some((line[found.start..found.end].to_owned(), found.time?))
    }

    fn local(text: &str) -> i64 {
        let civil: jiff::civil::DateTime = text.parse().expect("civil");
        civil
            .to_zoned(zone())
            .expect("zoned")
            .timestamp()
            .as_millisecond()
    }

    #[test]
    fn syslog_dates_take_this_year_or_last() {
        let (text, time) = find(None, "Aug 14 11:59:59 host sshd[1]: x").expect("date");
        assert_eq!(text, "Aug 14 11:59:59");
        assert_eq!(time, local("2005-08-14T11:59:59"));
        let (_, time) = find(None, "Dec 31 23:00:00 host x").expect("date");
        assert_eq!(time, local("2004-12-31T23:00:00"));
    }

    #[test]
    fn iso_dates_with_zones_and_common_log_dates() {
        let (text, time) = find(None, "2005-08-14T10:00:00+00:00 x").expect("date");
        assert_eq!(text, "2005-08-14T10:00:00+00:00");
        assert_eq!(time, local("2005-08-14T12:00:00"));
        let (text, time) = find(
            None,
            r#"192.0.2.1 - - [14/Aug/2005:11:00:00 +0100] "GET /" 401"#,
        )
        .expect("date");
        assert_eq!(text, "14/Aug/2005:11:00:00 +0100");
        assert_eq!(time, local("2005-08-14T12:00:00"));
    }

    #[test]
    fn epoch_and_tai64n() {
        let (text, time) = find(None, "1124013600.500 x").expect("epoch");
        assert_eq!(text, "1124013600.500");
        assert_eq!(time, NOW + 500);
        let (_, time) = find(Some("EPOCH"), "[1124013600] x").expect("epoch");
        assert_eq!(time, NOW);
        let (_, time) = find(None, "@4000000042ff162000000000 x").expect("tai64n");
        assert_eq!(time, 0x42ff_1620 * 1000);
        // Found by the fuzz target: a TAI64N label too large for milliseconds is no time.
        let detector = DateDetector::new(Some("TAI64N"), 2026).expect("template");
        let found = detector
            .find("@4fffffffffffffff00000000 x", NOW, &zone())
            .expect("the label is found");
        assert_eq!(found.time, None);
    }

    #[test]
    fn a_datepattern_with_line_start_and_date_embedding() {
        let (text, _) = find(Some("^%Y-%m-%d %H:%M:%S"), "2005-08-14 11:00:00 x").expect("date");
        assert_eq!(text, "2005-08-14 11:00:00");
        assert!(find(Some("{^LN-BEG}%Y-%m-%d %H:%M:%S"), "x 2005-08-14 11:00:00").is_none());
        let (text, _) = find(
            Some(r"^<\d+>\d+\s+{DATE}"),
            "<34>1 2005-08-14T11:00:00Z host x",
        )
        .expect("date");
        // The whole pattern is the date, as in fail2ban: the prefix is cut with it.
        assert_eq!(text, "<34>1 2005-08-14T11:00:00Z");
        assert!(find(Some("{NONE}"), "2005-08-14 11:00:00 x").is_none());
    }

    /// Found by the differential run against fail2ban: year 0 is no date to Python, so
    /// the date text is cut from the line but gives no time.
    #[test]
    fn year_zero_is_found_but_gives_no_time() {
        let detector = DateDetector::new(Some("^%Y-%m-%d %H:%M:%S"), 2026).expect("template");
        let found = detector
            .find("0000-12-30 00:00:00 x", NOW, &zone())
            .expect("the date text is found");
        assert_eq!((found.start, found.end, found.time), (0, 19, None));
    }

    // fail2ban's default templates are compiled when a line first needs them
    // (`Template::regex`, which would panic): each of them compiles, for every year digit.
    #[test]
    fn every_default_template_compiles() {
        for year_digit in '0'..='9' {
            let build = Builder {
                year_digit,
                lazy: true,
            };
            let defaults = build.defaults(None).expect("the defaults");
            assert_eq!(defaults.len(), 30);
            for template in &defaults {
                assert!(template.compiled.get().is_none(), "left to compile");
                if let Err(e) = Regex::new(&template.source) {
                    panic!("{}: {e}", template.source);
                }
            }
        }
    }

    // A filter's own datepattern is compiled when the filter is read: its error is said
    // then, not at the first line that needs it.
    #[test]
    fn a_datepattern_is_compiled_at_once() {
        let detector = DateDetector::new(Some("%Y-%m-%d %H:%M:%S"), 2026).expect("compiles");
        assert!(
            detector
                .templates
                .iter()
                .all(|t| t.compiled.get().is_some())
        );
        let error = DateDetector::new(Some("%Y-%m-%d (unclosed %H:%M:%S"), 2026)
            .expect_err("a regex error");
        assert!(error.to_string().contains("unclosed"), "{error}");
    }

    #[test]
    fn a_bad_field_is_an_error() {
        let error = DateDetector::new(Some("%Q"), 2026).expect_err("refused");
        assert!(error.to_string().contains("%Q"), "{error}");
    }

    /// Found by the fail2ban_filter fuzz target: a field letter wider than a byte, after
    /// `%` or `%Ex`, is an error, not a panic.
    #[test]
    fn a_field_letter_of_several_bytes_is_an_error() {
        for pattern in ["%Ex\u{a7}H:%M", "%\u{e9}", "%Ex"] {
            let error = DateDetector::new(Some(pattern), 2026).expect_err("refused");
            assert!(error.to_string().contains('%'), "{pattern}: {error}");
        }
    }

    /// The ISO scan finds what the regexes find, on ISO lines bent every way the scan
    /// must notice (fractions, zones, fields out of range, word characters after).
    mod iso {
        use super::*;
        use proptest::prelude::*;

        /// `fast` finds in each of `lines`, one after the other, what its templates'
        /// regexes alone find (their last-template memo going its own way in each).
        fn same_as_the_regexes(
            fast: &DateDetector,
            lines: &[String],
            now: i64,
        ) -> Result<(), TestCaseError> {
            let mut slow = fast.clone();
            for template in &mut slow.templates {
                template.scan = None;
            }
            for line in lines {
                prop_assert_eq!(
                    fast.find(line, now, &zone()),
                    slow.find(line, now, &zone()),
                    "{:?}",
                    line
                );
            }
            Ok(())
        }

        fn line() -> impl Strategy<Value = String> {
            let year = prop_oneof![
                Just("2026"),
                Just("2005"),
                Just("1999"),
                Just("0000"),
                Just("2039")
            ];
            let two = prop_oneof![
                Just("00"),
                Just("01"),
                Just("09"),
                Just("12"),
                Just("13"),
                Just("23"),
                Just("24"),
                Just("30"),
                Just("31"),
                Just("59"),
                Just("60"),
                Just("61")
            ];
            let between = prop_oneof![Just(" "), Just("T"), Just("  ")];
            let fraction = prop_oneof![
                Just(""),
                Just(",001"),
                Just(".5"),
                Just(",123456"),
                Just(",1234567"),
                Just(","),
                Just(".x")
            ];
            let zone = prop_oneof![
                Just(""),
                Just("Z"),
                Just(" UTC"),
                Just("+0100"),
                Just(" -05:00"),
                Just(" - app"),
                Just(" +1"),
                Just("\u{a0}+0100"),
                Just("GMTx")
            ];
            let tail = prop_oneof![
                Just(""),
                Just(" x"),
                Just("x"),
                Just("_"),
                Just("é"),
                Just("1"),
                Just(":")
            ];
            let separators = prop_oneof![
                Just(("-", "-")),
                Just(("/", "/")),
                Just((".", "/")),
                Just(("_", "-"))
            ];
            (
                year,
                separators,
                two.clone(),
                two.clone(),
                between,
                two.clone(),
                two.clone(),
                two,
                fraction,
                zone,
                tail,
            )
                .prop_map(|(y, (s1, s2), mo, d, t, h, mi, s, f, z, tail)| {
                    format!("{y}{s1}{mo}{s2}{d}{t}{h}:{mi}:{s}{f}{z}{tail}")
                })
        }

        fn syslog_line() -> impl Strategy<Value = String> {
            let month = prop_oneof![
                Just("Aug"),
                Just("dec"),
                Just("JAN"),
                Just("Mon"),
                Just("Foo")
            ];
            let day = prop_oneof![
                Just("14"),
                Just(" 4"),
                Just("04"),
                Just("4"),
                Just("00"),
                Just("31"),
                Just("32")
            ];
            let time = prop_oneof![
                Just("11:59:59"),
                Just("23:00:00"),
                Just("25:00:00"),
                Just("35:00:00"),
                Just(" 1:02:03"),
                Just("12:60:00"),
                Just("12:00:61"),
                Just("12:00:1")
            ];
            let fraction = prop_oneof![Just(""), Just(".5"), Just(".1234567"), Just(".")];
            let tail = prop_oneof![
                Just(" host sshd[1]: x"),
                Just(" 2005 host"),
                Just(" 20"),
                Just("x"),
                Just(""),
                Just("é"),
                Just(":")
            ];
            (month, day, time, fraction, tail)
                .prop_map(|(m, d, t, f, tail)| format!("{m} {d} {t}{f}{tail}"))
        }

        proptest! {
            #[test]
            fn the_syslog_scan_finds_what_the_regexes_find(
                lines in prop::collection::vec(prop_oneof![syslog_line(), line()], 1..8),
                now in prop_oneof![Just(NOW), Just(1_735_689_599_000_i64)],
            ) {
                for pattern in [None, Some("{^LN-BEG}")] {
                    let fast = DateDetector::new(pattern, 2026).expect("templates");
                    prop_assert_eq!(fast.templates[1].scan, Some(Scan::Syslog));
                    same_as_the_regexes(&fast, &lines, now)?;
                }
            }

            #[test]
            fn the_scan_finds_what_the_regex_finds(lines in prop::collection::vec(line(), 1..6)) {
                for pattern in [None, Some("^%Y-%m-%d %H:%M:%S,%f"), Some("%Y-%m-%dT%H:%M:%S")] {
                    let fast = DateDetector::new(pattern, 2026).expect("templates");
                    prop_assert!(fast.templates[0].scan.is_some(), "{pattern:?}");
                    same_as_the_regexes(&fast, &lines, NOW)?;
                }
            }
        }

        #[test]
        fn python_logging_lines_are_scanned() {
            let detector = DateDetector::new(Some("^%Y-%m-%d %H:%M:%S,%f"), 2026).expect("ok");
            let line = "2005-08-14 11:59:59,123 - app - INFO - 192.0.2.1 - x";
            let Some(Scan::Iso(iso)) = detector.templates[0].scan else {
                panic!("an ISO template");
            };
            let found = iso.read(line, NOW, &zone());
            assert_eq!(
                found,
                Some(Found {
                    start: 0,
                    end: 23,
                    time: Some(local("2005-08-14T11:59:59"))
                })
            );
        }
    }
}
