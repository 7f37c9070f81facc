//! Taking the bans back at start: the saved bans and those the kernel maps hold are
//! reconciled, so that a restart, a reboot (empty maps) or a state that missed a ban
//! (a disk that could not be written) all end with the kernel holding what is in force.

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use tracing::{info, warn};

use super::{
    jails::Jails,
    kernel::Kernel,
    persist::Persist,
    table::{ActiveBan, Bans},
};
use crate::{
    clock::{Expiry, Now, ms},
    ignore::IgnoreList,
    store::SavedBan,
};

/// Where the restored bans go.
pub(super) struct Holders<'a> {
    pub kernel: &'a mut dyn Kernel,
    pub jails: &'a mut Jails,
    pub bans: &'a mut Bans,
    pub persist: &'a mut Persist,
}

/// Saved bans go back into the kernel if a reboot emptied it; bans the kernel holds for a
/// current jail are kept even if the state missed them (a state that could not be
/// written); bans of jails that are gone are lifted; nothing is ever banned that `own`
/// (the host's addresses) or the reserved ranges spare. Returns the saved bans that ended
/// while the agent was away, for it to say them ended now (log line, hook, metric).
pub(super) fn restore(
    saved: Vec<SavedBan>,
    into: Holders<'_>,
    own: &[IpAddr],
    now: Now,
) -> anyhow::Result<Vec<(String, IpNet, ActiveBan)>> {
    let mut in_kernel = InKernel::new(into.kernel.list()?);
    into.bans.reserve(saved.len().max(in_kernel.bans.len()));
    let mut ended = Vec::new();
    let mut restored = 0usize;
    // A state written by hand, or by a broken disk, never bans what no path may ban.
    let never = IgnoreList::new(Vec::new(), own.to_vec());
    for ban in saved {
        let spared = never.spares(&ban.target);
        let id = into.jails.get(&ban.jail).map(|run| run.id);
        let (Some(id), None) = (id, spared) else {
            if let Some(why) = spared {
                warn!(jail = ban.jail, ip = %ban.target, "a saved ban is dropped: {why}");
            }
            if let Some(id) = id
                && in_kernel.remove(&(id, ban.target)).is_some()
            {
                into.kernel.unban(id, ban.target)?;
            }
            into.persist.stage_lift(&ban.jail, ban.target);
            continue;
        };
        let left = ban.remaining(now.wall);
        let mut active = ActiveBan {
            expiry: Expiry::Never,
            expires_at: ban.expires_at,
            banned_at: ban.banned_at,
            failures: ban.failures,
        };
        if left.is_some_and(|left| left.is_zero()) {
            if in_kernel.remove(&(id, ban.target)).is_some() {
                into.kernel.unban(id, ban.target)?;
            }
            into.persist.stage_lift(&ban.jail, ban.target);
            ended.push((ban.jail, ban.target, active));
            continue;
        }
        active.expiry = match in_kernel.remove(&(id, ban.target)) {
            Some(expiry) if !expiry.expired(now.boot) => expiry,
            _ => {
                let expiry = left.map_or(Expiry::Never, |left| Expiry::after(now.boot, left));
                into.kernel.ban(id, ban.target, expiry)?;
                expiry
            }
        };
        in_force(into.jails, into.bans, &ban.jail, ban.target, active);
        restored += 1;
    }
    let adopted = adopt(in_kernel, into, &never, now)?;
    if restored + adopted > 0 {
        info!(restored, adopted, "bans in force at start");
    }
    Ok(ended)
}

/// The bans the kernel holds that no saved ban took: kept for a current jail, unless
/// ended or spared (the ban was made but not saved: it is saved now), lifted otherwise.
/// Returns how many were kept.
fn adopt(
    in_kernel: InKernel,
    into: Holders<'_>,
    never: &IgnoreList,
    now: Now,
) -> anyhow::Result<usize> {
    let Holders {
        kernel,
        jails,
        bans,
        persist,
    } = into;
    let ids: BTreeMap<u32, String> = jails
        .iter()
        .map(|(name, run)| (run.id, name.clone()))
        .collect();
    let mut adopted = 0usize;
    for ((id, target), expiry) in in_kernel.rest() {
        match ids.get(&id) {
            Some(jail) if !expiry.expired(now.boot) && never.spares(&target).is_none() => {
                let expires_at = expiry.remaining(now.boot).map(|left| now.wall + ms(left));
                let active = ActiveBan {
                    expiry,
                    expires_at,
                    banned_at: now.wall,
                    failures: 0,
                };
                in_force(jails, bans, jail, target, active);
                // It counts in the history (for bantime increments) once, here.
                persist.stage(jail, target, &active, "kernel");
                persist.count_ban(jail, target, now.wall);
                adopted += 1;
            }
            _ => {
                kernel.unban(id, target)?;
            }
        }
    }
    Ok(adopted)
}

/// A ban restored in force, counted in its jail's `total_banned`.
fn in_force(jails: &mut Jails, bans: &mut Bans, jail: &str, target: IpNet, ban: ActiveBan) {
    bans.insert(jail, target, ban);
    if let Some(run) = jails.get_mut(jail) {
        run.total_banned += 1;
    }
}

/// The bans the kernel holds at start, each taken at most once by a saved ban; those left
/// are adopted or lifted. A sorted `Vec` rather than a map: with a million bans, one
/// allocation of 40 bytes each instead of a tree's nodes.
struct InKernel {
    bans: Vec<((u32, IpNet), Expiry)>,
    taken: Vec<bool>,
}

impl InKernel {
    fn new(list: Vec<crate::datapath::BanRecord>) -> Self {
        let mut bans: Vec<((u32, IpNet), Expiry)> = list
            .into_iter()
            .map(|ban| ((ban.jail, ban.target), ban.expiry))
            .collect();
        bans.sort_unstable_by_key(|(key, _)| *key);
        bans.dedup_by_key(|(key, _)| *key);
        let taken = vec![false; bans.len()];
        Self { bans, taken }
    }

    /// The kernel's expiry of `key`, unless taken already; taken now.
    fn remove(&mut self, key: &(u32, IpNet)) -> Option<Expiry> {
        let i = self.bans.binary_search_by_key(key, |(k, _)| *k).ok()?;
        if std::mem::replace(&mut self.taken[i], true) {
            return None;
        }
        Some(self.bans[i].1)
    }

    /// The bans no saved ban took.
    fn rest(self) -> impl Iterator<Item = ((u32, IpNet), Expiry)> {
        self.bans
            .into_iter()
            .zip(self.taken)
            .filter(|(_, taken)| !taken)
            .map(|(ban, _)| ban)
    }
}
