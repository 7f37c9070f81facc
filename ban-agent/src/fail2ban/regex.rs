//! fail2ban regexes in Rust's syntax: its tags (`<HOST>`, `<ADDR>`, `<F-USER>…</F-USER>`,
//! `<SKIPLINES>`) expanded as `failregex.py` expands them, and Python `re` syntax
//! translated where Rust's differs. The result is what [`crate::filter`] compiles
//! ([`crate::filter::pattern::Pattern`]).

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

/// `regex` (fail2ban's dialect, after interpolation) in Rust's syntax, its tags expanded.
pub fn to_rust(regex: &str, use_dns: bool) -> String {
    translate(&expand_tags(regex, use_dns))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::pattern::Pattern;

    fn host(regex: &str, line: &str) -> Option<String> {
        let pattern = Pattern::compile(&to_rust(regex, true)).expect("compiles");
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
            Pattern::compile(&to_rust("<HOST>", true))
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
            Pattern::compile(&translate(python)).expect(python);
        }
    }
}
