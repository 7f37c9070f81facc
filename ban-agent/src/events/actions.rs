//! fail2ban's command actions (`action = sendmail-whois[dest=...]`, `abuseipdb[...]`, an
//! operator's own `action.d` file), run as fail2ban runs them: each command through
//! `/bin/sh -c`, its tags replaced; a value that comes from outside (a log line, an
//! address) and holds a character the shell would read is never put into the command's
//! text but passed as a shell variable, `$f2bV_TAG`, through the environment, as fail2ban
//! does. Commands run one at a time, in the order of the bans, off the ban path, each
//! within the action's `timeout`; a failure is counted and logged.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::{fail2ban::action::Commands, metrics::Metrics};

/// Commands waiting at most; past it a command is dropped with a warning.
const QUEUE: usize = 4096;

/// Characters a shell would read in a value (fail2ban's `ESCAPE_CRE`).
const SHELL_SPECIAL: &[char] = &[
    '\\', '#', '&', ';', '`', '|', '*', '?', '~', '<', '>', '^', '(', ')', '[', ']', '{', '}', '$',
    '\'', '"', '\n', '\r',
];

/// Which of an action's commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Start,
    Ban,
    Unban,
    Stop,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Self::Start => "actionstart",
            Self::Ban => "actionban",
            Self::Unban => "actionunban",
            Self::Stop => "actionstop",
        }
    }
}

/// One command to run.
#[derive(Debug)]
pub struct Job {
    /// `actionban of sendmail-whois in fastapi-auth`, for messages.
    pub what: String,
    pub command: Command,
    pub timeout: Duration,
    /// Told once the jobs queued before it are done (a flush; its command is empty).
    pub done: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A command, as queued: its tags are put in by the worker, off the ban path (`<matches>`
/// reads the jail's logs).
#[derive(Debug)]
pub enum Command {
    Template {
        template: String,
        tags: Tags,
    },
    Ready {
        script: String,
        env: Vec<(String, String)>,
    },
}

/// A ban's (or a jail's) tags and their values; `matches` and its kin are looked up in
/// the jail's logs only when a command names them.
#[derive(Clone, Debug, Default)]
pub struct Tags {
    pub values: BTreeMap<String, String>,
    /// The jail's logs, where `<matches>` is looked for.
    pub logpath: Vec<PathBuf>,
    /// The address whose lines `<matches>` are.
    pub address: Option<String>,
    /// How many lines `<matches>` holds at most (the jail's maxretry).
    pub max_matches: usize,
}

/// The command of `step` with `tags` put in, or `None` when the action has none.
pub fn job(action: &str, jail: &str, commands: &Commands, step: Step, tags: &Tags) -> Option<Job> {
    let template = match step {
        Step::Start => &commands.start,
        Step::Ban => &commands.ban,
        Step::Unban => &commands.unban,
        Step::Stop => &commands.stop,
    };
    if template.trim().is_empty() {
        return None;
    }
    Some(Job {
        what: format!("{} of {action} in {jail}", step.name()),
        command: Command::Template {
            template: template.clone(),
            tags: tags.clone(),
        },
        timeout: commands.timeout,
        done: None,
    })
}

/// `template` with each `<tag>` of `tags` replaced: by its value, or, when the value
/// holds a character the shell reads, by `$f2bV_tag`, the value going to the environment.
/// Tags `tags` does not know stay as they are (fail2ban leaves them too).
pub fn fill(template: &str, tags: &Tags) -> (String, Vec<(String, String)>) {
    let mut script = String::with_capacity(template.len());
    let mut env: Vec<(String, String)> = Vec::new();
    let mut matches: Option<String> = None;
    let mut rest = template;
    while let Some(open) = rest.find('<') {
        script.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find(|c: char| c == '>' || c == '<' || c.is_whitespace());
        let Some(close) = close.filter(|&at| after.as_bytes()[at] == b'>' && at > 0) else {
            script.push('<');
            rest = after;
            continue;
        };
        let tag = &after[..close];
        // fail2ban's `<br>` and `<sp>`: a line break and a blank, as they are.
        if let Some(literal) = match tag {
            "br" => Some('\n'),
            "sp" => Some(' '),
            _ => None,
        } {
            script.push(literal);
            rest = &after[close + 1..];
            continue;
        }
        let value = match tag {
            "matches" | "ipmatches" | "ipjailmatches" => {
                Some(matches.get_or_insert_with(|| log_matches(tags)).clone())
            }
            _ => tags.values.get(tag).cloned(),
        };
        match value {
            None => script.push_str(&rest[open..open + close + 2]),
            Some(value) if value.contains(SHELL_SPECIAL) => {
                let name = format!(
                    "f2bV_{}",
                    tag.chars()
                        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                        .collect::<String>()
                );
                script.push('$');
                script.push_str(&name);
                if !env.iter().any(|(n, _)| *n == name) {
                    env.push((name, value));
                }
            }
            Some(value) => script.push_str(&value),
        }
        rest = &after[close + 1..];
    }
    script.push_str(rest);
    (script, env)
}

/// The lines of the jail's logs that hold the address, the last `max_matches` of them.
fn log_matches(tags: &Tags) -> String {
    let Some(address) = &tags.address else {
        return String::new();
    };
    let found = super::mail::lines_holding(
        &tags.logpath,
        std::slice::from_ref(address),
        tags.max_matches.max(1),
    );
    found
        .get(address)
        .map(|lines| lines.join("\n"))
        .unwrap_or_default()
}

/// The sending end of the commands' queue.
#[derive(Clone)]
pub struct Runner {
    queue: mpsc::Sender<Job>,
}

impl Runner {
    /// The queue and its worker, spawned on the current runtime.
    pub fn spawn(metrics: std::sync::Arc<Metrics>) -> Self {
        let (queue, receive) = mpsc::channel(QUEUE);
        tokio::spawn(work(receive, metrics));
        Self { queue }
    }

    /// Waits, at most `timeout`, until the commands queued so far have run; whether they
    /// all did in time.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (done, finished) = tokio::sync::oneshot::channel();
        let marker = Job {
            what: "flush".to_owned(),
            command: Command::Ready {
                script: String::new(),
                env: Vec::new(),
            },
            timeout,
            done: Some(done),
        };
        if self.queue.send(marker).await.is_err() {
            return true;
        }
        matches!(tokio::time::timeout(timeout, finished).await, Ok(Ok(())))
    }

    /// Queues `job`; never waits.
    pub fn push(&self, job: Job, metrics: &Metrics) {
        if let Err(e) = self.queue.try_send(job) {
            metrics.hook_failures.inc();
            let job = match e {
                mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => {
                    job
                }
            };
            warn!(
                "fail2ban action queue full ({QUEUE} commands): {} skipped; the actions are \
                 too slow for this rate of bans",
                job.what
            );
        }
    }
}

/// One command at a time, in the order queued.
async fn work(mut receive: mpsc::Receiver<Job>, metrics: std::sync::Arc<Metrics>) {
    let mut failed: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    while let Some(mut job) = receive.recv().await {
        if let Some(done) = job.done.take() {
            let _waiting = done.send(());
            continue;
        }
        // The tags go in here, the logs read for `<matches>` on the blocking pool.
        if let Command::Template { template, tags } = job.command {
            let filled = tokio::task::spawn_blocking(move || fill(&template, &tags)).await;
            let Ok((script, env)) = filled else {
                metrics.hook_failures.inc();
                warn!("{}: its tags could not be put in", job.what);
                continue;
            };
            job.command = Command::Ready { script, env };
        }
        match run(&job).await {
            Ok(()) => debug!("{} done", job.what),
            Err(why) => {
                metrics.hook_failures.inc();
                // Logged once per action and step; counted every time.
                if failed.insert(job.what.clone()) {
                    warn!(
                        "{}: {why} (counted in ban_agent_hook_failures_total; said once)",
                        job.what
                    );
                }
            }
        }
    }
}

/// Runs one command now (its tags put in), waiting for it (at most its timeout).
pub async fn run(job: &Job) -> Result<(), String> {
    let Command::Ready { script, env } = &job.command else {
        return Err("its tags were not put in".to_owned());
    };
    let child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start /bin/sh: {e}"))?;
    super::finish(child, job.timeout, "the action's `timeout`").await
}

/// `192.0.2.7` as fail2ban's `<ip-rev>` writes it: `7.2.0.192.` (the PTR name's start).
pub fn ip_rev(address: &str) -> String {
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            let mut octets = v4.octets();
            octets.reverse();
            let parts: Vec<String> = octets.iter().map(u8::to_string).collect();
            format!("{}.", parts.join("."))
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            let hex: String = v6.octets().iter().map(|b| format!("{b:02x}")).collect();
            let nibbles: Vec<String> = hex.chars().rev().map(String::from).collect();
            format!("{}.", nibbles.join("."))
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        Tags {
            values: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Tags::default()
        }
    }

    #[test]
    fn plain_values_go_in_and_foreign_ones_through_the_environment() {
        let (script, env) = fill(
            "echo <ip> <name> <F-USER> <unknown> a<b <f-x x> > /tmp/out",
            &tags(&[
                ("ip", "192.0.2.7"),
                ("name", "auth"),
                ("F-USER", "$(touch x); `id`"),
            ]),
        );
        assert_eq!(
            script,
            "echo 192.0.2.7 auth $f2bV_F_USER <unknown> a<b <f-x x> > /tmp/out"
        );
        assert_eq!(
            env,
            [("f2bV_F_USER".to_owned(), "$(touch x); `id`".to_owned())]
        );
    }

    /// A value from a log line never runs: the shell sees `$f2bV_matches`, whose text it
    /// does not read again.
    #[test]
    fn an_injection_through_a_value_is_text() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pwned = dir.path().join("pwned");
        let out = dir.path().join("out");
        let hostile = format!("$(touch {0}); `touch {0}`; echo x > {0}", pwned.display());
        let (script, env) = fill(
            &format!("printf '%s' \"<F-USER>\" > {}", out.display()),
            &tags(&[("F-USER", &hostile)]),
        );
        let job = Job {
            what: "test".into(),
            command: Command::Ready { script, env },
            timeout: Duration::from_secs(5),
            done: None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(run(&job)).expect("runs");
        assert!(!pwned.exists(), "the value ran");
        assert_eq!(std::fs::read_to_string(&out).expect("out"), hostile);
    }

    #[test]
    fn a_failing_or_slow_command_says_why() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let job = |script: &str, timeout| Job {
            what: "test".into(),
            command: Command::Ready {
                script: script.into(),
                env: Vec::new(),
            },
            timeout,
            done: None,
        };
        let failed = runtime
            .block_on(run(&job("echo oops >&2; exit 3", Duration::from_secs(5))))
            .expect_err("fails");
        assert!(
            failed.contains("exit status: 3") && failed.contains("oops"),
            "{failed}"
        );
        let slow = runtime
            .block_on(run(&job("sleep 5", Duration::from_millis(200))))
            .expect_err("times out");
        assert!(slow.contains("killed"), "{slow}");
    }

    #[test]
    fn ip_rev_is_the_ptr_names_start() {
        assert_eq!(ip_rev("192.0.2.7"), "7.2.0.192.");
        assert!(ip_rev("2001:db8::1").starts_with("1.0.0.0."));
        assert!(ip_rev("2001:db8::1").ends_with("8.b.d.0.1.0.0.2."));
    }
}
