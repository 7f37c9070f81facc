//! `cargo xtask run`: build, then run the agent in the foreground. With no configuration
//! it runs the example's (examples/fastapi-auth/ban-agent.toml) on the interface of the
//! default route, and starts the example app beside it.

use std::{
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
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
    // The example is copied with its interface set, and the app writes the log its jail
    // reads; a configuration of yours runs as it is (its relative paths are relative to
    // its own folder).
    let (config_path, app_log) = match &args.config {
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
    };
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
    println!(
        "ban-agent: starting{}, configuration {}\n\
         In another terminal (as root):\n  \
         {agent} status {jail}\n  \
         curl -s -XPOST -H 'content-type: application/json' \
         -d '{{\"username\":\"alice\",\"password\":\"guess\"}}' http://ADDRESS:8000/login   \
         (5 times from another machine bans it)\n\
         Ctrl-C stops the agent (bans stay in the kernel until they expire; \
         `{agent} datapath detach` removes the program and every ban).\n",
        if app_log.is_some() {
            " beside the example app"
        } else {
            ""
        },
        config_path.display(),
        agent = agent.display(),
        jail = example::JAIL,
    );
    // Ctrl-C reaches the agent and the app (same process group); this process waits for
    // the agent to finish its shutdown, then stops the app.
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .context("cannot handle Ctrl-C")?;
    let status = Command::new(&agent)
        .args(["run", "--config"])
        .arg(&config_path)
        .status()
        .with_context(|| format!("cannot start {}", agent.display()))?;
    if !status.success() && !interrupted.load(Ordering::Relaxed) {
        bail!("ban-agent exited with {status}");
    }
    Ok(())
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
