//! `cargo xtask run`: build, then run the agent in the foreground. With no configuration
//! it runs the example's (examples/fastapi-auth/ban-agent.toml) on the interface of the
//! default route, and starts the example app beside it.

use std::{
    path::PathBuf,
    process::{Child, Command, ExitStatus},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    Workspace,
    example::{self, App, Config},
    run,
};

#[derive(clap::Args)]
pub struct RunArgs {
    /// The configuration to run [default: examples/fastapi-auth/ban-agent.toml, with the
    /// example app started beside the agent].
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Attach the example configuration to this interface [default: the interface of the
    /// default route]. With --config, edit its `interfaces` instead.
    #[arg(long, value_name = "NAME", conflicts_with = "config")]
    interface: Option<String>,
    /// Do not start the example app (your own app writes the log).
    #[arg(long)]
    no_app: bool,
}

pub fn run_agent(ws: &Workspace, args: &RunArgs) -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!(
            "cargo xtask run attaches the datapath to a network interface: run it as root \
             (e.g. `sudo -E env PATH=\"$PATH\" cargo xtask run`)"
        );
    }
    run(&mut ws.cargo(&["build", "--release", "--package", "ban-agent"]))?;
    let agent = ws.root.join("target/release/ban-agent");
    let work = ws.root.join("target/xtask-run");
    let (config_path, app_log) = prepare_config(ws, args, &work)?;
    let _app = if let Some(access_log) = &app_log {
        let app = App::start(
            ws,
            |python| Command::new(python),
            access_log.as_ref(),
            &work.join("app.log"),
            || example::listening("127.0.0.1:8000"),
        )?;
        println!(
            "example app: listening on port 8000 (every address), logging to {access_log}; \
             its output is in {}",
            work.join("app.log").display()
        );
        Some(app)
    } else {
        None
    };
    say_how(&agent, &config_path, app_log.is_some());
    // SIGINT or SIGTERM to this process (a terminal's Ctrl-C, or `kill` from elsewhere)
    // stops the agent, which is waited for, then the app (dropped on return).
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .context("cannot handle SIGINT and SIGTERM")?;
    let mut child = Command::new(&agent)
        .args(["run", "--config"])
        .arg(&config_path)
        .spawn()
        .with_context(|| format!("cannot start {}", agent.display()))?;
    let status = supervise(&mut child, &stop, Duration::from_secs(10))
        .context("cannot wait for ban-agent")?;
    if !status.success() && !stop.load(Ordering::Relaxed) {
        bail!("ban-agent exited with {status}");
    }
    let state_dir = state_dir(&config_path);
    let log_folder = app_log
        .as_deref()
        .and_then(|log| std::path::Path::new(log).parent())
        .map(|folder| format!(", the app's log folder {}", folder.display()))
        .unwrap_or_default();
    println!(
        "\nstopped{}. What stays: the datapath on the interface, with its bans until they \
         expire; the state in {}{log_folder}. `{} datapath detach` removes the program and \
         every ban.",
        if app_log.is_some() {
            ", and the example app with it"
        } else {
            ""
        },
        state_dir.display(),
        agent.display()
    );
    Ok(())
}

/// The configuration to run and the log the example app writes (none for a
/// configuration of yours, or with --no-app). The example is copied with its interface
/// set, and the app writes the log its jail reads; a configuration of yours runs as it
/// is (its relative paths are relative to its own folder).
fn prepare_config(
    ws: &Workspace,
    args: &RunArgs,
    work: &std::path::Path,
) -> anyhow::Result<(PathBuf, Option<String>)> {
    Ok(match &args.config {
        Some(path) => (path.clone(), None),
        None => {
            let mut config = Config::example(ws)?;
            let interface = match &args.interface {
                Some(interface) => interface.clone(),
                None => default_route_interface()?,
            };
            config.set("interfaces", vec![toml::Value::from(interface.as_str())]);
            let path = work.join("ban-agent.toml");
            config.write(&path)?;
            let app_log = if args.no_app {
                None
            } else {
                let logpath = config.jail_value("logpath").and_then(toml::Value::as_str);
                Some(
                    logpath
                        .context("the example's jail has no logpath")?
                        .to_owned(),
                )
            };
            (path, app_log)
        }
    })
}

/// What to do while it runs.
fn say_how(agent: &std::path::Path, config_path: &std::path::Path, with_app: bool) {
    println!(
        "ban-agent: starting{}, configuration {}\n\
         In another terminal (as root):\n  \
         {agent} status {jail}\n  \
         curl -s -XPOST -H 'content-type: application/json' \
         -d '{{\"username\":\"alice\",\"password\":\"guess\"}}' http://ADDRESS:8000/login   \
         (5 times from another machine bans it)\n\
         Ctrl-C stops the agent (bans stay in the kernel until they expire; \
         `{agent} datapath detach` removes the program and every ban).\n",
        if with_app {
            " beside the example app"
        } else {
            ""
        },
        config_path.display(),
        agent = agent.display(),
        jail = example::JAIL,
    );
}

/// The configuration's `state_dir` (relative to its folder), or the agent's default.
fn state_dir(config: &std::path::Path) -> PathBuf {
    let configured = std::fs::read_to_string(config)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|table| table.get("state_dir")?.as_str().map(PathBuf::from));
    match configured {
        Some(dir) => config.parent().map_or(dir.clone(), |base| base.join(dir)),
        None => PathBuf::from("/var/lib/ban-agent"),
    }
}

/// Waits for `child`; once `stop` is set, sends it SIGTERM, and SIGKILL if it is still
/// there `grace` later.
fn supervise(child: &mut Child, stop: &AtomicBool, grace: Duration) -> std::io::Result<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if stop.load(Ordering::Relaxed) {
            let pid = libc::pid_t::try_from(child.id()).unwrap_or(libc::pid_t::MAX);
            // SAFETY: signalling our own child; no memory is involved.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait()? {
                    return Ok(status);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            child.kill()?;
            return child.wait();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The interface of the default route (IPv4, else IPv6), as `ip route` shows it.
fn default_route_interface() -> anyhow::Result<String> {
    for family in ["-4", "-6"] {
        let out = Command::new("ip")
            .args([family, "route", "show", "default"])
            .output()
            .context("cannot run `ip route` (iproute2)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        if words.any(|word| word == "dev")
            && let Some(interface) = words.next()
        {
            return Ok(interface.to_owned());
        }
    }
    bail!("this machine has no default route: name the interface with --interface NAME")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stop request (what SIGINT or SIGTERM to xtask sets) ends the child even when the
    /// signal never reached it, as with `kill -INT <xtask's pid>`.
    #[test]
    fn a_stop_request_ends_the_child_that_never_saw_the_signal() {
        let mut child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("start sleep");
        let stop = AtomicBool::new(false);
        let started = Instant::now();
        let status = std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(200));
                stop.store(true, Ordering::Relaxed);
            });
            supervise(&mut child, &stop, Duration::from_secs(5)).expect("supervise")
        });
        assert!(!status.success(), "{status}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_child_that_ends_by_itself_is_waited_for() {
        let mut child = Command::new("true").spawn().expect("start true");
        let status = supervise(&mut child, &AtomicBool::new(false), Duration::from_secs(1))
            .expect("supervise");
        assert!(status.success());
    }
}
