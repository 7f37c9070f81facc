//! The bans in force as the agent keeps them in memory, between the kernel (which enforces
//! them, each with its own expiry) and the state database (which keeps them across
//! restarts): one compact entry per ban, a queue of the timed ones by expiry, and counts
//! per jail and per kernel map kept as bans come and go, so that neither the sweep nor the
//! gauges walk every ban.
//!
//! An entry names its jail by a small index, not by name: with a million bans, a name
//! (and its allocation) per ban, twice, was most of the daemon's memory.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap},
};

use ipnet::IpNet;

use super::agent::ActiveBan;
use crate::{clock::Expiry, datapath, filter::date::UnixMs};

/// The bans in force, by jail and target.
#[derive(Default)]
pub(super) struct Bans {
    /// Jail names by the index entries carry. A slot whose jail holds no ban is reused, so
    /// there are never more slots than jails with bans, plus one.
    names: Vec<String>,
    /// Bans in force, by (jail index, target).
    table: BTreeMap<(u8, IpNet), Entry>,
    /// Timed bans by boot-clock expiry, soonest first. A ban lifted or extended leaves its
    /// old entry here; it is skipped when it comes up, and the queue is rebuilt when such
    /// entries outnumber the live ones.
    ends: BinaryHeap<Reverse<(u64, u8, IpNet)>>,
    /// Entries of `ends` whose ban was lifted or extended since.
    stale: usize,
    /// Bans per jail index.
    per_jail: Vec<u64>,
    /// Bans per kernel map ([`datapath::map_of`]).
    per_map: BTreeMap<&'static str, u64>,
}

/// [`ActiveBan`] in 28 bytes instead of 48.
#[derive(Clone, Copy)]
struct Entry {
    /// The kernel's expiry ([`Expiry::to_kernel`]: 0 for never).
    expiry: u64,
    /// Wall-clock end; meaningless for a permanent ban.
    expires_at: UnixMs,
    banned_at: UnixMs,
    failures: u32,
}

impl From<ActiveBan> for Entry {
    fn from(ban: ActiveBan) -> Self {
        Self {
            expiry: ban.expiry.to_kernel(),
            expires_at: ban.expires_at.unwrap_or(UnixMs::MAX),
            banned_at: ban.banned_at,
            failures: ban.failures,
        }
    }
}

impl From<Entry> for ActiveBan {
    fn from(entry: Entry) -> Self {
        let expiry = Expiry::from_kernel(entry.expiry);
        Self {
            expiry,
            expires_at: (expiry != Expiry::Never).then_some(entry.expires_at),
            banned_at: entry.banned_at,
            failures: entry.failures,
        }
    }
}

impl Bans {
    fn find(&self, jail: &str) -> Option<u8> {
        let slot = self.names.iter().position(|name| name == jail)?;
        u8::try_from(slot).ok()
    }

    /// The index of `jail`, taking a free slot for a jail not seen yet.
    fn slot(&mut self, jail: &str) -> u8 {
        if let Some(slot) = self.find(jail) {
            return slot;
        }
        let free = self.per_jail.iter().position(|&count| count == 0);
        let slot = match free {
            Some(slot) => {
                self.names[slot] = jail.to_owned();
                slot
            }
            None => {
                self.names.push(jail.to_owned());
                self.per_jail.push(0);
                self.names.len() - 1
            }
        };
        // At most MAX_JAILS (64) jails hold bans at once, so a free slot is always found
        // before 256.
        u8::try_from(slot).unwrap_or(u8::MAX)
    }

    /// The ban of `target` in `jail`, if in force.
    pub fn get(&self, jail: &str, target: IpNet) -> Option<ActiveBan> {
        let slot = self.find(jail)?;
        self.table.get(&(slot, target)).map(|&entry| entry.into())
    }

    pub fn contains(&self, jail: &str, target: IpNet) -> bool {
        self.find(jail)
            .is_some_and(|slot| self.table.contains_key(&(slot, target)))
    }

    /// Records `ban` (new, or replacing the one in force); returns the one it replaced.
    pub fn insert(&mut self, jail: &str, target: IpNet, ban: ActiveBan) -> Option<ActiveBan> {
        let slot = self.slot(jail);
        let entry = Entry::from(ban);
        if entry.expiry != 0 {
            self.ends.push(Reverse((entry.expiry, slot, target)));
        }
        let old = self.table.insert((slot, target), entry);
        match old {
            Some(old) if old.expiry != 0 => {
                self.stale += 1;
                self.compact();
            }
            Some(_) => {}
            None => self.count(slot, target, 1),
        }
        old.map(Into::into)
    }

    /// Takes the ban of `target` in `jail` out; returns it, if it was in force.
    pub fn remove(&mut self, jail: &str, target: IpNet) -> Option<ActiveBan> {
        let slot = self.find(jail)?;
        let old = self.table.remove(&(slot, target))?;
        self.count(slot, target, -1);
        if old.expiry != 0 {
            self.stale += 1;
            self.compact();
        }
        Some(old.into())
    }

    fn count(&mut self, slot: u8, target: IpNet, by: i64) {
        let jail = &mut self.per_jail[usize::from(slot)];
        *jail = jail.saturating_add_signed(by);
        let map = self.per_map.entry(datapath::map_of(&target)).or_default();
        *map = map.saturating_add_signed(by);
    }

    /// Rebuilds the expiry queue once most of it is entries of bans lifted or extended.
    fn compact(&mut self) {
        if self.stale < 1024 || self.stale < self.ends.len() / 2 {
            return;
        }
        self.ends = self
            .table
            .iter()
            .filter(|(_, entry)| entry.expiry != 0)
            .map(|(&(slot, target), entry)| Reverse((entry.expiry, slot, target)))
            .collect();
        self.stale = 0;
    }

    /// The timed bans whose expiry (boot clock) is at or before `boot_now`, taken off the
    /// queue: the caller lifts them.
    pub fn ended(&mut self, boot_now: u64) -> Vec<(String, IpNet)> {
        let mut ended = Vec::new();
        while let Some(&Reverse((at, slot, target))) = self.ends.peek() {
            if at > boot_now {
                break;
            }
            self.ends.pop();
            let live = self
                .table
                .get(&(slot, target))
                .is_some_and(|entry| entry.expiry == at);
            if live {
                ended.push((self.names[usize::from(slot)].clone(), target));
            } else {
                self.stale = self.stale.saturating_sub(1);
            }
        }
        ended
    }

    /// Bans in force.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Bans in force in `jail`.
    pub fn count_of(&self, jail: &str) -> u64 {
        self.find(jail)
            .map_or(0, |slot| self.per_jail[usize::from(slot)])
    }

    /// Bans in force per kernel map.
    pub fn per_map(&self, map: &str) -> u64 {
        self.per_map.get(map).copied().unwrap_or(0)
    }

    /// The targets `jail` bans now.
    pub fn of(&self, jail: &str) -> Vec<IpNet> {
        let Some(slot) = self.find(jail) else {
            return Vec::new();
        };
        self.table
            .range((slot, IpNet::default())..)
            .take_while(|((s, _), _)| *s == slot)
            .map(|(&(_, target), _)| target)
            .collect()
    }

    /// Every ban in force: jail, target, ban.
    pub fn iter(&self) -> impl Iterator<Item = (&str, IpNet, ActiveBan)> + '_ {
        self.table.iter().map(|(&(slot, target), &entry)| {
            (self.names[usize::from(slot)].as_str(), target, entry.into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(expiry: Expiry) -> ActiveBan {
        ActiveBan {
            expiry,
            expires_at: (expiry != Expiry::Never).then_some(5_000),
            banned_at: 1_000,
            failures: 3,
        }
    }

    fn net(text: &str) -> IpNet {
        text.parse().expect("CIDR")
    }

    #[test]
    fn a_ban_comes_back_as_it_went_in_and_counts_follow_it() {
        let mut bans = Bans::default();
        let (a, b) = (net("192.0.2.1/32"), net("2001:db8::/64"));
        assert_eq!(bans.insert("ssh", a, ban(Expiry::At(10))), None);
        assert_eq!(bans.insert("web", a, ban(Expiry::Never)), None);
        assert_eq!(bans.insert("web", b, ban(Expiry::At(20))), None);
        assert_eq!(bans.get("ssh", a), Some(ban(Expiry::At(10))));
        assert_eq!(bans.get("web", a), Some(ban(Expiry::Never)));
        assert_eq!(bans.get("nope", a), None);
        assert_eq!((bans.len(), bans.count_of("web")), (3, 2));
        assert_eq!(bans.per_map(datapath::map_of(&a)), 2);
        assert_eq!(bans.per_map(datapath::map_of(&b)), 1);
        assert_eq!(bans.of("web"), vec![a, b]);
        assert_eq!(bans.remove("web", a), Some(ban(Expiry::Never)));
        assert_eq!(bans.remove("web", a), None);
        assert_eq!((bans.len(), bans.count_of("web")), (2, 1));
        assert_eq!(bans.per_map(datapath::map_of(&a)), 1);
    }

    #[test]
    fn ended_gives_each_live_ban_once_at_its_latest_expiry() {
        let mut bans = Bans::default();
        let (a, b, c) = (
            net("192.0.2.1/32"),
            net("192.0.2.2/32"),
            net("192.0.2.3/32"),
        );
        bans.insert("ssh", a, ban(Expiry::At(10)));
        bans.insert("ssh", b, ban(Expiry::At(10)));
        bans.insert("ssh", c, ban(Expiry::At(30)));
        // b extended, c lifted early.
        bans.insert("ssh", b, ban(Expiry::At(40)));
        bans.remove("ssh", c);
        assert_eq!(bans.ended(5), vec![]);
        assert_eq!(bans.ended(35), vec![("ssh".to_owned(), a)]);
        assert_eq!(bans.ended(35), vec![]);
        bans.remove("ssh", a);
        assert_eq!(bans.ended(50), vec![("ssh".to_owned(), b)]);
    }

    #[test]
    fn a_jail_without_bans_gives_its_slot_to_the_next_one() {
        let mut bans = Bans::default();
        let a = net("192.0.2.1/32");
        for i in 0..1000 {
            let jail = format!("jail{i}");
            bans.insert(&jail, a, ban(Expiry::At(10)));
            bans.remove(&jail, a);
        }
        assert_eq!(bans.names.len(), 1);
        assert_eq!(bans.ended(100), vec![]);
    }

    #[test]
    fn extensions_and_lifts_do_not_grow_the_queue_without_bound() {
        let mut bans = Bans::default();
        let a = net("192.0.2.1/32");
        for at in 1..=5000 {
            bans.insert("ssh", a, ban(Expiry::At(at)));
        }
        assert!(bans.ends.len() <= 2048, "{} entries", bans.ends.len());
        assert_eq!(bans.ended(4999), vec![]);
        assert_eq!(bans.ended(5000), vec![("ssh".to_owned(), a)]);
    }
}
