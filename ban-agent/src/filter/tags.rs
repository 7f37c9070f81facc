//! The address tags of failregexes (`<HOST>`, `<ADDR>`, `<IP4>`, `<IP6>`, `<CIDR>`, and
//! fail2ban's others), one table for both dialects:
//! - **ours** (TOML filters): exactly one address tag, expanded into a group named
//!   `host`; `<HOST>` is an address, never a name, and `<CIDR>` an address with its
//!   prefix length;
//! - **fail2ban's** (`.conf` filters, as `failregex.py` expands them): groups `ip4`,
//!   `ip6`, `dns`, `cidr`, `<F-NAME>…</F-NAME>` groups of the filter's own, `<F-ID/>`,
//!   `<SKIPLINES>`; `<HOST>` also takes host names unless the filter sets `usedns = no`.
//!
//! Both write addresses with the same expressions, fail2ban's. They are loose (cheap to
//! scan): what they capture is then parsed by [`super::address`], so only valid
//! addresses ever leave the filter.

/// Which tag a failregex of ours uses, and so what its `host` group holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// `<HOST>` or `<ADDR>`: an IPv4 or IPv6 address. No DNS: `<HOST>` never resolves names.
    Addr,
    /// `<IP4>`: IPv4 only.
    Ip4,
    /// `<IP6>`: IPv6 only.
    Ip6,
    /// `<CIDR>`: an address with a prefix length.
    Cidr,
}

/// Whose tags a regex is written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Ours: the five address tags, one per failregex, into `host`; the regex is
    /// already ASCII ([`super::ascii`]), so digits are `[0-9]`.
    Ours,
    /// fail2ban's: every tag of its table, its groups, digits as Python's `\d`;
    /// `use_dns`: whether `<HOST>` also takes host names (never resolved here).
    Fail2ban { use_dns: bool },
}

/// What a tag stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Meaning {
    Host,
    Addr,
    Ip4,
    Ip6,
    Dns,
    Cidr,
    Subnet,
    Id,
    Port,
}

/// The one table: each tag's name, what it stands for in fail2ban's dialect, and in ours
/// (`None`: not a tag of ours; the self-closing `<F-…/>` forms, `<DNS>`, `<SUBNET>`,
/// `<F-ID/>` and `<F-PORT/>` are fail2ban's only).
const TAGS: [(&str, Meaning, Option<Tag>); 15] = [
    ("HOST", Meaning::Host, Some(Tag::Addr)),
    ("ADDR", Meaning::Addr, Some(Tag::Addr)),
    ("IP4", Meaning::Ip4, Some(Tag::Ip4)),
    ("IP6", Meaning::Ip6, Some(Tag::Ip6)),
    ("CIDR", Meaning::Cidr, Some(Tag::Cidr)),
    ("DNS", Meaning::Dns, None),
    ("SUBNET", Meaning::Subnet, None),
    ("F-ADDR/", Meaning::Addr, None),
    ("F-IP4/", Meaning::Ip4, None),
    ("F-IP6/", Meaning::Ip6, None),
    ("F-DNS/", Meaning::Dns, None),
    ("F-CIDR/", Meaning::Cidr, None),
    ("F-SUBNET/", Meaning::Subnet, None),
    ("F-ID/", Meaning::Id, None),
    ("F-PORT/", Meaning::Port, None),
];

/// fail2ban's IPv6 expression; its last alternative is `(?<=:):`, a lookbehind that
/// always holds there (every repetition before it ends in `:`), so it is written `:`
/// and `<HOST>` stays on the fast path.
const IP6: &str = r"(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|:)";
/// What dual-stack servers write before an IPv4 client (`::ffff:192.0.2.7`).
const MAPPED: &str = "::f{4,6}:";
/// A run of the characters an address is written with: what a relaxed `host` takes.
const RUN6: &str = "[0-9A-Fa-f:.]+";
const RUN4: &str = "[0-9.]+";

fn ip4(dialect: Dialect) -> String {
    let d = match dialect {
        Dialect::Ours => "[0-9]",
        Dialect::Fail2ban { .. } => r"\d",
    };
    format!(r"(?:{d}{{1,3}}\.){{3}}{d}{{1,3}}")
}

/// What our `host` group matches for a tag: the address alone, without brackets.
fn our_address(tag: Tag) -> String {
    let ip4 = ip4(Dialect::Ours);
    match tag {
        Tag::Addr => format!("(?:{MAPPED})?{ip4}|{IP6}"),
        Tag::Ip4 => ip4,
        Tag::Ip6 => format!("{MAPPED}{ip4}|{IP6}"),
        Tag::Cidr => format!("(?:{ip4}|{IP6})/[0-9]{{1,3}}"),
    }
}

/// Our `host` group for `tag`; `relaxed`: the run of address characters instead of the
/// address (`None` for `<CIDR>`, which has no relaxed form).
fn our_group(tag: Tag, relaxed: bool) -> Option<String> {
    let inner = match (tag, relaxed) {
        (Tag::Cidr, true) => return None,
        (Tag::Ip4, true) => RUN4.to_owned(),
        (_, true) => RUN6.to_owned(),
        (_, false) => our_address(tag),
    };
    Some(match tag {
        Tag::Addr | Tag::Ip6 => format!(r"\[?(?P<host>{inner})\]?"),
        Tag::Ip4 | Tag::Cidr => format!("(?P<host>{inner})"),
    })
}

/// fail2ban's expansion of `meaning` (`Regex._resolveHostTag`).
fn fail2ban_group(meaning: Meaning, use_dns: bool) -> String {
    let dialect = Dialect::Fail2ban { use_dns };
    let ip4 = format!(r"(?:{MAPPED})?(?P<ip4>{})", ip4(dialect));
    let ip6 = format!(r"(?P<ip6>{IP6})");
    let dns = r"(?P<dns>[\w\-.^_]*\w)";
    let addr = format!(r"\[?(?:{ip4}|{ip6})\]?");
    let cidr = r"(?P<cidr>\d+)";
    match meaning {
        Meaning::Host if use_dns => format!("(?:{addr}|{dns})"),
        Meaning::Host | Meaning::Addr => addr,
        Meaning::Ip4 => ip4,
        Meaning::Ip6 => ip6,
        Meaning::Dns => dns.to_owned(),
        Meaning::Cidr => cidr.to_owned(),
        Meaning::Subnet => format!(r"\[?(?:{ip4}|{ip6})(?:/{cidr})?\]?"),
        Meaning::Id => r"(?P<fid>\S+)".to_owned(),
        Meaning::Port => r"(?P<fport>\w+)".to_owned(),
    }
}

/// A regex with its tags expanded.
struct Expanded {
    regex: String,
    /// Our address tags, in order (always empty in fail2ban's dialect).
    tags: Vec<Tag>,
}

/// Expands the tags of `regex` in `dialect`; `relaxed` (ours only): each `host` group
/// takes the run of address characters. A `<…>` that is no tag of the dialect stays
/// as written.
fn walk(regex: &str, dialect: Dialect, relaxed: bool) -> Expanded {
    let mut out = String::with_capacity(regex.len() * 2);
    let mut tags = Vec::new();
    let mut open: Vec<&str> = Vec::new();
    let mut skiplines = 0;
    let mut rest = regex;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(name) = after.find('>').map(|e| &after[..e]).filter(|n| tag_name(n)) else {
            out.push('<');
            rest = after;
            continue;
        };
        let written = &rest[start..start + name.len() + 2];
        rest = &rest[start + written.len()..];
        let meaning = TAGS
            .iter()
            .find(|(tag, ..)| *tag == name)
            .map(|&(_, meaning, ours)| (meaning, ours));
        match (dialect, meaning) {
            (Dialect::Ours, Some((_, Some(tag)))) => {
                match our_group(tag, relaxed) {
                    Some(group) => out.push_str(&group),
                    None => out.push_str(written),
                }
                tags.push(tag);
            }
            (Dialect::Ours, _) => out.push_str(written),
            (Dialect::Fail2ban { use_dns }, Some((meaning, _))) => {
                out.push_str(&fail2ban_group(meaning, use_dns));
            }
            (Dialect::Fail2ban { .. }, None) if name == "SKIPLINES" => {
                out.push_str(&format!(r"\n(?P<skiplines{skiplines}>(?:(?:.*\n)*?))"));
                skiplines += 1;
            }
            (Dialect::Fail2ban { .. }, None) => {
                if let Some(custom) = name.strip_prefix("F-").filter(|n| custom_name(n)) {
                    open.push(custom);
                    out.push_str(&format!("(?P<{}>", group_name(custom)));
                } else if let Some(custom) = name.strip_prefix("/F-").filter(|n| custom_name(n))
                    && open.contains(&custom)
                {
                    out.push(')');
                } else {
                    out.push_str(written);
                }
            }
        }
    }
    out.push_str(rest);
    Expanded { regex: out, tags }
}

/// What may stand between `<` and `>` for the text to be read as a tag.
fn tag_name(name: &str) -> bool {
    let inner = name.strip_prefix('/').unwrap_or(name);
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    !inner.is_empty()
        && inner
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// `F-` names fail2ban accepts: upper case, digits, `_` and `-`.
fn custom_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// The group name of `<F-NAME>`: lower case, `id` and `port` renamed as fail2ban does.
fn group_name(tag: &str) -> String {
    match tag.to_lowercase().as_str() {
        "id" => "fid".to_owned(),
        "port" => "fport".to_owned(),
        other => other.replace('-', "_"),
    }
}

/// Replaces the single address tag of our `regex` with a `host` capture group.
/// `Err` names the problem: no tag, or more than one.
pub fn expand(regex: &str) -> Result<(String, Tag), &'static str> {
    let expanded = walk(regex, Dialect::Ours, false);
    match expanded.tags[..] {
        [tag] => Ok((expanded.regex, tag)),
        [] => Err("no address tag: a failregex needs one of <HOST>, <ADDR>, <IP4>, <IP6>, <CIDR>"),
        _ => Err("more than one address tag (<HOST>, <ADDR>, <IP4>, <IP6>, <CIDR>)"),
    }
}

/// [`expand`] with the address loosened to the run of characters an address of the tag
/// is written with (`[0-9A-Fa-f:.]+`): a regex whose parse is then decided byte by byte
/// (one-pass) gives its captures in one scan. Returned with the exact address, anchored
/// at the start: its first match in what the run took must be all of it ([`super::onepass`]
/// says why). `None` for `<CIDR>`.
pub fn relaxed(regex: &str) -> Option<(String, String)> {
    let expanded = walk(regex, Dialect::Ours, true);
    let [tag] = expanded.tags[..] else {
        return None;
    };
    if tag == Tag::Cidr {
        return None;
    }
    Some((expanded.regex, format!("^(?:{})", our_address(tag))))
}

/// Expands fail2ban's tags in `regex`, as `failregex.py` does; `use_dns`: whether
/// `<HOST>` also takes host names (fail2ban's default). Python syntax is left to the
/// reader of fail2ban's files to translate.
pub fn expand_fail2ban(regex: &str, use_dns: bool) -> String {
    walk(regex, Dialect::Fail2ban { use_dns }, false).regex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tag_is_expanded() {
        let (re, tag) = expand("^<HOST> failed$").expect("one tag");
        assert_eq!(tag, Tag::Addr);
        assert!(re.starts_with(r"^\[?(?P<host>"));
        assert!(re.ends_with(r")\]? failed$"));
    }

    #[test]
    fn no_tag_or_two_tags_are_refused() {
        assert!(expand("failed login").is_err());
        assert!(expand("<HOST> and <IP4>").is_err());
        assert!(expand("<HOST> and <HOST>").is_err());
        // fail2ban's other tags are not ours: they stay as written.
        assert!(expand("<F-USER>x</F-USER> <DNS>").is_err());
    }

    #[test]
    fn our_tags_take_the_addresses_fail2ban_takes() {
        let host = |regex: &str, line: &str| {
            let (re, _) = expand(regex).expect("one tag");
            let re = regex::Regex::new(&re).expect("compiles");
            re.captures(line).map(|c| c["host"].to_owned())
        };
        for (line, address) in [
            ("from 192.0.2.1 x", "192.0.2.1"),
            ("from [2001:db8::1] x", "2001:db8::1"),
            ("from 2001:db8:: x", "2001:db8::"),
            ("from ::1 x", "::1"),
            ("from ::ffff:192.0.2.7 x", "::ffff:192.0.2.7"),
        ] {
            assert_eq!(
                host("^from <HOST> x$", line).as_deref(),
                Some(address),
                "{line}"
            );
        }
        assert_eq!(host("^from <IP4> x$", "from 2001:db8::1 x"), None);
        assert_eq!(
            host("^from <IP6> x$", "from 2001:db8::1 x").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            host("^from <CIDR> x$", "from 2001:db8::/32 x").as_deref(),
            Some("2001:db8::/32")
        );
    }

    #[test]
    fn the_relaxed_run_is_checked_whole() {
        let (_, exact) = relaxed("^<HOST> x").expect("relaxed");
        let exact = regex::Regex::new(&exact).expect("compiles");
        let whole = |run: &str| exact.find(run).is_some_and(|m| m.end() == run.len());
        for address in [
            "192.0.2.1",
            "2001:db8::1",
            "2001:db8::",
            "::1",
            "::ffff:192.0.2.7",
        ] {
            assert!(whole(address), "{address}");
        }
        for junk in ["1.2.3", "192.0.2.1.5", "2001:db8::1.", "."] {
            assert!(!whole(junk), "{junk}");
        }
        assert!(relaxed("^<CIDR> x").is_none());
    }

    #[test]
    fn fail2ban_tags_become_its_groups() {
        let expanded = expand_fail2ban(
            "^<F-USER>\\S+</F-USER> <F-ID/> <F-ALT_USER1>y</F-ALT_USER1>",
            false,
        );
        assert_eq!(expanded, r"^(?P<user>\S+) (?P<fid>\S+) (?P<alt_user1>y)");
        assert_eq!(expand_fail2ban("</F-USER>", false), "</F-USER>");
        assert_eq!(expand_fail2ban("a <b c", false), "a <b c");
        assert!(expand_fail2ban("<HOST>", true).contains("(?P<dns>"));
        assert!(!expand_fail2ban("<HOST>", false).contains("(?P<dns>"));
    }
}
