//! fail2ban's address tags, expanded into capture groups named `host`.
//!
//! The patterns are deliberately loose (cheap to scan); what they capture is then parsed
//! with the standard library, so only valid addresses ever leave the filter.

/// Which tag a failregex uses, and so what its `host` group holds.
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

const IP4: &str = r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}";
/// Hex groups and colons, optionally ending in an embedded IPv4; at least two colons.
const IP6: &str = r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3})?";

const TAGS: [(&str, Tag); 5] = [
    ("<HOST>", Tag::Addr),
    ("<ADDR>", Tag::Addr),
    ("<IP4>", Tag::Ip4),
    ("<IP6>", Tag::Ip6),
    ("<CIDR>", Tag::Cidr),
];

/// Replaces the single address tag of `regex` with a `host` capture group.
/// `Err` names the problem: no tag, or more than one.
pub fn expand(regex: &str) -> Result<(String, Tag), &'static str> {
    expand_with(regex, |tag| match tag {
        Tag::Addr => format!(r"\[?(?P<host>{IP4}|{IP6})\]?"),
        Tag::Ip4 => format!("(?P<host>{IP4})"),
        Tag::Ip6 => format!(r"\[?(?P<host>{IP6})\]?"),
        Tag::Cidr => format!(r"(?P<host>(?:{IP4}|{IP6})/[0-9]{{1,3}})"),
    })
}

/// [`expand`] with the address loosened to the run of characters an address of the tag
/// is written with (`[0-9A-Fa-f:.]+`): a regex whose parse is then decided byte by byte
/// (one-pass) gives its captures in one scan. Returned with the exact address, anchored
/// at the start: its first match in what the run took must be all of it. `None` for
/// `<CIDR>`.
pub fn relaxed(regex: &str) -> Option<(String, String)> {
    let (relaxed, tag) = expand_with(regex, |tag| match tag {
        Tag::Addr | Tag::Ip6 => r"\[?(?P<host>[0-9A-Fa-f:.]+)\]?".to_owned(),
        Tag::Ip4 | Tag::Cidr => "(?P<host>[0-9.]+)".to_owned(),
    })
    .ok()?;
    let host = match tag {
        Tag::Addr => format!("^(?:{IP4}|{IP6})"),
        Tag::Ip4 => format!("^(?:{IP4})"),
        Tag::Ip6 => format!("^(?:{IP6})"),
        Tag::Cidr => return None,
    };
    Some((relaxed, host))
}

/// `regex` with its single address tag replaced by what `group` makes of the tag.
fn expand_with(regex: &str, group: impl Fn(Tag) -> String) -> Result<(String, Tag), &'static str> {
    let mut found: Option<(usize, &str, Tag)> = None;
    for (name, tag) in TAGS {
        let mut from = 0;
        while let Some(at) = regex[from..].find(name) {
            if found.is_some() {
                return Err("more than one address tag (<HOST>, <ADDR>, <IP4>, <IP6>, <CIDR>)");
            }
            found = Some((from + at, name, tag));
            from += at + name.len();
        }
    }
    let Some((at, name, tag)) = found else {
        return Err(
            "no address tag: a failregex needs one of <HOST>, <ADDR>, <IP4>, <IP6>, <CIDR>",
        );
    };
    let pattern = group(tag);
    Ok((
        format!("{}{pattern}{}", &regex[..at], &regex[at + name.len()..]),
        tag,
    ))
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
    }
}
