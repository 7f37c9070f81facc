//! fail2ban regexes in Rust's syntax: Python `re` syntax translated where Rust's
//! differs, its tags expanded by the one tag table ([`crate::filter::tags`], fail2ban's
//! dialect). The result is what [`crate::filter`] compiles
//! ([`crate::filter::pattern::Pattern`]).

use crate::filter::tags::expand_fail2ban;

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
    translate(&expand_fail2ban(regex, use_dns))
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
