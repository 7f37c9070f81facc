//! What outlives the agent: the bans taken back at start (from the state file and the
//! kernel maps) and the state written back.

use std::collections::BTreeMap;

use ipnet::IpNet;
use tracing::{error, info};

use super::agent::{ActiveBan, Agent, Now, millis};
use crate::{clock::Expiry, store::SavedBan};

impl Agent {
    /// Saved bans go back into the kernel if a reboot emptied it; bans the kernel holds
    /// for a current jail are kept even if the state file missed them (a crash right
    /// after the ban); bans of jails that are gone are lifted.
    pub(super) fn restore(&mut self, saved: Vec<SavedBan>, now: Now) -> anyhow::Result<()> {
        let mut in_kernel: BTreeMap<(u32, IpNet), Expiry> = self
            .kernel
            .list()?
            .into_iter()
            .map(|ban| ((ban.jail, ban.target), ban.expiry))
            .collect();
        let mut restored = 0usize;
        for ban in saved {
            let Some(id) = self.jails.get(&ban.jail).map(|run| run.id) else {
                continue;
            };
            let left = ban.remaining(now.wall);
            if left.is_some_and(|left| left.is_zero()) {
                continue;
            }
            let expiry = match in_kernel.remove(&(id, ban.target)) {
                Some(expiry) if !expiry.expired(now.boot) => expiry,
                _ => {
                    let expiry = left.map_or(Expiry::Never, |left| Expiry::after(now.boot, left));
                    self.kernel.ban(id, ban.target, expiry)?;
                    expiry
                }
            };
            let active = ActiveBan {
                expiry,
                expires_at: ban.expires_at,
                banned_at: ban.banned_at,
                failures: ban.failures,
            };
            self.insert(&ban.jail, ban.target, active);
            restored += 1;
        }
        let ids: BTreeMap<u32, String> = self
            .jails
            .iter()
            .map(|(name, run)| (run.id, name.clone()))
            .collect();
        let mut adopted = 0usize;
        for ((id, target), expiry) in in_kernel {
            match ids.get(&id) {
                Some(jail) if !expiry.expired(now.boot) => {
                    let expires_at = expiry
                        .remaining(now.boot)
                        .map(|left| now.wall + millis(left));
                    let jail = jail.clone();
                    let active = ActiveBan {
                        expiry,
                        expires_at,
                        banned_at: now.wall,
                        failures: 0,
                    };
                    self.insert(&jail, target, active);
                    // The ban was made but not saved: it counts in the history (for
                    // bantime increments) once, here; its log line, read again, finds it
                    // in force and counts nothing.
                    self.state.count_ban(&jail, target);
                    adopted += 1;
                }
                _ => {
                    self.kernel.unban(id, target)?;
                }
            }
        }
        if restored + adopted > 0 {
            info!(restored, adopted, "bans in force at start");
        }
        Ok(())
    }

    /// Writes bans, history and positions to the state file (nothing in a dry run).
    pub fn save(&mut self, now: Now) {
        let Some(store) = &self.store else { return };
        for (path, log) in &self.logs {
            if let Some(checkpoint) = log.follower.checkpoint() {
                self.state.positions.insert(path.clone(), checkpoint);
            }
        }
        for (jail, journal) in &self.journals {
            if let Some(cursor) = journal.cursor() {
                self.state.cursors.insert(jail.clone(), cursor.to_owned());
            }
        }
        self.state.bans = self
            .bans
            .iter()
            .map(|((jail, target), ban)| SavedBan {
                jail: jail.clone(),
                target: *target,
                expires_at: ban.expires_at,
                banned_at: ban.banned_at,
                failures: ban.failures,
            })
            .collect();
        let result = store.save(&self.state);
        self.state.bans = Vec::new();
        match result {
            Ok(()) => {
                self.dirty = false;
                self.last_save = now.wall;
                if self.save_error.ended() {
                    info!(path = %store.path().display(), "the state is saved again");
                }
            }
            Err(e) => {
                // The bans stay in the kernel maps; only what a restart restores is late.
                let message = e.to_string();
                if self.save_error.first(&message) {
                    error!(
                        "cannot save the state: {message}. Bans stay in force; a restart \
                         would restore them as last saved. Saving is retried every second"
                    );
                }
            }
        }
    }
}
