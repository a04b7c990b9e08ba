//! vip-manager's configuration: the cluster's virtual IP follows the Patroni leader key.

use crate::config::DcsKind;
use crate::context::Context;
use crate::dcs;
use crate::units::DaemonKind;

pub const CONFIG: &str = "/etc/hanode/vip-manager.yml";
/// The system user it runs as (units/vip-manager.service): its capabilities, nothing of root's.
pub const USER: &str = "vip-manager";

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

/// vip-manager.yml, with the key names of vip-manager 1.0 and later (1.x reads etcd's v2
/// API). Numbers are strings, as hanode has always written them (vip-manager converts).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct VipConfig {
    pub ip: String,
    pub netmask: String,
    pub interface: String,
    pub trigger_key: String,
    pub trigger_value: String,
    pub dcs_type: String,
    pub dcs_endpoints: String,
    pub interval: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_ca_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_cert_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_key_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_password: Option<String>,
    /// Its own token: a read of the leader key (consul_acl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consul_token: Option<String>,
}

/// The config file's text.
pub fn config(cx: &Context, interface: &str) -> anyhow::Result<String> {
    Ok(crate::yaml::file(
        "Written by hanode: the VIP goes to this node while it holds the Patroni leader key.",
        &settings(cx, interface)?,
    ))
}

/// This node's vip-manager settings.
pub fn settings(cx: &Context, interface: &str) -> anyhow::Result<VipConfig> {
    let site = &cx.site;
    let vip = site.vip.as_ref().expect("vip configured");
    let (dcs_type, endpoints, key) = match site.dcs.kind {
        DcsKind::Etcd => {
            let kind = if dcs::etcd_v2(site) { "etcd" } else { "etcd3" };
            (kind, dcs::etcd_urls(site).join(","), format!("/service/{}/leader", site.cluster.name))
        }
        DcsKind::Consul => ("consul", dcs::consul_url(site), format!("service/{}/leader", site.cluster.name)),
    };
    let etcd_tls = site.tls.enabled && site.dcs.kind == DcsKind::Etcd;
    let path = |p: std::path::PathBuf| etcd_tls.then(|| p.display().to_string());
    let login = if crate::etcd_auth::enabled(site) { Some(crate::etcd_auth::vip_manager(cx)?) } else { None };
    let consul_token = match site.dcs.kind {
        DcsKind::Consul => Some(crate::consul_acl::vip_manager_token(cx)?.expose().to_string()),
        DcsKind::Etcd => None,
    };
    Ok(VipConfig {
        ip: vip.address.to_string(),
        netmask: vip.prefix.to_string(),
        interface: interface.to_string(),
        trigger_key: key,
        trigger_value: cx.node().name.clone(),
        dcs_type: dcs_type.into(),
        dcs_endpoints: endpoints,
        interval: "1000".into(),
        etcd_ca_file: etcd_tls.then(|| crate::tls::CA.to_string()),
        etcd_cert_file: path(crate::tls::cert_path(DaemonKind::VipManager)),
        etcd_key_file: path(crate::tls::key_path(DaemonKind::VipManager)),
        etcd_user: login.as_ref().map(|l| l.user.clone()),
        etcd_password: login.map(|l| l.password.expose().to_string()),
        consul_token,
    })
}

/// vip-manager's environment: its Consul client takes TLS settings only from there (the
/// Consul API library's CONSUL_* variables), not from its config file.
pub fn environment(cx: &Context) -> Vec<(&'static str, String)> {
    if !(cx.site.tls.enabled && cx.site.dcs.kind == DcsKind::Consul) {
        return Vec::new();
    }
    vec![
        ("CONSUL_CACERT", crate::tls::CA.to_string()),
        ("CONSUL_CLIENT_CERT", crate::tls::cert_path(DaemonKind::VipManager).display().to_string()),
        ("CONSUL_CLIENT_KEY", crate::tls::key_path(DaemonKind::VipManager).display().to_string()),
    ]
}

/// vip-manager.yml for the interface that holds the node's address, rendered once a run.
pub fn config_text(cx: &Context) -> anyhow::Result<String> {
    cx.rendered(crate::units::DaemonKind::VipManager, || interface(cx).and_then(|i| config(cx, &i)))
}
