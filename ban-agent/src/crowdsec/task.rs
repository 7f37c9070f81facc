//! The bouncer's thread: reads the decision stream every `interval` (the whole set first,
//! and again after any failure, so that what changed while the API was out of reach is
//! never missed), and hands each answer to the agent. HTTP here is blocking (`ureq`), on
//! a thread of its own: a slow API never holds the agent nor the runtime's threads.

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{Pull, read_stream};
use crate::{clock::UnixMs, config::CrowdSec, metrics::Metrics};

/// How long one read may take (the first one of a community blocklist is megabytes).
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read (CrowdSec's community blocklist is a few megabytes).
const MAX_ANSWER: u64 = 256 << 20;
/// The wait between reads while the API is out of reach, at least.
const RETRY_MIN: Duration = Duration::from_secs(1);

/// What `status` shows of the bouncer.
#[derive(Clone, Debug, Default)]
pub struct Status {
    pub connected: bool,
    pub last_error: Option<String>,
    /// When the last answer came (ms since the epoch).
    pub last_pull: Option<UnixMs>,
    pub pulls: u64,
    pub errors: u64,
}

/// The agent's end of the bouncer: its status, and the thread, stopped on drop.
pub struct Link {
    /// The Local API, for messages.
    pub url: String,
    pub interval: Duration,
    status: Arc<Mutex<Status>>,
    stop: Arc<AtomicBool>,
    resync: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Link {
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the whole set again at the next read (after a reload changed the jail).
    pub fn resync(&self) {
        self.resync.store(true, Ordering::Relaxed);
    }
}

impl Drop for Link {
    /// Stops the thread at its next wake-up, without waiting: a read under way may take
    /// up to its timeout, and what it brings goes nowhere.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
        }
    }
}

/// Reads the API key `[crowdsec]` names; only root (or the agent's user) may write it.
pub fn api_key(path: &Path) -> anyhow::Result<String> {
    crate::trust::check_file(path)?;
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read CrowdSec's API key {} (`api_key_file` in [crowdsec]): make one \
             with `cscli bouncers add ban-agent -o raw > {}`",
            path.display(),
            path.display()
        )
    })?;
    let key = text.trim().to_owned();
    if key.is_empty() || key.contains(char::is_whitespace) {
        anyhow::bail!(
            "{} (`api_key_file` in [crowdsec]) holds no API key: put the key \
             `cscli bouncers add ban-agent -o raw` printed in it, alone",
            path.display()
        );
    }
    Ok(key)
}

/// Asks the Local API once whether it answers to the key (a plain decision query, which
/// leaves the stream's state alone), for `check`.
pub fn probe(config: &CrowdSec, timeout: Duration) -> Result<(), String> {
    let key = api_key(&config.api_key_file).map_err(|e| format!("{e:#}"))?;
    let http: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let response = http
        .get(format!("{}v1/decisions?ip=127.0.0.1", config.url))
        .header("X-Api-Key", &key)
        .call()
        .map_err(|e| unreachable(config, &e))?;
    match response.status().as_u16() {
        200 => Ok(()),
        status @ (401 | 403) => Err(refused_key(config, status)),
        status => Err(format!("the Local API at {} answers {status}", config.url)),
    }
}

/// The Local API did not answer.
fn unreachable(config: &CrowdSec, e: &ureq::Error) -> String {
    format!(
        "cannot reach CrowdSec's Local API at {}: {e}: is it running (`cscli lapi status`), \
         and is `url` in [crowdsec] its `api.server.listen_uri`?",
        config.url
    )
}

/// The Local API answered `status` (401 or 403) to the key.
fn refused_key(config: &CrowdSec, status: u16) -> String {
    format!(
        "CrowdSec's Local API at {} refused the key in {} ({status}): is it a bouncer's key \
         (`cscli bouncers list`)? Make one with `cscli bouncers add ban-agent -o raw`",
        config.url,
        config.api_key_file.display()
    )
}

/// Starts the bouncer's thread. Only the key file can fail here: an API out of reach is
/// retried while the agent runs.
pub fn spawn(
    config: &CrowdSec,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Link, mpsc::Receiver<Pull>)> {
    let key = api_key(&config.api_key_file)?;
    let status = Arc::new(Mutex::new(Status::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let resync = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel(4);
    let poller = Poller {
        config: config.clone(),
        key,
        http: ureq::Agent::config_builder()
            .timeout_global(Some(READ_TIMEOUT))
            .http_status_as_error(false)
            .user_agent(concat!("ban-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .into(),
        status: Arc::clone(&status),
        stop: Arc::clone(&stop),
        resync: Arc::clone(&resync),
        tx,
        metrics,
    };
    let thread = std::thread::Builder::new()
        .name("crowdsec".to_owned())
        .spawn(move || poller.run())
        .context("cannot start the thread that reads CrowdSec's decisions")?;
    Ok((
        Link {
            url: config.url.clone(),
            interval: config.interval,
            status,
            stop,
            resync,
            thread: Some(thread),
        },
        rx,
    ))
}

struct Poller {
    config: CrowdSec,
    key: String,
    http: ureq::Agent,
    status: Arc<Mutex<Status>>,
    stop: Arc<AtomicBool>,
    resync: Arc<AtomicBool>,
    tx: mpsc::Sender<Pull>,
    metrics: Arc<Metrics>,
}

impl Poller {
    fn run(mut self) {
        info!(
            url = %self.config.url,
            interval = ?self.config.interval,
            "reading CrowdSec's decisions"
        );
        let mut startup = true;
        let mut next = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now < next {
                std::thread::park_timeout(next - now);
                continue;
            }
            // Reads start every interval, whatever a read took (a late one starts now).
            next = (next + self.config.interval).max(now);
            startup |= self.resync.swap(false, Ordering::Relaxed);
            match self.pull(startup) {
                Ok(pull) => {
                    self.answered(startup);
                    startup = false;
                    if self.tx.blocking_send(pull).is_err() {
                        return;
                    }
                }
                Err(why) => {
                    // What changed meanwhile is read whole once the API answers again.
                    startup = true;
                    next = next.max(now + RETRY_MIN);
                    self.failed(why);
                }
            }
        }
    }

    /// One read of the stream.
    fn pull(&mut self, startup: bool) -> Result<Pull, String> {
        let scopes: Vec<&str> = self.config.scopes.iter().map(|s| s.name()).collect();
        let mut url = format!(
            "{}v1/decisions/stream?startup={startup}&scopes={}",
            self.config.url,
            scopes.join(",")
        );
        if !self.config.origins.is_empty() {
            url.push_str("&origins=");
            url.push_str(&self.config.origins.join(","));
        }
        if startup {
            // A key changed in its file is taken at the next full read.
            match api_key(&self.config.api_key_file) {
                Ok(key) => self.key = key,
                Err(e) => warn!("{e:#}: the key read before is used"),
            }
        }
        let started = Instant::now();
        let mut response = self
            .http
            .get(&url)
            .header("X-Api-Key", &self.key)
            .call()
            .map_err(|e| unreachable(&self.config, &e))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|e| format!("the Local API at {} answered, then: {e}", self.config.url))?;
        self.metrics
            .crowdsec_pull
            .observe(started.elapsed().as_secs_f64());
        match status {
            200 => read_stream(&body, startup, &self.config.scopes)
                .map_err(|why| format!("the Local API at {} answered {why}", self.config.url)),
            401 | 403 => Err(refused_key(&self.config, status)),
            _ => {
                let start: String = body.chars().take(200).collect();
                Err(format!(
                    "CrowdSec's Local API at {} answered {status}: {start}",
                    self.config.url
                ))
            }
        }
    }

    fn answered(&self, startup: bool) {
        self.metrics.crowdsec_pulls.inc();
        self.metrics.crowdsec_connected.set(1);
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if status.last_error.take().is_some() {
            info!(url = %self.config.url, "CrowdSec's Local API answers again");
        } else if startup && status.pulls == 0 {
            info!(url = %self.config.url, "CrowdSec's Local API answers");
        }
        status.connected = true;
        status.pulls += 1;
        status.last_pull = Some(crate::clock::Now::read().wall);
    }

    /// Says a failure when it differs from the last one said (the metric counts them all).
    fn failed(&self, why: String) {
        self.metrics.crowdsec_pull_errors.inc();
        self.metrics.crowdsec_connected.set(0);
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if status.last_error.as_deref() != Some(why.as_str()) {
            warn!(
                "{why} (the bans in force stay, each until its end; retried every {:?})",
                self.config.interval.max(RETRY_MIN)
            );
        }
        status.connected = false;
        status.errors += 1;
        status.last_error = Some(why);
    }
}
