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
pub struct Status {
    pub node: String,
    pub volume_group: Option<String>,
    pub volumes: Vec<VolumeStatus>,
}

pub fn collect(cx: &Context) -> anyhow::Result<Status> {
    let mut st = Status { node: cx.node.name.clone(), volume_group: None, volumes: Vec::new() };
    let Some(d) = &cx.site.disks else { return Ok(st) };
    st.volume_group = Some(d.volume_group.clone());
    let lvs = disks::lvs(cx)?;
    let mounts = disks::mounts()?;
    let fstab = std::fs::read_to_string(cx.host_path(Path::new("/etc/fstab"))).unwrap_or_default();
    for lv in lvs.iter().filter(|l| l.vg_name == d.volume_group) {
        let dev = Path::new("/dev").join(&lv.vg_name).join(&lv.lv_name);
        let real = std::fs::canonicalize(&dev).unwrap_or(dev.clone());
        let mount = mounts
            .iter()
            .find(|(src, _)| std::fs::canonicalize(src).map(|s| s == real).unwrap_or(false))
            .map(|(_, m)| m.clone());
        let fs = disks::filesystem(cx, &dev)?;
        let usage = mount.as_ref().and_then(|m| nix::sys::statvfs::statvfs(m).ok());
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

pub fn print(st: &Status) {
    crate::ui::section(&format!("node {}", st.node));
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
            "{} {} on {}: {}, {} mounted at {}{}{}",
            v.device,
            disks::human_size(v.size),
            v.devices,
            v.filesystem.as_deref().unwrap_or("no filesystem"),
            if v.in_fstab { "in fstab," } else { "NOT in fstab," },
            v.mount.as_deref().unwrap_or("(not mounted)"),
            usage,
            ""
        ));
    }
}
