//! Turns log lines into failures: one [`Filter`] for every filter, ours (TOML) or
//! fail2ban's (`.conf`, read by `fail2ban/` into a [`ModelSpec`]). failregex/ignoreregex
//! with fail2ban's address tags, compiled so that a line is scanned once whatever the
//! number of regexes (a literal prefilter, then a regex set), and the time of the line;
//! fail2ban's model (`prefregex`, multi-line buffers, connection ids, its date templates)
//! for the filters read from its files ([`multiline`], which still runs its own regexes).
//! `&str` in, [`Outcome`] out.

pub mod address;
mod ascii;
pub mod date;
pub mod json;
pub mod multiline;
mod onepass;
pub mod options;
pub mod pattern;
mod pick;
mod prefilter;
pub mod tags;
pub mod templates;

use std::collections::BTreeMap;

use date::DateFormat;
use ipnet::IpNet;
use jiff::tz::TimeZone;
use json::{JsonOutcome, JsonRules, JsonSpec};
pub use multiline::{Hit, LineCount, LineKind, ModelSpec, Source};
pub use prefilter::{Candidates, LiteralGate, Prefilter};
use regex::{Regex, RegexSet};
use regex_automata::{Input, PatternSet, meta};
pub use tags::Tag;
use thiserror::Error;

/// The shipped filter for the FastAPI auth log (see `filters/fastapi-auth.toml`).
pub const FASTAPI_AUTH: &str = include_str!("../../../filters/fastapi-auth.toml");

/// Filters built into the binary, by the name `filter = "NAME"` uses: the seed's FastAPI
/// log, and the access logs of what serves a FastAPI app (`filters/NAME.toml`, each with
/// its annotated sample log in `filters/tests/NAME.log`).
pub const BUILTIN: [(&str, &str); 6] = [
    ("fastapi-auth", FASTAPI_AUTH),
    ("uvicorn", include_str!("../../../filters/uvicorn.toml")),
    ("gunicorn", include_str!("../../../filters/gunicorn.toml")),
    ("nginx", include_str!("../../../filters/nginx.toml")),
    ("caddy", include_str!("../../../filters/caddy.toml")),
    ("traefik", include_str!("../../../filters/traefik.toml")),
];

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
    /// Named parts of the regexes (`%(login_path)s`) and their defaults.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Rules over the fields of JSON lines (lines that start with `{`).
    #[serde(default)]
    pub json: Option<JsonSpec>,
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
    #[error("the filter has no failregex (nor `[json]` rules): it would never match")]
    Empty,
    #[error("datepattern {pattern:?}: {problem}")]
    DatePattern { pattern: String, problem: String },
    #[error(transparent)]
    Option(#[from] options::OptionError),
    #[error(transparent)]
    Json(#[from] json::JsonError),
}

/// What a line amounts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A failure of this address (a host route) or network (`<CIDR>`), by failregex `regex`.
    Failure { target: IpNet, regex: usize },
    /// A failure found with the line's time, read by the filter itself: a JSON field,
    /// or fail2ban's date templates (`None`: the line has no date).
    Dated {
        target: IpNet,
        regex: usize,
        time: Option<i64>,
        format: DateFormat,
    },
    /// A failregex matched, and so did an ignoreregex.
    Ignored { regex: usize },
    /// No failregex matched, or what it captured is not a valid address.
    Missed,
    /// A line of a JSON filter that starts with `{` but is not a JSON object: skipped.
    Malformed,
}

/// Room for [`Filter::check_with`], reused across lines: each failregex's capture
/// positions (and its one-pass twin's), which failregexes matched, and where the last
/// failure's `time` group is.
#[derive(Clone, Debug)]
pub struct Scratch {
    captures: Vec<regex::CaptureLocations>,
    one_pass: Vec<Option<onepass::Room>>,
    matched: Option<PatternSet>,
    time: Option<(usize, (usize, usize))>,
}

/// A compiled filter.
#[derive(Clone, Debug)]
pub struct Filter {
    /// The failregexes as written.
    patterns: Vec<String>,
    prefilter: Option<Prefilter>,
    /// All failregexes in one automaton; only when there are several.
    set: Option<meta::Regex>,
    regexes: Vec<Failregex>,
    ignore: Option<RegexSet>,
    /// Rules for JSON lines; their failures are numbered after the failregexes.
    json: Option<Box<JsonRules>>,
    /// fail2ban's model, for a filter read from its files: it judges every line, with
    /// state (buffers, connections), in place of the rules above.
    model: Option<Box<multiline::Matcher>>,
}

/// One compiled failregex.
#[derive(Clone, Debug)]
struct Failregex {
    regex: Regex,
    tag: Tag,
    /// Index of the `host` group (the failregex may have groups of its own before it).
    host_group: usize,
    /// Index of a group named `time`: where the line's time is, when text a client
    /// controls may come before it (nginx's `$remote_user` holds any `[...]`).
    time_group: Option<usize>,
    /// The same regex read in one scan, when it can be ([`onepass`]).
    one_pass: Option<onepass::OnePass>,
}

impl Filter {
    /// A filter that finds no failure in any line: a jail whose bans come from elsewhere
    /// (CrowdSec's decisions) reads no log.
    pub fn none() -> Self {
        Self {
            patterns: Vec::new(),
            prefilter: None,
            set: None,
            regexes: Vec::new(),
            ignore: None,
            json: None,
            model: None,
        }
    }

    pub fn compile(spec: &FilterSpec) -> Result<Self, FilterError> {
        Self::compile_with(spec, &[])
    }

    /// Compiles `spec` with its options set as `overrides` says (the jail's
    /// `filter = "NAME[option=value]"`), the others at their defaults.
    pub fn compile_with(
        spec: &FilterSpec,
        overrides: &[(String, String)],
    ) -> Result<Self, FilterError> {
        if spec.failregex.is_empty() && spec.json.is_none() {
            return Err(FilterError::Empty);
        }
        let options = options::merge(&spec.options, overrides)?;
        let substitute = |list: &[String]| {
            list.iter()
                .map(|regex| options::substitute(regex, &options))
                .collect::<Result<Vec<_>, _>>()
        };
        let failregex = substitute(&spec.failregex)?;
        let ignoreregex = substitute(&spec.ignoreregex)?;
        let json = match &spec.json {
            Some(json) => Some(Box::new(JsonRules::compile(json, &options)?)),
            None => None,
        };
        let mut expanded = Vec::with_capacity(failregex.len());
        let mut regexes = Vec::with_capacity(failregex.len());
        for (index, regex) in failregex.iter().enumerate() {
            let ascii = ascii::perl_classes(regex);
            let (pattern, tag) = tags::expand(&ascii).map_err(|problem| FilterError::Tag {
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
            let time_group = compiled
                .capture_names()
                .position(|name| name == Some("time"));
            regexes.push(Failregex {
                regex: compiled,
                tag,
                host_group,
                time_group,
                one_pass: onepass::OnePass::new(&ascii),
            });
            expanded.push(pattern);
        }
        let set = if expanded.len() > 1 {
            // Each compiled alone above, so a failure here is the set's size.
            let set = meta::Regex::new_many(&expanded).map_err(|e| FilterError::Regex {
                kind: "failregex",
                index: 0,
                regex: expanded.join(" | "),
                message: e.to_string(),
            })?;
            Some(set)
        } else {
            None
        };
        let ignore = if ignoreregex.is_empty() {
            None
        } else {
            let ascii: Vec<String> = ignoreregex.iter().map(|r| ascii::perl_classes(r)).collect();
            for (index, regex) in ignoreregex.iter().enumerate() {
                Regex::new(&ascii[index])
                    .map_err(|e| regex_error("ignoreregex", index, regex, &e))?;
            }
            Some(
                RegexSet::new(&ascii)
                    .map_err(|e| regex_error("ignoreregex", 0, &ignoreregex[0], &e))?,
            )
        };
        let mut patterns = failregex;
        patterns.extend(json.iter().flat_map(|j| j.described().iter().cloned()));
        Ok(Self {
            patterns,
            prefilter: Prefilter::new(&expanded),
            set,
            regexes,
            ignore,
            json,
            model: None,
        })
    }

    /// Compiles a filter of fail2ban's model; `zone` is the log's time zone (fail2ban's
    /// `logtimezone`), `year` this year (it bounds the strict year field `%ExY`).
    pub fn compile_model(spec: &ModelSpec, zone: TimeZone, year: i16) -> Result<Self, FilterError> {
        let model = multiline::Matcher::new(spec, zone, year)?;
        Ok(Self {
            patterns: model.patterns().to_vec(),
            prefilter: None,
            set: None,
            regexes: Vec::new(),
            ignore: None,
            json: None,
            model: Some(Box::new(model)),
        })
    }

    /// The filter's own `journalmatch` (fail2ban's filters), for a journal jail that sets
    /// none.
    pub fn journalmatch(&self) -> &[String] {
        self.model
            .as_ref()
            .map_or(&[], |model| model.journalmatch())
    }

    /// How many lines a failure may span (fail2ban's `maxlines`; 1 for ours).
    pub fn maxlines(&self) -> usize {
        self.model.as_ref().map_or(1, |model| model.maxlines())
    }

    /// Whether the filter is of fail2ban's model (read from its files).
    pub fn is_model(&self) -> bool {
        self.model.is_some()
    }

    /// Reads dates written without a zone in `zone` (fail2ban's `logtimezone`); our
    /// filters leave dates to the jail's `datepattern`.
    pub fn set_zone(&mut self, zone: &TimeZone) {
        if let Some(model) = &mut self.model {
            model.set_zone(zone.clone());
        }
    }

    /// fail2ban's `checkAllRegex` (its test suite's mode): every failregex is tried, and
    /// lines that only name a connection are reported. Our filters take the first match.
    pub fn set_check_all(&mut self, on: bool) {
        if let Some(model) = &mut self.model {
            model.check_all = on;
        }
    }

    /// Keeps, for a filter of fail2ban's model, what fail2ban-regex's `Lines:` counts of
    /// each line ([`Filter::count`]).
    pub fn keep_count(&mut self, on: bool) {
        if let Some(model) = &mut self.model {
            model.keep_count(on);
        }
    }

    /// How fail2ban-regex counts the line [`Filter::judge`] last judged, for a filter of
    /// its model (kept by [`Filter::keep_count`]); `None` for ours, whose outcome says it.
    pub fn count(&self) -> Option<LineCount> {
        self.model.as_ref().map(|model| model.count())
    }

    /// Lines a backtracking regex gave up on (its step limit), judged as not matching.
    pub fn overruns(&self) -> u64 {
        self.model.as_ref().map_or(0, |model| model.overruns)
    }

    /// Judges `line` read at `now` (ms), or a journal entry whose time `known` came with
    /// it. Our filters judge each line alone ([`Filter::check_with`]); fail2ban's model
    /// keeps what earlier lines said.
    pub fn judge(
        &mut self,
        scratch: &mut Scratch,
        line: &str,
        now: i64,
        known: Option<i64>,
    ) -> Outcome {
        match &mut self.model {
            Some(model) => model.judge(line, now, known),
            None => self.check_with(scratch, line),
        }
    }

    /// What the line [`Filter::judge`] last judged amounted to in fail2ban's terms (ids,
    /// users, lines of a failure), for a filter of its model; `None` for ours.
    pub fn hits(&self) -> Option<&[Hit]> {
        self.model.as_ref().map(|model| model.hits())
    }

    /// The time of `line` as the filter itself reads it, without judging the line:
    /// `Some` for a filter of fail2ban's model (its templates; `Some(None)`: no date);
    /// `None` when the jail's date reader is to read it (a JSON line's time comes with
    /// its judgement, [`Filter::judge_json`]).
    pub fn own_time(&mut self, line: &str, fallback: i64) -> Option<Option<(i64, DateFormat)>> {
        let model = self.model.as_mut()?;
        Some(
            model
                .date_of(line, fallback)
                .map(|at| (at, DateFormat::Template)),
        )
    }

    /// The failregexes with their options in place, then the JSON rules in words.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Number of failregexes and JSON failure rules.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `line` is judged by the filter's JSON rules (it starts with `{`).
    pub fn reads_json(&self, line: &str) -> bool {
        self.json.is_some() && line.trim_start().starts_with('{')
    }

    /// For a line the filter's JSON rules judge (it starts with `{`): the outcome, and the
    /// line's time field as read (`None`: the line was not parsed, as no failure rule's
    /// words are in it; `Some(None)`: it has none).
    pub fn judge_json(&self, line: &str) -> Option<(Outcome, Option<Option<i64>>)> {
        let json = self.json.as_ref().filter(|_| self.reads_json(line))?;
        let rule = |rule: usize| self.regexes.len() + rule;
        Some(match json.check(line) {
            JsonOutcome::Skipped => (Outcome::Missed, None),
            JsonOutcome::Malformed => (Outcome::Malformed, None),
            JsonOutcome::Missed { time } => (Outcome::Missed, Some(time)),
            JsonOutcome::Ignored { rule: r, time } => {
                (Outcome::Ignored { regex: rule(r) }, Some(time))
            }
            JsonOutcome::Failure {
                target,
                rule: r,
                time,
            } => (
                Outcome::Dated {
                    target,
                    regex: rule(r),
                    time,
                    format: DateFormat::Field,
                },
                Some(time),
            ),
        })
    }

    /// Judges one line (without its line terminator) by the filter's own rules alone; a
    /// filter of fail2ban's model keeps state and judges with [`Filter::judge`].
    pub fn check(&self, line: &str) -> Outcome {
        self.check_with(&mut self.scratch(), line)
    }

    /// Room for the capture positions of each failregex, reused across lines by
    /// [`Filter::check_with`] so that judging a line allocates nothing.
    pub fn scratch(&self) -> Scratch {
        Scratch {
            captures: self
                .regexes
                .iter()
                .map(|failregex| failregex.regex.capture_locations())
                .collect(),
            one_pass: self
                .regexes
                .iter()
                .map(|failregex| failregex.one_pass.as_ref().map(onepass::OnePass::room))
                .collect(),
            matched: self
                .set
                .as_ref()
                .map(|set| PatternSet::new(set.pattern_len())),
            time: None,
        }
    }

    /// [`Filter::check`] with reused capture room (made by this filter's `scratch`).
    pub fn check_with(&self, scratch: &mut Scratch, line: &str) -> Outcome {
        if let Some((outcome, _)) = self.judge_json(line) {
            return outcome;
        }
        if self.regexes.is_empty() {
            return Outcome::Missed;
        }
        // A literal scan rejects most lines; one regex-set scan decides whether any
        // failregex matches; only then are captures taken.
        if self.prefilter.as_ref().is_some_and(|p| !p.may_match(line)) {
            return Outcome::Missed;
        }
        let Some(regex) = self.first_match(scratch, line) else {
            return Outcome::Missed;
        };
        let failregex = &self.regexes[regex];
        scratch.time = None;
        let one_pass = match (&failregex.one_pass, scratch.one_pass.get_mut(regex)) {
            (Some(one_pass), Some(Some(room))) => one_pass.find(room, line),
            _ => onepass::Found::Unsure,
        };
        let host = match one_pass {
            onepass::Found::No => return Outcome::Missed,
            onepass::Found::Host { host, time } => {
                scratch.time = time.map(|time| (regex, time));
                Some(host)
            }
            onepass::Found::Unsure => Self::captures(failregex, scratch, regex, line),
        };
        let host = host.map(|(start, end)| &line[start..end]);
        let Some(target) = host.and_then(|host| address::target(host, failregex.tag, None)) else {
            return Outcome::Missed;
        };
        if self.ignore.as_ref().is_some_and(|set| set.is_match(line)) {
            return Outcome::Ignored { regex };
        }
        Outcome::Failure { target, regex }
    }

    /// The exact regex's captures: the address's span; the `time` group's goes to
    /// `scratch`.
    fn captures(
        failregex: &Failregex,
        scratch: &mut Scratch,
        regex: usize,
        line: &str,
    ) -> Option<(usize, usize)> {
        let locations = scratch.captures.get_mut(regex)?;
        failregex.regex.captures_read(locations, line)?;
        scratch.time = failregex
            .time_group
            .and_then(|group| locations.get(group))
            .map(|time| (regex, time));
        locations.get(failregex.host_group)
    }

    /// The text of the `time` group of failregex `regex` in the line [`Filter::check_with`]
    /// last judged a failure with `scratch`.
    pub fn time_text<'l>(&self, scratch: &Scratch, regex: usize, line: &'l str) -> Option<&'l str> {
        let (judged, (start, end)) = scratch.time?;
        (judged == regex).then(|| line.get(start..end)).flatten()
    }

    /// The first failregex that matches `line`, found in one scan of them all.
    fn first_match(&self, scratch: &mut Scratch, line: &str) -> Option<usize> {
        let Some(set) = &self.set else {
            // One failregex: the captures search that follows fails as fast as a set scan.
            return Some(0);
        };
        // A scratch made by this filter has the room; another one gets it now.
        let matched = scratch
            .matched
            .get_or_insert_with(|| PatternSet::new(set.pattern_len()));
        matched.clear();
        set.which_overlapping_matches(&Input::new(line), matched);
        matched.iter().next().map(|pattern| pattern.as_usize())
    }
}

#[cfg(test)]
impl Filter {
    /// The same filter without one-pass twins: every failure's captures by the exact
    /// regex, to compare with.
    fn exact_only(&self) -> Self {
        let mut exact = self.clone();
        for failregex in &mut exact.regexes {
            failregex.one_pass = None;
        }
        exact
    }

    /// How many failregexes have a one-pass twin.
    fn one_pass_len(&self) -> usize {
        self.regexes.iter().filter(|r| r.one_pass.is_some()).count()
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

#[cfg(test)]
mod tests;
