//! Turns log lines into failures: failregex/ignoreregex with fail2ban's address tags,
//! compiled so that a line is scanned once whatever the number of regexes (a literal
//! prefilter, then a regex set), and the time of the line. Pure: `&str` in, [`Outcome`]
//! out.

pub mod date;
mod prefilter;
mod tags;

use std::net::IpAddr;

use ipnet::IpNet;
pub use prefilter::{Candidates, LiteralGate, Prefilter};
use regex::{Regex, RegexSet};
pub use tags::Tag;
use thiserror::Error;

/// The shipped filter for the FastAPI auth log (see `filters/fastapi-auth.toml`).
pub const FASTAPI_AUTH: &str = include_str!("../../../filters/fastapi-auth.toml");

/// Filters built into the binary, by the name `filter = "NAME"` uses.
pub const BUILTIN: [(&str, &str); 1] = [("fastapi-auth", FASTAPI_AUTH)];

/// The shipped FastAPI filter, compiled.
pub fn fastapi_auth() -> Filter {
    // A constant of this binary, checked by `filter::tests`: not input that can fail.
    let spec: FilterSpec = toml::from_str(FASTAPI_AUTH).expect("the shipped filter parses");
    Filter::compile(&spec).expect("the shipped filter compiles")
}

/// The text of the built-in filter `name`.
pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTIN
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .map(|(_, text)| *text)
}

/// A filter as written in configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// Regexes that recognise a failure; each has exactly one address tag.
    #[serde(default)]
    pub failregex: Vec<String>,
    /// Regexes that veto a failure matched by `failregex`.
    #[serde(default)]
    pub ignoreregex: Vec<String>,
}

/// What is wrong with a filter.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("failregex #{} ({regex:?}): {problem}", index + 1)]
    Tag {
        index: usize,
        regex: String,
        problem: &'static str,
    },
    #[error("{kind} #{} ({regex:?}) is not a valid regex: {message}", index + 1)]
    Regex {
        kind: &'static str,
        index: usize,
        regex: String,
        message: String,
    },
    #[error("the filter has no failregex: it would never match")]
    Empty,
}

/// What a line amounts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A failure of this address (a host route) or network (`<CIDR>`), by failregex `regex`.
    Failure { target: IpNet, regex: usize },
    /// A failure found with the line's time (a full filter reads it itself).
    Dated {
        target: IpNet,
        regex: usize,
        time: Option<i64>,
    },
    /// A failregex matched, and so did an ignoreregex.
    Ignored { regex: usize },
    /// No failregex matched, or what it captured is not a valid address.
    Missed,
}

/// A jail's filter as the detector runs it.
#[derive(Clone, Debug)]
pub enum JailFilter {
    /// failregex/ignoreregex on one line, scanned once (literal prefilter, regex set);
    /// the time is read by the jail's `datepattern`.
    Simple(Filter),
    /// fail2ban's whole model: `prefregex`, multi-line buffers, connection ids, its date
    /// templates, Python's regex dialect. fail2ban's filter files compile to it.
    Full(Box<crate::fail2ban::Matcher>),
}

impl JailFilter {
    /// The failregexes as written, in order.
    pub fn patterns(&self) -> &[String] {
        match self {
            Self::Simple(filter) => filter.patterns(),
            Self::Full(matcher) => matcher.patterns(),
        }
    }

    /// Number of failregexes.
    pub fn len(&self) -> usize {
        self.patterns().len()
    }

    /// The filter's own `journalmatch` (fail2ban filters), for a journal jail that sets
    /// none.
    pub fn journalmatch(&self) -> &[String] {
        match self {
            Self::Simple(_) => &[],
            Self::Full(matcher) => matcher.journalmatch(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns().is_empty()
    }
}

impl From<Filter> for JailFilter {
    fn from(filter: Filter) -> Self {
        Self::Simple(filter)
    }
}

/// Capture room for [`Filter::check_with`].
#[derive(Clone, Debug)]
pub struct Scratch(Vec<regex::CaptureLocations>);

/// A compiled filter.
#[derive(Clone, Debug)]
pub struct Filter {
    /// The failregexes as written.
    patterns: Vec<String>,
    prefilter: Option<Prefilter>,
    /// All failregexes in one automaton; only when there are several.
    set: Option<RegexSet>,
    regexes: Vec<Failregex>,
    ignore: Option<RegexSet>,
}

/// One compiled failregex.
#[derive(Clone, Debug)]
struct Failregex {
    regex: Regex,
    tag: Tag,
    /// Index of the `host` group (the failregex may have groups of its own before it).
    host_group: usize,
}

impl Filter {
    pub fn compile(spec: &FilterSpec) -> Result<Self, FilterError> {
        if spec.failregex.is_empty() {
            return Err(FilterError::Empty);
        }
        let mut expanded = Vec::with_capacity(spec.failregex.len());
        let mut regexes = Vec::with_capacity(spec.failregex.len());
        for (index, regex) in spec.failregex.iter().enumerate() {
            let (pattern, tag) = tags::expand(regex).map_err(|problem| FilterError::Tag {
                index,
                regex: regex.clone(),
                problem,
            })?;
            let compiled =
                Regex::new(&pattern).map_err(|e| regex_error("failregex", index, regex, &e))?;
            let host_group = compiled
                .capture_names()
                .position(|name| name == Some("host"))
                .unwrap_or(0);
            regexes.push(Failregex {
                regex: compiled,
                tag,
                host_group,
            });
            expanded.push(pattern);
        }
        let set = if expanded.len() > 1 {
            Some(
                RegexSet::new(&expanded)
                    .map_err(|e| regex_error("failregex", 0, &expanded[0], &e))?,
            )
        } else {
            None
        };
        let ignore = if spec.ignoreregex.is_empty() {
            None
        } else {
            for (index, regex) in spec.ignoreregex.iter().enumerate() {
                Regex::new(regex).map_err(|e| regex_error("ignoreregex", index, regex, &e))?;
            }
            Some(
                RegexSet::new(&spec.ignoreregex)
                    .map_err(|e| regex_error("ignoreregex", 0, &spec.ignoreregex[0], &e))?,
            )
        };
        Ok(Self {
            patterns: spec.failregex.clone(),
            prefilter: Prefilter::new(&expanded),
            set,
            regexes,
            ignore,
        })
    }

    /// The failregexes as written, in order.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Number of failregexes.
    pub fn len(&self) -> usize {
        self.regexes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.regexes.is_empty()
    }

    /// Judges one line (without its line terminator).
    pub fn check(&self, line: &str) -> Outcome {
        self.check_with(&mut self.scratch(), line)
    }

    /// Room for the capture positions of each failregex, reused across lines by
    /// [`Filter::check_with`] so that judging a line allocates nothing.
    pub fn scratch(&self) -> Scratch {
        Scratch(
            self.regexes
                .iter()
                .map(|failregex| failregex.regex.capture_locations())
                .collect(),
        )
    }

    /// [`Filter::check`] with reused capture room (made by this filter's `scratch`).
    pub fn check_with(&self, scratch: &mut Scratch, line: &str) -> Outcome {
        // A literal scan rejects most lines; one regex-set scan decides whether any
        // failregex matches; only then are captures taken.
        if self.prefilter.as_ref().is_some_and(|p| !p.may_match(line)) {
            return Outcome::Missed;
        }
        let Some(regex) = self.first_match(line) else {
            return Outcome::Missed;
        };
        let failregex = &self.regexes[regex];
        let Some(locations) = scratch.0.get_mut(regex) else {
            return Outcome::Missed;
        };
        let host = failregex
            .regex
            .captures_read(locations, line)
            .and_then(|_| locations.get(failregex.host_group))
            .map(|(start, end)| &line[start..end]);
        let Some(target) = host.and_then(|host| parse_target(host, failregex.tag)) else {
            return Outcome::Missed;
        };
        if self.ignore.as_ref().is_some_and(|set| set.is_match(line)) {
            return Outcome::Ignored { regex };
        }
        Outcome::Failure { target, regex }
    }

    fn first_match(&self, line: &str) -> Option<usize> {
        match &self.set {
            Some(set) => set.matches(line).into_iter().next(),
            // One failregex: the captures search that follows fails as fast as a set scan.
            None => Some(0),
        }
    }
}

fn regex_error(kind: &'static str, index: usize, regex: &str, error: &regex::Error) -> FilterError {
    FilterError::Regex {
        kind,
        index,
        regex: regex.to_owned(),
        message: error.to_string(),
    }
}

/// The captured text as an address of the tag's kind; `None` if it is not one.
fn parse_target(text: &str, tag: Tag) -> Option<IpNet> {
    match tag {
        Tag::Cidr => text.parse::<IpNet>().ok().map(|net| net.trunc()),
        _ => {
            let addr: IpAddr = text.parse().ok()?;
            let fits = match tag {
                Tag::Ip4 => addr.is_ipv4(),
                Tag::Ip6 => addr.is_ipv6(),
                _ => true,
            };
            fits.then(|| IpNet::from(canonical(addr)))
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.7`, as dual-stack servers log IPv4
/// clients) is the IPv4 address: that is what the packets carry.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests;
