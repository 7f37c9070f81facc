//! The agent's side of CrowdSec: each decision of the stream passes the rails a ban from
//! the log passes (never loopback, unspecified, this host's addresses nor `ignoreip`; the
//! jail's cap on bans per minute; `max_bantime`), and whatever fails them is refused,
//! counted and said once. The agent carries out what passes.
//!
//! The decision behind each ban is remembered: a deletion lifts a ban only when the
//! decision deleted is the one that set it (the API says a deletion again in later
//! answers, and another decision may have come for the address meanwhile), and a full
//! read (the first, and the one after the API was out of reach) lifts the bans of the
//! jail that no decision holds any more.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
    time::Duration,
};

use ipnet::IpNet;
use tracing::{debug, info, warn};

use super::{jails::Jails, log_once::Refusals, table::Bans};
use crate::{
    clock::Now,
    control::protocol::CrowdSecStatus,
    crowdsec::{Decision, Link, Pull},
    datapath,
    ignore::IgnoreList,
    metrics::Metrics,
    tracker::{Admit, BanTime},
};

/// The bouncer as the agent holds it.
pub(super) struct CrowdSecSide {
    link: Link,
    metrics: Arc<Metrics>,
    /// The jail of its bans.
    jail: String,
    max_bantime: Option<Duration>,
    /// The decision (its id) behind each ban it made that is still in force.
    held: HashMap<IpNet, i64>,
    applied: u64,
    refused: Refusals,
}

/// What a read of the stream asks of the jail, once it passed the rails.
#[derive(Debug, PartialEq)]
pub(super) enum Step {
    Ban {
        target: IpNet,
        length: BanTime,
        reason: String,
    },
    Lift {
        target: IpNet,
        reason: String,
    },
}

impl CrowdSecSide {
    pub(super) fn new(
        link: Link,
        jail: String,
        max_bantime: Option<Duration>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            link,
            metrics,
            jail,
            max_bantime,
            held: HashMap::new(),
            applied: 0,
            refused: Refusals::default(),
        }
    }

    /// The jail of CrowdSec's bans.
    pub(super) fn jail(&self) -> &str {
        &self.jail
    }

    /// Passes one read of the stream through the rails: the bans to make and to lift,
    /// in order (lifts first: a decision that replaces a deleted one comes after it).
    pub(super) fn judge(
        &mut self,
        pull: Pull,
        jails: &mut Jails,
        bans: &Bans,
        own: &[IpAddr],
        now: Now,
    ) -> Vec<Step> {
        for skipped in &pull.skipped {
            self.refuse(skipped.reason, &skipped.why);
        }
        let Some(run) = jails.get_mut(&self.jail) else {
            debug!(
                jail = self.jail,
                "CrowdSec's decisions read while its jail is not running"
            );
            return Vec::new();
        };
        let mut steps = Vec::new();
        if pull.startup {
            // The whole set: a ban no decision holds any more is lifted.
            let current: HashSet<IpNet> = pull
                .new
                .iter()
                .filter(|d| d.left.is_some())
                .map(|d| d.target)
                .collect();
            for target in bans.of(&self.jail) {
                if !current.contains(&target) {
                    self.held.remove(&target);
                    steps.push(Step::Lift {
                        target,
                        reason: "crowdsec (no decision any more)".to_owned(),
                    });
                }
            }
        } else {
            for decision in &pull.deleted {
                if self.held.get(&decision.target) == Some(&decision.id) {
                    self.held.remove(&decision.target);
                    steps.push(Step::Lift {
                        target: decision.target,
                        reason: format!("crowdsec (decision {} deleted)", decision.id),
                    });
                }
            }
        }
        let ignore = IgnoreList::new(run.config.ignoreip.clone(), own.to_vec());
        for decision in &pull.new {
            let Some(left) = decision.left else { continue };
            if let Some(why) = ignore.spares(&decision.target) {
                let detail = format!("{}: {why}", shown(decision));
                self.refuse("spared", &detail);
                continue;
            }
            let left = self.max_bantime.map_or(left, |max| left.min(max));
            let ends = now
                .wall
                .saturating_add(i64::try_from(left.as_millis()).unwrap_or(i64::MAX));
            // A ban in force that ends as late (within a second) is this decision's, or
            // a longer one's: nothing to do.
            let covered = bans.get(&self.jail, decision.target).is_some_and(|ban| {
                ban.expires_at
                    .is_none_or(|end| end.saturating_add(1000) >= ends)
            });
            if covered {
                self.held.entry(decision.target).or_insert(decision.id);
                continue;
            }
            if let Admit::HeldBack { .. } = run.rate.admit(now.wall) {
                let detail = format!(
                    "{}: the jail {} reached its max_bans_per_minute",
                    shown(decision),
                    self.jail
                );
                self.refuse("rate_cap", &detail);
                continue;
            }
            self.held.insert(decision.target, decision.id);
            steps.push(Step::Ban {
                target: decision.target,
                length: BanTime::For(left),
                reason: format!("crowdsec ({}: {})", decision.origin, decision.scenario),
            });
        }
        steps
    }

    /// A step was carried out.
    pub(super) fn applied(&mut self) {
        self.metrics.crowdsec_applied.inc();
        self.applied += 1;
    }

    /// A ban the kernel did not take: no decision holds it.
    pub(super) fn not_applied(&mut self, target: IpNet, reason: &'static str, detail: &str) {
        self.held.remove(&target);
        self.refuse(reason, detail);
    }

    /// A ban of the jail ended or was lifted by hand: a later decision for the address
    /// bans it again.
    pub(super) fn ended(&mut self, target: IpNet) {
        self.held.remove(&target);
    }

    /// Counts a refused decision, and says the first of each reason.
    fn refuse(&mut self, reason: &'static str, detail: &str) {
        if self.refused.count(&self.metrics.crowdsec_refused, reason) {
            let rest = "further ones for this reason are counted in \
                        ban_agent_crowdsec_refused_total, not logged";
            match reason {
                // Captchas and countries are for CrowdSec's other bouncers: not a fault.
                "type" | "scope" => info!("passed over CrowdSec's {detail} ({rest})"),
                _ => warn!("refused CrowdSec's {detail} ({rest})"),
            }
        }
    }

    /// Reads the whole set again at the next read (a reload changed the jail).
    pub(super) fn resync(&self) {
        self.link.resync();
    }

    /// What `status` shows of the bouncer.
    pub(super) fn status(&self) -> CrowdSecStatus {
        let status = self.link.status();
        CrowdSecStatus {
            url: self.link.url.clone(),
            jail: self.jail.clone(),
            interval_ms: u64::try_from(self.link.interval.as_millis()).unwrap_or(u64::MAX),
            connected: status.connected,
            last_pull: status.last_pull,
            last_error: status.last_error,
            pulls: status.pulls,
            errors: status.errors,
            decisions: self.held.len() as u64,
            applied: self.applied,
            refused: self.refused.total(),
        }
    }
}

fn shown(decision: &Decision) -> String {
    format!(
        "decision {} ({}, {}) of {}",
        decision.id,
        decision.origin,
        decision.scenario,
        datapath::show(&decision.target)
    )
}
