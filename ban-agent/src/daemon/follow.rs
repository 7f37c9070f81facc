//! The agent's logs: which files each jail follows, and reading them into the detectors.

use std::{collections::BTreeMap, path::PathBuf};

use prometheus_client::metrics::counter::Counter;
use tracing::{error, info, warn};

use super::{
    agent::{Agent, Planned},
    fleet::share_failure,
    log_once::LogOnce,
};
use crate::{clock::Now, tail::Start};
use crate::{
    datapath,
    detect::Detection,
    metrics::Metrics,
    metrics::Refusal,
    tail::{
        self, Follower,
        journal::{JournalReader, JournalSpec},
    },
    tracker::{Admit, Decision},
};

/// One followed file and the jails that read it.
pub(super) struct Log {
    pub(super) follower: Follower,
    pub(super) jails: Vec<String>,
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
    /// Says when the agent falls behind this log, and when it has caught up again (below
    /// half the alert, so that a lag around the mark does not flap).
    pub(super) fn judge_lag(&mut self, path: &std::path::Path, lag: u64) {
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
pub(super) struct JournalLog {
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
    pub(super) fn cursor(&self) -> Option<&str> {
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

/// What a line's failure is shared with: the fleet's outbox (none without a fleet), and
/// the bans in force here (failures of those are not shared).
#[derive(Clone, Copy)]
struct Sharing<'a> {
    outbox: Option<&'a crate::fleet::Outbox>,
    bans: &'a super::table::Bans,
}

/// What one line's detection does in its jail: failures counted (and shared with the
/// fleet), the maxretry-th one a ban decision.
fn tally(
    detection: Detection,
    name: &str,
    run: &mut super::agent::JailRun,
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
            decisions.push((name.to_owned(), decision));
        }
        Detection::Counted { target, .. } => {
            run.failures.inc();
            share_failure(sharing.outbox, sharing.bans, run, target, now);
        }
        Detection::Spared { .. } | Detection::Stale { .. } => {
            run.failures.inc();
        }
    }
}

/// Lines read from one journal per poll, so that a journal far ahead does not hold the
/// rest up (it is read on at the next poll, at once).
const JOURNAL_BUDGET: u64 = 10_000;

impl Agent {
    /// Opens the journal of every jail that reads one, resuming saved cursors; journals
    /// already open are kept, and those of jails gone are closed (their cursor saved).
    pub(super) fn open_journals(&mut self) {
        let cursors = &mut self.state.cursors;
        let jails = &self.jails;
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
        for (name, run) in &self.jails {
            let Some(spec) = &run.config.journal else {
                continue;
            };
            if self.journals.contains_key(name) {
                continue;
            }
            let lines = self
                .setup
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
                    resume: self.state.cursors.get(name).cloned(),
                    from_head: run.config.start == Start::Head,
                    lines,
                    error: LogOnce::default(),
                    more: false,
                },
            );
        }
    }

    /// Reads what the journals gained into their jails; returns the lines read and the
    /// ban decisions.
    fn poll_journals(&mut self, now: Now, decisions: &mut Vec<(String, Decision)>) -> u64 {
        let mut read = 0;
        let Self {
            journals,
            jails,
            fleet,
            bans,
            ..
        } = self;
        let sharing = Sharing {
            outbox: fleet.as_ref().map(|fleet| &*fleet.link.outbox),
            bans,
        };
        for (name, journal) in journals.iter_mut() {
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

    /// Opens every file the jails' `logpath` names now, resuming saved positions; files
    /// already followed are kept as they are.
    pub(super) fn open_logs(&mut self) {
        self.open_journals();
        let mut wanted: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
        for (name, run) in &self.jails {
            for path in tail::expand(&run.config.logpath) {
                wanted.entry(path).or_default().push(name.clone());
            }
        }
        let positions = &mut self.state.positions;
        self.logs.retain(|path, log| {
            let keep = wanted.contains_key(path);
            if !keep && let Some(checkpoint) = log.follower.checkpoint() {
                positions.insert(path.clone(), checkpoint);
            }
            keep
        });
        for (path, jails) in wanted {
            if let Some(log) = self.logs.get_mut(&path) {
                log.jails = jails;
                continue;
            }
            // A file read by several jails starts at its head if any of them asks so.
            let head = jails
                .iter()
                .filter_map(|name| self.jails.get(name))
                .any(|run| run.config.start == Start::Head);
            let start = if head { Start::Head } else { Start::Tail };
            let resume = self.state.positions.get(&path).cloned();
            let follower = Follower::new(path.clone(), start, tail::DEFAULT_MAX_LINE, resume);
            let lines = self
                .setup
                .metrics
                .lines_read
                .get_or_create(&Metrics::file(&path))
                .clone();
            self.logs.insert(
                path,
                Log {
                    follower,
                    jails,
                    lines,
                    error: LogOnce::default(),
                    behind: false,
                },
            );
        }
    }

    /// Whether a log has more to read than the last poll's budget allowed.
    pub fn reading(&self) -> bool {
        self.logs.values().any(|log| log.follower.more())
            || self.journals.values().any(|journal| journal.more)
    }

    /// The `logpath` patterns of every jail (and the journal files of journal jails),
    /// for the watcher.
    pub fn log_patterns(&self) -> Vec<PathBuf> {
        let mut patterns: Vec<PathBuf> = self
            .jails
            .values()
            .flat_map(|run| {
                let journal = run.config.journal.iter().flat_map(JournalSpec::watched);
                run.config.logpath.iter().cloned().chain(journal)
            })
            .collect();
        patterns.sort();
        patterns.dedup();
        patterns
    }

    /// The ban a decision from the log makes, staged; `None` when the jail's cap on bans
    /// per minute holds it back, or the batch banned the target already.
    fn plan_decision(&mut self, jail: &str, decision: &Decision, now: Now) -> Option<Planned> {
        let run = self.jails.get_mut(jail)?;
        let key = (jail.to_owned(), decision.target);
        if matches!(self.pending.bans.get(&key), Some(Some(_)))
            && !self.bans.contains(jail, decision.target)
        {
            // Its failures came again later in the same batch: banned once.
            return None;
        }
        if let Admit::HeldBack { alert } = run.rate.admit(now.wall) {
            let cap = run.config.rules.max_bans_per_minute;
            self.refused(jail, Refusal::RateCap);
            if alert {
                error!(
                    jail,
                    ip = %datapath::show(&decision.target),
                    max_bans_per_minute = cap,
                    "the jail reached max_bans_per_minute: further bans are held back \
                     for the rest of the minute. Check with `ban-agent test-filter` that \
                     its filter matches failures only; raise max_bans_per_minute if this \
                     is a real attack"
                );
            }
            return None;
        }
        let overall = run.config.increment.is_some_and(|inc| inc.overall_jails);
        let (bantime, increment) = (run.config.bantime, run.config.increment);
        // The history is read only when it lengthens bans.
        let previous = match increment {
            Some(_) => self.previous_bans(jail, &decision.target, overall),
            None => 0,
        };
        let length = bantime.after(previous, increment.as_ref());
        match self.plan_ban(
            jail,
            decision.target,
            length,
            decision.failures,
            "failures",
            now,
        ) {
            Ok(plan) => Some(plan),
            Err(e) => {
                warn!(jail, ip = %datapath::show(&decision.target), "cannot ban: {e}");
                None
            }
        }
    }

    /// Reads what was appended to every log, judges each line in each jail that reads it,
    /// and bans at once. Returns the number of lines read.
    pub fn poll(&mut self, now: Now) -> u64 {
        let mut decisions: Vec<(String, Decision)> = Vec::new();
        let mut read = 0;
        let Self {
            logs,
            jails,
            fleet,
            bans,
            ..
        } = self;
        let sharing = Sharing {
            outbox: fleet.as_ref().map(|fleet| &*fleet.link.outbox),
            bans,
        };
        for (path, log) in logs.iter_mut() {
            let names = &log.jails;
            let result = log.follower.poll(&mut |line| {
                for name in names {
                    let Some(run) = jails.get_mut(name) else {
                        continue;
                    };
                    let detection = run.detector.line(line, now.wall);
                    tally(detection, name, run, sharing, now, &mut decisions);
                }
            });
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
        read += self.poll_journals(now, &mut decisions);
        // Every ban of the batch is staged, then committed with the failures and the log
        // positions after it, then put in the kernel (see `Agent::plan_ban`).
        let mut planned = Vec::with_capacity(decisions.len());
        for (jail, decision) in decisions {
            if let Some(plan) = self.plan_decision(&jail, &decision, now) {
                planned.push((jail, decision.target, plan));
            }
        }
        if planned.is_empty() {
            self.commit_soon();
        } else {
            self.commit();
        }
        for (jail, target, plan) in planned {
            match self.apply_ban(&jail, target, plan, "failures", now) {
                Ok(super::agent::BanOutcome::Already { .. }) => {}
                Ok(_) => self.publish_ban(&jail, target, false, now),
                Err(e) => {
                    if e.map_full() {
                        self.refused(&jail, Refusal::MapFull);
                    }
                    warn!(jail, ip = %datapath::show(&target), "cannot ban: {e}");
                }
            }
        }
        read
    }
}
