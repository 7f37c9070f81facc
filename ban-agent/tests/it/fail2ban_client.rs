//! fail2ban-client's command lines against the real thing: fail2ban 1.0.2's own server and
//! client (Debian's package, unpacked by `cargo xtask test` into `.tools/fail2ban`, run
//! from a folder of the test's, never as a service) and ban-agent's daemon reached through
//! a `fail2ban-client` symlink to the binary, the same jail in both. Every command line
//! of an operator's guide and of the exporters that read `status` is run on both, in the
//! same order; each must print the same thing and succeed or fail alike.

use std::{
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::common::agent::{AGENT, Daemon, cli};

/// Where `cargo xtask test` unpacked fail2ban (`BAN_AGENT_FAIL2BAN_ROOT`), else the
/// workspace's `.tools/fail2ban`; `None` when it is not there (`test` is skipped, or fails
/// in CI).
pub(crate) fn fail2ban_root(test: &str) -> Option<PathBuf> {
    let root = std::env::var_os("BAN_AGENT_FAIL2BAN_ROOT").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/fail2ban"),
        PathBuf::from,
    );
    if root.join("usr/bin/fail2ban-client").is_file() {
        return Some(root);
    }
    let why = format!(
        "no fail2ban under {} (`cargo xtask test` unpacks it)",
        root.display()
    );
    crate::common::skip(test, &why);
    None
}

/// fail2ban's server with one jail `auth`, and its client.
struct Fail2ban {
    root: PathBuf,
    conf: PathBuf,
    socket: PathBuf,
    server: std::process::Child,
}

impl Fail2ban {
    /// A folder of the test's with an empty log, and fail2ban started on it.
    fn in_folder(root: PathBuf) -> (tempfile::TempDir, PathBuf, Self) {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("auth.log");
        std::fs::write(&log, "").expect("the log");
        let fail2ban = Self::start(root, dir.path(), &log);
        (dir, log, fail2ban)
    }

    fn start(root: PathBuf, dir: &Path, log: &Path) -> Self {
        let conf = dir.join("fail2ban");
        for sub in ["filter.d", "action.d"] {
            std::fs::create_dir_all(conf.join(sub)).expect("fail2ban's folders");
        }
        let socket = dir.join("fail2ban.sock");
        let write = |name: &str, text: String| {
            std::fs::write(conf.join(name), text).expect("fail2ban's configuration");
        };
        write(
            "fail2ban.conf",
            format!(
                "[Definition]\nloglevel = WARNING\nlogtarget = {0}/fail2ban.log\n\
                 socket = {1}\npidfile = {0}/fail2ban.pid\ndbfile = {0}/fail2ban.sqlite3\n",
                dir.display(),
                socket.display()
            ),
        );
        write(
            "filter.d/auth.conf",
            "[Definition]\nfailregex = ^<HOST> failed$\n".to_owned(),
        );
        // Bans without a firewall: fail2ban's server keeps them, as ban-agent's dry run does.
        write(
            "action.d/record.conf",
            "[Definition]\nactionban =\nactionunban =\n".to_owned(),
        );
        write("jail.conf", jail_conf(log));
        let server = Command::new("python3")
            .arg(root.join("usr/bin/fail2ban-server"))
            .args(["-xf", "-c"])
            .arg(&conf)
            .args(["-s"])
            .arg(&socket)
            .arg("start")
            .env("PYTHONPATH", root.join("usr/lib/python3/dist-packages"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fail2ban-server");
        let fail2ban = Self {
            root,
            conf,
            socket,
            server,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !String::from_utf8_lossy(&fail2ban.run(&["status"]).stdout).contains("auth") {
            assert!(
                Instant::now() < deadline,
                "fail2ban-server did not start its jail"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        fail2ban
    }

    fn run(&self, words: &[&str]) -> Output {
        Command::new("python3")
            .arg(self.root.join("usr/bin/fail2ban-client"))
            .arg("-c")
            .arg(&self.conf)
            .arg("-s")
            .arg(&self.socket)
            .args(words)
            .env(
                "PYTHONPATH",
                self.root.join("usr/lib/python3/dist-packages"),
            )
            .output()
            .expect("run fail2ban-client")
    }
}

impl Drop for Fail2ban {
    fn drop(&mut self) {
        let _killed = self.server.kill();
        let _reaped = self.server.wait();
    }
}

/// One jail, the same in both: 3 failures in 10 minutes ban for an hour, two networks
/// never banned.
fn jail_conf(log: &Path) -> String {
    format!(
        "[auth]\nenabled = true\nfilter = auth\nlogpath = {}\nbackend = polling\n\
         maxretry = 3\nfindtime = 600\nbantime = 3600\nignoreself = false\n\
         ignoreip = 198.51.100.0/24 192.0.2.250\naction = record\n",
        log.display()
    )
}

fn our_config(dir: &Path, log: &Path) -> PathBuf {
    let path = dir.join("ban-agent.toml");
    std::fs::write(
        &path,
        format!(
            "socket = \"ctl.sock\"\nstate_dir = \"state\"\nignoreself = false\n\
             [jail.auth]\nlogpath = \"{}\"\nfailregex = ['^<HOST> failed$']\n\
             maxretry = 3\nfindtime = \"10m\"\nbantime = \"1h\"\nports = [8000]\n\
             ignoreip = [\"198.51.100.0/24\", \"192.0.2.250\"]\n",
            log.display()
        ),
    )
    .expect("write the configuration");
    path
}

/// What a run printed, for the comparison: its standard output, and whether it succeeded.
fn said(output: &Output) -> (String, bool) {
    (
        String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_owned(),
        output.status.success(),
    )
}

#[test]
fn fail2ban_clients_command_lines_print_what_fail2ban_prints() {
    let Some(root) = fail2ban_root("fail2ban_clients_command_lines_print_what_fail2ban_prints")
    else {
        return;
    };
    let (dir, log, fail2ban) = Fail2ban::in_folder(root);
    let socket = dir.path().join("ctl.sock");
    let mut command = Command::new(AGENT);
    command
        .args(["run", "--dry-run", "--config"])
        .arg(our_config(dir.path(), &log));
    let daemon = Daemon::spawn(command, &socket, &dir.path().join("agent.log"));
    let client = dir.path().join("fail2ban-client");
    symlink(AGENT, &client).expect("the symlink");
    let ours = |words: &[&str]| {
        Command::new(&client)
            .arg("-c")
            .arg(&fail2ban.conf)
            .arg("-s")
            .arg(&socket)
            .args(words)
            .output()
            .expect("run the symlink")
    };
    let same = |words: &[&str]| {
        let theirs = said(&fail2ban.run(words));
        let ours = said(&ours(words));
        assert_eq!(ours, theirs, "fail2ban-client {words:?}\n{}", daemon.log());
        theirs.0
    };
    // fail2ban keeps ignoreip in a Python set, whose order changes from run to run: the
    // tree's lines are compared as a set (the last one's branch aside).
    let same_set = |words: &[&str]| {
        let lines = |text: String| -> Vec<String> {
            let mut lines: Vec<String> = text.lines().map(|l| l.replacen("`-", "|-", 1)).collect();
            lines.sort();
            lines
        };
        let (theirs, ok) = said(&fail2ban.run(words));
        let (ours, our_ok) = said(&ours(words));
        assert_eq!(
            (lines(ours), our_ok),
            (lines(theirs), ok),
            "fail2ban-client {words:?}"
        );
    };
    // A refused command fails in both (fail2ban's server words its reasons its own way).
    let refused = |words: &[&str]| {
        let theirs = fail2ban.run(words);
        let ours = ours(words);
        assert!(
            !theirs.status.success() && ours.status.code() == Some(255),
            "fail2ban-client {words:?}: {theirs:?} {ours:?}"
        );
        String::from_utf8_lossy(&ours.stderr).into_owned()
    };

    assert_eq!(same(&["ping"]), "Server replied: pong");
    same(&["status"]);
    assert_eq!(
        same(&["set", "auth", "banip", "192.0.2.7", "192.0.2.8"]),
        "2"
    );
    same(&["status", "auth"]);
    same(&["status", "auth", "basic"]);
    assert_eq!(same(&["get", "auth", "banip"]), "192.0.2.7 192.0.2.8");
    same(&["get", "auth", "banip", ","]);
    same(&["banned"]);
    assert_eq!(
        same(&["banned", "192.0.2.7", "192.0.2.99"]),
        "[['auth'], []]"
    );
    // ban-agent's own name takes fail2ban's forms too, and prints the same.
    assert_eq!(
        cli(&socket, &["get", "auth", "banip"]).trim_end(),
        "192.0.2.7 192.0.2.8"
    );
    // The start and end are each server's own clock: compared by shape.
    let with_time = said(&ours(&["get", "auth", "banip", "--with-time"])).0;
    let theirs = said(&fail2ban.run(&["get", "auth", "banip", "--with-time"])).0;
    let shape = |text: &str| -> String {
        text.chars()
            .map(|c| if c.is_ascii_digit() { '0' } else { c })
            .collect()
    };
    assert_eq!(shape(&with_time), shape(&theirs), "{with_time}\n{theirs}");
    assert!(
        with_time.contains("192.0.2.7 \t") && with_time.contains(" + 3600 = "),
        "{with_time}"
    );

    for key in ["bantime", "findtime", "maxretry", "maxlines", "logpath"] {
        same(&["get", "auth", key]);
    }
    assert_eq!(same(&["set", "auth", "bantime", "7200"]), "7200");
    assert_eq!(same(&["set", "auth", "findtime", "1200"]), "1200");
    assert_eq!(same(&["set", "auth", "maxretry", "5"]), "5");
    same_set(&["get", "auth", "ignoreip"]);
    same_set(&["set", "auth", "addignoreip", "192.0.2.251"]);
    same_set(&["set", "auth", "delignoreip", "192.0.2.251"]);

    assert_eq!(same(&["set", "auth", "banip", "192.0.2.7"]), "0");
    assert_eq!(same(&["set", "auth", "unbanip", "192.0.2.8"]), "1");
    assert_eq!(same(&["set", "auth", "unbanip", "192.0.2.99"]), "0");
    let absent = refused(&["set", "auth", "unbanip", "--report-absent", "192.0.2.99"]);
    assert!(
        absent.contains("not banned in auth: 192.0.2.99"),
        "{absent}"
    );
    assert_eq!(same(&["unban", "192.0.2.7"]), "1");
    assert_eq!(
        same(&["set", "auth", "banip", "192.0.2.9", "192.0.2.10"]),
        "2"
    );
    assert_eq!(same(&["unban", "--all"]), "2");
    same(&["status", "auth"]);
    assert!(refused(&["get", "nope", "bantime"]).contains("nope"));
    assert!(refused(&["frobnicate"]).contains("Invalid command"));

    // What differs by nature: the actions (fail2ban's `record`, ban-agent's kernel drop)
    // and the version; their shapes are fail2ban-client's.
    let actions = said(&ours(&["get", "auth", "actions"]));
    assert_eq!(
        actions,
        (
            "The jail auth has the following actions:\nkernel".to_owned(),
            true
        )
    );
    assert_eq!(
        said(&fail2ban.run(&["get", "auth", "actions"])).0,
        "The jail auth has the following actions:\nrecord"
    );
    assert_eq!(
        said(&ours(&["version"])),
        (env!("CARGO_PKG_VERSION").to_owned(), true)
    );

    assert_eq!(same(&["reload"]), "OK");
    assert_eq!(same(&["stop"]), "Shutdown successful");
    daemon.wait();
}

/// `fail2ban-regex LOG FILTER` through the symlink, and `test-filter LOG FILTER`, report
/// what `test-filter --regex` does.
#[test]
fn fail2ban_regexs_command_line_runs_test_filter() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("auth.log");
    std::fs::write(
        &log,
        "192.0.2.7 failed\n192.0.2.7 failed\nnothing\n198.51.100.1 failed\n",
    )
    .expect("the log");
    let regex = dir.path().join("fail2ban-regex");
    symlink(AGENT, &regex).expect("the symlink");
    let run = |program: &Path, args: &[&str]| -> String {
        let out = Command::new(program).args(args).output().expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let log = log.to_str().expect("a UTF-8 path");
    let expected = run(
        Path::new(AGENT),
        &["test-filter", log, "--regex", "^<HOST> failed$"],
    );
    assert!(
        expected.contains("Lines: 4 read, 3 matched, 0 ignored, 1 missed"),
        "{expected}"
    );
    assert_eq!(run(&regex, &[log, "^<HOST> failed$"]), expected);
    assert_eq!(
        run(Path::new(AGENT), &["test-filter", log, "^<HOST> failed$"]),
        expected
    );
    // A filter by name, in fail2ban-regex's order.
    let named = run(&regex, &["--print-all-missed", log, "fastapi-auth"]);
    assert!(
        named.contains("built-in fastapi-auth") || named.contains("fastapi-auth"),
        "{named}"
    );
    let refused = Command::new(&regex)
        .args(["--out", "msg", log, "x"])
        .output()
        .expect("run");
    assert_eq!(refused.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--out"));
}

/// `import-fail2ban --bans`: the bans in force of a database the real fail2ban wrote,
/// into the state when no daemon runs, else to the daemon; with their counts, never what
/// the jail spares.
#[test]
fn fail2bans_bans_in_force_are_carried_over_with_their_counts() {
    let Some(root) = fail2ban_root("fail2bans_bans_in_force_are_carried_over_with_their_counts")
    else {
        return;
    };
    let (dir, log, fail2ban) = Fail2ban::in_folder(root);
    let run = |words: &[&str]| said(&fail2ban.run(words));
    assert_eq!(
        run(&["set", "auth", "banip", "192.0.2.7"]),
        ("1".to_owned(), true)
    );
    run(&["set", "auth", "bantime", "-1"]);
    assert_eq!(
        run(&["set", "auth", "banip", "192.0.2.10"]),
        ("1".to_owned(), true)
    );
    // fail2ban bans by hand inside ignoreip; ban-agent's jail spares it.
    assert_eq!(
        run(&["set", "auth", "banip", "198.51.100.7"]),
        ("1".to_owned(), true)
    );
    assert_eq!(run(&["stop"]), ("Shutdown successful".to_owned(), true));
    let db = dir.path().join("fail2ban.sqlite3");
    drop(fail2ban);

    let import = |config: &Path| {
        let out = Command::new(AGENT)
            .args(["import-fail2ban", "--bans"])
            .arg(&db)
            .arg("--config")
            .arg(config)
            .output()
            .expect("run import-fail2ban");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // No daemon: into the state, for its next start.
    let idle = dir.path().join("idle");
    std::fs::create_dir(&idle).expect("folder");
    let said = import(&our_config(&idle, &log));
    assert!(said.contains("2 bans saved"), "{said}");
    assert!(
        said.contains("passed over: 198.51.100.7 in auth: it is in"),
        "{said}"
    );
    let store = ban_agent::store::Store::inspect(&idle.join("state"))
        .expect("the state")
        .expect("a state");
    let state = store.load().expect("load");
    let bans: Vec<(String, Option<i64>, String)> = state
        .bans
        .iter()
        .map(|ban| {
            (
                ban.target.to_string(),
                ban.expires_at.map(|end| end - ban.banned_at),
                ban.origin.clone(),
            )
        })
        .collect();
    assert_eq!(
        bans,
        [
            ("192.0.2.10/32".to_owned(), None, "fail2ban".to_owned()),
            (
                "192.0.2.7/32".to_owned(),
                Some(3_600_000),
                "fail2ban".to_owned()
            ),
        ]
    );
    let history = store.history("auth").expect("history");
    assert_eq!(
        history.values().copied().collect::<Vec<_>>(),
        [1, 1],
        "{history:?}"
    );
    assert!(import(&idle.join("ban-agent.toml")).contains("0 bans saved"));

    // A running daemon takes them at once.
    let running = dir.path().join("running");
    std::fs::create_dir(&running).expect("folder");
    let config = our_config(&running, &log);
    let socket = running.join("ctl.sock");
    let mut command = Command::new(AGENT);
    command.args(["run", "--dry-run", "--config"]).arg(&config);
    let daemon = Daemon::spawn(command, &socket, &running.join("agent.log"));
    let said = import(&config);
    assert!(said.contains("2 bans carried over from fail2ban"), "{said}");
    assert_eq!(
        cli(&socket, &["get", "auth", "banip"]).trim_end(),
        "192.0.2.7 192.0.2.10",
        "{}",
        daemon.log()
    );
    cli(&socket, &["stop"]);
    daemon.wait();
}
