//! Per jail and per address (or per prefix): failures inside the sliding `findtime`
//! window, and the decision to ban at the `maxretry`-th. Pure: times come in as arguments.
//!
//! Memory is bounded: at most `max_tracked` addresses are followed; past that the one that
//! failed least recently is forgotten, so a flood of distinct addresses (IPv6 rotation)
//! costs a fixed amount of memory.
//!
//! [`BanRate`] is the jail's sanity cap on bans per minute, against a filter that matches
//! what it should not (every client of a busy site banned in a minute).

mod failing;

use std::{collections::VecDeque, net::IpAddr, num::NonZeroUsize, time::Duration};

use failing::{Failing, Window};
use ipnet::IpNet;

use crate::clock::{self, Expiry, Now, UnixMs};

/// How long a ban lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BanTime {
    For(Duration),
    Permanent,
}

/// fail2ban's `bantime.increment`: a repeat offender is banned for
/// `bantime * factor * 2^min(previous bans, 20)`, at most `maxtime`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Increment {
    pub factor: f64,
    pub maxtime: Duration,
    /// Count bans of the address in every jail, not only this one.
    pub overall_jails: bool,
}

impl BanTime {
    /// The boot-clock expiry and the wall-clock end of a ban of this length starting
    /// `now`.
    pub fn ends(self, now: Now) -> (Expiry, Option<UnixMs>) {
        match self {
            BanTime::Permanent => (Expiry::Never, None),
            BanTime::For(d) => (
                Expiry::after(now.boot, d),
                Some(now.wall.saturating_add(clock::ms(d))),
            ),
        }
    }

    /// The length of a ban that follows `previous` bans of the same target.
    pub fn after(self, previous: u32, increment: Option<&Increment>) -> BanTime {
        let (BanTime::For(base), Some(inc)) = (self, increment) else {
            return self;
        };
        let scale = inc.factor * f64::from(1u32 << previous.min(20));
        let secs = (base.as_secs_f64() * scale).min(inc.maxtime.as_secs_f64());
        BanTime::For(Duration::from_secs_f64(secs.max(0.0)))
    }
}

/// A jail's counting rules.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub maxretry: u32,
    pub findtime: Duration,
    /// Failures are counted per prefix of this length (32 = per address).
    pub prefix_v4: u8,
    /// Likewise for IPv6 (128 = per address; 64 bans a whole /64).
    pub prefix_v6: u8,
    /// Addresses followed at most.
    pub max_tracked: usize,
    /// Bans from the log in any 60 s at most; 0: no cap.
    pub max_bans_per_minute: u32,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            maxretry: 5,
            findtime: Duration::from_secs(600),
            prefix_v4: 32,
            prefix_v6: 128,
            max_tracked: 1_000_000,
            max_bans_per_minute: 1000,
        }
    }
}

/// The `maxretry`-th failure of `target` inside the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub target: IpNet,
    /// Failures inside the window, this one included.
    pub failures: u32,
}

/// What [`Tracker::record`] made of a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Counted {
    /// Counted; not (yet) a ban.
    Counted,
    /// Older than `findtime` when read: seen, not counted (replaying an old log bans no one).
    Stale,
    /// Counted, and it is the one that bans.
    Ban(Decision),
}

/// Failures of one jail.
pub struct Tracker {
    rules: Rules,
    /// The failing targets, and which changed since the state last saved them.
    failing: Failing,
    total_failed: u64,
    evicted: u64,
}

impl Tracker {
    pub fn new(rules: Rules) -> Self {
        let cap = NonZeroUsize::new(rules.max_tracked).map_or(1, NonZeroUsize::get);
        Self {
            failing: Failing::new(cap),
            rules,
            total_failed: 0,
            evicted: 0,
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Counts a failure of `target` that happened at `at` and was read at `now`.
    pub fn record(&mut self, target: IpNet, at: UnixMs, now: UnixMs) -> Counted {
        self.total_failed += 1;
        let window = self.window_ms();
        if at <= now.saturating_sub(window) {
            return Counted::Stale;
        }
        let target = self.aggregate(target);
        let maxretry = self.rules.maxretry.max(1) as usize;
        // A known target is updated in place (and becomes the most recent); a new one is
        // inserted only if it does not ban at once. Either is a change to save.
        let failures = match self.failing.get_mut(&target) {
            Some(times) => {
                times.push(at, window, maxretry);
                times.len()
            }
            None => {
                let mut times = Window::Empty;
                times.push(at, window, maxretry);
                let failures = times.len();
                if failures < maxretry {
                    if self.failing.len() == self.failing.capacity()
                        && self.failing.remove_lru().is_some()
                    {
                        self.evicted += 1;
                    }
                    self.failing.insert(target, times);
                }
                failures
            }
        };
        if failures < maxretry {
            return Counted::Counted;
        }
        // Banned: its failures are forgotten, counting starts again.
        self.failing.remove(&target);
        Counted::Ban(Decision {
            target,
            failures: failures as u32,
        })
    }

    /// Applies new rules (a reload), keeping the failures counted so far when they are
    /// counted per the same prefixes; returns `false` (and forgets them) otherwise.
    pub fn set_rules(&mut self, rules: Rules) -> bool {
        let same_keys =
            rules.prefix_v4 == self.rules.prefix_v4 && rules.prefix_v6 == self.rules.prefix_v6;
        if !same_keys {
            *self = Self::new(rules);
            return false;
        }
        let cap = NonZeroUsize::new(rules.max_tracked).map_or(1, NonZeroUsize::get);
        self.failing.set_capacity(cap);
        self.rules = rules;
        true
    }

    /// Forgets the failures of `target` (after an operator's ban or unban).
    pub fn forget(&mut self, target: &IpNet) {
        self.failing.remove(target);
    }

    /// Takes back failures saved before a restart: the times of `target` still inside the
    /// window at `now` (by the lines' times), as the failures of the newest target. Not a
    /// change to save; the memory cap holds.
    pub fn restore(&mut self, target: IpNet, times: &[UnixMs], now: UnixMs) {
        let window = self.window_ms();
        let maxretry = self.rules.maxretry.max(1) as usize;
        let target = self.aggregate(target);
        let live = times.iter().filter(|&&t| t > now.saturating_sub(window));
        let mut window_times = self.failing.take_saved(&target).unwrap_or_default();
        for &at in live {
            window_times.push(at, window, maxretry);
        }
        // A window that would ban was banned before the restart (or its ban is read
        // again from the log): keep one short of it.
        while window_times.len() >= maxretry {
            window_times.pop_front();
        }
        if !window_times.is_empty() {
            if self.failing.len() == self.failing.capacity() {
                self.evicted += 1;
            }
            self.failing.restore(target, window_times);
        }
    }

    /// The targets whose failures changed since [`Tracker::saved`], with the times inside
    /// the window now (none: forget the target). A target forgotten and failing again
    /// comes twice, forgotten first: the last word is the one to keep.
    pub fn changes(&self) -> impl Iterator<Item = (IpNet, Vec<UnixMs>)> + '_ {
        self.failing
            .changes()
            .map(|(target, times)| (target, times.iter().collect()))
    }

    /// Whether any target's failures changed since [`Tracker::saved`].
    pub fn has_changes(&self) -> bool {
        self.failing.has_changes()
    }

    /// The changes are saved.
    pub fn saved(&mut self) {
        self.failing.saved();
    }

    /// Addresses with failures in the window at `now`.
    pub fn currently_failing(&self, now: UnixMs) -> usize {
        // Counted in place: `status` asks this of a million addresses under attack.
        let since = now.saturating_sub(self.window_ms());
        self.failing
            .iter()
            .filter(|(_, times)| times.iter().any(|t| t > since))
            .count()
    }

    /// Each failing target with its failure times inside the window at `now`.
    pub fn failures(&self, now: UnixMs) -> impl Iterator<Item = (&IpNet, Vec<UnixMs>)> {
        let window = self.window_ms();
        self.failing.iter().filter_map(move |(target, times)| {
            let live: Vec<UnixMs> = times
                .iter()
                .filter(|&t| t > now.saturating_sub(window))
                .collect();
            (!live.is_empty()).then_some((target, live))
        })
    }

    /// Failures seen since start, stale ones included.
    pub fn total_failed(&self) -> u64 {
        self.total_failed
    }

    /// Addresses forgotten because of the memory cap.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Addresses followed now (at most `max_tracked`).
    pub fn tracked(&self) -> usize {
        self.failing.len()
    }

    fn window_ms(&self) -> i64 {
        clock::ms(self.rules.findtime)
    }

    /// The address or prefix `target` is counted (and banned) as.
    pub fn aggregate(&self, target: IpNet) -> IpNet {
        let limit = match target.addr() {
            IpAddr::V4(_) => self.rules.prefix_v4,
            IpAddr::V6(_) => self.rules.prefix_v6,
        };
        if target.prefix_len() <= limit {
            return target;
        }
        IpNet::new(target.addr(), limit)
            .map(|net| net.trunc())
            .unwrap_or(target)
    }
}

/// What [`BanRate::admit`] says of one more ban.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Under the cap: ban.
    Yes,
    /// Over the cap: do not ban. `alert` is true for the first refusal of a minute, so
    /// that the operator is told once a minute, not once a line.
    HeldBack { alert: bool },
}

/// The bans of one jail in the last minute, against `max_bans_per_minute`.
#[derive(Clone, Debug)]
pub struct BanRate {
    per_minute: u32,
    /// Times of the admitted bans of the last minute (at most `per_minute`).
    recent: VecDeque<UnixMs>,
    last_alert: Option<UnixMs>,
    held_back: u64,
}

impl BanRate {
    const MINUTE_MS: i64 = 60_000;

    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            recent: VecDeque::new(),
            last_alert: None,
            held_back: 0,
        }
    }

    /// Whether one more ban at `now` is under the cap; an admitted ban is counted.
    pub fn admit(&mut self, now: UnixMs) -> Admit {
        if self.per_minute == 0 {
            return Admit::Yes;
        }
        let since = now.saturating_sub(Self::MINUTE_MS);
        while self.recent.front().is_some_and(|&t| t <= since) {
            self.recent.pop_front();
        }
        if self.recent.len() < self.per_minute as usize {
            self.recent.push_back(now);
            return Admit::Yes;
        }
        self.held_back += 1;
        let alert = self.last_alert.is_none_or(|t| t <= since);
        if alert {
            self.last_alert = Some(now);
        }
        Admit::HeldBack { alert }
    }

    /// Bans refused by the cap so far.
    pub fn held_back(&self) -> u64 {
        self.held_back
    }
}

#[cfg(test)]
mod tests;
