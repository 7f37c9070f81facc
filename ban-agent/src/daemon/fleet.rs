//! The agent's side of the fleet: what it shares (failures counted here, bans decided
//! here, an operator's bans and unbans) goes into the outbox without waiting; what the
//! fleet's stream says passes the same rails as a ban from the log, and whatever fails
//! them is refused, counted and said once. The agent carries out what passes.

use std::{net::IpAddr, sync::Arc, time::Duration};

use ipnet::IpNet;
use tracing::{debug, info, warn};

use super::{
    jails::{JailRun, Jails},
    log_once::Refusals,
    table::{ActiveBan, Bans},
};
use crate::{
    clock::{Now, UnixMs},
    control::protocol::FleetStatus,
    datapath,
    fleet::{Entry, Link, Op, Outbox, Outgoing},
    ignore::IgnoreList,
    metrics::Metrics,
    tracker::{Admit, BanTime},
};

/// The fleet as the agent holds it.
pub(super) struct FleetSide {
    link: Link,
    metrics: Arc<Metrics>,
    applied: u64,
    refused: Refusals,
}

/// What an entry of the fleet's stream asks of this host, once it passed the rails: the
/// agent carries it out as it does a ban from the log or an operator's unban.
#[derive(Debug)]
pub(super) enum Apply {
    Ban {
        jail: String,
        target: IpNet,
        length: BanTime,
        failures: u32,
        reason: String,
        /// When the deciding host made it.
        at: UnixMs,
    },
    Unban {
        jail: String,
        target: IpNet,
        reason: String,
    },
}

impl FleetSide {
    /// Joins the fleet through `link` (its task already runs).
    pub(super) fn new(link: Link, metrics: Arc<Metrics>) -> Self {
        Self {
            link,
            metrics,
            applied: 0,
            refused: Refusals::default(),
        }
    }

    /// The outbox, when `run` shares with the fleet.
    pub(super) fn outbox_for(&self, run: &JailRun) -> Option<&Outbox> {
        run.config.fleet.then_some(&*self.link.outbox)
    }

    /// What the failures of a poll are shared through.
    pub(super) fn sharing<'a>(fleet: Option<&'a Self>, bans: &'a Bans) -> Sharing<'a> {
        Sharing {
            outbox: fleet.map(|fleet| &*fleet.link.outbox),
            bans,
        }
    }

    /// Shares a ban just made here (from the log or by the operator).
    pub(super) fn publish_ban(
        &self,
        run: &JailRun,
        target: IpNet,
        ban: &ActiveBan,
        force: bool,
        now: Now,
    ) {
        let Some(outbox) = self.outbox_for(run) else {
            return;
        };
        outbox.push(Outgoing::Ban {
            jail: run.config.name.clone(),
            target,
            expires: ban.expires_at,
            failures: ban.failures,
            at: now.wall,
            force,
        });
    }

    /// Shares an operator's unban.
    pub(super) fn publish_unban(&self, run: &JailRun, target: IpNet, now: Now) {
        if let Some(outbox) = self.outbox_for(run) {
            outbox.push(Outgoing::Unban {
                jail: run.config.name.clone(),
                target,
                at: now.wall,
            });
        }
    }

    /// Passes an entry through the rails a ban from the log passes (a jail shared here,
    /// its signature, the ignore list, a ban not already as long, the jail's cap on bans
    /// per minute): what to carry out, or `None` (refused, counted and said once, or
    /// nothing to do).
    pub(super) fn judge(
        &mut self,
        entry: &Entry,
        jails: &mut Jails,
        bans: &Bans,
        own: &[IpAddr],
        now: Now,
    ) -> Option<Apply> {
        let shown = datapath::show(&entry.target);
        let Some(run) = jails.get_mut(&entry.jail).filter(|run| run.config.fleet) else {
            debug!(jail = entry.jail, ip = %shown, host = entry.host, "a fleet entry for a jail not shared here");
            return None;
        };
        if let Err(why) = self.link.signer.check(entry) {
            let detail = format!(
                "{} of {shown} in {} from {:?} ({}) is {why}: is `key_file` the same on every \
                 host, or is someone writing to the engine?",
                op_name(&entry.op),
                entry.jail,
                entry.host,
                entry.id
            );
            self.refuse("signature", &detail);
            return None;
        }
        let target = entry.target.trunc();
        let reason = format!("fleet ({})", entry.host);
        let expires = match entry.op {
            Op::Unban => {
                return Some(Apply::Unban {
                    jail: entry.jail.clone(),
                    target,
                    reason,
                });
            }
            Op::Ban { expires } => expires,
        };
        // The same rails as a ban from the log: never loopback, unspecified, this host's
        // addresses (with or without ignoreself) nor ignoreip.
        let ignore = IgnoreList::new(run.config.ignoreip.clone(), own.to_vec());
        if let Some(why) = ignore.spares(&target) {
            let detail = format!(
                "a ban of {shown} in {} from {:?} ({}): {why}",
                entry.jail, entry.host, entry.id
            );
            self.refuse("spared", &detail);
            return None;
        }
        // A ban in force here that ends as late (within a second: the same ban, its end
        // carried in milliseconds) is the one this entry says, often this host's own.
        if let Some(ban) = bans.get(&entry.jail, target) {
            let covered = match (ban.expires_at, expires) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(here), Some(there)) => there <= here.saturating_add(1000),
            };
            if covered {
                return None;
            }
        }
        let length = match expires {
            Some(end) if end <= now.wall => return None,
            Some(end) => BanTime::For(Duration::from_millis(
                u64::try_from(end - now.wall).unwrap_or(0),
            )),
            None => BanTime::Permanent,
        };
        let length = capped(length, longest(run, self.link.max_bantime));
        if let Admit::HeldBack { .. } = run.rate.admit(now.wall) {
            let detail = format!(
                "a ban of {shown} in {} from {:?}: the jail reached max_bans_per_minute",
                entry.jail, entry.host
            );
            self.refuse("rate_cap", &detail);
            return None;
        }
        Some(Apply::Ban {
            jail: entry.jail.clone(),
            target,
            length,
            failures: entry.failures,
            reason,
            at: entry.at,
        })
    }

    /// An entry was carried out here; `made_at`: when the ban it brought was decided
    /// (for the propagation delay), `None` for an unban.
    pub(super) fn applied(&mut self, made_at: Option<UnixMs>, now: Now) {
        if let Some(at) = made_at {
            let delay = (now.wall - at).max(0);
            self.metrics
                .fleet_propagation
                .observe(Duration::from_millis(u64::try_from(delay).unwrap_or(0)).as_secs_f64());
        }
        self.metrics.fleet_applied.inc();
        self.applied += 1;
    }

    /// Counts a refused entry, and says the first of each reason.
    pub(super) fn refuse(&mut self, reason: &'static str, detail: &str) {
        if self.refused.count(&self.metrics.fleet_refused, reason) {
            warn!(
                reason,
                "refused an entry of the fleet's stream: {detail} (further refusals for this \
                 reason are counted in ban_agent_fleet_refused_total, not logged)"
            );
        }
    }

    /// What `status` shows of the fleet; `applied_id`: the last entry applied here.
    pub(super) fn status(&self, applied_id: Option<&str>) -> FleetStatus {
        let status = self.link.status();
        let applied_at = applied_id.and_then(crate::fleet::id_time);
        let newest_at = status.newest.as_deref().and_then(crate::fleet::id_time);
        FleetStatus {
            engine: self.link.engine.clone(),
            name: self.link.name.clone(),
            connected: status.connected,
            peers: status.peers,
            outbox: self.link.outbox.len() as u64,
            dropped: self.link.outbox.dropped(),
            lag_ms: match (newest_at, applied_at) {
                (Some(newest), Some(applied)) => Some((newest - applied).max(0)),
                (Some(_), None) | (None, _) => None,
            },
            last_error: status.last_error,
            published: status.published,
            applied: self.applied,
            refused: self.refused.total(),
            signed: self.link.signer.signs(),
        }
    }

    /// Said at start: which jails share with the fleet.
    pub(super) fn announce(&self, jails: &Jails) {
        let shared: Vec<&str> = jails
            .values()
            .filter(|run| run.config.fleet)
            .map(|run| run.config.name.as_str())
            .collect();
        info!(
            engine = %self.link.engine,
            host = %self.link.name,
            signed = self.link.signer.signs(),
            jails = ?shared,
            "sharing failures and bans with the fleet"
        );
    }
}

/// What a line's failure is shared with: the fleet's outbox (none without a fleet), and
/// the bans in force here (failures of those are not shared).
#[derive(Clone, Copy)]
pub(super) struct Sharing<'a> {
    outbox: Option<&'a Outbox>,
    bans: &'a Bans,
}

impl Sharing<'_> {
    /// Shares one failure counted here, unless the address is banned here already (a
    /// request that was under way when the ban came).
    pub(super) fn failure(&self, run: &JailRun, target: IpNet, now: Now) {
        let Some(outbox) = self.outbox.filter(|_| run.config.fleet) else {
            return;
        };
        if self.bans.contains(&run.config.name, target) {
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
            sent: now.wall,
        });
    }
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
