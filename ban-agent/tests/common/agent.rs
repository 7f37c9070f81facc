//! The agent as a process: `ban-agent run` started inside a test namespace, the CLI
//! pointed at its socket, and waiting for what it should do.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use super::Netns;

pub const AGENT: &str = env!("CARGO_BIN_EXE_ban-agent");

/// The daemon process; killed on drop if the test did not stop it.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `ban-agent run --config CONFIG ARGS...` in `ns`, behind `wrapper` (a command
    /// that executes the rest of its line) if any, with its stderr in `log`, and waits
    /// until it answers `ping` on `socket`.
    pub fn start(
        ns: &Netns,
        wrapper: &[&str],
        config: &Path,
        args: &[&str],
        socket: &Path,
        log: &Path,
    ) -> Self {
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = ns.command(program);
                command.args(rest).arg(AGENT);
                command
            }
            None => ns.command(AGENT),
        };
        command
            .args(["run", "--config"])
            .arg(config)
            .args(args)
            .env("RUST_LOG", "info");
        Self::spawn(command, socket, log)
    }

    /// Starts `ban-agent run` in `ns` with the test folder `dir`'s configuration
    /// `ban-agent.toml`, socket `ctl.sock` and log `agent.log`.
    pub fn start_in(ns: &Netns, dir: &Path) -> Self {
        Self::start(
            ns,
            &[],
            &dir.join("ban-agent.toml"),
            &[],
            &dir.join("ctl.sock"),
            &dir.join("agent.log"),
        )
    }

    /// Spawns `command` (a `ban-agent run` command line), its stderr in `log`, and waits
    /// until it answers `ping` on `socket`.
    pub fn spawn(mut command: Command, socket: &Path, log: &Path) -> Self {
        let file = std::fs::File::create(log).expect("daemon log");
        let child = command
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start the daemon");
        let daemon = Self {
            child,
            log: log.to_owned(),
        };
        eventually(&daemon, "the daemon answers ping", || {
            cli_output(socket, &["ping"]).status.success()
        });
        daemon
    }

    #[allow(dead_code, reason = "the benchmarks' (they include this file)")]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (and is reaped), whatever its status.
    #[allow(dead_code, reason = "the chaos run's (it includes this file)")]
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the daemon to exit (after `stop` or a signal) and returns its log.
    pub fn wait(mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait().expect("wait for the daemon") {
                Some(status) => {
                    assert!(
                        status.success(),
                        "daemon exited with {status}:\n{}",
                        self.log()
                    );
                    return self.log();
                }
                None if Instant::now() > deadline => panic!("daemon did not stop:\n{}", self.log()),
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    pub fn signal(&self, signal: &str) {
        super::sh(Command::new("kill").args([signal, &self.child.id().to_string()]));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _killed = self.child.kill();
            let _reaped = self.child.wait();
        }
    }
}

/// A daemon's surroundings of a benchmark's own: a temporary directory holding an empty
/// log `access.log`, a configuration with one jail `fastapi-auth` on it (port 8000,
/// findtime 10m, bantime 1h, `maxretry`, no interface, no cap on bans per minute: the
/// benchmarks ban a million addresses as fast as they can), the state, the socket `ctl.sock`
/// and the daemon's log `agent.log`; and a pin directory of its own.
#[allow(dead_code, reason = "the benchmarks' (they include this file)")]
pub struct OneJail {
    pub log: PathBuf,
    pub socket: PathBuf,
    pub pins: super::Pins,
    config: PathBuf,
    dir: tempfile::TempDir,
}

#[allow(dead_code, reason = "the benchmarks' (they include this file)")]
impl OneJail {
    pub fn new(tag: &str, maxretry: u32) -> Self {
        Self::with(tag, maxretry, "")
    }

    /// The same, with `extra` (TOML tables such as `[fleet]`) at the end of the
    /// configuration.
    pub fn with(tag: &str, maxretry: u32, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let pins = super::Pins::new(tag);
        let log = dir.path().join("access.log");
        std::fs::File::create(&log).expect("create the log");
        let socket = dir.path().join("ctl.sock");
        let config = dir.path().join("ban-agent.toml");
        let text = format!(
            "socket = \"{}\"\nstate_dir = \"{}\"\npin_dir = \"{}\"\n\
             [jail.fastapi-auth]\nlogpath = \"{}\"\nfilter = \"fastapi-auth\"\n\
             maxretry = {maxretry}\nfindtime = \"10m\"\nbantime = \"1h\"\nports = [8000]\n\
             max_bans_per_minute = 0\n{extra}",
            socket.display(),
            dir.path().join("state").display(),
            pins.dir.display(),
            log.display()
        );
        std::fs::write(&config, text).expect("write the configuration");
        Self {
            log,
            socket,
            pins,
            config,
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the daemon (in this process's namespace, logging warnings only, as the
    /// benchmarks run it) and waits until it answers.
    pub fn start(&self) -> Daemon {
        let mut command = Command::new(AGENT);
        command.args(["run", "--config"]).arg(&self.config).env(
            "RUST_LOG",
            std::env::var("BENCH_AGENT_LOG").unwrap_or_else(|_| "warn".to_owned()),
        );
        Daemon::spawn(command, &self.socket, &self.dir.path().join("agent.log"))
    }

    /// The failures the jail has counted so far (`status`'s total).
    pub fn failures_counted(&self) -> u64 {
        use ban_agent::control::{
            client,
            protocol::{Reply, Request},
        };
        let request = Request::Status {
            jail: Some("fastapi-auth".to_owned()),
        };
        match client::call(&self.socket, &request) {
            Ok(Reply::Jail(status)) => status.total_failed,
            other => panic!("status fastapi-auth: {other:?}"),
        }
    }
}

/// The time stamp of a line written now, as the example app writes it.
pub fn now_stamp() -> String {
    jiff::Zoned::now()
        .strftime("%Y-%m-%d %H:%M:%S,%3f")
        .to_string()
}

/// The line the example app writes for a `POST /login` from `host` answered `status`,
/// stamped `stamp` ([`now_stamp`]), with its `\n`.
pub fn login_line(stamp: &str, host: impl std::fmt::Display, status: u16) -> String {
    format!("{stamp} - fastapi-auth - INFO - {host} - \"POST /login\" {status} - 0.0100s\n")
}

/// `ban-agent --socket SOCKET args...`, as an operator types it.
pub fn cli_output(socket: &Path, args: &[&str]) -> Output {
    Command::new(AGENT)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run the CLI")
}

/// `ban-agent --socket SOCKET args...`'s output; panics with it when the verb fails.
pub fn cli(socket: &Path, args: &[&str]) -> String {
    let out = cli_output(socket, args);
    assert!(
        out.status.success(),
        "ban-agent {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A verb's `--json` output.
pub fn cli_json(socket: &Path, args: &[&str]) -> serde_json::Value {
    let text = cli(socket, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

/// Waits up to 5 s for `condition`, failing with the daemon's log.
pub fn eventually(daemon: &Daemon, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out: {what}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
