//! A failregex's captures in one scan, without backtracking. `IP4|IP6` makes `<HOST>`
//! ambiguous to a byte-by-byte reader (both start with digits), so the regex engine finds
//! the match with its DFA and then runs its bounded backtracker for the groups, which is
//! most of what a failure line costs. With the address loosened to the run of characters
//! addresses are written with, most failregexes are one-pass (each byte decides the
//! parse), and a one-pass DFA gives the match and its groups in one anchored scan.
//!
//! It decides as the exact regex would. Every line the exact regex matches, the loose one
//! matches: it is a superset, anchored at the same start. When the loose one matches, the
//! text before the address has one parse (one-pass: no two ways to read a byte), and so
//! does the rest once the address is known; the exact regex takes the address its own
//! pattern prefers at that place, provided the rest matches after it. So when the exact
//! address pattern's first match in the run is the whole run (checked), the exact regex
//! would have taken the same address and the same groups. When it is not (or the regex is
//! not one-pass, or not anchored at the line's start), [`Found::Unsure`] sends the line to
//! the exact regex. `filter::tests` compares both ways on random lines.

use regex_automata::{
    Anchored, Input, PatternID,
    dfa::onepass::{Cache, DFA},
    util::captures::Captures,
};
use regex_syntax::hir::Look;

use super::tags;

/// A failregex's one-pass twin.
#[derive(Clone, Debug)]
pub struct OnePass {
    dfa: DFA,
    host: usize,
    time: Option<usize>,
    /// The exact address, anchored at the start.
    exact: regex::Regex,
}

/// Room for [`OnePass::find`], reused line after line.
#[derive(Clone, Debug)]
pub struct Room {
    cache: Cache,
    captures: Captures,
}

/// What the one-pass scan says of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// The failregex does not match.
    No,
    /// It matches: the address's span, and the `time` group's.
    Host {
        host: (usize, usize),
        time: Option<(usize, usize)>,
    },
    /// The exact regex must decide.
    Unsure,
}

impl OnePass {
    /// The twin of `regex` (as written, options in place), when it has one.
    pub fn new(regex: &str) -> Option<Self> {
        let (relaxed, exact) = tags::relaxed(regex)?;
        let hir = regex_syntax::parse(&relaxed).ok()?;
        if !hir.properties().look_set_prefix().contains(Look::Start) {
            return None;
        }
        let dfa = DFA::new(&relaxed).ok()?;
        let groups = dfa.get_nfa().group_info();
        let host = groups.to_index(PatternID::ZERO, "host")?;
        let time = groups.to_index(PatternID::ZERO, "time");
        Some(Self {
            host,
            time,
            exact: regex::Regex::new(&exact).ok()?,
            dfa,
        })
    }

    pub fn room(&self) -> Room {
        Room {
            cache: self.dfa.create_cache(),
            captures: self.dfa.create_captures(),
        }
    }

    /// Scans `line` once; `room` must be this twin's.
    pub fn find(&self, room: &mut Room, line: &str) -> Found {
        let input = Input::new(line).anchored(Anchored::Yes);
        if self
            .dfa
            .try_search(&mut room.cache, &input, &mut room.captures)
            .is_err()
        {
            return Found::Unsure;
        }
        if !room.captures.is_match() {
            return Found::No;
        }
        let Some(host) = room.captures.get_group(self.host) else {
            return Found::Unsure;
        };
        let run = &line[host.range()];
        if self
            .exact
            .find(run)
            .is_none_or(|exact| exact.end() != run.len())
        {
            return Found::Unsure;
        }
        let time = self
            .time
            .and_then(|group| room.captures.get_group(group))
            .map(|span| (span.start, span.end));
        Found::Host {
            host: (host.start, host.end),
            time,
        }
    }
}
