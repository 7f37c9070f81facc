//! `ban-agent test-filter` as a user runs it: on a generated FastAPI log, on stdin, with a
//! jail of a configuration, and with mistakes.

use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

use crate::common::report;
use ban_agent::sample::{SampleSpec, write_log};
use jiff::tz::TimeZone;

fn ban_agent(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ban-agent"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ban-agent");
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        pipe.write_all(bytes).expect("write stdin");
    }
    drop(pipe);
    child.wait_with_output().expect("wait")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

/// The numbers of the `Lines:` row: read, matched, ignored, missed.
fn lines_row(report: &str) -> [u64; 4] {
    report::lines_row(report).unwrap_or_else(|| panic!("no Lines row of four numbers in\n{report}"))
}

#[test]
fn the_exact_number_of_failures_the_generator_wrote() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("auth.log");
    let spec = SampleSpec {
        lines: 100_000,
        clients: 30_000,
        attackers: 200,
        ..SampleSpec::benchmark(jiff::Timestamp::now().as_millisecond())
    };
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    let summary = write_log(&spec, &TimeZone::system(), &mut file).expect("write log");
    drop(file);
    let path_text = path.to_str().expect("utf-8 path");
    let report = stdout(&ban_agent(
        &["test-filter", path_text, "--filter", "fastapi-auth"],
        None,
    ));
    let [read, matched, ignored, missed] = lines_row(&report);
    assert_eq!(read, summary.lines, "{report}");
    assert_eq!(matched, summary.failures, "{report}");
    assert_eq!((ignored, missed), (0, summary.lines - summary.failures));
    assert!(report.contains("Python logging"), "{report}");
    assert!(report.contains("would be banned"), "{report}");
}

const SAMPLE: &str = "\
2026-11-24 12:00:00,001 - fastapi-auth - INFO - 192.0.2.7 - \"POST /login\" 401 - 0.0087s
2026-11-24 12:00:01,001 - fastapi-auth - INFO - 192.0.2.7 - \"POST /login\" 401 - 0.0087s
2026-11-24 12:00:02,001 - fastapi-auth - INFO - 2001:db8::9 - \"POST /register\" 400 - 0.0087s
2026-11-24 12:00:03,001 - fastapi-auth - INFO - 127.0.0.1 - \"POST /login\" 401 - 0.0087s
2026-11-24 12:00:04,001 - fastapi-auth - INFO - 198.51.100.1 - \"POST /login\" 200 - 0.0087s
";

#[test]
fn reads_stdin_and_lists_missed_lines_and_spared_addresses() {
    let output = ban_agent(
        &[
            "test-filter",
            "-",
            "--filter",
            "fastapi-auth",
            "--maxretry",
            "2",
            "--print-missed",
        ],
        Some(SAMPLE.as_bytes()),
    );
    let report = stdout(&output);
    assert_eq!(lines_row(&report), [5, 4, 0, 1], "{report}");
    assert!(report.contains("  192.0.2.7   "), "{report}");
    assert!(report.contains("would be banned"), "{report}");
    assert!(
        report.contains("spared (loopback or unspecified)"),
        "{report}"
    );
    assert!(
        report.contains("Missed lines:\n  2026-11-24 12:00:04,001"),
        "{report}"
    );
}

#[test]
fn a_jail_of_a_configuration_with_its_ignoreip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("ban-agent.toml");
    std::fs::write(
        &config,
        "ignoreself = false\n[jail.auth]\nlogpath = \"/var/log/auth.log\"\n\
         failregex = ['^\\S+ \\S+ - fastapi-auth - INFO - <HOST> - \"POST /login\" 401']\n\
         ignoreip = [\"192.0.2.0/24\"]\n",
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8");
    let report = stdout(&ban_agent(
        &["test-filter", "-", "--jail", "auth", "--config", config],
        Some(SAMPLE.as_bytes()),
    ));
    assert_eq!(lines_row(&report), [5, 3, 0, 2], "{report}");
    assert!(report.contains("spared (ignoreip)"), "{report}");
    assert!(report.contains("Would ban: 0 addresses"), "{report}");
}

#[test]
fn mistakes_say_what_and_where() {
    let output = ban_agent(&["test-filter", "-", "--regex", "no tag"], Some(b""));
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("no address tag"), "{error}");

    let output = ban_agent(
        &[
            "test-filter",
            "/nonexistent.log",
            "--filter",
            "fastapi-auth",
        ],
        None,
    );
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("cannot open /nonexistent.log"), "{error}");

    let output = ban_agent(&["test-filter", "-", "--filter", "nope"], Some(b""));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("built-in: fastapi-auth"), "{error}");

    let output = ban_agent(&["test-filter", "-"], Some(b""));
    assert!(
        !output.status.success(),
        "one of --jail, --filter, --regex is required"
    );
}

// Safety rail below the daemon: `datapath ban` writes the maps directly, and still never
// bans loopback, unspecified or one of this host's addresses. Without the checks in the CLI, the
// error is about the missing pins instead. Needs no root: the refusal comes first.
#[test]
fn datapath_ban_refuses_loopback_unspecified_and_own_addresses() {
    let own = ban_agent::ignore::own_addresses()
        .expect("this host's addresses")
        .into_iter()
        .find(|addr| !addr.is_loopback())
        .map(|addr| addr.to_string());
    let reserved = ["127.0.0.1", "::1", "0.0.0.0/0", "::/0", "0.0.0.0"];
    for target in reserved.iter().copied().chain(own.as_deref()) {
        let out = ban_agent(
            &[
                "datapath",
                "ban",
                "--jail",
                "0",
                target,
                "--pin-dir",
                "/nonexistent/ban-agent-pins",
            ],
            None,
        );
        let error = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && error.contains("is not banned"),
            "{target}: {error}"
        );
    }
}

/// `check` validates what `run` would (like `fail2ban-client -t`): a good configuration is
/// OK with its jails and interfaces; a bad one, or an interface that is not there, fails
/// with the message `run` gives.
#[test]
fn check_validates_a_configuration_as_run_would() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |text: &str| {
        let path = dir.path().join("ban-agent.toml");
        std::fs::write(&path, text).expect("write the configuration");
        path.display().to_string()
    };
    let base = "state_dir = \"state\"\n[jail.auth]\nlogpath = \"auth.log\"\n\
                filter = \"fastapi-auth\"\nports = [8000]\n";
    std::fs::write(dir.path().join("auth.log"), "").expect("create the log");
    let good = write(base);
    let out = ban_agent(&["check", "--config", &good], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("OK; 1 jail (auth)"), "{stdout}");
    assert!(
        stdout.contains("warning: no `interfaces`") && stdout.contains("no packet is dropped"),
        "a configuration that drops nothing is said: {stdout}"
    );

    let bad = write(&format!("{base}findtime = \"10 parsecs\"\n"));
    let out = ban_agent(&["check", "--config", &bad], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(":6:12: `jail.auth.findtime`: \"10 parsecs\" is not a duration"),
        "{stderr}"
    );

    let missing = write(&format!("interfaces = [\"nope9\"]\n{base}"));
    let out = ban_agent(&["check", "--config", &missing], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("there is no interface nope9"), "{stderr}");
}

/// A failure from an address never banned is matched and said, not silently dropped.
#[test]
fn spared_lines_are_said_with_their_reason() {
    let lines = "2026-11-24 12:00:01,000 - fastapi-auth - INFO - 127.0.0.1 - \"POST /login\" 401 - 0.0100s\n\
                 2026-11-24 12:00:02,000 - fastapi-auth - INFO - 192.0.2.7 - \"POST /login\" 401 - 0.0100s\n";
    let report = stdout(&ban_agent(
        &["test-filter", "-", "--filter", "fastapi-auth"],
        Some(lines.as_bytes()),
    ));
    assert_eq!(lines_row(&report), [2, 2, 0, 0], "{report}");
    assert!(
        report.contains(
            "1 matched from addresses never banned, not counted: loopback or unspecified 1"
        ),
        "{report}"
    );
}

/// `--help` teaches: every `datapath` verb has an example, `<JAIL>` is described wherever
/// it appears, and `--socket` is offered only where a socket is used.
#[test]
fn help_has_examples_describes_jail_and_offers_socket_only_where_used() {
    let help = |args: &[&str]| {
        let mut all = args.to_vec();
        all.push("--help");
        stdout(&ban_agent(&all, None))
    };
    for verb in ["attach", "ban", "unban", "list", "counters", "detach"] {
        let text = help(&["datapath", verb]);
        assert!(text.contains("Example"), "datapath {verb}:\n{text}");
        assert!(!text.contains("--socket"), "datapath {verb}:\n{text}");
    }
    assert!(!help(&["test-filter"]).contains("--socket"));
    for verb in ["ban", "get", "set", "reload", "status"] {
        let text = help(&[verb]);
        assert!(text.contains("--socket"), "{verb}:\n{text}");
        let jail = text
            .lines()
            .find(|line| {
                line.trim_start().starts_with("<JAIL>") || line.trim_start().starts_with("[JAIL]")
            })
            .unwrap_or_else(|| panic!("{verb}: no JAIL argument in\n{text}"));
        assert!(jail.contains("jail's name"), "{verb}: {jail}");
    }
}

/// A fail2ban filter file of the test's own, with an include, a mode and a date template.
fn fail2ban_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let filter_d = dir.path().join("filter.d");
    std::fs::create_dir_all(&filter_d).expect("filter.d");
    std::fs::write(
        filter_d.join("common.conf"),
        // The date is cut from the line first: what is left starts with a blank.
        "[DEFAULT]\n__prefix = \\s*\\S+ authd\\[\\d+\\]:\n",
    )
    .expect("common");
    std::fs::write(
        filter_d.join("authd.conf"),
        [
            "[INCLUDES]",
            "before = common.conf",
            "[Definition]",
            "prefregex = ^%(__prefix)s <F-CONTENT>.+</F-CONTENT>$",
            "failregex = ^Failed password for <F-USER>\\S+</F-USER> from <HOST>$",
            "            <mode-<mode>>",
            "mode = normal",
            "mode-normal =",
            "mode-strict = ^Probe from <HOST>$",
        ]
        .join("\n"),
    )
    .expect("filter");
    dir
}

/// `--json` with a fail2ban filter: one object per line, the host and user as fail2ban
/// reports them, the time of a year-less date completed from `--now`, and the filter's
/// mode passed in fail2ban's bracket syntax.
#[test]
fn json_lines_of_a_fail2ban_filter_with_options() {
    let dir = fail2ban_dir();
    let log = "Nov 30 11:59:00 web1 authd[7]: Failed password for root from 192.0.2.7\n\
               Nov 30 11:59:01 web1 authd[7]: Probe from 192.0.2.8\n\
               Nov 30 11:59:02 web1 other[7]: Failed password for root from 192.0.2.9\n";
    let dir_arg = dir.path().to_str().expect("utf-8 path");
    let run = |filter: &str| -> Vec<serde_json::Value> {
        let out = stdout(&ban_agent(
            &[
                "test-filter",
                "-",
                "--filter",
                filter,
                "--fail2ban-dir",
                dir_arg,
                "--json",
                "--now",
                "2027-01-15T00:00:00Z",
                "--timezone",
                "UTC",
            ],
            Some(log.as_bytes()),
        ));
        out.lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    };
    let normal = run("authd");
    assert_eq!(normal.len(), 3);
    assert_eq!(normal[0]["match"], true);
    assert_eq!(normal[0]["host"], "192.0.2.7");
    assert_eq!(normal[0]["user"], "root");
    assert_eq!(normal[0]["line"], 1);
    assert_eq!(normal[0]["regex"], 0);
    // November, read in January: last year's.
    assert_eq!(normal[0]["time"], "2026-11-30T11:59:00Z");
    assert_eq!(normal[1]["match"], false, "mode normal has no probe regex");
    assert_eq!(
        normal[2]["match"], false,
        "prefregex keeps other daemons out"
    );
    let strict = run("authd[mode=strict]");
    assert_eq!(strict[1]["match"], true);
    assert_eq!(strict[1]["host"], "192.0.2.8");
    assert_eq!(strict[1]["regex"], 1);
}

/// With a fail2ban filter, `Lines:` counts as fail2ban-regex does: comments and empty
/// lines skipped, `<F-NOFAIL>` and ignoreregex lines ignored, a failure of a host name
/// matched (and said, since it is never counted against anyone).
#[test]
fn lines_are_counted_as_fail2ban_regex_counts_them() {
    let dir = fail2ban_dir();
    std::fs::write(
        dir.path().join("filter.d/probe.conf"),
        [
            "[INCLUDES]",
            "before = common.conf",
            "[Definition]",
            "prefregex = ^%(__prefix)s <F-CONTENT>.+</F-CONTENT>$",
            "failregex = ^Failed password for \\S+ from <HOST>$",
            "            ^<F-NOFAIL>Accepted</F-NOFAIL> password for \\S+ from <HOST>$",
            "ignoreregex = from 192\\.0\\.2\\.99$",
        ]
        .join("\n"),
    )
    .expect("filter");
    let log = "# a comment, as in fail2ban's test logs\n\
               Nov 30 11:59:00 web1 authd[7]: Failed password for root from 192.0.2.7\n\
               \n\
               Nov 30 11:59:01 web1 authd[7]: Accepted password for bob from 192.0.2.8\n\
               Nov 30 11:59:02 web1 authd[7]: Failed password for root from 192.0.2.99\n\
               Nov 30 11:59:03 web1 authd[7]: Failed password for root from example.org\n\
               Nov 30 11:59:04 web1 authd[7]: Something else\n";
    let out = stdout(&ban_agent(
        &[
            "test-filter",
            "-",
            "--filter",
            "probe",
            "--fail2ban-dir",
            dir.path().to_str().expect("utf-8 path"),
            "--timezone",
            "UTC",
        ],
        Some(log.as_bytes()),
    ));
    assert!(
        out.contains("Lines: 7 read, 2 matched, 2 ignored, 1 missed"),
        "{out}"
    );
    assert!(
        out.contains("2 empty or comment (#) lines skipped"),
        "{out}"
    );
    assert!(
        out.contains("1 matched by a host name, not an address"),
        "{out}"
    );
}

/// A broken fail2ban filter is refused with the file, line, key and regex.
#[test]
fn a_broken_fail2ban_regex_names_file_line_and_key() {
    let dir = fail2ban_dir();
    std::fs::write(
        dir.path().join("filter.d/bad.conf"),
        "[Definition]\n\nfailregex = ^ok <HOST>$\n            ^(unclosed <HOST>\n",
    )
    .expect("filter");
    let out = ban_agent(
        &[
            "test-filter",
            "-",
            "--filter",
            "bad",
            "--fail2ban-dir",
            dir.path().to_str().expect("utf-8 path"),
        ],
        Some(b""),
    );
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("bad.conf:3")
            && error.contains("failregex #2")
            && error.contains("(unclosed"),
        "{error}"
    );
}

/// Each built-in filter's annotated sample log, run through `test-filter --json`: every
/// line yields the address annotated above it (`# host: ADDR`), or none (`# none`,
/// `# malformed`), and the report counts the malformed lines.
#[test]
fn test_filter_reproduces_each_builtin_filters_annotations() {
    let filters = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../filters");
    for name in [
        "fastapi-auth",
        "uvicorn",
        "gunicorn",
        "nginx",
        "caddy",
        "traefik",
    ] {
        let log = filters.join("tests").join(format!("{name}.log"));
        let log_text = log.to_str().expect("utf-8 path");
        let out = stdout(&ban_agent(
            &["test-filter", log_text, "--filter", name, "--json"],
            None,
        ));
        let objects: Vec<serde_json::Value> = out
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect();
        let text = std::fs::read_to_string(&log).expect("sample log");
        assert_eq!(
            objects.len(),
            text.lines().count(),
            "{name}: one object per line"
        );
        let (mut expected, mut checked, mut malformed) = (None, 0, 0);
        for (line, object) in text.lines().zip(&objects) {
            if let Some(host) = line.strip_prefix("# host: ") {
                expected = Some(Some(host.to_owned()));
                continue;
            }
            if line == "# none" || line == "# malformed" {
                malformed += usize::from(line == "# malformed");
                expected = Some(None);
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let want = expected
                .take()
                .unwrap_or_else(|| panic!("{name}: {line} unannotated"));
            let got = object["host"].as_str().map(str::to_owned);
            assert_eq!(got, want, "{name}.log: {line}");
            checked += 1;
        }
        assert!(checked >= 12, "{name}: {checked} lines checked");
        let report = stdout(&ban_agent(
            &["test-filter", log_text, "--filter", name],
            None,
        ));
        if malformed > 0 {
            assert!(
                report.contains(&format!(
                    "{malformed} missed because they start with {{ but are not JSON"
                )),
                "{name}: {report}"
            );
        }
    }
}

/// A jail sets a built-in filter's options; an option it does not have is refused with
/// the options it has.
#[test]
fn a_jail_sets_a_builtin_filters_paths() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("access.log");
    std::fs::write(
        &log,
        "192.0.2.7 - - [24/Nov/2026:12:00:00 +0000] \"POST /api/login HTTP/1.1\" 401 3 \"-\" \"-\"\n\
         192.0.2.8 - - [24/Nov/2026:12:00:00 +0000] \"POST /login HTTP/1.1\" 401 3 \"-\" \"-\"\n",
    )
    .expect("write log");
    let log_text = log.to_str().expect("utf-8 path");
    let out = stdout(&ban_agent(
        &[
            "test-filter",
            log_text,
            "--filter",
            "nginx[login_path=/api/login]",
            "--json",
        ],
        None,
    ));
    let hosts: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON")["host"].clone())
        .collect();
    assert_eq!(
        hosts,
        [serde_json::json!("192.0.2.7"), serde_json::Value::Null]
    );
    let wrong = ban_agent(
        &["test-filter", log_text, "--filter", "nginx[login=/x]"],
        None,
    );
    assert!(!wrong.status.success());
    let error = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        error.contains("no option `login`") && error.contains("login_path"),
        "{error}"
    );
}

/// What cannot work fails `check`, as fail2ban refuses a jail whose log is missing: a
/// typo in the log's folder, a log not there (unless the jail says it appears later, or
/// the path is a glob); and `run` refuses to start on it, but for a dry run, which only
/// warns. A mail server that cannot be reached is a warning.
#[test]
fn check_and_run_refuse_a_log_that_is_not_there() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |text: &str| {
        let path = dir.path().join("ban-agent.toml");
        std::fs::write(&path, text).expect("write the configuration");
        path.display().to_string()
    };
    let jail = |logpath: &str, extra: &str| {
        format!(
            "state_dir = \"state\"\nsocket = \"ctl.sock\"\n[jail.auth]\nlogpath = \"{logpath}\"\n\
             filter = \"fastapi-auth\"\nports = [8000]\n{extra}"
        )
    };
    // `check --config CONFIG` (with `more` flags) succeeds; its standard output.
    let passes = |config: &str, more: &[&str]| {
        let out = ban_agent(&[&["check", "--config", config], more].concat(), None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let typo = write(&jail("fastapy/access.log", ""));
    let out = ban_agent(&["check", "--config", &typo], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a missing log passed check");
    assert!(
        stderr.contains("jail auth: logpath")
            && stderr.contains("fastapy/access.log does not exist (nor does its folder)")
            && stderr.contains("missing_log = \"wait\""),
        "{stderr}"
    );
    let out = ban_agent(&["run", "--config", &typo], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "run started on a missing log");
    assert!(
        stderr.contains("fastapy/access.log does not exist"),
        "{stderr}"
    );

    let later = write(&jail("access.log", "missing_log = \"wait\"\n"));
    let stdout = passes(&later, &[]);
    assert!(
        stdout.contains("warning: jail auth: logpath")
            && stdout.contains("read from its start once it appears"),
        "{stdout}"
    );
    passes(&write(&jail("app-*.log", "")), &[]);
    // Between logrotate's rename and the new file: `mid.log.1` is there, `mid.log` not yet.
    std::fs::write(dir.path().join("mid.log.1"), "a line\n").expect("a rotated log");
    passes(&write(&jail("mid.log", "")), &[]);

    // A mail server on a port of the test's own where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    std::fs::write(dir.path().join("access.log"), "").expect("create the log");
    let mail = write(&jail(
        "access.log",
        &format!(
            "[jail.auth.on_ban.email]\nto = [\"ops@example.org\"]\nfrom = \"ban@example.org\"\n\
             smtp = \"127.0.0.1:{closed}\"\n"
        ),
    ));
    let stdout = passes(&mail, &[]);
    assert!(
        stdout.contains("warning: mail (auth): SMTP 127.0.0.1:")
            && stdout.contains("cannot be reached"),
        "{stdout}"
    );
    let stdout = passes(&mail, &["--offline"]);
    assert!(
        !stdout.contains("mail ("),
        "--offline contacts no server: {stdout}"
    );
}

/// The same failures as a container runtime writes them: Docker's json-file driver and
/// the CRI format (a message split in two parts), with ANSI colours from a TTY.
#[test]
fn a_containers_log_is_unwrapped_before_the_filter() {
    let dir = tempfile::tempdir().expect("temp dir");
    let messages: Vec<&str> = SAMPLE.lines().collect();
    let docker: String = messages
        .iter()
        .enumerate()
        .map(|(n, message)| {
            let coloured = message.replace("INFO", "\u{1b}[32mINFO\u{1b}[0m");
            let line = serde_json::json!({
                "log": format!("{coloured}\r\n"),
                "stream": "stdout",
                "time": format!("2026-11-24T12:00:0{n}.000000001Z"),
            });
            format!("{line}\n")
        })
        .collect();
    let cri: String = messages
        .iter()
        .enumerate()
        .map(|(n, message)| {
            let (head, tail) = message.split_at(20);
            format!(
                "2026-11-24T12:00:0{n}.5+00:00 stderr P {head}\n\
                 2026-11-24T12:00:0{n}.6+00:00 stderr F {tail}\n"
            )
        })
        .collect();
    for (name, text, format) in [("docker.log", docker, "docker"), ("cri.log", cri, "cri")] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write log");
        let report = stdout(&ban_agent(
            &[
                "test-filter",
                path.to_str().expect("utf-8 path"),
                "--filter",
                "fastapi-auth",
            ],
            None,
        ));
        let [_, matched, _, missed] = lines_row(&report);
        assert_eq!((matched, missed), (4, 1), "{format}:\n{report}");
        assert!(
            report.contains(&format!(
                "a {format} container log: 5 messages unwrapped, 0 lines"
            )),
            "{report}"
        );
        assert!(report.contains("the container runtime's time"), "{report}");
        // --log-format plain reads the wrapper as the app's line: nothing matches.
        let plain = stdout(&ban_agent(
            &[
                "test-filter",
                path.to_str().expect("utf-8 path"),
                "--filter",
                "fastapi-auth",
                "--log-format",
                "plain",
            ],
            None,
        ));
        assert_eq!(lines_row(&plain)[1], 0, "{plain}");
    }
}
