//! One jail's detection, line by line: filter, time of the line, who is spared, counting.
//! Pure: the line and the time it was read come in, a [`Detection`] goes out. The daemon,
//! `test-filter` and the detection benchmark all run this same path.

use std::net::IpAddr;

use ipnet::IpNet;
use jiff::tz::TimeZone;

use crate::{
    clock::UnixMs,
    config::Jail,
    filter::{
        Filter, Outcome, Scratch,
        date::{DateFormat, DatePattern, DateReader},
    },
    ignore::{IgnoreList, Spared},
    tracker::{Counted, Decision, Rules, Tracker},
};

/// What a line amounts to for a jail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detection {
    /// No failregex matched.
    Missed,
    /// A JSON filter's line that is not JSON: skipped.
    Malformed,
    /// A failregex and an ignoreregex matched.
    Ignored { regex: usize },
    /// A failure of an address that is never banned.
    Spared {
        target: IpNet,
        why: Spared,
        regex: usize,
    },
    /// A failure older than `findtime` when read: seen, not counted.
    Stale { target: IpNet, regex: usize },
    /// A failure, counted.
    Counted { target: IpNet, regex: usize },
    /// The failure that reaches `maxretry`: ban `decision.target`.
    Ban { decision: Decision, regex: usize },
}

/// Lines seen by a detector, by detection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectStats {
    pub lines: u64,
    pub missed: u64,
    /// Lines of a JSON filter that are not JSON (counted among `missed` too).
    pub malformed: u64,
    pub ignored: u64,
    /// Failures of addresses never banned (loopback, this host's, `ignoreip`).
    pub spared: u64,
    /// The same, by reason, indexed by [`Spared::index`].
    pub spared_by: [u64; 3],
    pub stale: u64,
    /// Failures counted (including those that banned).
    pub counted: u64,
    pub bans: u64,
}

impl DetectStats {
    /// Spared failures by reason, those that happened only: `"ignoreip 2, loopback or
    /// unspecified 1"`.
    pub fn spared_text(&self) -> String {
        Spared::ALL
            .iter()
            .filter(|why| self.spared_by[why.index()] > 0)
            .map(|why| format!("{} {}", why.label(), self.spared_by[why.index()]))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Lines a failregex matched and no ignoreregex vetoed.
    pub fn failures(&self) -> u64 {
        self.spared + self.stale + self.counted
    }
}

/// A line judged by a filter that keeps no state between lines, with its time read:
/// everything of [`Detector::replay`] but the detector's own state, which
/// [`Detector::settle`] then applies in the log's order.
#[derive(Clone, Copy, Debug)]
pub struct Judged {
    outcome: Outcome,
    /// The time the line is judged at: its own, else the replay's fallback.
    now: UnixMs,
    /// The time that came with the message (a container runtime's).
    known: Option<UnixMs>,
    /// The time read in the line, when it was looked for.
    read: Option<Option<(UnixMs, DateFormat)>>,
    line_time: LineTime,
}

/// Judges lines for a [`Detector`] on another thread (`test-filter` replaying a file on
/// two cores): the detector's filter, capture room and date reader, cloned.
#[derive(Clone, Debug)]
pub struct Judge {
    filter: Filter,
    scratch: Scratch,
    dates: DateReader,
}

impl Judge {
    /// Judges `line`; `known` is the time that came with it (a container runtime's), and
    /// a line with none of its own counts at `fallback`.
    pub fn judge(&mut self, line: &str, known: Option<UnixMs>, fallback: UnixMs) -> Judged {
        judge_line(
            &self.filter,
            &mut self.scratch,
            &mut self.dates,
            line,
            known,
            fallback,
        )
    }
}

/// The stateless half of a replay: the filter's outcome for `line`, and its time, read
/// once: where the failregex that matched put its `time` group, as the daemon reads it,
/// or in the whole line; a JSON line's from its field, if it was parsed at all.
fn judge_line(
    filter: &Filter,
    scratch: &mut Scratch,
    dates: &mut DateReader,
    line: &str,
    known: Option<UnixMs>,
    fallback: UnixMs,
) -> Judged {
    if let Some(at) = known {
        return Judged {
            outcome: filter.check_with(scratch, line),
            now: at,
            known,
            read: None,
            line_time: LineTime::In(DateFormat::Runtime),
        };
    }
    if let Some((outcome, time)) = filter.judge_json(line) {
        return Judged {
            outcome,
            now: time.flatten().unwrap_or(fallback),
            known: None,
            read: None,
            line_time: time.map_or(LineTime::NotRead, |at| {
                LineTime::from(at.map(|at| (at, DateFormat::Field)))
            }),
        };
    }
    let outcome = filter.check_with(scratch, line);
    let text = match outcome {
        Outcome::Failure { regex, .. } | Outcome::Ignored { regex } => {
            filter.time_text(scratch, regex, line)
        }
        _ => None,
    };
    let time = dates.read(text.unwrap_or(line));
    Judged {
        outcome,
        now: time.map_or(fallback, |(at, _)| at),
        known: None,
        read: Some(time),
        line_time: LineTime::from(time),
    }
}

/// Where a replayed line's time came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineTime {
    /// Read in this format.
    In(DateFormat),
    /// The line has none: it was taken as read at the replay's fallback time.
    Absent,
    /// Not looked for: a JSON line with none of the failure rules' words, not parsed.
    NotRead,
}

impl From<Option<(UnixMs, DateFormat)>> for LineTime {
    fn from(time: Option<(UnixMs, DateFormat)>) -> Self {
        time.map_or(Self::Absent, |(_, format)| Self::In(format))
    }
}

/// One jail's detection state.
pub struct Detector {
    filter: Filter,
    /// Capture room of the filter, reused line after line.
    scratch: Scratch,
    dates: DateReader,
    ignore: IgnoreList,
    tracker: Tracker,
    stats: DetectStats,
    /// The format the last line's time was read in, `None` when it had none.
    last_format: Option<DateFormat>,
}

impl Detector {
    pub fn new(filter: Filter, dates: DateReader, ignore: IgnoreList, rules: Rules) -> Self {
        Self {
            scratch: filter.scratch(),
            filter,
            dates,
            ignore,
            tracker: Tracker::new(rules),
            stats: DetectStats::default(),
            last_format: None,
        }
    }

    /// The detector of a configured jail; `own` are the host's addresses (`ignoreself`).
    pub fn for_jail(jail: &Jail, own: Vec<IpAddr>, zone: TimeZone) -> Self {
        let mut filter = jail.filter.clone();
        filter.set_zone(&zone);
        Self::new(
            filter,
            DateReader::with_pattern(jail.datepattern.clone(), zone),
            IgnoreList::new(jail.ignoreip.clone(), own),
            jail.rules.clone(),
        )
    }

    /// Judges a line read at `now`. Its time is taken from the line when it has one.
    pub fn line(&mut self, line: &str, now: UnixMs) -> Detection {
        self.detection(line, now, None)
    }

    /// Judges a journal entry read at `now`: its time comes with it, and no date is
    /// looked for in its text.
    pub fn dated_line(&mut self, line: &str, time: UnixMs, now: UnixMs) -> Detection {
        self.detection(line, now, Some(time))
    }

    fn detection(&mut self, line: &str, now: UnixMs, known: Option<UnixMs>) -> Detection {
        let outcome = self.judge(line, now, known);
        self.decide(line, outcome, now, known, None)
    }

    /// What the filter's `outcome` for `line` amounts to: counted, spared, a ban...
    /// `read`: the line's time, when it was already read from it (a replay); else a
    /// failure's time is read here.
    fn decide(
        &mut self,
        line: &str,
        outcome: Outcome,
        now: UnixMs,
        known: Option<UnixMs>,
        read: Option<Option<(UnixMs, DateFormat)>>,
    ) -> Detection {
        self.stats.lines += 1;
        self.last_format = None;
        let (target, regex, time) = match outcome {
            Outcome::Missed => {
                self.stats.missed += 1;
                return Detection::Missed;
            }
            Outcome::Malformed => {
                self.stats.missed += 1;
                self.stats.malformed += 1;
                return Detection::Malformed;
            }
            Outcome::Ignored { regex } => {
                self.stats.ignored += 1;
                return Detection::Ignored { regex };
            }
            // The time is to be read from the line.
            Outcome::Failure { target, regex } => (target, regex, None),
            // The filter read the line's time itself (or found it has none).
            Outcome::Dated {
                target,
                regex,
                time,
                format,
            } => (target, regex, Some(time.map(|at| (at, format)))),
        };
        if let Some(why) = self.ignore.spares(&target) {
            self.stats.spared += 1;
            self.stats.spared_by[why.index()] += 1;
            return Detection::Spared { target, why, regex };
        }
        let time = match (known, time) {
            (Some(at), _) => Some((at, DateFormat::Journal)),
            (None, None) => read.unwrap_or_else(|| {
                let text = self.filter.time_text(&self.scratch, regex, line);
                self.dates.read(text.unwrap_or(line))
            }),
            (None, Some(dated)) => dated,
        };
        let at = match time {
            Some((at, format)) => {
                self.last_format = Some(format);
                at
            }
            None => now,
        };
        match self.tracker.record(target, at, now) {
            Counted::Stale => {
                self.stats.stale += 1;
                Detection::Stale { target, regex }
            }
            Counted::Counted => {
                self.stats.counted += 1;
                Detection::Counted { target, regex }
            }
            Counted::Ban(decision) => {
                self.stats.counted += 1;
                // A prefix ban may cover an address that a single failure did not.
                if let Some(why) = self.ignore.spares(&decision.target) {
                    self.stats.spared += 1;
                    self.stats.spared_by[why.index()] += 1;
                    return Detection::Spared {
                        target: decision.target,
                        why,
                        regex,
                    };
                }
                self.stats.bans += 1;
                Detection::Ban { decision, regex }
            }
        }
    }

    /// What the filter makes of a line; fail2ban's model also gives the line's time.
    fn judge(&mut self, line: &str, now: UnixMs, known: Option<UnixMs>) -> Outcome {
        self.filter.judge(&mut self.scratch, line, now, known)
    }

    /// The date format of the last line judged a failure, if its time came from it.
    pub fn last_format(&self) -> Option<DateFormat> {
        self.last_format
    }

    /// Judges a line as if read at the time written in it (`test-filter` replaying a
    /// log); a line without a time is taken as read at `fallback`. Returns the detection and
    /// where its time was found.
    pub fn replay(&mut self, line: &str, fallback: UnixMs) -> (Detection, LineTime) {
        if let Some(time) = self.filter.own_time(line, fallback) {
            let now = time.map_or(fallback, |(at, _)| at);
            return (self.line(line, now), LineTime::from(time));
        }
        let judged = judge_line(
            &self.filter,
            &mut self.scratch,
            &mut self.dates,
            line,
            None,
            fallback,
        );
        self.settle(line, judged)
    }

    /// A judge of lines for this detector that can run on another thread, as
    /// [`Detector::replay`] judges them; `None` for a filter of fail2ban's model, which
    /// keeps state from line to line (buffers, connections) and so judges in order.
    pub fn judge_alone(&self) -> Option<Judge> {
        (!self.filter.is_model()).then(|| Judge {
            scratch: self.filter.scratch(),
            filter: self.filter.clone(),
            dates: self.dates.clone(),
        })
    }

    /// What a line a [`Judge`] judged amounts to, as [`Detector::replay`] (or, for a
    /// message with its own time, [`Detector::replay_dated`]) would have it; lines are
    /// settled in the log's order.
    pub fn settle(&mut self, line: &str, judged: Judged) -> (Detection, LineTime) {
        let Judged {
            outcome,
            now,
            known,
            read,
            line_time,
        } = judged;
        (self.decide(line, outcome, now, known, read), line_time)
    }

    /// Judges a message whose time came with it (a container runtime's), as if read
    /// then.
    pub fn replay_dated(&mut self, line: &str, time: UnixMs) -> (Detection, LineTime) {
        let detection = self.detection(line, time, Some(time));
        (detection, LineTime::In(DateFormat::Runtime))
    }

    pub fn stats(&self) -> DetectStats {
        self.stats
    }

    /// Carries counts over from the detector this one replaces (a reload).
    pub fn keep_stats(&mut self, stats: DetectStats) {
        self.stats = stats;
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    pub fn tracker_mut(&mut self) -> &mut Tracker {
        &mut self.tracker
    }

    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Lines a backtracking regex gave up on (its step limit), judged as not matching.
    pub fn overruns(&self) -> u64 {
        self.filter.overruns()
    }

    /// Replaces who is spared (`ban-agent set JAIL addignoreip`).
    pub fn set_ignore(&mut self, ignore: IgnoreList) {
        self.ignore = ignore;
    }
}

/// A detector with the shipped FastAPI filter and no `ignoreip`, for tests and benchmarks.
pub fn fastapi(rules: Rules, zone: TimeZone) -> Detector {
    Detector::new(
        crate::filter::fastapi_auth(),
        DateReader::with_pattern(DatePattern::Auto, zone),
        IgnoreList::default(),
        rules,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T0: UnixMs = 1_795_521_600_000; // 2026-11-24 12:00:00 UTC

    fn line(second: u32, host: &str, path: &str, status: u16) -> String {
        format!(
            "2026-11-24 12:00:{second:02},000 - fastapi-auth - INFO - {host} - \"POST {path}\" \
             {status} - 0.0100s"
        )
    }

    fn detector(maxretry: u32) -> Detector {
        let rules = Rules {
            maxretry,
            ..Rules::default()
        };
        fastapi(rules, TimeZone::UTC)
    }

    #[test]
    fn the_maxretry_th_failure_bans_at_the_time_of_the_line() {
        let mut d = detector(3);
        let now = T0 + 60_000;
        assert_eq!(
            d.line(&line(1, "192.0.2.7", "/login", 200), now),
            Detection::Missed
        );
        for s in 1..3 {
            assert!(matches!(
                d.line(&line(s, "192.0.2.7", "/login", 401), now),
                Detection::Counted { .. }
            ));
        }
        assert_eq!(d.last_format(), Some(DateFormat::Iso));
        let detection = d.line(&line(3, "192.0.2.7", "/register", 400), now);
        let Detection::Ban { decision, .. } = detection else {
            panic!("{detection:?}");
        };
        assert_eq!(
            decision.target,
            "192.0.2.7/32".parse::<IpNet>().expect("net")
        );
        assert_eq!(d.stats().bans, 1);
        assert_eq!(d.stats().failures(), 3);
    }

    #[test]
    fn a_line_without_a_time_counts_at_the_time_it_is_read() {
        let spec = crate::filter::FilterSpec {
            failregex: vec!["^login failed from <HOST>$".to_owned()],
            ignoreregex: vec![],
            ..Default::default()
        };
        let filter = crate::filter::Filter::compile(&spec).expect("compiles");
        let rules = Rules {
            maxretry: 2,
            ..Rules::default()
        };
        let mut d = Detector::new(
            filter,
            DateReader::new(TimeZone::UTC),
            IgnoreList::default(),
            rules,
        );
        let line = "login failed from 192.0.2.7";
        assert!(matches!(d.line(line, T0), Detection::Counted { .. }));
        assert_eq!(d.last_format(), None);
        let failures: Vec<_> = d.tracker().failures(T0).map(|(_, times)| times).collect();
        assert_eq!(failures, [vec![T0]]);
        assert!(matches!(d.line(line, T0 + 1000), Detection::Ban { .. }));
    }

    #[test]
    fn a_replayed_old_log_bans_no_one() {
        let mut d = detector(2);
        let an_hour_later = T0 + 3_600_000;
        for s in 0..50 {
            let detection = d.line(&line(s, "192.0.2.7", "/login", 401), an_hour_later);
            assert!(
                matches!(detection, Detection::Stale { .. }),
                "{detection:?}"
            );
        }
        assert_eq!(d.stats().stale, 50);
        assert_eq!(d.stats().bans, 0);
    }

    #[test]
    fn loopback_ignoreip_and_prefix_bans_covering_them_are_spared() {
        let rules = Rules {
            maxretry: 1,
            prefix_v4: 24,
            findtime: Duration::from_secs(600),
            ..Rules::default()
        };
        let mut d = Detector::new(
            crate::filter::fastapi_auth(),
            DateReader::new(TimeZone::UTC),
            IgnoreList::new(vec!["198.51.100.9/32".parse().expect("net")], vec![]),
            rules,
        );
        assert!(matches!(
            d.line(&line(1, "127.0.0.1", "/login", 401), T0),
            Detection::Spared {
                why: Spared::Reserved,
                ..
            }
        ));
        assert!(matches!(
            d.line(&line(1, "198.51.100.9", "/login", 401), T0),
            Detection::Spared {
                why: Spared::IgnoreIp,
                ..
            }
        ));
        assert!(
            matches!(
                d.line(&line(1, "198.51.100.10", "/login", 401), T0),
                Detection::Spared {
                    why: Spared::IgnoreIp,
                    ..
                }
            ),
            "its /24 holds an ignored address"
        );
        assert!(matches!(
            d.line(&line(1, "192.0.2.10", "/login", 401), T0),
            Detection::Ban { .. }
        ));
    }

    /// The time of a line comes from where the filter says it is: a `time` group (nginx's
    /// `$remote_user` may hold a date), an empty one (no time: when read), or a JSON field.
    #[test]
    fn a_filter_says_where_the_time_is() {
        use crate::{
            filter::{Filter, FilterSpec, builtin, date::DateReader},
            ignore::IgnoreList,
            tracker::Rules,
        };
        let detector = |name: &str| {
            let spec: FilterSpec =
                toml::from_str(builtin(name).expect("built in")).expect("parses");
            Detector::new(
                Filter::compile(&spec).expect("compiles"),
                DateReader::new(jiff::tz::TimeZone::UTC),
                IgnoreList::default(),
                Rules::default(),
            )
        };
        let t0 = 1_795_521_600_000; // 2026-11-24T12:00:00Z
        let mut nginx = detector("nginx");
        let line = "192.0.2.7 - [01/Jan/2000:00:00:00 +0000] [24/Nov/2026:12:00:00 +0000] \"POST /login HTTP/1.1\" 401 3 \"-\" \"-\"";
        assert!(matches!(
            nginx.line(line, t0 + 5),
            Detection::Counted { .. }
        ));
        assert_eq!(nginx.last_format(), Some(DateFormat::CommonLog));
        assert_eq!(nginx.replay(line, 0).1, LineTime::In(DateFormat::CommonLog));
        let mut uvicorn = detector("uvicorn");
        let line = "INFO:     192.0.2.7:1 - \"POST /login?t=[01/Jan/2000:00:00:00%20+0000] HTTP/1.1\" 401 Unauthorized";
        assert!(matches!(uvicorn.line(line, t0), Detection::Counted { .. }));
        assert_eq!(uvicorn.last_format(), None);
        let mut caddy = detector("caddy");
        let line = r#"{"ts":1795521600.5,"request":{"client_ip":"192.0.2.7","uri":"/login"},"status":401}"#;
        assert!(matches!(
            caddy.line(line, t0 + 1000),
            Detection::Counted { .. }
        ));
        assert_eq!(caddy.last_format(), Some(DateFormat::Field));
        assert_eq!(caddy.replay(line, 0).1, LineTime::In(DateFormat::Field));
        let cut = &line[..line.len() - 1];
        assert!(matches!(caddy.line(cut, t0), Detection::Malformed));
        assert_eq!(caddy.stats().malformed, 1);
        // A line with no failure rule's words is not parsed, and its time not read.
        let success = line.replace("401", "200");
        assert_eq!(
            caddy.replay(&success, 0),
            (Detection::Missed, LineTime::NotRead)
        );
    }
}
