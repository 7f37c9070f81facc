//! Mail against an SMTP server of the test's own, on loopback.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::TcpListener,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::*;
use crate::events::Events;

/// A plain SMTP server on 127.0.0.1 that accepts every mail and keeps each one's DATA.
struct Server {
    port: u16,
    mails: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("address").port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&mails);
        std::thread::spawn(move || {
            // Bounded: a test sends a few mails at most.
            for stream in listener.incoming().take(20) {
                let Ok(stream) = stream else { return };
                let kept = Arc::clone(&kept);
                std::thread::spawn(move || serve(stream, &kept));
            }
        });
        Self { port, mails }
    }

    fn email(&self, logpath: Vec<PathBuf>) -> Email {
        Email {
            to: vec!["ops@example.org".to_owned()],
            from: "ban-agent@example.org".to_owned(),
            via: MailVia::Smtp {
                host: "127.0.0.1".to_owned(),
                port: self.port,
                starttls: false,
                credentials_file: None,
            },
            log_lines: 20,
            logpath,
        }
    }

    fn mails(&self) -> Vec<String> {
        self.mails.lock().expect("lock").clone()
    }
}

fn serve(stream: std::net::TcpStream, mails: &Mutex<Vec<String>>) {
    let _timeout = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut say = |text: &str| writer.write_all(format!("{text}\r\n").as_bytes()).is_ok();
    if !say("220 test ESMTP") {
        return;
    }
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let command = line.trim_end().to_ascii_uppercase();
        let reply = if command.starts_with("EHLO") || command.starts_with("HELO") {
            "250 test"
        } else if command.starts_with("DATA") {
            if !say("354 go on") {
                return;
            }
            let mut data = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line.trim_end() == "." {
                    break;
                }
                data.push_str(&line);
            }
            mails.lock().expect("lock").push(data);
            "250 kept"
        } else if command.starts_with("QUIT") {
            let _bye = say("221 bye");
            return;
        } else {
            "250 ok"
        };
        if !say(reply) {
            return;
        }
    }
}

fn ban(ip: &str, failures: u32) -> Event {
    Event {
        event: Kind::Ban,
        jail: "auth".to_owned(),
        ip: ip.to_owned(),
        failures,
        bantime: Some(3600),
        expires_at: Some(1_795_525_200_000),
        reason: "failures".to_owned(),
        at: 1_795_521_600_000,
    }
}

/// One ban, one mail: the jail, the address, the failures, the length, and the log lines
/// that hold the address (not those of a longer address that starts the same).
#[tokio::test]
async fn a_ban_is_mailed_with_its_failures_length_and_log_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("auth.log");
    let line = |host: &str, n: u32| {
        format!(
            "2026-11-24 12:00:0{n},000 - fastapi-auth - INFO - {host} - \"POST /login\" 401 - 0.0100s\n"
        )
    };
    let text: String = (1..=3)
        .map(|n| line("192.0.2.7", n))
        .chain([line("192.0.2.70", 4)])
        .collect();
    std::fs::write(&log, text).expect("write the log");
    let server = Server::start();
    send(
        &server.email(vec![log]),
        &[ban("192.0.2.7", 3)],
        Duration::from_secs(5),
    )
    .await
    .expect("sent");
    let mails = server.mails();
    assert_eq!(mails.len(), 1);
    let mail = mails[0].replace("=\r\n", "").replace("\r\n", "\n");
    assert!(
        mail.contains("Subject: [ban-agent] auth: banned 192.0.2.7"),
        "{mail}"
    );
    assert!(mail.contains("To: ops@example.org"), "{mail}");
    assert!(
        mail.contains("Banned 192.0.2.7 in jail auth: 3 failures, ban 1h"),
        "{mail}"
    );
    for n in 1..=3 {
        assert!(
            mail.contains(line("192.0.2.7", n).trim_end()),
            "line {n}:\n{mail}"
        );
    }
    assert!(!mail.contains("192.0.2.70"), "{mail}");
}

/// A flood of bans makes a bounded number of mails, each listing many bans, and every
/// ban is in one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bans_is_batched_into_a_few_mails() {
    let server = Server::start();
    let events = Events::spawn(Metrics::new());
    let hook = crate::config::Action {
        command: None,
        webhook: None,
        timeout: Duration::from_secs(5),
        email: Some(server.email(Vec::new())),
    };
    let addresses: Vec<String> = (0..300)
        .map(|i| format!("198.51.100.{}", i % 250 + 1) + if i >= 250 { "/32" } else { "" })
        .collect();
    for address in &addresses {
        events.emit(ban(address, 5), Some(&hook));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let all_in = |mails: &[String]| {
        let text = mails.join("\n");
        text.matches("Banned 198.51.100.").count() == addresses.len()
    };
    while !all_in(&server.mails()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mails = server.mails();
    assert!(
        all_in(&mails),
        "{} mails:\n{}",
        mails.len(),
        mails.join("\n---\n")
    );
    assert!(mails.len() <= 3, "{} mails for 300 bans", mails.len());
    assert!(mails[0].contains("Subject: [ban-agent] 300 bans") || mails.len() > 1);
}

#[test]
fn an_address_is_found_only_as_a_whole() {
    assert!(holds("x 192.0.2.7 y", "192.0.2.7"));
    assert!(holds("192.0.2.7", "192.0.2.7"));
    assert!(!holds("x 192.0.2.70 y", "192.0.2.7"));
    assert!(!holds("x 10.192.0.2.7", "192.0.2.7"));
    assert!(holds("[2001:db8::1]:443", "2001:db8::1"));
    assert!(!holds("2001:db8::10", "2001:db8::1"));
}

/// `check` asks the server without sending: EHLO answered; STARTTLS required but not
/// offered (the test's server offers none), and a port where nothing listens, are said.
#[tokio::test]
async fn a_probe_says_whether_mail_can_go_without_sending_any() {
    let server = Server::start();
    let plain = server.email(Vec::new()).via;
    let found = probe(&plain, Duration::from_secs(3)).await;
    assert!(
        found
            .as_ref()
            .is_ok_and(|text| text.contains("answers EHLO")),
        "{found:?}"
    );
    let MailVia::Smtp { host, port, .. } = plain.clone() else {
        unreachable!("the test's server is SMTP")
    };
    let starttls = MailVia::Smtp {
        host: host.clone(),
        port,
        starttls: true,
        credentials_file: None,
    };
    let refused = probe(&starttls, Duration::from_secs(3)).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|text| text.contains("STARTTLS")),
        "{refused:?}"
    );
    // A port of the test's own, closed again: nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let nobody = MailVia::Smtp {
        host,
        port: closed,
        starttls: false,
        credentials_file: None,
    };
    let unreachable = probe(&nobody, Duration::from_secs(3)).await;
    assert!(
        unreachable
            .as_ref()
            .is_err_and(|text| text.contains("cannot be reached")),
        "{unreachable:?}"
    );
    assert!(server.mails().is_empty(), "a probe sends no mail");
}
