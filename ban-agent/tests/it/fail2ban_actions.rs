//! fail2ban's own actions, read from the Debian package where `cargo xtask test` unpacked
//! it (never copied here), run by ban-agent's daemon as fail2ban runs them:
//! - `sendmail-whois`, its mail through a fake `sendmail` on PATH (the stock action's
//!   `mailcmd` given as `sendmail ...`, since it names `/usr/sbin/sendmail`) and a fake
//!   `whois`: the mail that leaves, its sender and recipient, at the start and at a ban;
//! - `abuseipdb`, through the real `curl` to an HTTPS server this test runs on loopback (a
//!   curlrc sends `api.abuseipdb.com:443` there, trusting the test's certificate): the
//!   request it makes;
//! - a log line whose text tries a command substitution, which reaches abuseipdb's
//!   comment as text and runs nothing;
//! - a reload: one that changes no action runs none, one that changes an action stops
//!   the old actions and starts the new ones.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::common::agent::{AGENT, Daemon, cli, login_line, now_stamp};

/// The HTTPS server: one POST written to `request`, answered 200.
const SERVER: &str = r#"
import http.server, ssl, sys
port_file, request_file, cert, key = sys.argv[1:5]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with open(request_file + ".part", "wb") as out:
            out.write(("%s %s\nKey: %s\n\n" % (self.command, self.path, self.headers.get("Key"))).encode())
            out.write(body)
        import os
        os.rename(request_file + ".part", request_file)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"data":{}}')
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
with open(port_file + ".part", "w") as out:
    out.write(str(server.server_address[1]))
import os
os.rename(port_file + ".part", port_file)
server.serve_forever()
"#;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _killed = self.0.kill();
        let _reaped = self.0.wait();
    }
}

/// Waits up to 10 s for `path` to exist, and returns what it holds.
fn wait_for(path: &Path, daemon: &Daemon) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never came\n{}",
            path.display(),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(path).expect("read")
}

fn script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).expect("write the script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A certificate for `api.abuseipdb.com`, made here with openssl.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    crate::common::sh(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=api.abuseipdb.com"])
            .args(["-addext", "subjectAltName=DNS:api.abuseipdb.com"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null()),
    );
    (cert, key)
}

#[test]
fn fail2bans_stock_actions_mail_and_report_a_ban_start_again_at_a_reload_and_a_log_line_runs_nothing()
 {
    let Some(root) =
        crate::fail2ban_client::fail2ban_root("fail2bans_stock_actions_mail_and_report_a_ban")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    // The fakes on PATH: sendmail keeps its arguments and the mail, whois answers.
    let bin = d.join("bin");
    std::fs::create_dir(&bin).expect("bin");
    script(
        &bin.join("sendmail"),
        &format!(
            "#!/bin/sh\nn=$(ls {0} | wc -l)\n{{ echo \"args: $*\"; cat; }} > {0}/mail.$n.part && \
             mv {0}/mail.$n.part {0}/mail.$n\n",
            d.join("mails").display()
        ),
    );
    std::fs::create_dir(d.join("mails")).expect("mails");
    script(&bin.join("whois"), "#!/bin/sh\necho \"whois of $1\"\n");
    // curl sends api.abuseipdb.com:443 to the test's server and trusts its certificate.
    let (cert, key) = certificate(d);
    let (port_file, request) = (d.join("port"), d.join("request"));
    let _server = Killed(
        Command::new("python3")
            .arg("-c")
            .arg(SERVER)
            .arg(&port_file)
            .arg(&request)
            .arg(&cert)
            .arg(&key)
            .spawn()
            .expect("start the HTTPS server"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !port_file.exists() {
        assert!(Instant::now() < deadline, "the HTTPS server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let port = std::fs::read_to_string(&port_file).expect("port");
    std::fs::write(
        d.join(".curlrc"),
        format!(
            "connect-to = \"api.abuseipdb.com:443:127.0.0.1:{port}\"\ncacert = \"{}\"\n",
            cert.display()
        ),
    )
    .expect("curlrc");

    let log = d.join("auth.log");
    let pwned = d.join("pwned");
    std::fs::write(&log, "").expect("the log");
    let config = d.join("ban-agent.toml");
    // The configuration, its mail sent to `dest`.
    let configure = |dest: &str| {
        std::fs::write(
            &config,
            format!(
                "socket = \"ctl.sock\"\nstate_dir = \"state\"\nignoreself = false\n\
                 fail2ban_dir = \"{}\"\n\
                 [jail.auth]\nlogpath = \"auth.log\"\nfilter = \"fastapi-auth\"\nstart = \"head\"\n\
                 maxretry = 2\nbantime = \"1h\"\nports = [8000]\n\
                 action = ['iptables-multiport', \
                 'sendmail-whois[dest={dest}, sender=ban@example.org, \
                 mailcmd=\"sendmail -f <sender> <dest>\"]', \
                 'abuseipdb[abuseipdb_apikey=KEY-1, abuseipdb_category=18]']\n",
                root.join("etc/fail2ban").display()
            ),
        )
        .expect("the configuration");
    };
    configure("ops@example.org");
    // `check` says which run and which the kernel ban replaces.
    let checked = crate::common::sh(
        Command::new(AGENT)
            .args(["check", "--offline", "--config"])
            .arg(&config),
    );
    let checked = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.contains(
            "actions (auth): sendmail-whois, abuseipdb run (fail2ban's action.d); \
             iptables-multiport: the kernel ban does it"
        ),
        "{checked}"
    );
    let socket = d.join("ctl.sock");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new(AGENT);
    command
        .args(["run", "--dry-run", "--config"])
        .arg(&config)
        .env("PATH", path)
        .env("CURL_HOME", d);
    let daemon = Daemon::spawn(command, &socket, &d.join("agent.log"));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_owned();

    // actionstart: sendmail-whois says the jail started.
    let started = wait_for(&d.join("mails/mail.0"), &daemon);
    assert!(
        started.starts_with("args: -f ban@example.org ops@example.org\n"),
        "{started}"
    );
    assert!(
        started.contains(&format!("Subject: [Fail2Ban] auth: started on {host}\n")),
        "{started}"
    );
    assert!(
        started.contains("From: Fail2Ban <ban@example.org>\n"),
        "{started}"
    );
    assert!(started.contains("To: ops@example.org\n"), "{started}");

    // Two failures ban; a line between them tries to run a command where its text is
    // used (`<matches>` holds the last lines of the jail's logs that hold the address).
    let failures = format!(
        "{0}{1} - fastapi-auth - INFO - 192.0.2.7 - \"GET /$(touch {2})`touch {2}`\" 404 - 0.0100s\n{3}",
        login_line(&now_stamp(), "192.0.2.7", 401),
        now_stamp(),
        pwned.display(),
        login_line(&now_stamp(), "192.0.2.7", 401),
    );
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open the log");
    std::io::Write::write_all(&mut file, failures.as_bytes()).expect("append");
    let mail = wait_for(&d.join("mails/mail.1"), &daemon);
    assert!(
        mail.contains(&format!(
            "Subject: [Fail2Ban] auth: banned 192.0.2.7 from {host}\n"
        )),
        "{mail}"
    );
    assert!(mail.contains("2 attempts against auth."), "{mail}");
    assert!(mail.contains("whois of 192.0.2.7\n"), "{mail}");
    assert!(
        mail.lines().any(|line| line.starts_with("Date: ")),
        "{mail}"
    );

    // abuseipdb's report, as curl sent it to the (stand-in) API.
    let sent = wait_for(&request, &daemon);
    let (head, body) = sent.split_once("\n\n").expect("head and body");
    assert_eq!(head, "POST /api/v2/report\nKey: KEY-1");
    let form: Vec<(String, String)> = body
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_owned(), percent_decode(v))
        })
        .collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} in {body}"))
    };
    assert_eq!(field("ip"), "192.0.2.7");
    assert_eq!(field("categories"), "18");
    let comment = field("comment");
    // The log lines that hold the address, the hostile one as text.
    assert!(comment.contains("\"POST /login\" 401"), "{comment}");
    assert!(comment.contains("$(touch "), "{comment}");
    assert!(!pwned.exists(), "a log line ran a command");

    // `get JAIL actions` names them.
    let actions = cli(&socket, &["get", "auth", "actions"]);
    assert_eq!(actions.trim(), "kernel\nsendmail-whois\nabuseipdb");

    // A reload that changes no action runs none; one that changes an action stops the
    // old ones and starts the new ones, as fail2ban's reload of a jail does.
    cli(&socket, &["reload"]);
    configure("oncall@example.org");
    cli(&socket, &["reload"]);
    let stopped = wait_for(&d.join("mails/mail.2"), &daemon);
    assert!(
        stopped.starts_with("args: -f ban@example.org ops@example.org\n")
            && stopped.contains(&format!("Subject: [Fail2Ban] auth: stopped on {host}\n")),
        "{stopped}"
    );
    let started = wait_for(&d.join("mails/mail.3"), &daemon);
    assert!(
        started.starts_with("args: -f ban@example.org oncall@example.org\n")
            && started.contains(&format!("Subject: [Fail2Ban] auth: started on {host}\n")),
        "{started}"
    );

    // The stop sends the new action's last mail.
    cli(&socket, &["stop"]);
    daemon.wait();
    let stopped = std::fs::read_to_string(d.join("mails/mail.4")).expect("the stop's mail");
    assert!(
        stopped.starts_with("args: -f ban@example.org oncall@example.org\n")
            && stopped.contains(&format!("Subject: [Fail2Ban] auth: stopped on {host}\n")),
        "{stopped}"
    );
    let mails = std::fs::read_dir(d.join("mails"))
        .expect("the mails")
        .count();
    assert_eq!(
        mails, 5,
        "five mails: started, banned, stopped, started, stopped"
    );
}

/// `application/x-www-form-urlencoded` decoding.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every stock action of the Debian package (but Python's `smtp.py`) reads: a firewall's
/// as the kernel ban, any other with its commands, no tag of the files left unresolved
/// but the ban's own.
#[test]
fn every_stock_action_of_fail2ban_reads() {
    let Some(root) = crate::fail2ban_client::fail2ban_root("every_stock_action_of_fail2ban_reads")
    else {
        return;
    };
    let dir = root.join("etc/fail2ban/action.d");
    let jail: std::collections::HashMap<String, String> =
        [("name", "auth"), ("port", "8000"), ("protocol", "tcp")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    let mut read = (0, 0);
    for entry in std::fs::read_dir(&dir).expect("action.d") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let Some(stem) = name.strip_suffix(".conf") else {
            continue;
        };
        // Files other actions include, not actions of their own.
        if stem.ends_with("-common") || stem == "helpers-common" {
            continue;
        }
        let reference = ban_agent::fail2ban::FilterRef::parse(stem).expect("parse");
        let action = ban_agent::fail2ban::action::read(&dir, &reference, &jail)
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        match action.kind {
            ban_agent::fail2ban::action::ActionKind::Kernel => read.0 += 1,
            ban_agent::fail2ban::action::ActionKind::Commands(commands) => {
                read.1 += 1;
                for command in [
                    &commands.start,
                    &commands.ban,
                    &commands.unban,
                    &commands.stop,
                ] {
                    assert!(!command.contains("%("), "{stem}: {command}");
                }
            }
        }
    }
    assert!(read.0 >= 15 && read.1 >= 30, "{read:?}");
}
