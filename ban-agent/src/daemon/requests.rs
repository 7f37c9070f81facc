//! The answers to control requests: each verb of the CLI, as the agent carries it out.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context as _, bail};
use ipnet::IpNet;

use super::agent::{Agent, BanOutcome};
use crate::clock::{Now, wall_text};
use crate::{
    config::{Config, Jail},
    control::protocol::{BanInfo, JailKey, JailStats, JailStatus, Reply, Request, SetKey, Setting},
    datapath,
    fail2ban::bans::CarriedBan,
    ignore::Spared,
    tracker::BanTime,
};

/// Addresses `status JAIL` lists at most; `currently_banned` counts them all.
const STATUS_LIST: usize = 1000;

/// An operator's ban: how long, and where.
#[derive(Clone, Copy, Debug)]
struct How {
    seconds: Option<u64>,
    permanent: bool,
    force: bool,
    local: bool,
}

/// What the daemon must do after answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    Continue,
    /// The configuration changed: re-attach interfaces, watch the new logs.
    Reloaded,
    Stop {
        detach: bool,
    },
}

impl Agent {
    /// Answers one request. Errors become [`Reply::Error`] with a message for the operator.
    pub fn handle(&mut self, request: Request, now: Now) -> (Reply, After) {
        // A request that changes bans or the configuration works on the bans of the last
        // batch read too, once their commit is written; one that only reads answers with
        // the bans in force and those whose commit is written (a flood read on is not
        // held up by `status` every few milliseconds).
        let reads_only = matches!(
            request,
            Request::Ping
                | Request::Status { .. }
                | Request::Banned { .. }
                | Request::Get { .. }
                | Request::Stats
        );
        if reads_only {
            self.land_written();
        } else {
            self.land();
        }
        let mut after = After::Continue;
        let result = match request {
            Request::Ping => Ok(Reply::Pong),
            Request::Status { jail: None } => Ok(Reply::Overview {
                jails: self.jails().keys().cloned().collect(),
                currently_banned: self.bans().len() as u64,
                interfaces: self.hooks().to_vec(),
                fleet: self.fleet_status(),
                crowdsec: self.crowdsec_status(),
                state: self.state_status(),
            }),
            Request::Status { jail: Some(jail) } => self.status(&jail, now).map(Reply::Jail),
            Request::Ban {
                jail,
                target,
                seconds,
                permanent,
                force,
                local,
            } => {
                let how = How {
                    seconds,
                    permanent,
                    force,
                    local,
                };
                self.operator_ban(&jail, target, how, now)
                    .map(|(_, message)| Reply::Done { message })
            }
            Request::BanIp { jail, targets } => self.ban_ip(&jail, targets, now),
            Request::UnbanIp {
                jail,
                targets,
                report_absent,
            } => self.unban_ip(jail.as_deref(), &targets, report_absent, now),
            Request::Unban {
                target,
                jail,
                local,
            } => self.operator_unban(target, jail.as_deref(), local, now),
            Request::UnbanAll => self.unban_all(now),
            Request::Banned { target, jail } => self.banned(target, jail.as_deref(), now),
            Request::CarryBans { bans } => self.carry_bans(bans, now),
            Request::Get { jail, key } => self.get(&jail, key),
            Request::AddIgnoreIp { jail, target } => self.set_ignoreip(&jail, target, true),
            Request::DelIgnoreIp { jail, target } => self.set_ignoreip(&jail, target, false),
            Request::Set { jail, key, value } => self.set(&jail, key, &value),
            Request::Reload { jail } => {
                let result = self.reload(jail.as_deref(), now);
                if result.is_ok() {
                    after = After::Reloaded;
                }
                result.map(|message| Reply::Done { message })
            }
            Request::Stop { detach } => {
                after = After::Stop { detach };
                Ok(Reply::Done {
                    message: self.stop_message(detach).to_owned(),
                })
            }
            Request::Stats => self.stats(),
        };
        let reply = result.unwrap_or_else(|e| Reply::Error {
            message: crate::error_text(&e),
        });
        (reply, after)
    }

    /// What `stop` leaves behind.
    fn stop_message(&self, detach: bool) -> &'static str {
        match (self.kernel().writes(), detach) {
            (false, _) => "stopping; a dry run attached nothing and banned nothing",
            (true, true) => {
                "stopping; the datapath is detached and every ban lifted (they are restored \
                 at the next start)"
            }
            (true, false) => "stopping; the datapath stays attached and bans stay in force",
        }
    }

    fn status(&self, jail: &str, now: Now) -> anyhow::Result<JailStatus> {
        let run = self.jail(jail)?;
        let tracker = run.detector.tracker();
        // The whole list of a jail under attack would not fit in a reply (nor on a screen).
        let mut banned = self.bans_of(jail);
        banned.truncate(STATUS_LIST);
        Ok(JailStatus {
            name: jail.to_owned(),
            currently_failed: tracker.currently_failing(now.wall) as u64,
            total_failed: tracker.total_failed(),
            files: self.files_of(jail),
            currently_banned: self.bans().count_of(jail),
            total_banned: run.total_banned,
            banned,
            bantime: applied_bantime(&run.config),
            spared: run.detector.stats().spared,
            spared_by: run.detector.stats().spared_text(),
            filter: run.config.filter_origin.clone(),
        })
    }

    fn operator_ban(
        &mut self,
        jail: &str,
        target: IpNet,
        how: How,
        now: Now,
    ) -> anyhow::Result<(BanOutcome, String)> {
        let How {
            seconds,
            permanent,
            force,
            local,
        } = how;
        let run = self.jail(jail)?;
        let target = target.trunc();
        let ignore = self.ignore_list(run.config.ignoreip.clone());
        if let Some(why) = ignore.spares(&target)
            && !(force && why == Spared::IgnoreIp)
        {
            let hint = match why {
                Spared::IgnoreIp => "; add --force to ban it all the same",
                Spared::Reserved | Spared::OwnAddress => "",
            };
            bail!("{} is not banned: {why}{hint}", datapath::show(&target));
        }
        let length = match (permanent, seconds) {
            (true, _) => BanTime::Permanent,
            (false, Some(secs)) => BanTime::For(Duration::from_secs(secs.max(1))),
            (false, None) => run.config.bantime,
        };
        let shown = datapath::show(&target);
        let outcome = self.ban(jail, target, length, 0, "operator", now)?;
        let fleet = !local && self.shares(jail);
        if fleet {
            // A ban made or lengthened here replaces the fleet's; one already in force
            // here is sent only where it is missing.
            let replace = !matches!(outcome, BanOutcome::Already { .. });
            self.publish_ban(jail, target, replace, now);
        }
        let message = match outcome {
            BanOutcome::Already { until } => format!(
                "{shown} is already banned in {jail} {}: a ban is never shortened",
                until.map_or_else(
                    || "permanently".to_owned(),
                    |t| format!("until {}", wall_text(t))
                )
            ),
            outcome => {
                let how = match length {
                    BanTime::Permanent => "permanently".to_owned(),
                    BanTime::For(d) => format!("for {}", crate::duration::show(d)),
                };
                let done = if outcome == BanOutcome::Extended {
                    "ban extended"
                } else {
                    "banned"
                };
                format!("{shown} {done} in {jail} {how}")
            }
        };
        let message = if fleet {
            format!("{message}; sent to the fleet")
        } else {
            message
        };
        Ok((outcome, message))
    }

    /// fail2ban-client's `set JAIL banip IP...`: each for the jail's bantime, in the whole
    /// fleet; counts the new bans (one in force already is lengthened to end a bantime from
    /// now, never shortened, and not counted, as fail2ban does).
    fn ban_ip(&mut self, jail: &str, targets: Vec<IpNet>, now: Now) -> anyhow::Result<Reply> {
        let run = self.jail(jail)?;
        let ignore = self.ignore_list(run.config.ignoreip.clone());
        let refused: Vec<String> = targets
            .iter()
            .filter_map(|target| {
                let why = ignore.spares(&target.trunc())?;
                Some(format!("{} ({why})", datapath::show(target)))
            })
            .collect();
        if !refused.is_empty() {
            bail!(
                "nothing banned in {jail}: {} may not be banned; `ban-agent ban {jail} ADDR \
                 --force` bans inside ignoreip",
                refused.join(", ")
            );
        }
        let how = How {
            seconds: None,
            permanent: false,
            force: false,
            local: false,
        };
        let mut count = 0;
        let mut messages = Vec::with_capacity(targets.len());
        for target in targets {
            let (outcome, message) = self.operator_ban(jail, target, how, now)?;
            count += u64::from(outcome == BanOutcome::New);
            messages.push(message);
        }
        Ok(Reply::Count {
            count,
            message: messages.join("\n"),
        })
    }

    /// fail2ban-client's `set JAIL unbanip IP...` (`jail`) and `unban IP...` (every
    /// jail): lifts each target's bans, or, for a network banned in no jail by itself, the
    /// bans inside it. Counts them; a target not banned is passed over, or with
    /// `report_absent` named in an error once the others are lifted.
    fn unban_ip(
        &mut self,
        jail: Option<&str>,
        targets: &[IpNet],
        report_absent: bool,
        now: Now,
    ) -> anyhow::Result<Reply> {
        if let Some(jail) = jail {
            self.jail(jail)?;
        }
        let mut count = 0;
        let mut messages = Vec::new();
        let mut absent = Vec::new();
        for target in targets {
            let target = target.trunc();
            let mut found = self.bans().matching(jail, |t| t == target);
            if found.is_empty() {
                found = self.bans().matching(jail, |t| target.contains(&t));
            }
            if found.is_empty() {
                absent.push(datapath::show(&target));
                continue;
            }
            for (name, t) in found {
                if self.lift(&name, t, "operator", now)? {
                    count += 1;
                    let fleet = self.shares(&name);
                    if fleet {
                        self.publish_unban(&name, t, now);
                    }
                    messages.push(format!(
                        "{} unbanned in {name}{}",
                        datapath::show(&t),
                        if fleet { "; sent to the fleet" } else { "" }
                    ));
                }
            }
        }
        if report_absent && !absent.is_empty() {
            bail!(
                "not banned{}: {}{}; `ban-agent banned` lists the bans",
                jail.map(|j| format!(" in {j}")).unwrap_or_default(),
                absent.join(", "),
                if count > 0 {
                    format!(" (the other {count} lifted)")
                } else {
                    String::new()
                }
            );
        }
        if !absent.is_empty() {
            messages.push(format!("not banned: {}", absent.join(", ")));
        }
        Ok(Reply::Count {
            count,
            message: messages.join("\n"),
        })
    }

    fn operator_unban(
        &mut self,
        target: IpNet,
        jail: Option<&str>,
        local: bool,
        now: Now,
    ) -> anyhow::Result<Reply> {
        if let Some(jail) = jail {
            self.jail(jail)?;
        }
        let target = target.trunc();
        let jails: Vec<String> = self
            .bans()
            .matching(jail, |t| t == target)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        if jails.is_empty() {
            let covering: Vec<String> = self
                .bans()
                .matching(jail, |t| t.contains(&target))
                .into_iter()
                .map(|(name, t)| format!("{t} in {name}"))
                .collect();
            if covering.is_empty() {
                bail!(
                    "{} is not banned{}; `ban-agent banned` lists the bans",
                    datapath::show(&target),
                    jail.map(|j| format!(" in {j}")).unwrap_or_default()
                );
            }
            bail!(
                "{} is not banned by itself but inside {}: unban that network",
                datapath::show(&target),
                covering.join(", ")
            );
        }
        let mut fleet = false;
        for name in &jails {
            self.lift(name, target, "operator", now)?;
            if !local && self.shares(name) {
                self.publish_unban(name, target, now);
                fleet = true;
            }
        }
        Ok(Reply::Done {
            message: format!(
                "{} unbanned in {}{}",
                datapath::show(&target),
                jails.join(", "),
                if fleet { "; sent to the fleet" } else { "" }
            ),
        })
    }

    fn unban_all(&mut self, now: Now) -> anyhow::Result<Reply> {
        let all = self.bans().matching(None, |_| true);
        let lifted = self.lift_each(&all, "operator", now)?;
        Ok(Reply::Count {
            count: lifted as u64,
            message: format!("{} lifted", crate::plural(lifted as u64, "ban", "bans")),
        })
    }

    /// Bans carried over from fail2ban's database: each in force is banned here until it
    /// ends there (through the same rails as any ban: a jail that does not run here, or an
    /// address the jail may not ban, is passed over and said), and each address's count of
    /// bans joins the history `bantime_increment` reads. Counts the bans made.
    fn carry_bans(&mut self, bans: Vec<CarriedBan>, now: Now) -> anyhow::Result<Reply> {
        let mut count = 0;
        let mut counted = false;
        let mut passed_over = Vec::new();
        for ban in bans {
            let shown = datapath::show(&ban.target);
            let Ok(run) = self.jail(&ban.jail) else {
                passed_over.push(format!("{shown} in {}: no such jail runs here", ban.jail));
                continue;
            };
            if let Some(why) = self
                .ignore_list(run.config.ignoreip.clone())
                .spares(&ban.target)
            {
                passed_over.push(format!("{shown} in {}: {why}", ban.jail));
                continue;
            }
            // The ban in force is counted when it is made here.
            let in_force = ban.in_force(now.wall);
            let earlier = ban.bans.saturating_sub(u32::from(in_force));
            if earlier > 0 {
                self.count_earlier_bans(&ban.jail, ban.target, earlier, ban.banned_at);
                counted = true;
            }
            let length = match ban.expires_at {
                _ if !in_force => continue,
                None => BanTime::Permanent,
                Some(end) => BanTime::For(Duration::from_millis(
                    u64::try_from(end - now.wall).unwrap_or(0).max(1000),
                )),
            };
            if self.ban(&ban.jail, ban.target, length, 0, "fail2ban", now)? == BanOutcome::New {
                count += 1;
            }
        }
        if counted {
            self.commit();
        }
        let mut message = format!(
            "{} carried over from fail2ban",
            crate::plural(count, "ban", "bans")
        );
        if !passed_over.is_empty() {
            message.push_str(&format!("; passed over: {}", passed_over.join("; ")));
        }
        Ok(Reply::Count { count, message })
    }

    /// The bans that hold `target` or lie inside it (all when `None`), in `jail` or in
    /// every jail, by jail and target.
    fn banned(&self, target: Option<IpNet>, jail: Option<&str>, now: Now) -> anyhow::Result<Reply> {
        if let Some(jail) = jail {
            self.jail(jail)?;
        }
        let mut bans: Vec<BanInfo> = self
            .bans()
            .iter()
            .filter(|(name, _, _)| jail.is_none_or(|j| j == *name))
            .filter(|(_, t, _)| target.is_none_or(|asked| t.contains(&asked) || asked.contains(t)))
            .map(|(jail, t, ban)| BanInfo {
                jail: jail.to_owned(),
                target: t,
                seconds_left: ban.expiry.remaining(now.boot).map(|d| d.as_secs()),
                expires_at: ban.expires_at,
                failures: ban.failures,
                banned_at: Some(ban.banned_at),
            })
            .collect();
        bans.sort_unstable_by(|a, b| (&a.jail, a.target).cmp(&(&b.jail, b.target)));
        Ok(Reply::Bans { bans })
    }

    /// A jail's setting as applied, as ban-agent shows it and as fail2ban's server gives
    /// it (durations in seconds, -1 for permanent).
    fn get(&self, jail: &str, key: JailKey) -> anyhow::Result<Reply> {
        let run = self.jail(jail)?;
        let config = &run.config;
        let seconds = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let (shown, value) = match key {
            JailKey::Maxretry => (
                config.rules.maxretry.to_string(),
                Setting::Number(i64::from(config.rules.maxretry)),
            ),
            JailKey::Findtime => (
                crate::duration::show(config.rules.findtime),
                Setting::Number(seconds(config.rules.findtime)),
            ),
            JailKey::Bantime => (
                applied_bantime(config),
                Setting::Number(match config.bantime {
                    BanTime::For(d) => seconds(d),
                    BanTime::Permanent => -1,
                }),
            ),
            JailKey::Ignoreip => {
                let list: Vec<String> = config.ignoreip.iter().map(datapath::show).collect();
                (list.join("\n"), Setting::List(list))
            }
            JailKey::Logpath => (
                lines(config.logpath.iter().map(|p| p.display().to_string())),
                Setting::List(self.files_of(jail)),
            ),
            JailKey::Maxlines => {
                let maxlines = run.detector.filter().maxlines();
                (
                    maxlines.to_string(),
                    Setting::Number(i64::try_from(maxlines).unwrap_or(i64::MAX)),
                )
            }
            JailKey::Actions => {
                let list = actions(config);
                (list.join("\n"), Setting::List(list))
            }
        };
        Ok(Reply::Setting { shown, value })
    }

    /// `set JAIL bantime|findtime|maxretry VALUE`: in force until the next reload, as
    /// `fail2ban-client set` does. Failures counted so far stay.
    fn set(&mut self, jail: &str, key: SetKey, value: &str) -> anyhow::Result<Reply> {
        let run = self.jail_mut(jail)?;
        let text = value.trim();
        let duration = || {
            crate::duration::parse(text)
                .map_err(|e| anyhow::anyhow!("{e}; expected {}", crate::duration::UNITS_HELP))
        };
        let (name, shown) = match key {
            SetKey::Bantime => {
                run.config.bantime = match text {
                    "permanent" | "-1" => BanTime::Permanent,
                    _ => match duration()? {
                        d if d.is_zero() => bail!("bantime cannot be zero"),
                        d => BanTime::For(d),
                    },
                };
                ("bantime", applied_bantime(&run.config))
            }
            SetKey::Findtime => {
                let findtime = duration()?;
                if findtime.is_zero() {
                    bail!("findtime cannot be zero");
                }
                run.config.rules.findtime = findtime;
                ("findtime", crate::duration::show(findtime))
            }
            SetKey::Maxretry => {
                let maxretry: u32 = text
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("{text:?} is not a count: expected 1 or more"))?;
                run.config.rules.maxretry = maxretry;
                ("maxretry", maxretry.to_string())
            }
        };
        let rules = run.config.rules.clone();
        run.detector.tracker_mut().set_rules(rules);
        Ok(Reply::Done {
            message: format!(
                "{jail} {name} is {shown} until the next reload (write it in the configuration \
                 to keep it); bans in force keep their length"
            ),
        })
    }

    fn set_ignoreip(&mut self, jail: &str, target: IpNet, add: bool) -> anyhow::Result<Reply> {
        let mut ignoreip = self.jail(jail)?.config.ignoreip.clone();
        let target = target.trunc();
        let present = ignoreip.contains(&target);
        let message = match (add, present) {
            (true, true) => format!(
                "{} is already in {jail}'s ignoreip",
                datapath::show(&target)
            ),
            (false, false) => bail!(
                "{} is not in {jail}'s ignoreip: `ban-agent get {jail} ignoreip` lists it",
                datapath::show(&target)
            ),
            (true, false) => {
                ignoreip.push(target);
                format!(
                    "{} added to {jail}'s ignoreip until the next reload (add it to the \
                     configuration to keep it); a ban in force is not lifted",
                    datapath::show(&target)
                )
            }
            (false, true) => {
                ignoreip.retain(|net| *net != target);
                format!(
                    "{} removed from {jail}'s ignoreip until the next reload",
                    datapath::show(&target)
                )
            }
        };
        let ignore = self.ignore_list(ignoreip.clone());
        let run = self.jail_mut(jail)?;
        run.config.ignoreip = ignoreip;
        run.detector.set_ignore(ignore);
        Ok(Reply::Done { message })
    }

    fn stats(&self) -> anyhow::Result<Reply> {
        let names: BTreeMap<u32, String> = self
            .jails()
            .iter()
            .map(|(name, run)| (run.id, name.clone()))
            .collect();
        let mut jails: BTreeMap<String, JailStats> = names
            .values()
            .map(|name| (name.clone(), JailStats::default()))
            .collect();
        for (id, c) in self.kernel().counters()? {
            if let Some(name) = names.get(&id) {
                jails.insert(name.clone(), JailStats::from(c));
            }
        }
        Ok(Reply::Stats {
            jails,
            interfaces: self.hooks().to_vec(),
        })
    }

    /// Re-reads the configuration file. Bans in force stay (with their expiry); a jail
    /// that is gone or disabled has its bans lifted. With `only`, the other jails keep
    /// running as they are and global settings are not applied.
    pub fn reload(&mut self, only: Option<&str>, now: Now) -> anyhow::Result<String> {
        self.land();
        let fresh = Config::load(self.config_path())?;
        // As at the start: a jail whose log is not there is refused (the configuration
        // in force stays), unless it says it may appear later.
        for missing in fresh.check_logs(!self.kernel().writes())? {
            tracing::warn!("{missing}");
        }
        let wanted: Vec<Jail> = match only {
            Some(name) => {
                if !self.jails().contains_key(name) && fresh.jail(name).is_none() {
                    bail!(
                        "no jail {name:?} in {} nor running",
                        self.config_path().display()
                    );
                }
                fresh
                    .enabled()
                    .filter(|j| j.name == name)
                    .cloned()
                    .collect()
            }
            None => fresh.enabled().cloned().collect(),
        };
        let gone: Vec<String> = self
            .jails()
            .keys()
            .filter(|name| only.is_none_or(|o| o == *name))
            .filter(|name| !wanted.iter().any(|j| &j.name == *name))
            .cloned()
            .collect();
        for name in &gone {
            let bans: Vec<(String, IpNet)> = self
                .bans_of(name)
                .into_iter()
                .map(|target| (name.clone(), target))
                .collect();
            self.lift_each(&bans, "jail removed", now)?;
            self.remove_jail(name);
        }
        let mut changed = Vec::new();
        for jail in wanted {
            let name = jail.name.clone();
            // Unchanged: it goes on as it is, its tracker and counts untouched.
            if self
                .jails()
                .get(&name)
                .is_some_and(|run| run.config.same_as(&jail))
            {
                continue;
            }
            self.replace_jail(jail)?;
            changed.push(name);
        }
        if only.is_none() {
            self.warn_if_at_next_start(&fresh.global);
            self.set_global(fresh.global);
        }
        self.publish_ports()?;
        self.open_logs();
        // The decisions are read whole again, through the jail as it is now.
        self.crowdsec_reloaded();
        tracing::info!(reloaded = ?changed, removed = ?gone, "configuration reloaded");
        Ok(format!(
            "reloaded {}{}",
            if changed.is_empty() {
                "no jail (none changed)".to_owned()
            } else {
                changed.join(", ")
            },
            if gone.is_empty() {
                String::new()
            } else {
                format!("; removed {} (their bans lifted)", gone.join(", "))
            }
        ))
    }
}

impl Agent {
    /// Says which changed settings a reload does not apply: the fleet's and CrowdSec's
    /// connections are made at the start.
    fn warn_if_at_next_start(&self, fresh: &crate::config::Global) {
        let now = self.global();
        for (table, changed) in [
            ("fleet", fresh.fleet != now.fleet),
            ("crowdsec", fresh.crowdsec != now.crowdsec),
        ] {
            if changed {
                tracing::warn!(
                    "[{table}] changed in {}: its settings take effect at the next start \
                     (`ban-agent stop` and start again; bans stay in force)",
                    self.config_path().display()
                );
            }
        }
    }
}

fn lines(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join("\n")
}

/// What a jail does on a ban, named as fail2ban names its actions: `kernel` (the drop in
/// the datapath), fail2ban's command actions by name, then the `on_ban`/`on_unban` hooks
/// by kind.
fn actions(config: &Jail) -> Vec<String> {
    let mut names = vec!["kernel".to_owned()];
    names.extend(
        config
            .actions
            .iter()
            .filter(|action| {
                matches!(
                    action.kind,
                    crate::fail2ban::action::ActionKind::Commands(_)
                )
            })
            .map(|action| action.name.clone()),
    );
    for hook in [&config.on_ban, &config.on_unban].into_iter().flatten() {
        let kinds = [
            ("command", hook.command.is_some()),
            ("webhook", hook.webhook.is_some()),
            ("email", hook.email.is_some()),
        ];
        for (kind, present) in kinds {
            if present && !names.iter().any(|name| name == kind) {
                names.push(kind.to_owned());
            }
        }
    }
    names
}

/// The length of a first ban as the jail applies it, and, when `bantime_increment` makes
/// it differ from `bantime`, why.
pub(super) fn applied_bantime(config: &crate::config::Jail) -> String {
    let applied = config.bantime.after(0, config.increment.as_ref());
    let show = |length: BanTime| match length {
        BanTime::For(d) => crate::duration::show(d),
        BanTime::Permanent => "permanent".to_owned(),
    };
    match config.increment {
        Some(inc) if applied != config.bantime => format!(
            "{} (bantime {} times bantime_increment.factor {}, at most \
             bantime_increment.maxtime {})",
            show(applied),
            show(config.bantime),
            inc.factor,
            crate::duration::show(inc.maxtime)
        ),
        _ => show(applied),
    }
}
