//! What must survive a restart or a reboot: the bans (with a wall-clock expiry, since the
//! kernel's boot clock starts again at a reboot), how often each target was banned (for
//! `bantime_increment`) and where each log was read up to.
//!
//! One JSON file, `state.json` in the state directory, replaced atomically: written to a
//! temporary file, synced, renamed over the old one, and the directory synced, so that a
//! crash leaves either the old state or the new one, never a mix.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{filter::date::UnixMs, tail::Checkpoint};

/// The file's format version; a file of another version is refused, not misread.
pub const VERSION: u32 = 1;
const FILE: &str = "state.json";

/// A ban as saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedBan {
    pub jail: String,
    pub target: IpNet,
    /// Wall-clock end, in Unix milliseconds; `None` for a permanent ban.
    pub expires_at: Option<UnixMs>,
    pub banned_at: UnixMs,
    pub failures: u32,
}

impl SavedBan {
    /// Time left at wall-clock `now`: `None` when permanent, zero when over.
    pub fn remaining(&self, now: UnixMs) -> Option<Duration> {
        self.expires_at
            .map(|end| Duration::from_millis(u64::try_from(end.saturating_sub(now)).unwrap_or(0)))
    }
}

/// Everything saved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub bans: Vec<SavedBan>,
    /// Bans so far per jail and target, for `bantime_increment`.
    pub history: BTreeMap<String, BTreeMap<IpNet, u32>>,
    /// Where each log was read up to.
    pub positions: BTreeMap<PathBuf, Checkpoint>,
    /// The kernel's jail index of each jail name: kept across restarts and reloads, since
    /// the bans in the pinned maps are keyed by it.
    #[serde(default)]
    pub jail_ids: BTreeMap<String, u32>,
    /// Where each journal jail read its journal up to (sd-journal cursors).
    #[serde(default)]
    pub cursors: BTreeMap<String, String>,
    /// The last entry of the fleet's stream of bans applied here.
    #[serde(default)]
    pub fleet_id: Option<String>,
}

impl State {
    /// Previous bans of `target` in `jail`, or in every jail.
    pub fn previous_bans(&self, jail: &str, target: &IpNet, every_jail: bool) -> u32 {
        if every_jail {
            self.history
                .values()
                .filter_map(|targets| targets.get(target))
                .sum()
        } else {
            self.history
                .get(jail)
                .and_then(|targets| targets.get(target))
                .copied()
                .unwrap_or(0)
        }
    }

    /// Notes one more ban of `target` in `jail`.
    pub fn count_ban(&mut self, jail: &str, target: IpNet) {
        let count = self
            .history
            .entry(jail.to_owned())
            .or_default()
            .entry(target)
            .or_default();
        *count = count.saturating_add(1);
    }

    /// The jail index of `name`, assigning the lowest free one to a new jail; `None` when
    /// all `MAX_JAILS` are taken.
    pub fn jail_id(&mut self, name: &str) -> Option<u32> {
        if let Some(&id) = self.jail_ids.get(name) {
            return Some(id);
        }
        let taken: std::collections::BTreeSet<u32> = self.jail_ids.values().copied().collect();
        let id = (0..ban_common::MAX_JAILS).find(|id| !taken.contains(id))?;
        self.jail_ids.insert(name.to_owned(), id);
        Some(id)
    }

    /// Drops the bans that are over at `now`.
    pub fn drop_expired(&mut self, now: UnixMs) {
        self.bans
            .retain(|ban| ban.remaining(now).is_none_or(|left| !left.is_zero()));
    }
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot {op} {}: {source}; check that the state directory exists and is writable", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is not a ban-agent state file ({message}); move it aside to start with no saved \
         bans (the bans in the kernel maps are not affected)",
        path.display()
    )]
    Corrupt { path: PathBuf, message: String },
    #[error(transparent)]
    Untrusted(#[from] crate::trust::TrustError),
}

/// The state file of a state directory.
pub struct Store {
    path: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join(FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state; an empty one when nothing was saved yet. The state directory and
    /// file must be writable by root (or the agent's user) alone.
    pub fn load(&self) -> Result<State, StoreError> {
        crate::trust::check_file(&self.path)?;
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(State {
                    version: VERSION,
                    ..State::default()
                });
            }
            Err(source) => return Err(io("read", &self.path, source)),
        };
        let state: State = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        if state.version != VERSION {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                message: format!("version {}, this ban-agent reads {VERSION}", state.version),
            });
        }
        Ok(state)
    }

    /// Replaces the saved state atomically.
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        let temporary = self.path.with_extension("json.tmp");
        let mut text = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        text.push(b'\n');
        let mut file = File::create(&temporary).map_err(|e| io("create", &temporary, e))?;
        if let Err(e) = file.write_all(&text).and_then(|()| file.sync_all()) {
            // A full disk: the partial file would only hold on to the space.
            let _partial = fs::remove_file(&temporary);
            return Err(io("write", &temporary, e));
        }
        fs::rename(&temporary, &self.path).map_err(|e| io("replace", &self.path, e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("sync", dir, e))
    }
}

fn io(op: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().expect("a network")
    }

    fn sample() -> State {
        let mut state = State {
            version: VERSION,
            ..State::default()
        };
        state.bans.push(SavedBan {
            jail: "auth".into(),
            target: net("192.0.2.7/32"),
            expires_at: Some(10_000),
            banned_at: 1_000,
            failures: 5,
        });
        state.bans.push(SavedBan {
            jail: "auth".into(),
            target: net("2001:db8::/64"),
            expires_at: None,
            banned_at: 1_000,
            failures: 3,
        });
        state.count_ban("auth", net("192.0.2.7/32"));
        state.positions.insert(
            PathBuf::from("/var/log/app/auth.log"),
            Checkpoint {
                offset: 4096,
                fingerprint: Some(42),
            },
        );
        state
    }

    #[test]
    fn saved_state_loads_back_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::new(&dir.path().join("state"));
        assert_eq!(store.load().expect("empty").bans, []);
        let state = sample();
        store.save(&state).expect("save");
        assert_eq!(store.load().expect("load"), state);
        assert!(!store.path().with_extension("json.tmp").exists());
    }

    #[test]
    fn a_corrupt_or_foreign_file_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::new(dir.path());
        fs::write(store.path(), "{ not json").expect("write");
        let error = store.load().expect_err("corrupt").to_string();
        assert!(error.contains("move it aside"), "{error}");
        fs::write(
            store.path(),
            r#"{"version":99,"bans":[],"history":{},"positions":{}}"#,
        )
        .expect("write");
        let error = store.load().expect_err("other version").to_string();
        assert!(error.contains("version 99"), "{error}");
    }

    // Another user who could write the state could restore bans or positions of their
    // choosing. Without the trust check in `Store::load`, this file loads.
    #[test]
    fn a_state_file_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::new(dir.path());
        store.save(&sample()).expect("save");
        store.load().expect("a private state loads");
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o646)).expect("chmod");
        let error = store.load().expect_err("writable by others").to_string();
        assert!(error.contains("writable by every user"), "{error}");
    }

    #[test]
    fn expiry_history_and_increments() {
        let mut state = sample();
        assert_eq!(state.bans[0].remaining(4_000), Some(Duration::from_secs(6)));
        assert_eq!(state.bans[1].remaining(4_000), None);
        state.drop_expired(10_000);
        assert_eq!(
            state.bans.len(),
            1,
            "the timed ban is over, the permanent one stays"
        );
        let target = net("192.0.2.7/32");
        state.count_ban("web", target);
        state.count_ban("web", target);
        assert_eq!(state.previous_bans("auth", &target, false), 1);
        assert_eq!(state.previous_bans("web", &target, false), 2);
        assert_eq!(state.previous_bans("web", &target, true), 3);
        assert_eq!(state.previous_bans("web", &net("192.0.2.8/32"), true), 0);
    }

    #[test]
    fn jail_ids_are_stable_and_reused_once_freed() {
        let mut state = State::default();
        assert_eq!(state.jail_id("a"), Some(0));
        assert_eq!(state.jail_id("b"), Some(1));
        assert_eq!(state.jail_id("a"), Some(0));
        state.jail_ids.remove("a");
        assert_eq!(state.jail_id("c"), Some(0));
        for n in 0..ban_common::MAX_JAILS {
            let _id = state.jail_id(&format!("j{n}"));
        }
        assert_eq!(state.jail_id("one-too-many"), None);
    }
}
