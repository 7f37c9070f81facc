//! Command-line definitions and printing. `main.rs` only parses and calls [`Cli::run`].

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use ipnet::IpNet;

mod by_hand;
mod fail2ban_shape;
mod generate;
mod import;
mod man;
mod personality;
mod test_filter;
mod verbs;

pub use personality::Personality;

use crate::{
    clock,
    datapath::{self, AttachMode, Datapath, DatapathOptions, JailPorts, Maps, Protocol},
};

/// Bans brute-forcing clients at packet level: failures in a log become XDP drops.
#[derive(Debug, Parser)]
#[command(name = "ban-agent", version, about, long_about = None)]
#[command(
    arg_required_else_help = true,
    after_help = "Examples:\n  ban-agent run --config /etc/ban-agent/ban-agent.toml\n  ban-agent status fastapi-auth\n  ban-agent set fastapi-auth unbanip 192.0.2.7\n  ban-agent test-filter /var/log/fastapi/access.log fastapi-auth\n  ban-agent -t"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Check the configuration and exit, as `fail2ban-client -t` (`ban-agent check
    /// --offline` on the default configuration file).
    #[arg(short = 't', long = "test")]
    test: bool,
    /// The daemon's control socket, given before the verb (`ban-agent --socket PATH
    /// status`); each verb and `run` also take `--socket`.
    #[arg(long, env = "BAN_AGENT_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: follow the jails' logs, ban in the kernel, serve the control socket.
    /// SIGHUP reloads the configuration; SIGTERM stops and leaves bans in force.
    #[command(
        after_help = "Examples:\n  ban-agent run --config /etc/ban-agent/ban-agent.toml\n  ban-agent run --config ./ban-agent.toml --dry-run"
    )]
    Run {
        /// The configuration file.
        #[arg(long, short, default_value = crate::config::DEFAULT_PATH, value_name = "FILE")]
        config: PathBuf,
        /// Detect and report bans (log, status, hooks) without writing them to the kernel
        /// or the state file; needs no BPF privileges.
        #[arg(long)]
        dry_run: bool,
        /// Listen on this control socket instead of the configuration's `socket`.
        #[arg(long, env = "BAN_AGENT_SOCKET", value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Check a configuration as `run` would (like `fail2ban-client -t`): the file, its
    /// filters, the interfaces and the saved state; exits non-zero with the same message.
    #[command(
        after_help = "Examples:\n  ban-agent check\n  ban-agent check --config ./ban-agent.toml"
    )]
    Check {
        /// The configuration file.
        #[arg(long, short, default_value = crate::config::DEFAULT_PATH, value_name = "FILE")]
        config: PathBuf,
        /// Contact no server: by default the mail settings' SMTP servers are asked for EHLO
        /// (and STARTTLS where it is required), each within a few seconds.
        #[arg(long)]
        offline: bool,
    },
    #[command(flatten)]
    Verb(verbs::Verb),
    /// Work on the kernel datapath directly, without a running daemon.
    #[command(
        subcommand,
        after_help = "Examples:\n  ban-agent datapath list\n  ban-agent datapath attach --interface eth0 --protect 0:tcp:8000\n  ban-agent datapath counters"
    )]
    Datapath(DatapathCommand),
    /// Run a filter over a log, like fail2ban-regex: lines matched, ignored and missed,
    /// hits per regex, date formats, the top addresses and who would be banned.
    #[command(after_help = test_filter::EXAMPLES)]
    TestFilter(test_filter::Args),
    /// Write a ban-agent configuration for fail2ban's enabled jails (jail.conf,
    /// jail.local, jail.d/), their filters read in place; lists what it leaves out. With
    /// --bans, carry fail2ban's bans in force over instead.
    #[command(
        after_help = "Examples:\n  ban-agent import-fail2ban > /etc/ban-agent/ban-agent.toml\n  ban-agent import-fail2ban /etc/fail2ban --output ban-agent.toml && ban-agent check --config ban-agent.toml\n  ban-agent import-fail2ban --bans                  # from /var/lib/fail2ban/fail2ban.sqlite3\n  ban-agent import-fail2ban --bans ./fail2ban.sqlite3 --config ./ban-agent.toml"
    )]
    ImportFail2ban {
        /// fail2ban's configuration folder.
        #[arg(default_value = "/etc/fail2ban", value_name = "DIR")]
        dir: PathBuf,
        /// Write the configuration here instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Carry fail2ban's bans over from its database: each ban in force is banned in
        /// the jail of the same name until it ends there, and each address's count of bans
        /// joins the history `bantime_increment` reads. To the running daemon; when none
        /// runs, into the configuration's state, for its next start.
        #[arg(
            long,
            value_name = "DB",
            num_args = 0..=1,
            default_missing_value = crate::fail2ban::bans::DEFAULT_DB,
            conflicts_with = "output"
        )]
        bans: Option<PathBuf>,
        /// With --bans: ban-agent's configuration (its jails, socket and state_dir).
        #[arg(long, short, default_value = crate::config::DEFAULT_PATH, value_name = "FILE")]
        config: PathBuf,
    },
    /// Write the manual pages and shell completions under DIR (for packagers).
    #[command(hide = true)]
    Generate {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct PinDir {
    /// Directory on bpffs where the maps and links are pinned.
    #[arg(long, default_value = ban_common::PIN_DIR, value_name = "DIR")]
    pin_dir: PathBuf,
}

/// Where a listing finds the names of the daemon's jails.
#[derive(Debug, clap::Args)]
struct JailNames {
    /// The daemon's configuration, whose `state_dir` names its jails (the kernel knows
    /// them by number); without it, or without a saved state, they are numbers.
    #[arg(long, short, default_value = crate::config::DEFAULT_PATH, value_name = "FILE")]
    config: PathBuf,
}

impl JailNames {
    /// Each jail index's name, as the daemon's state keeps them; none (with a warning when
    /// the configuration or the state cannot be read) when there is no daemon's state.
    fn read(&self) -> std::collections::BTreeMap<u32, String> {
        if !self.config.exists() {
            return std::collections::BTreeMap::new();
        }
        let ids = crate::config::Config::load(&self.config)
            .map_err(anyhow::Error::from)
            .and_then(|config| {
                let store = crate::store::Store::inspect(&config.global.state_dir)?;
                Ok(match store {
                    Some(store) => store.jail_ids()?,
                    None => std::collections::BTreeMap::new(),
                })
            });
        match ids {
            Ok(ids) => ids.into_iter().map(|(name, id)| (id, name)).collect(),
            Err(e) => {
                eprintln!(
                    "warning: jails are shown by number: {} ({})",
                    crate::error_text(&e),
                    self.config.display()
                );
                std::collections::BTreeMap::new()
            }
        }
    }

    /// A jail's name, else its number.
    fn of(names: &std::collections::BTreeMap<u32, String>, id: u32) -> String {
        names.get(&id).cloned().unwrap_or_else(|| id.to_string())
    }
}

#[derive(Debug, Subcommand)]
enum DatapathCommand {
    /// Load the programs, attach one to each interface (XDP or tc, as --mode says) and pin
    /// everything, then exit: the filter stays in force. Run again to upgrade the program
    /// in place; bans are kept. Prints the hook each interface got and why.
    #[command(
        after_help = "Examples:\n  ban-agent datapath attach --interface eth0 --protect 0:tcp:8000\n  \
                      ban-agent datapath attach -i eth0 --mode tc --protect 0:tcp:80,443"
    )]
    Attach {
        /// Interface to attach to (repeat for several).
        #[arg(long = "interface", short = 'i', required = true, value_name = "NAME")]
        interfaces: Vec<String>,
        /// The hook: auto (native XDP where the driver keeps every offload, tc elsewhere),
        /// xdp (native only), tc, or xdp-generic (testing only). An interface attached
        /// before keeps its hook with auto.
        #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
        mode: AttachMode,
        /// Attach tc as a clsact filter even where TCX links exist, as on Linux < 6.6.
        #[arg(long, hide = true)]
        tc_clsact: bool,
        /// What a jail protects, as JAIL:PROTOCOL:PORTS, PROTOCOL being tcp, udp or all
        /// and PORTS a comma-separated list or `all` (repeat for several jails).
        #[arg(long = "protect", value_name = "JAIL:PROTO:PORTS", value_parser = parse_protect)]
        protect: Vec<JailPorts>,
        #[command(flatten)]
        pin: PinDir,
    },
    /// Ban an address or a CIDR in a jail, below the daemon (the daemon does not know of
    /// it: prefer `ban-agent ban JAIL ADDR` when it runs).
    #[command(
        after_help = "Examples:\n  ban-agent datapath ban --jail 0 192.0.2.7            \
                            # for 1h\n  \
                            ban-agent datapath ban --jail 0 198.51.100.0/24 --for 2d\n  \
                            ban-agent datapath ban --jail 0 192.0.2.7 --for permanent"
    )]
    Ban {
        /// Jail index, as `datapath attach --protect` gave it (the daemon's jails are
        /// numbered in its state).
        #[arg(long)]
        jail: u32,
        /// Address or CIDR.
        target: String,
        /// How long ("10m", "2d", ..., or "permanent") [default: 1h].
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        /// Ban a prefix that holds one of this host's addresses or its default gateway, or
        /// a jail that protects no port yet.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        pin: PinDir,
    },
    /// Lift the ban of an address or a CIDR in a jail.
    #[command(
        after_help = "Examples:\n  ban-agent datapath unban --jail 0 192.0.2.7\n  \
                            ban-agent datapath unban --jail 0 198.51.100.0/24"
    )]
    Unban {
        /// Jail index.
        #[arg(long)]
        jail: u32,
        /// Address or CIDR, as it was banned.
        target: String,
        #[command(flatten)]
        pin: PinDir,
    },
    /// List the bans in the kernel maps with the time each has left, by jail (named as
    /// the daemon's state names them, else by number).
    #[command(after_help = "Examples:\n  ban-agent datapath list\n  \
                            ban-agent datapath list --pin-dir /sys/fs/bpf/other")]
    List {
        #[command(flatten)]
        pin: PinDir,
        #[command(flatten)]
        names: JailNames,
    },
    /// Packets and bytes dropped and passed per jail.
    #[command(after_help = "Example:\n  ban-agent datapath counters")]
    Counters {
        #[command(flatten)]
        pin: PinDir,
        #[command(flatten)]
        names: JailNames,
    },
    /// Detach the program (XDP or tc) from every interface and remove every pin: lifts
    /// all bans (a running daemon restores them at its next start).
    #[command(after_help = "Example:\n  ban-agent datapath detach")]
    Detach {
        #[command(flatten)]
        pin: PinDir,
    },
}

/// The program: `args` as the binary got them, its name first. Run as `fail2ban-client`
/// or `fail2ban-regex`, it takes those tools' command lines ([`Personality`]).
pub fn main(args: Vec<std::ffi::OsString>) -> std::process::ExitCode {
    let personality = Personality::of(args.first());
    let rest = args.get(1..).unwrap_or_default();
    let result = match personality {
        Personality::BanAgent => Cli::parse_from(&args).run(),
        Personality::Fail2banClient => personality::fail2ban_client(rest),
        Personality::Fail2banRegex => personality::fail2ban_regex(rest),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // A command line clap refused prints its own usage, as under our name (and
            // `--help` after a command is no failure).
            if let Some(usage) = error.downcast_ref::<clap::Error>() {
                let _printed = usage.print();
                if usage.exit_code() == 0 {
                    return std::process::ExitCode::SUCCESS;
                }
            } else {
                eprintln!("{}: {}", personality.name(), crate::error_text(&error));
            }
            // fail2ban-client's and fail2ban-regex's code for a failed command.
            match personality {
                Personality::BanAgent => std::process::ExitCode::FAILURE,
                _ => std::process::ExitCode::from(255),
            }
        }
    }
}

impl Cli {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<()> {
        // `-t`, as fail2ban-client's: the check, then the command if one is given.
        if self.test {
            check(std::path::Path::new(crate::config::DEFAULT_PATH), true)?;
            println!("OK: configuration test is successful");
        }
        let Some(command) = self.command else {
            return Ok(());
        };
        match command {
            Command::Run {
                config,
                dry_run,
                socket,
            } => {
                let loaded = crate::config::Config::load(&config)?;
                crate::logging::init(
                    loaded.global.log_level.as_deref(),
                    &loaded.global.log_target,
                )?;
                let options = crate::daemon::Options {
                    config,
                    dry_run,
                    socket: socket.or(self.socket),
                };
                crate::daemon::run(loaded, &options)
            }
            Command::Check { config, offline } => check(&config, offline),
            Command::Verb(verb) => {
                init_logging(None);
                verbs::run(verb, self.socket, verbs::Style::Ours)
            }
            Command::Datapath(command) => {
                init_logging(None);
                run_datapath(command)
            }
            Command::TestFilter(args) => {
                init_logging(None);
                test_filter::run(&args.resolved()?)
            }
            Command::ImportFail2ban {
                bans: Some(db),
                config,
                ..
            } => import::bans(&db, &config, self.socket),
            Command::ImportFail2ban { dir, output, .. } => import::run(&dir, output.as_deref()),
            Command::Generate { dir } => generate::run(&dir),
        }
    }
}

/// Logs to standard error ([`crate::logging`]): the verbs' and tools' logging.
pub fn init_logging(level: Option<&str>) {
    // Standard error is always there: this cannot fail.
    let _stderr = crate::logging::init(level, &crate::logging::LogTarget::Stderr);
}

fn run_datapath(command: DatapathCommand) -> anyhow::Result<()> {
    match command {
        DatapathCommand::Attach {
            interfaces,
            mode,
            tc_clsact,
            protect,
            pin,
        } => {
            datapath::check_interfaces(&interfaces)?;
            let mut datapath = Datapath::open(DatapathOptions {
                pin_dir: pin.pin_dir,
                tc_clsact,
                ..DatapathOptions::default()
            })?;
            datapath.maps().set_jails(&protect)?;
            for interface in &interfaces {
                let attached = datapath.attach(interface, mode)?;
                println!("{interface}: {attached}");
            }
            Ok(())
        }
        DatapathCommand::Ban {
            jail,
            target,
            duration,
            force,
            pin,
        } => by_hand::ban(jail, &target, duration.as_deref(), force, &pin.pin_dir),
        DatapathCommand::Unban { jail, target, pin } => {
            let target = parse_target(&target)?;
            if !Maps::open_pinned(&pin.pin_dir)?.unban(jail, target)? {
                bail!("{target} is not banned in jail {jail}");
            }
            Ok(())
        }
        DatapathCommand::List { pin, names } => {
            let maps = Maps::open_pinned(&pin.pin_dir)?;
            let names = names.read();
            let now = clock::boot_ns();
            for ban in maps.list()? {
                let left = match ban.expiry.remaining(now) {
                    None => "permanent".to_owned(),
                    Some(Duration::ZERO) => "expired".to_owned(),
                    Some(left) => crate::duration::show(round_secs(left)),
                };
                let jail = JailNames::of(&names, ban.jail);
                println!("{jail:<20} {:<43} {left}", ban.target);
            }
            Ok(())
        }
        DatapathCommand::Counters { pin, names } => {
            let maps = Maps::open_pinned(&pin.pin_dir)?;
            let names = names.read();
            println!(
                "{:<20} {:>14} {:>16} {:>14} {:>16}",
                "jail", "dropped_pkts", "dropped_bytes", "passed_pkts", "passed_bytes"
            );
            for (jail, c) in maps.counters()? {
                println!(
                    "{:<20} {:>14} {:>16} {:>14} {:>16}",
                    JailNames::of(&names, jail),
                    c.dropped_packets,
                    c.dropped_bytes,
                    c.passed_packets,
                    c.passed_bytes
                );
            }
            Ok(())
        }
        DatapathCommand::Detach { pin } => {
            datapath::detach(&pin.pin_dir)?;
            Ok(())
        }
    }
}

fn round_secs(duration: Duration) -> Duration {
    Duration::from_secs(duration.as_secs())
}

/// An address (a host route) or a CIDR.
fn parse_target(text: &str) -> anyhow::Result<IpNet> {
    if let Ok(addr) = text.parse::<std::net::IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    text.parse::<IpNet>().with_context(|| {
        format!("{text:?} is neither an IP address nor a CIDR (e.g. 192.0.2.7, 2001:db8::/64)")
    })
}

fn parse_protect(text: &str) -> Result<JailPorts, String> {
    let usage = || format!("{text:?}: expected JAIL:PROTOCOL:PORTS, e.g. 0:tcp:8000 or 1:all:all");
    let mut parts = text.splitn(3, ':');
    let (Some(jail), Some(protocol), Some(ports)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(usage());
    };
    let jail = jail.parse().map_err(|_| usage())?;
    let protocol = <Protocol as clap::ValueEnum>::from_str(protocol, false)
        .map_err(|_| format!("{text:?}: protocol must be tcp, udp or all"))?;
    let ports = if ports == "all" {
        None
    } else {
        let list = ports
            .split(',')
            .map(|port| port.trim().parse::<u16>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| format!("{text:?}: ports must be numbers 0-65535 or `all`"))?;
        Some(list)
    };
    Ok(JailPorts {
        jail,
        ports,
        protocol,
    })
}

/// `check`: what `run` validates before it starts, and nothing it would change.
fn check(path: &std::path::Path, offline: bool) -> anyhow::Result<()> {
    let config = crate::config::Config::load(path)?;
    datapath::check_interfaces(&config.global.interfaces)
        .with_context(|| format!("`interfaces` in {}", path.display()))?;
    crate::store::Store::inspect(&config.global.state_dir)?;
    for missing in config.check_logs(false)? {
        println!("warning: {missing}");
    }
    if config.global.interfaces.is_empty() {
        println!(
            "warning: no `interfaces` in {}: bans are kept in the maps but no packet is \
             dropped; name the interfaces the clients reach the app on",
            path.display()
        );
    }
    if !offline {
        for line in check_mail(&config) {
            println!("{line}");
        }
    }
    if let Some(fleet) = &config.global.fleet {
        let (_, signer) = crate::fleet::task::access(fleet)
            .with_context(|| format!("[fleet] in {}", path.display()))?;
        println!(
            "fleet: {} as {}, bans {} (the engine is not contacted)",
            fleet.endpoint.shown(),
            fleet.name,
            if signer.signs() {
                "signed"
            } else {
                "not signed (no key_file)"
            }
        );
    }
    if let Some(crowdsec) = &config.global.crowdsec {
        println!("{}", check_crowdsec(crowdsec, offline, path)?);
    }
    for line in check_actions(&config) {
        println!("{line}");
    }
    let jails: Vec<&str> = config.enabled().map(|jail| jail.name.as_str()).collect();
    let interfaces: Vec<String> = config
        .global
        .interfaces
        .iter()
        .map(|name| format!("{name} (mode {})", config.global.mode_of(name).name()))
        .collect();
    println!(
        "{}: OK; {} jail{} ({}), interfaces: {}",
        path.display(),
        jails.len(),
        if jails.len() == 1 { "" } else { "s" },
        jails.join(", "),
        if interfaces.is_empty() {
            "none (bans are kept, nothing is dropped)".to_owned()
        } else {
            interfaces.join(", ")
        }
    );
    Ok(())
}

/// The key file `[crowdsec]` names must be readable (an error when not); unless
/// `offline`, the Local API is asked whether it takes the key (a warning when not: the
/// daemon starts without it and retries).
fn check_crowdsec(
    crowdsec: &crate::config::CrowdSec,
    offline: bool,
    path: &std::path::Path,
) -> anyhow::Result<String> {
    crate::crowdsec::task::api_key(&crowdsec.api_key_file)
        .with_context(|| format!("[crowdsec] in {}", path.display()))?;
    let into = format!(
        "{} every {}, into the jail {}",
        crowdsec.url,
        crate::duration::show(crowdsec.interval),
        crowdsec.jail
    );
    Ok(if offline {
        format!("crowdsec: {into} (the Local API is not contacted)")
    } else {
        match crate::crowdsec::task::probe(crowdsec, MAIL_PROBE_TIMEOUT) {
            Ok(()) => format!("crowdsec: {into}; the Local API answers to the key"),
            Err(why) => format!(
                "warning: crowdsec: {why}; the daemon starts without it and tries again \
                 every second (`check --offline` skips this)"
            ),
        }
    })
}

/// A line per jail with fail2ban actions: which run, and which the kernel ban replaces.
fn check_actions(config: &crate::config::Config) -> Vec<String> {
    config
        .enabled()
        .filter(|jail| !jail.actions.is_empty())
        .map(|jail| {
            let (kernel, run): (Vec<_>, Vec<_>) = jail
                .actions
                .iter()
                .partition(|action| action.kind == crate::fail2ban::action::ActionKind::Kernel);
            let names = |actions: &[&crate::fail2ban::action::Fail2banAction]| {
                actions
                    .iter()
                    .map(|action| action.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut line = format!("actions ({}):", jail.name);
            if !run.is_empty() {
                line.push_str(&format!(" {} run (fail2ban's action.d)", names(&run)));
            }
            if !kernel.is_empty() {
                if !run.is_empty() {
                    line.push(';');
                }
                line.push_str(&format!(" {}: the kernel ban does it", names(&kernel)));
            }
            line
        })
        .collect()
}

/// Asks each mail setting's server, once per server, whether mail can go that way; a
/// line per server (`warning:` when it cannot).
fn check_mail(config: &crate::config::Config) -> Vec<String> {
    let mut ways: Vec<(&crate::config::MailVia, Vec<&str>)> = Vec::new();
    for jail in config.enabled() {
        for hook in [&jail.on_ban, &jail.on_unban].into_iter().flatten() {
            let Some(email) = &hook.email else { continue };
            match ways.iter_mut().find(|(via, _)| *via == &email.via) {
                Some((_, jails)) => jails.push(&jail.name),
                None => ways.push((&email.via, vec![&jail.name])),
            }
        }
    }
    if ways.is_empty() {
        return Vec::new();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return vec![format!("warning: cannot check the mail settings: {e}")],
    };
    ways.into_iter()
        .map(|(via, mut jails)| {
            jails.dedup();
            let jails = jails.join(", ");
            match runtime.block_on(crate::events::mail::probe(via, MAIL_PROBE_TIMEOUT)) {
                Ok(found) => format!("mail ({jails}): {found}"),
                Err(why) => format!(
                    "warning: mail ({jails}): {why}; bans still work, their mails would not \
                     go (`check --offline` skips this)"
                ),
            }
        })
        .collect()
}

/// How long `check` waits for each SMTP server.
const MAIL_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protect_specs_parse() {
        assert_eq!(
            parse_protect("0:tcp:8000,8443"),
            Ok(JailPorts {
                jail: 0,
                ports: Some(vec![8000, 8443]),
                protocol: Protocol::Tcp
            })
        );
        assert_eq!(
            parse_protect("3:all:all"),
            Ok(JailPorts {
                jail: 3,
                ports: None,
                protocol: Protocol::All
            })
        );
        assert!(parse_protect("0:sctp:1").is_err());
        assert!(parse_protect("0:tcp:70000").is_err());
        assert!(parse_protect("x").is_err());
    }

    #[test]
    fn targets_are_addresses_or_cidrs() {
        assert_eq!(
            parse_target("192.0.2.7").expect("address").to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(
            parse_target("2001:db8::/64").expect("CIDR").to_string(),
            "2001:db8::/64"
        );
        assert!(parse_target("example.com").is_err());
    }
}
