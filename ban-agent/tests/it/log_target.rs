//! `log_target`, fail2ban's `logtarget`: the daemon's lines in a file of the operator's,
//! opened again after logrotate moved it (by itself, within a second, or at once on
//! SIGUSR1, logrotate's `postrotate`); a target that cannot be used stops the start with
//! why. A dry run: no privilege needed.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use crate::common::agent::{AGENT, Daemon, cli};

fn configure(dir: &Path, target: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("auth.log"), "").expect("the app's log");
    let path = dir.join("ban-agent.toml");
    std::fs::write(
        &path,
        format!(
            "socket = \"ctl.sock\"\nstate_dir = \"state\"\nignoreself = false\n\
             log_target = \"{target}\"\n\
             [jail.auth]\nlogpath = \"auth.log\"\nfilter = \"fastapi-auth\"\nports = [8000]\n"
        ),
    )
    .expect("write the configuration");
    path
}

/// Waits up to 5 s for `file` to hold `text`.
fn holds(file: &Path, text: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if std::fs::read_to_string(file).is_ok_and(|held| held.contains(text)) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_log_file_is_written_and_opened_again_after_a_rotation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = configure(dir.path(), "agent.log");
    let socket = dir.path().join("ctl.sock");
    let mut command = Command::new(AGENT);
    command.args(["run", "--dry-run", "--config"]).arg(&config);
    let daemon = Daemon::spawn(command, &socket, &dir.path().join("stderr.log"));
    let log = dir.path().join("agent.log");
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();

    cli(&socket, &["ban", "auth", "192.0.2.7"]);
    assert!(
        holds(&log, "ban jail=\"auth\" ip=192.0.2.7"),
        "{}",
        read(&log)
    );
    assert!(!read(&log).contains("\u{1b}["), "colours in a file");
    assert!(
        !daemon.log().contains("ip=192.0.2.7"),
        "the line went to stderr too: {}",
        daemon.log()
    );

    // logrotate's `create` without a signal: the file is moved away, and the agent opens
    // a new one at the path within a second.
    std::fs::rename(&log, dir.path().join("agent.log.1")).expect("rotate");
    assert!(
        holds(&log, "the log file was moved or removed: opened it again"),
        "{}",
        read(&log)
    );
    cli(&socket, &["ban", "auth", "192.0.2.8"]);
    assert!(holds(&log, "ip=192.0.2.8"), "{}", read(&log));
    assert!(!read(&dir.path().join("agent.log.1")).contains("ip=192.0.2.8"));

    // With a signal, as logrotate's postrotate sends it.
    std::fs::rename(&log, dir.path().join("agent.log.2")).expect("rotate");
    daemon.signal("-USR1");
    assert!(
        holds(&log, "SIGUSR1: the log file was opened again"),
        "{}",
        read(&log)
    );
    cli(&socket, &["ban", "auth", "192.0.2.9"]);
    assert!(holds(&log, "ip=192.0.2.9"), "{}", read(&log));

    cli(&socket, &["stop"]);
    daemon.wait();
}

#[test]
fn a_log_target_that_cannot_be_used_stops_the_start_with_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |config: &Path| {
        Command::new(AGENT)
            .args(["run", "--dry-run", "--config"])
            .arg(config)
            .output()
            .expect("run")
    };
    let config = configure(dir.path(), "/nonexistent/ban-agent/agent.log");
    let out = run(&config);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("log_target /nonexistent/ban-agent/agent.log"),
        "{said}"
    );
    let config = configure(dir.path(), "syslog");
    let out = Command::new(AGENT)
        .args(["check", "--offline", "--config"])
        .arg(&config)
        .output()
        .expect("check");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("ban-agent.toml:4") && said.contains("log_target"),
        "{said}"
    );
}
