//! The `state.json` of ban-agent before the state database, read once to be taken in.

use std::{collections::BTreeMap, path::Path, path::PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

use super::{Changes, SavedBan, StoreError, io};
use crate::{clock::UnixMs, tail::Checkpoint};

pub const FILE: &str = "state.json";
/// The only version of the file there was.
const VERSION: u32 = 1;

#[derive(Deserialize)]
struct Ban {
    jail: String,
    target: IpNet,
    expires_at: Option<UnixMs>,
    banned_at: UnixMs,
    failures: u32,
}

#[derive(Deserialize)]
pub struct Json {
    version: u32,
    bans: Vec<Ban>,
    history: BTreeMap<String, BTreeMap<IpNet, u32>>,
    positions: BTreeMap<PathBuf, Checkpoint>,
    #[serde(default)]
    jail_ids: BTreeMap<String, u32>,
    #[serde(default)]
    cursors: BTreeMap<String, String>,
    #[serde(default)]
    fleet_id: Option<String>,
}

/// The state file at `path`; `None` when there is none.
pub fn read(path: &Path) -> Result<Option<Json>, StoreError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io("read", path, source)),
    };
    crate::trust::check_file(path)?;
    let corrupt = |message: String| StoreError::Corrupt {
        path: path.to_owned(),
        message,
    };
    let json: Json = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    if json.version != VERSION {
        return Err(corrupt(format!(
            "version {}, this ban-agent reads {VERSION}",
            json.version
        )));
    }
    Ok(Some(json))
}

impl Json {
    /// Everything it holds, as changes to an empty database; the history's times are
    /// `now`, since the file did not keep them.
    pub fn changes(self, now: UnixMs) -> Changes {
        let bans = self
            .bans
            .into_iter()
            .map(|ban| {
                let key = (ban.jail.clone(), ban.target);
                let saved = SavedBan {
                    jail: ban.jail,
                    target: ban.target,
                    expires_at: ban.expires_at,
                    banned_at: ban.banned_at,
                    failures: ban.failures,
                    origin: "state.json".to_owned(),
                };
                (key, Some(saved))
            })
            .collect();
        let history = self
            .history
            .into_iter()
            .flat_map(|(jail, targets)| {
                targets
                    .into_iter()
                    .map(move |(target, bans)| ((jail.clone(), target), (bans, now)))
            })
            .collect();
        Changes {
            bans,
            history,
            failures: BTreeMap::new(),
            positions: self.positions,
            cursors: self.cursors,
            jail_ids: Some(self.jail_ids),
            fleet_id: self.fleet_id,
        }
    }
}
