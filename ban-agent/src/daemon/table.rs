//! The bans in force as the agent keeps them in memory, between the kernel (which enforces
//! them, each with its own expiry) and the state database (which keeps them across
//! restarts): one 48-byte node per ban in a single `Vec`, a hash index of 32-bit node
//! numbers, a queue of the timed ones by expiry, and counts per jail and per kernel map
//! kept as bans come and go, so that neither the sweep nor the gauges walk every ban.
//!
//! A million bans take about 75 bytes each here. Nodes name their jail by a small index,
//! not by name (a name per ban, twice, was most of the daemon's memory), and every part
//! is a few large allocations, which the allocator hands back to the system when they
//! are freed or grow, unlike a tree's million small nodes.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap},
    hash::{BuildHasher, RandomState},
};

use hashbrown::HashTable;
use ipnet::IpNet;

use crate::{clock::Expiry, clock::UnixMs, datapath};

/// A ban in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ActiveBan {
    pub expiry: Expiry,
    pub expires_at: Option<UnixMs>,
    pub banned_at: UnixMs,
    pub failures: u32,
}

/// The `slot` of a free node.
const FREE: u8 = u8::MAX;

/// The bans in force, by jail and target.
#[derive(Default)]
pub(super) struct Bans {
    /// Jail names by the index nodes carry. A slot whose jail holds no ban is reused, so
    /// there are never more slots than jails with bans, plus one.
    names: Vec<String>,
    /// Bans per jail index.
    per_jail: Vec<u64>,
    /// Bans per kernel map ([`datapath::map_of`]).
    per_map: BTreeMap<&'static str, u64>,
    nodes: Vec<BanNode>,
    /// Free nodes, to reuse.
    free: Vec<u32>,
    /// Node numbers, by (jail index, target); keyed with std's randomly seeded SipHash,
    /// as attackers choose the addresses.
    index: HashTable<u32>,
    keys: RandomState,
    /// Timed bans by boot-clock expiry, soonest first, with their node. A ban lifted or
    /// extended leaves its old entry here; it is skipped when it comes up (its node no
    /// longer holds that expiry), and the queue is rebuilt when such entries outnumber
    /// the live ones.
    ends: BinaryHeap<Reverse<(u64, u32)>>,
    /// Entries of `ends` whose ban was lifted or extended since.
    stale: usize,
}

/// One ban: [`ActiveBan`] and its key in 48 bytes.
#[derive(Clone, Copy)]
struct BanNode {
    /// The kernel's expiry ([`Expiry::to_kernel`]: 0 for never).
    expiry: u64,
    /// Wall-clock end; meaningless for a permanent ban.
    expires_at: UnixMs,
    banned_at: UnixMs,
    failures: u32,
    target: IpNet,
    /// The jail's index; [`FREE`] for a free node.
    slot: u8,
}

impl BanNode {
    fn ban(&self) -> ActiveBan {
        let expiry = Expiry::from_kernel(self.expiry);
        ActiveBan {
            expiry,
            expires_at: (expiry != Expiry::Never).then_some(self.expires_at),
            banned_at: self.banned_at,
            failures: self.failures,
        }
    }

    fn set(&mut self, ban: ActiveBan) {
        self.expiry = ban.expiry.to_kernel();
        self.expires_at = ban.expires_at.unwrap_or(UnixMs::MAX);
        self.banned_at = ban.banned_at;
        self.failures = ban.failures;
    }
}

impl Bans {
    fn find_slot(&self, jail: &str) -> Option<u8> {
        let slot = self.names.iter().position(|name| name == jail)?;
        u8::try_from(slot).ok()
    }

    /// The index of `jail`, taking a free slot for a jail not seen yet.
    fn slot(&mut self, jail: &str) -> u8 {
        if let Some(slot) = self.find_slot(jail) {
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
        // well before FREE.
        u8::try_from(slot).unwrap_or(FREE - 1)
    }

    fn node(&self, slot: u8, target: IpNet) -> Option<u32> {
        let hash = self.keys.hash_one((slot, target));
        let nodes = &self.nodes;
        self.index
            .find(hash, |&i| {
                let node = &nodes[i as usize];
                node.slot == slot && node.target == target
            })
            .copied()
    }

    fn find(&self, jail: &str, target: IpNet) -> Option<u32> {
        self.node(self.find_slot(jail)?, target)
    }

    /// The ban of `target` in `jail`, if in force.
    pub fn get(&self, jail: &str, target: IpNet) -> Option<ActiveBan> {
        self.find(jail, target)
            .map(|i| self.nodes[i as usize].ban())
    }

    pub fn contains(&self, jail: &str, target: IpNet) -> bool {
        self.find(jail, target).is_some()
    }

    /// Records `ban` (new, or replacing the one in force); returns the one it replaced.
    pub fn insert(&mut self, jail: &str, target: IpNet, ban: ActiveBan) -> Option<ActiveBan> {
        let slot = self.slot(jail);
        if let Some(i) = self.node(slot, target) {
            let node = &mut self.nodes[i as usize];
            let old = node.ban();
            node.set(ban);
            if node.expiry != 0 {
                self.ends.push(Reverse((node.expiry, i)));
            }
            if old.expiry != Expiry::Never {
                self.stale += 1;
                self.compact();
            }
            return Some(old);
        }
        let mut node = BanNode {
            expiry: 0,
            expires_at: 0,
            banned_at: 0,
            failures: 0,
            target,
            slot,
        };
        node.set(ban);
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                // Node numbers stay far below u32::MAX: the kernel maps hold 2^20 each.
                let i = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
                self.nodes.push(node);
                i
            }
        };
        let (nodes, keys) = (&self.nodes, &self.keys);
        self.index
            .insert_unique(keys.hash_one((slot, target)), i, |&j| {
                let node = &nodes[j as usize];
                keys.hash_one((node.slot, node.target))
            });
        if node.expiry != 0 {
            self.ends.push(Reverse((node.expiry, i)));
        }
        self.count(slot, target, 1);
        None
    }

    /// Makes room for `more` bans at once (a start restoring a million: growing the index
    /// step by step rehashes it twenty times).
    pub fn reserve(&mut self, more: usize) {
        self.nodes.reserve(more);
        let (nodes, keys) = (&self.nodes, &self.keys);
        self.index.reserve(more, |&j| {
            let node = &nodes[j as usize];
            keys.hash_one((node.slot, node.target))
        });
    }

    /// Takes the ban of `target` in `jail` out; returns it, if it was in force.
    pub fn remove(&mut self, jail: &str, target: IpNet) -> Option<ActiveBan> {
        let slot = self.find_slot(jail)?;
        let i = self.node(slot, target)?;
        let hash = self.keys.hash_one((slot, target));
        if let Ok(entry) = self.index.find_entry(hash, |&j| j == i) {
            entry.remove();
        }
        let node = &mut self.nodes[i as usize];
        let old = node.ban();
        node.slot = FREE;
        self.free.push(i);
        self.count(slot, target, -1);
        if old.expiry != Expiry::Never {
            self.stale += 1;
            self.compact();
        }
        Some(old)
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
        self.ends = (0u32..)
            .zip(&self.nodes)
            .filter(|(_, node)| node.slot != FREE && node.expiry != 0)
            .map(|(i, node)| Reverse((node.expiry, i)))
            .collect();
        self.stale = 0;
    }

    /// The timed bans whose expiry (boot clock) is at or before `boot_now`, taken off the
    /// queue: the caller lifts them.
    pub fn ended(&mut self, boot_now: u64) -> Vec<(String, IpNet)> {
        let mut ended = Vec::new();
        while let Some(&Reverse((at, i))) = self.ends.peek() {
            if at > boot_now {
                break;
            }
            self.ends.pop();
            match self.live(at, i) {
                Some(node) => {
                    ended.push((self.names[usize::from(node.slot)].clone(), node.target));
                }
                None => self.stale = self.stale.saturating_sub(1),
            }
        }
        ended
    }

    /// The node of queue entry (`at`, `i`), if its ban still ends then. A node reused
    /// since by a ban with the very same expiry ends then too.
    fn live(&self, at: u64, i: u32) -> Option<&BanNode> {
        self.nodes
            .get(i as usize)
            .filter(|node| node.slot != FREE && node.expiry == at)
    }

    /// When the next timed ban ends (boot clock), if one is in force; drops the queue's
    /// entries of bans lifted or extended on the way.
    pub fn next_end(&mut self) -> Option<u64> {
        while let Some(&Reverse((at, i))) = self.ends.peek() {
            if self.live(at, i).is_some() {
                return Some(at);
            }
            self.ends.pop();
            self.stale = self.stale.saturating_sub(1);
        }
        None
    }

    /// Bans in force.
    pub fn len(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    /// Bans in force in `jail`.
    pub fn count_of(&self, jail: &str) -> u64 {
        self.find_slot(jail)
            .map_or(0, |slot| self.per_jail[usize::from(slot)])
    }

    /// Bans in force per kernel map.
    pub fn per_map(&self, map: &str) -> u64 {
        self.per_map.get(map).copied().unwrap_or(0)
    }

    /// The targets `jail` bans now, in order.
    pub fn of(&self, jail: &str) -> Vec<IpNet> {
        let Some(slot) = self.find_slot(jail) else {
            return Vec::new();
        };
        let mut targets: Vec<IpNet> = self
            .nodes
            .iter()
            .filter(|node| node.slot == slot)
            .map(|node| node.target)
            .collect();
        targets.sort_unstable();
        targets
    }

    /// The bans in `jail` (every jail when `None`) whose target passes `which`, by jail
    /// and target.
    pub fn matching(
        &self,
        jail: Option<&str>,
        which: impl Fn(IpNet) -> bool,
    ) -> Vec<(String, IpNet)> {
        self.iter()
            .filter(|&(name, t, _)| which(t) && jail.is_none_or(|j| j == name))
            .map(|(name, t, _)| (name.to_owned(), t))
            .collect()
    }

    /// Every ban in force: jail, target, ban; in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, IpNet, ActiveBan)> + '_ {
        self.nodes
            .iter()
            .filter(|node| node.slot != FREE)
            .map(|node| {
                let jail = self.names[usize::from(node.slot)].as_str();
                (jail, node.target, node.ban())
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
    fn a_node_is_small() {
        assert_eq!(std::mem::size_of::<BanNode>(), 48);
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
        assert_eq!(bans.next_end(), Some(5000));
        assert_eq!(bans.ended(4999), vec![]);
        assert_eq!(bans.ended(5000), vec![("ssh".to_owned(), a)]);
    }
}
