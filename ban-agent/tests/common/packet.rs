//! Builds Ethernet frames for the verdict tests: VLAN tags, IPv4 with options and
//! fragments, IPv6 with extension headers, TCP, UDP and ICMP. Checksums are left zero:
//! XDP runs before anyone checks them.

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

#[derive(Clone, Debug)]
pub enum Ip {
    V4 {
        src: [u8; 4],
        /// Bytes of IPv4 options (a multiple of 4, at most 40).
        options: usize,
        /// Fragment offset in 8-byte units.
        fragment_offset: u16,
    },
    V6 {
        src: [u8; 16],
        ext: Vec<Ext>,
    },
}

#[derive(Clone, Copy, Debug)]
pub enum Ext {
    /// Hop-by-hop options of `(units + 1) * 8` bytes.
    HopByHop(u8),
    Routing(u8),
    DestOpts(u8),
    /// Fragment header with this offset in 8-byte units.
    Fragment(u16),
    /// Authentication header of `(units + 2) * 4` bytes.
    Ah(u8),
}

#[derive(Clone, Copy, Debug)]
pub enum L4 {
    Tcp(u16),
    Udp(u16),
    /// ICMP or ICMPv6 echo: no ports.
    Icmp,
}

#[derive(Clone, Debug)]
pub struct Frame {
    /// TPIDs of VLAN tags, outermost first (0x8100, 0x88a8).
    pub vlans: Vec<u16>,
    pub ip: Ip,
    pub l4: L4,
}

impl Frame {
    pub fn v4(src: [u8; 4], l4: L4) -> Self {
        Self {
            vlans: vec![],
            ip: Ip::V4 {
                src,
                options: 0,
                fragment_offset: 0,
            },
            l4,
        }
    }

    pub fn v6(src: [u8; 16], l4: L4) -> Self {
        Self {
            vlans: vec![],
            ip: Ip::V6 { src, ext: vec![] },
            l4,
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        for tpid in &self.vlans {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&[0x00, 0x07]); // TCI: VLAN 7
        }
        let l4 = self.l4_bytes();
        match &self.ip {
            Ip::V4 {
                src,
                options,
                fragment_offset,
            } => {
                out.extend_from_slice(&0x0800u16.to_be_bytes());
                let header_len = 20 + options;
                let total = (header_len + l4.len()) as u16;
                out.push(0x40 | (header_len / 4) as u8);
                out.push(0);
                out.extend_from_slice(&total.to_be_bytes());
                out.extend_from_slice(&[0, 1]); // id
                out.extend_from_slice(&fragment_offset.to_be_bytes());
                out.push(64);
                out.push(self.proto());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(src);
                out.extend_from_slice(&[192, 0, 2, 1]);
                // NOP options, then the end-of-list option.
                out.extend(std::iter::repeat_n(1u8, *options));
                if *options > 0 {
                    let last = out.len() - 1;
                    out[last] = 0;
                }
            }
            Ip::V6 { src, ext } => {
                out.extend_from_slice(&0x86DDu16.to_be_bytes());
                let mut headers = Vec::new();
                let mut kinds: Vec<u8> = ext.iter().map(ext_kind).collect();
                kinds.push(self.proto());
                for (i, e) in ext.iter().enumerate() {
                    headers.extend(ext_bytes(*e, kinds[i + 1]));
                }
                let payload = (headers.len() + l4.len()) as u16;
                out.extend_from_slice(&[0x60, 0, 0, 0]);
                out.extend_from_slice(&payload.to_be_bytes());
                out.push(kinds[0]);
                out.push(64);
                out.extend_from_slice(src);
                out.extend_from_slice(&[
                    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
                ]);
                out.extend(headers);
            }
        }
        out.extend(l4);
        out
    }

    fn proto(&self) -> u8 {
        match (self.l4, &self.ip) {
            (L4::Tcp(_), _) => TCP,
            (L4::Udp(_), _) => UDP,
            (L4::Icmp, Ip::V4 { .. }) => ICMP,
            (L4::Icmp, Ip::V6 { .. }) => ICMPV6,
        }
    }

    fn l4_bytes(&self) -> Vec<u8> {
        match self.l4 {
            L4::Tcp(port) => {
                let mut tcp = vec![0u8; 20];
                tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
                tcp[2..4].copy_from_slice(&port.to_be_bytes());
                tcp[12] = 5 << 4;
                tcp[13] = 0x02; // SYN
                tcp
            }
            L4::Udp(port) => {
                let mut udp = vec![0u8; 8];
                udp[0..2].copy_from_slice(&40000u16.to_be_bytes());
                udp[2..4].copy_from_slice(&port.to_be_bytes());
                udp[4..6].copy_from_slice(&8u16.to_be_bytes());
                udp
            }
            L4::Icmp => vec![8, 0, 0, 0, 0, 1, 0, 1],
        }
    }
}

fn ext_kind(ext: &Ext) -> u8 {
    match ext {
        Ext::HopByHop(_) => 0,
        Ext::Routing(_) => 43,
        Ext::Fragment(_) => 44,
        Ext::Ah(_) => 51,
        Ext::DestOpts(_) => 60,
    }
}

fn ext_bytes(ext: Ext, next: u8) -> Vec<u8> {
    match ext {
        Ext::HopByHop(units) | Ext::Routing(units) | Ext::DestOpts(units) => {
            let mut h = vec![0u8; (usize::from(units) + 1) * 8];
            h[0] = next;
            h[1] = units;
            h
        }
        Ext::Ah(units) => {
            let mut h = vec![0u8; (usize::from(units) + 2) * 4];
            h[0] = next;
            h[1] = units;
            h
        }
        Ext::Fragment(offset) => {
            let mut h = vec![0u8; 8];
            h[0] = next;
            h[2..4].copy_from_slice(&(offset << 3).to_be_bytes());
            h
        }
    }
}
