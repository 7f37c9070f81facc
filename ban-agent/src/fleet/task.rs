//! The fleet's task: connects to the engine (again and again while it is gone), sends the
//! outbox in batches, reads the stream of bans on a connection of its own and hands the
//! entries to the agent, and says it is alive.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{Engine, EngineAccess, Entry, FleetError, Outbox, Signer, Unreadable, id_before};
use crate::{config::Fleet, metrics::Metrics};

/// How long a read of the stream blocks before it is issued again.
const BLOCK: Duration = Duration::from_millis(1000);
/// Items sent in one round trip at most (failures of one address count once).
const MAX_BATCH: usize = 1000;
/// How often an agent says it is alive, and how long that lasts.
const HEARTBEAT: Duration = Duration::from_secs(2);
const ALIVE: Duration = Duration::from_secs(10);
/// Waits between connection attempts while the engine is gone: at most half a second, so
/// that a ban made during a partition or a failover reaches this host within a second or
/// so of the heal (with 2 s, the chaos run saw bans arrive 2.2 s after it). An attempt
/// costs the engine a connection; a fleet's agents make two a second each at most.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_millis(500);

/// What the task hands to the agent.
#[derive(Debug)]
pub struct Incoming {
    /// Read from the stream, or rebuilt from the ban keys (their ids are empty).
    pub entries: Vec<Result<Entry, Unreadable>>,
}

/// What `status` shows of the fleet.
#[derive(Clone, Debug, Default)]
pub struct Status {
    pub connected: bool,
    /// Hosts alive (heard from within the last 10 s), this one among them.
    pub peers: Vec<String>,
    /// The stream's newest entry, as last seen.
    pub newest: Option<String>,
    /// The last entry read.
    pub read: Option<String>,
    pub last_error: Option<String>,
    /// Items the engine took.
    pub published: u64,
}

/// The agent's end of the fleet.
pub struct Link {
    pub outbox: Arc<Outbox>,
    pub status: Arc<Mutex<Status>>,
    pub signer: Signer,
    /// This host.
    pub name: String,
    /// The engine, for messages.
    pub engine: String,
    pub max_bantime: Option<Duration>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Link {
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// How to reach the engine and sign, from the files `[fleet]` names (the key, the
/// password, the CA): what `check` and `run` read before anything connects.
pub fn access(config: &Fleet) -> anyhow::Result<(EngineAccess, Signer)> {
    let signer = Signer::load(config.key_file.as_deref())?;
    let password = match &config.password_file {
        Some(path) => {
            crate::trust::check_file(path)?;
            let text = std::fs::read_to_string(path).with_context(|| {
                format!(
                    "cannot read the fleet's password {} (`password_file` in [fleet])",
                    path.display()
                )
            })?;
            Some(text.trim_end_matches(['\n', '\r']).to_owned())
        }
        None => None,
    };
    let ca = match &config.ca_file {
        Some(path) => Some(std::fs::read(path).with_context(|| {
            format!(
                "cannot read the engine's CA {} (`ca_file` in [fleet])",
                path.display()
            )
        })?),
        None => None,
    };
    let access = EngineAccess {
        endpoint: config.endpoint.clone(),
        username: config.username.clone(),
        password,
        ca,
        prefix: config.prefix.clone(),
        host: config.name.clone(),
    };
    Ok((access, signer))
}

/// Starts the fleet's task (inside a tokio runtime), resuming the stream after `resume`.
/// Only local files can fail here (the key, the password, the CA): an engine out of reach
/// is retried by the task while the agent runs.
pub fn spawn(
    config: &Fleet,
    resume: Option<String>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Link, mpsc::Receiver<Incoming>)> {
    let (access, signer) = access(config)?;
    let outbox = Arc::new(Outbox::new(config.outbox));
    let status = Arc::new(Mutex::new(Status {
        read: resume,
        ..Status::default()
    }));
    let (tx, rx) = mpsc::channel(64);
    let run = Run {
        access,
        signer: signer.clone(),
        outbox: Arc::clone(&outbox),
        status: Arc::clone(&status),
        tx,
        batch: config.batch,
        metrics,
    };
    let task = tokio::spawn(run.run());
    Ok((
        Link {
            outbox,
            status,
            signer,
            name: config.name.clone(),
            engine: config.endpoint.shown(),
            max_bantime: config.max_bantime,
            task,
        },
        rx,
    ))
}

struct Run {
    access: EngineAccess,
    signer: Signer,
    outbox: Arc<Outbox>,
    status: Arc<Mutex<Status>>,
    tx: mpsc::Sender<Incoming>,
    batch: Duration,
    metrics: Arc<Metrics>,
}

impl Run {
    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn run(self) {
        let mut wait = RETRY_MIN;
        let mut said: Option<String> = None;
        loop {
            let error = match self.session().await {
                Ok(()) => return,
                // A failover: the new primary is there already.
                Err(moved @ FleetError::Moved { .. }) => {
                    info!(engine = %self.access.endpoint.shown(), "{moved}");
                    continue;
                }
                Err(e) => e.to_string(),
            };
            let was = std::mem::replace(&mut self.status().connected, false);
            self.metrics.fleet_connected.set(0);
            self.metrics
                .fleet_outbox
                .set(i64::try_from(self.outbox.len()).unwrap_or(i64::MAX));
            self.status().last_error = Some(error.clone());
            if was || said.as_deref() != Some(error.as_str()) {
                warn!(
                    engine = %self.access.endpoint.shown(),
                    outbox = self.outbox.len(),
                    "the fleet's engine is out of reach: {error}; bans stay local and wait in \
                     the outbox until it is back"
                );
                said = Some(error);
                wait = RETRY_MIN;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    /// One connection's life: returns `Ok` when the agent is gone, `Err` when the engine
    /// is.
    async fn session(&self) -> Result<(), FleetError> {
        let mut writer = Engine::connect(&self.access, Duration::ZERO).await?;
        let mut reader = Engine::connect(&self.access, BLOCK).await?;
        let (first, newest) = writer.ends().await?;
        let resume = self.status().read.clone();
        // No place in the stream yet, or a place trimmed away: rebuild from the ban keys,
        // then read on from the newest entry (bans after it come through the stream).
        let trimmed = match (&resume, &first) {
            (Some(read), Some(first)) => id_before(read, first),
            _ => false,
        };
        let from = match resume {
            Some(read) if !trimmed => read,
            _ => {
                let bans = writer.live_bans(crate::clock::Now::read().wall).await?;
                info!(
                    bans = bans.len(),
                    "the fleet's bans in force, read from the engine's keys{}",
                    if trimmed {
                        " (the stream no longer holds the last entry applied here: it was \
                         trimmed, or the engine restarted without its data)"
                    } else {
                        ""
                    }
                );
                if !bans.is_empty() && self.tx.send(Incoming { entries: bans }).await.is_err() {
                    return Ok(());
                }
                newest.clone().unwrap_or_else(|| "0".to_owned())
            }
        };
        {
            let mut status = self.status();
            status.connected = true;
            status.last_error = None;
            status.newest = newest;
        }
        self.metrics.fleet_connected.set(1);
        info!(
            engine = %self.access.endpoint.shown(),
            host = %self.access.host,
            outbox = self.outbox.len(),
            "connected to the fleet's engine"
        );
        let mut beating = writer.clone();
        let read = self.read(&mut reader, from);
        let write = self.write(&mut writer);
        let beat = self.beat(&mut beating);
        tokio::try_join!(read, write, beat).map(|_| ())
    }

    /// Reads the stream on and on; `Ok` when the agent is gone.
    async fn read(&self, reader: &mut Engine, mut from: String) -> Result<(), FleetError> {
        loop {
            let entries = reader.entries_after(&from, BLOCK).await?;
            let Some(last) = entries.last() else {
                continue;
            };
            from = match last {
                Ok(entry) => entry.id.clone(),
                Err(unreadable) => unreadable.id.clone(),
            };
            self.status().read = Some(from.clone());
            let incoming = Incoming { entries };
            if self.tx.send(incoming).await.is_err() {
                return Ok(());
            }
        }
    }

    /// Sends the outbox in batches; never returns `Ok`.
    async fn write(&self, writer: &mut Engine) -> Result<(), FleetError> {
        loop {
            self.outbox.ready().await;
            // At once by default: one round trip at a time, and what comes while one is
            // under way goes in the next (so a flood makes big batches, a lone ban waits
            // for nothing). `batch` gathers longer when asked.
            if !self.batch.is_zero() {
                tokio::time::sleep(self.batch).await;
            }
            while !self.outbox.is_empty() {
                self.send(writer).await?;
            }
        }
    }

    /// Says this host is alive, and notes the others and the stream's newest entry;
    /// never returns `Ok`.
    async fn beat(&self, engine: &mut Engine) -> Result<(), FleetError> {
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        loop {
            heartbeat.tick().await;
            let peers = engine
                .heartbeat(crate::clock::Now::read().wall, ALIVE)
                .await?;
            let (_, newest) = engine.ends().await?;
            // Writes to a primary the Sentinels no longer name are lost when it is turned
            // into a replica: move to the new one now. Sentinels out of reach are no
            // reason to leave a primary that answers.
            match engine.still_primary(&self.access).await {
                Err(moved @ FleetError::Moved { .. }) => return Err(moved),
                Err(e) => debug!("cannot ask the Sentinels for the primary: {e}"),
                Ok(()) => {}
            }
            let mut status = self.status();
            status.peers = peers;
            status.newest = newest;
            self.metrics
                .fleet_outbox
                .set(i64::try_from(self.outbox.len()).unwrap_or(i64::MAX));
        }
    }

    async fn send(&self, writer: &mut Engine) -> Result<(), FleetError> {
        let batch = self.outbox.take(MAX_BATCH, crate::clock::Now::read().wall);
        if batch.is_empty() {
            return Ok(());
        }
        let signed: Vec<String> = batch
            .iter()
            .map(|item| self.signer.sign(&item.entry(&self.access.host)))
            .collect();
        let started = Instant::now();
        match writer.send(&batch, &signed).await {
            Ok(sent) => {
                for (item, reply) in batch.iter().zip(&sent) {
                    debug!(entry = ?item, reply = ?reply, "sent to the fleet's engine");
                }
                self.metrics
                    .fleet_round_trip
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.fleet_published.inc_by(sent.len() as u64);
                self.status().published += sent.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.outbox.put_back(batch);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Endpoint;

    /// Found by the hour-long chaos run: with waits of up to 2 s between attempts, a ban
    /// made during a partition reached the other hosts 2.2 s after the heal. An engine that
    /// takes each connection and hangs up at once stands for one that is gone.
    #[tokio::test]
    async fn an_engine_out_of_reach_is_tried_again_at_least_every_half_second() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port on the loopback");
        let port = listener.local_addr().expect("its address").port();
        let attempts = tokio::spawn(async move {
            let mut at = Vec::new();
            let until = tokio::time::Instant::now() + Duration::from_secs(3);
            while let Ok(Ok((stream, _))) = tokio::time::timeout_at(until, listener.accept()).await
            {
                at.push(Instant::now());
                drop(stream);
            }
            at
        });
        let config = Fleet {
            endpoint: Endpoint::Url(format!("redis://127.0.0.1:{port}")),
            username: None,
            password_file: None,
            name: "h1".into(),
            prefix: "ba:".into(),
            key_file: None,
            ca_file: None,
            batch: Duration::ZERO,
            outbox: 100,
            max_bantime: None,
        };
        let (link, _incoming) = spawn(&config, None, Metrics::new()).expect("the task starts");
        let at = attempts.await.expect("the listener");
        drop(link);
        let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(at.len() >= 6, "{} attempts in 3 s: {gaps:?}", at.len());
        let longest = gaps.iter().max().copied().unwrap_or_default();
        // Half a second of waiting and one attempt's time: a heal is seen well within the
        // fleet's 2 s.
        assert!(
            longest < Duration::from_millis(800),
            "waited {longest:?} between two attempts: {gaps:?}"
        );
    }
}
