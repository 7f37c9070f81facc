//! A literal prefilter for a set of failregexes: one scan that rejects most lines that
//! cannot match any of them, before a regex engine looks at the line.
//!
//! Each failregex is a concatenation; every match of it contains a match of each part, and
//! so one of the literals a part must start with, and one of those the regex up to the end
//! of a part must end with (regex-syntax's literal extractor tells which). Per regex we
//! keep one such set of literals, and the prefilter passes a line that contains any
//! literal of any regex's set. A regex with no usable set disables the prefilter, since it
//! could match a line with none of the literals.
//!
//! Which set to take is a heuristic: log lines repeat a fixed prefix (time, logger name,
//! level) and carry what tells a failure from a success later on, so the rightmost set
//! with literals of at least [`MIN_LITERAL`] bytes is taken: the end of a part (` 401"`
//! after an alternation of paths) is right of its start (the paths). A poor choice costs
//! speed, never correctness: the regexes still decide.

use regex_automata::{Input, MatchKind, PatternID, PatternSet, meta, util::syntax};
use regex_syntax::hir::{
    Hir, HirKind,
    literal::{ExtractKind, Extractor},
};

/// Shorter literals (` - `, `: `) occur in nearly every line and reject nothing.
const MIN_LITERAL: usize = 4;

/// Literals of which every line a filter can match contains one.
#[derive(Clone, Debug)]
pub struct Prefilter {
    literals: regex::bytes::Regex,
}

impl Prefilter {
    /// A prefilter for these (expanded) patterns, or `None` if one of them has no part
    /// with literals long enough to be worth a scan.
    pub fn new(patterns: &[String]) -> Option<Self> {
        let mut literals = Vec::new();
        for pattern in patterns {
            let hir = regex_syntax::parse(pattern).ok()?;
            literals.extend(required_literals(&hir)?);
        }
        if literals.is_empty() {
            // No regex (a filter of JSON rules only): nothing to gate.
            return None;
        }
        // An alternation of plain literals: the regex crate searches it with memmem or a
        // SIMD multi-literal searcher (Teddy), several times faster here than aho-corasick.
        let alternation: Vec<String> = literals.iter().map(|l| escape_bytes(l)).collect();
        let literals = regex::bytes::RegexBuilder::new(&alternation.join("|"))
            .unicode(false)
            .build()
            .ok()?;
        Some(Self { literals })
    }

    /// Whether the line may match; `false` means no failregex can match it.
    pub fn may_match(&self, line: &str) -> bool {
        self.literals.is_match(line.as_bytes())
    }
}

/// The literals that every match of `hir` contains one of, taken at the rightmost place in
/// its concatenation where they are all at least [`MIN_LITERAL`] bytes long: the end of
/// a part (the literals the regex up to it ends with) or the start of one (those the rest
/// starts with).
fn required_literals(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    let parts = concatenation(hir);
    let extractor = extractor(ExtractKind::Suffix);
    let starts = part_literals(hir);
    (0..parts.len()).rev().find_map(|end| {
        long_literals(&extractor.extract(&Hir::concat(parts[..=end].to_vec())))
            .or_else(|| starts.get(end).cloned().flatten())
    })
}

/// The literal extractor of every gate: it expands the case pairs of `(?i)`, not classes
/// such as `\d`, whose ten literals (" - 0" ... " - 9") would look selective and reject
/// nothing.
fn extractor(kind: ExtractKind) -> Extractor {
    let mut extractor = Extractor::new();
    extractor.kind(kind).limit_class(2);
    extractor
}

/// The literals every match of `pattern` starts with (one of them), when it has a finite
/// set of them: what the JSON rules' words are taken from ([`super::json`]).
pub(super) fn starting_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::parse(pattern).ok()?;
    let seq = extractor(ExtractKind::Prefix).extract(&hir);
    seq.literals()
        .map(|literals| literals.iter().map(|l| l.as_bytes().to_vec()).collect())
}

/// The parts of `hir`'s concatenation (itself, when it is not one).
fn concatenation(hir: &Hir) -> &[Hir] {
    match hir.kind() {
        HirKind::Concat(parts) => parts.as_slice(),
        _ => std::slice::from_ref(hir),
    }
}

/// The literals of `seq`, when it has some and all are at least [`MIN_LITERAL`] bytes.
fn long_literals(seq: &regex_syntax::hir::literal::Seq) -> Option<Vec<Vec<u8>>> {
    let literals = seq.literals()?;
    let long_enough =
        !literals.is_empty() && literals.iter().all(|l| l.as_bytes().len() >= MIN_LITERAL);
    long_enough.then(|| literals.iter().map(|l| l.as_bytes().to_vec()).collect())
}

/// For each part of `hir`'s concatenation, left to right, the literals that start the
/// rest of it, when there are some and all are at least [`MIN_LITERAL`] bytes long.
fn part_literals(hir: &Hir) -> Vec<Option<Vec<Vec<u8>>>> {
    let parts = concatenation(hir);
    let extractor = extractor(ExtractKind::Prefix);
    (0..parts.len())
        .map(|start| long_literals(&extractor.extract(&Hir::concat(parts[start..].to_vec()))))
        .collect()
}

/// Which regexes of a list can match a text, from their literals, in one scan. Each
/// regex gets two sets of literals its every match contains one of, and may match only a
/// text that holds one of each: the part of its concatenation whose literals are longest
/// (the most selective: `Failed ` rather than ` from `), and the rightmost set the
/// [`Prefilter`] takes (` 401"` after a prefix every line repeats). All are searched
/// together. A regex with no such literals is always a candidate.
#[derive(Clone, Debug)]
pub struct LiteralGate {
    /// Every literal set, as byte patterns whose every match is reported.
    set: Option<meta::Regex>,
    /// For each regex, the indexes in `set` of the literal sets it needs; none: always
    /// a candidate.
    slots: Vec<Vec<usize>>,
}

impl LiteralGate {
    pub fn new(patterns: &[&str]) -> Self {
        let mut alternations: Vec<String> = Vec::new();
        let mut slots = Vec::new();
        for pattern in patterns {
            let hir = regex_syntax::parse(pattern).ok();
            let needed = hir.iter().flat_map(|hir| {
                let selective = selective_literals(hir);
                let rightmost = required_literals(hir).filter(|r| Some(r) != selective.as_ref());
                selective.into_iter().chain(rightmost)
            });
            let mut own = Vec::new();
            for literals in needed {
                let escaped: Vec<String> = literals.iter().map(|l| escape_bytes(l)).collect();
                let alternation = escaped.join("|");
                let slot = match alternations.iter().position(|a| *a == alternation) {
                    Some(slot) => slot,
                    None => {
                        alternations.push(alternation);
                        alternations.len() - 1
                    }
                };
                own.push(slot);
            }
            slots.push(own);
        }
        let set = meta::Builder::new()
            .configure(meta::Config::new().match_kind(MatchKind::All))
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .build_many(&alternations)
            .ok();
        if set.is_none() {
            slots.iter_mut().for_each(Vec::clear);
        }
        Self { set, slots }
    }

    /// Room for [`LiteralGate::scan`], reused from text to text.
    pub fn room(&self) -> Candidates {
        Candidates(
            self.set
                .as_ref()
                .map(|set| PatternSet::new(set.pattern_len())),
        )
    }

    /// Finds which regexes may match `text`, into `found` (this gate's [`room`]): one
    /// scan, no allocation.
    ///
    /// [`room`]: LiteralGate::room
    pub fn scan(&self, text: &str, found: &mut Candidates) {
        if let (Some(set), Some(patterns)) = (&self.set, &mut found.0) {
            patterns.clear();
            set.which_overlapping_matches(&Input::new(text.as_bytes()), patterns);
        }
    }

    /// Whether some regex may match, given `candidates` of a text (`true` when one of
    /// them has no literals).
    pub fn any_may_match(&self, candidates: &Candidates) -> bool {
        (0..self.slots.len()).any(|index| self.may_match(candidates, index))
    }

    /// Whether regex `index` may match, given `candidates` of the same text.
    pub fn may_match(&self, candidates: &Candidates, index: usize) -> bool {
        match (self.slots.get(index), &candidates.0) {
            (Some(slots), Some(found)) => slots
                .iter()
                .all(|&slot| found.contains(PatternID::must(slot))),
            _ => true,
        }
    }
}

#[cfg(test)]
impl LiteralGate {
    /// The regexes that may match `text`, in room of their own.
    fn candidates(&self, text: &str) -> Candidates {
        let mut found = self.room();
        self.scan(text, &mut found);
        found
    }
}

/// What [`LiteralGate::scan`] found in one text: which literal sets it holds.
#[derive(Clone, Debug)]
pub struct Candidates(Option<PatternSet>);

/// The literals that every match of `hir` contains one of, from the part of its
/// concatenation whose literals are longest (by the shortest of them); ties go to the
/// leftmost part.
fn selective_literals(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    let shortest = |set: &Vec<Vec<u8>>| set.iter().map(Vec::len).min().unwrap_or(0);
    part_literals(hir)
        .into_iter()
        .flatten()
        .rev()
        .max_by_key(shortest)
}

/// A byte string as a regex that matches exactly it (bytes outside ASCII as `\xNN`).
fn escape_bytes(literal: &[u8]) -> String {
    literal
        .iter()
        .map(|&b| {
            if b.is_ascii() {
                regex::escape(&char::from(b).to_string())
            } else {
                format!(r"\x{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefilter(patterns: &[&str]) -> Option<Prefilter> {
        Prefilter::new(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn takes_the_rightmost_long_literals() {
        let p =
            prefilter(&[r#"^\d+ - app - (?P<host>\S+) - "(?:/login" 401|/register" 400) - \d+s$"#])
                .expect("a prefilter");
        assert!(p.may_match(r#"1 - app - 192.0.2.1 - "/login" 401 - 3s"#));
        assert!(p.may_match(r#"1 - app - 192.0.2.1 - "/register" 400 - 3s"#));
        assert!(!p.may_match(r#"1 - app - 192.0.2.1 - "/login" 200 - 3s"#));
    }

    #[test]
    fn one_regex_without_literals_disables_it() {
        assert!(prefilter(&[r"(?P<host>\S+) failed", r"^\S+$"]).is_none());
        assert!(prefilter(&[r"a (?P<host>\S+) b"]).is_none(), "too short");
        assert!(
            prefilter(&[r"(?P<host>\S+) - \d+s"]).is_none(),
            "a digit class is not expanded into ten selective-looking literals"
        );
    }

    #[test]
    fn the_union_of_several_regexes_passes_each_ones_lines() {
        let p = prefilter(&[
            r"auth failure for (?P<host>\S+)",
            r"(?P<host>\S+) bad password",
        ])
        .expect("a prefilter");
        assert!(p.may_match("auth failure for 192.0.2.1"));
        assert!(p.may_match("192.0.2.1 bad password"));
        assert!(!p.may_match("192.0.2.1 logged in"));
    }

    #[test]
    fn literals_are_matched_as_bytes_not_as_regex() {
        let p = prefilter(&["(?P<host>\\S+) \\[x\\]\\.\\*é"]).expect("a prefilter");
        assert!(p.may_match("192.0.2.1 [x].*é"));
        assert!(!p.may_match("192.0.2.1 x!!é"));
    }

    #[test]
    fn a_gate_takes_the_most_selective_literals_of_each_regex() {
        let gate = LiteralGate::new(&[
            r"^Failed \S+ for \S+ from (?P<ip4>\S+)$",
            r"^Accepted \S+ for \S+ from (?P<ip4>\S+)$",
            r"(?P<ip4>\S+)",
        ]);
        let text = "Accepted password for bob from 192.0.2.1";
        let found = gate.candidates(text);
        assert!(
            !gate.may_match(&found, 0),
            "` from ` is in both: `Failed ` decides"
        );
        assert!(gate.may_match(&found, 1));
        assert!(gate.may_match(&found, 2), "no literal: always tried");
        let any = |gate: &LiteralGate, text: &str| gate.any_may_match(&gate.candidates(text));
        assert!(any(&gate, "nothing of theirs"), "the third has no literal");
        let gate = LiteralGate::new(&[r"^Failed \S+ from (?P<ip4>\S+)$"]);
        assert!(!any(&gate, "Accepted password from 192.0.2.1"));
        assert!(any(&gate, "Failed password from 192.0.2.1"));
    }

    #[test]
    fn a_gate_needs_the_selective_literals_and_the_rightmost_ones() {
        let gate = LiteralGate::new(&[
            r#"^ - fastapi-auth - [A-Z]+ - (?P<ip4>\S+) - "[A-Z]+ (?:/login" 401|/register" 400)$"#,
        ]);
        let passes = |text: &str| gate.may_match(&gate.candidates(text), 0);
        assert!(passes(
            r#" - fastapi-auth - INFO - 192.0.2.1 - "POST /login" 401"#
        ));
        assert!(
            !passes(r#" - fastapi-auth - INFO - 192.0.2.1 - "POST /login" 200"#),
            "the prefix every line repeats is not enough"
        );
        assert!(!passes(
            r#" - other-app - INFO - 192.0.2.1 - "POST /login" 401"#
        ));
    }

    #[test]
    fn case_insensitive_regexes_keep_every_case() {
        let p = prefilter(&[r"(?i)(?P<host>\S+) denied"]).expect("a prefilter");
        assert!(p.may_match("192.0.2.1 DENIED"));
        assert!(p.may_match("192.0.2.1 Denied"));
    }
}
