//! The one address parser of both dialects: what a failregex's address group captured
//! (a TOML filter's `host`, a fail2ban filter's `ip4`/`ip6` with its `cidr`, a JSON rule's
//! field), as the address or network to count and ban. The regexes capture loosely
//! (cheap to scan); only what the standard library parses as an address leaves here.

use std::net::IpAddr;

use ipnet::IpNet;

use super::Tag;

/// The target `text` names, as the tag that captured it allows: `<IP4>` only an IPv4
/// address, `<IP6>` only IPv6, `<CIDR>` a network (`ADDR/LEN`), the others either
/// address. `prefix` (fail2ban's `<F-CIDR>` group) widens an address to its network.
/// `None` for anything else.
pub fn target(text: &str, tag: Tag, prefix: Option<u8>) -> Option<IpNet> {
    if tag == Tag::Cidr {
        return text.parse::<IpNet>().ok().map(|net| net.trunc());
    }
    let addr: IpAddr = text.parse().ok()?;
    let fits = match tag {
        Tag::Ip4 => addr.is_ipv4(),
        Tag::Ip6 => addr.is_ipv6(),
        Tag::Addr | Tag::Cidr => true,
    };
    if !fits {
        return None;
    }
    let addr = canonical(addr);
    match prefix {
        Some(len) => IpNet::new(addr, len).ok().map(|net| net.trunc()),
        None => Some(IpNet::from(addr)),
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.7`, as dual-stack servers log IPv4
/// clients) is the IPv4 address: that is what the packets carry.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Option<IpNet> {
        Some(text.parse().expect("a network"))
    }

    #[test]
    fn each_tag_takes_its_kind_of_address_and_both_dialects_read_alike() {
        assert_eq!(target("192.0.2.7", Tag::Addr, None), net("192.0.2.7/32"));
        assert_eq!(
            target("2001:db8::7", Tag::Addr, None),
            net("2001:db8::7/128")
        );
        assert_eq!(
            target("::ffff:192.0.2.7", Tag::Addr, None),
            net("192.0.2.7/32")
        );
        assert_eq!(target("192.0.2.7", Tag::Ip6, None), None);
        assert_eq!(target("2001:db8::7", Tag::Ip4, None), None);
        assert_eq!(target("192.0.2.7/24", Tag::Cidr, None), net("192.0.2.0/24"));
        assert_eq!(
            target("192.0.2.7", Tag::Addr, Some(24)),
            net("192.0.2.0/24")
        );
        assert_eq!(
            target("2001:db8::7", Tag::Addr, Some(64)),
            net("2001:db8::/64")
        );
        assert_eq!(target("192.0.2.7", Tag::Addr, Some(33)), None);
        for junk in ["999.0.2.7", "example.com", "", "192.0.2.7 ", "1:2"] {
            assert_eq!(target(junk, Tag::Addr, None), None, "{junk:?}");
        }
    }
}
