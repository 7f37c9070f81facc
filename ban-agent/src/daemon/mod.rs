//! `ban-agent run`: wires the agent to the world. Reads the configuration, opens the
//! datapath and attaches it, serves the control socket and the metrics, follows the logs
//! and keeps time. The decisions are the [`Agent`]'s.
//!
//! One loop owns the agent and waits for whichever comes first: a log changed, a control
//! request, the one-second tick, a signal. So a failure line becomes a kernel ban in the
//! same wake-up that read it.

mod agent;
mod crowdsec;
mod fleet;
mod follow;
mod guard;
mod jails;
mod kernel;
mod log_once;
mod persist;
mod requests;
mod restore;
mod table;
#[cfg(test)]
mod tests;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tracing::{info, warn};

pub use agent::{Agent, Setup};
pub use kernel::{Kernel, NoKernel};
pub use requests::After;

use crate::{
    clock::Now,
    config::Config,
    control::{
        protocol::InterfaceHook,
        server::{self, Call},
    },
    crowdsec::Pull,
    datapath::{self, Maps},
    events::Events,
    fleet::task::Incoming,
    metrics::{self, Metrics},
    tail::{self as watch, WatchMode},
};

/// How often the agent sweeps expired bans, refreshes metrics and saves its state; also
/// the polling interval of logs that inotify cannot watch.
const TICK: Duration = Duration::from_secs(1);
/// How long the stop waits for fail2ban's actions (their `actionstop` among them).
const FAIL2BAN_STOP: Duration = Duration::from_secs(30);

/// `ban-agent run` options.
#[derive(Clone, Debug)]
pub struct Options {
    pub config: PathBuf,
    /// Detect and report; write nothing to the kernel nor to the state file.
    pub dry_run: bool,
    /// Overrides the configuration's `socket`.
    pub socket: Option<PathBuf>,
}

/// Runs the daemon until SIGTERM, SIGINT or `ban-agent stop`.
pub fn run(config: Config, options: &Options) -> anyhow::Result<()> {
    // A jail whose plain `logpath` names no file is refused, as fail2ban refuses it,
    // unless it says `missing_log = "wait"` (a warning), or this is a dry run, which
    // protects nothing and may try a configuration before the app has logged.
    for missing in config.check_logs(options.dry_run)? {
        warn!("{missing}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config, options))
}

async fn serve(config: Config, options: &Options) -> anyhow::Result<()> {
    let socket = options
        .socket
        .clone()
        .unwrap_or_else(|| config.global.socket.clone());
    let access = server::Access::new(config.global.socket_group);
    let listener = server::bind(&socket, access)?;
    let result = serve_on(config, options, listener, access, &socket).await;
    server::remove(&socket);
    result
}

async fn serve_on(
    config: Config,
    options: &Options,
    listener: tokio::net::UnixListener,
    access: server::Access,
    socket: &std::path::Path,
) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let metrics_listener = match config.global.metrics {
        Some(address) => Some(metrics::bind(address).await?),
        None => None,
    };
    let pin_dir = config.global.pin_dir.clone();
    let fleet_config = config.global.fleet.clone();
    let crowdsec_config = config.global.crowdsec.clone();
    let mut agent = start_agent(config, options.dry_run, &metrics)?;
    let (fleet_entries, _no_fleet) =
        join_fleet(&mut agent, fleet_config.as_ref(), options.dry_run, &metrics)?;
    let (decisions, _no_crowdsec) = read_crowdsec(
        &mut agent,
        crowdsec_config.as_ref(),
        options.dry_run,
        &metrics,
    )?;
    let (calls, requests) = mpsc::channel::<Call>(64);
    let (shutdown, stopping) = tokio::sync::watch::channel(false);
    let control = tokio::spawn(server::serve(listener, calls, stopping, access));
    let metrics_task = metrics_listener.map(|listener| {
        if let Ok(address) = listener.local_addr() {
            info!(%address, "metrics at /metrics");
        }
        tokio::spawn(metrics::serve(listener, Arc::clone(&metrics)))
    });
    info!(
        socket = %socket.display(),
        jails = agent.jail_count(),
        dry_run = options.dry_run,
        "ban-agent running"
    );
    let mut inputs = Inputs {
        fleet_entries,
        decisions,
        requests,
        // The datapath is guarded only when there is one (not in a dry run).
        guard: (!options.dry_run).then(|| guard::Guard::new(&agent)),
        wakeups: watch_logs(&mut agent),
    };
    agent.fail2ban_actions(crate::events::actions::Step::Start);
    let detach = run_loop(&mut agent, &mut inputs).await?;
    agent.poll(Now::read());
    agent.commit();
    // fail2ban's actions end as fail2ban ends them: `actionstop`, after the commands
    // queued before it.
    agent.fail2ban_actions(crate::events::actions::Step::Stop);
    if let Some(events) = agent.events()
        && !events.flush(FAIL2BAN_STOP).await
    {
        warn!(
            "fail2ban's actions were still running {}s after the stop: left",
            FAIL2BAN_STOP.as_secs()
        );
    }
    // Replies already sent to their connections (the one to `stop` among them) are
    // written before the runtime, and every task with it, ends.
    // Requests still queued are answered "the daemon is stopping".
    drop(inputs);
    let _sent = shutdown.send(true);
    let _drained = control.await;
    if let Some(task) = metrics_task {
        task.abort();
    }
    drop(agent);
    if options.dry_run {
        info!("stopped (dry run: nothing was written)");
    } else if detach {
        datapath::detach(&pin_dir)?;
        info!("stopped; datapath detached, bans lifted (saved: they return at the next start)");
    } else {
        info!("stopped; the datapath stays attached and bans stay in force");
    }
    Ok(())
}

/// Opens the datapath (none in a dry run) and the state, and starts the agent on them.
fn start_agent(config: Config, dry_run: bool, metrics: &Arc<Metrics>) -> anyhow::Result<Agent> {
    let (kernel, hooks) = open_kernel(&config, dry_run)?;
    let now = Now::read();
    let (store, unavailable) = match dry_run {
        true => (None, None),
        false => match crate::store::Store::open(&config.global.state_dir, now.wall) {
            Ok(store) => (Some(store), None),
            // A full disk or a read-only folder must not leave the host unprotected.
            Err(e) if e.is_transient() => (None, Some(e)),
            Err(e) => return Err(e.into()),
        },
    };
    let setup = Setup {
        own: own_addresses(),
        zone: jiff::tz::TimeZone::system(),
        metrics: Arc::clone(metrics),
        events: Some(Events::spawn(Arc::clone(metrics))),
    };
    let mut agent = Agent::start(config, kernel, store, setup, now)?;
    if let Some(e) = unavailable {
        agent.open_state_later(&e);
    }
    agent.set_hooks(hooks);
    Ok(agent)
}

/// Starts the fleet's task, after the agent, which holds where to resume the stream.
/// Without a fleet (or in a dry run) the entries never come: the sender is kept, unused.
fn join_fleet(
    agent: &mut Agent,
    fleet: Option<&crate::config::Fleet>,
    dry_run: bool,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(mpsc::Receiver<Incoming>, Option<mpsc::Sender<Incoming>>)> {
    let fleet = fleet.filter(|_| {
        if dry_run {
            info!("dry run: the fleet is left alone (nothing is shared, nothing applied)");
        }
        !dry_run
    });
    let Some(fleet) = fleet else {
        return Ok(never());
    };
    let (link, entries) = crate::fleet::spawn(fleet, agent.fleet_resume(), Arc::clone(metrics))
        .with_context(|| format!("[fleet] in {}", agent.config_path().display()))?;
    agent.set_fleet(link);
    Ok((entries, None))
}

/// Starts reading CrowdSec's decisions, after the agent, whose jail takes them. Without
/// `[crowdsec]` (or in a dry run, which must not take the decisions meant for the agent
/// that runs) they never come: the sender is kept, unused.
fn read_crowdsec(
    agent: &mut Agent,
    crowdsec: Option<&crate::config::CrowdSec>,
    dry_run: bool,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(mpsc::Receiver<Pull>, Option<mpsc::Sender<Pull>>)> {
    let crowdsec = crowdsec.filter(|_| {
        if dry_run {
            info!("dry run: CrowdSec's decisions are left unread");
        }
        !dry_run
    });
    let Some(crowdsec) = crowdsec else {
        return Ok(never());
    };
    let (link, decisions) = crate::crowdsec::spawn(crowdsec, Arc::clone(metrics))
        .with_context(|| format!("[crowdsec] in {}", agent.config_path().display()))?;
    agent.set_crowdsec(link, crowdsec.jail.clone(), crowdsec.max_bantime);
    Ok((decisions, None))
}

/// A channel for a part that is off: nothing ever comes, as its sender is kept, unused
/// (dropping it would end the wait at once).
fn never<T>() -> (mpsc::Receiver<T>, Option<mpsc::Sender<T>>) {
    let (keep, nothing) = mpsc::channel(1);
    (nothing, Some(keep))
}

/// What the run loop waits on besides signals and time.
struct Inputs {
    fleet_entries: mpsc::Receiver<Incoming>,
    decisions: mpsc::Receiver<Pull>,
    requests: mpsc::Receiver<Call>,
    guard: Option<guard::Guard>,
    wakeups: watch::Wakeups,
}

/// Waits for whichever comes first (a log changed, a request, the fleet, a ban's end,
/// the tick, a signal) until the daemon stops; returns whether to detach the datapath.
async fn run_loop(agent: &mut Agent, inputs: &mut Inputs) -> anyhow::Result<bool> {
    let mut tick = tokio::time::interval(TICK);
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut user1 = signal(SignalKind::user_defined1()).context("cannot handle SIGUSR1")?;
    agent.poll(Now::read());
    let detach = loop {
        let next_end = agent.next_end();
        tokio::select! {
            () = inputs.wakeups.wait() => {
                rescan(agent, &mut inputs.wakeups, false);
                agent.poll(Now::read());
            }
            // A log ahead of its reader is read on, a budget per poll, between requests,
            // expiries and metrics: a fast writer delays bans, never the rest.
            () = std::future::ready(()), if agent.reading() => {
                agent.poll(Now::read());
            }
            Some(incoming) = inputs.fleet_entries.recv() => {
                agent.apply_fleet(incoming, Now::read());
            }
            Some(pull) = inputs.decisions.recv() => {
                agent.apply_crowdsec(pull, Now::read());
            }
            Some(call) = inputs.requests.recv() => {
                // Lines already written count before the answer, even if their inotify
                // wake-up has not come yet: `status` right after a write sees them.
                agent.poll(Now::read());
                let (reply, after) = agent.handle(call.request, Now::read());
                let _gone = call.reply.send(reply);
                match after {
                    After::Continue => {}
                    After::Reloaded => reloaded(agent, inputs),
                    After::Stop { detach } => break detach,
                }
            }
            () = until_boot(next_end), if next_end.is_some() => {
                agent.lift_ended(Now::read());
            }
            _ = tick.tick() => {
                let timer = !inputs.wakeups.watches_all();
                rescan(agent, &mut inputs.wakeups, timer);
                agent.sweep(Now::read());
                match crate::logging::reopen_if_rotated() {
                    Ok(true) => info!("the log file was moved or removed: opened it again"),
                    Ok(false) => {}
                    Err(e) => warn!("the log file cannot be opened again: {e}"),
                }
                if let Some(detach) = guarded(agent, inputs.guard.as_mut()) {
                    break detach;
                }
            }
            _ = hangup.recv() => {
                match agent.reload(None, Now::read()) {
                    Ok(message) => info!("SIGHUP: {message}"),
                    Err(e) => warn!(
                        "SIGHUP: the configuration was not reloaded: {}",
                        crate::error_text(&e)
                    ),
                }
                reloaded(agent, inputs);
            }
            _ = user1.recv() => match crate::logging::reopen() {
                Ok(()) => info!("SIGUSR1: the log file was opened again"),
                Err(e) => warn!("SIGUSR1: the log file cannot be opened again: {e}"),
            },
            _ = terminate.recv() => break false,
            _ = interrupt.recv() => break false,
        }
    };
    Ok(detach)
}

/// The guard's check of a tick: an interface that came back is attached again; what was
/// removed on purpose stops the daemon (`Some(detach)`).
fn guarded(agent: &mut Agent, guard: Option<&mut guard::Guard>) -> Option<bool> {
    let guard = guard?;
    match guard.check(agent) {
        guard::Check::Fine => None,
        guard::Check::Reattach => {
            guard.reattach(agent, "an interface came back");
            None
        }
        guard::Check::Removed { what, detach } => {
            warn!("{what}: stopping, as removed on purpose");
            Some(detach)
        }
    }
}

/// Loads the programs, attaches them to the configured interfaces (replacing a program
/// left attached by an earlier run without a gap) and returns the maps and the hooks.
fn open_kernel(
    config: &Config,
    dry_run: bool,
) -> anyhow::Result<(Box<dyn Kernel>, Vec<InterfaceHook>)> {
    if dry_run {
        info!("dry run: bans are reported, not written to the kernel nor saved");
        return Ok((Box::new(NoKernel), Vec::new()));
    }
    datapath::check_interfaces(&config.global.interfaces)
        .with_context(|| format!("`interfaces` in {}", config.path.display()))?;
    let hooks = guard::attach(&config.global, &config.path)?;
    let maps = Maps::open_pinned(&config.global.pin_dir)?;
    Ok((Box::new(maps), hooks))
}

/// After a reload: the datapath attached again only if its interfaces changed, the logs
/// watched anew only if their patterns changed (a new watcher misses what is written
/// while it starts), and what was written meanwhile read at once, not at the next event.
fn reloaded(agent: &mut Agent, inputs: &mut Inputs) {
    if let Some(guard) = &mut inputs.guard {
        guard.reloaded(agent);
    }
    if inputs.wakeups.patterns() != agent.log_patterns() {
        inputs.wakeups = watch_logs(agent);
    } else {
        watch_folders(agent, &mut inputs.wakeups);
    }
    agent.poll(Now::read());
}

/// Sleeps until the boot-clock instant `at` (ns), the clock the kernel's expiries use.
async fn until_boot(at: Option<u64>) {
    let left = at.map_or(0, |at| at.saturating_sub(crate::clock::boot_ns()));
    tokio::time::sleep(Duration::from_nanos(left)).await;
}

/// Expands the globs again when a watched folder's entries changed (or, with `timer`,
/// when inotify does not see every folder), and watches the folders that brings.
fn rescan(agent: &mut Agent, wakeups: &mut watch::Wakeups, timer: bool) {
    if !wakeups.entries_changed() && !timer {
        return;
    }
    agent.open_logs();
    watch_folders(agent, wakeups);
}

/// Watches the folders of the logs opened now; while that adds a folder, expands the
/// globs once more, so that an entry made in a folder before its watch was set is not
/// missed.
fn watch_folders(agent: &mut Agent, wakeups: &mut watch::Wakeups) {
    while wakeups.track(watch::folders_to_watch(
        &agent.log_patterns(),
        &agent.followed_files(),
    )) {
        agent.open_logs();
    }
}

/// Watches the logs the agent has just opened (at its start, or after a reload).
fn watch_logs(agent: &mut Agent) -> watch::Wakeups {
    let mut wakeups = watch::watch(&agent.log_patterns(), WatchMode::Inotify { interval: TICK });
    watch_folders(agent, &mut wakeups);
    if !wakeups.unwatched().is_empty() {
        warn!(
            folders = ?wakeups.unwatched(),
            "inotify cannot watch these folders: they are polled every {TICK:?}"
        );
    }
    wakeups
}

/// The host's addresses, read even without `ignoreself`: the agent applies that setting,
/// and a reload may turn it on.
fn own_addresses() -> Vec<std::net::IpAddr> {
    crate::ignore::own_addresses().unwrap_or_else(|e| {
        warn!("cannot list this host's addresses for ignoreself: {e}");
        Vec::new()
    })
}
