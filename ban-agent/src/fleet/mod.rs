//! Several hosts sharing failures and bans through Redis or Valkey.
//!
//! The agent never waits on the fleet: what it decides or counts goes into a bounded
//! [`Outbox`], which a task of its own ([`task`]) sends to the [`engine`] in batches of a
//! few milliseconds, one pipelined round trip each; the same task reads the stream of bans
//! and hands the entries to the agent, which applies them through the same rails as its own
//! bans. When the engine is gone, local detection and bans go on, the outbox waits, and the
//! stream is caught up from the last entry applied (or rebuilt from the ban keys when it
//! was trimmed past it).

pub mod engine;
mod sign;
pub mod task;

use std::{
    collections::VecDeque,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use ipnet::IpNet;

pub use engine::{Engine, EngineAccess, FleetError, Sent};
pub use sign::{SignError, Signer};
pub use task::{Link, spawn};

/// What a stream entry says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Ban until `expires` (ms since the epoch; `None`: for ever).
    Ban { expires: Option<i64> },
    /// Lift the ban.
    Unban,
}

/// One entry of the stream of bans (or a ban key read back).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The stream entry's id ("" when read from a ban key).
    pub id: String,
    pub op: Op,
    pub jail: String,
    pub target: IpNet,
    /// When the host decided it (ms since the epoch).
    pub at: i64,
    /// The host that decided it.
    pub host: String,
    /// Failures seen fleet-wide (not signed: for the log only).
    pub failures: u32,
    /// HMAC-SHA256 in hex, "" when unsigned.
    pub sig: String,
}

/// A stream entry the agent cannot read: its id (to move past it) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    pub id: String,
    pub why: String,
}

impl Entry {
    /// The ban's end, 0 standing for none in the engine.
    pub fn expires(&self) -> Option<i64> {
        match self.op {
            Op::Ban { expires } => expires,
            Op::Unban => None,
        }
    }

    fn op_name(&self) -> &'static str {
        match self.op {
            Op::Ban { .. } => "ban",
            Op::Unban => "unban",
        }
    }

    /// What the signature covers: everything but the id and the failure count.
    pub fn signed_text(&self) -> String {
        format!(
            "ban-agent fleet v1\n{}\n{}\n{}\n{}\n{}\n{}",
            self.op_name(),
            self.jail,
            self.target,
            self.expires().unwrap_or(0),
            self.at,
            self.host
        )
    }

    /// The value of the ban key: the entry, so that it can be rebuilt without the stream.
    fn value(&self, sig: &str) -> String {
        format!(
            "{}\n{}\n{}\n{}\n{sig}\n{}\n{}",
            self.host,
            self.expires().unwrap_or(0),
            self.at,
            self.failures,
            self.target,
            self.jail
        )
    }

    /// A ban key's value read back.
    fn from_value(value: &str) -> Result<Self, Unreadable> {
        let bad = || Unreadable {
            id: String::new(),
            why: format!("a ban key holds {value:?}"),
        };
        let mut fields = value.splitn(7, '\n');
        let mut next = || fields.next().ok_or_else(bad);
        let host = next()?.to_owned();
        let expires: i64 = next()?.parse().map_err(|_| bad())?;
        let at = next()?.parse().map_err(|_| bad())?;
        let failures = next()?.parse().map_err(|_| bad())?;
        let sig = next()?.to_owned();
        let target = next()?.parse().map_err(|_| bad())?;
        let jail = next()?.to_owned();
        Ok(Self {
            id: String::new(),
            op: Op::Ban {
                expires: (expires > 0).then_some(expires),
            },
            jail,
            target,
            at,
            host,
            failures,
            sig,
        })
    }

    /// A stream entry.
    fn read(item: &redis::streams::StreamId) -> Result<Self, Unreadable> {
        let bad = |why: &str| Unreadable {
            id: item.id.clone(),
            why: why.to_owned(),
        };
        let text = |field: &str| -> Result<String, Unreadable> {
            item.get(field)
                .ok_or_else(|| bad(&format!("no field {field:?}")))
        };
        let number = |field: &str| -> Result<i64, Unreadable> {
            text(field)?
                .parse()
                .map_err(|_| bad(&format!("field {field:?} is not a number")))
        };
        let op = match text("op")?.as_str() {
            "ban" => {
                let expires = number("expires")?;
                Op::Ban {
                    expires: (expires > 0).then_some(expires),
                }
            }
            "unban" => Op::Unban,
            other => return Err(bad(&format!("unknown op {other:?}"))),
        };
        Ok(Self {
            id: item.id.clone(),
            op,
            jail: text("jail")?,
            target: text("target")?
                .parse()
                .map_err(|_| bad("the target is not an address or network"))?,
            at: number("at")?,
            host: text("host")?,
            failures: u32::try_from(number("failures")?).unwrap_or(0),
            sig: text("sig").unwrap_or_default(),
        })
    }
}

/// What the agent sends to the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// New failures of `target` in `jail`, counted here, with the jail's rules.
    Failures {
        jail: String,
        target: IpNet,
        failures: u32,
        maxretry: u32,
        findtime: Duration,
        /// `None`: a permanent ban.
        bantime: Option<Duration>,
        /// When the failures happened (their bucket in the window).
        at: i64,
        /// When they are sent: a ban they make fleet-wide begins then (failures that
        /// waited in the outbox, through an outage, make a ban as long as any other).
        sent: i64,
    },
    /// A ban decided here; `force` (an operator's) replaces a ban in force.
    Ban {
        jail: String,
        target: IpNet,
        expires: Option<i64>,
        failures: u32,
        at: i64,
        force: bool,
    },
    /// An operator's unban.
    Unban {
        jail: String,
        target: IpNet,
        at: i64,
    },
}

impl Outgoing {
    /// The stream entry this may append, as `host` writes it.
    pub fn entry(&self, host: &str) -> Entry {
        let (op, jail, target, at, failures) = match self {
            Self::Failures {
                jail,
                target,
                maxretry,
                bantime,
                at,
                sent,
                ..
            } => (
                Op::Ban {
                    expires: bantime.map(|d| sent.saturating_add(crate::clock::ms(d))),
                },
                jail,
                target,
                *at,
                *maxretry,
            ),
            Self::Ban {
                jail,
                target,
                expires,
                failures,
                at,
                ..
            } => (Op::Ban { expires: *expires }, jail, target, *at, *failures),
            Self::Unban { jail, target, at } => (Op::Unban, jail, target, *at, 0),
        };
        Entry {
            id: String::new(),
            op,
            jail: jail.clone(),
            target: *target,
            at,
            host: host.to_owned(),
            failures,
            sig: String::new(),
        }
    }

    fn key(&self) -> Option<(&str, IpNet)> {
        match self {
            Self::Failures { jail, target, .. } => Some((jail, *target)),
            Self::Ban { .. } | Self::Unban { .. } => None,
        }
    }

    /// Whether it still means something at `now`: failures within findtime, bans not
    /// ended. Unbans always do.
    fn current(&self, now: i64) -> bool {
        match self {
            Self::Failures { findtime, at, .. } => {
                at.saturating_add(crate::clock::ms(*findtime)) > now
            }
            Self::Ban { expires, .. } => expires.is_none_or(|end| end > now),
            Self::Unban { .. } => true,
        }
    }
}

/// What waits for the engine, bounded: when full, new failures are dropped (counted) and a
/// ban or unban pushes out the oldest entry.
pub struct Outbox {
    queue: Mutex<VecDeque<Outgoing>>,
    capacity: usize,
    ready: tokio::sync::Notify,
    dropped: AtomicU64,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            ready: tokio::sync::Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Outgoing>> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues one item; never waits.
    pub fn push(&self, item: Outgoing) {
        {
            let mut queue = self.lock();
            if queue.len() >= self.capacity {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                if item.key().is_some() {
                    return;
                }
                queue.pop_front();
            }
            queue.push_back(item);
        }
        self.ready.notify_one();
    }

    /// Up to `max` items, failures of one address merged into one; items that no longer
    /// mean anything at `now` are left out.
    pub fn take(&self, max: usize, now: i64) -> Vec<Outgoing> {
        let mut queue = self.lock();
        let mut batch: Vec<Outgoing> = Vec::new();
        let mut merged: std::collections::HashMap<(String, IpNet), usize> =
            std::collections::HashMap::new();
        while batch.len() < max {
            let Some(mut item) = queue.pop_front() else {
                break;
            };
            if !item.current(now) {
                continue;
            }
            if let Outgoing::Failures { sent, .. } = &mut item {
                *sent = now;
            }
            if let Some((jail, target)) = item.key()
                && let Some(&at) = merged.get(&(jail.to_owned(), target))
                && let (
                    Some(Outgoing::Failures {
                        failures: into,
                        at: when,
                        ..
                    }),
                    Outgoing::Failures { failures, at, .. },
                ) = (batch.get_mut(at), &item)
            {
                *into = into.saturating_add(*failures);
                *when = (*when).max(*at);
                continue;
            }
            if let Some((jail, target)) = item.key() {
                merged.insert((jail.to_owned(), target), batch.len());
            }
            batch.push(item);
        }
        batch
    }

    /// Puts back a batch the engine did not take, ahead of what came since.
    pub fn put_back(&self, batch: Vec<Outgoing>) {
        let mut queue = self.lock();
        for item in batch.into_iter().rev() {
            if queue.len() >= self.capacity {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            queue.push_front(item);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Items dropped because it was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until something is queued.
    pub async fn ready(&self) {
        if self.is_empty() {
            self.ready.notified().await;
        }
    }
}

/// Orders two stream ids (`MS-SEQ`); ids that are not ids sort first.
pub fn id_before(a: &str, b: &str) -> bool {
    let parse = |id: &str| -> (u64, u64) {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
    };
    parse(a) < parse(b)
}

/// The time (ms) in a stream id.
pub fn id_time(id: &str) -> Option<i64> {
    id.split_once('-').and_then(|(ms, _)| ms.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(target: &str, at: i64) -> Outgoing {
        Outgoing::Failures {
            jail: "auth".into(),
            target: target.parse().expect("network"),
            failures: 1,
            maxretry: 5,
            findtime: Duration::from_secs(600),
            bantime: Some(Duration::from_secs(3600)),
            at,
            sent: at,
        }
    }

    fn ban(target: &str, at: i64) -> Outgoing {
        Outgoing::Ban {
            jail: "auth".into(),
            target: target.parse().expect("network"),
            expires: Some(at + 1000),
            failures: 5,
            at,
            force: false,
        }
    }

    #[test]
    fn the_outbox_merges_failures_of_one_address_and_drops_what_expired() {
        let outbox = Outbox::new(100);
        for at in [1_000, 2_000, 3_000] {
            outbox.push(fail("192.0.2.1/32", at));
        }
        outbox.push(fail("192.0.2.2/32", 1_000));
        outbox.push(ban("192.0.2.3/32", 1_000));
        let batch = outbox.take(10, 5_000);
        assert_eq!(batch.len(), 2, "{batch:?}");
        let Outgoing::Failures { failures, at, .. } = &batch[0] else {
            panic!("{batch:?}")
        };
        assert_eq!(
            (*failures, *at),
            (3, 3_000),
            "three failures, the latest time"
        );
        // The ban ended at 2_000: sending it now would mean nothing.
        assert!(matches!(batch[1], Outgoing::Failures { .. }));
        assert!(outbox.is_empty());
    }

    /// Failures that waited in the outbox (an engine out of reach, a partition) and make
    /// a fleet-wide ban when they arrive make one that begins then: from their own time it
    /// would have ended before it was made, and its key would have kept later bans of the
    /// address from the stream. Found by the chaos run (a host partitioned for 30 s).
    #[test]
    fn failures_sent_late_make_a_ban_from_when_they_are_sent() {
        let outbox = Outbox::new(100);
        outbox.push(fail("192.0.2.1/32", 1_000));
        let batch = outbox.take(10, 31_000);
        let Outgoing::Failures { at, .. } = &batch[0] else {
            panic!("{batch:?}")
        };
        assert_eq!(*at, 1_000, "counted in the window where they happened");
        assert_eq!(
            batch[0].entry("web-1").op,
            Op::Ban {
                expires: Some(31_000 + 3_600_000)
            },
            "a ban of bantime from the moment it is made"
        );
    }

    #[test]
    fn a_full_outbox_drops_new_failures_but_makes_room_for_bans() {
        let outbox = Outbox::new(2);
        outbox.push(fail("192.0.2.1/32", 1));
        outbox.push(fail("192.0.2.2/32", 1));
        outbox.push(fail("192.0.2.3/32", 1));
        assert_eq!((outbox.len(), outbox.dropped()), (2, 1));
        outbox.push(ban("192.0.2.9/32", 1));
        assert_eq!((outbox.len(), outbox.dropped()), (2, 2));
        let batch = outbox.take(10, 2);
        assert!(
            matches!(batch.last(), Some(Outgoing::Ban { .. })),
            "{batch:?}"
        );
        // What the engine did not take goes back in front, as far as there is room.
        outbox.push(fail("192.0.2.5/32", 1));
        outbox.put_back(batch);
        assert_eq!((outbox.len(), outbox.dropped()), (2, 3));
        let again = outbox.take(2, 2);
        let mut failure = fail("192.0.2.5/32", 1);
        if let Outgoing::Failures { sent, .. } = &mut failure {
            *sent = 2;
        }
        assert_eq!(again, vec![ban("192.0.2.9/32", 1), failure]);
    }

    #[test]
    fn stream_ids_order_by_time_then_sequence() {
        assert!(id_before("1700000000000-5", "1700000000001-0"));
        assert!(id_before("1700000000000-5", "1700000000000-12"));
        assert!(!id_before("1700000000000-12", "1700000000000-5"));
        assert!(id_before("0", "1-0"));
        assert_eq!(id_time("1700000000000-5"), Some(1_700_000_000_000));
    }

    #[test]
    fn a_ban_key_rebuilds_its_entry_and_the_signature_covers_what_matters() {
        let entry = ban("2001:db8::/64", 10).entry("web-1");
        let signer = Signer::with_key(b"0123456789abcdef0123");
        let sig = signer.sign(&entry);
        let value = entry.value(&sig);
        let rebuilt = Entry::from_value(&value).expect("readable");
        assert_eq!(rebuilt.target, entry.target);
        assert_eq!(rebuilt.op, entry.op);
        assert_eq!(signer.check(&rebuilt), Ok(()));
        let mut longer = rebuilt.clone();
        longer.op = Op::Ban { expires: None };
        assert_eq!(signer.check(&longer), Err("a wrong signature"));
        let mut other = rebuilt.clone();
        other.target = "2001:db8:1::/64".parse().expect("network");
        assert!(signer.check(&other).is_err());
        let mut unsigned = rebuilt;
        unsigned.sig.clear();
        assert_eq!(signer.check(&unsigned), Err("unsigned"));
        assert_eq!(
            Signer::default().check(&unsigned),
            Ok(()),
            "no key: no check"
        );
    }
}
