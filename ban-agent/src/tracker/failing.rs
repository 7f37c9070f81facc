//! The failing targets of one jail, least recently failed first, in about 60 bytes each
//! (a million in under 64 MB): a flood of distinct addresses is what this holds most. It
//! also knows which targets changed since the state last saved them.
//!
//! Written here rather than taken from `hashlink`'s `LruCache`, whose nodes are each an
//! allocation with two pointers and whose `VecDeque` of times is another (147 bytes per
//! address measured): the nodes live in one `Vec` linked by 32-bit indices, the index is
//! a `hashbrown::HashTable` of those indices (keyed with std's randomly seeded SipHash, as
//! attackers choose the addresses; each node keeps its hash, so growing the index hashes
//! nothing again), a single failure time is kept inline, and a changed target is a flag in
//! its node plus its index in a list, not an entry in a hash set.

use std::{
    collections::VecDeque,
    hash::{BuildHasher, RandomState},
};

use hashbrown::HashTable;
use ipnet::IpNet;

use crate::clock::UnixMs;

const NIL: u32 = u32::MAX;

/// Failure times of one target inside the window, oldest first: inline while there is
/// one (most addresses of a flood fail once), on the heap past that.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Window {
    #[default]
    Empty,
    One(UnixMs),
    #[expect(
        clippy::box_collection,
        reason = "boxed, the window takes 16 bytes in every node; a VecDeque inline, 32"
    )]
    Many(Box<VecDeque<UnixMs>>),
}

impl Window {
    pub fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::One(_) => 1,
            Self::Many(times) => times.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = UnixMs> + '_ {
        let (one, many) = match self {
            Self::Empty => (None, None),
            Self::One(at) => (Some(*at), None),
            Self::Many(times) => (None, Some(times.iter().copied())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// Adds `at` to the window ending at the newest failure; keeps at most `maxretry`
    /// times.
    pub fn push(&mut self, at: UnixMs, window: i64, maxretry: usize) {
        let mut times = match std::mem::take(self) {
            Self::Empty if maxretry >= 1 => {
                if at > at.saturating_sub(window) {
                    *self = Self::One(at);
                }
                return;
            }
            Self::Empty => VecDeque::new(),
            Self::One(first) => {
                let mut times = VecDeque::with_capacity(maxretry.clamp(2, 8));
                times.push_back(first);
                times
            }
            Self::Many(times) => *times,
        };
        push(&mut times, at, window, maxretry);
        *self = Self::from(times);
    }

    /// Drops the oldest time.
    pub fn pop_front(&mut self) {
        match self {
            Self::Empty => {}
            Self::One(_) => *self = Self::Empty,
            Self::Many(times) => {
                times.pop_front();
                if times.len() <= 1 {
                    *self = Self::from(std::mem::take(&mut **times));
                }
            }
        }
    }
}

impl From<VecDeque<UnixMs>> for Window {
    fn from(times: VecDeque<UnixMs>) -> Self {
        match times.len() {
            0 => Self::Empty,
            1 => times.front().map_or(Self::Empty, |&at| Self::One(at)),
            _ => Self::Many(Box::new(times)),
        }
    }
}

/// Adds `at` in time order, drops times that fell out of the window ending at the newest
/// one, and keeps at most `maxretry`.
fn push(times: &mut VecDeque<UnixMs>, at: UnixMs, window: i64, maxretry: usize) {
    let position = times.partition_point(|&t| t <= at);
    times.insert(position, at);
    let newest = times.back().copied().unwrap_or(at);
    while times
        .front()
        .is_some_and(|&t| t <= newest.saturating_sub(window))
    {
        times.pop_front();
    }
    while times.len() > maxretry {
        times.pop_front();
    }
}

struct TrackedNode {
    window: Window,
    target: IpNet,
    /// Toward the least recently failed; [`NIL`] at the end. In a free node, unused.
    older: u32,
    /// Toward the most recently failed; in a free node, the next free one.
    newer: u32,
    /// The target's hash, as the index keys it ([`Failing::hash`]).
    hash: u32,
    /// In [`Failing::changed`] since the last save.
    changed: bool,
    /// Holds a target (not on the free list).
    live: bool,
}

/// Failing targets with their windows, in order of their last failure, at most
/// `capacity` of them.
pub struct Failing {
    nodes: Vec<TrackedNode>,
    index: HashTable<u32>,
    keys: RandomState,
    /// Nodes whose target's window changed since the last save (each once, by its flag;
    /// a node freed and reused since may be listed for its new target).
    changed: Vec<u32>,
    /// Targets forgotten since the last save (banned, evicted, forgotten by hand).
    gone: Vec<IpNet>,
    /// Least and most recently failed.
    oldest: u32,
    newest: u32,
    /// Free nodes, linked through `newer`.
    free: u32,
    len: usize,
    capacity: usize,
}

impl Failing {
    pub fn new(capacity: usize) -> Self {
        Self {
            nodes: Vec::new(),
            index: HashTable::new(),
            keys: RandomState::new(),
            changed: Vec::new(),
            gone: Vec::new(),
            oldest: NIL,
            newest: NIL,
            free: NIL,
            len: 0,
            capacity: capacity.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The 32 bits of the target's hash a node keeps.
    fn hash(&self, target: &IpNet) -> u32 {
        self.keys.hash_one(target) as u32
    }

    /// The index's 64-bit hash from a node's 32: hashbrown takes the bucket from the low
    /// bits and a tag from the top seven, which then come from bits 25 to 31.
    fn spread(hash: u32) -> u64 {
        u64::from(hash) | (u64::from(hash) << 32)
    }

    fn find(&self, target: &IpNet) -> Option<u32> {
        let hash = Self::spread(self.hash(target));
        self.index
            .find(hash, |&i| self.nodes[i as usize].target == *target)
            .copied()
    }

    /// The window of `target`, which becomes the most recently failed, as changed.
    pub fn get_mut(&mut self, target: &IpNet) -> Option<&mut Window> {
        let i = self.find(target)?;
        self.unlink(i);
        self.link_newest(i);
        self.mark(i);
        Some(&mut self.nodes[i as usize].window)
    }

    fn mark(&mut self, i: u32) {
        let node = &mut self.nodes[i as usize];
        if !node.changed {
            node.changed = true;
            self.changed.push(i);
        }
    }

    /// Adds `target` as the most recently failed, as changed (replacing its window if it
    /// is there), forgetting the least recently failed one when full.
    pub fn insert(&mut self, target: IpNet, window: Window) {
        let i = self.place(target, window);
        self.mark(i);
    }

    /// Puts back a window as it was saved: not a change.
    pub fn restore(&mut self, target: IpNet, window: Window) {
        self.place(target, window);
    }

    /// Puts `window` in `target`'s node (a new one if needed), the most recent; returns
    /// the node. Marks nothing.
    fn place(&mut self, target: IpNet, window: Window) -> u32 {
        if let Some(i) = self.find(&target) {
            self.unlink(i);
            self.link_newest(i);
            self.nodes[i as usize].window = window;
            return i;
        }
        if self.len >= self.capacity {
            self.remove_lru();
        }
        let hash = self.hash(&target);
        let node = TrackedNode {
            window,
            target,
            older: NIL,
            newer: NIL,
            hash,
            changed: false,
            live: true,
        };
        let i = if self.free == NIL {
            // Indices stay below NIL: `max_tracked` is far below 2^32 - 1.
            let i = u32::try_from(self.nodes.len()).unwrap_or(NIL - 1);
            self.nodes.push(node);
            i
        } else {
            let i = self.free;
            self.free = self.nodes[i as usize].newer;
            self.nodes[i as usize] = node;
            i
        };
        let nodes = &self.nodes;
        self.index.insert_unique(Self::spread(hash), i, |&j| {
            Self::spread(nodes[j as usize].hash)
        });
        self.link_newest(i);
        self.len += 1;
        i
    }

    /// Forgets `target`, as a change.
    pub fn remove(&mut self, target: &IpNet) -> Option<Window> {
        let i = self.find(target)?;
        Some(self.take(i).1)
    }

    /// Takes `target`'s window out to put it back with [`Failing::restore`]: not a change.
    pub fn take_saved(&mut self, target: &IpNet) -> Option<Window> {
        let i = self.find(target)?;
        let (target, window) = self.take(i);
        self.gone.pop_if(|gone| *gone == target);
        Some(window)
    }

    /// Forgets the least recently failed target.
    pub fn remove_lru(&mut self) -> Option<(IpNet, Window)> {
        (self.oldest != NIL).then(|| self.take(self.oldest))
    }

    /// Frees node `i`; its target is forgotten, as a change.
    fn take(&mut self, i: u32) -> (IpNet, Window) {
        let (target, hash) = {
            let node = &self.nodes[i as usize];
            (node.target, node.hash)
        };
        if let Ok(entry) = self.index.find_entry(Self::spread(hash), |&j| j == i) {
            entry.remove();
        }
        self.unlink(i);
        let node = &mut self.nodes[i as usize];
        let window = std::mem::take(&mut node.window);
        node.live = false;
        node.newer = self.free;
        self.free = i;
        self.len -= 1;
        self.gone.push(target);
        (target, window)
    }

    /// The targets changed since [`Failing::saved`], with their windows now (empty: the
    /// target is forgotten). A target forgotten and failing again comes twice, forgotten
    /// first.
    pub fn changes(&self) -> impl Iterator<Item = (IpNet, &Window)> + '_ {
        static EMPTY: Window = Window::Empty;
        let gone = self.gone.iter().map(|&target| (target, &EMPTY));
        let changed = self.changed.iter().filter_map(|&i| {
            let node = self.nodes.get(i as usize)?;
            node.live.then_some((node.target, &node.window))
        });
        gone.chain(changed)
    }

    pub fn has_changes(&self) -> bool {
        !(self.changed.is_empty() && self.gone.is_empty())
    }

    /// The changes are saved.
    pub fn saved(&mut self) {
        for &i in &self.changed {
            if let Some(node) = self.nodes.get_mut(i as usize) {
                node.changed = false;
            }
        }
        self.changed.clear();
        self.gone.clear();
        if self.changed.capacity() > 4096 {
            self.changed.shrink_to(1024);
        }
        if self.gone.capacity() > 4096 {
            self.gone.shrink_to(1024);
        }
    }

    /// Sets the capacity, forgetting the least recently failed targets above it.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        while self.len > self.capacity {
            self.remove_lru();
        }
    }

    /// Every target with its window, least recently failed first.
    pub fn iter(&self) -> impl Iterator<Item = (&IpNet, &Window)> {
        let mut at = self.oldest;
        std::iter::from_fn(move || {
            let node = self.nodes.get(at as usize).filter(|node| node.live)?;
            at = node.newer;
            Some((&node.target, &node.window))
        })
    }

    fn unlink(&mut self, i: u32) {
        let (older, newer) = {
            let node = &self.nodes[i as usize];
            (node.older, node.newer)
        };
        match older {
            NIL => self.oldest = newer,
            o => self.nodes[o as usize].newer = newer,
        }
        match newer {
            NIL => self.newest = older,
            n => self.nodes[n as usize].older = older,
        }
    }

    fn link_newest(&mut self, i: u32) {
        let node = &mut self.nodes[i as usize];
        node.older = self.newest;
        node.newer = NIL;
        match self.newest {
            NIL => self.oldest = i,
            n => self.nodes[n as usize].newer = i,
        }
        self.newest = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(n: u32) -> IpNet {
        IpNet::from(std::net::IpAddr::V4(std::net::Ipv4Addr::from(
            0xc000_0200 + n,
        )))
    }

    #[test]
    fn a_node_is_small() {
        assert!(
            std::mem::size_of::<TrackedNode>() <= 48,
            "{}",
            std::mem::size_of::<TrackedNode>()
        );
        assert_eq!(std::mem::size_of::<Window>(), 16);
    }

    #[test]
    fn order_eviction_and_free_nodes_reused() {
        let mut failing = Failing::new(3);
        for n in 0..3 {
            failing.insert(net(n), Window::One(i64::from(n)));
        }
        // 0 failed again: 1 is now the least recent.
        assert!(failing.get_mut(&net(0)).is_some());
        failing.insert(net(3), Window::One(3));
        let order: Vec<IpNet> = failing.iter().map(|(t, _)| *t).collect();
        assert_eq!(order, [net(2), net(0), net(3)]);
        assert_eq!(failing.remove(&net(0)), Some(Window::One(0)));
        assert!(failing.iter().all(|(t, _)| *t != net(0)));
        failing.insert(net(4), Window::One(4));
        assert_eq!(failing.nodes.len(), 3, "the freed node is reused");
        assert_eq!(failing.remove_lru().map(|(t, _)| t), Some(net(2)));
        failing.set_capacity(1);
        let order: Vec<IpNet> = failing.iter().map(|(t, _)| *t).collect();
        assert_eq!(order, [net(4)]);
        assert_eq!(failing.len(), 1);
    }

    #[test]
    fn a_window_keeps_the_times_a_deque_keeps() {
        let cases: &[(&[i64], i64, usize)] = &[
            (&[10, 20, 30], 100, 5),
            (&[10, 200, 210], 100, 5),
            (&[30, 10, 20], 100, 5),
            (&[10, 20, 30, 40], 100, 2),
            (&[10], 0, 5),
            (&[10, 10], 100, 1),
        ];
        for &(times, window, maxretry) in cases {
            let mut compact = Window::Empty;
            let mut deque = VecDeque::new();
            for &at in times {
                compact.push(at, window, maxretry);
                push(&mut deque, at, window, maxretry);
                assert_eq!(compact.iter().collect::<Vec<_>>(), Vec::from(deque.clone()));
            }
            while !deque.is_empty() {
                compact.pop_front();
                deque.pop_front();
                assert_eq!(compact.iter().collect::<Vec<_>>(), Vec::from(deque.clone()));
            }
        }
    }
}
