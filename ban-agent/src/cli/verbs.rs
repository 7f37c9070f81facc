//! The daemon's verbs, as fail2ban-client has them: each sends one request over the
//! control socket and prints the reply, for people or (`--json`) for scripts.

use std::{path::PathBuf, time::Duration};

use anyhow::bail;
use clap::{Subcommand, ValueEnum};

use ipnet::IpNet;

use super::{fail2ban_shape as shape, parse_target};
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
    /// Jails and bans in force; with JAIL, that jail in detail (failures, files, bans), in
    /// fail2ban-client's layout with ban-agent's lines added.
    #[command(after_help = "Examples:\n  ban-agent status\n  ban-agent status fastapi-auth --json")]
    Status {
        /// A jail's name, as `ban-agent status` lists them.
        jail: Option<String>,
        /// fail2ban-client's flavor of a jail's status; only `basic`, its default.
        #[arg(hide = true, requires = "jail", value_parser = ["basic"])]
        flavor: Option<String>,
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
    /// Lift bans, in every jail that holds them or in one; --all lifts every ban.
    #[command(
        after_help = "Examples:\n  ban-agent unban 192.0.2.7\n  ban-agent unban 192.0.2.7 198.51.100.9\n  ban-agent unban 2001:db8::/64 --jail fastapi-auth\n  ban-agent unban --all"
    )]
    Unban {
        /// Addresses or CIDRs, as they were banned.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        targets: Vec<String>,
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
        /// Addresses or CIDRs; bans that contain one or lie inside one are listed.
        targets: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Read a jail's setting as the daemon applies it, or its bans (`banip`: addresses
    /// separated by spaces, as fail2ban-client prints them, earliest end first).
    #[command(
        after_help = "Examples:\n  ban-agent get fastapi-auth maxretry\n  ban-agent get fastapi-auth ignoreip\n  ban-agent get fastapi-auth banip --with-time"
    )]
    Get {
        /// A jail's name, as `ban-agent status` lists them.
        jail: String,
        #[arg(value_enum)]
        key: GetKey,
        /// With banip: a ban a line, with its start, length in seconds and end
        /// (`IP <tab>START + SECONDS = END`), as fail2ban-client's --with-time.
        #[arg(long)]
        with_time: bool,
        /// With banip: what separates the addresses instead of a space.
        #[arg(value_name = "SEPARATOR", conflicts_with = "with_time")]
        separator: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Ban or unban addresses in a jail (fail2ban-client's `banip` and `unbanip`: prints
    /// how many), or change its ignoreip, bantime, findtime or maxretry until the next
    /// reload, as `fail2ban-client set` does.
    #[command(
        after_help = "Examples:\n  ban-agent set fastapi-auth banip 192.0.2.7 198.51.100.9\n  \
                            ban-agent set fastapi-auth unbanip 192.0.2.7\n  \
                            ban-agent set fastapi-auth addignoreip 198.51.100.0/24\n  \
                            ban-agent set fastapi-auth bantime 1d\n  \
                            ban-agent set fastapi-auth maxretry 3"
    )]
    Set {
        /// A jail's name.
        jail: String,
        #[arg(value_enum)]
        action: SetAction,
        /// Addresses or CIDRs (banip, unbanip), an address or CIDR (addignoreip,
        /// delignoreip), a duration (bantime, findtime) or a count (maxretry).
        #[arg(required = true, value_name = "VALUE")]
        values: Vec<String>,
        /// With unbanip: fail, naming them, when some are not banned (the others are
        /// lifted); by default they are passed over, as fail2ban-client does.
        #[arg(long)]
        report_absent: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Re-read the configuration (like SIGHUP) without lifting bans; jails removed from it
    /// have their bans lifted. With JAIL, only that jail.
    #[command(
        after_help = "Examples:\n  ban-agent reload\n  ban-agent reload fastapi-auth\n  ban-agent reload --unban"
    )]
    Reload {
        /// A jail's name, as `ban-agent status` lists them.
        jail: Option<String>,
        /// Lift every ban first (fail2ban-client's `reload --unban`).
        #[arg(long)]
        unban: bool,
        /// Accepted for fail2ban-client's sake: a reload never stops a jail that stays.
        #[arg(long, hide = true)]
        restart: bool,
        /// Accepted for fail2ban-client's sake: a jail not in the configuration is an error.
        #[arg(long, hide = true)]
        if_exists: bool,
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
    /// This ban-agent's version (fail2ban-client's `version`).
    #[command(after_help = "Example:\n  ban-agent version")]
    Version,
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
        | Self::Stats { conn, .. }) = self
        else {
            return None;
        };
        conn.socket.clone()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SetAction {
    Banip,
    Unbanip,
    Addignoreip,
    Delignoreip,
    Bantime,
    Findtime,
    Maxretry,
}

/// What `get` reads: a jail's bans, or one of its settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetKey {
    Banip,
    Setting(JailKey),
}

impl ValueEnum for GetKey {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            Self::Banip,
            Self::Setting(JailKey::Bantime),
            Self::Setting(JailKey::Findtime),
            Self::Setting(JailKey::Maxretry),
            Self::Setting(JailKey::Ignoreip),
            Self::Setting(JailKey::Logpath),
            Self::Setting(JailKey::Maxlines),
            Self::Setting(JailKey::Actions),
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        match self {
            Self::Banip => Some(clap::builder::PossibleValue::new("banip")),
            Self::Setting(key) => key.to_possible_value(),
        }
    }
}

/// Whose output the verbs print: ban-agent's, or fail2ban-client's, line for line, for the
/// scripts and exporters that read it (the binary run as `fail2ban-client`). fail2ban's own
/// forms (`set JAIL banip`, `unbanip`, `get JAIL banip`) print fail2ban-client's output in
/// both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Ours,
    Fail2ban,
}

/// Sends the verb's requests to the daemon at its `--socket` (else `fallback`, the one
/// given before the verb) and prints the replies in `style`.
pub fn run(verb: Verb, fallback: Option<PathBuf>, style: Style) -> anyhow::Result<()> {
    let socket = verb
        .socket()
        .or(fallback)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let call = |request: Request| -> anyhow::Result<Reply> {
        match client::call(&socket, &request)? {
            Reply::Error { message } => bail!("{message}"),
            reply => Ok(reply),
        }
    };
    let json = matches!(
        verb,
        Verb::Status { json: true, .. }
            | Verb::Banned { json: true, .. }
            | Verb::Stats { json: true, .. }
    );
    if json {
        let request = match verb {
            Verb::Status { jail, .. } => Request::Status { jail },
            Verb::Banned { targets, .. } => Request::Banned {
                target: one_target(&targets)?,
                jail: None,
            },
            _ => Request::Stats,
        };
        println!("{}", serde_json::to_string_pretty(&call(request)?)?);
        return Ok(());
    }
    println!("{}", answer(verb, &call, style)?);
    Ok(())
}

/// What the daemon answers `verb`, as `style` prints it.
fn answer(
    verb: Verb,
    call: &impl Fn(Request) -> anyhow::Result<Reply>,
    style: Style,
) -> anyhow::Result<String> {
    // fail2ban-client's fixed words for what ban-agent says in its own.
    let either = |ours: String, fail2ban: &dyn Fn(String) -> String| match style {
        Style::Ours => ours,
        Style::Fail2ban => fail2ban(ours),
    };
    Ok(match verb {
        Verb::Version => either(format!("ban-agent {}", env!("CARGO_PKG_VERSION")), &|_| {
            env!("CARGO_PKG_VERSION").to_owned()
        }),
        Verb::Status { jail, .. } => status(call, jail, style)?,
        Verb::Ban {
            jail,
            target,
            duration,
            force,
            local,
            ..
        } => {
            let (seconds, permanent) = ban_length(duration.as_deref())?;
            ours(&call(Request::Ban {
                jail,
                target: parse_target(&target)?,
                seconds,
                permanent,
                force,
                local,
            })?)
        }
        Verb::Unban { all: true, .. } => counted(&call(Request::UnbanAll)?, style),
        Verb::Unban {
            targets,
            jail,
            local,
            ..
        } => unban(call, &targets, jail, local, style)?,
        Verb::Banned { targets, .. } => banned(call, &targets, style)?,
        Verb::Get {
            jail,
            key,
            with_time,
            separator,
            ..
        } => get(call, &jail, key, with_time, separator.as_deref(), style)?,
        Verb::Set {
            jail,
            action,
            values,
            report_absent,
            ..
        } => set(call, jail, action, values, report_absent, style)?,
        Verb::Reload {
            jail, unban: lift, ..
        } => {
            let mut said = Vec::new();
            if lift {
                said.push(ours(&call(Request::UnbanAll)?));
            }
            said.push(ours(&call(Request::Reload { jail })?));
            either(said.join("\n"), &|_| "OK".to_owned())
        }
        Verb::Stop { detach, .. } => either(ours(&call(Request::Stop { detach })?), &|_| {
            "Shutdown successful".to_owned()
        }),
        Verb::Ping { .. } => either(ours(&call(Request::Ping)?), &|pong| {
            format!("Server replied: {pong}")
        }),
        Verb::Stats { .. } => ours(&call(Request::Stats)?),
    })
}

/// `get JAIL KEY`: the jail's bans (fail2ban-client's list in either style), or a
/// setting.
fn get(
    call: &impl Fn(Request) -> anyhow::Result<Reply>,
    jail: &str,
    key: GetKey,
    with_time: bool,
    separator: Option<&str>,
    style: Style,
) -> anyhow::Result<String> {
    let key = match key {
        GetKey::Banip => {
            let bans = in_order(jail_bans(call, jail)?);
            return Ok(shape::ban_list(&bans, with_time, separator));
        }
        GetKey::Setting(key) => key,
    };
    if with_time || separator.is_some() {
        bail!("--with-time and a separator go with `get {jail} banip`");
    }
    let request = Request::Get {
        jail: jail.to_owned(),
        key,
    };
    Ok(match call(request)? {
        Reply::Setting { value, .. } if style == Style::Fail2ban => {
            shape::setting(jail, key, &value)
        }
        reply => ours(&reply),
    })
}

/// `status [JAIL]`.
fn status(
    call: &impl Fn(Request) -> anyhow::Result<Reply>,
    jail: Option<String>,
    style: Style,
) -> anyhow::Result<String> {
    let Some(jail) = jail else {
        return Ok(match call(Request::Status { jail: None })? {
            Reply::Overview { jails, .. } if style == Style::Fail2ban => shape::overview(&jails),
            reply => ours(&reply),
        });
    };
    Ok(
        match call(Request::Status {
            jail: Some(jail.clone()),
        })? {
            Reply::Jail(mut status) if style == Style::Fail2ban => {
                // fail2ban-client lists every ban; the reply holds the first thousand.
                if status.currently_banned > status.banned.len() as u64 {
                    status.banned = in_order(jail_bans(call, &jail)?)
                        .into_iter()
                        .map(|ban| ban.target)
                        .collect();
                }
                shape::jail_status(&status)
            }
            reply => ours(&reply),
        },
    )
}

/// `unban TARGET...`: each in every jail (or `jail`); ban-agent says what it lifted and
/// fails on a target not banned, fail2ban-client counts and passes over it.
fn unban(
    call: &impl Fn(Request) -> anyhow::Result<Reply>,
    targets: &[String],
    jail: Option<String>,
    local: bool,
    style: Style,
) -> anyhow::Result<String> {
    let targets = parse_targets(targets)?;
    if style == Style::Fail2ban {
        let request = Request::UnbanIp {
            jail,
            targets,
            report_absent: false,
        };
        return Ok(counted(&call(request)?, style));
    }
    let mut said = Vec::with_capacity(targets.len());
    for target in targets {
        said.push(ours(&call(Request::Unban {
            target,
            jail: jail.clone(),
            local,
        })?));
    }
    Ok(said.join("\n"))
}

/// `banned [TARGET...]`.
fn banned(
    call: &impl Fn(Request) -> anyhow::Result<Reply>,
    targets: &[String],
    style: Style,
) -> anyhow::Result<String> {
    if style == Style::Ours {
        let mut said = Vec::new();
        for target in one_or_each(targets)? {
            said.push(ours(&call(Request::Banned { target, jail: None })?));
        }
        return Ok(said.join("\n"));
    }
    let Reply::Overview { jails, .. } = call(Request::Status { jail: None })? else {
        bail!("the daemon answered `status` with something else");
    };
    let Reply::Bans { bans } = call(Request::Banned {
        target: None,
        jail: None,
    })?
    else {
        bail!("the daemon answered `banned` with something else");
    };
    Ok(shape::banned(
        &jails,
        &in_order(bans),
        &parse_targets(targets)?,
    ))
}

/// `set JAIL ACTION VALUE...`.
fn set(
    call: &impl Fn(Request) -> anyhow::Result<Reply>,
    jail: String,
    action: SetAction,
    values: Vec<String>,
    report_absent: bool,
    style: Style,
) -> anyhow::Result<String> {
    if report_absent && action != SetAction::Unbanip {
        bail!("--report-absent goes with `set {jail} unbanip`");
    }
    let ignoreip = |add: bool| -> anyhow::Result<String> {
        let mut said = Vec::with_capacity(values.len());
        for target in parse_targets(&values)? {
            let jail = jail.clone();
            said.push(ours(&call(if add {
                Request::AddIgnoreIp { jail, target }
            } else {
                Request::DelIgnoreIp { jail, target }
            })?));
        }
        Ok(said.join("\n"))
    };
    let (said, key) = match action {
        SetAction::Banip => {
            let targets = parse_targets(&values)?;
            return Ok(counted(
                &call(Request::BanIp { jail, targets })?,
                Style::Fail2ban,
            ));
        }
        SetAction::Unbanip => {
            let targets = parse_targets(&values)?;
            let request = Request::UnbanIp {
                jail: Some(jail),
                targets,
                report_absent,
            };
            return Ok(counted(&call(request)?, Style::Fail2ban));
        }
        SetAction::Addignoreip => (ignoreip(true)?, JailKey::Ignoreip),
        SetAction::Delignoreip => (ignoreip(false)?, JailKey::Ignoreip),
        SetAction::Bantime | SetAction::Findtime | SetAction::Maxretry => {
            let [value] = values.as_slice() else {
                bail!(
                    "`set {jail} {}` takes one value, not {}",
                    action
                        .to_possible_value()
                        .map_or_else(String::new, |v| v.get_name().to_owned()),
                    values.len()
                );
            };
            let (key, setting) = match action {
                SetAction::Bantime => (SetKey::Bantime, JailKey::Bantime),
                SetAction::Findtime => (SetKey::Findtime, JailKey::Findtime),
                _ => (SetKey::Maxretry, JailKey::Maxretry),
            };
            let request = Request::Set {
                jail: jail.clone(),
                key,
                value: value.clone(),
            };
            (ours(&call(request)?), setting)
        }
    };
    match style {
        Style::Ours => Ok(said),
        // fail2ban-client answers a change with the setting's new value.
        Style::Fail2ban => match call(Request::Get {
            jail: jail.clone(),
            key,
        })? {
            Reply::Setting { value, .. } => Ok(shape::setting(&jail, key, &value)),
            reply => Ok(ours(&reply)),
        },
    }
}

/// Every ban of `jail`.
fn jail_bans(
    call: &impl Fn(Request) -> anyhow::Result<Reply>,
    jail: &str,
) -> anyhow::Result<Vec<BanInfo>> {
    match call(Request::Banned {
        target: None,
        jail: Some(jail.to_owned()),
    })? {
        Reply::Bans { bans } => Ok(bans),
        _ => bail!("the daemon answered `banned` with something else"),
    }
}

/// Bans as fail2ban lists them: earliest end first (permanent ones last), then in the
/// order they were made.
fn in_order(mut bans: Vec<BanInfo>) -> Vec<BanInfo> {
    bans.sort_by_key(|ban| (ban.expires_at.is_none(), ban.expires_at, ban.banned_at));
    bans
}

/// A count (fail2ban-client's output), or what happened (ban-agent's).
fn counted(reply: &Reply, style: Style) -> String {
    match (reply, style) {
        (Reply::Count { count, .. }, Style::Fail2ban) => count.to_string(),
        (Reply::Count { message, .. }, Style::Ours) => message.clone(),
        (reply, _) => ours(reply),
    }
}

fn parse_targets(texts: &[String]) -> anyhow::Result<Vec<IpNet>> {
    texts.iter().map(|text| parse_target(text)).collect()
}

/// `--json` takes one target at most.
fn one_target(texts: &[String]) -> anyhow::Result<Option<IpNet>> {
    match texts {
        [] => Ok(None),
        [text] => parse_target(text).map(Some),
        _ => bail!("--json takes one address at most"),
    }
}

/// Every ban (no target), or each target's.
fn one_or_each(texts: &[String]) -> anyhow::Result<Vec<Option<IpNet>>> {
    if texts.is_empty() {
        return Ok(vec![None]);
    }
    Ok(parse_targets(texts)?.into_iter().map(Some).collect())
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

/// A line into a `String` (which cannot fail).
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {{
        let _infallible = std::fmt::Write::write_fmt($out, format_args!("{}\n", format_args!($($arg)*)));
    }};
}

/// A reply as ban-agent prints it.
fn ours(reply: &Reply) -> String {
    let mut out = String::new();
    print(&mut out, reply);
    out.trim_end_matches('\n').to_owned()
}

fn print(out: &mut String, reply: &Reply) {
    match reply {
        Reply::Pong => put!(out, "pong"),
        Reply::Done { message } | Reply::Error { message } | Reply::Count { message, .. } => {
            put!(out, "{message}")
        }
        Reply::Setting { shown, .. } => put!(out, "{shown}"),
        Reply::Overview {
            jails,
            currently_banned,
            interfaces,
            fleet,
            crowdsec,
            state,
        } => {
            put!(out, "Status");
            put!(out, "|- Number of jail:\t{}", jails.len());
            put!(out, "|- Currently banned:\t{currently_banned}");
            put!(out, "|- Jail list:\t{}", jails.join(", "));
            if let Some(state) = state {
                let size = format!("{:.1} MB", state.bytes as f64 / 1e6);
                match &state.error {
                    None => put!(out, "|- State:\t{} ({size})", state.path.display()),
                    Some(error) => put!(out, "|- State:\tNOT SAVED: {error}"),
                }
            }
            if let Some(fleet) = fleet {
                print_fleet(out, fleet);
            }
            if let Some(crowdsec) = crowdsec {
                print_crowdsec(out, crowdsec);
            }
            print_hooks(out, interfaces);
        }
        Reply::Jail(status) => print_jail(out, status),
        Reply::Bans { bans } => print_bans(out, bans),
        Reply::Stats { jails, interfaces } => {
            for hook in interfaces {
                put!(out, "{}: {} ({})", hook.interface, hook.hook, hook.why);
            }
            put!(
                out,
                "{:<20} {:>14} {:>16} {:>14} {:>16}",
                "jail",
                "dropped_pkts",
                "dropped_bytes",
                "passed_pkts",
                "passed_bytes"
            );
            for (jail, s) in jails {
                put!(
                    out,
                    "{jail:<20} {:>14} {:>16} {:>14} {:>16}",
                    s.dropped_packets,
                    s.dropped_bytes,
                    s.passed_packets,
                    s.passed_bytes
                );
            }
        }
    }
}

fn print_jail(out: &mut String, s: &JailStatus) {
    let banned: Vec<String> = s.banned.iter().map(show).collect();
    put!(out, "Status for the jail: {}", s.name);
    put!(out, "|- Filter");
    if !s.filter.is_empty() {
        put!(out, "|  |- Filter:\t{}", s.filter);
    }
    put!(out, "|  |- Currently failed:\t{}", s.currently_failed);
    put!(out, "|  |- Total failed:\t{}", s.total_failed);
    if s.spared > 0 {
        put!(out, "|  |- Spared:\t{} ({})", s.spared, s.spared_by);
    } else {
        put!(out, "|  |- Spared:\t0");
    }
    put!(out, "|  `- File list:\t{}", s.files.join(" "));
    put!(out, "`- Actions");
    put!(out, "   |- Currently banned:\t{}", s.currently_banned);
    put!(out, "   |- Total banned:\t{}", s.total_banned);
    put!(out, "   |- Ban time:\t{}", s.bantime);
    let more = s.currently_banned.saturating_sub(banned.len() as u64);
    if more > 0 {
        put!(
            out,
            "   `- Banned IP list:\t{} ... and {more} more (`ban-agent banned` lists them all)",
            banned.join(" ")
        );
    } else {
        put!(out, "   `- Banned IP list:\t{}", banned.join(" "));
    }
}

fn print_bans(out: &mut String, bans: &[BanInfo]) {
    if bans.is_empty() {
        put!(out, "no ban");
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
        put!(out, "{:<20} {:<43} {until}", ban.jail, show(&ban.target));
    }
}

/// The datapath's hook per interface, as the last branch of `status`.
fn print_fleet(out: &mut String, f: &crate::control::protocol::FleetStatus) {
    put!(out, "|- Fleet:\t{} as {}", f.engine, f.name);
    let state = if f.connected {
        "connected".to_owned()
    } else {
        format!(
            "NOT connected ({}): bans stay local until it is back",
            f.last_error.as_deref().unwrap_or("connecting")
        )
    };
    put!(out, "|  |- Engine:\t{state}");
    put!(
        out,
        "|  |- Hosts alive:\t{} ({})",
        f.peers.len(),
        f.peers.join(", ")
    );
    put!(
        out,
        "|  |- Outbox:\t{}{}",
        f.outbox,
        if f.dropped > 0 {
            format!(" ({} dropped when full)", f.dropped)
        } else {
            String::new()
        }
    );
    put!(
        out,
        "|  |- Behind the stream:\t{}",
        f.lag_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"))
    );
    put!(
        out,
        "|  |- Published / applied / refused:\t{} / {} / {}",
        f.published,
        f.applied,
        f.refused
    );
    put!(
        out,
        "|  `- Signed bans:\t{}",
        if f.signed { "yes (key_file)" } else { "no" }
    );
}

/// CrowdSec's decision stream, as a branch of `status`.
fn print_crowdsec(out: &mut String, c: &crate::control::protocol::CrowdSecStatus) {
    put!(
        out,
        "|- CrowdSec:\t{} every {}, into the jail {}",
        c.url,
        crate::duration::show(Duration::from_millis(c.interval_ms)),
        c.jail
    );
    let state = match (&c.last_error, c.connected) {
        (Some(error), _) => format!("NOT answering ({error}): the bans in force stay"),
        (None, true) => "answering".to_owned(),
        (None, false) => "not read yet".to_owned(),
    };
    put!(out, "|  |- Local API:\t{state}");
    put!(
        out,
        "|  |- Last read:\t{}",
        c.last_pull.map_or_else(|| "-".to_owned(), wall_text)
    );
    put!(out, "|  |- Decisions in force:\t{}", c.decisions);
    put!(
        out,
        "|  `- Applied / refused:\t{} / {}",
        c.applied,
        c.refused
    );
}

fn print_hooks(out: &mut String, interfaces: &[crate::control::protocol::InterfaceHook]) {
    if interfaces.is_empty() {
        put!(
            out,
            "`- Datapath:\tnot attached (dry run, or no `interfaces`)"
        );
        return;
    }
    put!(out, "`- Datapath:");
    for (i, hook) in interfaces.iter().enumerate() {
        let branch = if i + 1 == interfaces.len() {
            "`-"
        } else {
            "|-"
        };
        put!(
            out,
            "   {branch} {}:\t{} ({})",
            hook.interface,
            hook.hook,
            hook.why
        );
    }
}
