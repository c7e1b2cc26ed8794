//! IPv4 CIDR blocks: parsing, containment, overlap.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network in CIDR notation whose host bits are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: u32,
    prefix: u8,
}

impl Cidr {
    fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    fn last(self) -> u32 {
        self.addr | !self.mask()
    }

    /// True when `other` lies entirely inside `self`.
    pub fn contains(self, other: Cidr) -> bool {
        other.prefix >= self.prefix && (other.addr & self.mask()) == self.addr
    }

    /// True when the two blocks share any address.
    pub fn overlaps(self, other: Cidr) -> bool {
        self.addr <= other.last() && other.addr <= self.last()
    }

    /// Prefix length.
    pub fn prefix(self) -> u8 {
        self.prefix
    }
}

/// The private ranges (RFC 1918): addresses no one on the internet can come from.
pub const PRIVATE: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

/// How many distinct addresses `blocks` cover together (overlaps counted once).
pub fn union_size(blocks: &[Cidr]) -> u64 {
    let mut ranges: Vec<(u64, u64)> = blocks
        .iter()
        .map(|b| (u64::from(b.addr), u64::from(b.last())))
        .collect();
    ranges.sort_unstable();
    let mut total = 0;
    let mut current: Option<(u64, u64)> = None;
    for (start, end) in ranges {
        current = match current {
            Some((s, e)) if start <= e + 1 => Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s + 1;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    total + current.map_or(0, |(s, e)| e - s + 1)
}

/// How many addresses of `blocks` lie outside the private ranges (reachable from the
/// internet).
pub fn public_size(blocks: &[Cidr]) -> u64 {
    let private: Vec<Cidr> = PRIVATE.iter().map(|p| p.parse().expect("valid")).collect();
    let mut inside: Vec<Cidr> = Vec::new();
    for b in blocks {
        for p in &private {
            if p.contains(*b) {
                inside.push(*b);
            } else if b.contains(*p) {
                inside.push(*p);
            }
        }
    }
    union_size(blocks) - union_size(&inside)
}

/// More public addresses than this (a /8) is "the world" for SSH and the API.
pub const WORLD: u64 = 1 << 24;

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not a CIDR block (expected a.b.c.d/n)"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("`{ip}` is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32 && (prefix == "0" || !prefix.starts_with('0')))
            .ok_or_else(|| format!("`/{prefix}` is not a prefix length between 0 and 32"))?;
        let cidr = Cidr {
            addr: u32::from(ip),
            prefix,
        };
        if cidr.addr & !cidr.mask() != 0 {
            let net = Ipv4Addr::from(cidr.addr & cidr.mask());
            return Err(format!(
                "`{s}` has host bits set (the network is {net}/{prefix})"
            ));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.addr), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn containment_and_overlap() {
        assert!(c("10.0.0.0/16").contains(c("10.0.3.0/24")));
        assert!(!c("10.0.0.0/16").contains(c("10.1.0.0/24")));
        assert!(c("10.96.0.0/12").overlaps(c("10.100.0.0/16")));
        assert!(!c("10.96.0.0/12").overlaps(c("10.0.0.0/16")));
        assert!(c("0.0.0.0/0").contains(c("1.2.3.4/32")));
    }

    #[test]
    fn rejects_bad_blocks() {
        assert!(
            "10.0.0.1/16"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("host bits")
        );
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0.0".parse::<Cidr>().is_err());
        assert!("300.0.0.0/8".parse::<Cidr>().is_err());
        assert!(
            "0.0.0.0/00".parse::<Cidr>().is_err(),
            "one spelling per prefix"
        );
    }

    #[test]
    fn address_space_is_measured_not_spelled() {
        let halves = [c("0.0.0.0/1"), c("128.0.0.0/1")];
        assert_eq!(union_size(&halves), 1 << 32);
        assert_eq!(
            public_size(&halves),
            (1 << 32) - (1 << 24) - (1 << 20) - (1 << 16)
        );
        assert_eq!(public_size(&[c("10.0.0.0/16"), c("192.168.1.0/24")]), 0);
        assert_eq!(public_size(&[c("203.0.113.7/32"), c("203.0.113.7/32")]), 1);
        assert_eq!(union_size(&[c("10.0.0.0/8"), c("10.1.0.0/16")]), 1 << 24);
        assert_eq!(c("10.0.1.0/24").to_string(), "10.0.1.0/24");
    }
}
