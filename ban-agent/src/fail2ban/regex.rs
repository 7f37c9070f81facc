//! fail2ban regexes in Rust: its tags (`<HOST>`, `<ADDR>`, `<F-USER>…</F-USER>`,
//! `<SKIPLINES>`) expanded as `failregex.py` expands them, Python `re` syntax translated
//! where Rust's differs, and each regex compiled with `regex` when it can (linear time,
//! the fast path) and otherwise with `fancy-regex` (lookaround, backreferences,
//! conditionals) under a backtrack limit, so that no line can make matching hang.

/// Backtracking steps one search may take before it gives up on the line.
pub const BACKTRACK_LIMIT: usize = 200_000;

const IP4: &str = r"(?:\d{1,3}\.){3}\d{1,3}";
/// fail2ban's IPv6 expression; its last alternative is `(?<=:):`, a lookbehind that
/// always holds there (every repetition before it ends in `:`), so it is written `:`
/// and `<HOST>` stays on the fast path.
const IP6: &str = r"(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|:)";

/// What a tag expands to; `None`: not a tag of fail2ban's (left as written).
fn host_tag(name: &str, use_dns: bool) -> Option<String> {
    let ip4 = format!(r"(?:::f{{4,6}}:)?(?P<ip4>{IP4})");
    let ip6 = format!(r"(?P<ip6>{IP6})");
    let dns = r"(?P<dns>[\w\-.^_]*\w)";
    let addr = format!(r"\[?(?:{ip4}|{ip6})\]?");
    let cidr = r"(?P<cidr>\d+)";
    Some(match name {
        "HOST" if use_dns => format!("(?:{addr}|{dns})"),
        "HOST" | "ADDR" | "F-ADDR/" => addr,
        "IP4" | "F-IP4/" => ip4,
        "IP6" | "F-IP6/" => ip6,
        "DNS" | "F-DNS/" => dns.to_owned(),
        "CIDR" | "F-CIDR/" => cidr.to_owned(),
        "SUBNET" | "F-SUBNET/" => format!(r"\[?(?:{ip4}|{ip6})(?:/{cidr})?\]?"),
        "F-ID/" => r"(?P<fid>\S+)".to_owned(),
        "F-PORT/" => r"(?P<fport>\w+)".to_owned(),
        _ => return None,
    })
}

/// The group name of `<F-NAME>`: lower case, `id` and `port` renamed as fail2ban does.
fn group_name(tag: &str) -> String {
    match tag.to_lowercase().as_str() {
        "id" => "fid".to_owned(),
        "port" => "fport".to_owned(),
        other => other.replace('-', "_"),
    }
}

/// Expands fail2ban's tags in `regex` (`Regex._resolveHostTag`). `use_dns`: whether
/// `<HOST>` also takes host names (fail2ban's default); the agent never resolves them.
pub fn expand_tags(regex: &str, use_dns: bool) -> String {
    let mut out = String::with_capacity(regex.len() * 2);
    let mut open: Vec<String> = Vec::new();
    let mut skiplines = 0;
    let mut rest = regex;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('>');
        let name = end.map(|e| &after[..e]).filter(|n| {
            let inner = n.strip_prefix('/').unwrap_or(n);
            let inner = inner.strip_suffix('/').unwrap_or(inner);
            !inner.is_empty()
                && inner
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        });
        let Some(name) = name else {
            out.push('<');
            rest = after;
            continue;
        };
        let tag_len = name.len() + 2;
        if name == "SKIPLINES" {
            out.push_str(&format!(r"\n(?P<skiplines{skiplines}>(?:(?:.*\n)*?))"));
            skiplines += 1;
        } else if let Some(expansion) = host_tag(name, use_dns) {
            out.push_str(&expansion);
        } else if let Some(custom) = name.strip_prefix("F-").filter(|n| custom_name(n)) {
            open.push(custom.to_owned());
            out.push_str(&format!("(?P<{}>", group_name(custom)));
        } else if let Some(custom) = name.strip_prefix("/F-").filter(|n| custom_name(n)) {
            if open.iter().any(|o| o == custom) {
                out.push(')');
            } else {
                out.push_str(&rest[start..start + tag_len]);
            }
        } else {
            out.push_str(&rest[start..start + tag_len]);
        }
        rest = &rest[start + tag_len..];
    }
    out.push_str(rest);
    out
}

/// `F-` names fail2ban accepts: upper case, digits, `_` and `-`.
fn custom_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Rewrites Python `re` syntax where Rust's regex syntax reads it otherwise: `\<` and
/// `\>` (literal in Python, word boundaries in Rust), `\Z`, `{,n}`, braces that are not
/// a repetition (literal in Python), `[`, `&`, `~` inside a class (literal in Python,
/// nested classes and set operations in Rust).
pub fn translate(python: &str) -> String {
    let chars: Vec<char> = python.chars().collect();
    let mut out = String::with_capacity(python.len() + 8);
    let mut in_class = false;
    let mut class_start = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if i + 1 < chars.len() => {
                let next = chars[i + 1];
                match next {
                    '<' | '>' => out.push(next),
                    'Z' if !in_class => out.push_str(r"\z"),
                    _ => {
                        out.push('\\');
                        out.push(next);
                    }
                }
                i += 2;
                continue;
            }
            // Python's `(?(name)yes|no)` is `(?(<name>)yes|no)` to fancy-regex, which reads
            // a bare name as a pattern to look ahead for.
            '(' if !in_class && chars[i..].starts_with(&['(', '?', '(']) => {
                let name: String = chars[i + 3..]
                    .iter()
                    .take_while(|c| c.is_alphanumeric() || **c == '_')
                    .collect();
                let closes = chars.get(i + 3 + name.chars().count()) == Some(&')');
                if closes && name.starts_with(|c: char| c.is_alphabetic() || c == '_') {
                    out.push_str(&format!("(?(<{name}>)"));
                    i += 4 + name.chars().count();
                    continue;
                }
                out.push('(');
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                i += 1;
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                class_start = i;
                continue;
            }
            '[' | '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            ']' if in_class && i == class_start => out.push_str(r"\]"),
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '{' if !in_class => match repetition(&chars[i..]) {
                Some((text, len)) => {
                    out.push_str(&text);
                    i += len;
                    continue;
                }
                None => out.push_str(r"\{"),
            },
            '}' if !in_class => out.push_str(r"\}"),
            _ => out.push(c),
        }
        i += 1;
    }
    out
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

/// A Python repetition at the start of `chars` (`{m}`, `{m,}`, `{m,n}`, `{,n}`): its
/// Rust text and length.
fn repetition(chars: &[char]) -> Option<(String, usize)> {
    let end = chars.iter().position(|&c| c == '}')?;
    let inner: String = chars[1..end].iter().collect();
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let text = match inner.split_once(',') {
        None if !inner.is_empty() && digits(&inner) => format!("{{{inner}}}"),
        Some((min, max)) if digits(min) && digits(max) && !(min.is_empty() && max.is_empty()) => {
            let min = if min.is_empty() { "0" } else { min };
            format!("{{{min},{max}}}")
        }
        _ => return None,
    };
    Some((text, end + 1))
}

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
    /// Compiles `python` (tags already expanded). Buffers end in a newline, as
    /// fail2ban's do, and `$` matches before it: Python's `$` does so without multi-line
    /// mode, Rust's only in it (`^` and `$` at every line of a multi-line buffer, as
    /// fail2ban compiles regexes when `maxlines` > 1).
    pub fn compile(python: &str) -> Result<Self, String> {
        let source = format!("(?m){}", translate(python));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn host(regex: &str, line: &str) -> Option<String> {
        let pattern = Pattern::compile(&expand_tags(regex, true)).expect("compiles");
        let found = pattern.search(line).expect("no overrun")?;
        ["ip4", "ip6", "dns"].iter().find_map(|name| {
            let (s, e) = found.spans[pattern.group(name)?]?;
            Some(line[s..e].to_owned())
        })
    }

    #[test]
    fn host_takes_addresses_and_names() {
        assert_eq!(
            host("^fail from <HOST>$", "fail from 192.0.2.1").as_deref(),
            Some("192.0.2.1")
        );
        assert_eq!(
            host("^fail from <HOST>$", "fail from [2001:db8::1]").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            host("^fail from <HOST>$", "fail from 2001:db8::").as_deref(),
            Some("2001:db8::")
        );
        assert_eq!(
            host("^fail from <HOST>$", "fail from ::ffff:192.0.2.7").as_deref(),
            Some("192.0.2.7")
        );
        assert_eq!(
            host("^fail from <HOST>$", "fail from example.org").as_deref(),
            Some("example.org")
        );
        assert!(
            Pattern::compile(&expand_tags("<HOST>", true))
                .expect("compiles")
                .is_fast()
        );
    }

    #[test]
    fn custom_tags_become_groups() {
        let expanded = expand_tags(
            "^<F-USER>\\S+</F-USER> <F-ID/> <F-ALT_USER1>y</F-ALT_USER1>",
            false,
        );
        assert_eq!(expanded, r"^(?P<user>\S+) (?P<fid>\S+) (?P<alt_user1>y)");
        assert_eq!(expand_tags("</F-USER>", false), "</F-USER>");
        assert_eq!(expand_tags("a <b c", false), "a <b c");
    }

    #[test]
    fn python_syntax_is_translated() {
        assert_eq!(translate(r"\<a\>"), "<a>");
        assert_eq!(translate(r"x{,3}"), "x{0,3}");
        assert_eq!(translate(r"{x}"), r"\{x\}");
        assert_eq!(translate(r"[[a&&b]"), r"[\[a\&\&b]");
        assert_eq!(translate(r"[]a]"), r"[\]a]");
        assert_eq!(translate(r"a\Z"), r"a\z");
        for python in [r"\<a\>", r"x{,3}", r"{x}", r"[[a&&b~]", r"[]a]", r"[^]a]b"] {
            Pattern::compile(python).expect(python);
        }
    }

    #[test]
    fn lookaround_backreferences_and_conditionals_use_the_backtracking_engine() {
        let p = Pattern::compile(r"^(?P<a>x)?y(?(a)z|w)(?!q)(?P=a)?").expect("compiles");
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
        let p = Pattern::compile(&exact.replace("(?(<inv>)", "(?(inv)")).expect("compiles");
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
