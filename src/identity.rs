//! Which member of the cluster this host is.

use std::net::IpAddr;

use crate::config::{Member, Site};
use crate::error::bad_input;

/// How the member was found, for the preflight report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    Flag,
    Hostname,
    Address,
}

/// Picks the member: `--node` first, then the hostname (full or short), then the one member
/// whose address is on a local interface.
pub fn resolve<'s>(
    site: &'s Site,
    flag: Option<&str>,
    hostname: &str,
    local: &[IpAddr],
) -> anyhow::Result<(&'s Member, Via)> {
    let members = &site.cluster.members;
    let names = || members.iter().map(|m| format!("{} ({})", m.name, m.address)).collect::<Vec<_>>().join(", ");
    if let Some(name) = flag {
        return site.member(name).map(|m| (m, Via::Flag)).ok_or_else(|| {
            bad_input(format!("--node {name}: no such member in {}; members: {}", site.path.display(), names()))
        });
    }
    let short = hostname.split('.').next().unwrap_or(hostname);
    if let Some(m) = members.iter().find(|m| m.name == hostname || m.name == short) {
        return Ok((m, Via::Hostname));
    }
    let by_addr: Vec<&Member> = members.iter().filter(|m| local.contains(&m.address)).collect();
    match by_addr.as_slice() {
        [m] => Ok((m, Via::Address)),
        [] => Err(bad_input(format!(
            "this host is no member of cluster {}: hostname {hostname:?} matches no member name and no member address is on a local interface; members: {}; pass --node NAME or set the hostname",
            site.cluster.name,
            names()
        ))),
        many => Err(bad_input(format!(
            "cannot tell which member this host is: addresses of {} are all local; pass --node NAME",
            many.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(" and ")
        ))),
    }
}

/// This host's name and the addresses on its interfaces.
pub fn local_facts() -> anyhow::Result<(String, Vec<IpAddr>)> {
    use anyhow::Context;
    let hostname = nix::unistd::gethostname().context("reading the hostname")?.to_string_lossy().into_owned();
    let addrs = nix::ifaddrs::getifaddrs()
        .context("listing the network interfaces")?
        .filter_map(|ifa| {
            let a = ifa.address?;
            a.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())).or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
        })
        .collect();
    Ok((hostname, addrs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        let text = r#"
[cluster]
name = "main"
members = [
  { name = "pg1", address = "10.0.0.11" },
  { name = "pg2", address = "10.0.0.12" },
]
"#;
        Site::parse(std::path::Path::new("site.toml"), text).unwrap()
    }

    #[test]
    fn flag_then_hostname_then_address() {
        let s = site();
        let ip = |a: &str| a.parse::<IpAddr>().unwrap();
        assert_eq!(resolve(&s, Some("pg2"), "pg1", &[]).unwrap().0.name, "pg2");
        assert_eq!(resolve(&s, None, "pg1.example.org", &[]).unwrap(), (&s.cluster.members[0], Via::Hostname));
        assert_eq!(
            resolve(&s, None, "box", &[ip("127.0.0.1"), ip("10.0.0.12")]).unwrap(),
            (&s.cluster.members[1], Via::Address)
        );
    }

    #[test]
    fn no_match_and_ambiguity_are_errors() {
        let s = site();
        let ip = |a: &str| a.parse::<IpAddr>().unwrap();
        let e = resolve(&s, None, "box", &[ip("127.0.0.1")]).unwrap_err().to_string();
        assert!(e.contains("--node"), "{e}");
        let e = resolve(&s, None, "box", &[ip("10.0.0.11"), ip("10.0.0.12")]).unwrap_err().to_string();
        assert!(e.contains("pg1 and pg2"), "{e}");
        assert!(resolve(&s, Some("pg9"), "pg1", &[]).is_err());
    }
}
