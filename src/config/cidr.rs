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
            .filter(|p| *p <= 32)
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
        assert_eq!(c("10.0.1.0/24").to_string(), "10.0.1.0/24");
    }
}
