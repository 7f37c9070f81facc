//! The systemd journal as a jail's log: a real journal file, written by
//! `systemd-journal-remote` from journal export format (no journald runs here), read by
//! `ban-agent run` through sd-journal with the filter's `journalmatch`, and resumed from
//! the cursor kept in the state across a restart: nothing read twice, nothing missed.

use crate::common;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use common::{
    Netns, Pins,
    agent::{self, Daemon, eventually},
};

const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";
const ATTACKER: &str = "192.0.2.7";

/// A fail2ban-style filter for a daemon `authd`, journal lines (`HOST authd[PID]: ...`),
/// with its own journalmatch.
const FILTER: &str = "\
[Definition]
prefregex = ^\\S+ authd\\[\\d+\\]: <F-CONTENT>.+</F-CONTENT>$
failregex = ^Failed password for \\S+ from <HOST> port \\d+$
journalmatch = _SYSTEMD_UNIT=authd.service
";

struct Scene {
    ns: Netns,
    pins: Pins,
    dir: tempfile::TempDir,
    /// Entries written so far, for distinct monotonic times.
    written: u64,
}

impl Scene {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let pins = Pins::new("jrnl");
        std::fs::create_dir_all(dir.path().join("journal")).expect("journal dir");
        std::fs::create_dir_all(dir.path().join("filter.d")).expect("filter dir");
        std::fs::write(dir.path().join("filter.d/authd.conf"), FILTER).expect("filter");
        let config = format!(
            "pin_dir = \"{pins}\"\nstate_dir = \"{d}/state\"\nsocket = \"{d}/ctl.sock\"\n\
             [jail.authd]\nbackend = \"systemd[journalpath={d}/journal]\"\n\
             filter = \"{d}/filter.d/authd.conf\"\nstart = \"head\"\nmaxretry = 3\n\
             findtime = \"10m\"\nbantime = \"1h\"\n",
            pins = pins.dir.display(),
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("ban-agent.toml"), config).expect("config");
        Self {
            ns: Netns::new("jrnl"),
            pins,
            dir,
            written: 0,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Appends entries `(unit, message)` to the journal, timed now.
    fn write(&mut self, entries: &[(&str, &str)]) {
        let now_us = jiff::Timestamp::now().as_microsecond();
        let mut export = String::new();
        for (unit, message) in entries {
            self.written += 1;
            export.push_str(&format!(
                "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n\
                 _BOOT_ID=0123456789abcdef0123456789abcdef\n_HOSTNAME=web1\n\
                 SYSLOG_IDENTIFIER={ident}\n_PID=4{n}\n_SYSTEMD_UNIT={unit}\nMESSAGE={message}\n\n",
                now_us + self.written as i64,
                1_000_000 + self.written,
                ident = unit.trim_end_matches(".service"),
                n = self.written,
            ));
        }
        let mut child = Command::new(JOURNAL_REMOTE)
            .arg(format!(
                "--output={}",
                self.path("journal/system.journal").display()
            ))
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("systemd-journal-remote (package systemd-journal-remote)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(export.as_bytes())
            .expect("write the export");
        let out = child.wait_with_output().expect("journal-remote");
        assert!(
            out.status.success(),
            "systemd-journal-remote: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(&self) -> Daemon {
        Daemon::start(
            &self.ns,
            &[],
            &self.path("ban-agent.toml"),
            &[],
            &self.path("ctl.sock"),
            &self.path("agent.log"),
        )
    }

    fn status(&self) -> serde_json::Value {
        agent::cli_json(&self.path("ctl.sock"), &["status", "authd", "--json"])
    }

    fn stop(&self, daemon: Daemon) {
        agent::cli(&self.path("ctl.sock"), &["stop"]);
        daemon.wait();
    }
}

fn failed(status: &serde_json::Value) -> u64 {
    status["total_failed"].as_u64().unwrap_or(u64::MAX)
}

fn failure(port: u32) -> String {
    format!("Failed password for root from {ATTACKER} port {port}")
}

#[test]
fn a_journal_jail_counts_matching_entries_and_resumes_from_its_cursor() {
    let Some(_serial) =
        common::privileged("a_journal_jail_counts_matching_entries_and_resumes_from_its_cursor")
    else {
        return;
    };
    assert!(
        Path::new(JOURNAL_REMOTE).exists(),
        "{JOURNAL_REMOTE} is missing: cargo xtask setup installs systemd-journal-remote"
    );
    let mut scene = Scene::new();
    // Two failures of authd, and the same text from another unit, which journalmatch
    // leaves out.
    scene.write(&[
        ("authd.service", &failure(1)),
        ("cron.service", &failure(2)),
        ("authd.service", &failure(3)),
    ]);
    let daemon = scene.start();
    eventually(&daemon, "two failures read from the journal", || {
        failed(&scene.status()) == 2
    });
    let status = scene.status();
    assert_eq!(status["currently_banned"], 0, "{status}");
    scene.stop(daemon);

    // Written while the agent is down: read after the restart, once; what was read
    // before is not read again.
    scene.write(&[("authd.service", &failure(4))]);
    let daemon = scene.start();
    eventually(&daemon, "the entry written while down is read", || {
        failed(&scene.status()) >= 1
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        failed(&scene.status()),
        1,
        "the restart re-read or missed entries:\n{}",
        daemon.log()
    );

    // Written while it runs: followed live, and the third failure within findtime bans.
    scene.write(&[
        ("authd.service", &failure(5)),
        ("authd.service", &failure(6)),
    ]);
    eventually(
        &daemon,
        "the attacker is banned from journal entries",
        || {
            scene.status()["banned"].as_array().is_some_and(|b| {
                b.iter()
                    .any(|a| a.as_str().is_some_and(|a| a.starts_with(ATTACKER)))
            })
        },
    );
    let maps = ban_agent::datapath::Maps::open_pinned(&scene.pins.dir).expect("pinned maps");
    assert!(
        maps.list()
            .expect("list bans")
            .iter()
            .any(|ban| ban.target.addr().to_string() == ATTACKER),
        "the ban is in the kernel map"
    );
    scene.stop(daemon);
}
