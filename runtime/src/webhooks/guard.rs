//! The SSRF guard. A `callback_url` is chosen by the customer, so by default
//! Pigeon refuses to call addresses that are not on the public internet:
//! every range of the IANA IPv4 and IPv6 Special-Purpose Address Registries
//! that is not globally reachable (unspecified, "this network", loopback,
//! private, shared/carrier-grade NAT, link-local, IETF protocol assignments,
//! benchmarking, documentation, the deprecated 6to4 relay anycast, reserved,
//! discard-only, local-use NAT64, SRv6 SIDs, unique-local), plus broadcast,
//! multicast and the deprecated IPv6 site-local range. IPv6 addresses that
//! carry an IPv4 address (mapped, translated, IPv4-compatible, NAT64, 6to4,
//! Teredo) are judged by the IPv4 addresses they carry.
//!
//! The check runs in the DNS resolver the HTTP connector uses, so the
//! addresses checked are the ones connected to (no second look-up that a
//! rebinding DNS server could answer differently); URLs with an IP address
//! as host skip the resolver and are checked by [`check_host`].
//!
//! [`validate_callback_url`] checks a URL's syntax when it is submitted,
//! refusing among others IPv4 literals in notations that resolvers read
//! differently from what they look like (`0177.0.0.1`, `2130706433`).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

/// Why a destination may not be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused to call {host}: {reason}; set webhooks.allow_private_networks = true to allow it")]
pub struct Refused {
    pub host: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot resolve {host}: {source}")]
    Lookup {
        host: String,
        source: std::io::Error,
    },
    #[error("{host} has no addresses")]
    NoAddresses { host: String },
    #[error(transparent)]
    Refused(#[from] Refused),
}

/// Why a `callback_url` is not accepted (`422 invalid_url`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct InvalidUrl {
    pub reason: String,
}

/// What a range of a table below is.
#[derive(Debug, Clone, Copy)]
enum Verdict {
    /// Not globally reachable: refused, with the kind shown in the error.
    Refuse(&'static str),
    /// Globally reachable, though inside a refused range.
    Global,
}

use Verdict::{Global, Refuse};

/// The IPv4 ranges, from the IANA IPv4 Special-Purpose Address Registry
/// (those with "Globally Reachable" False or N/A), plus multicast and
/// broadcast. The most specific range containing an address decides.
#[rustfmt::skip]
const V4_RANGES: &[(Ipv4Addr, u8, Verdict)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, Refuse("unspecified")), // "this network"
    (Ipv4Addr::new(10, 0, 0, 0), 8, Refuse("private")),
    (Ipv4Addr::new(100, 64, 0, 0), 10, Refuse("private")), // shared (carrier-grade NAT)
    (Ipv4Addr::new(127, 0, 0, 0), 8, Refuse("loopback")),
    (Ipv4Addr::new(169, 254, 0, 0), 16, Refuse("link-local")),
    (Ipv4Addr::new(172, 16, 0, 0), 12, Refuse("private")),
    (Ipv4Addr::new(192, 0, 0, 0), 24, Refuse("IETF protocol assignments")),
    (Ipv4Addr::new(192, 0, 0, 9), 32, Global), // Port Control Protocol anycast
    (Ipv4Addr::new(192, 0, 0, 10), 32, Global), // TURN anycast
    (Ipv4Addr::new(192, 0, 2, 0), 24, Refuse("documentation")),
    (Ipv4Addr::new(192, 88, 99, 0), 24, Refuse("6to4 relay anycast")), // deprecated
    (Ipv4Addr::new(192, 168, 0, 0), 16, Refuse("private")),
    (Ipv4Addr::new(198, 18, 0, 0), 15, Refuse("benchmarking")),
    (Ipv4Addr::new(198, 51, 100, 0), 24, Refuse("documentation")),
    (Ipv4Addr::new(203, 0, 113, 0), 24, Refuse("documentation")),
    (Ipv4Addr::new(224, 0, 0, 0), 4, Refuse("broadcast or multicast")),
    (Ipv4Addr::new(240, 0, 0, 0), 4, Refuse("reserved")),
    (Ipv4Addr::new(255, 255, 255, 255), 32, Refuse("broadcast or multicast")),
];

/// The IPv6 ranges, from the IANA IPv6 Special-Purpose Address Registry
/// (those with "Globally Reachable" False or N/A), plus the deprecated
/// site-local range and multicast. The most specific range containing an
/// address decides. The ranges that carry an IPv4 address (::ffff:0:0/96,
/// 64:ff9b::/96, 2001::/32, 2002::/16) are in [`V6_CARRYING_V4`] instead.
#[rustfmt::skip]
const V6_RANGES: &[(Ipv6Addr, u8, Verdict)] = &[
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 128, Refuse("unspecified")),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1), 128, Refuse("loopback")),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, Refuse("local-use NAT64")),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, Refuse("discard-only")),
    (Ipv6Addr::new(0x100, 0, 0, 1, 0, 0, 0, 0), 64, Refuse("dummy")), // RFC 9780
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23, Refuse("IETF protocol assignments")),
    (Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 1), 128, Global), // Port Control Protocol anycast
    (Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 2), 128, Global), // TURN anycast
    (Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 3), 128, Global), // DNS-SD SRP anycast
    (Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0), 48, Refuse("benchmarking")),
    (Ipv6Addr::new(0x2001, 3, 0, 0, 0, 0, 0, 0), 32, Global), // AMT
    (Ipv6Addr::new(0x2001, 4, 0x112, 0, 0, 0, 0, 0), 48, Global), // AS112-v6
    (Ipv6Addr::new(0x2001, 0x20, 0, 0, 0, 0, 0, 0), 28, Global), // ORCHIDv2
    (Ipv6Addr::new(0x2001, 0x30, 0, 0, 0, 0, 0, 0), 28, Global), // drone remote ID tags
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, Refuse("documentation")),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, Refuse("documentation")),
    (Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16, Refuse("SRv6 SID")),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, Refuse("unique-local")),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, Refuse("link-local")),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, Refuse("site-local")), // deprecated
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, Refuse("broadcast or multicast")),
];

/// Where an IPv4 address sits in an IPv6 address: shift right by the
/// first number, truncate to 32 bits, XOR with the second.
type Carried = (u32, u32);
const LAST_32_BITS: Carried = (0, 0);

/// IPv6 ranges whose addresses carry IPv4 addresses; such an address is as
/// public as the IPv4 addresses it carries, since that is where its packets
/// end up (a gateway, a relay or the host's own IPv4 stack).
#[rustfmt::skip]
const V6_CARRYING_V4: &[(Ipv6Addr, u8, &[Carried])] = &[
    // IPv4-mapped, ::ffff:a.b.c.d.
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96, &[LAST_32_BITS]),
    // IPv4-translated (RFC 2765), ::ffff:0:a.b.c.d.
    (Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0), 96, &[LAST_32_BITS]),
    // IPv4-compatible (deprecated), ::a.b.c.d; :: and ::1 are excluded.
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96, &[LAST_32_BITS]),
    // NAT64 well-known prefix, 64:ff9b::a.b.c.d.
    (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96, &[LAST_32_BITS]),
    // 6to4, 2002:aabb:ccdd::/48: the IPv4 address is bits 16..47.
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16, &[(80, 0)]),
    // Teredo: the server in bits 32..63, the client inverted in the last 32.
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32, &[(64, 0), (0, u32::MAX)]),
];

/// The kind of non-public address `ip` is, or `None` for a public one.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let ranges = V4_RANGES
        .iter()
        .map(|&(net, len, verdict)| (u128::from(net.to_bits()), len, verdict));
    most_specific(ranges, u128::from(ip.to_bits()), 32)
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = ip.to_bits();
    // :: and ::1 lie in ::/96 but are themselves, not IPv4-compatible.
    if bits > 1
        && let Some((_, _, carried)) = V6_CARRYING_V4
            .iter()
            .find(|&&(net, len, _)| within(bits, net.to_bits(), 128 - u32::from(len)))
    {
        return carried.iter().find_map(|&(shift, mask)| {
            // Truncation intended: the IPv4 address is the low 32 bits.
            non_public_v4(Ipv4Addr::from_bits((bits >> shift) as u32 ^ mask))
        });
    }
    let ranges = V6_RANGES
        .iter()
        .map(|&(net, len, verdict)| (net.to_bits(), len, verdict));
    most_specific(ranges, bits, 128)
}

/// The verdict of the longest prefix (of an address `width` bits wide)
/// that contains `bits`; `None` if none does or it is globally reachable.
fn most_specific(
    ranges: impl Iterator<Item = (u128, u8, Verdict)>,
    bits: u128,
    width: u32,
) -> Option<&'static str> {
    let (_, _, verdict) = ranges
        .filter(|&(net, len, _)| within(bits, net, width - u32::from(len)))
        .max_by_key(|&(_, len, _)| len)?;
    match verdict {
        Refuse(kind) => Some(kind),
        Global => None,
    }
}

/// Whether `bits` and `net` agree but for the low `host_bits` bits.
fn within(bits: u128, net: u128, host_bits: u32) -> bool {
    // A shift by 128 (prefix length 0 of IPv6) matches everything.
    bits.checked_shr(host_bits) == net.checked_shr(host_bits)
}

/// Checks a URL host that is an IP address literal (which the connector
/// does not resolve); host names are checked when they are resolved.
pub fn check_host(host: &str) -> Result<(), Refused> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<IpAddr>() {
        Ok(ip) => match non_public(ip) {
            Some(kind) => Err(Refused {
                host: host.to_owned(),
                reason: format!("{ip} is not a public address ({kind})"),
            }),
            None => Ok(()),
        },
        Err(_) => Ok(()),
    }
}

/// Checks the syntax of a `callback_url` when it is submitted: an http:// or
/// https:// URL with a host that is a DNS name, a bracketed IPv6 literal or
/// a dotted-quad IPv4 address, no user info and a port, if any, in
/// 1..=65535. Whether the host is public is [`check_host`]'s business.
pub fn validate_callback_url(url: &str) -> Result<(), InvalidUrl> {
    let invalid = |reason: String| Err(InvalidUrl { reason });
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    if !scheme.is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https")) {
        return invalid("`callback_url` must be an http:// or https:// URL".into());
    }
    let uri = match url.parse::<hyper::Uri>() {
        Ok(uri) => uri,
        Err(err) => return invalid(format!("`callback_url` is not a valid URL: {err}")),
    };
    let (Some(authority), Some(host)) = (uri.authority(), uri.host()) else {
        return invalid("`callback_url` has no host".into());
    };
    if host.is_empty() {
        return invalid("`callback_url` has no host".into());
    }
    // Credentials in a URL end up in logs, and a@b hosts mislead readers.
    if authority.as_str().contains('@') {
        return invalid("`callback_url` must not contain user info (user:password@)".into());
    }
    // The parser forgets ports that do not fit in a u16 rather than
    // refusing them, so the port is read from the authority itself.
    let port = authority.as_str().strip_prefix(host).unwrap_or_default();
    if let Some(port) = port.strip_prefix(':') {
        let in_range = port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
        if !in_range {
            return invalid(format!(
                "`callback_url` has port {port:?}; a port must be a number from 1 to 65535"
            ));
        }
    } else if !port.is_empty() {
        return invalid(format!("`callback_url` host {host:?} is not valid"));
    }
    check_host_syntax(host).or_else(|reason| invalid(format!("`callback_url` host {reason}")))
}

/// Checks that `host` is a DNS name, a bracketed IPv6 literal or a
/// dotted-quad IPv4 address; the error completes "host …".
fn check_host_syntax(host: &str) -> Result<(), String> {
    if let Some(literal) = host.strip_prefix('[') {
        // No zone IDs or IPvFuture: nothing a webhook needs.
        return match literal.strip_suffix(']').map(str::parse::<Ipv6Addr>) {
            Some(Ok(_)) => Ok(()),
            _ => Err(format!("{host} is not a valid IPv6 address")),
        };
    }
    // Rust's parser takes exactly four decimal numbers without leading zeros.
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let last = name.rsplit('.').next().unwrap_or_default();
    if is_numeric_label(last) {
        // A name ending in a number is read as an IPv4 address by URL
        // parsers and resolvers alike, often not as the one it looks like.
        return Err(match inet_aton(name) {
            Some(ip) => format!(
                "{host} is an IPv4 address in an ambiguous notation (octal, hex, a single \
                 number, a short form or leading zeros): resolvers read it as {ip}; write {ip}"
            ),
            None => format!(
                "{host} is not a DNS name (its last label is numeric) \
                 nor a dotted-quad IPv4 address"
            ),
        });
    }
    let valid_label = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(format!(
            "{host:?} is not a valid DNS name (labels of letters, digits and inner hyphens, \
             up to 63 characters each), [IPv6] address or dotted-quad IPv4 address"
        ));
    }
    Ok(())
}

/// A label that URL parsers take for a number: decimal digits, or hex
/// digits after 0x.
fn is_numeric_label(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// What inet_aton(3), and so the system resolver, reads `text` as: one to
/// four numbers, each decimal, octal (leading 0) or hex (0x), the last one
/// filling the bytes that are left (`127.1` is 127.0.0.1).
fn inet_aton(text: &str) -> Option<Ipv4Addr> {
    let mut parts = [0u32; 4];
    let mut count = 0;
    for part in text.split('.') {
        *parts.get_mut(count)? = parse_c_number(part)?;
        count += 1;
    }
    let (last, leading) = parts.get(..count)?.split_last()?;
    if leading.iter().any(|&part| part > 255) {
        return None;
    }
    let spare_bits = 32 - 8 * leading.len() as u32;
    if last.checked_shr(spare_bits).unwrap_or(0) != 0 {
        return None;
    }
    let high = leading
        .iter()
        .zip([24, 16, 8])
        .fold(0, |acc, (&part, shift)| acc | part << shift);
    Some(Ipv4Addr::from_bits(high | last))
}

/// A number as C's strtoul with base 0 reads it.
fn parse_c_number(text: &str) -> Option<u32> {
    let (digits, radix) =
        if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            (hex, 16)
        } else if let Some(octal) = text.strip_prefix('0').filter(|rest| !rest.is_empty()) {
            (octal, 8)
        } else {
            (text, 10)
        };
    // from_str_radix would also take a sign.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// Keeps the public addresses; refuses the name if none is left.
pub fn filter_addresses(host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refused> {
    let (public, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = addrs
        .into_iter()
        .partition(|addr| non_public(addr.ip()).is_none());
    if public.is_empty() {
        let listed: Vec<String> = refused
            .iter()
            .map(|addr| {
                let kind = non_public(addr.ip()).unwrap_or("non-public");
                format!("{} ({kind})", addr.ip())
            })
            .collect();
        return Err(Refused {
            host: host.to_owned(),
            reason: format!(
                "it resolves only to non-public addresses: {}",
                listed.join(", ")
            ),
        });
    }
    Ok(public)
}

/// The system resolver, followed by the address filter unless private
/// networks are allowed.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    allow_private: bool,
}

impl GuardedResolver {
    pub fn new(allow_private: bool) -> Self {
        Self { allow_private }
    }
}

type Resolving =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, ResolveError>> + Send>>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            // Port 0: the connector puts the URL's port in.
            let looked_up = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map(|addrs| addrs.collect::<Vec<SocketAddr>>());
            let addrs = match looked_up {
                Ok(addrs) => addrs,
                Err(source) => return Err(ResolveError::Lookup { host, source }),
            };
            if addrs.is_empty() {
                return Err(ResolveError::NoAddresses { host });
            }
            let addrs = if allow_private {
                addrs
            } else {
                filter_addresses(&host, addrs)?
            };
            Ok(addrs.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(ip: &str) -> Option<&'static str> {
        non_public(ip.parse().unwrap())
    }

    #[test]
    fn non_public_ipv4_ranges_are_recognised() {
        for (ip, expected) in [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("0.255.255.255", "unspecified"),
            ("10.0.0.0", "private"),
            ("10.1.2.3", "private"),
            ("10.255.255.255", "private"),
            ("100.64.0.1", "private"),
            ("100.127.255.255", "private"),
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("169.254.0.1", "link-local"),
            ("169.254.169.254", "link-local"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.0.0.0", "IETF protocol assignments"),
            ("192.0.0.8", "IETF protocol assignments"),
            ("192.0.0.11", "IETF protocol assignments"),
            ("192.0.0.170", "IETF protocol assignments"),
            ("192.0.0.255", "IETF protocol assignments"),
            ("192.0.2.1", "documentation"),
            ("192.88.99.1", "6to4 relay anycast"),
            ("192.168.1.1", "private"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("224.0.0.1", "broadcast or multicast"),
            ("239.255.255.255", "broadcast or multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.254", "reserved"),
            ("255.255.255.255", "broadcast or multicast"),
        ] {
            assert_eq!(kind(ip), Some(expected), "{ip}");
        }
    }

    #[test]
    fn public_ipv4_neighbours_and_exceptions_pass() {
        for ip in [
            "1.0.0.0",
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.1",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.1",
            "191.255.255.255",
            "192.0.0.9",  // PCP anycast
            "192.0.0.10", // TURN anycast
            "192.0.1.1",
            "192.0.3.0",
            "192.31.196.1", // AS112
            "192.52.193.1", // AMT
            "192.88.98.255",
            "192.88.100.0",
            "192.167.255.255",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "198.51.101.0",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
        ] {
            assert_eq!(kind(ip), None, "{ip}");
        }
    }

    #[test]
    fn non_public_ipv6_ranges_are_recognised() {
        for (ip, expected) in [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("64:ff9b:1::1", "local-use NAT64"),
            ("64:ff9b:1::808:808", "local-use NAT64"),
            ("100::1", "discard-only"),
            ("100::ffff:ffff:ffff:ffff", "discard-only"),
            ("100:0:0:1::1", "dummy"),
            ("2001:1::", "IETF protocol assignments"),
            ("2001:1::4", "IETF protocol assignments"),
            ("2001:4::1", "IETF protocol assignments"),
            ("2001:10::1", "IETF protocol assignments"),
            ("2001:1ff::1", "IETF protocol assignments"),
            ("2001:2::1", "benchmarking"),
            ("2001:db8::1", "documentation"),
            ("2001:db8:ffff::1", "documentation"),
            ("3fff::1", "documentation"),
            ("3fff:fff::1", "documentation"),
            ("5f00::1", "SRv6 SID"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("feff::1", "site-local"),
            ("ff02::1", "broadcast or multicast"),
            ("ff0e::1", "broadcast or multicast"),
        ] {
            assert_eq!(kind(ip), Some(expected), "{ip}");
        }
    }

    #[test]
    fn public_ipv6_neighbours_and_exceptions_pass() {
        for ip in [
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::2:0:0:1",
            "64:ff9b:2::1",
            "100:0:0:2::1",
            "2001:1::1", // PCP anycast
            "2001:1::2", // TURN anycast
            "2001:1::3", // DNS-SD SRP anycast
            "2001:3::1", // AMT
            "2001:4:112::1",
            "2001:20::1",
            "2001:30::1",
            "2001:200::1",
            "2001:db7:ffff::1",
            "2001:db9::1",
            "2620:4f:8000::1",
            "3fff:1000::1",
            "5eff::1",
            "5f01::1",
            "fbff::1",
            "fe00::1",
        ] {
            assert_eq!(kind(ip), None, "{ip}");
        }
    }

    #[test]
    fn ipv6_forms_carrying_ipv4_are_judged_by_the_ipv4_address() {
        for (ip, expected) in [
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:10.0.0.1", Some("private")),
            ("::ffff:0.0.0.0", Some("unspecified")),
            ("::ffff:8.8.8.8", None),
            ("::ffff:0:7f00:1", Some("loopback")),
            ("::ffff:0:169.254.169.254", Some("link-local")),
            ("::ffff:0:8.8.8.8", None),
            ("::127.0.0.1", Some("loopback")),
            ("::10.0.0.1", Some("private")),
            ("::0.0.0.2", Some("unspecified")),
            ("::8.8.8.8", None),
            ("64:ff9b::a9fe:a9fe", Some("link-local")),
            ("64:ff9b::7f00:1", Some("loopback")),
            ("64:ff9b::808:808", None),
            ("2002:7f00:1::1", Some("loopback")),
            ("2002:a00:1::1", Some("private")),
            ("2002:c0a8:101::", Some("private")),
            ("2002:c058:6301::1", Some("6to4 relay anycast")),
            ("2002:0808:0808::1", None),
            ("2002:0101:0101:ffff::1", None),
            // Teredo: server 65.54.227.120, client 8.8.8.8 (inverted: f7f7:f7f7).
            ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", None),
            // Client 127.0.0.1 (inverted: 80ff:fffe).
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", Some("loopback")),
            // Client 10.0.0.1 (inverted: f5ff:fffe).
            ("2001:0:4136:e378::f5ff:fffe", Some("private")),
            // Server 192.168.0.1, client 8.8.8.8.
            ("2001:0:c0a8:1::f7f7:f7f7", Some("private")),
            // Server 0.0.0.0, client 0.0.0.0 (inverted: ffff:ffff).
            ("2001::ffff:ffff", Some("unspecified")),
        ] {
            assert_eq!(kind(ip), expected, "{ip}");
        }
    }

    #[test]
    fn literal_hosts_are_checked_and_names_are_left_to_the_resolver() {
        assert!(check_host("127.0.0.1").is_err());
        assert!(check_host("[::1]").is_err());
        let refused = check_host("169.254.169.254").unwrap_err();
        assert!(refused.to_string().contains("link-local"), "{refused}");
        for host in [
            "[::127.0.0.1]",
            "[::ffff:0:7f00:1]",
            "[2002:7f00:1::1]",
            "[::ffff:127.0.0.1]",
        ] {
            let refused = check_host(host).unwrap_err();
            assert!(refused.to_string().contains("loopback"), "{refused}");
        }
        assert!(check_host("[2001:db8::1]").is_err());
        assert!(check_host("198.18.0.1").is_err());
        assert!(check_host("8.8.8.8").is_ok());
        assert!(check_host("[2606:4700:4700::1111]").is_ok());
        assert!(check_host("[::ffff:8.8.8.8]").is_ok());
        assert!(check_host("[2002:808:808::1]").is_ok());
        assert!(check_host("hooks.example.com").is_ok());
    }

    #[test]
    fn good_callback_urls_are_accepted() {
        for url in [
            "https://hooks.example.com/sms",
            "http://example.com:8080/x?y=1",
            "https://[2606:4700:4700::1111]/h",
            "HTTPS://Hooks.Example.COM/sms",
            "Http://example.com",
            "https://example.com:1/",
            "https://example.com:65535/",
            "https://8.8.8.8/hook",
            "https://[::1]:8443/hook",
            "http://127.0.0.1:3000/hook",
            "https://xn--bcher-kva.example/h",
            "https://a-b.c-d.example/h",
            "https://123.example.com/h",
            "https://example.com./h",
            "https://localhost/h",
        ] {
            assert_eq!(validate_callback_url(url), Ok(()), "{url}");
        }
    }

    fn refusal(url: &str) -> String {
        match validate_callback_url(url) {
            Ok(()) => panic!("{url} was accepted"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn bad_callback_urls_are_refused() {
        for (url, says) in [
            ("ftp://example.com/hook", "http:// or https://"),
            ("example.com/hook", "http:// or https://"),
            ("//example.com/hook", "http:// or https://"),
            (
                "javascript://example.com/%0aalert(1)",
                "http:// or https://",
            ),
            ("https://", "not a valid URL"),
            ("https://exa mple.com", "not a valid URL"),
            ("http:///x", "not a valid URL"),
            ("https://user:pass@example.com/", "user info"),
            ("https://user@example.com/", "user info"),
            ("https://@example.com/", "user info"),
            ("https://example.com:0/", "port \"0\""),
            ("https://example.com:99999/", "port \"99999\""),
            ("https://example.com:65536/", "1 to 65535"),
            ("https://example.com:+80/", "1 to 65535"),
            ("https://example.com:8a/", "1 to 65535"),
            ("https://example.com:/", "1 to 65535"),
            ("https://exa_mple.com/", "not a valid DNS name"),
            ("https://a!b.com/", "not a valid DNS name"),
            ("https://-example.com/", "not a valid DNS name"),
            ("https://example-.com/", "not a valid DNS name"),
            ("https://example..com/", "not a valid DNS name"),
            ("https://.example.com/", "not a valid DNS name"),
            ("https://example.com../", "not a valid DNS name"),
            ("https://[v1.x]/", "not a valid IPv6"),
            ("https://[fe80::1%25eth0]/", "not a valid IPv6"),
            ("https://[127.0.0.1]/", "not a valid IPv6"),
            ("https://1.2.3.4.5/", "not a DNS name"),
            ("https://example.123/", "not a DNS name"),
            ("https://example.0x1f/", "not a DNS name"),
            ("https://256.1.1.1/", "not a DNS name"),
            ("https://08.1.1.1/", "not a DNS name"),
        ] {
            let message = refusal(url);
            assert!(message.contains(says), "{url}: {message}");
            assert!(message.starts_with("`callback_url`"), "{url}: {message}");
        }
        let long_label = format!("https://{}.com/", "a".repeat(64));
        assert!(refusal(&long_label).contains("not a valid DNS name"));
        let ok_label = format!("https://{}.com/", "a".repeat(63));
        assert_eq!(validate_callback_url(&ok_label), Ok(()));
        let long_name = format!("https://{}com/", "abcdefghi.".repeat(26));
        assert!(refusal(&long_name).contains("not a valid DNS name"));
        let ok_name = format!("https://{}com/", "abcdefghi.".repeat(25));
        assert_eq!(validate_callback_url(&ok_name), Ok(()));
    }

    #[test]
    fn ambiguous_ipv4_notations_are_refused() {
        for (url, read_as) in [
            ("http://2130706433/", "127.0.0.1"),
            ("http://0177.0.0.1/", "127.0.0.1"),
            ("http://0x7f.0.0.1/", "127.0.0.1"),
            ("http://0X7F.0.0.1/", "127.0.0.1"),
            ("http://0x7f000001/", "127.0.0.1"),
            ("http://127.1/", "127.0.0.1"),
            ("http://127.0.1/", "127.0.0.1"),
            ("http://1.2.3/", "1.2.0.3"),
            ("http://010.0.0.1/", "8.0.0.1"),
            ("http://127.000.000.001/", "127.0.0.1"),
            ("http://192.168.0.01/", "192.168.0.1"),
            ("http://0/", "0.0.0.0"),
            ("http://127.0.0.1./", "127.0.0.1"),
            ("http://169.254.43518/", "169.254.169.254"),
            ("http://0xa9.0xfe.0xa9.0xfe:80/", "169.254.169.254"),
        ] {
            let message = refusal(url);
            assert!(message.contains("ambiguous"), "{url}: {message}");
            assert!(
                message.contains(&format!("read it as {read_as}")),
                "{url}: {message}"
            );
        }
    }

    #[test]
    fn inet_aton_reads_as_the_system_resolver_does() {
        let read = |text: &str| inet_aton(text).map(|ip| ip.to_string());
        assert_eq!(read("1.2.3.4").as_deref(), Some("1.2.3.4"));
        assert_eq!(read("4294967295").as_deref(), Some("255.255.255.255"));
        assert_eq!(read("1.16777215").as_deref(), Some("1.255.255.255"));
        assert_eq!(read("1.2.65535").as_deref(), Some("1.2.255.255"));
        assert_eq!(read("0x.1"), None);
        assert_eq!(read("4294967296"), None);
        assert_eq!(read("1.16777216"), None);
        assert_eq!(read("1.2.65536"), None);
        assert_eq!(read("1.2.3.256"), None);
        assert_eq!(read("256.2.3.4"), None);
        assert_eq!(read("1.2.3.4.5"), None);
        assert_eq!(read("09.1.1.1"), None);
        assert_eq!(read("1..1"), None);
        assert_eq!(read("+1.2.3.4"), None);
        assert_eq!(read(""), None);
    }

    #[test]
    fn resolved_addresses_are_filtered() {
        let addr = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let kept = filter_addresses(
            "mixed.example",
            vec![addr("10.0.0.1:0"), addr("93.184.215.14:0")],
        )
        .unwrap();
        assert_eq!(kept, vec![addr("93.184.215.14:0")]);
        let refused =
            filter_addresses("localhost", vec![addr("127.0.0.1:0"), addr("[::1]:0")]).unwrap_err();
        assert!(
            refused.to_string().contains("127.0.0.1 (loopback)"),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("allow_private_networks"),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_loopback_addresses() {
        use tower_service::Service;
        let name: Name = "localhost".parse().unwrap();
        let err = GuardedResolver::new(false)
            .call(name.clone())
            .await
            .unwrap_err();
        assert!(matches!(err, ResolveError::Refused(_)), "{err}");
        let addrs: Vec<SocketAddr> = GuardedResolver::new(true)
            .call(name)
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
