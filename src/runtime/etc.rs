//! The `/etc/hosts` and `/etc/resolv.conf` a container is given, written as podman writes them
//! for each network mode. Pure functions of the host's files and the options, so every case is
//! unit tested; [`host_address`] is the one look at the host.

use super::net::{DnsOptions, HostEntry};
use crate::sandbox::Network;
use crate::sandbox::net::{CONTAINER_IP, DNS_IP};
use std::net::{IpAddr, Ipv4Addr};

/// What the two files are made of.
#[derive(Debug, Clone)]
pub struct EtcInput<'a> {
    /// The network mode.
    pub network: Network,
    /// The container's hostname.
    pub hostname: &'a str,
    /// The container's name.
    pub name: &'a str,
    /// `--add-host` entries, in order.
    pub add_hosts: &'a [HostEntry],
    /// `--dns`, `--dns-search`, `--dns-option`.
    pub dns: &'a DnsOptions,
    /// The host's `/etc/hosts` (empty when missing).
    pub host_hosts: &'a str,
    /// The host's `/etc/resolv.conf` (empty when missing).
    pub host_resolv: &'a str,
    /// The host's address on its default route (`host.containers.internal`), if any.
    pub host_ip: Option<IpAddr>,
}

fn names_in(hosts: &str) -> impl Iterator<Item = &str> {
    hosts.lines().flat_map(|l| {
        l.split('#')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
    })
}

fn push_text(out: &mut String, text: &str) {
    out.push_str(text);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

/// The container's `/etc/hosts`. As podman: the `--add-host` entries first, then
/// - private network: the host's `/etc/hosts` (with `localhost` added when it lacks one),
///   `host.containers.internal` on the host's address, and the container's address with its
///   hostname and name;
/// - `host`: the host's `/etc/hosts`, plus the hostname on `127.0.1.1` when it names none;
/// - `none`: `localhost`, the IPv6 names and the hostname on `127.0.1.1`.
pub fn hosts(i: &EtcInput<'_>) -> String {
    let mut out = String::new();
    for h in i.add_hosts {
        out.push_str(&format!("{}\t{}\n", h.ip, h.name));
    }
    match i.network {
        Network::Private => {
            push_text(&mut out, i.host_hosts);
            if !names_in(i.host_hosts).any(|n| n == "localhost") {
                out.push_str("127.0.0.1\tlocalhost\n::1\tlocalhost\n");
            }
            if let Some(ip) = i.host_ip {
                out.push_str(&format!("{ip}\thost.containers.internal\n"));
            }
            if i.hostname == i.name {
                out.push_str(&format!("{CONTAINER_IP}\t{}\n", i.hostname));
            } else {
                out.push_str(&format!("{CONTAINER_IP}\t{} {}\n", i.hostname, i.name));
            }
        }
        Network::Host if !i.host_hosts.is_empty() => {
            push_text(&mut out, i.host_hosts);
            if !names_in(i.host_hosts).any(|n| n == i.hostname) {
                out.push_str(&format!("127.0.1.1\t{}\n", i.hostname));
            }
        }
        Network::Host | Network::None => out.push_str(&super::hosts_file(i.hostname)),
    }
    out
}

/// Whether a name server address is the host's own loopback, unreachable from a network
/// namespace of the container's own.
fn loopback(ip: &str) -> bool {
    ip.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
}

/// The container's `/etc/resolv.conf`: `search`, `nameserver` and `options` lines.
/// `--dns`/`--dns-search`/`--dns-option` replace the host's values of each kind. The name
/// servers are otherwise, as podman's: with the private network, the helper's DNS forwarder
/// first, then the host's that are not loopback addresses (a host resolving through
/// `127.0.0.53` leaves just the forwarder, which reaches it); with `host`, the host's as they
/// are; with `none`, the host's that are not loopback.
pub fn resolv_conf(i: &EtcInput<'_>) -> String {
    let mut search: Vec<String> = Vec::new();
    let mut servers: Vec<String> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    for line in i.host_resolv.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => servers.extend(words.next().map(str::to_string)),
            // The last `search` or `domain` line wins, as in the resolver.
            Some("search" | "domain") => search = words.map(str::to_string).collect(),
            Some("options") => options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    if i.network != Network::Host {
        servers.retain(|s| !loopback(s));
    }
    if i.network == Network::Private {
        servers.insert(0, DNS_IP.to_string());
    }
    if !i.dns.servers.is_empty() {
        servers = i.dns.servers.iter().map(ToString::to_string).collect();
    }
    if !i.dns.search.is_empty() {
        search.clone_from(&i.dns.search);
    }
    if search == ["."] {
        search.clear();
    }
    if !i.dns.options.is_empty() {
        options.clone_from(&i.dns.options);
    }
    let mut out = String::new();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in &servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// The gateway of the host's IPv4 default route, from `/proc/net/route`'s text.
fn default_gateway(route: &str) -> Option<Ipv4Addr> {
    route.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Iface Destination Gateway Flags ...: destination 0 is the default route; the
        // addresses are hex in the kernel's (little-endian) byte order.
        if f.len() > 2 && f[1] == "00000000" {
            let g = u32::from_str_radix(f[2], 16).ok()?;
            (g != 0).then(|| Ipv4Addr::from(g.swap_bytes()))
        } else {
            None
        }
    })
}

/// The host's address on its default route (the source address it would use towards its
/// gateway; nothing is sent), for `host.containers.internal`.
pub fn host_address() -> Option<IpAddr> {
    let gw = default_gateway(&std::fs::read_to_string("/proc/net/route").ok()?)?;
    let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect((gw, 9)).ok()?;
    Some(s.local_addr().ok()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(network: Network, dns: &'a DnsOptions, add: &'a [HostEntry]) -> EtcInput<'a> {
        EtcInput {
            network,
            hostname: "c0ffee123456",
            name: "quick_otter",
            add_hosts: add,
            dns,
            host_hosts: "127.0.0.1 localhost\n127.0.0.1 vm\n",
            host_resolv: "# generated\nsearch corp.example\nnameserver 127.0.0.53\n\
                          nameserver 192.0.2.53\noptions edns0\n",
            host_ip: Some("192.0.2.2".parse().unwrap()),
        }
    }

    #[test]
    fn private_hosts_as_podman_writes_them() {
        let dns = DnsOptions::default();
        let add = ["db:10.9.8.7".parse().unwrap()];
        assert_eq!(
            hosts(&input(Network::Private, &dns, &add)),
            "10.9.8.7\tdb\n127.0.0.1 localhost\n127.0.0.1 vm\n\
             192.0.2.2\thost.containers.internal\n10.0.2.100\tc0ffee123456 quick_otter\n"
        );
        let mut i = input(Network::Private, &dns, &[]);
        i.host_hosts = "";
        i.host_ip = None;
        assert_eq!(
            hosts(&i),
            "127.0.0.1\tlocalhost\n::1\tlocalhost\n10.0.2.100\tc0ffee123456 quick_otter\n"
        );
    }

    #[test]
    fn none_and_host_hosts() {
        let dns = DnsOptions::default();
        let add = ["db:10.9.8.7".parse().unwrap()];
        let none = hosts(&input(Network::None, &dns, &add));
        assert!(
            none.starts_with("10.9.8.7\tdb\n127.0.0.1\tlocalhost\n"),
            "{none}"
        );
        assert!(none.ends_with("127.0.1.1\tc0ffee123456\n"), "{none}");
        let host = hosts(&input(Network::Host, &dns, &[]));
        assert_eq!(
            host,
            "127.0.0.1 localhost\n127.0.0.1 vm\n127.0.1.1\tc0ffee123456\n"
        );
    }

    #[test]
    fn private_resolv_conf_puts_the_forwarder_first_and_drops_loopback() {
        let dns = DnsOptions::default();
        assert_eq!(
            resolv_conf(&input(Network::Private, &dns, &[])),
            "search corp.example\nnameserver 10.0.2.3\nnameserver 192.0.2.53\noptions edns0\n"
        );
        let mut i = input(Network::Private, &dns, &[]);
        i.host_resolv = "nameserver 127.0.0.53\nnameserver ::1\n";
        assert_eq!(resolv_conf(&i), "nameserver 10.0.2.3\n");
        // With its own network and no helper, a loopback resolver is useless.
        i.network = Network::None;
        assert_eq!(resolv_conf(&i), "");
        i.network = Network::Host;
        assert_eq!(resolv_conf(&i), "nameserver 127.0.0.53\nnameserver ::1\n");
    }

    #[test]
    fn dns_options_replace_the_hosts_values() {
        let dns = DnsOptions {
            servers: vec!["1.1.1.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
            search: vec!["a.example".into(), "b.example".into()],
            options: vec!["ndots:2".into()],
        };
        assert_eq!(
            resolv_conf(&input(Network::Private, &dns, &[])),
            "search a.example b.example\nnameserver 1.1.1.1\nnameserver 2001:db8::1\n\
             options ndots:2\n"
        );
        let dot = DnsOptions {
            search: vec![".".into()],
            ..DnsOptions::default()
        };
        assert!(!resolv_conf(&input(Network::Private, &dot, &[])).contains("search"));
    }

    #[test]
    fn gateway_from_proc_net_route() {
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                     eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\n\
                     eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\n";
        assert_eq!(default_gateway(route), Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(default_gateway("Iface\n"), None);
    }
}
