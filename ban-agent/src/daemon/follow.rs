//! The agent's logs: which files and journals each jail follows, and reading what they
//! gained into the jails' detectors. A poll returns the ban decisions; the agent makes
//! them.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use prometheus_client::metrics::counter::Counter;
use tracing::{info, warn};

use super::{
    fleet::Sharing,
    jails::{JailRun, Jails},
    log_once::LogOnce,
};
use crate::{
    clock::Now,
    detect::Detection,
    metrics::Metrics,
    tail::{
        self, Checkpoint, Follower, Start,
        container::{Fed, LogFormat, Unwrapper},
        docker::DockerSelector,
        journal::{JournalReader, JournalSpec},
    },
    tracker::Decision,
};

/// One followed file and the jails that read it.
struct Log {
    follower: Follower,
    /// The container runtime's wrapper taken off its lines.
    unwrap: Unwrapper,
    /// Messages cut for their length, as last said.
    cut_said: u64,
    jails: Vec<String>,
    lines: Counter,
    /// Why it cannot be read, said once.
    error: LogOnce,
    /// Whether the log is [`LAG_ALERT_BYTES`] or more ahead of the agent (said once).
    behind: bool,
}

/// Unread bytes of one log past which the agent says it is falling behind (a log written
/// faster than it is read, or a stalled agent): about 300k lines of a web access log.
pub(super) const LAG_ALERT_BYTES: u64 = 64 << 20;

impl Log {
    /// Says once, and again when more come, that messages of this log were cut.
    fn said_cut(&mut self, path: &std::path::Path) {
        let cut = self.unwrap.stats().cut;
        if cut > self.cut_said {
            if self.cut_said == 0 {
                warn!(
                    file = %path.display(),
                    limit_bytes = tail::DEFAULT_MAX_LINE,
                    "a container's message went past the limit and was cut (its parts are \
                     dropped up to its end): a flood of partial lines, or an app that logs \
                     huge lines; further cuts are not logged"
                );
            }
            self.cut_said = cut;
        }
    }

    /// Says when the agent falls behind this log, and when it has caught up again (below
    /// half the alert, so that a lag around the mark does not flap).
    fn judge_lag(&mut self, path: &std::path::Path, lag: u64) {
        if !self.behind && lag >= LAG_ALERT_BYTES {
            self.behind = true;
            warn!(
                file = %path.display(),
                lag_mb = lag >> 20,
                "falling behind this log: bans come late until the agent catches up; \
                 ban_agent_follower_lag_bytes follows it. Check the CPU the agent gets, and \
                 how fast `time ban-agent test-filter` reads a copy of this log"
            );
        } else if self.behind && lag < LAG_ALERT_BYTES / 2 {
            self.behind = false;
            info!(file = %path.display(), lag_mb = lag >> 20, "caught up with this log");
        }
    }
}

/// A jail's journal: opened when it can be, retried each poll when it cannot.
struct JournalLog {
    spec: JournalSpec,
    reader: Option<JournalReader>,
    /// Where to resume, until the journal is open (then its reader knows).
    resume: Option<String>,
    from_head: bool,
    lines: Counter,
    error: LogOnce,
    /// The last poll used its whole budget: there is more to read at once.
    more: bool,
}

impl JournalLog {
    fn cursor(&self) -> Option<&str> {
        self.reader
            .as_ref()
            .and_then(JournalReader::cursor)
            .or(self.resume.as_deref())
    }

    /// The reader, opening the journal if it is not yet; `None` (said once) when it
    /// cannot be opened.
    fn reader(&mut self, jail: &str) -> Option<&mut JournalReader> {
        if self.reader.is_none() {
            match JournalReader::open(&self.spec, self.resume.as_deref(), self.from_head) {
                Ok(reader) => {
                    info!(jail, journal = reader.describe(), "reading the journal");
                    self.error.ended();
                    self.reader = Some(reader);
                }
                Err(e) => {
                    let message = e.to_string();
                    if self.error.first(&message) {
                        warn!(jail, "{message}");
                    }
                    return None;
                }
            }
        }
        self.reader.as_mut()
    }
}

/// What one line's detection does in its jail: failures counted (and shared with the
/// fleet), the maxretry-th one a ban decision.
fn tally(
    detection: Detection,
    name: &str,
    run: &mut JailRun,
    sharing: Sharing<'_>,
    now: Now,
    decisions: &mut Vec<(String, Decision)>,
) {
    match detection {
        Detection::Missed | Detection::Ignored { .. } => {}
        Detection::Malformed => {
            run.malformed.inc();
        }
        Detection::Ban { decision, .. } => {
            run.failures.inc();
            run.lost_clients.counted();
            decisions.push((name.to_owned(), decision));
        }
        Detection::Counted { target, .. } => {
            run.failures.inc();
            run.lost_clients.counted();
            sharing.failure(run, target, now);
        }
        Detection::Spared { target, why, .. } => {
            run.failures.inc();
            run.lost_clients.spared(name, target, why);
        }
        Detection::Stale { .. } => {
            run.failures.inc();
        }
    }
}

/// Lines read from one journal per poll, so that a journal far ahead does not hold the
/// rest up (it is read on at the next poll, at once).
const JOURNAL_BUDGET: u64 = 10_000;

/// Where the logs were read up to, as last saved: a log or journal let go leaves its
/// place here, and one opened resumes from it.
pub(super) struct Places<'a> {
    pub positions: &'a mut BTreeMap<PathBuf, Checkpoint>,
    pub cursors: &'a mut BTreeMap<String, String>,
}

/// The files and journals the jails follow.
pub(super) struct Logs {
    files: BTreeMap<PathBuf, Log>,
    /// When the jails' files were last looked for: a file made since (a new container's
    /// log, a new file of a glob) is read from its start, whatever the jail's `start`.
    last_scan: Option<std::time::SystemTime>,
    /// The journal of each jail that reads one.
    journals: BTreeMap<String, JournalLog>,
    metrics: Arc<Metrics>,
}

impl Logs {
    pub(super) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            files: BTreeMap::new(),
            last_scan: None,
            journals: BTreeMap::new(),
            metrics,
        }
    }

    /// Opens every file the jails' `logpath` names now and the journal of every jail
    /// that reads one, resuming saved places; those already followed are kept as they
    /// are, and those no jail reads any more are let go (their place saved).
    pub(super) fn open(&mut self, jails: &Jails, places: Places<'_>) {
        self.open_journals(jails, places.cursors);
        let scan = std::time::SystemTime::now();
        let since = self.last_scan.replace(scan);
        let mut wanted: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
        for (name, run) in jails {
            let containers = run.config.docker.iter().flat_map(DockerSelector::logs);
            for path in tail::expand(&run.config.logpath)
                .into_iter()
                .chain(containers)
            {
                wanted.entry(path).or_default().push(name.clone());
            }
        }
        let positions = places.positions;
        self.files.retain(|path, log| {
            let keep = wanted.contains_key(path);
            if !keep && let Some(checkpoint) = log.follower.checkpoint() {
                positions.insert(path.clone(), checkpoint);
            }
            keep
        });
        for (path, names) in wanted {
            if let Some(log) = self.files.get_mut(&path) {
                log.jails = names;
                continue;
            }
            // A file read by several jails starts at its head if any of them asks so, or
            // when it was made since the last look.
            let head = names
                .iter()
                .filter_map(|name| jails.get(name))
                .any(|run| run.config.start == Start::Head)
                || since.is_some_and(|since| made_since(&path, since));
            let start = if head { Start::Head } else { Start::Tail };
            let resume = positions.get(&path).cloned();
            let follower = Follower::new(path.clone(), start, tail::DEFAULT_MAX_LINE, resume);
            let unwrap = Unwrapper::new(format_of(&path, &names, jails), tail::DEFAULT_MAX_LINE);
            let lines = self
                .metrics
                .lines_read
                .get_or_create(&Metrics::file(&path))
                .clone();
            self.files.insert(
                path,
                Log {
                    follower,
                    unwrap,
                    cut_said: 0,
                    jails: names,
                    lines,
                    error: LogOnce::default(),
                    behind: false,
                },
            );
        }
    }

    /// Opens the journal of every jail that reads one, resuming saved cursors; journals
    /// already open are kept, and those of jails gone are closed (their cursor saved).
    fn open_journals(&mut self, jails: &Jails, cursors: &mut BTreeMap<String, String>) {
        self.journals.retain(|name, journal| {
            let keep = jails
                .get(name)
                .and_then(|run| run.config.journal.as_ref())
                .is_some_and(|spec| *spec == journal.spec);
            if !keep && let Some(cursor) = journal.cursor() {
                cursors.insert(name.clone(), cursor.to_owned());
            }
            keep
        });
        for (name, run) in jails {
            let Some(spec) = &run.config.journal else {
                continue;
            };
            if self.journals.contains_key(name) {
                continue;
            }
            let lines = self
                .metrics
                .lines_read
                .get_or_create(&Metrics::file(std::path::Path::new(&format!(
                    "journal:{name}"
                ))))
                .clone();
            self.journals.insert(
                name.clone(),
                JournalLog {
                    spec: spec.clone(),
                    reader: None,
                    resume: cursors.get(name).cloned(),
                    from_head: run.config.start == Start::Head,
                    lines,
                    error: LogOnce::default(),
                    more: false,
                },
            );
        }
    }

    /// Reads what was appended to every log and journal, judges each line in each jail
    /// that reads it (failures counted, and shared through `sharing`), and returns the
    /// lines read and the ban decisions, in the order their lines came.
    pub(super) fn poll(
        &mut self,
        jails: &mut Jails,
        sharing: Sharing<'_>,
        now: Now,
    ) -> (u64, Vec<(String, Decision)>) {
        let mut decisions: Vec<(String, Decision)> = Vec::new();
        let mut read = 0;
        for (path, log) in &mut self.files {
            let Log {
                follower,
                unwrap,
                jails: names,
                ..
            } = log;
            let result = follower.poll(&mut |line| {
                let fed = unwrap.line(line, &mut |message| {
                    for name in names.iter() {
                        let Some(run) = jails.get_mut(name) else {
                            continue;
                        };
                        if !run.config.stream.admits(message.stream) {
                            continue;
                        }
                        let detection = match message.time {
                            Some(time) => run.detector.dated_line(message.text, time, now.wall),
                            None => run.detector.line(message.text, now.wall),
                        };
                        tally(detection, name, run, sharing, now, &mut decisions);
                    }
                });
                if fed == Fed::Malformed {
                    for run in names.iter().filter_map(|name| jails.get(name)) {
                        run.malformed.inc();
                    }
                }
            });
            log.said_cut(path);
            match result {
                Ok(lines) => {
                    read += lines;
                    log.lines.inc_by(lines);
                    log.error.ended();
                }
                Err(e) => {
                    let message = e.to_string();
                    if log.error.first(&message) {
                        warn!(file = %path.display(), "cannot read the log: {message}; check \
                              that it is readable by the agent");
                    }
                }
            }
        }
        read += self.poll_journals(jails, sharing, now, &mut decisions);
        (read, decisions)
    }

    /// Reads what the journals gained into their jails; returns the lines read.
    fn poll_journals(
        &mut self,
        jails: &mut Jails,
        sharing: Sharing<'_>,
        now: Now,
        decisions: &mut Vec<(String, Decision)>,
    ) -> u64 {
        let mut read = 0;
        for (name, journal) in &mut self.journals {
            let Some(run) = jails.get_mut(name) else {
                continue;
            };
            let Some(reader) = journal.reader(name) else {
                continue;
            };
            let result = reader.poll(JOURNAL_BUDGET, &mut |line| {
                let detection = run.detector.dated_line(&line.text, line.time, now.wall);
                tally(detection, name, run, sharing, now, decisions);
            });
            match result {
                Ok(lines) => {
                    read += lines;
                    journal.lines.inc_by(lines);
                    journal.more = lines >= JOURNAL_BUDGET;
                    journal.error.ended();
                }
                Err(e) => {
                    let message = e.to_string();
                    if journal.error.first(&message) {
                        warn!(jail = name.as_str(), "{message}");
                    }
                    // Reopened at the next poll, from the last cursor.
                    journal.resume = journal.cursor().map(str::to_owned);
                    journal.reader = None;
                }
            }
        }
        read
    }

    /// Whether a log has more to read than the last poll's budget allowed.
    pub(super) fn reading(&self) -> bool {
        self.files.values().any(|log| log.follower.more())
            || self.journals.values().any(|journal| journal.more)
    }

    /// The files followed now.
    pub(super) fn paths(&self) -> Vec<PathBuf> {
        self.files.keys().cloned().collect()
    }

    /// The files `jail` follows now.
    pub(super) fn files_of(&self, jail: &str) -> Vec<String> {
        self.files
            .iter()
            .filter(|(_, log)| log.jails.iter().any(|name| name == jail))
            .map(|(path, _)| path.display().to_string())
            .collect()
    }

    /// Where each file is read up to now.
    pub(super) fn checkpoints(&self) -> impl Iterator<Item = (&PathBuf, Checkpoint)> {
        self.files
            .iter()
            .filter_map(|(path, log)| Some((path, log.follower.checkpoint()?)))
    }

    /// Where each journal is read up to now, by jail.
    pub(super) fn cursors(&self) -> impl Iterator<Item = (&String, &str)> {
        self.journals
            .iter()
            .filter_map(|(jail, journal)| Some((jail, journal.cursor()?)))
    }

    /// Refreshes how far each file's reader is behind it, and says when it falls behind
    /// or catches up.
    pub(super) fn refresh_lag(&mut self) {
        for (path, log) in &mut self.files {
            let lag = log.follower.lag().unwrap_or(0);
            self.metrics
                .lag_bytes
                .get_or_create(&Metrics::file(path))
                .set(i64::try_from(lag).unwrap_or(i64::MAX));
            log.judge_lag(path, lag);
        }
    }
}

/// Whether the file at `path` was made at `since` or later (with a second's slack: a file
/// made while the last look was under way is new too).
fn made_since(path: &std::path::Path, since: std::time::SystemTime) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let made = meta.created().or_else(|_| meta.modified());
    let since = since
        .checked_sub(std::time::Duration::from_secs(1))
        .unwrap_or(since);
    made.is_ok_and(|made| made >= since)
}

/// The format of `path`'s lines: the first that a jail reading it names, else told from
/// its first line. Jails that name two differ: the first wins, and it is said.
fn format_of(path: &std::path::Path, names: &[String], jails: &Jails) -> LogFormat {
    let named: Vec<(&str, LogFormat)> = names
        .iter()
        .filter_map(|name| Some((name.as_str(), jails.get(name)?.config.log_format)))
        .filter(|(_, format)| *format != LogFormat::Auto)
        .collect();
    let Some(&(first, format)) = named.first() else {
        return LogFormat::Auto;
    };
    if let Some((other, theirs)) = named.iter().find(|(_, theirs)| *theirs != format) {
        warn!(
            file = %path.display(),
            "jail {first} reads it as log_format {:?} and jail {other} as {:?}: read as {:?}",
            format.name(),
            theirs.name(),
            format.name()
        );
    }
    format
}

/// The `logpath` patterns of every jail (and the journal files of journal jails), for
/// the watcher.
pub(super) fn patterns(jails: &Jails) -> Vec<PathBuf> {
    let mut patterns: Vec<PathBuf> = jails
        .values()
        .flat_map(|run| {
            let journal = run.config.journal.iter().flat_map(JournalSpec::watched);
            let containers = run.config.docker.iter().map(DockerSelector::pattern);
            run.config
                .logpath
                .iter()
                .cloned()
                .chain(journal)
                .chain(containers)
        })
        .collect();
    patterns.sort();
    patterns.dedup();
    patterns
}
