//! `ban-agent test-filter`: a filter run over a log, reported like fail2ban-regex.
//!
//! Each line is judged as if read at the time written in it, so the report says who the
//! jail would have banned while the log was being written.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    io::Read,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use ipnet::IpNet;
use jiff::tz::TimeZone;

use crate::{
    config::{self, Config},
    datapath::show,
    detect::{DetectStats, Detection, Detector, Judge, Judged, LineTime},
    filter::{self, Filter, FilterSpec, LineCount, LineKind, date::DateFormat},
    ignore::{self, IgnoreList, Spared},
    tail::{
        self, TailStats,
        container::{LogFormat, Streams, UnwrapStats, Unwrapper},
    },
    tracker::Rules,
};

pub const EXAMPLES: &str = "Examples:
  ban-agent test-filter /var/log/app/auth.log --filter fastapi-auth
  ban-agent test-filter /var/log/app/auth.log fastapi-auth        (fail2ban-regex's order)
  ban-agent test-filter auth.log '^.* - <HOST> - \"POST /login\" 401'   (a failregex)
  ban-agent test-filter /var/log/nginx/access.log --filter 'nginx[login_path=/api/login]'
  ban-agent test-filter /var/log/auth.log --filter sshd
  ban-agent test-filter /var/log/auth.log --filter 'sshd[mode=aggressive]' --json
  ban-agent test-filter mail.log --filter /etc/fail2ban/filter.d/postfix.conf --now 2026-11-30T12:00:00Z
  ban-agent test-filter /var/log/app/auth.log --jail fastapi-auth --config /etc/ban-agent/ban-agent.toml
  tail -n 1000 auth.log | ban-agent test-filter - --regex '^.* - <HOST> - \"POST /login\" 401'
  ban-agent test-filter auth.log --filter ./my-filter.toml --print-missed";

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["jail", "filter", "regex", "filter_or_regex"])))]
pub struct Args {
    /// Log file to read, or `-` for standard input.
    log: PathBuf,
    /// The filter, after the log as fail2ban-regex takes it: a failregex (as --regex)
    /// when it holds an address tag (<HOST>, <ADDR>, <IP4>, <IP6>, <CIDR>) and is no
    /// file, else a filter (as --filter).
    #[arg(value_name = "FILTER", conflicts_with_all = ["filter", "regex", "jail"])]
    filter_or_regex: Option<String>,
    /// With a failregex as FILTER: an ignoreregex (fail2ban-regex's third argument).
    #[arg(value_name = "IGNOREREGEX", requires = "filter_or_regex")]
    ignoreregex: Option<String>,
    /// Test this jail of the configuration: its filter, ignoreip, maxretry and findtime.
    #[arg(long, value_name = "NAME")]
    jail: Option<String>,
    /// Configuration file for --jail.
    #[arg(long, value_name = "FILE", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// A filter file (failregex/ignoreregex in TOML), NAME.toml in /etc/ban-agent/filter.d,
    /// a built-in filter (fastapi-auth, uvicorn, gunicorn, nginx, caddy, traefik; with
    /// options: `nginx[login_path=/api/login]`), or a fail2ban filter: a .conf file, or
    /// NAME in --fail2ban-dir's filter.d, with fail2ban's options (`sshd[mode=aggressive]`).
    #[arg(long, value_name = "NAME|FILE")]
    filter: Option<String>,
    /// fail2ban's configuration folder, for --filter NAME.
    #[arg(long, value_name = "DIR", default_value = "/etc/fail2ban")]
    fail2ban_dir: PathBuf,
    /// Print one JSON object per input line instead of the report:
    /// {"line", "match", "host", "user", "time" (RFC 3339), "regex" (0-based), "attempts"}.
    #[arg(long)]
    json: bool,
    /// "Now", for dates without a year and the judgement of each line with --json: epoch
    /// seconds or RFC 3339 (default: the current time).
    #[arg(long, value_name = "TIME", value_parser = parse_now)]
    now: Option<i64>,
    /// The log's time zone for dates written without one: an IANA name (Europe/Paris) or
    /// a POSIX TZ string (default: the system's).
    #[arg(long, value_name = "ZONE", value_parser = parse_zone)]
    timezone: Option<TimeZone>,
    /// A fail2ban filter: let the first failregex that matches decide, as the daemon
    /// does (fail2ban-regex's --no-check-all). By default every failregex is tried on each
    /// line and the first failure counts, as fail2ban-regex and fail2ban's filter tests
    /// do, so that the `Lines:` summary is fail2ban-regex's.
    #[arg(long)]
    no_check_all: bool,
    /// With --json: the lines are journal messages (`journalctl -o cat`), timed --now;
    /// no date is looked for in them, as fail2ban reads the journal.
    #[arg(long, requires = "json")]
    journal_lines: bool,
    /// A failregex with one address tag (<HOST>, <ADDR>, <IP4>, <IP6>, <CIDR>); repeat
    /// for several.
    #[arg(long, value_name = "RE")]
    regex: Vec<String>,
    /// An ignoreregex, with --regex; repeat for several.
    #[arg(long, value_name = "RE", requires = "regex")]
    ignore_regex: Vec<String>,
    /// Failures within --findtime that ban (default: the jail's, else 5).
    #[arg(long)]
    maxretry: Option<u32>,
    /// Window in which --maxretry failures ban (default: the jail's, else 10m).
    #[arg(long, value_parser = crate::duration::parse, value_name = "DURATION")]
    findtime: Option<Duration>,
    /// How many addresses to list, most failures first.
    #[arg(long, default_value_t = 10, value_name = "N")]
    top: usize,
    /// Print the lines no failregex matched (at most --max-missed of them).
    #[arg(long)]
    print_missed: bool,
    #[arg(long, default_value_t = 1000, value_name = "N")]
    max_missed: usize,
    /// How the log's lines are wrapped: auto (told from the first line), plain, docker
    /// (Docker's json-file driver) or cri (containerd, CRI-O, Kubernetes, podman's
    /// k8s-file). Default: the jail's `log_format`, else auto.
    #[arg(long, value_name = "FORMAT", value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
}

impl Args {
    /// The positional FILTER and IGNOREREGEX (fail2ban-regex's order) put where the
    /// options would have put them.
    pub fn resolved(mut self) -> anyhow::Result<Self> {
        let Some(given) = self.filter_or_regex.take() else {
            return Ok(self);
        };
        let tagged = ["<HOST>", "<ADDR>", "<IP4>", "<IP6>", "<CIDR>"]
            .iter()
            .any(|tag| given.contains(tag));
        if tagged && !Path::new(&given).is_file() {
            self.regex.push(given);
            self.ignore_regex.extend(self.ignoreregex.take());
        } else if let Some(ignore) = self.ignoreregex.take() {
            bail!(
                "an IGNOREREGEX ({ignore:?}) goes with a failregex as FILTER; {given:?} is a \
                 filter: put the ignoreregex in the filter's own ignoreregex"
            );
        } else {
            self.filter = Some(given);
        }
        Ok(self)
    }
}

/// `--log-format`.
fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    LogFormat::from_name(text)
        .ok_or_else(|| format!("{text:?}: expected auto, plain, docker or cri"))
}

/// What the run is testing.
struct Subject {
    detector: Detector,
    description: String,
    regexes: Vec<String>,
    /// The jail's `log_format` and `stream` (auto and both without a jail).
    log_format: LogFormat,
    streams: Streams,
}

/// `--now`: epoch seconds (with a fraction) or RFC 3339, in milliseconds.
fn parse_now(text: &str) -> Result<i64, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        return Ok((seconds * 1000.0).round() as i64);
    }
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| format!("{text:?} is neither epoch seconds nor RFC 3339 ({e})"))
}

/// `--timezone`: an IANA name, else a POSIX TZ string.
fn parse_zone(text: &str) -> Result<TimeZone, String> {
    TimeZone::get(text)
        .or_else(|_| TimeZone::posix(text))
        .map_err(|e| format!("{text:?} is neither a time zone name nor a POSIX TZ string ({e})"))
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if args.json {
        return json::run(args);
    }
    let subject = subject(args)?;
    let mut report = Report::new(
        subject.detector,
        args.print_missed.then_some(args.max_missed),
    );
    let fallback = args
        .now
        .unwrap_or_else(|| jiff::Timestamp::now().as_millisecond());
    let format = args.log_format.unwrap_or(subject.log_format);
    let mut unwrap = Unwrapper::new(format, tail::DEFAULT_MAX_LINE);
    let streams = subject.streams;
    let tail_stats = match report.detector.judge_alone() {
        Some(judge) => {
            let judging = Judging {
                judge,
                unwrap,
                streams,
                fallback,
            };
            let (stats, unwrapped) =
                judged_on_two_cores(judging, &mut report, &mut |sink| read_log(&args.log, sink))?;
            unwrap = unwrapped;
            stats
        }
        None => read_log(&args.log, &mut |line: &str| {
            unwrap.line(line, &mut |message| {
                if streams.admits(message.stream) {
                    report.message(message.text, message.time, fallback);
                }
            });
        })?,
    };
    report.container = (unwrap.format(), unwrap.stats());
    let shown = report.render(
        &subject.description,
        &subject.regexes,
        &tail_stats,
        args.top,
    );
    print!("{shown}");
    Ok(())
}

/// A line the report skips, as fail2ban-regex does: empty, or a comment.
fn skipped(line: &str) -> bool {
    line.is_empty() || line.starts_with('#')
}

/// Lines handed to the judging thread at a time.
const BATCH: usize = 4096;

/// Lines or messages back to back in one text, each with the time its runtime gave it: a
/// batch costs two allocations, not one per line, and its buffers are reused.
#[derive(Default)]
struct Batch {
    text: String,
    messages: Vec<(std::ops::Range<usize>, Option<i64>)>,
}

impl Batch {
    fn push(&mut self, message: &str, time: Option<i64>) {
        let start = self.text.len();
        self.text.push_str(message);
        self.messages.push((start..self.text.len(), time));
    }

    fn lines(&self) -> impl Iterator<Item = (&str, Option<i64>)> {
        self.messages
            .iter()
            .map(|(range, time)| (self.text.get(range.clone()).unwrap_or_default(), *time))
    }

    fn clear(&mut self) {
        self.text.clear();
        self.messages.clear();
    }
}

/// What the judging thread owns: the container log's unwrapping (a message split over
/// several lines is joined in order) and the judge of the messages it admits.
struct Judging {
    judge: Judge,
    unwrap: Unwrapper,
    streams: Streams,
    fallback: i64,
}

impl Judging {
    /// The messages of a batch of lines (`None`: a plain log's, which are its lines), and
    /// what each amounts to (`None`: skipped).
    fn batch(&mut self, lines: &Batch) -> (Option<Batch>, Vec<Option<Judged>>) {
        let Self {
            judge,
            unwrap,
            streams,
            fallback,
        } = self;
        let mut judged = Vec::with_capacity(lines.messages.len());
        let mut judge_one = |text: &str, time| {
            judged.push((!skipped(text)).then(|| judge.judge(text, time, *fallback)));
        };
        // Once a log is known to be plain, each line is its own message: not copied.
        if unwrap.format() == LogFormat::Plain {
            for (line, _) in lines.lines() {
                unwrap.line(line, &mut |message| judge_one(message.text, message.time));
            }
            return (None, judged);
        }
        let mut messages = Batch::default();
        for (line, _) in lines.lines() {
            unwrap.line(line, &mut |message| {
                if streams.admits(message.stream) {
                    messages.push(message.text, message.time);
                    judge_one(message.text, message.time);
                }
            });
        }
        (Some(messages), judged)
    }
}

/// Where a reader puts each line it reads.
type LineSink<'a> = dyn FnMut(&str) + 'a;

/// What a judged batch brings back: the batch of lines (for reuse), its messages when
/// they are not its lines, and what each amounts to.
type Done = (Batch, Option<Batch>, Vec<Option<Judged>>);

/// Replays the lines `read` gives its sink on both cores: a thread unwraps and judges
/// batches of lines (the filter's regexes and the times, most of a line's cost) while this
/// one reads the next and settles the judged ones in the log's order (the counts per
/// address, the report), so every failure of an address is counted in the order of the
/// log, and the report is the one-thread replay's. Gives back the unwrapping, with its
/// counts.
fn judged_on_two_cores(
    judging: Judging,
    report: &mut Report,
    read: &mut dyn FnMut(&mut LineSink<'_>) -> anyhow::Result<TailStats>,
) -> anyhow::Result<(TailStats, Unwrapper)> {
    use std::sync::mpsc;
    std::thread::scope(|scope| {
        // At most two batches wait to be judged; judged ones wait for this thread, which
        // takes all there are before it hands over the next batch.
        let (to_judge, queue) = mpsc::sync_channel::<Batch>(2);
        let (to_settle, settling) = mpsc::channel::<Done>();
        let worker = scope.spawn(move || {
            let mut judging = judging;
            for lines in queue {
                let (messages, judged) = judging.batch(&lines);
                if to_settle.send((lines, messages, judged)).is_err() {
                    break;
                }
            }
            judging.unwrap
        });
        let mut spare: Vec<Batch> = Vec::new();
        let mut batch = Batch::default();
        let mut failed_handover = false;
        let stats = read(&mut |line| {
            batch.push(line, None);
            if batch.messages.len() < BATCH {
                return;
            }
            while let Ok(done) = settling.try_recv() {
                settle_batch(report, &mut spare, done);
            }
            let next = spare.pop().unwrap_or_default();
            failed_handover |= to_judge.send(std::mem::replace(&mut batch, next)).is_err();
        });
        failed_handover |= to_judge.send(batch).is_err();
        drop(to_judge);
        for done in settling {
            settle_batch(report, &mut spare, done);
        }
        let unwrap = match worker.join() {
            Ok(unwrap) => unwrap,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if failed_handover {
            bail!("the judging thread stopped: the report would be incomplete");
        }
        Ok((stats?, unwrap))
    })
}

/// Settles a judged batch in its order, and keeps the batch of lines for the next one.
fn settle_batch(report: &mut Report, spare: &mut Vec<Batch>, (mut lines, messages, judged): Done) {
    for ((message, _), judged) in messages.as_ref().unwrap_or(&lines).lines().zip(judged) {
        report.settle(message, judged);
    }
    lines.clear();
    spare.push(lines);
}

fn read(reader: impl Read, sink: &mut dyn FnMut(&str)) -> std::io::Result<TailStats> {
    tail::read_stream(reader, tail::DEFAULT_MAX_LINE, sink)
}

/// Every line of `log` (a file, or `-` for standard input) into `sink`.
fn read_log(log: &Path, sink: &mut dyn FnMut(&str)) -> anyhow::Result<TailStats> {
    if log == Path::new("-") {
        return read(std::io::stdin().lock(), sink).context("reading standard input");
    }
    let file = std::fs::File::open(log).with_context(|| {
        format!(
            "cannot open {}: check the path and its permissions",
            log.display()
        )
    })?;
    read(file, sink).with_context(|| format!("reading {}", log.display()))
}

/// The filter --filter, --regex or --jail names, with the time zone of --timezone.
fn filter_of(args: &Args, zone: &TimeZone) -> anyhow::Result<(Filter, String)> {
    let (filter, description) = match &args.filter {
        Some(name) => {
            let dirs = config::FilterDirs {
                toml: &config::Global::default().filter_dir,
                fail2ban: &args.fail2ban_dir,
            };
            config::find_filter(name, Path::new("."), &dirs)?
        }
        None => {
            let spec = FilterSpec {
                failregex: args.regex.clone(),
                ignoreregex: args.ignore_regex.clone(),
                ..FilterSpec::default()
            };
            let filter = Filter::compile(&spec).context("in --regex / --ignore-regex")?;
            (filter, "--regex".to_owned())
        }
    };
    Ok((as_fail2ban_regex(filter, zone, args), description))
}

/// A filter of fail2ban's model run as fail2ban-regex runs it: dates without a zone
/// read in `zone`, every failregex tried (fail2ban's `checkAllRegex`, which
/// `--no-check-all` turns off), and, for the report's `Lines:`, what fail2ban-regex
/// counts of each line kept (not for `--json`, which prints no summary).
fn as_fail2ban_regex(mut filter: Filter, zone: &TimeZone, args: &Args) -> Filter {
    filter.set_zone(zone);
    filter.set_check_all(!args.no_check_all);
    filter.keep_count(!args.json);
    filter
}

fn subject(args: &Args) -> anyhow::Result<Subject> {
    let zone = args.timezone.clone().unwrap_or_else(TimeZone::system);
    let override_rules = |mut rules: Rules| {
        rules.maxretry = args.maxretry.unwrap_or(rules.maxretry).max(1);
        rules.findtime = args.findtime.unwrap_or(rules.findtime);
        rules
    };
    if let Some(name) = &args.jail {
        let config = Config::load(&args.config)?;
        let Some(jail) = config.jail(name) else {
            let names: Vec<&str> = config.jails.iter().map(|j| j.name.as_str()).collect();
            bail!(
                "{} has no jail {name:?}; its jails: {}",
                args.config.display(),
                names.join(", ")
            );
        };
        if jail.crowdsec {
            bail!(
                "the jail {name} of {} holds CrowdSec's decisions and reads no log: test \
                 another jail, or a filter with --filter",
                args.config.display()
            );
        }
        let own = if config.global.ignoreself {
            ignore::own_addresses().context("listing this host's addresses for ignoreself")?
        } else {
            Vec::new()
        };
        let mut jail = jail.clone();
        jail.rules = override_rules(jail.rules);
        jail.filter = as_fail2ban_regex(jail.filter, &zone, args);
        return Ok(Subject {
            regexes: jail.filter.patterns().to_vec(),
            description: format!("jail {name} (filter {})", jail.filter_origin),
            detector: Detector::for_jail(&jail, own, zone),
            log_format: jail.log_format,
            streams: jail.stream,
        });
    }
    let (filter, description) = filter_of(args, &zone)?;
    Ok(Subject {
        regexes: filter.patterns().to_vec(),
        description: format!("filter {description}"),
        detector: Detector::new(
            filter,
            filter::date::DateReader::new(zone),
            IgnoreList::default(),
            override_rules(Rules::default()),
        ),
        log_format: LogFormat::Auto,
        streams: Streams::Both,
    })
}

/// One address's failures in the log.
#[derive(Default)]
struct AddressTally {
    failures: u64,
    banned: bool,
    spared: Option<Spared>,
}

/// What the run found.
struct Report {
    detector: Detector,
    hits: Vec<u64>,
    formats: BTreeMap<DateFormat, u64>,
    no_time: u64,
    /// JSON lines not parsed (none of the failure rules' words in them).
    not_read: u64,
    targets: HashMap<IpNet, AddressTally>,
    banned: u64,
    missed: Option<(usize, Vec<String>)>,
    missed_left_out: u64,
    /// The log's format as read, and what unwrapping it met.
    container: (LogFormat, UnwrapStats),
    /// The lines as fail2ban-regex counts them.
    lines: LineTally,
}

/// Lines as fail2ban-regex's `Lines:` counts them: a line is ignored when an
/// ignoreregex or a `<F-NOFAIL>` regex matched it, matched when a failure was found in it
/// (an address's, or a host name's or an id's), else missed; the earlier lines a
/// multi-line failure takes with it move from missed to matched. Comments and empty
/// lines are skipped (not judged), as fail2ban-regex skips them.
#[derive(Clone, Copy, Debug, Default)]
struct LineTally {
    matched: i64,
    ignored: i64,
    missed: i64,
    /// Matched lines whose failures name hosts, not addresses (never counted against
    /// anyone; fail2ban-regex resolves them).
    host_names: u64,
    skipped: u64,
}

impl LineTally {
    fn add(&mut self, count: LineCount) {
        match count.kind {
            LineKind::Matched => self.matched += 1,
            LineKind::Ignored => self.ignored += 1,
            LineKind::Missed => self.missed += 1,
        }
        let consumed = i64::try_from(count.consumed).unwrap_or(i64::MAX);
        self.matched = self.matched.saturating_add(consumed);
        self.missed = self.missed.saturating_sub(consumed);
        self.host_names += u64::from(count.host_names);
    }
}

/// How fail2ban-regex counts a line our filter judged (fail2ban's model says it itself).
fn count_of(detection: &Detection) -> LineCount {
    let kind = match detection {
        Detection::Missed | Detection::Malformed => LineKind::Missed,
        Detection::Ignored { .. } => LineKind::Ignored,
        Detection::Spared { .. }
        | Detection::Stale { .. }
        | Detection::Counted { .. }
        | Detection::Ban { .. } => LineKind::Matched,
    };
    LineCount {
        kind,
        consumed: 0,
        host_names: false,
    }
}

impl Report {
    fn new(detector: Detector, max_missed: Option<usize>) -> Self {
        Self {
            hits: vec![0; detector.filter().len()],
            detector,
            formats: BTreeMap::new(),
            no_time: 0,
            not_read: 0,
            targets: HashMap::new(),
            banned: 0,
            missed: max_missed.map(|max| (max, Vec::new())),
            missed_left_out: 0,
            container: (LogFormat::Plain, UnwrapStats::default()),
            lines: LineTally::default(),
        }
    }

    /// One message of the app; `time`: the container runtime's, when it gave one.
    fn message(&mut self, line: &str, time: Option<i64>, fallback: i64) {
        if skipped(line) {
            self.lines.skipped += 1;
            return;
        }
        let (detection, format) = match time {
            Some(time) => self.detector.replay_dated(line, time),
            None => self.detector.replay(line, fallback),
        };
        self.record(line, detection, format);
    }

    /// One message judged on the judging thread ([`judged_on_two_cores`]).
    fn settle(&mut self, line: &str, judged: Option<Judged>) {
        match judged {
            Some(judged) => {
                let (detection, format) = self.detector.settle(line, judged);
                self.record(line, detection, format);
            }
            None => self.lines.skipped += 1,
        }
    }

    fn record(&mut self, line: &str, detection: Detection, format: LineTime) {
        let count = self
            .detector
            .filter()
            .count()
            .unwrap_or_else(|| count_of(&detection));
        self.lines.add(count);
        match format {
            LineTime::In(format) => *self.formats.entry(format).or_default() += 1,
            LineTime::Absent => self.no_time += 1,
            LineTime::NotRead => self.not_read += 1,
        }
        let (target, regex, spared, banned) = match detection {
            Detection::Missed | Detection::Malformed => {
                if let Some((max, lines)) = &mut self.missed {
                    if lines.len() < *max {
                        lines.push(line.to_owned());
                    } else {
                        self.missed_left_out += 1;
                    }
                }
                return;
            }
            Detection::Ignored { .. } => return,
            Detection::Spared { target, why, regex } => (target, regex, Some(why), false),
            Detection::Stale { target, regex } | Detection::Counted { target, regex } => {
                (target, regex, None, false)
            }
            Detection::Ban { decision, regex } => (decision.target, regex, None, true),
        };
        if let Some(hits) = self.hits.get_mut(regex) {
            *hits += 1;
        }
        // Count under the address (or prefix) the jail counts by.
        let counted_as = self.detector.tracker().aggregate(target);
        let failing = self.targets.entry(counted_as).or_default();
        failing.failures += 1;
        if spared.is_some() {
            failing.spared = spared;
        }
        if banned {
            failing.banned = true;
            self.banned += 1;
        }
    }

    fn render(
        &self,
        description: &str,
        regexes: &[String],
        read: &TailStats,
        top: usize,
    ) -> String {
        let rules = self.detector.tracker().rules();
        let mut out = String::new();
        let _ = writeln!(out, "Testing {description}");
        let _ = writeln!(
            out,
            "Settings: maxretry {}, findtime {}, counted per /{} (IPv4) and /{} (IPv6)\n",
            rules.maxretry,
            crate::duration::show(rules.findtime),
            rules.prefix_v4,
            rules.prefix_v6
        );
        let lines = &self.lines;
        let _ = writeln!(
            out,
            "Lines: {} read, {} matched, {} ignored, {} missed",
            read.lines, lines.matched, lines.ignored, lines.missed
        );
        self.render_line_notes(&mut out, read);
        let _ = writeln!(out, "\nFailregex hits:");
        for (i, (regex, hits)) in regexes.iter().zip(&self.hits).enumerate() {
            let _ = writeln!(out, "  #{:<3} {hits:>10}  {regex}", i + 1);
        }
        let _ = writeln!(out, "\nDate formats:");
        for (format, count) in &self.formats {
            let _ = writeln!(out, "  {count:>10}  {}", format.describe());
        }
        let _ = writeln!(
            out,
            "  {:>10}  without a time (taken as read now)",
            self.no_time
        );
        if self.not_read > 0 {
            let _ = writeln!(
                out,
                "  {:>10}  not read: JSON lines without the words a failure rule needs, not parsed",
                self.not_read
            );
        }
        self.render_targets(&mut out, top);
        if let Some((_, lines)) = &self.missed {
            let _ = writeln!(out, "\nMissed lines:");
            for line in lines {
                let _ = writeln!(out, "  {line}");
            }
            if self.missed_left_out > 0 {
                let _ = writeln!(
                    out,
                    "  ... and {} more (raise --max-missed)",
                    self.missed_left_out
                );
            }
        }
        out
    }

    /// The notes under "Lines:": what was not judged as it was read, and why.
    fn render_line_notes(&self, out: &mut String, read: &TailStats) {
        let stats: DetectStats = self.detector.stats();
        if self.lines.skipped > 0 {
            let _ = writeln!(
                out,
                "       {} empty or comment (#) lines skipped, as fail2ban-regex skips them",
                self.lines.skipped
            );
        }
        if self.lines.host_names > 0 {
            let _ = writeln!(
                out,
                "       {} matched by a host name, not an address: never counted against \
                 anyone, as the agent does no DNS (fail2ban-regex counts a name it cannot \
                 resolve as missed)",
                self.lines.host_names
            );
        }
        if stats.malformed > 0 {
            let _ = writeln!(
                out,
                "       {} missed because they start with {{ but are not JSON",
                stats.malformed
            );
        }
        let (format, unwrapped) = self.container;
        if matches!(format, LogFormat::Docker | LogFormat::Cri) {
            let _ = writeln!(
                out,
                "       a {} container log: {} messages unwrapped, {} lines not of that format \
                 (skipped), {} messages cut for their length",
                format.name(),
                unwrapped.messages,
                unwrapped.malformed,
                unwrapped.cut
            );
        }
        if stats.spared > 0 {
            let _ = writeln!(
                out,
                "       {} matched from addresses never banned, not counted: {}",
                stats.spared,
                stats.spared_text()
            );
        }
        let overruns = self.detector.overruns();
        if overruns > 0 {
            let _ = writeln!(
                out,
                "       {overruns} on which a regex gave up after {} backtracking steps (judged as not matching)",
                filter::pattern::BACKTRACK_LIMIT
            );
        }
        if read.invalid_utf8 + read.too_long > 0 {
            let _ = writeln!(
                out,
                "       {} with invalid UTF-8 (read with replacement characters), {} longer than {} bytes (skipped)",
                read.invalid_utf8,
                read.too_long,
                tail::DEFAULT_MAX_LINE
            );
        }
    }

    fn render_targets(&self, out: &mut String, top: usize) {
        let mut ranked: Vec<(&IpNet, &AddressTally)> = self.targets.iter().collect();
        let failing = ranked.len();
        let order = |a: &(&IpNet, &AddressTally), b: &(&IpNet, &AddressTally)| {
            b.1.failures.cmp(&a.1.failures).then(a.0.cmp(b.0))
        };
        // The top few of maybe a million (a botnet's log): picked, then only they sorted.
        if ranked.len() > top {
            if let Some(last) = top.checked_sub(1) {
                ranked.select_nth_unstable_by(last, order);
            }
            ranked.truncate(top);
        }
        ranked.sort_by(order);
        let _ = writeln!(out, "\nTop addresses ({failing} failing):");
        for (target, failing) in &ranked {
            let detection = match (failing.spared, failing.banned) {
                (Some(why), _) => format!("spared ({})", describe(why)),
                (None, true) => "would be banned".to_owned(),
                (None, false) => "below maxretry".to_owned(),
            };
            let _ = writeln!(
                out,
                "  {:>10}  {:<43} {detection}",
                failing.failures,
                show(target)
            );
        }
        let would_ban = self.targets.values().filter(|f| f.banned).count();
        let spared = self.targets.values().filter(|f| f.spared.is_some()).count();
        let _ = writeln!(
            out,
            "\nWould ban: {} ({} in all); spared: {spared}",
            crate::plural(would_ban as u64, "address", "addresses"),
            crate::plural(self.banned, "ban", "bans"),
        );
    }
}

/// `--json`: one object per line, for tools (and `cargo xtask conformance`).
mod json {
    use super::*;
    use crate::filter::{Hit, Outcome, Scratch, date::DateReader};

    pub fn run(args: &Args) -> anyhow::Result<()> {
        let zone = args.timezone.clone().unwrap_or_else(TimeZone::system);
        let (mut filter, _) = filter_of(args, &zone)?;
        let now = args
            .now
            .unwrap_or_else(|| jiff::Timestamp::now().as_millisecond());
        let mut dates = DateReader::new(zone);
        let mut scratch = filter.scratch();
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut number = 0u64;
        let mut failed = None;
        let mut sink = |line: &str| {
            number += 1;
            let mut object = judge(
                (&mut filter, &mut scratch, &mut dates),
                line,
                now,
                args.journal_lines,
            );
            object.insert("line".into(), number.into());
            if failed.is_none()
                && let Err(error) = serde_json::to_writer(&mut out, &object)
                    .map_err(std::io::Error::from)
                    .and_then(|()| std::io::Write::write_all(&mut out, b"\n"))
            {
                failed = Some(error);
            }
        };
        read_log(&args.log, &mut sink)?;
        if let Some(error) = failed {
            return Err(error).context("writing to standard output");
        }
        std::io::Write::flush(&mut out).context("writing to standard output")
    }

    /// A line's object. Our filters give the address, regex and time; fail2ban's model
    /// also says what it found in its own terms (host names, ids, users, lines).
    fn judge(
        (filter, scratch, dates): (&mut Filter, &mut Scratch, &mut DateReader),
        line: &str,
        now: i64,
        journal: bool,
    ) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::Value;
        let mut object = serde_json::Map::new();
        let time = |ms: Option<i64>| -> Value {
            ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                .map_or(Value::Null, |t| Value::String(t.to_string()))
        };
        let mut extra = serde_json::Map::new();
        let outcome = filter.judge(scratch, line, now, journal.then_some(now));
        let (host, user, at, regex, attempts) = match (filter.hits(), outcome) {
            (Some(hits), _) => model_hit(hits, &mut extra),
            // The time where the failregex that matched has it, as the daemon reads it.
            (None, Outcome::Failure { target, regex }) => (
                Some(show(&target)),
                None,
                dates
                    .read(filter.time_text(scratch, regex, line).unwrap_or(line))
                    .map(|(at, _)| at),
                Some(regex),
                Some(1),
            ),
            (
                None,
                Outcome::Dated {
                    target,
                    regex,
                    time,
                    ..
                },
            ) => (Some(show(&target)), None, time, Some(regex), Some(1)),
            (None, Outcome::Malformed) => {
                extra.insert("malformed".into(), true.into());
                (None, None, None, None, None)
            }
            (None, Outcome::Missed | Outcome::Ignored { .. }) => (None, None, None, None, None),
        };
        object.insert("match".into(), Value::Bool(host.is_some()));
        object.insert("host".into(), host.map_or(Value::Null, Value::String));
        object.insert("user".into(), user.map_or(Value::Null, Value::String));
        object.insert("time".into(), time(at));
        object.insert("regex".into(), regex.map_or(Value::Null, |r| r.into()));
        object.insert(
            "attempts".into(),
            attempts.map_or(Value::Null, |a| a.into()),
        );
        object.extend(extra);
        object
    }

    /// The line's first failure with an id, as fail2ban's model found it; its host
    /// names, users and address family go into `extra`.
    fn model_hit(
        hits: &[Hit],
        extra: &mut serde_json::Map<String, serde_json::Value>,
    ) -> JudgedLine {
        use serde_json::Value;
        let failures = hits.iter().filter(|h| !h.nofail && h.id.is_some());
        extra.insert("failures".into(), failures.clone().count().into());
        let Some(hit) = failures.clone().next() else {
            return (None, None, None, None, None);
        };
        extra.insert("users".into(), hit.users.clone().into());
        extra.insert(
            "dns".into(),
            hit.dns.clone().map_or(Value::Null, Value::String),
        );
        if let Some((address, _)) = &hit.address {
            let family = if address.contains(':') { "ip6" } else { "ip4" };
            extra.insert(family.into(), Value::String(address.clone()));
        }
        (
            hit.id.clone(),
            hit.user.clone(),
            hit.time,
            Some(hit.regex),
            Some(hit.attempts),
        )
    }

    /// Host, user, time, regex and lines of a judged line.
    type JudgedLine = (
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<usize>,
        Option<usize>,
    );
}

fn describe(why: Spared) -> &'static str {
    match why {
        Spared::Reserved => "loopback or unspecified",
        Spared::OwnAddress => "this host's address",
        Spared::IgnoreIp => "ignoreip",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        filter::date::{DatePattern, DateReader},
        ignore::IgnoreList,
        sample::{Format, SampleSpec, write_log},
    };

    /// Replaying on two cores gives the report of one, line for line: every built-in
    /// filter over a log of its format (more than a few batches, attackers banned), with
    /// comments and blank lines among the messages, plain and as a Docker json-file log
    /// (each message with its runtime's time).
    #[test]
    fn two_cores_report_what_one_does() {
        let end = 1_795_521_600_000;
        for format in Format::ALL {
            let spec = SampleSpec {
                lines: 3 * BATCH as u64 + 17,
                clients: 2_000,
                attackers: 40,
                format,
                ..SampleSpec::benchmark(end)
            };
            let mut log = Vec::new();
            write_log(&spec, &TimeZone::UTC, &mut log).expect("write");
            let text = String::from_utf8(log).expect("utf-8");
            let plain = format!("# a comment\n\n{text}");
            let docker: String = text
                .lines()
                .enumerate()
                .map(|(n, line)| {
                    let time = jiff::Timestamp::from_millisecond(end - 60_000 + n as i64)
                        .expect("a time");
                    let entry = serde_json::json!({"log": format!("{line}\n"), "stream": "stdout", "time": time.to_string()});
                    format!("{entry}\n")
                })
                .collect();
            for log in [plain, docker] {
                let report = || {
                    let name = format.builtin();
                    let spec: FilterSpec =
                        toml::from_str(filter::builtin(name).expect("built in")).expect("parses");
                    let detector = Detector::new(
                        Filter::compile(&spec).expect("compiles"),
                        DateReader::with_pattern(DatePattern::Auto, TimeZone::UTC),
                        IgnoreList::default(),
                        Rules::default(),
                    );
                    Report::new(detector, Some(5))
                };
                let unwrapper = || Unwrapper::new(LogFormat::Auto, tail::DEFAULT_MAX_LINE);
                let mut one = report();
                let mut unwrap = unwrapper();
                for line in log.lines() {
                    unwrap.line(line, &mut |message| {
                        one.message(message.text, message.time, end);
                    });
                }
                one.container = (unwrap.format(), unwrap.stats());
                let mut two = report();
                let judging = Judging {
                    judge: two.detector.judge_alone().expect("no state between lines"),
                    unwrap: unwrapper(),
                    streams: Streams::Both,
                    fallback: end,
                };
                let (_, unwrap) = judged_on_two_cores(judging, &mut two, &mut |sink| {
                    log.lines().for_each(&mut *sink);
                    Ok(TailStats::default())
                })
                .expect("replayed");
                two.container = (unwrap.format(), unwrap.stats());
                let stats = TailStats::default();
                let shown = |r: &Report| r.render("filter", &[], &stats, 10);
                assert!(one.banned > 0, "{format:?}: the attackers are banned");
                assert_eq!(shown(&one), shown(&two), "{format:?}");
            }
        }
    }
}
