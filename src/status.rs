//! `hanode status`: what this node has, read without changing anything.

use std::path::Path;

use serde::Serialize;

use crate::context::Context;
use crate::disks;

#[derive(Debug, Serialize)]
pub struct VolumeStatus {
    pub volume: String,
    pub device: String,
    pub size: u64,
    pub devices: String,
    pub mount: Option<String>,
    pub filesystem: Option<String>,
    pub used: Option<u64>,
    pub available: Option<u64>,
    pub in_fstab: bool,
}

#[derive(Debug, Serialize)]
pub struct ServiceStatus {
    pub unit: String,
    pub active: bool,
    pub main_pid: u32,
    /// Healthy by its own measure (the check `init` ends with), else why not.
    pub healthy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    /// The version of this document's layout.
    pub schema: u32,
    pub node: String,
    /// Every service healthy, the DCS with quorum: what `hanode status`'s exit code says.
    pub healthy: bool,
    pub volume_group: Option<String>,
    pub volumes: Vec<VolumeStatus>,
    pub services: Vec<ServiceStatus>,
    /// The DCS as this node sees it: healthy or the error.
    pub dcs: Result<String, String>,
    /// Patroni's own view (GET /patroni): role, state, timeline, WAL positions.
    pub patroni: Option<serde_json::Value>,
    /// Whether this node holds the VIP now.
    pub holds_vip: Option<bool>,
    /// With --cluster: every member (GET /cluster): role, state, lag.
    pub cluster: Option<serde_json::Value>,
    /// TLS: off, or the days left on this node's certificate and the CA's.
    pub tls: TlsStatus,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum TlsStatus {
    Off,
    /// No certificate yet (hanode init issues it).
    Missing,
    On {
        certificate_days_left: i64,
        ca_days_left: Option<i64>,
    },
}

pub fn collect(cx: &Context, cluster: bool) -> anyhow::Result<Status> {
    let site = &cx.site;
    let services: Vec<ServiceStatus> = crate::units::daemons(cx)
        .iter()
        .map(|d| {
            let problem = crate::units::probe(cx, d).err();
            ServiceStatus {
                unit: d.unit().to_string(),
                active: crate::units::is_active(cx, d.unit()).unwrap_or(false),
                main_pid: crate::units::main_pid(cx, d.unit()).unwrap_or(0),
                healthy: problem.is_none(),
                problem,
            }
        })
        .collect();
    let dcs = match site.dcs.kind {
        crate::config::DcsKind::Etcd => {
            let hosts = crate::dcs::etcd_urls(site);
            let answers: Vec<(bool, String)> = hosts
                .iter()
                .map(|u| match crate::dcs::etcd_health(u) {
                    Ok(()) => (true, format!("{u} healthy")),
                    Err(e) => (false, format!("{u} not healthy ({e})")),
                })
                .collect();
            let healthy = answers.iter().filter(|(ok, _)| *ok).count();
            if healthy * 2 > hosts.len() {
                Ok(format!("etcd: {healthy} of {} members healthy", hosts.len()))
            } else {
                Err(format!(
                    "etcd has no quorum: {}",
                    answers.into_iter().map(|(_, a)| a).collect::<Vec<_>>().join("; ")
                ))
            }
        }
        crate::config::DcsKind::Consul => {
            match crate::units::get_json(&format!("{}/v1/status/leader", crate::dcs::consul_url(site))) {
                Ok(v) if v.as_str().is_some_and(|l| !l.is_empty()) => Ok(format!("consul: leader {v}")),
                Ok(v) => Err(format!("consul has no leader ({v})")),
                Err(e) => Err(e),
            }
        }
    };
    let rest = crate::patroni::rest_url(cx);
    let is_pg = cx.role == crate::config::Role::Postgres;
    let patroni = if is_pg { crate::units::get_json(&format!("{rest}/patroni")).ok() } else { None };
    let cluster = if cluster && is_pg { crate::units::get_json(&format!("{rest}/cluster")).ok() } else { None };
    let local = crate::identity::local_facts().map(|(_, addrs)| addrs).unwrap_or_default();
    let holds_vip = site.vip.as_ref().map(|v| local.contains(&v.address));
    let mut st = Status {
        schema: 1,
        healthy: services.iter().all(|s| s.healthy) && dcs.is_ok(),
        node: cx.node().name.clone(),
        volume_group: None,
        volumes: Vec::new(),
        services,
        dcs,
        patroni,
        holds_vip,
        cluster,
        tls: tls_status(cx),
    };
    let Some(d) = &cx.site.disks else { return Ok(st) };
    st.volume_group = Some(d.volume_group.clone());
    let lvs = disks::lvs(cx)?;
    let mounts = disks::mounts(cx)?;
    let fstab = std::fs::read_to_string(cx.host_path(Path::new("/etc/fstab"))).unwrap_or_default();
    for lv in lvs.iter().filter(|l| l.vg_name == d.volume_group) {
        let dev = Path::new("/dev").join(&lv.vg_name).join(&lv.lv_name);
        let mount = mounts.iter().find(|(src, _)| disks::same_device(Path::new(src), &dev)).map(|(_, m)| m.clone());
        let fs = disks::filesystem(cx, &dev)?;
        let usage = mount.as_ref().and_then(|m| nix::sys::statvfs::statvfs(&cx.host_path(m)).ok());
        st.volumes.push(VolumeStatus {
            volume: lv.lv_name.clone(),
            device: dev.display().to_string(),
            size: lv.lv_size.unwrap_or(0),
            devices: lv.devices.clone(),
            in_fstab: fs
                .as_ref()
                .is_some_and(|(_, uuid)| fstab.lines().any(|l| l.starts_with(&format!("UUID={uuid} ")))),
            filesystem: fs.map(|(t, _)| t),
            used: usage.map(|u| (u.blocks() - u.blocks_free()) * u.fragment_size()),
            available: usage.map(|u| u.blocks_available() * u.fragment_size()),
            mount: mount.map(|m| m.display().to_string()),
        });
    }
    Ok(st)
}

fn tls_status(cx: &Context) -> TlsStatus {
    if !cx.site.tls.enabled {
        return TlsStatus::Off;
    }
    let days =
        |p: &str| std::fs::read_to_string(cx.host_path(Path::new(p))).ok().and_then(|c| crate::tls::days_left(&c));
    match days(crate::tls::CERT) {
        Some(d) => TlsStatus::On { certificate_days_left: d, ca_days_left: days(crate::tls::CA) },
        None => TlsStatus::Missing,
    }
}

pub fn print(st: &Status) {
    crate::ui::section(&format!("node {}", st.node));
    for s in &st.services {
        let state = match (&s.problem, s.active) {
            (None, _) => format!("healthy, main PID {}", s.main_pid),
            (Some(p), true) => format!("active (main PID {}) but NOT healthy: {p}", s.main_pid),
            (Some(p), false) => format!("NOT healthy: {p}"),
        };
        crate::ui::info(&format!("{}: {state}", s.unit));
    }
    match &st.dcs {
        Ok(d) => crate::ui::info(d),
        Err(e) => crate::ui::info(&format!("DCS PROBLEM: {e}")),
    }
    if let Some(p) = &st.patroni {
        let lag = p["replication_state"].as_str().map(|r| format!(", replication {r}")).unwrap_or_default();
        crate::ui::info(&format!(
            "patroni: {} {}, timeline {}{lag}",
            p["role"].as_str().unwrap_or("?"),
            p["state"].as_str().unwrap_or("?"),
            p["timeline"]
        ));
        if p["pending_restart"].as_bool() == Some(true) {
            crate::ui::info(
                "postgresql: RESTART PENDING: a changed parameter takes effect only after a restart (hanode restart --rolling)",
            );
        }
    }
    crate::ui::info(&match &st.tls {
        TlsStatus::Off => "TLS: OFF ([tls] enabled = false): the cluster's traffic is plain text".to_string(),
        TlsStatus::Missing => format!("TLS: no node certificate at {} (run hanode init)", crate::tls::CERT),
        TlsStatus::On { certificate_days_left: d, ca_days_left: ca } => format!(
            "TLS: node certificate expires in {d} days{}, the CA in {}",
            if *d < crate::tls::RENEW_DAYS { " (RENEW NOW: run hanode init)" } else { "" },
            ca.map_or("?".to_string(), |c| format!("{c} days"))
        ),
    });
    if let Some(v) = st.holds_vip {
        crate::ui::info(if v { "VIP: held by this node" } else { "VIP: not on this node" });
    }
    if let Some(members) = st.cluster.as_ref().and_then(|c| c["members"].as_array()) {
        crate::ui::section("cluster");
        for m in members {
            let mut notes = m.get("lag").map(|l| format!(", lag {l}")).unwrap_or_default();
            if m["pending_restart"].as_bool() == Some(true) {
                notes.push_str(", restart pending");
            }
            crate::ui::info(&format!(
                "{} {} {} {}{notes}",
                m["name"].as_str().unwrap_or("?"),
                m["host"].as_str().unwrap_or("?"),
                m["role"].as_str().unwrap_or("?"),
                m["state"].as_str().unwrap_or("?")
            ));
        }
    }
    let Some(vg) = &st.volume_group else {
        crate::ui::info("disks: none configured (PostgreSQL on the root filesystem)");
        return;
    };
    if st.volumes.is_empty() {
        crate::ui::info(&format!("volume group {vg}: not created yet (run hanode init)"));
    }
    for v in &st.volumes {
        let usage = match (v.used, v.available) {
            (Some(u), Some(a)) => format!(", {} used, {} free", disks::human_size(u), disks::human_size(a)),
            _ => String::new(),
        };
        crate::ui::info(&format!(
            "{} {} on {}: {}, {} mounted at {}{}",
            v.device,
            disks::human_size(v.size),
            v.devices,
            v.filesystem.as_deref().unwrap_or("no filesystem"),
            if v.in_fstab { "in fstab," } else { "NOT in fstab," },
            v.mount.as_deref().unwrap_or("(not mounted)"),
            usage
        ));
    }
}
