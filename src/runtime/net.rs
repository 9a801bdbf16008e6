//! The network options of `run`: published ports (`-p`, `-P`), `--add-host` entries and DNS
//! settings, parsed as podman reads them, and the `PORTS` text `ps` shows.

use crate::sandbox::net::{PortForward, Proto};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

use super::RuntimeError;

fn bad_port(spec: &str, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::InvalidPort {
        spec: spec.to_string(),
        reason: reason.into(),
    }
}

/// A `-p [IP:][HOST:]CTR[/tcp|/udp]` spec; ports may be ranges (`8080-8081:80-81`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// The host address to listen on; all (`0.0.0.0`) when not given.
    pub host_ip: Option<Ipv4Addr>,
    /// The first and last host port; `None`: free ports chosen at run time.
    pub host_ports: Option<(u16, u16)>,
    /// The first and last container port.
    pub container_ports: (u16, u16),
    /// The protocol.
    pub proto: Proto,
}

fn port_range(spec: &str, s: &str, what: &str) -> Result<(u16, u16), RuntimeError> {
    let one = |p: &str| -> Result<u16, RuntimeError> {
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(bad_port(
                spec,
                format!("{what} port '{p}' is not a number from 1 to 65535"),
            )),
            Ok(n) => Ok(n),
        }
    };
    let (a, b) = if let Some((a, b)) = s.split_once('-') {
        (one(a)?, one(b)?)
    } else {
        let p = one(s)?;
        (p, p)
    };
    if b < a {
        return Err(bad_port(
            spec,
            format!("{what} port range '{s}' ends before it starts"),
        ));
    }
    Ok((a, b))
}

impl std::str::FromStr for PortSpec {
    type Err = RuntimeError;

    fn from_str(spec: &str) -> Result<PortSpec, RuntimeError> {
        let (ports, proto) = match spec.rsplit_once('/') {
            Some((p, "tcp")) => (p, Proto::Tcp),
            Some((p, "udp")) => (p, Proto::Udp),
            Some((_, other)) => {
                return Err(bad_port(
                    spec,
                    format!("unknown protocol '{other}' (tcp or udp)"),
                ));
            }
            None => (spec, Proto::Tcp),
        };
        if ports.starts_with('[') || ports.matches(':').count() > 2 {
            return Err(bad_port(
                spec,
                "IPv6 host addresses cannot be published (the private network forwards IPv4)",
            ));
        }
        let mut parts: Vec<&str> = ports.split(':').collect();
        let ctr = parts.pop().unwrap_or_default();
        if ctr.is_empty() {
            return Err(bad_port(spec, "no container port"));
        }
        let container_ports = port_range(spec, ctr, "container")?;
        let (ip, host) = match parts.as_slice() {
            [] => ("", ""),
            [h] => ("", *h),
            [ip, h] => (*ip, *h),
            _ => unreachable!("at most two colons"),
        };
        let host_ip = if ip.is_empty() {
            None
        } else {
            Some(
                ip.parse::<Ipv4Addr>()
                    .map_err(|_| bad_port(spec, format!("'{ip}' is not an IPv4 address")))?,
            )
        };
        let host_ports = if host.is_empty() {
            None
        } else {
            Some(port_range(spec, host, "host")?)
        };
        if let Some((a, b)) = host_ports
            && b - a != container_ports.1 - container_ports.0
        {
            return Err(bad_port(
                spec,
                "the host and container port ranges differ in length",
            ));
        }
        Ok(PortSpec {
            host_ip,
            host_ports,
            container_ports,
            proto,
        })
    }
}

/// A published port as the container record keeps it (podman's field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    /// The host address (`0.0.0.0`: all).
    pub host_ip: String,
    /// The host port.
    pub host_port: u16,
    /// The container port.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

impl PublishedPort {
    /// The sandbox's form of this port; `None` when the record holds something unusable.
    pub fn forward(&self) -> Option<PortForward> {
        Some(PortForward {
            proto: match self.protocol.as_str() {
                "udp" => Proto::Udp,
                "tcp" => Proto::Tcp,
                _ => return None,
            },
            host_ip: self.host_ip.parse().ok()?,
            host_port: self.host_port,
            container_port: self.container_port,
        })
    }
}

/// A free port on `ip` for `proto`, as the kernel picks one (it may be taken again before the
/// helper binds it, as with podman's random ports).
fn free_port(ip: Ipv4Addr, proto: Proto) -> std::io::Result<u16> {
    Ok(match proto {
        Proto::Tcp => std::net::TcpListener::bind((ip, 0))?.local_addr()?.port(),
        Proto::Udp => std::net::UdpSocket::bind((ip, 0))?.local_addr()?.port(),
    })
}

/// The ports `specs` and, with `publish_all`, the image's `ExposedPorts` (each on a free
/// host port) publish, in order, without duplicates of a container port and protocol.
pub fn published_ports(
    specs: &[PortSpec],
    exposed: &[String],
    publish_all: bool,
) -> Result<Vec<PublishedPort>, RuntimeError> {
    let mut out: Vec<PublishedPort> = Vec::new();
    let mut push = |ip: Ipv4Addr, host: Option<u16>, ctr: u16, proto: Proto| {
        let host_port = match host {
            Some(h) => h,
            None => free_port(ip, proto).map_err(|e| {
                bad_port(
                    &format!("{ip}::{ctr}/{}", proto.as_str()),
                    format!("no free host port: {e}"),
                )
            })?,
        };
        out.push(PublishedPort {
            host_ip: ip.to_string(),
            host_port,
            container_port: ctr,
            protocol: proto.as_str().to_string(),
        });
        Ok::<(), RuntimeError>(())
    };
    let mut seen: Vec<(u16, Proto)> = Vec::new();
    for s in specs {
        let ip = s.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        for (i, ctr) in (s.container_ports.0..=s.container_ports.1).enumerate() {
            let host = s
                .host_ports
                .map(|(a, _)| a + u16::try_from(i).unwrap_or(u16::MAX));
            push(ip, host, ctr, s.proto)?;
            seen.push((ctr, s.proto));
        }
    }
    if publish_all {
        for e in exposed {
            let (port, proto) = match e.split_once('/') {
                Some((p, "udp")) => (p, Proto::Udp),
                Some((p, _)) => (p, Proto::Tcp),
                None => (e.as_str(), Proto::Tcp),
            };
            let (a, b) = port_range(e, port, "exposed")?;
            for ctr in a..=b {
                if !seen.contains(&(ctr, proto)) {
                    push(Ipv4Addr::UNSPECIFIED, None, ctr, proto)?;
                    seen.push((ctr, proto));
                }
            }
        }
    }
    Ok(out)
}

/// `ps`'s `PORTS`, as podman prints it: `127.0.0.1:8080->80/tcp`, consecutive ports merged
/// into ranges (`0.0.0.0:8080-8081->80-81/tcp`), joined by `, `.
pub fn ports_text(ports: &[PublishedPort]) -> String {
    let mut groups: Vec<(&PublishedPort, u16)> = Vec::new();
    for p in ports {
        if let Some((first, n)) = groups.last_mut()
            && first.host_ip == p.host_ip
            && first.protocol == p.protocol
            && u32::from(first.host_port) + u32::from(*n) == u32::from(p.host_port)
            && u32::from(first.container_port) + u32::from(*n) == u32::from(p.container_port)
        {
            *n += 1;
            continue;
        }
        groups.push((p, 1));
    }
    groups
        .iter()
        .map(|(p, n)| {
            if *n == 1 {
                format!(
                    "{}:{}->{}/{}",
                    p.host_ip, p.host_port, p.container_port, p.protocol
                )
            } else {
                format!(
                    "{}:{}-{}->{}-{}/{}",
                    p.host_ip,
                    p.host_port,
                    p.host_port + n - 1,
                    p.container_port,
                    p.container_port + n - 1,
                    p.protocol
                )
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An `--add-host NAME:IP` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    /// The host name.
    pub name: String,
    /// Its address.
    pub ip: IpAddr,
}

impl std::str::FromStr for HostEntry {
    type Err = RuntimeError;

    fn from_str(spec: &str) -> Result<HostEntry, RuntimeError> {
        let bad = |reason: &str| RuntimeError::InvalidOption {
            option: "--add-host",
            reason: format!("'{spec}': {reason}"),
        };
        let (name, ip) = spec
            .split_once(':')
            .ok_or_else(|| bad("expected NAME:IP"))?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(bad("not a valid host name"));
        }
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        let ip = ip
            .parse::<IpAddr>()
            .map_err(|_| bad(&format!("'{ip}' is not an IP address")))?;
        Ok(HostEntry {
            name: name.to_string(),
            ip,
        })
    }
}

/// The DNS settings of `run` (`--dns`, `--dns-search`, `--dns-option`); empty lists keep what
/// the container would get otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsOptions {
    /// Name servers, replacing the default ones.
    pub servers: Vec<IpAddr>,
    /// Search domains (`.` alone: none).
    pub search: Vec<String>,
    /// Resolver options (`ndots:2`, `edns0`).
    pub options: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<PortSpec, String> {
        s.parse::<PortSpec>().map_err(|e| e.to_string())
    }

    #[test]
    fn port_specs_parse_as_podman_reads_them() {
        let lo = Some(Ipv4Addr::LOCALHOST);
        assert_eq!(
            p("127.0.0.1:8080:80").unwrap(),
            PortSpec {
                host_ip: lo,
                host_ports: Some((8080, 8080)),
                container_ports: (80, 80),
                proto: Proto::Tcp
            }
        );
        assert_eq!(p("8080:80/udp").unwrap().proto, Proto::Udp);
        assert_eq!(p("8080:80/udp").unwrap().host_ip, None);
        assert_eq!(p("80").unwrap().host_ports, None);
        let any = p("127.0.0.1::80").unwrap();
        assert_eq!((any.host_ip, any.host_ports), (lo, None));
        let r = p("8080-8082:80-82/tcp").unwrap();
        assert_eq!(
            (r.host_ports, r.container_ports),
            (Some((8080, 8082)), (80, 82))
        );
    }

    #[test]
    fn bad_port_specs_say_the_spec_and_why() {
        for (spec, why) in [
            ("", "no container port"),
            ("8080:", "no container port"),
            ("0:80", "host port '0'"),
            ("x:80", "host port 'x'"),
            ("80/sctp", "unknown protocol 'sctp'"),
            ("1.2.3:80:80", "not an IPv4 address"),
            ("[::1]:80:80", "IPv6"),
            ("8080-8081:80", "differ in length"),
            ("90-80", "ends before it starts"),
            ("70000", "container port '70000'"),
        ] {
            let e = p(spec).unwrap_err();
            assert!(
                e.contains(&format!("'{spec}'")) && e.contains(why),
                "{spec}: {e}"
            );
        }
    }

    #[test]
    fn published_ports_expand_ranges_and_expose_the_rest() {
        let specs = [p("127.0.0.1:8080-8081:80-81").unwrap()];
        let ports = published_ports(&specs, &["80/tcp".into(), "53/udp".into()], true).unwrap();
        assert_eq!(ports.len(), 3, "{ports:?}");
        assert_eq!((ports[1].host_port, ports[1].container_port), (8081, 81));
        assert_eq!(
            (ports[2].container_port, ports[2].protocol.as_str()),
            (53, "udp")
        );
        assert_eq!(ports[2].host_ip, "0.0.0.0");
        assert_ne!(ports[2].host_port, 0);
        assert!(
            published_ports(&[], &["80/tcp".into()], false)
                .unwrap()
                .is_empty()
        );
        assert!(ports[0].forward().is_some());
    }

    #[test]
    fn ports_text_is_podmans() {
        let port = |ip: &str, h, c, proto: &str| PublishedPort {
            host_ip: ip.into(),
            host_port: h,
            container_port: c,
            protocol: proto.into(),
        };
        assert_eq!(ports_text(&[]), "");
        assert_eq!(
            ports_text(&[
                port("127.0.0.1", 8080, 80, "tcp"),
                port("0.0.0.0", 9000, 90, "tcp"),
                port("0.0.0.0", 9001, 91, "tcp"),
                port("0.0.0.0", 5353, 53, "udp"),
            ]),
            "127.0.0.1:8080->80/tcp, 0.0.0.0:9000-9001->90-91/tcp, 0.0.0.0:5353->53/udp"
        );
    }

    #[test]
    fn add_host_entries() {
        let h: HostEntry = "db.local:10.1.2.3".parse().unwrap();
        assert_eq!(h.name, "db.local");
        assert_eq!(h.ip, "10.1.2.3".parse::<IpAddr>().unwrap());
        let h6: HostEntry = "v6:::1".parse().unwrap();
        assert_eq!(h6.ip, "::1".parse::<IpAddr>().unwrap());
        for bad in ["nocolon", ":1.2.3.4", "a b:1.2.3.4", "x:999.1.1.1"] {
            let e = bad.parse::<HostEntry>().unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }
}
