//! A regex of fail2ban's model compiled for the engine that can run it: `regex` when it
//! can (linear time, the fast path) and otherwise `fancy-regex` (lookaround,
//! backreferences, conditionals) under a backtrack limit, so that no line can make
//! matching hang. The source is Rust's syntax: `fail2ban/` translates Python's.

/// Backtracking steps one search may take before it gives up on the line.
pub const BACKTRACK_LIMIT: usize = 200_000;

/// A compiled regex of either engine.
#[derive(Clone, Debug)]
pub enum Compiled {
    Fast(::regex::Regex),
    Backtracking(fancy_regex::Regex),
}

/// A compiled fail2ban regex, with its group names.
#[derive(Clone, Debug)]
pub struct Pattern {
    engine: Compiled,
    names: Vec<Option<String>>,
    /// What the linear-time engine can run for a first test: the regex itself, or its
    /// [`relax`]ed superset.
    gate: String,
}

/// A search that gave up: the line is treated as not matching, and counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overrun;

/// Where a search matched: the whole match and each group, by index.
#[derive(Clone, Debug, Default)]
pub struct Spans {
    pub spans: Vec<Option<(usize, usize)>>,
}

impl Pattern {
    /// Compiles `source` (Rust's syntax, tags expanded). Buffers end in a newline, as
    /// fail2ban's do, and `$` matches before it: Python's `$` does so without multi-line
    /// mode, Rust's only in it (`^` and `$` at every line of a multi-line buffer, as
    /// fail2ban compiles regexes when `maxlines` > 1).
    pub fn compile(source: &str) -> Result<Self, String> {
        let source = format!("(?m){source}");
        let mut gate = source.clone();
        let engine = match ::regex::Regex::new(&source) {
            Ok(regex) => Compiled::Fast(regex),
            Err(fast_error) => {
                match fancy_regex::RegexBuilder::new(&source)
                    .backtrack_limit(BACKTRACK_LIMIT)
                    .build()
                {
                    Ok(regex) => {
                        gate = relax(&source);
                        Compiled::Backtracking(regex)
                    }
                    Err(error) => {
                        let fast = fast_error.to_string();
                        // The fast engine's message is the clearer one unless it only
                        // refused a feature the backtracking engine has.
                        let unsupported = fast.contains("look-around")
                            || fast.contains("backreferences")
                            || fast.contains("unrecognized flag");
                        return Err(if unsupported { error.to_string() } else { fast });
                    }
                }
            }
        };
        let names = match &engine {
            Compiled::Fast(r) => r.capture_names().map(|n| n.map(str::to_owned)).collect(),
            Compiled::Backtracking(r) => r.capture_names().map(|n| n.map(str::to_owned)).collect(),
        };
        Ok(Self {
            engine,
            names,
            gate,
        })
    }

    /// The gate: a regex the linear engine runs that matches whenever this one does.
    pub fn gate(&self) -> &str {
        &self.gate
    }

    /// Whether the linear-time engine runs this regex.
    pub fn is_fast(&self) -> bool {
        matches!(self.engine, Compiled::Fast(_))
    }

    pub fn names(&self) -> &[Option<String>] {
        &self.names
    }

    /// Index of group `name`.
    pub fn group(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n.as_deref() == Some(name))
    }

    /// The leftmost match in `text`, with its groups.
    pub fn search(&self, text: &str) -> Result<Option<Spans>, Overrun> {
        match &self.engine {
            Compiled::Fast(regex) => Ok(regex.captures(text).map(|c| Spans {
                spans: (0..c.len())
                    .map(|i| c.get(i).map(|m| (m.start(), m.end())))
                    .collect(),
            })),
            Compiled::Backtracking(regex) => match regex.captures(text) {
                Ok(found) => Ok(found.map(|c| Spans {
                    spans: (0..c.len())
                        .map(|i| c.get(i).map(|m| (m.start(), m.end())))
                        .collect(),
                })),
                Err(_) => Err(Overrun),
            },
        }
    }

    /// Whether it matches anywhere in `text` (a search that gives up does not).
    pub fn is_match(&self, text: &str) -> Result<bool, Overrun> {
        match &self.engine {
            Compiled::Fast(regex) => Ok(regex.is_match(text)),
            Compiled::Backtracking(regex) => regex.is_match(text).map_err(|_| Overrun),
        }
    }
}

/// A superset of a translated regex that the linear-time engine runs: lookarounds are
/// dropped, conditionals take either branch (or nothing), back-references take any
/// text. Whatever the exact regex matches, this matches too, so a regex set of these
/// tells in one pass which regexes can match a line at all.
pub fn relax(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let at = |i: usize, s: &str| chars[i..].iter().copied().take(s.len()).eq(s.chars());
    let mut out = String::with_capacity(pattern.len());
    let mut in_class = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() {
            if !in_class && chars[i + 1].is_ascii_digit() && chars[i + 1] != '0' {
                out.push_str("(?s:.*?)");
                i += 2;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                continue;
            }
            out.push(c);
            out.push(chars[i + 1]);
            i += 2;
            continue;
        }
        if in_class {
            in_class = c != ']';
            out.push(c);
            i += 1;
            continue;
        }
        if c == '[' {
            in_class = true;
            out.push(c);
            i += 1;
            continue;
        }
        if at(i, "(?=") || at(i, "(?!") || at(i, "(?<=") || at(i, "(?<!") {
            i = group_end(&chars, i);
            continue;
        }
        if at(i, "(?(") {
            // `(?(<name>)` or `(?(1)`: up to the `)` that closes the condition.
            let close = chars[i + 3..]
                .iter()
                .position(|&c| c == ')')
                .map_or(chars.len(), |p| i + 3 + p);
            out.push_str("(?:|");
            i = close + 1;
            continue;
        }
        if at(i, "(?P=") || at(i, "\\k<") {
            let close = chars[i..]
                .iter()
                .position(|&c| c == ')' || c == '>')
                .map_or(chars.len(), |p| i + p);
            out.push_str("(?s:.*?)");
            i = close + 1;
            continue;
        }
        if at(i, "(?>") {
            out.push_str("(?:");
            i += 3;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// The index just past the group that opens at `start`.
fn group_end(chars: &[char], start: usize) -> usize {
    let mut depth = 0;
    let mut in_class = false;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            ']' if in_class => in_class = false,
            _ if in_class => {}
            '[' => in_class = true,
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    chars.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookaround_backreferences_and_conditionals_use_the_backtracking_engine() {
        let p = Pattern::compile(r"^(?P<a>x)?y(?(<a>)z|w)(?!q)(?P=a)?").expect("compiles");
        assert!(!p.is_fast());
        assert!(p.is_match("xyz").expect("runs"));
        assert!(p.is_match("yw").expect("runs"));
        assert!(!p.is_match("xyw").expect("runs"));
    }

    #[test]
    fn a_relaxed_regex_matches_whatever_the_exact_one_does() {
        let exact =
            r"^Failed (?P<inv>invalid )?for (?(<inv>)\S+|[^:]+)(?! from x)(?<=r) (?P=inv)?\1?end";
        let relaxed = relax(exact);
        let gate = ::regex::Regex::new(&relaxed).expect("the linear engine takes it");
        let p = Pattern::compile(exact).expect("compiles");
        for line in [
            "Failed invalid for bob invalid end",
            "Failed for bob end",
            "Failed for x",
        ] {
            if p.is_match(line).expect("runs") {
                assert!(gate.is_match(line), "{line}");
            }
        }
        assert!(gate.is_match("Failed for bob end"));
        assert!(!gate.is_match("Accepted for bob end"));
    }

    #[test]
    fn catastrophic_backtracking_gives_up() {
        let p = Pattern::compile(r"^(?:a|a)+(?<!b)c").expect("compiles");
        assert!(matches!(p.search(&"a".repeat(40)), Err(Overrun)));
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(Pattern::compile("(unclosed").is_err());
    }
}
