//! The agent: it composes the daemon's parts and carries a line's route through them.
//! The jails ([`jails`](super::jails)), the bans in force ([`table`](super::table),
//! mirrored in the kernel maps), the logs ([`follow`](super::follow)), the saved state
//! ([`persist`](super::persist)) and the fleet ([`fleet`](super::fleet)) each own their
//! state; the agent holds them, and a line read goes: poll (`follow`) → detect and tally
//! (`follow`, in the jails' detectors) → plan (here) → commit (`persist`) → apply (here,
//! to the kernel) → share (`fleet`). No sockets, no timers and no clock of its own: the
//! daemon calls in with the time, so every rule here is unit-tested against an in-memory
//! kernel.

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf, sync::Arc};

use anyhow::Context as _;
use ipnet::IpNet;
use jiff::tz::TimeZone;
use tracing::{error, info, warn};

use super::{
    crowdsec::{CrowdSecSide, Step},
    fleet::{Apply, FleetSide},
    follow::{self, Logs},
    jails::{JailRun, Jails},
    kernel::Kernel,
    persist::{self, Persist},
    restore::{self, Holders},
    table::{ActiveBan, Bans},
};
use crate::{
    clock::{Expiry, Now, UnixMs, wall_text},
    config::{Config, Global, Jail, Ports},
    control::protocol::{CrowdSecStatus, FleetStatus, InterfaceHook, StateStatus},
    datapath::{self, JailPorts},
    detect::Detector,
    events::{Event, Events, Kind},
    fleet::{Link, task::Incoming},
    ignore::IgnoreList,
    metrics::{self, Metrics, Refusal},
    store::{Store, StoreError},
    tracker::{Admit, BanRate, BanTime, Decision},
};

/// What the agent is given besides its configuration.
pub struct Setup {
    /// The host's addresses, never banned with `ignoreself`.
    pub own: Vec<IpAddr>,
    pub zone: TimeZone,
    pub metrics: Arc<Metrics>,
    /// Where `on_ban`/`on_unban` actions go; `None` runs none (tests).
    pub events: Option<Events>,
}

/// Why [`Agent::ban`] did not ban: callers tell a full map (counted as refused) from the
/// rest by type.
#[derive(Debug, thiserror::Error)]
pub(super) enum BanError {
    #[error("no jail {0}")]
    NoJail(String),
    #[error(transparent)]
    Kernel(#[from] datapath::DatapathError),
}

impl BanError {
    /// The kernel's ban map has no room left.
    pub(super) fn map_full(&self) -> bool {
        matches!(self, Self::Kernel(datapath::DatapathError::MapFull { .. }))
    }
}

/// What [`Agent::ban`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BanOutcome {
    /// A new ban.
    New,
    /// The target was banned already, until earlier: its ban now ends later.
    Extended,
    /// The target was banned already, at least as long (`until`: `None` for permanent).
    Already { until: Option<UnixMs> },
}

/// A ban decided and staged, not yet in the kernel: see [`Agent::plan_ban`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Planned {
    /// Banned already, at least as long: nothing to do.
    Already { until: Option<UnixMs> },
    /// To write to the kernel; `old` is the shorter ban it extends.
    Write {
        ban: ActiveBan,
        old: Option<ActiveBan>,
        length: BanTime,
    },
}

/// Whether a ban ending at `new` outlasts one ending at `old`.
fn ends_later(new: Expiry, old: Expiry) -> bool {
    match (new, old) {
        (_, Expiry::Never) => false,
        (Expiry::Never, Expiry::At(_)) => true,
        (Expiry::At(new), Expiry::At(old)) => new > old,
    }
}

pub struct Agent {
    /// The configuration file, re-read by `reload`.
    path: PathBuf,
    /// The global settings in force (jail settings live in `jails`).
    global: Global,
    kernel: Box<dyn Kernel>,
    jails: Jails,
    bans: Bans,
    logs: Logs,
    persist: Persist,
    /// The fleet, when this host is part of one.
    fleet: Option<FleetSide>,
    /// CrowdSec's decisions, when `[crowdsec]` is set.
    crowdsec: Option<CrowdSecSide>,
    setup: Setup,
    /// Last kernel counters seen per jail id (dropped packets, bytes), for the metrics.
    kernel_seen: BTreeMap<u32, (u64, u64)>,
    /// The hook of each attached interface, for `status`, `stats` and the metrics.
    hooks: Vec<InterfaceHook>,
    /// Bans of the last batch read, whose commit the state's writer thread is making:
    /// each goes into the kernel once it is written ([`Agent::land`]).
    landing: Vec<Landing>,
}

/// A ban decided from the log, waiting for its commit to be written.
struct Landing {
    jail: String,
    target: IpNet,
    plan: Planned,
    /// When it was decided.
    at: Now,
}

impl Agent {
    /// Builds the jails of `config`, restores the saved bans that have not ended and
    /// reconciles them with the kernel maps, and opens the logs where they were left.
    pub fn start(
        config: Config,
        kernel: Box<dyn Kernel>,
        store: Option<Store>,
        setup: Setup,
        now: Now,
    ) -> anyhow::Result<Self> {
        let (persist, saved) = Persist::open(store, Arc::clone(&setup.metrics), now)?;
        let Config {
            path,
            global,
            jails,
        } = config;
        let mut agent = Self {
            path,
            global,
            kernel,
            jails: Jails::new(),
            bans: Bans::default(),
            logs: Logs::new(Arc::clone(&setup.metrics)),
            persist,
            fleet: None,
            crowdsec: None,
            setup,
            kernel_seen: BTreeMap::new(),
            hooks: Vec::new(),
            landing: Vec::new(),
        };
        for jail in jails.into_iter().filter(|jail| jail.enabled) {
            agent.add_jail(jail)?;
        }
        // Jails that are gone lose their ids; `restore` lifts their bans from the kernel by
        // the ids the maps hold.
        agent.persist.keep_jail_ids(&agent.jails);
        agent.publish_ports()?;
        let holders = Holders {
            kernel: agent.kernel.as_mut(),
            jails: &mut agent.jails,
            bans: &mut agent.bans,
            persist: &mut agent.persist,
        };
        let ended = restore::restore(saved, holders, &agent.setup.own, now)?;
        for (jail, target, ban) in ended {
            agent.unbanned(&jail, target, &ban, "expired", now);
        }
        agent
            .persist
            .restore_failures(&mut agent.jails, &agent.bans, now)?;
        agent.open_logs();
        agent.commit();
        // The saved bans, read whole, are freed: with a million, a hundred MB or more.
        persist::release_memory();
        Ok(agent)
    }

    pub(super) fn add_jail(&mut self, jail: Jail) -> anyhow::Result<()> {
        let id = self.persist.jail_id(&jail.name).with_context(|| {
            format!(
                "jail {}: all {} kernel jail slots are taken",
                jail.name,
                ban_common::MAX_JAILS
            )
        })?;
        let detector = Detector::for_jail(&jail, self.own(), self.setup.zone.clone());
        let label = Metrics::jail(&jail.name);
        let metrics = &self.setup.metrics;
        let failures = metrics.failures.get_or_create(&label).clone();
        let malformed = metrics.malformed_lines.get_or_create(&label).clone();
        let run = JailRun {
            malformed,
            id,
            rate: BanRate::new(jail.rules.max_bans_per_minute),
            config: jail,
            detector,
            total_banned: 0,
            failures,
            lost_clients: super::jails::LostClients::default(),
        };
        self.jails.insert(run.config.name.clone(), run);
        Ok(())
    }

    /// Builds `jail` anew in place of the running one of its name (a reload changed it):
    /// its bans and its count of bans stay, and so do the failures counted so far, under
    /// the new rules (unless counted per other prefixes).
    pub(super) fn replace_jail(&mut self, jail: Jail) -> anyhow::Result<()> {
        let name = jail.name.clone();
        let old = self.jails.remove(&name);
        // fail2ban's actions that changed end and start again, as a jail's do in fail2ban.
        if let Some(events) = &self.setup.events
            && old
                .as_ref()
                .is_none_or(|old| old.config.actions != jail.actions)
        {
            if let Some(old) = &old {
                events.fail2ban_jail(&old.config, crate::events::actions::Step::Stop);
            }
            events.fail2ban_jail(&jail, crate::events::actions::Step::Start);
        }
        self.add_jail(jail)?;
        if let (Some(mut old), Some(new)) = (old, self.jails.get_mut(&name)) {
            new.total_banned = old.total_banned;
            std::mem::swap(old.detector.tracker_mut(), new.detector.tracker_mut());
            new.detector.keep_stats(old.detector.stats());
            let rules = new.config.rules.clone();
            new.detector.tracker_mut().set_rules(rules);
        }
        Ok(())
    }

    /// The global settings of a reload, in force from now.
    pub(super) fn set_global(&mut self, global: Global) {
        self.global = global;
    }

    /// The running jails.
    pub(super) fn jails(&self) -> &Jails {
        &self.jails
    }

    /// The running jail `name`, or an error that lists the running ones.
    pub(super) fn jail(&self, name: &str) -> anyhow::Result<&JailRun> {
        self.jails.get(name).with_context(|| self.no_jail(name))
    }

    /// The running jail `name`, to change until the next reload.
    pub(super) fn jail_mut(&mut self, name: &str) -> anyhow::Result<&mut JailRun> {
        let no_jail = self.no_jail(name);
        self.jails.get_mut(name).context(no_jail)
    }

    fn no_jail(&self, name: &str) -> String {
        let names: Vec<&str> = self.jails.keys().map(String::as_str).collect();
        format!(
            "no jail {name:?}; the running jails are: {} (see `ban-agent status`)",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )
    }

    /// The bans in force.
    pub(super) fn bans(&self) -> &Bans {
        &self.bans
    }

    /// The ban maps.
    pub(super) fn kernel(&self) -> &dyn Kernel {
        self.kernel.as_ref()
    }

    /// The hook of each attached interface.
    pub(super) fn hooks(&self) -> &[InterfaceHook] {
        &self.hooks
    }

    /// Removes jail `name` (its bans lifted before): its kernel id is freed.
    pub(super) fn remove_jail(&mut self, name: &str) {
        if let (Some(run), Some(events)) = (self.jails.get(name), &self.setup.events) {
            events.fail2ban_jail(&run.config, crate::events::actions::Step::Stop);
        }
        self.jails.remove(name);
        self.persist.drop_jail(name);
    }

    /// The ignore list of a jail after its `ignoreip` changed.
    pub(super) fn ignore_list(&self, ignoreip: Vec<IpNet>) -> IgnoreList {
        IgnoreList::new(ignoreip, self.own())
    }

    /// The host's addresses a jail spares: all of them with `ignoreself`, else none.
    fn own(&self) -> Vec<IpAddr> {
        if self.global.ignoreself {
            self.setup.own.clone()
        } else {
            Vec::new()
        }
    }

    /// The targets `jail` bans now.
    pub(super) fn bans_of(&self, jail: &str) -> Vec<IpNet> {
        self.bans.of(jail)
    }

    /// The files `jail` follows now.
    pub(super) fn files_of(&self, jail: &str) -> Vec<String> {
        self.logs.files_of(jail)
    }

    /// Tells the kernel which ports each jail protects.
    pub(super) fn publish_ports(&mut self) -> anyhow::Result<()> {
        let specs: Vec<JailPorts> = self
            .jails
            .values()
            .map(|run| JailPorts {
                jail: run.id,
                ports: match &run.config.ports {
                    Ports::All => None,
                    Ports::List(ports) => Some(ports.clone()),
                },
                protocol: run.config.protocol,
            })
            .collect();
        self.kernel.set_jails(&specs)?;
        Ok(())
    }

    /// Records a new ban in force, counted in its jail's `total_banned`.
    fn insert(&mut self, jail: &str, target: IpNet, ban: ActiveBan) {
        self.bans.insert(jail, target, ban);
        if let Some(run) = self.jails.get_mut(jail) {
            run.total_banned += 1;
        }
    }

    /// The global settings in force.
    pub fn global(&self) -> &Global {
        &self.global
    }

    /// The configuration file.
    pub fn config_path(&self) -> &std::path::Path {
        &self.path
    }

    /// The metrics the agent counts in.
    #[cfg(test)]
    pub(super) fn metrics(&self) -> &Metrics {
        &self.setup.metrics
    }

    /// Jails that run.
    pub fn jail_count(&self) -> usize {
        self.jails.len()
    }

    /// Counts a ban decided from the log and not made.
    fn refused(&self, jail: &str, why: Refusal) {
        self.setup
            .metrics
            .bans_refused
            .get_or_create(&Metrics::refusal(jail, why))
            .inc();
    }

    /// Reads what was appended to every log, judges each line in each jail that reads it,
    /// and bans. Returns the number of lines read.
    ///
    /// Every ban of a batch is staged, then committed with the failures and the log
    /// positions after it in one transaction, then put in the kernel (see
    /// [`Agent::plan_ban`]). The commit is written by the state's writer thread: when the
    /// logs are read to their end the agent waits for it and bans at once; when they have
    /// more (a flood, a backlog), it reads the next batch meanwhile and bans after that
    /// batch is read, before it judges that batch's decisions.
    pub fn poll(&mut self, now: Now) -> u64 {
        let sharing = FleetSide::sharing(self.fleet.as_ref(), &self.bans);
        let (read, decisions) = self.logs.poll(&mut self.jails, sharing, now);
        self.land();
        for (jail, decision) in decisions {
            if let Some(plan) = self.plan_decision(&jail, &decision, now) {
                let target = decision.target;
                self.landing.push(Landing {
                    jail,
                    target,
                    plan,
                    at: now,
                });
            }
        }
        if self.landing.is_empty() {
            self.commit_soon();
        } else if !self.persist.commit_on_writer(&self.logs, &mut self.jails) || !self.reading() {
            self.land();
        }
        read
    }

    /// [`Agent::land`] if the writer thread is done with the commit, without waiting.
    pub(super) fn land_written(&mut self) {
        if !self.landing.is_empty() && self.persist.writer_done() {
            self.land();
        }
    }

    /// Puts in the kernel the bans whose commit the writer thread was making, once it is
    /// written (waiting for it). Everything that changes the bans in force calls it first.
    pub(super) fn land(&mut self) {
        if self.landing.is_empty() {
            return;
        }
        self.persist.settle_writer();
        for Landing {
            jail,
            target,
            plan,
            at,
        } in std::mem::take(&mut self.landing)
        {
            match self.apply_ban(&jail, target, plan, "failures", at) {
                Ok(BanOutcome::Already { .. }) => {}
                Ok(_) => self.publish_ban(&jail, target, false, at),
                Err(e) => {
                    if e.map_full() {
                        self.refused(&jail, Refusal::MapFull);
                    }
                    warn!(jail, ip = %datapath::show(&target), "cannot ban: {e}");
                }
            }
        }
    }

    /// The ban a decision from the log makes, staged; `None` when the jail's cap on bans
    /// per minute holds it back, or the batch banned the target already.
    fn plan_decision(&mut self, jail: &str, decision: &Decision, now: Now) -> Option<Planned> {
        let run = self.jails.get_mut(jail)?;
        if self.persist.staged(jail, decision.target) && !self.bans.contains(jail, decision.target)
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
            Some(_) => self.persist.previous_bans(jail, &decision.target, overall),
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

    /// Bans `target` in `jail` for `length`. A target already banned there is never banned
    /// for less: the later expiry wins (permanent stays permanent), and a longer ban only
    /// extends the one in force, which is not counted as a new ban. The ban is committed
    /// to the state before the kernel holds it (see [`Agent::plan_ban`]).
    pub(super) fn ban(
        &mut self,
        jail: &str,
        target: IpNet,
        length: BanTime,
        failures: u32,
        reason: &str,
        now: Now,
    ) -> Result<BanOutcome, BanError> {
        let planned = self.plan_ban(jail, target, length, failures, reason, now)?;
        self.commit();
        self.apply_ban(jail, target, planned, reason, now)
    }

    /// Decides a ban and stages it for the next commit, without touching the kernel. The
    /// caller commits, then applies it: a crash before the commit leaves neither the ban
    /// nor the log position past its lines (the lines are read again and decide it
    /// again); a crash after it leaves the ban saved, and the restart puts it in the
    /// kernel. Either way it is decided once.
    pub(super) fn plan_ban(
        &mut self,
        jail: &str,
        target: IpNet,
        length: BanTime,
        failures: u32,
        reason: &str,
        now: Now,
    ) -> Result<Planned, BanError> {
        let run = self
            .jails
            .get_mut(jail)
            .ok_or_else(|| BanError::NoJail(jail.to_owned()))?;
        let (expiry, expires_at) = length.ends(now);
        let old = self.bans.get(jail, target);
        let ban = match old {
            Some(old) if !ends_later(expiry, old.expiry) => {
                return Ok(Planned::Already {
                    until: old.expires_at,
                });
            }
            Some(old) => ActiveBan {
                expiry,
                expires_at,
                banned_at: old.banned_at,
                failures: old.failures.max(failures),
            },
            None => {
                run.detector.tracker_mut().forget(&target);
                self.persist.count_ban(jail, target, now.wall);
                ActiveBan {
                    expiry,
                    expires_at,
                    banned_at: now.wall,
                    failures,
                }
            }
        };
        self.persist.stage(jail, target, &ban, reason);
        Ok(Planned::Write { ban, old, length })
    }

    /// Puts a planned ban in the kernel (after its commit), and says so.
    pub(super) fn apply_ban(
        &mut self,
        jail: &str,
        target: IpNet,
        planned: Planned,
        reason: &str,
        now: Now,
    ) -> Result<BanOutcome, BanError> {
        let (ban, old, length) = match planned {
            Planned::Already { until } => return Ok(BanOutcome::Already { until }),
            Planned::Write { ban, old, length } => (ban, old, length),
        };
        let run = self
            .jails
            .get(jail)
            .ok_or_else(|| BanError::NoJail(jail.to_owned()))?;
        let (id, action) = (run.id, run.config.on_ban.clone());
        if let Err(e) = self.kernel.ban(id, target, ban.expiry) {
            // Not in force: the saved ban goes back to what the kernel holds. (Its count in
            // the history stays: a kernel that refuses bans is rare, and said loudly.)
            match old {
                Some(old) => self.persist.stage(jail, target, &old, reason),
                None => self.persist.stage_lift(jail, target),
            }
            return Err(e.into());
        }
        let expires = ban.expires_at.map_or_else(|| "never".to_owned(), wall_text);
        if old.is_some() {
            self.bans.insert(jail, target, ban);
            info!(jail, ip = %datapath::show(&target), expires, reason, "ban extended");
            return Ok(BanOutcome::Extended);
        }
        self.insert(jail, target, ban);
        let bantime = match length {
            BanTime::For(d) => Some(d.as_secs()),
            BanTime::Permanent => None,
        };
        self.setup
            .metrics
            .bans
            .get_or_create(&Metrics::jail(jail))
            .inc();
        info!(
            jail,
            ip = %datapath::show(&target),
            failures = ban.failures,
            bantime = %bantime.map_or_else(|| "permanent".to_owned(), |s| format!("{s}s")),
            expires,
            reason,
            "ban"
        );
        let event = Event {
            event: Kind::Ban,
            jail: jail.to_owned(),
            ip: datapath::show(&target),
            failures: ban.failures,
            bantime,
            expires_at: ban.expires_at,
            reason: reason.to_owned(),
            at: now.wall,
        };
        self.emit(event, action.as_ref());
        Ok(BanOutcome::New)
    }

    /// Lifts the ban of `target` in `jail`; `false` when there was none.
    pub(super) fn lift(
        &mut self,
        jail: &str,
        target: IpNet,
        reason: &str,
        now: Now,
    ) -> anyhow::Result<bool> {
        let lifted = self.lift_each(&[(jail.to_owned(), target)], reason, now)?;
        Ok(lifted == 1)
    }

    /// Lifts these bans (those not in force are passed over); returns how many it lifted.
    /// Bans lifted before their end are committed first, in one transaction, so that a
    /// restart does not bring them back; ended ones are not restored anyway and go with
    /// the next commit.
    pub(super) fn lift_each(
        &mut self,
        bans: &[(String, IpNet)],
        reason: &str,
        now: Now,
    ) -> anyhow::Result<usize> {
        let mut lifted = Vec::with_capacity(bans.len());
        let mut early = false;
        for (jail, target) in bans {
            let Some(ban) = self.bans.remove(jail, *target) else {
                continue;
            };
            if let Some(crowdsec) = self.crowdsec.as_mut().filter(|c| c.jail() == jail) {
                crowdsec.ended(*target);
            }
            early |= ban.expires_at.is_none_or(|end| end > now.wall);
            self.persist.stage_lift(jail, *target);
            lifted.push((jail, *target, ban));
        }
        if early {
            self.commit();
        }
        let mut failed = None;
        for (jail, target, ban) in &lifted {
            // A ban in the table always belongs to a running jail: bans of a jail are
            // lifted before it is removed.
            let run = self
                .jails
                .get_mut(jail.as_str())
                .with_context(|| format!("no jail {jail}"))?;
            run.detector.tracker_mut().forget(target);
            let id = run.id;
            // One refusal does not keep the others in force.
            match self.kernel.unban(id, *target) {
                Ok(_) => self.unbanned(jail, *target, ban, reason, now),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(lifted.len()),
        }
    }

    /// Says that a ban ended: the metric, the log line and the `on_unban` action.
    pub(super) fn unbanned(
        &self,
        jail: &str,
        target: IpNet,
        ban: &ActiveBan,
        reason: &str,
        now: Now,
    ) {
        self.setup
            .metrics
            .unbans
            .get_or_create(&Metrics::jail(jail))
            .inc();
        info!(jail, ip = %datapath::show(&target), failures = ban.failures, reason, "unban");
        let event = Event {
            event: Kind::Unban,
            jail: jail.to_owned(),
            ip: datapath::show(&target),
            failures: ban.failures,
            bantime: ban
                .expires_at
                .map(|end| u64::try_from((end - ban.banned_at) / 1000).unwrap_or(0)),
            expires_at: ban.expires_at,
            reason: reason.to_owned(),
            at: now.wall,
        };
        let action = self
            .jails
            .get(jail)
            .and_then(|run| run.config.on_unban.as_ref());
        self.emit(event, action);
    }

    fn emit(&self, event: Event, action: Option<&crate::config::Action>) {
        if let Some(events) = &self.setup.events {
            if let Some(run) = self.jails.get(event.jail.as_str()) {
                events.fail2ban(&run.config, &event);
            }
            events.emit(event, action);
        }
    }

    /// Queues each jail's fail2ban actions' `actionstart` (the daemon starts) or
    /// `actionstop` (it stops).
    pub fn fail2ban_actions(&self, step: crate::events::actions::Step) {
        if let Some(events) = &self.setup.events {
            for run in self.jails.values() {
                events.fail2ban_jail(&run.config, step);
            }
        }
    }

    /// The actions' queue, to wait for at a stop.
    pub fn events(&self) -> Option<&crate::events::Events> {
        self.setup.events.as_ref()
    }

    /// Once a second: lifts the bans that ended, refreshes the metrics and commits what changed (the positions of logs read since);
    /// once a minute, prunes the state.
    pub fn sweep(&mut self, now: Now) {
        self.lift_ended(now);
        self.refresh_metrics();
        self.persist
            .reopen_if_needed(&self.global.state_dir, &self.bans, now);
        // What changed since (positions, failure windows) goes through the writer.
        self.commit_soon();
        self.persist.tidy(&self.jails, now);
    }

    /// Opens every file and journal the jails read now, where they were left: the globs
    /// and Docker selections are expanded again (the daemon calls it when a watched
    /// folder's entries changed), new files are followed, removed ones let go.
    pub fn open_logs(&mut self) {
        self.logs.open(&self.jails, self.persist.places());
    }

    /// The files followed now.
    pub fn followed_files(&self) -> Vec<PathBuf> {
        self.logs.paths()
    }

    /// Whether a log has more to read than the last poll's budget allowed.
    pub fn reading(&self) -> bool {
        self.logs.reading()
    }

    /// The `logpath` patterns of every jail (and the journal files of journal jails),
    /// for the watcher.
    pub fn log_patterns(&self) -> Vec<PathBuf> {
        follow::patterns(&self.jails)
    }

    /// Commits what changed and waits until it is written (see [`Persist::commit`]);
    /// the bans of the last batch go into the kernel first ([`Agent::land`]).
    /// Counts `bans` bans of `target` in `jail` made elsewhere (fail2ban's), for
    /// `bantime_increment`; committed with the next commit.
    pub(super) fn count_earlier_bans(&mut self, jail: &str, target: IpNet, bans: u32, at: UnixMs) {
        self.persist.count_bans(jail, target, bans, at);
    }

    pub fn commit(&mut self) {
        self.land();
        self.persist.commit(&self.logs, &mut self.jails);
    }

    /// Hands what changed to the state's writer (see [`Persist::commit_soon`]).
    fn commit_soon(&mut self) {
        self.persist.commit_soon(&self.logs, &mut self.jails);
    }

    /// The state could not be opened at start: said once, and tried again each second.
    pub fn open_state_later(&mut self, error: &StoreError) {
        self.persist.open_later(error);
    }

    /// The state database for `status`: none in a dry run.
    pub(super) fn state_status(&self) -> Option<StateStatus> {
        self.persist.status(&self.global.state_dir)
    }

    /// Joins the fleet through `link` (its task already runs), and says which jails
    /// share with it.
    pub fn set_fleet(&mut self, link: Link) {
        let fleet = FleetSide::new(link, Arc::clone(&self.setup.metrics));
        fleet.announce(&self.jails);
        self.fleet = Some(fleet);
    }

    /// The last entry of the fleet's stream applied here, where reading resumes.
    pub fn fleet_resume(&self) -> Option<String> {
        self.persist.fleet_id().map(str::to_owned)
    }

    /// What `status` shows of the fleet.
    pub(super) fn fleet_status(&self) -> Option<FleetStatus> {
        let fleet = self.fleet.as_ref()?;
        Some(fleet.status(self.persist.fleet_id()))
    }

    /// Whether `jail` shares its bans with the fleet.
    pub(super) fn shares(&self, jail: &str) -> bool {
        let run = self.jails.get(jail);
        self.fleet
            .as_ref()
            .zip(run)
            .is_some_and(|(fleet, run)| fleet.outbox_for(run).is_some())
    }

    /// Shares a ban in force here (from the log or by the operator).
    pub(super) fn publish_ban(&self, jail: &str, target: IpNet, force: bool, now: Now) {
        let (Some(fleet), Some(run)) = (&self.fleet, self.jails.get(jail)) else {
            return;
        };
        if let Some(ban) = self.bans.get(jail, target) {
            fleet.publish_ban(run, target, &ban, force, now);
        }
    }

    /// Shares an operator's unban.
    pub(super) fn publish_unban(&self, jail: &str, target: IpNet, now: Now) {
        if let (Some(fleet), Some(run)) = (&self.fleet, self.jails.get(jail)) {
            fleet.publish_unban(run, target, now);
        }
    }

    /// Applies what the fleet's task read: each entry passes the fleet's rails, and what
    /// passes is carried out as a ban from the log or an operator's unban is.
    pub fn apply_fleet(&mut self, incoming: Incoming, now: Now) {
        self.land();
        for entry in incoming.entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(unreadable) => {
                    self.persist.fleet_read_up_to(&unreadable.id);
                    if let Some(fleet) = &mut self.fleet {
                        let detail = format!("entry {}: {}", unreadable.id, unreadable.why);
                        fleet.refuse("unreadable", &detail);
                    }
                    continue;
                }
            };
            if !entry.id.is_empty() {
                self.persist.fleet_read_up_to(&entry.id);
            }
            let Some(fleet) = &mut self.fleet else {
                continue;
            };
            let own = &self.setup.own;
            if let Some(apply) = fleet.judge(&entry, &mut self.jails, &self.bans, own, now) {
                self.carry_out(apply, now);
            }
        }
    }

    /// Carries out what an entry of the fleet asks, on the same rails as a ban from the
    /// log, and counts it applied.
    fn carry_out(&mut self, apply: Apply, now: Now) {
        let made_at = match apply {
            Apply::Unban {
                jail,
                target,
                reason,
            } => match self.lift(&jail, target, &reason, now) {
                Ok(true) => None,
                // Not banned here (this host's own unban, echoed): nothing to apply.
                Ok(false) => return,
                Err(e) => {
                    let ip = datapath::show(&target);
                    warn!(jail, %ip, "cannot lift a ban: {e}");
                    return;
                }
            },
            Apply::Ban {
                jail,
                target,
                length,
                failures,
                reason,
                at,
            } => match self.ban(&jail, target, length, failures, &reason, now) {
                Ok(BanOutcome::New | BanOutcome::Extended) => Some(at),
                Ok(BanOutcome::Already { .. }) => return,
                Err(e) => {
                    let shown = datapath::show(&target);
                    if e.map_full() {
                        if let Some(fleet) = &mut self.fleet {
                            fleet.refuse("map_full", &format!("a ban of {shown}: {e}"));
                        }
                    } else {
                        warn!(jail, ip = %shown, "cannot apply a ban from the fleet: {e}");
                    }
                    return;
                }
            },
        };
        if let Some(fleet) = &mut self.fleet {
            fleet.applied(made_at, now);
        }
    }

    /// Reads CrowdSec's decisions through `link` (its thread already runs) into the jail
    /// `jail`.
    pub fn set_crowdsec(
        &mut self,
        link: crate::crowdsec::Link,
        jail: String,
        max_bantime: Option<std::time::Duration>,
    ) {
        let metrics = Arc::clone(&self.setup.metrics);
        self.crowdsec = Some(CrowdSecSide::new(link, jail, max_bantime, metrics));
    }

    /// What `status` shows of CrowdSec's decision stream.
    pub(super) fn crowdsec_status(&self) -> Option<Box<CrowdSecStatus>> {
        self.crowdsec.as_ref().map(|side| Box::new(side.status()))
    }

    /// After a reload: the whole set of decisions is read again, through the jail as it
    /// is now (a jail disabled and enabled again gets the decisions in force; as for the
    /// log's bans, a changed `ignoreip` spares new bans, it lifts none).
    pub(super) fn crowdsec_reloaded(&self) {
        if let Some(crowdsec) = &self.crowdsec {
            crowdsec.resync();
        }
    }

    /// Applies a read of CrowdSec's decision stream: each decision passes the rails, and
    /// what passes is carried out as a ban from the log or an operator's unban is.
    pub fn apply_crowdsec(&mut self, pull: crate::crowdsec::Pull, now: Now) {
        self.land();
        let Some(crowdsec) = &mut self.crowdsec else {
            return;
        };
        let steps = crowdsec.judge(pull, &mut self.jails, &self.bans, &self.setup.own, now);
        let jail = crowdsec.jail().to_owned();
        for step in steps {
            let done = match step {
                Step::Lift { target, reason } => match self.lift(&jail, target, &reason, now) {
                    Ok(lifted) => lifted,
                    Err(e) => {
                        warn!(jail, ip = %datapath::show(&target), "cannot lift a ban: {e}");
                        false
                    }
                },
                Step::Ban {
                    target,
                    length,
                    reason,
                } => match self.ban(&jail, target, length, 0, &reason, now) {
                    Ok(BanOutcome::New | BanOutcome::Extended) => true,
                    Ok(BanOutcome::Already { .. }) => false,
                    Err(e) => {
                        let shown = datapath::show(&target);
                        let (why, detail) = if e.map_full() {
                            ("map_full", format!("ban of {shown}: {e}"))
                        } else {
                            (
                                "kernel",
                                format!("ban of {shown}: the kernel refused it: {e}"),
                            )
                        };
                        if let Some(crowdsec) = &mut self.crowdsec {
                            crowdsec.not_applied(target, why, &detail);
                        }
                        false
                    }
                },
            };
            if let (true, Some(crowdsec)) = (done, &mut self.crowdsec) {
                crowdsec.applied();
            }
        }
    }

    /// Lifts the bans that ended by `now`, and says so: the run loop calls this at the
    /// next ban's end ([`Agent::next_end`]), so the unban is said when the kernel stops
    /// dropping, not up to a tick later.
    pub fn lift_ended(&mut self, now: Now) {
        self.land();
        let ended = self.bans.ended(now.boot);
        if ended.is_empty() {
            return;
        }
        if let Err(e) = self.lift_each(&ended, "expired", now) {
            // The kernel stopped enforcing them at their expiry anyway.
            warn!("cannot take an ended ban out of the kernel map: {e}");
        }
        // Ends of bans need not wait: a restart does not restore an ended ban.
        self.commit_soon();
    }

    /// When the next timed ban ends, on the boot clock.
    pub fn next_end(&mut self) -> Option<u64> {
        self.bans.next_end()
    }

    /// The hooks the datapath now runs in, after an attach; `status`, `stats` and
    /// `ban_agent_interface_hook` show them.
    pub fn set_hooks(&mut self, hooks: Vec<InterfaceHook>) {
        let m = &self.setup.metrics;
        m.interface_hook.clear();
        for hook in &hooks {
            m.interface_hook
                .get_or_create(&metrics::HookLabel {
                    interface: hook.interface.clone(),
                    hook: hook.hook.clone(),
                })
                .set(1);
        }
        self.hooks = hooks;
    }

    fn refresh_metrics(&mut self) {
        let m = &self.setup.metrics;
        for jail in self.jails.keys() {
            let count = self.bans.count_of(jail);
            m.banned
                .get_or_create(&Metrics::jail(jail))
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        for (name, capacity) in self.kernel.capacities() {
            let used = self.bans.per_map(name);
            let ratio = used as f64 / f64::from(capacity.max(1));
            m.map_fill
                .get_or_create(&metrics::MapLabel {
                    map: name.to_owned(),
                })
                .set(ratio);
        }
        self.persist.refresh_metrics();
        self.logs.refresh_lag();
        let names: BTreeMap<u32, &str> =
            self.jails.iter().map(|(n, r)| (r.id, n.as_str())).collect();
        if let Ok(counters) = self.kernel.counters() {
            for (id, c) in counters {
                let Some(name) = names.get(&id) else { continue };
                let seen = self.kernel_seen.entry(id).or_default();
                let label = Metrics::jail(name);
                metrics::follow_counter(
                    &m.dropped_packets.get_or_create(&label),
                    &mut seen.0,
                    c.dropped_packets,
                );
                metrics::follow_counter(
                    &m.dropped_bytes.get_or_create(&label),
                    &mut seen.1,
                    c.dropped_bytes,
                );
            }
        }
    }
}
