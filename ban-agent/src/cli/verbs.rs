//! The daemon's verbs, as fail2ban-client has them: each sends one request over the
//! control socket and prints the reply, for people or (`--json`) for scripts.

use std::{path::PathBuf, time::Duration};

use anyhow::bail;
use clap::{Subcommand, ValueEnum};

use super::parse_target;
use crate::{
    clock::wall_text,
    config::DEFAULT_SOCKET,
    control::{
        client,
        protocol::{BanInfo, JailKey, JailStatus, Reply, Request, SetKey},
    },
    datapath::show,
};

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Jails and bans in force; with JAIL, that jail in detail (failures, files, bans).
    #[command(after_help = "Examples:\n  ban-agent status\n  ban-agent status fastapi-auth --json")]
    Status {
        /// A jail's name, as `ban-agent status` lists them.
        jail: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Ban an address or a network in a jail, for the jail's bantime unless --for says.
    #[command(
        after_help = "Examples:\n  ban-agent ban fastapi-auth 192.0.2.7\n  ban-agent ban fastapi-auth 2001:db8::/64 --for 2h\n  ban-agent ban fastapi-auth 198.51.100.9 --for permanent\n  ban-agent ban fastapi-auth 198.51.100.9 --force   (inside ignoreip)\n\nLoopback, unspecified and the host's own addresses are never banned, --force or not."
    )]
    Ban {
        /// A jail's name, as `ban-agent status` lists them.
        jail: String,
        /// Address or CIDR.
        target: String,
        /// How long ("90s", "1h 30m", "2d"), or "permanent".
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        /// Ban even though the target is in the jail's ignoreip.
        #[arg(long)]
        force: bool,
        /// On this host only: with a [fleet], bans reach every host unless --local.
        #[arg(long)]
        local: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Lift a ban, in every jail that holds it or in one; --all lifts every ban.
    #[command(
        after_help = "Examples:\n  ban-agent unban 192.0.2.7\n  ban-agent unban 2001:db8::/64 --jail fastapi-auth\n  ban-agent unban --all"
    )]
    Unban {
        /// Address or CIDR, as it was banned.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        target: Option<String>,
        /// Only in this jail (a name, as `ban-agent status` lists them).
        #[arg(long)]
        jail: Option<String>,
        /// Lift every ban of every jail (on this host).
        #[arg(long, conflicts_with = "jail")]
        all: bool,
        /// On this host only: with a [fleet], unbans reach every host unless --local.
        #[arg(long)]
        local: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Which jails ban an address (or every ban), and until when.
    #[command(after_help = "Examples:\n  ban-agent banned\n  ban-agent banned 192.0.2.7")]
    Banned {
        /// Address or CIDR; bans that contain it or lie inside it are listed.
        target: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Read a jail's setting as the daemon applies it.
    #[command(
        after_help = "Examples:\n  ban-agent get fastapi-auth maxretry\n  ban-agent get fastapi-auth ignoreip"
    )]
    Get {
        /// A jail's name, as `ban-agent status` lists them.
        jail: String,
        #[arg(value_enum)]
        key: JailKey,
        #[command(flatten)]
        conn: Conn,
    },
    /// Change a jail's ignoreip, bantime, findtime or maxretry until the next reload, as
    /// `fail2ban-client set` does.
    #[command(
        after_help = "Examples:\n  ban-agent set fastapi-auth addignoreip 198.51.100.0/24\n  \
                            ban-agent set fastapi-auth bantime 1d\n  \
                            ban-agent set fastapi-auth maxretry 3"
    )]
    Set {
        /// A jail's name.
        jail: String,
        #[arg(value_enum)]
        action: SetAction,
        /// An address or CIDR (ignoreip), a duration (bantime, findtime) or a count
        /// (maxretry).
        value: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Re-read the configuration (like SIGHUP) without lifting bans; jails removed from it
    /// have their bans lifted. With JAIL, only that jail.
    #[command(after_help = "Examples:\n  ban-agent reload\n  ban-agent reload fastapi-auth")]
    Reload {
        /// A jail's name, as `ban-agent status` lists them.
        jail: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Stop the daemon. Bans stay in force in the kernel unless --detach.
    #[command(after_help = "Examples:\n  ban-agent stop\n  ban-agent stop --detach")]
    Stop {
        /// Also detach the program (XDP or tc) and lift every ban (saved bans return at
        /// the next start).
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Check that the daemon answers.
    #[command(after_help = "Example:\n  ban-agent ping")]
    Ping {
        #[command(flatten)]
        conn: Conn,
    },
    /// Packets and bytes dropped (and passed) per jail, from the kernel counters, and the
    /// hook of each interface.
    #[command(after_help = "Examples:\n  ban-agent stats\n  ban-agent stats --json")]
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

/// How a verb reaches the daemon.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Conn {
    /// The daemon's control socket [default: the configuration's `socket`,
    /// /run/ban-agent.sock].
    #[arg(long, env = "BAN_AGENT_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

impl Verb {
    /// The socket this verb names, if it names one.
    fn socket(&self) -> Option<PathBuf> {
        let (Self::Status { conn, .. }
        | Self::Ban { conn, .. }
        | Self::Unban { conn, .. }
        | Self::Banned { conn, .. }
        | Self::Get { conn, .. }
        | Self::Set { conn, .. }
        | Self::Reload { conn, .. }
        | Self::Stop { conn, .. }
        | Self::Ping { conn }
        | Self::Stats { conn, .. }) = self;
        conn.socket.clone()
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SetAction {
    Addignoreip,
    Delignoreip,
    Bantime,
    Findtime,
    Maxretry,
}

/// Sends the verb's request to the daemon at its `--socket` (else `fallback`, the one given
/// before the verb) and prints the reply.
pub fn run(verb: Verb, fallback: Option<PathBuf>) -> anyhow::Result<()> {
    let socket = verb
        .socket()
        .or(fallback)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let json = matches!(
        verb,
        Verb::Status { json: true, .. }
            | Verb::Banned { json: true, .. }
            | Verb::Stats { json: true, .. }
    );
    let request = request(verb)?;
    let reply = client::call(&socket, &request)?;
    if let Reply::Error { message } = &reply {
        bail!("{message}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
        return Ok(());
    }
    print(&reply);
    Ok(())
}

fn request(verb: Verb) -> anyhow::Result<Request> {
    Ok(match verb {
        Verb::Status { jail, .. } => Request::Status { jail },
        Verb::Ban {
            jail,
            target,
            duration,
            force,
            local,
            ..
        } => {
            let (seconds, permanent) = ban_length(duration.as_deref())?;
            Request::Ban {
                jail,
                target: parse_target(&target)?,
                seconds,
                permanent,
                force,
                local,
            }
        }
        Verb::Unban { all: true, .. } => Request::UnbanAll,
        Verb::Unban {
            target,
            jail,
            local,
            ..
        } => Request::Unban {
            target: parse_target(target.as_deref().unwrap_or_default())?,
            jail,
            local,
        },
        Verb::Banned { target, .. } => Request::Banned {
            target: target.as_deref().map(parse_target).transpose()?,
        },
        Verb::Get { jail, key, .. } => Request::Get { jail, key },
        Verb::Set {
            jail,
            action,
            value,
            ..
        } => set_request(jail, action, value)?,
        Verb::Reload { jail, .. } => Request::Reload { jail },
        Verb::Stop { detach, .. } => Request::Stop { detach },
        Verb::Ping { .. } => Request::Ping,
        Verb::Stats { .. } => Request::Stats,
    })
}

/// `ban --for`: seconds, or permanent; neither for the jail's bantime.
fn ban_length(duration: Option<&str>) -> anyhow::Result<(Option<u64>, bool)> {
    Ok(match duration.map(str::trim) {
        None => (None, false),
        Some("permanent" | "-1") => (None, true),
        Some(text) => {
            let d: Duration = crate::duration::parse(text).map_err(|e| {
                anyhow::anyhow!(
                    "--for: {e}; expected {}, or \"permanent\"",
                    crate::duration::UNITS_HELP
                )
            })?;
            (Some(d.as_secs().max(1)), false)
        }
    })
}

fn set_request(jail: String, action: SetAction, value: String) -> anyhow::Result<Request> {
    let key = match action {
        SetAction::Addignoreip => {
            let target = parse_target(&value)?;
            return Ok(Request::AddIgnoreIp { jail, target });
        }
        SetAction::Delignoreip => {
            let target = parse_target(&value)?;
            return Ok(Request::DelIgnoreIp { jail, target });
        }
        SetAction::Bantime => SetKey::Bantime,
        SetAction::Findtime => SetKey::Findtime,
        SetAction::Maxretry => SetKey::Maxretry,
    };
    Ok(Request::Set { jail, key, value })
}

fn print(reply: &Reply) {
    match reply {
        Reply::Pong => println!("pong"),
        Reply::Done { message } | Reply::Error { message } => println!("{message}"),
        Reply::Value { value } => println!("{value}"),
        Reply::Overview {
            jails,
            currently_banned,
            interfaces,
            fleet,
            state,
        } => {
            println!("Status");
            println!("|- Number of jail:\t{}", jails.len());
            println!("|- Currently banned:\t{currently_banned}");
            println!("|- Jail list:\t{}", jails.join(", "));
            if let Some(state) = state {
                let size = format!("{:.1} MB", state.bytes as f64 / 1e6);
                match &state.error {
                    None => println!("|- State:\t{} ({size})", state.path.display()),
                    Some(error) => println!("|- State:\tNOT SAVED: {error}"),
                }
            }
            if let Some(fleet) = fleet {
                print_fleet(fleet);
            }
            print_hooks(interfaces);
        }
        Reply::Jail(status) => print_jail(status),
        Reply::Bans { bans } => print_bans(bans),
        Reply::Stats { jails, interfaces } => {
            for hook in interfaces {
                println!("{}: {} ({})", hook.interface, hook.hook, hook.why);
            }
            println!(
                "{:<20} {:>14} {:>16} {:>14} {:>16}",
                "jail", "dropped_pkts", "dropped_bytes", "passed_pkts", "passed_bytes"
            );
            for (jail, s) in jails {
                println!(
                    "{jail:<20} {:>14} {:>16} {:>14} {:>16}",
                    s.dropped_packets, s.dropped_bytes, s.passed_packets, s.passed_bytes
                );
            }
        }
    }
}

fn print_jail(s: &JailStatus) {
    let banned: Vec<String> = s.banned.iter().map(show).collect();
    println!("Status for the jail: {}", s.name);
    println!("|- Filter");
    if !s.filter.is_empty() {
        println!("|  |- Filter:\t{}", s.filter);
    }
    println!("|  |- Currently failed:\t{}", s.currently_failed);
    println!("|  |- Total failed:\t{}", s.total_failed);
    if s.spared > 0 {
        println!("|  |- Spared:\t{} ({})", s.spared, s.spared_by);
    } else {
        println!("|  |- Spared:\t0");
    }
    println!("|  `- File list:\t{}", s.files.join(" "));
    println!("`- Actions");
    println!("   |- Currently banned:\t{}", s.currently_banned);
    println!("   |- Total banned:\t{}", s.total_banned);
    println!("   |- Ban time:\t{}", s.bantime);
    let more = s.currently_banned.saturating_sub(banned.len() as u64);
    if more > 0 {
        println!(
            "   `- Banned IP list:\t{} ... and {more} more (`ban-agent banned` lists them all)",
            banned.join(" ")
        );
    } else {
        println!("   `- Banned IP list:\t{}", banned.join(" "));
    }
}

fn print_bans(bans: &[BanInfo]) {
    if bans.is_empty() {
        println!("no ban");
        return;
    }
    for ban in bans {
        let until = match (ban.expires_at, ban.seconds_left) {
            (Some(end), Some(left)) => format!(
                "until {} ({} left)",
                wall_text(end),
                crate::duration::show(Duration::from_secs(left))
            ),
            _ => "permanent".to_owned(),
        };
        println!("{:<20} {:<43} {until}", ban.jail, show(&ban.target));
    }
}

/// The datapath's hook per interface, as the last branch of `status`.
fn print_fleet(f: &crate::control::protocol::FleetStatus) {
    println!("|- Fleet:\t{} as {}", f.engine, f.name);
    let state = if f.connected {
        "connected".to_owned()
    } else {
        format!(
            "NOT connected ({}): bans stay local until it is back",
            f.last_error.as_deref().unwrap_or("connecting")
        )
    };
    println!("|  |- Engine:\t{state}");
    println!(
        "|  |- Hosts alive:\t{} ({})",
        f.peers.len(),
        f.peers.join(", ")
    );
    println!(
        "|  |- Outbox:\t{}{}",
        f.outbox,
        if f.dropped > 0 {
            format!(" ({} dropped when full)", f.dropped)
        } else {
            String::new()
        }
    );
    println!(
        "|  |- Behind the stream:\t{}",
        f.lag_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"))
    );
    println!(
        "|  |- Published / applied / refused:\t{} / {} / {}",
        f.published, f.applied, f.refused
    );
    println!(
        "|  `- Signed bans:\t{}",
        if f.signed { "yes (key_file)" } else { "no" }
    );
}

fn print_hooks(interfaces: &[crate::control::protocol::InterfaceHook]) {
    if interfaces.is_empty() {
        println!("`- Datapath:\tnot attached (dry run, or no `interfaces`)");
        return;
    }
    println!("`- Datapath:");
    for (i, hook) in interfaces.iter().enumerate() {
        let branch = if i + 1 == interfaces.len() {
            "`-"
        } else {
            "|-"
        };
        println!(
            "   {branch} {}:\t{} ({})",
            hook.interface, hook.hook, hook.why
        );
    }
}
