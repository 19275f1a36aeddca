//! The SSRF guard. A `callback_url` is chosen by the customer, so by default
//! Pigeon refuses to call addresses that are not on the public internet:
//! loopback, private, shared (carrier-grade NAT), link-local, unique-local,
//! unspecified, broadcast and multicast. The check runs in the DNS resolver
//! the HTTP connector uses, so the addresses checked are the ones connected
//! to (no second look-up that a rebinding DNS server could answer
//! differently); URLs with an IP address as host skip the resolver and are
//! checked by [`check_host`].

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

/// The kind of non-public address `ip` is, or `None` for a public one.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_unspecified() || a == 0 {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        "private"
    } else if ip.is_link_local() {
        "link-local"
    } else if ip.is_broadcast() || ip.is_multicast() {
        "broadcast or multicast"
    } else {
        return None;
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // An IPv4 address in IPv6 clothing is judged as IPv4: mapped
    // (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d).
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    let segments = ip.segments();
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., hi, lo] = segments;
        return non_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    }
    Some(if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if segments[0] & 0xffc0 == 0xfe80 {
        "link-local"
    } else if segments[0] & 0xfe00 == 0xfc00 || segments[0] & 0xffc0 == 0xfec0 {
        // fc00::/7, and the deprecated site-local fec0::/10.
        "unique-local"
    } else if ip.is_multicast() {
        "broadcast or multicast"
    } else {
        return None;
    })
}

/// Checks a URL host that is an IP address literal (which the connector
/// does not resolve); host names are checked when they are resolved.
pub fn check_host(host: &str) -> Result<(), Refused> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<IpAddr>() {
        Ok(ip) => match non_public(ip) {
            Some(kind) => Err(Refused {
                host: host.to_owned(),
                reason: format!("{ip} is a {kind} address"),
            }),
            None => Ok(()),
        },
        Err(_) => Ok(()),
    }
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
    fn non_public_addresses_are_recognised() {
        for (ip, expected) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("::1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "private"),
            ("169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("::", "unspecified"),
            ("255.255.255.255", "broadcast or multicast"),
            ("224.0.0.1", "broadcast or multicast"),
            ("ff02::1", "broadcast or multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
        ] {
            assert_eq!(kind(ip), Some(expected), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(kind(ip), None, "{ip}");
        }
    }

    #[test]
    fn literal_hosts_are_checked_and_names_are_left_to_the_resolver() {
        assert!(check_host("127.0.0.1").is_err());
        assert!(check_host("[::1]").is_err());
        let refused = check_host("169.254.169.254").unwrap_err();
        assert!(refused.to_string().contains("link-local"), "{refused}");
        assert!(check_host("8.8.8.8").is_ok());
        assert!(check_host("[2606:4700:4700::1111]").is_ok());
        assert!(check_host("hooks.example.com").is_ok());
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
