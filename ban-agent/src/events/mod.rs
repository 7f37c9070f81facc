//! Ban and unban actions: a jail's `on_ban` / `on_unban` command, webhook and mail.
//!
//! The agent hands each event to a queue and goes on; a worker runs the actions, several at a
//! time, each bounded by its timeout. A failing, slow or hanging action is logged and
//! counted, and never delays a ban. When the queue is full the event is dropped with a
//! warning rather than waiting.

use std::{process::Stdio, sync::Arc, time::Duration};

use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, warn};

use crate::{
    clock::UnixMs,
    config::{Action, Email},
    metrics::Metrics,
};

pub mod actions;
pub mod mail;

/// Events waiting for their actions at most.
const QUEUE: usize = 4096;
/// Actions running at once at most.
const CONCURRENT: usize = 16;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Ban,
    Unban,
}

/// One ban or unban, as actions receive it (the webhook's JSON body).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    pub event: Kind,
    pub jail: String,
    /// The address, or the network of a prefix ban (`192.0.2.0/24`).
    pub ip: String,
    pub failures: u32,
    /// Length of the ban in seconds; `None` when permanent.
    pub bantime: Option<u64>,
    /// Wall-clock end of the ban, Unix milliseconds; `None` when permanent.
    pub expires_at: Option<UnixMs>,
    /// Why: `failures`, `operator`, `expired`, `jail removed`, `restored`.
    pub reason: String,
    /// When it happened, Unix milliseconds.
    pub at: UnixMs,
}

/// The sending end of the action queue, of the mail queue and of fail2ban's actions'.
#[derive(Clone)]
pub struct Events {
    queue: mpsc::Sender<(Event, Action)>,
    mail: mpsc::Sender<(Event, Email, Duration)>,
    fail2ban: actions::Runner,
    /// This host's name, fail2ban's `<fq-hostname>`.
    host: String,
    metrics: Arc<Metrics>,
}

impl Events {
    /// The queue and its worker, spawned on the current runtime.
    pub fn spawn(metrics: Arc<Metrics>) -> Self {
        let (queue, receive) = mpsc::channel(QUEUE);
        tokio::spawn(work(receive, Arc::clone(&metrics)));
        let (mail, mails) = mpsc::channel(QUEUE);
        tokio::spawn(mail::work(mails, Arc::clone(&metrics)));
        let host = crate::host_name().unwrap_or_else(|| "localhost".to_owned());
        Self {
            queue,
            mail,
            fail2ban: actions::Runner::spawn(Arc::clone(&metrics)),
            host,
            metrics,
        }
    }

    /// Queues the commands of `jail`'s fail2ban actions for `event`: `actionban` or
    /// `actionunban`, with the ban's tags. Never waits.
    pub fn fail2ban(&self, jail: &crate::config::Jail, event: &Event) {
        // Most jails have none: a ban then costs nothing here.
        if jail
            .actions
            .iter()
            .all(|action| action.kind == crate::fail2ban::action::ActionKind::Kernel)
        {
            return;
        }
        let step = match event.event {
            Kind::Ban => actions::Step::Ban,
            Kind::Unban => actions::Step::Unban,
        };
        let address = event.ip.split('/').next().unwrap_or(&event.ip).to_owned();
        let mut tags = self.jail_tags(jail);
        let seconds = event.at.div_euclid(1000);
        for (tag, value) in [
            ("ip", event.ip.clone()),
            ("ip-rev", actions::ip_rev(&address)),
            ("failures", event.failures.to_string()),
            ("bantime", bantime_text(event)),
            ("time", seconds.to_string()),
            ("restored", "0".to_owned()),
            (
                "family",
                if address.contains(':') {
                    "inet6"
                } else {
                    "inet4"
                }
                .to_owned(),
            ),
        ] {
            tags.values.insert(tag.to_owned(), value);
        }
        tags.address = Some(address);
        self.queue_fail2ban(jail, step, &tags);
    }

    /// Queues `actionstart` (the daemon starts) or `actionstop` (it stops) of `jail`'s
    /// fail2ban actions.
    pub fn fail2ban_jail(&self, jail: &crate::config::Jail, step: actions::Step) {
        let tags = self.jail_tags(jail);
        self.queue_fail2ban(jail, step, &tags);
    }

    /// Waits, at most `timeout`, for the fail2ban actions' commands queued so far.
    pub async fn flush(&self, timeout: Duration) -> bool {
        self.fail2ban.flush(timeout).await
    }

    fn queue_fail2ban(
        &self,
        jail: &crate::config::Jail,
        step: actions::Step,
        tags: &actions::Tags,
    ) {
        for action in &jail.actions {
            let crate::fail2ban::action::ActionKind::Commands(commands) = &action.kind else {
                continue;
            };
            if let Some(job) = actions::job(&action.name, &jail.name, commands, step, tags) {
                self.fail2ban.push(job, &self.metrics);
            }
        }
    }

    /// The tags every command of a jail's actions gets.
    fn jail_tags(&self, jail: &crate::config::Jail) -> actions::Tags {
        let short = self.host.split('.').next().unwrap_or(&self.host).to_owned();
        let values = [
            ("name", jail.name.clone()),
            ("fq-hostname", self.host.clone()),
            ("sh-hostname", short),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        actions::Tags {
            values,
            logpath: jail.logpath.clone(),
            address: None,
            max_matches: usize::try_from(jail.rules.maxretry).unwrap_or(usize::MAX),
        }
    }

    /// Queues `action` for `event`; never waits.
    pub fn emit(&self, event: Event, action: Option<&Action>) {
        let Some(action) = action else { return };
        if let Some(email) = &action.email
            && let Err(e) = self
                .mail
                .try_send((event.clone(), email.clone(), action.timeout))
        {
            self.metrics.hook_failures.inc();
            let (event, _, _) = e.into_inner();
            warn!(
                jail = %event.jail,
                ip = %event.ip,
                "mail queue full ({QUEUE} events): no mail about this {:?}",
                event.event
            );
        }
        if action.command.is_none() && action.webhook.is_none() {
            return;
        }
        if let Err(e) = self.queue.try_send((event, action.clone())) {
            self.metrics.hook_failures.inc();
            let (event, _) = e.into_inner();
            warn!(
                jail = %event.jail,
                ip = %event.ip,
                "hook queue full ({QUEUE} events): {:?} hook skipped; hooks are too slow \
                 for this rate of bans, shorten their timeout",
                event.event
            );
        }
    }
}

async fn work(mut receive: mpsc::Receiver<(Event, Action)>, metrics: Arc<Metrics>) {
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    while let Some((event, action)) = receive.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            run_action(&event, &action, &metrics).await;
            drop(slot);
        });
    }
}

/// Runs the command and the webhook of one event, logging each failure.
pub async fn run_action(event: &Event, action: &Action, metrics: &Metrics) {
    if let Some(command) = &action.command
        && let Err(e) = run_command(command, event, action.timeout).await
    {
        metrics.hook_failures.inc();
        warn!(jail = %event.jail, ip = %event.ip, "{:?} command {:?}: {e}", event.event, command[0]);
    }
    if let Some(url) = &action.webhook
        && let Err(e) = post(url, event, action.timeout).await
    {
        metrics.hook_failures.inc();
        warn!(jail = %event.jail, ip = %event.ip, "{:?} webhook {url}: {e}", event.event);
    }
}

/// fail2ban's action tags, replaced in the command's arguments.
fn substitute(argument: &str, event: &Event) -> String {
    argument
        .replace("<ip>", &event.ip)
        .replace("<jail>", &event.jail)
        .replace("<name>", &event.jail)
        .replace("<failures>", &event.failures.to_string())
        .replace("<bantime>", &bantime_text(event))
}

fn bantime_text(event: &Event) -> String {
    event
        .bantime
        .map_or_else(|| "-1".to_owned(), |secs| secs.to_string())
}

async fn run_command(command: &[String], event: &Event, timeout: Duration) -> Result<(), String> {
    let Some((program, args)) = command.split_first() else {
        return Err("empty command".to_owned());
    };
    let child = tokio::process::Command::new(program)
        .args(args.iter().map(|a| substitute(a, event)))
        .env(
            "BAN_AGENT_EVENT",
            format!("{:?}", event.event).to_lowercase(),
        )
        .env("BAN_AGENT_JAIL", &event.jail)
        .env("BAN_AGENT_IP", &event.ip)
        .env("BAN_AGENT_FAILURES", event.failures.to_string())
        .env("BAN_AGENT_BANTIME", bantime_text(event))
        .env("BAN_AGENT_REASON", &event.reason)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start it: {e}; check the path in `command`"))?;
    finish(child, timeout, "`timeout`").await?;
    debug!(ip = %event.ip, "hook command done");
    Ok(())
}

/// Waits for `child` at most `timeout` (then kills it: raise `setting`); a failure says
/// its exit status and the start of its stderr.
async fn finish(
    mut child: tokio::process::Child,
    timeout: Duration,
    setting: &str,
) -> Result<(), String> {
    let stderr = child.stderr.take();
    let status = tokio::time::timeout(timeout, child.wait())
        .await
        .map_err(|_| {
            format!(
                "still running after {}: killed; raise {setting}",
                crate::duration::show(timeout)
            )
        })?
        .map_err(|e| format!("cannot wait for it: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let mut message = String::new();
    if let Some(mut stderr) = stderr {
        use tokio::io::AsyncReadExt as _;
        let mut bytes = Vec::new();
        let _partial = (&mut stderr).take(2048).read_to_end(&mut bytes).await;
        message = String::from_utf8_lossy(&bytes).trim().to_owned();
    }
    Err(format!("{status}: {message}"))
}

async fn post(url: &str, event: &Event, timeout: Duration) -> Result<(), String> {
    let body = serde_json::to_string(event).map_err(|e| e.to_string())?;
    let url = url.to_owned();
    // ureq blocks; the blocking pool keeps it off the agent's threads.
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .build()
            .into();
        agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body.as_str())
            .map(|_response| ())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            event: Kind::Ban,
            jail: "auth".into(),
            ip: "192.0.2.7".into(),
            failures: 5,
            bantime: Some(600),
            expires_at: Some(1_000),
            reason: "failures".into(),
            at: 400,
        }
    }

    #[test]
    fn tags_are_replaced_like_fail2ban_actions() {
        assert_eq!(
            substitute("<ip> in <jail>: <failures> for <bantime>s", &event()),
            "192.0.2.7 in auth: 5 for 600s"
        );
        let permanent = Event {
            bantime: None,
            ..event()
        };
        assert_eq!(substitute("<bantime>", &permanent), "-1");
    }

    #[test]
    fn the_webhook_body_is_flat_json() {
        let json = serde_json::to_string(&event()).expect("encodes");
        assert_eq!(
            json,
            r#"{"event":"ban","jail":"auth","ip":"192.0.2.7","failures":5,"bantime":600,"expires_at":1000,"reason":"failures","at":400}"#
        );
    }

    #[tokio::test]
    async fn a_command_gets_arguments_and_environment_and_failures_are_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("out");
        let script = format!(
            "echo \"$1 $BAN_AGENT_JAIL $BAN_AGENT_EVENT $BAN_AGENT_BANTIME\" > {}",
            out.display()
        );
        let command = vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            script,
            "sh".to_owned(),
            "<ip>".to_owned(),
        ];
        run_command(&command, &event(), Duration::from_secs(5))
            .await
            .expect("runs");
        let written = std::fs::read_to_string(&out).expect("the hook wrote");
        assert_eq!(written.trim(), "192.0.2.7 auth ban 600");

        let failing = vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo nope >&2; exit 3".into(),
        ];
        let error = run_command(&failing, &event(), Duration::from_secs(5))
            .await
            .expect_err("fails");
        assert!(error.contains("nope"), "{error}");
        let slow = vec!["/bin/sleep".into(), "5".into()];
        let error = run_command(&slow, &event(), Duration::from_millis(50))
            .await
            .expect_err("times out");
        assert!(error.contains("killed"), "{error}");
    }
}
