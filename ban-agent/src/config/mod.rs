//! The configuration file: TOML in, a validated [`Config`] out, or an error that names the
//! file, the line and column, the key and what was expected.
//!
//! ```toml
//! state_dir = "/var/lib/ban-agent"
//! interfaces = ["eth0"]      # or { name = "eth0", mode = "tc" }
//! mode = "auto"              # auto | xdp | tc | xdp-generic
//!
//! [defaults]                 # inherited by every jail
//! ignoreip = ["192.0.2.0/24"]
//!
//! [jail.fastapi-auth]
//! logpath = "/var/log/app/auth.log"
//! filter = "fastapi-auth"    # or inline: failregex = [...], ignoreregex = [...]
//! ports = [80, 443]
//! maxretry = 5
//! findtime = "10m"
//! bantime = "1h"             # or "permanent" / -1
//! ```
//!
//! Reading files is limited to the configuration itself and named filter files; globs in
//! `logpath` are checked here and expanded by the follower.

mod crowdsec;
mod error;
mod filters;
mod fleet;
mod raw;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;

pub use crowdsec::{CrowdSec, Scope};
pub use error::ConfigError;
pub use filters::{FilterDirs, FindFilterError, fail2ban_filter, find_filter, parse_filter};
pub use fleet::{Endpoint, Fleet};

pub use crate::filter::date::DatePattern;
use crate::{
    datapath::{AttachMode, Protocol},
    filter::Filter,
    tail::Start,
    tracker::{BanTime, Increment, Rules},
};

/// Where a configuration usually lives.
pub const DEFAULT_PATH: &str = "/etc/ban-agent/ban-agent.toml";

/// Where the daemon listens for control requests unless `socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/ban-agent.sock";

/// The whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub global: Global,
    /// Jails by name (enabled or not), in name order.
    pub jails: Vec<Jail>,
}

/// Settings of the agent as a whole.
#[derive(Clone, Debug, PartialEq)]
pub struct Global {
    /// Never ban this host's own addresses.
    pub ignoreself: bool,
    /// Bans, ban history and log positions.
    pub state_dir: PathBuf,
    /// Where the BPF maps and links are pinned.
    pub pin_dir: PathBuf,
    /// Interfaces the datapath is attached to.
    pub interfaces: Vec<String>,
    /// How interfaces are hooked unless `interface_modes` says otherwise (`mode`).
    pub mode: AttachMode,
    /// Interfaces with a mode of their own (`{ name = "eth1", mode = "xdp" }`).
    pub interface_modes: BTreeMap<String, AttachMode>,
    /// Address of the Prometheus endpoint; none when absent.
    pub metrics: Option<SocketAddr>,
    /// Where `filter = "NAME"` looks for `NAME.toml` before the built-in filters.
    pub filter_dir: PathBuf,
    /// fail2ban's configuration folder: `filter = "sshd"` finds `filter.d/sshd.conf` here
    /// when no filter of ours has that name (`fail2ban_dir`).
    pub fail2ban_dir: PathBuf,
    /// Docker's data root, where `docker` and `docker_label` find containers
    /// (`docker_root`).
    pub docker_root: PathBuf,
    /// The daemon's control socket.
    pub socket: PathBuf,
    /// A group whose members may use the control socket besides root.
    pub socket_group: Option<u32>,
    /// Log level (a `tracing` filter such as `info` or `ban_agent=debug`) when `RUST_LOG`
    /// is not set.
    pub log_level: Option<String>,
    /// Where log lines go (fail2ban's `logtarget`): standard error, the journal, a file.
    pub log_target: crate::logging::LogTarget,
    /// Several hosts sharing failures and bans (`[fleet]`); `None`: this host alone.
    pub fleet: Option<Fleet>,
    /// CrowdSec's decisions enforced here (`[crowdsec]`); `None`: none.
    pub crowdsec: Option<CrowdSec>,
}

/// One jail: which logs, which filter, how many failures, which ban.
#[derive(Clone, Debug)]
pub struct Jail {
    pub name: String,
    pub enabled: bool,
    /// Files or glob patterns, absolute (relative ones are taken from the config's folder).
    pub logpath: Vec<PathBuf>,
    pub filter: Filter,
    /// Where the filter came from, for messages: `built-in fastapi-auth`, a path, `inline`.
    pub filter_origin: String,
    pub rules: Rules,
    pub bantime: BanTime,
    pub increment: Option<Increment>,
    pub ports: Ports,
    pub protocol: Protocol,
    pub ignoreip: Vec<IpNet>,
    pub datepattern: DatePattern,
    pub start: Start,
    /// What a `logpath` that names no file at start means (globs may match nothing).
    pub missing_log: MissingLog,
    /// How the lines of its files are wrapped (`log_format`: a container runtime's).
    pub log_format: crate::tail::container::LogFormat,
    /// Which of a container's streams it reads (`stream`).
    pub stream: crate::tail::container::Streams,
    /// Docker containers whose logs it reads besides `logpath` (`docker`,
    /// `docker_label`).
    pub docker: Option<crate::tail::docker::DockerSelector>,
    /// The journal this jail reads instead of `logpath` (`backend = "systemd"`).
    pub journal: Option<crate::tail::journal::JournalSpec>,
    /// Whether this jail shares its failures and bans with the fleet (`fleet`, true by
    /// default when there is a `[fleet]`).
    pub fleet: bool,
    /// Run when this jail bans.
    pub on_ban: Option<Action>,
    /// Run when a ban of this jail ends (expiry, `unban`, jail removed).
    pub on_unban: Option<Action>,
    /// fail2ban's actions (`action = ...`): a firewall's is the kernel ban; the others'
    /// commands run on start, ban, unban and stop.
    pub actions: Vec<crate::fail2ban::action::Fail2banAction>,
    /// Its bans are CrowdSec's decisions (the jail `[crowdsec]` names): it reads no log,
    /// and its filter matches nothing.
    pub crowdsec: bool,
}

impl Jail {
    /// Whether `other` is this jail as configured, its filter compiled from the same
    /// patterns and options: a reload leaves such a jail running as it is. The compiled
    /// filter has no equality of its own; its debug text shows what it was compiled from,
    /// so equal texts are the same jail (a difference that is not one only rebuilds it).
    pub fn same_as(&self, other: &Jail) -> bool {
        format!("{self:?}") == format!("{other:?}")
    }
}

/// What to do on a ban or an unban: a command, a webhook, or both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    /// Program and arguments; `<ip>`, `<jail>`, `<failures>` and `<bantime>` in the
    /// arguments are replaced, and the same values are in the environment.
    pub command: Option<Vec<String>>,
    /// URL that receives the event as a JSON POST (http or https).
    pub webhook: Option<String>,
    /// How long the command or the POST may take before it is abandoned.
    pub timeout: Duration,
    /// A mail about the event (batched under a flood).
    pub email: Option<Email>,
}

/// Mail on a ban or an unban, as fail2ban's `sendmail-whois-lines` action sends it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email {
    /// Recipients.
    pub to: Vec<String>,
    /// Sender.
    pub from: String,
    /// How to send it.
    pub via: MailVia,
    /// Up to this many lines of the jail's logs that hold the address go with the mail.
    pub log_lines: usize,
    /// Where those lines are looked for: the jail's `logpath` (files or globs).
    pub logpath: Vec<PathBuf>,
}

/// The way out of a mail.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MailVia {
    /// The local `sendmail` program.
    Sendmail,
    /// An SMTP server.
    Smtp {
        host: String,
        port: u16,
        /// Upgrade the connection with STARTTLS, and refuse to send without it.
        starttls: bool,
        /// A file holding `user:password` (read at each send, never logged).
        credentials_file: Option<PathBuf>,
    },
}

/// The destination ports a jail protects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ports {
    All,
    /// Sorted, without duplicates, never empty.
    List(Vec<u16>),
}

/// What a plain `logpath` (no glob) that names no file means when the agent starts or
/// `check` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingLog {
    /// An error, as fail2ban refuses such a jail: a typo in a path must not leave the
    /// jail silently reading nothing.
    Refuse,
    /// The file is read from its start once it appears; a warning says it is not there.
    Wait,
}

/// A `logpath` that names no file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingPath {
    pub jail: String,
    pub path: PathBuf,
    /// The folder that holds it is missing too (a typo in the folder, an app not
    /// installed).
    pub folder_missing: bool,
    pub allowed: MissingLog,
}

/// Jails refused for logs that are not there.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", path.display(), refused.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct MissingLogs {
    pub path: PathBuf,
    pub refused: Vec<MissingPath>,
}

impl std::fmt::Display for MissingPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "jail {}: logpath {} does not exist{}",
            self.jail,
            self.path.display(),
            if self.folder_missing {
                " (nor does its folder)"
            } else {
                ""
            }
        )?;
        match self.allowed {
            MissingLog::Refuse => write!(
                f,
                ": check the path, or set `missing_log = \"wait\"` in [jail.{}] if the app \
                 creates it later",
                self.jail
            ),
            MissingLog::Wait => write!(f, ": it is read from its start once it appears"),
        }
    }
}

impl Config {
    /// Reads and validates the configuration at `path`, which only root (or the agent's
    /// user) may write.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        crate::trust::check_file(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Validates configuration text; `path` locates errors and relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        raw::parse(path, text)
    }

    /// The jail called `name`.
    pub fn jail(&self, name: &str) -> Option<&Jail> {
        self.jails.iter().find(|jail| jail.name == name)
    }

    /// Jails that run.
    pub fn enabled(&self) -> impl Iterator<Item = &Jail> {
        self.jails.iter().filter(|jail| jail.enabled)
    }

    /// The missing logs the jails allow (to be warned of), or an error naming those they
    /// refuse; `lenient` (a dry run) allows them all.
    pub fn check_logs(&self, lenient: bool) -> Result<Vec<MissingPath>, MissingLogs> {
        let (refused, allowed): (Vec<_>, Vec<_>) = self
            .missing_logs()
            .into_iter()
            .partition(|missing| missing.allowed == MissingLog::Refuse && !lenient);
        if refused.is_empty() {
            Ok(allowed)
        } else {
            Err(MissingLogs {
                path: self.path.clone(),
                refused,
            })
        }
    }

    /// The plain `logpath`s of the enabled jails that name no file now, nor one rotated
    /// away from them (a glob may match nothing yet; a journal jail has no file), with
    /// what each jail allows.
    pub fn missing_logs(&self) -> Vec<MissingPath> {
        self.enabled()
            .filter(|jail| jail.journal.is_none())
            .flat_map(|jail| {
                jail.logpath
                    .iter()
                    .filter(|path| !crate::tail::is_glob(&path.to_string_lossy()))
                    // Between logrotate's rename and the new file: a log all the same.
                    .filter(|path| !path.exists() && !crate::tail::rotated_away_now(path))
                    .map(|path| MissingPath {
                        jail: jail.name.clone(),
                        path: path.clone(),
                        folder_missing: path.parent().is_some_and(|folder| !folder.exists()),
                        allowed: jail.missing_log,
                    })
            })
            .collect()
    }
}

impl Global {
    /// How `interface` is hooked.
    pub fn mode_of(&self, interface: &str) -> AttachMode {
        self.interface_modes
            .get(interface)
            .copied()
            .unwrap_or(self.mode)
    }
}

impl Default for Global {
    fn default() -> Self {
        Self {
            ignoreself: true,
            state_dir: PathBuf::from("/var/lib/ban-agent"),
            pin_dir: PathBuf::from(ban_common::PIN_DIR),
            interfaces: Vec::new(),
            mode: AttachMode::Auto,
            interface_modes: BTreeMap::new(),
            metrics: None,
            filter_dir: PathBuf::from("/etc/ban-agent/filter.d"),
            fail2ban_dir: PathBuf::from("/etc/fail2ban"),
            docker_root: PathBuf::from("/var/lib/docker"),
            socket: PathBuf::from(DEFAULT_SOCKET),
            socket_group: None,
            log_level: None,
            log_target: crate::logging::LogTarget::Stderr,
            fleet: None,
            crowdsec: None,
        }
    }
}

/// A jail's defaults where neither it nor `[defaults]` says otherwise (`maxretry`,
/// `findtime` and the prefixes are `tracker::Rules::default()`).
pub mod defaults {
    use super::Duration;

    pub const BANTIME: Duration = Duration::from_secs(600);
    pub const INCREMENT_FACTOR: f64 = 1.0;
    pub const INCREMENT_MAXTIME: Duration = Duration::from_secs(7 * 24 * 3600);
    pub const HOOK_TIMEOUT: Duration = Duration::from_secs(10);
}

#[cfg(test)]
mod tests;
