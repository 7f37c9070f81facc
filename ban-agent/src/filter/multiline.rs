//! fail2ban's model of a filter at work, line by line, as fail2ban's
//! `Filter.processLine` and `findFailure` work: the date is found and cut out, lines join
//! a buffer of `maxlines`, `prefregex` selects the lines and its `<F-CONTENT>` is what the
//! failregexes see, `ignoreregex` vetoes, and `<F-MLFID>` ties the lines of one
//! connection together (`<F-NOFAIL>`, `<F-MLFFORGET>`, `<F-MLFGAINED>`), so that a
//! failure reported over several lines (sshd, sendmail) is one failure with its host and
//! user. `fail2ban/` reads the files into a [`ModelSpec`]; this runs it.

use std::collections::{BTreeMap, BTreeSet};

use hashlink::LinkedHashMap;
use jiff::tz::TimeZone;

use super::{
    Candidates, FilterError, LiteralGate, Outcome,
    date::DateFormat,
    pattern::{BACKTRACK_LIMIT, Overrun, Pattern, Spans},
    templates::DateDetector,
};

/// A filter in fail2ban's model, as `fail2ban/` reads it from its files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelSpec {
    pub prefregex: Option<Source>,
    pub failregex: Vec<Source>,
    pub ignoreregex: Vec<Source>,
    pub maxlines: usize,
    /// One date pattern per line, as written; `None`: fail2ban's default templates.
    pub datepattern: Option<String>,
    /// `journalctl`-style matches, one per line.
    pub journalmatch: Vec<String>,
}

/// A regex of a [`ModelSpec`]: as written in the filter (for messages), and in Rust's
/// syntax with its tags expanded (what is compiled).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Source {
    pub written: String,
    pub rust: String,
}

/// Connections remembered by `<F-MLFID>` (fail2ban keeps 100 for 5 minutes).
const MLFID_CAPACITY: usize = 1000;
const MLFID_TTL_MS: i64 = 5 * 60 * 1000;
/// fail2ban reuses the last line's date for a line without one for this long.
const LAST_DATE_MS: i64 = 60_000;

/// A line of the buffer: the text before the date, the date, the text after it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Line {
    before: String,
    date: String,
    after: String,
}

impl Line {
    fn text(&self) -> String {
        format!("{}{}", self.before, self.after)
    }
}

/// What one failregex match found, merged with `prefregex` and earlier lines of the
/// same connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Fail {
    groups: BTreeMap<String, String>,
    users: BTreeSet<String>,
    nofail: bool,
    gained: bool,
    pending: bool,
    /// Lines that make up the failure (fail2ban's `matches`), and those held while the
    /// connection looked like no failure.
    matches: usize,
    nofail_matches: usize,
}

/// A failure (or, with `nofail`, a line that only identifies a connection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Index of the failregex.
    pub regex: usize,
    /// The failure's id as written in the line (fail2ban compares it so): the address,
    /// a host name, or `<F-ID>`.
    pub id: Option<String>,
    /// The address text when the failure has one (`ip4`, `ip6`), with its prefix length.
    pub address: Option<(String, Option<u8>)>,
    /// A host name `<HOST>` took instead of an address (never resolved).
    pub dns: Option<String>,
    pub user: Option<String>,
    pub users: Vec<String>,
    /// Milliseconds since the epoch; `None` when the line had no date.
    pub time: Option<i64>,
    /// Lines this failure is made of.
    pub attempts: usize,
    /// Not a failure: `<F-NOFAIL>` or a connection that succeeded.
    pub nofail: bool,
}

impl Hit {
    /// The address or network to count and ban, when the failure has one: a host name
    /// or an `<F-ID>` alone has none (the agent never resolves names).
    pub fn target(&self) -> Option<ipnet::IpNet> {
        let (address, cidr) = self.address.as_ref()?;
        super::address::target(address, super::Tag::Addr, *cidr)
    }
}

/// A compiled fail2ban filter with its buffers; one per jail and log.
#[derive(Clone, Debug)]
pub struct Matcher {
    /// The failregexes as written (after interpolation).
    patterns: Vec<String>,
    /// The filter's `journalmatch` lines.
    journalmatch: Vec<String>,
    prefregex: Option<Pattern>,
    failregex: Vec<Pattern>,
    /// Literals every match of each failregex contains (of its gate), found in one
    /// scan: a regex is only run on a buffer that has one of its own.
    gate: LiteralGate,
    ignoreregex: Vec<Pattern>,
    maxlines: usize,
    dates: DateDetector,
    zone: TimeZone,
    /// fail2ban's `checkAllRegex`: try every failregex, and report lines that only
    /// identify a connection (its test suite's mode). Off, the first match decides.
    pub check_all: bool,
    buffer: Vec<Line>,
    last_date: Option<(i64, String)>,
    connections: LinkedHashMap<String, (i64, Fail)>,
    /// Searches that gave up (backtrack limit), counted for metrics and logged once.
    pub overruns: u64,
    /// What [`Matcher::date_of`] found in the last line it looked at (`memo_text`), for
    /// the [`Matcher::line`] that follows it.
    memo: Option<Option<super::templates::Found>>,
    memo_text: String,
    /// The gate's room, and whether it holds the candidates of the line being judged
    /// (found before its text was copied, see [`Matcher::line`]).
    found: Candidates,
    gated: bool,
    /// Room for a line's text as the regexes would see it, reused.
    scratch: String,
    /// What the last line judged by [`Matcher::judge`] amounted to.
    hits: Vec<Hit>,
    /// What fail2ban-regex's `Lines:` would count of the last line.
    tally: Tally,
}

/// What fail2ban-regex's `Lines:` summary counts of a line: kept only when asked (it
/// copies the buffer of a multi-line filter at each line).
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    on: bool,
    /// An ignoreregex matched.
    ignored: bool,
    /// Earlier lines of the buffer a failure took with it.
    consumed: usize,
}

/// A line as fail2ban-regex's `Lines:` summary counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// A failure, of an address or not (a host name, an id, a connection's line that
    /// waits for its address).
    Matched,
    /// A `<F-NOFAIL>` line, or a failure an ignoreregex vetoed.
    Ignored,
    Missed,
}

/// How fail2ban-regex counts a line: its kind, and the earlier lines (counted missed
/// then) a multi-line failure took with it, which count as matched from now on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineCount {
    pub kind: LineKind,
    pub consumed: usize,
    /// Matched, but only by host names (`<HOST>` with `usedns`), never resolved here:
    /// nothing is counted against anyone. fail2ban-regex resolves them, and counts the
    /// line missed when it cannot.
    pub host_names: bool,
}

impl Matcher {
    /// Compiles `spec`; `zone` is the log's time zone, `year` this year.
    pub fn new(spec: &ModelSpec, zone: TimeZone, year: i16) -> Result<Self, FilterError> {
        let compile = |kind: &'static str, index: usize, source: &Source| {
            Pattern::compile(&source.rust).map_err(|message| FilterError::Regex {
                kind,
                index,
                regex: source.written.clone(),
                message,
            })
        };
        let prefregex = spec
            .prefregex
            .as_ref()
            .map(|r| compile("prefregex", 0, r))
            .transpose()?;
        let compile_all = |kind: &'static str, list: &[Source]| {
            list.iter()
                .enumerate()
                .map(|(i, r)| compile(kind, i, r))
                .collect::<Result<Vec<_>, _>>()
        };
        let failregex = compile_all("failregex", &spec.failregex)?;
        if failregex.is_empty() {
            return Err(FilterError::Empty);
        }
        let ids = ["ip4", "ip6", "dns", "fid", "mlfid"];
        let has_id = |p: &Pattern| ids.iter().any(|id| p.group(id).is_some());
        let prefix_has_id = prefregex.as_ref().is_some_and(has_id);
        if let Some(index) = failregex.iter().position(|p| !has_id(p) && !prefix_has_id) {
            return Err(FilterError::Tag {
                index,
                regex: spec.failregex[index].written.clone(),
                problem: "no address or id: a failregex needs <HOST>, <ADDR>, <IP4>, <IP6>, \
                          <CIDR>, <SUBNET>, <F-ID> or <F-MLFID>",
            });
        }
        let ignoreregex = compile_all("ignoreregex", &spec.ignoreregex)?;
        let gate_patterns: Vec<&str> = failregex.iter().map(Pattern::gate).collect();
        let gate = LiteralGate::new(&gate_patterns);
        let found = gate.room();
        Ok(Self {
            patterns: spec.failregex.iter().map(|r| r.written.clone()).collect(),
            journalmatch: spec.journalmatch.clone(),
            prefregex,
            gate,
            failregex,
            ignoreregex,
            maxlines: spec.maxlines,
            dates: DateDetector::new(spec.datepattern.as_deref(), year)?,
            zone,
            check_all: false,
            buffer: Vec::new(),
            last_date: None,
            connections: LinkedHashMap::new(),
            overruns: 0,
            memo: None,
            memo_text: String::new(),
            found,
            gated: false,
            scratch: String::new(),
            hits: Vec::new(),
            tally: Tally::default(),
        })
    }

    /// Reads dates written without a zone in `zone` (fail2ban's `logtimezone`).
    pub fn set_zone(&mut self, zone: TimeZone) {
        self.zone = zone;
    }

    /// How many lines the buffer keeps (`maxlines`).
    pub fn maxlines(&self) -> usize {
        self.maxlines
    }

    /// The filter's `journalmatch` lines.
    pub fn journalmatch(&self) -> &[String] {
        &self.journalmatch
    }

    /// The failregexes, as the filter's files resolve them.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// The time written in `line`, if any (ms), without judging it.
    pub fn date_of(&mut self, line: &str, now: i64) -> Option<i64> {
        let found = self.dates.find(line, now, &self.zone);
        self.memo_text.clear();
        self.memo_text.push_str(line);
        self.memo = Some(found);
        found.and_then(|f| f.time)
    }

    /// Judges `line`, read at `now` or, with `known`, a journal entry of that time: the
    /// first failure that has an address, with the time its line's date gives. What the
    /// line amounted to in fail2ban's terms stays in [`Matcher::hits`].
    pub fn judge(&mut self, line: &str, now: i64, known: Option<i64>) -> Outcome {
        self.hits = match known {
            Some(time) => self.dated_line(line, time),
            None => self.line(line, now),
        };
        let failure = self
            .hits
            .iter()
            .filter(|hit| !hit.nofail)
            .find_map(|hit| Some((hit.target()?, hit.regex, hit.time)));
        match failure {
            Some((target, regex, time)) => Outcome::Dated {
                target,
                regex,
                time,
                format: DateFormat::Template,
            },
            None => Outcome::Missed,
        }
    }

    /// The hits of the line [`Matcher::judge`] last judged: failures, lines that only
    /// name a connection, failures of a host name or an id.
    pub fn hits(&self) -> &[Hit] {
        &self.hits
    }

    /// Keeps what fail2ban-regex's `Lines:` would count of each line, for
    /// [`Matcher::count`].
    pub fn keep_count(&mut self, on: bool) {
        self.tally.on = on;
    }

    /// How fail2ban-regex counts the line [`Matcher::judge`] last judged.
    pub fn count(&self) -> LineCount {
        let ignored = self.tally.ignored || self.hits.iter().any(|hit| hit.nofail);
        let failures = || self.hits.iter().filter(|hit| !hit.nofail);
        let kind = if ignored {
            LineKind::Ignored
        } else if failures().next().is_some() {
            LineKind::Matched
        } else {
            LineKind::Missed
        };
        LineCount {
            kind,
            consumed: self.tally.consumed,
            host_names: kind == LineKind::Matched
                && failures().all(|hit| hit.address.is_none() && hit.dns.is_some()),
        }
    }

    /// Judges a log line read at `now` (ms); its date is taken from the line.
    pub fn line(&mut self, text: &str, now: i64) -> Vec<Hit> {
        let mut date = None;
        let found = match self.memo.take() {
            Some(found) if self.memo_text == text => found,
            _ => self.dates.find(text, now, &self.zone),
        };
        let span = found.filter(|found| found.end > found.start);
        if let Some(found) = span {
            date = found.time;
            if let Some(time) = date {
                let written = &text[found.start..found.end];
                match &mut self.last_date {
                    Some((last, last_text)) => {
                        *last = time;
                        last_text.clear();
                        last_text.push_str(written);
                    }
                    None => self.last_date = Some((time, written.to_owned())),
                }
            }
        }
        let (before, after) = match span {
            Some(found) => (&text[..found.start], &text[found.end..]),
            None => ("", text),
        };
        if self.gated_alone() {
            // A failregex runs on the line (or a part of it, prefregex's content), which
            // holds its literals only if the line does: a line without any failregex's
            // is done with here, before its text is copied.
            self.scratch.clear();
            self.scratch.push_str(before);
            self.scratch.push_str(after);
            self.scratch.push('\n');
            self.gate.scan(&self.scratch, &mut self.found);
            if !self.gate.any_may_match(&self.found) {
                self.tally.ignored = false;
                self.tally.consumed = 0;
                self.buffer.clear();
                return Vec::new();
            }
            self.gated = true;
        }
        let line = Line {
            before: before.to_owned(),
            date: span.map_or_else(String::new, |f| text[f.start..f.end].to_owned()),
            after: after.to_owned(),
        };
        let line = match (&date, &self.last_date) {
            (None, Some((last, last_text))) if *last > now - LAST_DATE_MS => {
                date = Some(*last);
                Line {
                    date: last_text.clone(),
                    ..line
                }
            }
            _ => line,
        };
        self.find(line, date, now)
    }

    /// Whether a line is gated alone, before prefregex: a one-line buffer, and no
    /// ignoreregex to count the line as ignored first (`prepare`). The gate's candidates
    /// for the line then stand for prefregex's content too: a literal of the content is
    /// one of the line, so a regex that is no candidate for the line is none for it.
    fn gated_alone(&self) -> bool {
        self.maxlines <= 1 && !self.ignore_first()
    }

    /// Whether ignoreregex rules the whole buffer out before the failregexes run, as
    /// fail2ban does when there are more than two failregexes for each ignoreregex.
    fn ignore_first(&self) -> bool {
        !self.ignoreregex.is_empty() && self.ignoreregex.len() + 2 < self.failregex.len()
    }

    /// Judges a line whose time is known (a journal entry): no date is searched.
    pub fn dated_line(&mut self, text: &str, time: i64) -> Vec<Hit> {
        let line = Line {
            after: text.to_owned(),
            ..Line::default()
        };
        self.last_date = Some((time, String::new()));
        self.find(line, Some(time), time)
    }

    fn search(&mut self, pattern: usize, which: Which, buf: &str) -> Option<Spans> {
        let pattern = match which {
            Which::Pref => self.prefregex.as_ref()?,
            Which::Fail => &self.failregex[pattern],
            Which::Ignore => &self.ignoreregex[pattern],
        };
        match pattern.search(buf) {
            Ok(found) => found,
            Err(Overrun) => {
                self.overruns += 1;
                if self.overruns == 1 {
                    tracing::warn!(
                        "a regex gave up on a line after {} backtracking steps: the line is \
                         treated as not matching (counted in overruns; logged once)",
                        BACKTRACK_LIMIT
                    );
                }
                None
            }
        }
    }

    fn ignored(&mut self, buf: &str) -> bool {
        let ignored =
            (0..self.ignoreregex.len()).any(|i| self.search(i, Which::Ignore, buf).is_some());
        self.tally.ignored |= ignored;
        ignored
    }

    /// The lines a failregex runs on (`maxlines` of them), unless ignoreregex rules the
    /// whole buffer out first or prefregex does not match: the lines as they came, the
    /// groups prefregex took, and the text (`None`: the buffer, as prefregex's
    /// `content` left it).
    fn prepare(&mut self, line: Line) -> Option<Prepared> {
        if self.maxlines > 1 {
            self.buffer.push(line);
            let excess = self.buffer.len().saturating_sub(self.maxlines);
            self.buffer.drain(..excess);
        } else {
            self.buffer = vec![line];
        }
        let mut buf = Some(joined(&self.buffer));
        if self.ignore_first() && buf.as_deref().is_some_and(|b| self.ignored(b)) {
            return None;
        }
        let mut pre_groups = BTreeMap::new();
        let mut content = None;
        if self.prefregex.is_some() {
            let text = buf.as_deref().unwrap_or_default();
            let found = self.search(0, Which::Pref, text)?;
            let pattern = self.prefregex.as_ref().map(Pattern::names).unwrap_or(&[]);
            pre_groups = groups(pattern, &found, text);
            content = pre_groups.remove("content").filter(|c| !c.is_empty());
        }
        // The lines as they came: the buffer itself when it is replaced (by prefregex's
        // content) or when it is only this line (the failregexes read it from `buf`).
        let original = match content {
            Some(content) => {
                buf = None;
                let content = vec![Line {
                    after: content,
                    ..Line::default()
                }];
                std::mem::replace(&mut self.buffer, content)
            }
            None if self.maxlines <= 1 => std::mem::take(&mut self.buffer),
            None => self.buffer.clone(),
        };
        Some(Prepared {
            original,
            pre_groups,
            text: buf,
        })
    }

    /// fail2ban's `findFailure`, with what fail2ban-regex counts of the line when asked.
    fn find(&mut self, line: Line, date: Option<i64>, now: i64) -> Vec<Hit> {
        self.tally.ignored = false;
        self.tally.consumed = 0;
        let before = (self.tally.on && self.maxlines > 1).then(|| self.buffer.clone());
        let hits = self.find_failures(line, date, now);
        if let Some(before) = before {
            // fail2ban-regex: the earlier lines a failure took out of the buffer were
            // counted missed, and are matched now (the oldest goes anyway when full).
            let full = usize::from(before.len() >= self.maxlines);
            self.tally.consumed = before[full.min(before.len())..]
                .iter()
                .filter(|line| !self.buffer.contains(line))
                .count();
        }
        hits
    }

    fn find_failures(&mut self, line: Line, date: Option<i64>, now: i64) -> Vec<Hit> {
        let mut hits = Vec::new();
        let gated = std::mem::take(&mut self.gated);
        let Some(Prepared {
            original,
            pre_groups,
            text: buf,
        }) = self.prepare(line)
        else {
            return hits;
        };
        let mut text = self.gated_text(buf, gated);
        let mut stale = false;
        for index in 0..self.failregex.len() {
            if stale {
                text = self.gated_text(None, false);
                stale = false;
            }
            if !self.gate.may_match(&self.found, index) {
                continue;
            }
            let Some(found) = self.search(index, Which::Fail, &text) else {
                continue;
            };
            let names = self.failregex[index].names();
            let mut fail_groups = groups(names, &found, &text);
            alternatives(&mut fail_groups);
            let (matched, unmatched) = split_lines(&original, &text, &found, names);
            if !self.ignoreregex.is_empty() {
                let scope = if self.maxlines > 1 {
                    joined(&matched)
                } else {
                    text.clone()
                };
                if self.ignored(&scope) {
                    if !self.check_all || self.maxlines > 1 {
                        self.buffer = unmatched;
                    }
                    stale = true;
                    if !self.check_all {
                        break;
                    }
                    continue;
                }
            }
            if !self.check_all || self.maxlines > 1 {
                self.buffer = unmatched;
                stale = true;
            }
            let mut merged = pre_groups.clone();
            merged.extend(fail_groups);
            let mut fail = Fail::from_groups(merged);
            let mlfid = fail.groups.get("mlfid").cloned();
            match &mlfid {
                Some(id) => {
                    fail = self.merge(id, fail, matched.len(), now);
                    if fail.nofail && !self.check_all {
                        return hits;
                    }
                }
                None => fail.matches += matched.len(),
            }
            let hit = hit(index, &fail, date);
            if hit.id.is_none() {
                // A connection's line without its address yet: pending until one comes.
                if let Some(id) = &mlfid
                    && let Some((_, cached)) = self.connections.get_mut(id)
                {
                    cached.pending = true;
                }
                if !self.check_all {
                    return hits;
                }
            }
            hits.push(hit);
            if !self.check_all {
                break;
            }
        }
        hits
    }

    /// The text the failregexes run on (`buf`, else the buffer), with the gate's
    /// candidates for it in `found` (already there when `gated`).
    fn gated_text(&mut self, buf: Option<String>, gated: bool) -> String {
        let text = buf.unwrap_or_else(|| joined(&self.buffer));
        if !gated {
            self.gate.scan(&text, &mut self.found);
        }
        text
    }

    /// fail2ban's `_mergeFailure`: folds a line of connection `id` into what earlier
    /// lines of it said. Flags as fail2ban's: 1 no failure, 2 forget the connection,
    /// 4 the connection was a no-failure, 8 it logged in.
    fn merge(&mut self, id: &str, mut fail: Fail, matched: usize, now: i64) -> Fail {
        // Oldest first (each update goes to the back): drop those not seen for a while.
        while self
            .connections
            .front()
            .is_some_and(|(_, (seen, _))| *seen <= now - MLFID_TTL_MS)
        {
            self.connections.pop_front();
        }
        let mut flags = 0u8;
        if fail.gained {
            flags |= 8 | 1;
            fail.nofail = true;
        } else if fail.nofail {
            flags |= 1;
        }
        if fail.groups.remove("mlfforget").is_some() {
            flags |= 2;
        }
        let user = fail.groups.get("user").cloned();
        let (mut fail, users, keep) = match self.connections.remove(id) {
            Some((_, mut earlier)) => {
                let users = add_user(&mut earlier, user);
                if std::mem::take(&mut earlier.nofail) | std::mem::take(&mut earlier.gained) {
                    flags |= 4;
                }
                if flags & 8 != 0 {
                    earlier.pending = false;
                }
                if flags & 4 == 0 && !earlier.pending {
                    earlier.matches = 0;
                }
                earlier.groups.extend(fail.groups);
                earlier.nofail = fail.nofail;
                earlier.gained = fail.gained;
                (earlier, users, flags & 2 == 0)
            }
            None if flags & 2 == 0 => {
                let users = add_user(&mut fail, user);
                (fail, users, true)
            }
            None => (fail, 0, false),
        };
        if std::mem::take(&mut fail.pending) || users > 1 {
            fail.nofail = false;
            fail.gained = false;
            flags &= !(8 | 1);
        }
        if flags & 1 == 0 {
            fail.matches += std::mem::take(&mut fail.nofail_matches);
            if flags & 8 == 0 {
                fail.matches += matched;
            }
        } else if flags & 3 == 1 {
            fail.nofail_matches += matched;
        }
        if keep {
            if self.connections.len() >= MLFID_CAPACITY {
                self.connections.pop_front();
            }
            self.connections.insert(id.to_owned(), (now, fail.clone()));
        }
        fail
    }
}

/// Adds the line's user to the connection's; how many users it has had.
fn add_user(fail: &mut Fail, user: Option<String>) -> usize {
    if let Some(user) = user {
        fail.users.insert(user);
    }
    fail.users.len()
}

#[derive(Clone, Copy)]
enum Which {
    Pref,
    Fail,
    Ignore,
}

impl Fail {
    fn from_groups(mut groups: BTreeMap<String, String>) -> Self {
        let nofail = groups.remove("nofail").is_some();
        let gained = groups.remove("mlfgained").is_some();
        Self {
            groups,
            nofail,
            gained,
            ..Self::default()
        }
    }
}

/// The hit a merged failure amounts to (fail2ban's choice of failure id).
fn hit(regex: usize, fail: &Fail, time: Option<i64>) -> Hit {
    let get = |name: &str| fail.groups.get(name).cloned();
    let cidr = get("cidr").and_then(|c| c.parse::<u8>().ok());
    let address = get("ip4").or_else(|| get("ip6")).map(|a| (a, cidr));
    let dns = get("dns");
    let fid = get("fid");
    let id = match (&fid, &address, &dns) {
        (Some(fid), _, _) => Some(fid.clone()),
        (None, Some((address, _)), _) => Some(address.clone()),
        (None, None, Some(dns)) => Some(dns.clone()),
        (None, None, None) => None,
    };
    Hit {
        regex,
        id,
        address,
        dns,
        user: get("user"),
        users: fail.users.iter().cloned().collect(),
        time,
        attempts: fail.matches,
        nofail: fail.nofail,
    }
}

/// What [`Matcher::prepare`] leaves for the failregexes.
struct Prepared {
    original: Vec<Line>,
    pre_groups: BTreeMap<String, String>,
    text: Option<String>,
}

/// The buffer as the regexes see it: each line without its date, one per line, with a
/// final newline as fail2ban writes it.
fn joined(lines: &[Line]) -> String {
    let length = lines
        .iter()
        .map(|line| line.before.len() + line.after.len() + 1)
        .sum();
    let mut out = String::with_capacity(length);
    for line in lines {
        out.push_str(&line.before);
        out.push_str(&line.after);
        out.push('\n');
    }
    out
}

/// The named groups that took part, by name.
fn groups(names: &[Option<String>], found: &Spans, text: &str) -> BTreeMap<String, String> {
    names
        .iter()
        .zip(&found.spans)
        .filter_map(|(name, span)| {
            let name = name.as_ref()?;
            let (start, end) = (*span)?;
            Some((name.clone(), text[start..end].to_owned()))
        })
        .collect()
}

/// `<F-ALT_USER>` fills `user` when `<F-USER>` took nothing; `<F-TUPLE_…>` are left.
fn alternatives(groups: &mut BTreeMap<String, String>) {
    let alts: Vec<(String, String)> = groups
        .iter()
        .filter_map(|(k, v)| {
            let base = k.strip_prefix("alt_")?;
            let base = base.trim_end_matches(|c: char| c.is_ascii_digit() || c == '_');
            let base = match base {
                "id" => "fid",
                "port" => "fport",
                other => other,
            };
            (!v.is_empty()).then(|| (base.to_owned(), v.clone()))
        })
        .collect();
    for (base, value) in alts {
        let entry = groups.entry(base).or_default();
        if entry.is_empty() {
            *entry = value;
        }
    }
}

/// The buffer's lines split into those the match covers and the others (fail2ban's
/// matched and unmatched tuple lines, skipped lines moved to the unmatched).
fn split_lines(
    original: &[Line],
    text: &str,
    found: &Spans,
    names: &[Option<String>],
) -> (Vec<Line>, Vec<Line>) {
    if original.len() <= 1 {
        return (original.to_vec(), Vec::new());
    }
    let Some((start, end)) = found.spans.first().copied().flatten() else {
        return (original.to_vec(), Vec::new());
    };
    let line_start = text[..(start + 1).min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line_end = text[end.saturating_sub(1)..]
        .find('\n')
        .map_or(text.len(), |i| end.saturating_sub(1) + i + 1);
    let first = text[..line_start].matches('\n').count().min(original.len());
    let last = text[..line_end]
        .matches('\n')
        .count()
        .clamp(first, original.len());
    let mut matched = original[first..last].to_vec();
    let mut unmatched = original[..first].to_vec();
    let skipped: Vec<String> = names
        .iter()
        .zip(&found.spans)
        .filter(|(name, _)| name.as_deref().is_some_and(|n| n.starts_with("skiplines")))
        .filter_map(|(_, span)| span.map(|(s, e)| text[s..e].to_owned()))
        .flat_map(|s| s.lines().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    for skipped_line in skipped {
        if let Some(at) = matched.iter().position(|l| l.text() == skipped_line) {
            unmatched.push(matched.remove(at));
        }
    }
    unmatched.extend_from_slice(&original[last..]);
    (matched, unmatched)
}
