//! Mail on bans and unbans, as fail2ban's `sendmail-whois-lines` action sends it: the
//! jail, the address, the failures, the ban's length, and the log lines that hold the
//! address. Through an SMTP server (STARTTLS, credentials from a file) or the local
//! `sendmail`, with lettre.
//!
//! Bounded under a flood: events wait in a queue of their own (full: dropped and counted),
//! and the worker gathers what arrives within [`WINDOW`] (at most [`BATCH`] events) into
//! one mail per set of recipients. Nothing here ever delays a ban.

use std::{
    collections::BTreeMap,
    io::{Read as _, Seek as _, SeekFrom},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use lettre::{
    AsyncSendmailTransport, AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
    transport::smtp::authentication::Credentials,
};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{Event, Kind};
use crate::{
    config::{Email, MailVia},
    metrics::Metrics,
};

/// How long the worker gathers events into one mail.
pub const WINDOW: Duration = Duration::from_secs(2);
/// Events in one mail at most; more wait for the next.
pub const BATCH: usize = 500;
/// Events of one mail whose log lines are looked up (the rest are listed without).
const WITH_LINES: usize = 20;
/// How far back in each log the lines are looked for.
const LOG_TAIL: u64 = 1 << 20;

/// Sends every mail of the events that arrive, a batch per [`WINDOW`].
pub async fn work(mut receive: mpsc::Receiver<(Event, Email, Duration)>, metrics: Arc<Metrics>) {
    while let Some(first) = receive.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + WINDOW;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, receive.recv()).await {
                Ok(Some(next)) => batch.push(next),
                Ok(None) | Err(_) => break,
            }
        }
        let mut groups: Vec<(Email, Duration, Vec<Event>)> = Vec::new();
        for (event, email, timeout) in batch {
            match groups.iter_mut().find(|(e, _, _)| *e == email) {
                Some((_, _, events)) => events.push(event),
                None => groups.push((email, timeout, vec![event])),
            }
        }
        for (email, timeout, events) in groups {
            if let Err(e) = send(&email, &events, timeout).await {
                metrics.hook_failures.inc();
                warn!(
                    to = %email.to.join(", "),
                    events = events.len(),
                    "the mail about {} was not sent: {e}",
                    subject(&events)
                );
            }
        }
    }
}

/// One mail about `events`.
pub async fn send(email: &Email, events: &[Event], timeout: Duration) -> Result<(), String> {
    let lines = {
        let email = email.clone();
        let wanted: Vec<String> = events
            .iter()
            .take(WITH_LINES)
            .map(|e| address_of(&e.ip))
            .collect();
        tokio::task::spawn_blocking(move || log_lines(&email, &wanted))
            .await
            .map_err(|e| format!("reading the logs failed: {e}"))?
    };
    let message = message(email, events, &lines)?;
    let sent = match &email.via {
        MailVia::Sendmail => AsyncSendmailTransport::<Tokio1Executor>::new()
            .send(message)
            .await
            .map(drop)
            .map_err(|e| format!("sendmail: {e}; is a sendmail program installed?")),
        MailVia::Smtp { host, port, .. } => smtp(&email.via, timeout)?
            .send(message)
            .await
            .map(drop)
            .map_err(|e| format!("SMTP {host}:{port}: {e}")),
    };
    if sent.is_ok() {
        debug!(events = events.len(), "mail sent");
    }
    sent
}

/// The SMTP transport `via` names (STARTTLS required when it says so), each step bounded
/// by `timeout`; an error for sendmail.
fn smtp(via: &MailVia, timeout: Duration) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let MailVia::Smtp {
        host,
        port,
        starttls,
        credentials_file,
    } = via
    else {
        return Err("not an SMTP server".to_owned());
    };
    let builder = if *starttls {
        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
            .map_err(|e| format!("{host}: {e}"))?
    } else {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
    };
    let mut builder = builder.port(*port).timeout(Some(timeout));
    if let Some(file) = credentials_file {
        builder = builder.credentials(credentials(file)?);
    }
    Ok(builder.build())
}

/// Whether mail can go the way `via` says, without sending any: the SMTP server is
/// reached, answers EHLO and offers STARTTLS when it is required; or a sendmail program
/// is installed. What was found, or what is wrong.
pub async fn probe(via: &MailVia, timeout: Duration) -> Result<String, String> {
    match via {
        MailVia::Sendmail => {
            let found = ["/usr/sbin/sendmail", "/usr/lib/sendmail"]
                .into_iter()
                .map(PathBuf::from)
                .chain(
                    std::env::var_os("PATH")
                        .map(|path| {
                            std::env::split_paths(&path)
                                .map(|dir| dir.join("sendmail"))
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default(),
                )
                .find(|path| path.is_file());
            match found {
                Some(path) => Ok(format!("sendmail at {}", path.display())),
                None => Err(
                    "no sendmail program is installed (apt install a mail transfer \
                             agent, or set `smtp`)"
                        .to_owned(),
                ),
            }
        }
        MailVia::Smtp {
            host,
            port,
            starttls,
            ..
        } => {
            let transport = smtp(via, timeout)?;
            let what = if *starttls {
                "EHLO and STARTTLS"
            } else {
                "EHLO"
            };
            match transport.test_connection().await {
                Ok(true) => Ok(format!("SMTP {host}:{port} answers {what}")),
                Ok(false) => Err(format!("SMTP {host}:{port} did not answer {what}")),
                Err(e) => Err(format!(
                    "SMTP {host}:{port} {}: {e}",
                    if *starttls {
                        "cannot be reached or does not offer STARTTLS (`starttls = true`)"
                    } else {
                        "cannot be reached"
                    }
                )),
            }
        }
    }
}

/// `user:password` from the first line of `file`.
fn credentials(file: &Path) -> Result<Credentials, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read the credentials file {}: {e}", file.display()))?;
    let line = text.lines().next().unwrap_or_default();
    let (user, password) = line
        .split_once(':')
        .ok_or_else(|| format!("{}: expected one line `user:password`", file.display()))?;
    Ok(Credentials::new(user.to_owned(), password.to_owned()))
}

fn subject(events: &[Event]) -> String {
    match events {
        [event] => format!(
            "[ban-agent] {}: {} {}",
            event.jail,
            if event.event == Kind::Ban {
                "banned"
            } else {
                "unbanned"
            },
            event.ip
        ),
        _ => {
            let bans = events.iter().filter(|e| e.event == Kind::Ban).count();
            let jails: std::collections::BTreeSet<&str> =
                events.iter().map(|e| e.jail.as_str()).collect();
            let unbans = events.len() - bans;
            let counts: Vec<String> = [(bans, "ban", "bans"), (unbans, "unban", "unbans")]
                .into_iter()
                .filter(|(n, _, _)| *n > 0)
                .map(|(n, one, many)| crate::plural(n as u64, one, many))
                .collect();
            format!(
                "[ban-agent] {} in {}",
                counts.join(" and "),
                jails.into_iter().collect::<Vec<_>>().join(", ")
            )
        }
    }
}

fn message(
    email: &Email,
    events: &[Event],
    lines: &BTreeMap<String, Vec<String>>,
) -> Result<Message, String> {
    let mailbox = |text: &str| -> Result<Mailbox, String> {
        text.parse()
            .map_err(|e| format!("{text:?} is not a mail address: {e}"))
    };
    let mut builder = Message::builder()
        .from(mailbox(&email.from)?)
        .subject(subject(events))
        .header(ContentType::TEXT_PLAIN);
    for to in &email.to {
        builder = builder.to(mailbox(to)?);
    }
    builder
        .body(body(events, lines, email.log_lines))
        .map_err(|e| format!("cannot build the mail: {e}"))
}

fn body(events: &[Event], lines: &BTreeMap<String, Vec<String>>, log_lines: usize) -> String {
    let mut text = String::new();
    for (i, event) in events.iter().enumerate() {
        let length = match event.bantime {
            Some(seconds) => crate::duration::show(Duration::from_secs(seconds)),
            None => "permanent".to_owned(),
        };
        let until = event
            .expires_at
            .map_or_else(|| "never".to_owned(), crate::clock::wall_text);
        text.push_str(&format!(
            "{} {} in jail {}: {} failures, ban {length} (until {until}), reason {}\n",
            if event.event == Kind::Ban {
                "Banned"
            } else {
                "Unbanned"
            },
            event.ip,
            event.jail,
            event.failures,
            event.reason
        ));
        if log_lines > 0 && i < WITH_LINES {
            match lines.get(&address_of(&event.ip)) {
                Some(found) if !found.is_empty() => {
                    text.push_str("Lines of the log that hold it:\n");
                    for line in found {
                        text.push_str("    ");
                        text.push_str(line);
                        text.push('\n');
                    }
                }
                _ => text.push_str("(no line of the log holds it any more)\n"),
            }
        }
        text.push('\n');
    }
    if events.len() > WITH_LINES && log_lines > 0 {
        text.push_str(&format!(
            "Log lines are given for the first {WITH_LINES} events of a mail only.\n"
        ));
    }
    text
}

/// The address part of `192.0.2.0/24` (what log lines hold).
fn address_of(ip: &str) -> String {
    ip.split('/').next().unwrap_or(ip).to_owned()
}

/// For each of `addresses`, the last `email.log_lines` lines of the jail's logs (their
/// last [`LOG_TAIL`] bytes) that hold it as a whole word.
fn log_lines(email: &Email, addresses: &[String]) -> BTreeMap<String, Vec<String>> {
    if email.log_lines == 0 {
        return BTreeMap::new();
    }
    lines_holding(&email.logpath, addresses, email.log_lines)
}

/// For each of `addresses`, the last `max` lines of the files `logpath` names (globs too;
/// their last [`LOG_TAIL`] bytes) that hold it as a whole word.
pub(super) fn lines_holding(
    logpath: &[PathBuf],
    addresses: &[String],
    max: usize,
) -> BTreeMap<String, Vec<String>> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if addresses.is_empty() {
        return found;
    }
    for path in files(logpath) {
        let Some(tail) = tail(&path) else { continue };
        for line in tail.lines() {
            for address in addresses {
                if holds(line, address) {
                    let lines = found.entry(address.clone()).or_default();
                    lines.push(line.chars().take(500).collect());
                    if lines.len() > max {
                        lines.remove(0);
                    }
                }
            }
        }
    }
    found
}

/// `line` holds `address` not as a part of a longer one (192.0.2.1 in 192.0.2.10).
fn holds(line: &str, address: &str) -> bool {
    line.match_indices(address).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + address.len()..].chars().next();
        let part =
            |c: Option<char>| c.is_some_and(|c| c.is_ascii_hexdigit() || c == '.' || c == ':');
        !part(before) && !part(after)
    })
}

fn files(patterns: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for pattern in patterns {
        let text = pattern.to_string_lossy();
        match glob::glob(&text) {
            Ok(paths) => files.extend(paths.flatten()),
            Err(_) => files.push(pattern.clone()),
        }
    }
    files
}

fn tail(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let length = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(LOG_TAIL)))
        .ok()?;
    let mut bytes = Vec::new();
    file.take(LOG_TAIL).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests;
