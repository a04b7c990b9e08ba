//! vip-manager's configuration: the cluster's virtual IP follows the Patroni leader key.

use crate::config::DcsKind;
use crate::context::Context;
use crate::dcs::{self, q};

pub const CONFIG: &str = "/etc/hanode/vip-manager.yml";

/// The interface that carries the VIP: configured, else the one holding this member's address.
pub fn interface(cx: &Context) -> anyhow::Result<String> {
    let vip = cx.site.vip.as_ref().expect("vip configured");
    if let Some(i) = &vip.interface {
        return Ok(i.clone());
    }
    let addrs = nix::ifaddrs::getifaddrs()?;
    for ifa in addrs {
        let Some(a) = ifa.address else { continue };
        let ip = a
            .as_sockaddr_in()
            .map(|s| std::net::IpAddr::V4(s.ip()))
            .or_else(|| a.as_sockaddr_in6().map(|s| std::net::IpAddr::V6(s.ip())));
        if ip == Some(cx.node().address) {
            return Ok(ifa.interface_name);
        }
    }
    Err(crate::error::bad_input(format!(
        "no interface of this host holds member {}'s address {}: set vip.interface in {}",
        cx.node().name,
        cx.node().address,
        cx.site.path.display()
    )))
}

/// The config file, with the key names of vip-manager 1.0 and later (1.x reads etcd's v2 API).
pub fn config(cx: &Context, interface: &str) -> anyhow::Result<String> {
    let site = &cx.site;
    let vip = site.vip.as_ref().expect("vip configured");
    let (dcs_type, endpoints, key) = match site.dcs.kind {
        DcsKind::Etcd => {
            let kind = if dcs::etcd_v2(site) { "etcd" } else { "etcd3" };
            (kind, dcs::etcd_urls(site).join(","), format!("/service/{}/leader", site.cluster.name))
        }
        DcsKind::Consul => ("consul", dcs::consul_url(site), format!("service/{}/leader", site.cluster.name)),
    };
    let mut out =
        String::from("# Written by hanode: the VIP goes to this node while it holds the Patroni leader key.\n");
    out += &format!("ip: {}\n", q(&vip.address.to_string()));
    out += &format!("netmask: {}\n", q(&vip.prefix.to_string()));
    out += &format!("interface: {}\n", q(interface));
    out += &format!("trigger-key: {}\n", q(&key));
    out += &format!("trigger-value: {}\n", q(&cx.node().name));
    out += &format!("dcs-type: {}\n", q(dcs_type));
    out += &format!("dcs-endpoints: {}\n", q(&endpoints));
    out += "interval: \"1000\"\n";
    if site.tls.enabled && site.dcs.kind == DcsKind::Etcd {
        out += &format!("etcd-ca-file: {}\n", q(crate::tls::CA));
        out += &format!("etcd-cert-file: {}\n", q(crate::tls::CERT));
        let key = crate::tls::key_path(crate::units::DaemonKind::VipManager);
        out += &format!("etcd-key-file: {}\n", q(&key.display().to_string()));
    }
    if crate::etcd_auth::enabled(site) {
        let login = crate::etcd_auth::vip_manager(cx)?;
        out += &format!("etcd-user: {}\netcd-password: {}\n", q(&login.user), q(login.password.expose()));
    }
    if site.dcs.kind == DcsKind::Consul {
        // Its own token: a read of the leader key (consul_acl).
        out += &format!("consul-token: {}\n", q(crate::consul_acl::vip_manager_token(cx)?.expose()));
    }
    Ok(out)
}

/// Lines for vip-manager's unit: its Consul client takes TLS settings only from the
/// environment (the Consul API library's CONSUL_* variables), not from its config file.
pub fn environment(cx: &Context) -> String {
    if !(cx.site.tls.enabled && cx.site.dcs.kind == DcsKind::Consul) {
        return "# (no environment)".into();
    }
    let key = crate::tls::key_path(crate::units::DaemonKind::VipManager);
    [
        ("CONSUL_CACERT", crate::tls::CA.to_string()),
        ("CONSUL_CLIENT_CERT", crate::tls::CERT.to_string()),
        ("CONSUL_CLIENT_KEY", key.display().to_string()),
    ]
    .iter()
    .map(|(k, v)| format!("Environment={k}={v}"))
    .collect::<Vec<_>>()
    .join("\n")
}
