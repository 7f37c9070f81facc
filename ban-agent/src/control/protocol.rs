//! The control protocol: one JSON object per line over the Unix socket, each carrying the
//! protocol version, so that a client and a daemon of different versions say so instead of
//! misreading each other.

use std::{collections::BTreeMap, path::PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::fail2ban::bans::CarriedBan;

/// Bumped on any change that an older peer would misread (2: fail2ban-client's `banip`,
/// `unbanip` and counted replies, settings with their raw values).
pub const VERSION: u32 = 2;

/// Longest request line the daemon accepts, in bytes (any local user may connect).
pub const MAX_LINE: usize = 1 << 20;

/// Longest reply line a client accepts, in bytes: a reply comes from the daemon, and
/// `banned` with a million bans in force is about 130 MB.
pub const MAX_REPLY: usize = 512 << 20;

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Ping,
    /// All jails, or one in detail.
    Status {
        jail: Option<String>,
    },
    /// Ban in a jail for `seconds`, for ever when `permanent`, else for the jail's
    /// bantime.
    Ban {
        jail: String,
        target: IpNet,
        seconds: Option<u64>,
        #[serde(default)]
        permanent: bool,
        /// Ban even inside the jail's `ignoreip` (never loopback, unspecified or the
        /// host's own addresses).
        #[serde(default)]
        force: bool,
        /// On this host only, not in the whole fleet.
        #[serde(default)]
        local: bool,
    },
    /// Lift a ban in one jail or in all of them.
    Unban {
        target: IpNet,
        jail: Option<String>,
        /// On this host only, not in the whole fleet.
        #[serde(default)]
        local: bool,
    },
    /// Lift every ban; the reply counts them.
    UnbanAll,
    /// fail2ban-client's `set JAIL banip IP...`: ban each for the jail's bantime, in the
    /// whole fleet; the reply counts the new bans. Nothing is banned when one of them may
    /// not be (loopback, this host's, `ignoreip`).
    BanIp {
        jail: String,
        targets: Vec<IpNet>,
    },
    /// fail2ban-client's `set JAIL unbanip [--report-absent] IP...` (one jail) and
    /// `unban IP...` (every jail): lift each target's bans, and those inside a network
    /// given; the reply counts them. A target not banned is skipped, or, with
    /// `report_absent`, named in an error once the others are lifted.
    UnbanIp {
        jail: Option<String>,
        targets: Vec<IpNet>,
        report_absent: bool,
    },
    /// Bans carried over from fail2ban's database: each in force is banned until it ends
    /// there, and each address's count of bans joins the history; the reply counts the
    /// bans made.
    CarryBans {
        bans: Vec<CarriedBan>,
    },
    /// Which jails ban `target` (every ban when `None`), in `jail` or in all of them.
    Banned {
        target: Option<IpNet>,
        #[serde(default)]
        jail: Option<String>,
    },
    Get {
        jail: String,
        key: JailKey,
    },
    AddIgnoreIp {
        jail: String,
        target: IpNet,
    },
    DelIgnoreIp {
        jail: String,
        target: IpNet,
    },
    /// Change a jail's bantime, findtime or maxretry until the next reload.
    Set {
        jail: String,
        key: SetKey,
        /// As in the configuration: a duration ("10m", "permanent") or a count.
        value: String,
    },
    Reload {
        jail: Option<String>,
    },
    Stop {
        detach: bool,
    },
    /// Packets and bytes dropped and passed per jail.
    Stats,
}

/// A jail setting `set` changes until the next reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SetKey {
    Bantime,
    Findtime,
    Maxretry,
}

/// A jail setting `get` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum JailKey {
    Maxretry,
    Findtime,
    Bantime,
    Ignoreip,
    Logpath,
    Maxlines,
    Actions,
}

/// A setting's value as fail2ban's server returns it, for fail2ban-client's layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    /// A count, or a duration in seconds (-1: permanent).
    Number(i64),
    /// Addresses, files or action names.
    List(Vec<String>),
}

/// A ban as reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanInfo {
    pub jail: String,
    pub target: IpNet,
    /// Seconds left; `None` for a permanent ban.
    pub seconds_left: Option<u64>,
    /// Wall-clock end, Unix milliseconds; `None` for a permanent ban.
    pub expires_at: Option<i64>,
    /// Failures that led to it (0 for a ban by hand).
    pub failures: u32,
    /// Wall-clock start, Unix milliseconds.
    #[serde(default)]
    pub banned_at: Option<i64>,
}

/// One jail's status, as `fail2ban-client status JAIL` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailStatus {
    pub name: String,
    pub currently_failed: u64,
    pub total_failed: u64,
    pub files: Vec<String>,
    pub currently_banned: u64,
    pub total_banned: u64,
    /// The first 1000 of them: a whole list under attack would not fit in a reply.
    pub banned: Vec<IpNet>,
    /// The length of a first ban as applied (after `bantime_increment`'s factor and
    /// maxtime), with why when it differs from `bantime`.
    #[serde(default)]
    pub bantime: String,
    /// Failures of addresses never banned (loopback, this host's, `ignoreip`): read,
    /// matched, and not counted.
    #[serde(default)]
    pub spared: u64,
    /// The same by reason, e.g. `ignoreip 2, loopback or unspecified 1`.
    #[serde(default)]
    pub spared_by: String,
    /// Which filter runs: `built-in fastapi-auth`, a path, `fail2ban sshd[mode=normal] (FILE)`.
    #[serde(default)]
    pub filter: String,
}

/// Kernel counters of a jail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailStats {
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    pub passed_packets: u64,
    pub passed_bytes: u64,
}

impl From<ban_common::JailCounters> for JailStats {
    fn from(c: ban_common::JailCounters) -> Self {
        Self {
            dropped_packets: c.dropped_packets,
            dropped_bytes: c.dropped_bytes,
            passed_packets: c.passed_packets,
            passed_bytes: c.passed_bytes,
        }
    }
}

/// The hook the datapath runs in on one interface, and why it was chosen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceHook {
    pub interface: String,
    /// `xdp`, `tc` or `xdp-generic`.
    pub hook: String,
    pub why: String,
}

/// The state database, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateStatus {
    pub path: PathBuf,
    /// On disk, with its write-ahead log.
    pub bytes: u64,
    /// Why the last commit (or the opening) failed, while it does.
    pub error: Option<String>,
}

/// The fleet as one host sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStatus {
    /// The engine (no password).
    pub engine: String,
    /// This host's name in the fleet.
    pub name: String,
    pub connected: bool,
    /// Hosts whose heartbeat is alive, this one among them.
    pub peers: Vec<String>,
    /// Failures, bans and unbans waiting for the engine.
    pub outbox: u64,
    /// Dropped because the outbox was full.
    pub dropped: u64,
    /// How far the last ban applied here is behind the stream's newest entry (ms).
    pub lag_ms: Option<i64>,
    pub last_error: Option<String>,
    pub published: u64,
    pub applied: u64,
    pub refused: u64,
    /// Whether bans are signed and checked (`key_file`).
    pub signed: bool,
}

/// CrowdSec's decision stream as this host reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrowdSecStatus {
    /// The Local API.
    pub url: String,
    /// The jail of its bans.
    pub jail: String,
    pub interval_ms: u64,
    pub connected: bool,
    /// When the last answer came (ms since the epoch).
    pub last_pull: Option<i64>,
    pub last_error: Option<String>,
    pub pulls: u64,
    pub errors: u64,
    /// Bans in force that a decision holds.
    pub decisions: u64,
    pub applied: u64,
    pub refused: u64,
}

/// What the daemon answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    Pong,
    Done {
        message: String,
    },
    Overview {
        jails: Vec<String>,
        currently_banned: u64,
        /// Empty in a dry run, which attaches nothing.
        #[serde(default)]
        interfaces: Vec<InterfaceHook>,
        /// The fleet, when this host is part of one.
        #[serde(default)]
        fleet: Option<FleetStatus>,
        /// CrowdSec's decision stream, when `[crowdsec]` is set.
        #[serde(default)]
        crowdsec: Option<Box<CrowdSecStatus>>,
        /// The state database; none in a dry run.
        #[serde(default)]
        state: Option<StateStatus>,
    },
    Jail(JailStatus),
    Bans {
        bans: Vec<BanInfo>,
    },
    /// A jail's setting: `shown` as ban-agent says it (durations as `10m`), `value` as
    /// fail2ban's server returns it.
    Setting {
        shown: String,
        value: Setting,
    },
    /// Bans made or lifted: how many (what fail2ban-client prints), and what happened.
    Count {
        count: u64,
        message: String,
    },
    Stats {
        jails: BTreeMap<String, JailStats>,
        #[serde(default)]
        interfaces: Vec<InterfaceHook>,
    },
    /// The request failed; the message says why and what to do.
    Error {
        message: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    version: u32,
    #[serde(flatten)]
    body: T,
}

/// Why a line could not be read as a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error(
        "the other side speaks control protocol version {theirs}, this ban-agent speaks \
         {VERSION}: run the ban-agent binary of the running daemon's version"
    )]
    Version { theirs: u32 },
    #[error("malformed control message: {0}")]
    Malformed(String),
    #[error("control message longer than {max} bytes")]
    TooLong { max: usize },
}

/// One message as a line (with its `\n`).
pub fn encode<T: Serialize>(body: &T) -> String {
    let envelope = Envelope {
        version: VERSION,
        body,
    };
    // These plain types have no maps with non-string keys and no I/O: encoding cannot fail.
    let mut line = serde_json::to_string(&envelope).expect("control messages encode");
    line.push('\n');
    line
}

/// A request from a line, checked for its length and version first.
pub fn decode<T: for<'de> Deserialize<'de>>(line: &str) -> Result<T, ProtocolError> {
    if line.len() > MAX_LINE {
        return Err(ProtocolError::TooLong { max: MAX_LINE });
    }
    decode_unbounded(line)
}

/// A reply from a line, checked for its length and version first.
pub fn decode_reply(line: &str) -> Result<Reply, ProtocolError> {
    if line.len() > MAX_REPLY {
        return Err(ProtocolError::TooLong { max: MAX_REPLY });
    }
    decode_unbounded(line)
}

fn decode_unbounded<T: for<'de> Deserialize<'de>>(line: &str) -> Result<T, ProtocolError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        version: u32,
    }
    let version: VersionOnly =
        serde_json::from_str(line).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    if version.version != VERSION {
        return Err(ProtocolError::Version {
            theirs: version.version,
        });
    }
    let envelope: Envelope<T> =
        serde_json::from_str(line).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    Ok(envelope.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().expect("a network")
    }

    #[test]
    fn every_request_goes_through_a_line_and_back() {
        let requests = [
            Request::Ping,
            Request::Status { jail: None },
            Request::Status {
                jail: Some("auth".into()),
            },
            Request::Ban {
                jail: "auth".into(),
                target: net("192.0.2.7/32"),
                seconds: Some(3600),
                permanent: false,
                force: false,
                local: false,
            },
            Request::Unban {
                target: net("2001:db8::/64"),
                jail: None,
                local: false,
            },
            Request::UnbanAll,
            Request::BanIp {
                jail: "auth".into(),
                targets: vec![net("192.0.2.7/32"), net("198.51.100.0/24")],
            },
            Request::UnbanIp {
                jail: None,
                targets: vec![net("192.0.2.7/32")],
                report_absent: true,
            },
            Request::Banned {
                target: None,
                jail: Some("auth".into()),
            },
            Request::Get {
                jail: "auth".into(),
                key: JailKey::Ignoreip,
            },
            Request::AddIgnoreIp {
                jail: "auth".into(),
                target: net("198.51.100.0/24"),
            },
            Request::Reload { jail: None },
            Request::Stop { detach: true },
            Request::Stats,
        ];
        for request in requests {
            let line = encode(&request);
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            assert_eq!(decode::<Request>(line.trim_end()), Ok(request));
        }
        let reply = Reply::Bans {
            bans: vec![BanInfo {
                jail: "auth".into(),
                target: net("192.0.2.7/32"),
                seconds_left: None,
                expires_at: None,
                failures: 0,
                banned_at: Some(1_795_518_000_000),
            }],
        };
        assert_eq!(decode::<Reply>(encode(&reply).trim_end()), Ok(reply));
    }

    #[test]
    fn the_wire_format_is_plain_json() {
        assert_eq!(
            encode(&Request::Ban {
                jail: "auth".into(),
                target: net("192.0.2.7/32"),
                seconds: None,
                permanent: false,
                force: false,
                local: false,
            }),
            "{\"version\":2,\"command\":\"ban\",\"jail\":\"auth\",\"target\":\"192.0.2.7/32\",\"seconds\":null,\"permanent\":false,\"force\":false,\"local\":false}\n"
        );
    }

    /// A listing of many bans is longer than any request may be, and still a reply.
    #[test]
    fn a_reply_may_be_longer_than_a_request() {
        let bans = (0..20_000u32)
            .map(|i| BanInfo {
                jail: "auth".into(),
                target: IpNet::from(std::net::IpAddr::V6(std::net::Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0,
                    0,
                    0,
                    0,
                    (i >> 16) as u16,
                    i as u16,
                ))),
                seconds_left: Some(600),
                expires_at: Some(1_795_521_600_000),
                failures: 5,
                banned_at: Some(1_795_518_000_000),
            })
            .collect();
        let line = encode(&Reply::Bans { bans });
        assert!(line.len() > MAX_LINE, "{} bytes", line.len());
        assert!(matches!(
            decode::<Request>(line.trim_end()),
            Err(ProtocolError::TooLong { .. })
        ));
        assert!(matches!(
            decode_reply(line.trim_end()),
            Ok(Reply::Bans { bans }) if bans.len() == 20_000
        ));
    }

    #[test]
    fn other_versions_and_garbage_are_refused_with_a_reason() {
        assert_eq!(
            decode::<Request>(r#"{"version":1,"command":"ping"}"#),
            Err(ProtocolError::Version { theirs: 1 })
        );
        assert!(matches!(
            decode::<Request>(r#"{"version":2,"command":"format_disk"}"#),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            decode::<Request>("not json"),
            Err(ProtocolError::Malformed(_))
        ));
        let long = "x".repeat(MAX_LINE + 1);
        assert_eq!(
            decode::<Request>(&long),
            Err(ProtocolError::TooLong { max: MAX_LINE })
        );
    }
}
