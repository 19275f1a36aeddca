//! Where a request comes from: the client's address (behind trusted
//! proxies, from `X-Forwarded-For`) and the networks a key may be used from.

use std::net::IpAddr;

use ipnet::IpNet;

/// A CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a bare address (one host).
pub fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|net| net.trunc())
}

/// Whether `ip` is in one of `networks`; an IPv4 address mapped into IPv6
/// (`::ffff:10.0.0.1`) counts as the IPv4 one.
pub fn contains(networks: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    networks.iter().any(|net| net.contains(&ip))
}

/// The client's address: the peer's, unless the peer is a trusted proxy;
/// then the right-most `X-Forwarded-For` entry that is not itself a trusted
/// proxy (entries to its left are whatever the client chose to send).
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    if !contains(trusted, peer) {
        return peer.to_canonical();
    }
    let Some(header) = forwarded_for else {
        return peer.to_canonical();
    };
    let mut client = peer.to_canonical();
    for hop in header.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip.to_canonical();
                if !contains(trusted, client) {
                    break;
                }
            }
            // A malformed entry ends what can be believed.
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| parse_network(n).unwrap()).collect()
    }

    #[test]
    fn networks_parse_from_cidrs_and_addresses() {
        assert_eq!(
            parse_network("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_network("192.0.2.7").unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(
            parse_network("2001:db8::1/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert!(parse_network("10.0.0.0/33").is_none());
        assert!(parse_network("office").is_none());
        let allowed = nets(&["10.0.0.0/8", "2001:db8::/32"]);
        assert!(contains(&allowed, "10.9.9.9".parse().unwrap()));
        assert!(contains(&allowed, "::ffff:10.9.9.9".parse().unwrap()));
        assert!(contains(&allowed, "2001:db8:1::5".parse().unwrap()));
        assert!(!contains(&allowed, "11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = nets(&["127.0.0.1", "10.0.0.0/8"]);
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        // Not from a proxy: the header is ignored.
        assert_eq!(client_ip(stranger, Some("192.0.2.1"), &trusted), stranger);
        // From a proxy: the right-most hop that is not a proxy.
        assert_eq!(
            client_ip(proxy, Some("1.1.1.1, 192.0.2.1, 10.0.0.5"), &trusted),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, None, &trusted), proxy);
        assert_eq!(client_ip(proxy, Some("junk"), &trusted), proxy);
    }
}
