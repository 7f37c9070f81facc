//! The agent's state and what changes it: jails with their detectors, the bans in force
//! (mirrored in the kernel maps), and the saved state; following the logs is in
//! `follow.rs`, taking bans back and saving them in `persist.rs`. No sockets, no
//! timers and no clock of its own: the daemon calls in with the time, so every rule here
//! is unit-tested against an in-memory kernel.

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf, sync::Arc};

use anyhow::Context as _;
use ipnet::IpNet;
use jiff::tz::TimeZone;
use prometheus_client::metrics::counter::Counter;
use tracing::{info, warn};

use super::{
    follow::Log,
    kernel::Kernel,
    log_once::LogOnce,
    table::{ActiveBan, Bans},
};
use crate::{
    clock::UnixMs,
    clock::{Expiry, Now, wall_text},
    config::{Config, Global, Jail, Ports},
    control::protocol::InterfaceHook,
    datapath::{self, JailPorts},
    detect::Detector,
    events::{Event, Events, Kind},
    ignore::IgnoreList,
    metrics::{self, Metrics, Refusal},
    store::{Changes, SavedBan, State, Store},
    tracker::{BanRate, BanTime},
};

/// How often old history and ended failure windows are pruned from the state.
const PRUNE_EVERY_MS: i64 = 60_000;

/// What the agent is given besides its configuration.
pub struct Setup {
    /// The host's addresses, never banned with `ignoreself`.
    pub own: Vec<IpAddr>,
    pub zone: TimeZone,
    pub metrics: Arc<Metrics>,
    /// Where hooks go; `None` runs none (tests).
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

/// A running jail.
pub(super) struct JailRun {
    /// Its index in the kernel maps.
    pub id: u32,
    pub config: Jail,
    pub detector: Detector,
    /// Bans since the agent started (restored ones included).
    pub total_banned: u64,
    pub(super) failures: Counter,
    /// Lines of its JSON filter that are not JSON.
    pub(super) malformed: Counter,
    /// The jail's `max_bans_per_minute`.
    pub(super) rate: BanRate,
}

pub struct Agent {
    /// The configuration file, re-read by `reload`.
    pub(super) path: PathBuf,
    /// The global settings in force (jail settings live in `jails`).
    pub(super) global: Global,
    pub(super) kernel: Box<dyn Kernel>,
    pub(super) store: Option<Store>,
    /// Positions, cursors, jail ids and the fleet's place as last committed (or read at
    /// start); the bans in force are in `bans`, the history in the store.
    pub(super) state: State,
    /// What changed since the last commit (kept until a commit succeeds).
    pub(super) pending: Changes,
    /// The state could not be opened at start (a full disk, a read-only folder): it is
    /// tried again every second, and meanwhile the agent protects from memory.
    pub(super) reopen: bool,
    pub(super) jails: BTreeMap<String, JailRun>,
    pub(super) bans: Bans,
    pub(super) logs: BTreeMap<PathBuf, Log>,
    /// The journal of each jail that reads one.
    pub(super) journals: BTreeMap<String, super::follow::JournalLog>,
    pub(super) setup: Setup,
    /// When the state was last pruned.
    pub(super) last_prune: UnixMs,
    /// Entries committed since the memory was last handed back to the system.
    pub(super) churn: usize,
    /// The last error of saving the state, said once (a full disk fails every tick).
    pub(super) save_error: LogOnce,
    /// Last kernel counters seen per jail id (dropped packets, bytes), for the metrics.
    pub(super) kernel_seen: BTreeMap<u32, (u64, u64)>,
    /// The hook of each attached interface, for `status`, `stats` and the metrics.
    pub(super) hooks: Vec<InterfaceHook>,
    /// The fleet, when this host is part of one.
    pub(super) fleet: Option<super::fleet::FleetSide>,
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
        let mut state = match &store {
            Some(store) => store.load()?,
            // A dry run starts from nothing and never saves.
            None => State::default(),
        };
        let saved = std::mem::take(&mut state.bans);
        let Config {
            path,
            global,
            jails,
        } = config;
        let mut agent = Self {
            path,
            global,
            kernel,
            store,
            state,
            pending: Changes::default(),
            reopen: false,
            jails: BTreeMap::new(),
            bans: Bans::default(),
            logs: BTreeMap::new(),
            journals: BTreeMap::new(),
            setup,
            last_prune: now.wall,
            churn: 0,
            save_error: LogOnce::default(),
            kernel_seen: BTreeMap::new(),
            hooks: Vec::new(),
            fleet: None,
        };
        for jail in jails.into_iter().filter(|jail| jail.enabled) {
            agent.add_jail(jail)?;
        }
        // Jails that are gone lose their ids; `restore` lifts their bans from the kernel by
        // the ids the maps hold.
        agent
            .state
            .jail_ids
            .retain(|name, _| agent.jails.contains_key(name));
        agent.pending.jail_ids = Some(agent.state.jail_ids.clone());
        agent.publish_ports()?;
        agent.restore(saved, now)?;
        agent.restore_failures(now)?;
        agent.open_logs();
        agent.commit();
        // The saved bans, read whole, are freed: with a million, a hundred MB or more.
        super::persist::release_memory();
        Ok(agent)
    }

    pub(super) fn add_jail(&mut self, jail: Jail) -> anyhow::Result<()> {
        let known = self.state.jail_ids.contains_key(&jail.name);
        let id = self.state.jail_id(&jail.name).with_context(|| {
            format!(
                "jail {}: all {} kernel jail slots are taken",
                jail.name,
                ban_common::MAX_JAILS
            )
        })?;
        if !known {
            self.pending.jail_ids = Some(self.state.jail_ids.clone());
        }
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
        };
        self.jails.insert(run.config.name.clone(), run);
        Ok(())
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
        self.logs
            .iter()
            .filter(|(_, log)| log.jails.iter().any(|name| name == jail))
            .map(|(path, _)| path.display().to_string())
            .collect()
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
    pub(super) fn insert(&mut self, jail: &str, target: IpNet, ban: ActiveBan) {
        self.record(jail, target, ban);
        if let Some(run) = self.jails.get_mut(jail) {
            run.total_banned += 1;
        }
    }

    /// Records a ban in force (new, or one that now ends later), with its expiry timer.
    fn record(&mut self, jail: &str, target: IpNet, ban: ActiveBan) {
        self.bans.insert(jail, target, ban);
    }

    /// Stages the ban of `target` in `jail` as saved, to commit.
    pub(super) fn stage(&mut self, jail: &str, target: IpNet, ban: &ActiveBan, origin: &str) {
        let saved = SavedBan {
            jail: jail.to_owned(),
            target,
            expires_at: ban.expires_at,
            banned_at: ban.banned_at,
            failures: ban.failures,
            origin: origin.to_owned(),
        };
        self.pending
            .bans
            .insert((jail.to_owned(), target), Some(saved));
    }

    /// The global settings in force.
    pub fn global(&self) -> &Global {
        &self.global
    }

    /// The configuration file.
    pub fn config_path(&self) -> &std::path::Path {
        &self.path
    }

    /// Jails that run.
    pub fn jail_count(&self) -> usize {
        self.jails.len()
    }

    /// Counts a ban decided from the log and not made.
    pub(super) fn refused(&self, jail: &str, why: Refusal) {
        self.setup
            .metrics
            .bans_refused
            .get_or_create(&Metrics::refusal(jail, why))
            .inc();
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
                self.pending.count_ban(jail, target, now.wall);
                ActiveBan {
                    expiry,
                    expires_at,
                    banned_at: now.wall,
                    failures,
                }
            }
        };
        self.stage(jail, target, &ban, reason);
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
        let (id, hook) = (run.id, run.config.on_ban.clone());
        if let Err(e) = self.kernel.ban(id, target, ban.expiry) {
            // Not in force: the saved ban goes back to what the kernel holds. (Its count in
            // the history stays: a kernel that refuses bans is rare, and said loudly.)
            let key = (jail.to_owned(), target);
            match old {
                Some(old) => self.stage(jail, target, &old, reason),
                None => {
                    self.pending.bans.insert(key, None);
                }
            }
            return Err(e.into());
        }
        let expires = ban.expires_at.map_or_else(|| "never".to_owned(), wall_text);
        if old.is_some() {
            self.record(jail, target, ban);
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
        self.emit(event, hook.as_ref());
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
            let key = (jail.clone(), *target);
            early |= ban.expires_at.is_none_or(|end| end > now.wall);
            self.pending.bans.insert(key, None);
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

    /// Says that a ban ended: the metric, the log line and the `on_unban` hook.
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
        let hook = self
            .jails
            .get(jail)
            .and_then(|run| run.config.on_unban.as_ref());
        self.emit(event, hook);
    }

    fn emit(&self, event: Event, hook: Option<&crate::config::Action>) {
        if let Some(events) = &self.setup.events {
            events.emit(event, hook);
        }
    }

    /// Once a second: lifts the bans that ended, picks up new files of glob patterns,
    /// refreshes the metrics and commits what changed (the positions of logs read since);
    /// once a minute, prunes the state.
    pub fn sweep(&mut self, now: Now) {
        self.lift_ended(now);
        self.open_logs();
        self.refresh_metrics();
        if self.reopen {
            self.reopen_state(now);
        }
        // What changed since (positions, failure windows) goes through the writer.
        self.commit_soon();
        if now.wall - self.last_prune >= PRUNE_EVERY_MS {
            self.prune(now);
        }
        // Once the writer is done with the last batch: it frees it.
        let writing = self.store.as_ref().is_some_and(Store::busy);
        if self.churn >= super::persist::CHURN_TO_TRIM && !writing {
            self.churn = 0;
            super::persist::release_memory();
        }
    }

    /// Lifts the bans that ended by `now`, and says so: the run loop calls this at the
    /// next ban's end ([`Agent::next_end`]), so the unban is said when the kernel stops
    /// dropping, not up to a tick later.
    pub fn lift_ended(&mut self, now: Now) {
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
        if let Some(store) = &self.store {
            m.state_bytes
                .set(i64::try_from(store.bytes()).unwrap_or(i64::MAX));
        }
        for (path, log) in &mut self.logs {
            let lag = log.follower.lag().unwrap_or(0);
            m.lag_bytes
                .get_or_create(&Metrics::file(path))
                .set(i64::try_from(lag).unwrap_or(i64::MAX));
            log.judge_lag(path, lag);
        }
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
