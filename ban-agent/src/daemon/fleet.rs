//! The agent's side of the fleet: what it shares (failures counted here, bans decided
//! here, an operator's bans and unbans) goes into the outbox without waiting; what the
//! fleet's stream says is applied through the same rails as a ban from the log, and
//! whatever fails them is refused, counted and said once.

use std::{collections::BTreeSet, time::Duration};

use ipnet::IpNet;
use tracing::{debug, info, warn};

use super::agent::{Agent, BanOutcome, JailRun};
use crate::clock::Now;
use crate::{
    control::protocol::FleetStatus,
    datapath,
    fleet::{Entry, Link, Op, Outbox, Outgoing, task::Incoming},
    ignore::IgnoreList,
    tracker::{Admit, BanTime},
};

/// The fleet as the agent holds it.
pub(super) struct FleetSide {
    pub(super) link: Link,
    applied: u64,
    refused: u64,
    /// Reasons of refusal already said (each is said once; the metrics count them all).
    said: BTreeSet<&'static str>,
}

impl Agent {
    /// Joins the fleet through `link` (its task already runs).
    pub fn set_fleet(&mut self, link: Link) {
        self.fleet = Some(FleetSide {
            link,
            applied: 0,
            refused: 0,
            said: BTreeSet::new(),
        });
    }

    /// The last entry of the fleet's stream applied here, where reading resumes.
    pub fn fleet_resume(&self) -> Option<String> {
        self.state.fleet_id.clone()
    }

    /// The outbox, when this jail shares with the fleet.
    pub(super) fn outbox_for(&self, jail: &str) -> Option<&Outbox> {
        let fleet = self.fleet.as_ref()?;
        let run = self.jails.get(jail)?;
        run.config.fleet.then_some(&*fleet.link.outbox)
    }

    /// Shares a ban just made here (from the log or by the operator).
    pub(super) fn publish_ban(&self, jail: &str, target: IpNet, force: bool, now: Now) {
        let Some(outbox) = self.outbox_for(jail) else {
            return;
        };
        let Some(ban) = self.bans.get(jail, target) else {
            return;
        };
        outbox.push(Outgoing::Ban {
            jail: jail.to_owned(),
            target,
            expires: ban.expires_at,
            failures: ban.failures,
            at: now.wall,
            force,
        });
    }

    /// Shares an operator's unban.
    pub(super) fn publish_unban(&self, jail: &str, target: IpNet, now: Now) {
        if let Some(outbox) = self.outbox_for(jail) {
            outbox.push(Outgoing::Unban {
                jail: jail.to_owned(),
                target,
                at: now.wall,
            });
        }
    }

    /// Where the fleet's stream was read up to, committed with what it applied.
    fn fleet_read_up_to(&mut self, id: &str) {
        self.state.fleet_id = Some(id.to_owned());
        self.pending.fleet_id = Some(id.to_owned());
    }

    /// Applies what the fleet's task read.
    pub fn apply_fleet(&mut self, incoming: Incoming, now: Now) {
        for entry in incoming.entries {
            match entry {
                Ok(entry) => {
                    if !entry.id.is_empty() {
                        self.fleet_read_up_to(&entry.id);
                    }
                    self.apply_entry(&entry, now);
                }
                Err(unreadable) => {
                    self.fleet_read_up_to(&unreadable.id);
                    self.fleet_refuse(
                        "unreadable",
                        &format!("entry {}: {}", unreadable.id, unreadable.why),
                    );
                }
            }
        }
    }

    fn apply_entry(&mut self, entry: &Entry, now: Now) {
        let Some(fleet) = &self.fleet else { return };
        let shown = datapath::show(&entry.target);
        let Some(run) = self.jails.get(&entry.jail).filter(|run| run.config.fleet) else {
            debug!(jail = entry.jail, ip = %shown, host = entry.host, "a fleet entry for a jail not shared here");
            return;
        };
        if let Err(why) = fleet.link.signer.check(entry) {
            let detail = format!(
                "{} of {shown} in {} from {:?} ({}) is {why}: is `key_file` the same on every \
                 host, or is someone writing to the engine?",
                op_name(&entry.op),
                entry.jail,
                entry.host,
                entry.id
            );
            self.fleet_refuse("signature", &detail);
            return;
        }
        let target = entry.target.trunc();
        let reason = format!("fleet ({})", entry.host);
        let expires = match entry.op {
            Op::Unban => {
                match self.lift(&entry.jail, target, &reason, now) {
                    Ok(true) => {
                        self.setup.metrics.fleet_applied.inc();
                        if let Some(fleet) = &mut self.fleet {
                            fleet.applied += 1;
                        }
                    }
                    // Not banned here (this host's own unban, echoed): nothing to apply.
                    Ok(false) => {}
                    Err(e) => warn!(jail = entry.jail, ip = %shown, "cannot lift a ban: {e}"),
                }
                return;
            }
            Op::Ban { expires } => expires,
        };
        // The same rails as a ban from the log: never loopback, unspecified, this host's
        // addresses (with or without ignoreself) nor ignoreip.
        let ignore = IgnoreList::new(run.config.ignoreip.clone(), self.setup.own.clone());
        if let Some(why) = ignore.spares(&target) {
            let detail = format!(
                "a ban of {shown} in {} from {:?} ({}): {why}",
                entry.jail, entry.host, entry.id
            );
            self.fleet_refuse("spared", &detail);
            return;
        }
        // A ban in force here that ends as late (within a second: the same ban, its end
        // carried in milliseconds) is the one this entry says, often this host's own.
        if let Some(ban) = self.bans.get(&entry.jail, target) {
            let covered = match (ban.expires_at, expires) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(here), Some(there)) => there <= here.saturating_add(1000),
            };
            if covered {
                return;
            }
        }
        let length = match expires {
            Some(end) if end <= now.wall => return,
            Some(end) => BanTime::For(Duration::from_millis(
                u64::try_from(end - now.wall).unwrap_or(0),
            )),
            None => BanTime::Permanent,
        };
        let length = capped(length, longest(run, fleet.link.max_bantime));
        let Some(run) = self.jails.get_mut(&entry.jail) else {
            return;
        };
        if let Admit::HeldBack { .. } = run.rate.admit(now.wall) {
            let detail = format!(
                "a ban of {shown} in {} from {:?}: the jail reached max_bans_per_minute",
                entry.jail, entry.host
            );
            self.fleet_refuse("rate_cap", &detail);
            return;
        }
        match self.ban(&entry.jail, target, length, entry.failures, &reason, now) {
            Ok(BanOutcome::New | BanOutcome::Extended) => {
                let delay = (now.wall - entry.at).max(0);
                self.setup.metrics.fleet_propagation.observe(
                    Duration::from_millis(u64::try_from(delay).unwrap_or(0)).as_secs_f64(),
                );
                self.setup.metrics.fleet_applied.inc();
                if let Some(fleet) = &mut self.fleet {
                    fleet.applied += 1;
                }
            }
            Ok(BanOutcome::Already { .. }) => {}
            Err(e) => {
                if e.map_full() {
                    self.fleet_refuse("map_full", &format!("a ban of {shown}: {e}"));
                } else {
                    warn!(jail = entry.jail, ip = %shown, "cannot apply a ban from the fleet: {e}");
                }
            }
        }
    }

    /// Counts a refused entry, and says the first of each reason.
    fn fleet_refuse(&mut self, reason: &'static str, detail: &str) {
        self.setup
            .metrics
            .fleet_refused
            .get_or_create(&crate::metrics::ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
        let Some(fleet) = &mut self.fleet else { return };
        fleet.refused += 1;
        if fleet.said.insert(reason) {
            warn!(
                reason,
                "refused an entry of the fleet's stream: {detail} (further refusals for this \
                 reason are counted in ban_agent_fleet_refused_total, not logged)"
            );
        }
    }

    /// What `status` shows of the fleet.
    pub(super) fn fleet_status(&self) -> Option<FleetStatus> {
        let fleet = self.fleet.as_ref()?;
        let status = fleet.link.status();
        let applied_at = self
            .state
            .fleet_id
            .as_deref()
            .and_then(crate::fleet::id_time);
        let newest_at = status.newest.as_deref().and_then(crate::fleet::id_time);
        Some(FleetStatus {
            engine: fleet.link.engine.clone(),
            name: fleet.link.name.clone(),
            connected: status.connected,
            peers: status.peers,
            outbox: fleet.link.outbox.len() as u64,
            dropped: fleet.link.outbox.dropped(),
            lag_ms: match (newest_at, applied_at) {
                (Some(newest), Some(applied)) => Some((newest - applied).max(0)),
                (Some(_), None) | (None, _) => None,
            },
            last_error: status.last_error,
            published: status.published,
            applied: fleet.applied,
            refused: fleet.refused,
            signed: fleet.link.signer.signs(),
        })
    }
}

/// Shares one failure counted here, unless the address is banned here already (a
/// request that was under way when the ban came).
pub(super) fn share_failure(
    outbox: Option<&Outbox>,
    bans: &super::table::Bans,
    run: &JailRun,
    target: IpNet,
    now: Now,
) {
    let Some(outbox) = outbox.filter(|_| run.config.fleet) else {
        return;
    };
    if bans.contains(&run.config.name, target) {
        return;
    }
    outbox.push(Outgoing::Failures {
        jail: run.config.name.clone(),
        target,
        failures: 1,
        maxretry: run.config.rules.maxretry,
        findtime: run.config.rules.findtime,
        bantime: match run.config.bantime {
            BanTime::For(d) => Some(d),
            BanTime::Permanent => None,
        },
        at: now.wall,
    });
}

/// The longest ban another host may impose in this jail: `max_bantime` of `[fleet]`, else
/// the longest this jail gives itself (its bantime, or bantime_increment's maxtime);
/// `None`: no limit (a permanent jail).
fn longest(run: &JailRun, max_bantime: Option<Duration>) -> Option<Duration> {
    if max_bantime.is_some() {
        return max_bantime;
    }
    match run.config.bantime {
        BanTime::Permanent => None,
        BanTime::For(d) => Some(run.config.increment.map_or(d, |inc| d.max(inc.maxtime))),
    }
}

fn capped(length: BanTime, longest: Option<Duration>) -> BanTime {
    match (length, longest) {
        (_, None) => length,
        (BanTime::Permanent, Some(max)) => BanTime::For(max),
        (BanTime::For(d), Some(max)) => BanTime::For(d.min(max)),
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Ban { .. } => "a ban",
        Op::Unban => "an unban",
    }
}

/// LogOnce at start: which jails share with the fleet.
pub(super) fn announce(agent: &Agent) {
    let Some(fleet) = &agent.fleet else { return };
    let shared: Vec<&str> = agent
        .jails
        .values()
        .filter(|run| run.config.fleet)
        .map(|run| run.config.name.as_str())
        .collect();
    info!(
        engine = %fleet.link.engine,
        host = %fleet.link.name,
        signed = fleet.link.signer.signs(),
        jails = ?shared,
        "sharing failures and bans with the fleet"
    );
}
