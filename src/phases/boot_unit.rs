//! The `boot-unit` phase (image stage): installs and enables `hanode-firstboot.service`, which
//! runs the firstboot stage when a host made from the image boots. `record_success` writes the
//! marker that tells the unit its work is done.

use std::path::{Path, PathBuf};

use crate::config::{self, Role};
use crate::context::Context;
use crate::engine::{Change, Phase, Stage, Step, Steps};
use crate::files::{self, FileSpec};
use crate::units::{self, Fill};

pub const UNIT: &str = "hanode-firstboot.service";
/// Written after a successful firstboot (or full) run; the unit does not start while it exists.
pub const DONE: &str = "/var/lib/hanode/firstboot.done";
const TEMPLATE: &str = include_str!("../../units/hanode-firstboot.service");
/// Where hanode is installed when the running binary lies outside the target root (tests).
const DEFAULT_BIN: &str = "/usr/local/sbin/hanode";

pub const PHASE: Phase = Phase::new(
    "boot-unit",
    "installs and enables hanode-firstboot.service: the firstboot stage runs when the host boots",
    Stage::Image,
    Role::ALL,
    steps,
);

fn steps(_cx: &Context) -> Steps {
    Ok(vec![Box::new(InstallUnit)])
}

struct InstallUnit;

impl Step for InstallUnit {
    fn name(&self) -> String {
        UNIT.into()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        let text = units::render(
            TEMPLATE,
            &[
                ("site", Fill::Text(config::DEFAULT_SITE.to_string())),
                ("done", Fill::Text(DONE.to_string())),
                ("hanode", Fill::Program(hanode_path(&cx.root))),
                ("role", Fill::Arg(cx.role.as_str().to_string())),
            ],
        )?;
        let path = crate::units::unit_path(UNIT);
        // `systemctl enable` is this link; made directly, it works the same in a chroot.
        let wants = Path::new("/etc/systemd/system/multi-user.target.wants").join(UNIT);
        let mut changes: Vec<Change> = Change::for_file(cx, FileSpec::new(&path, text, 0o644))?.into_iter().collect();
        changes.extend(Change::for_link(cx, &wants, &path)?);
        Ok(changes)
    }
}

/// The running binary as the target host sees it.
fn hanode_path(root: &Path) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|_| DEFAULT_BIN.into());
    match exe.strip_prefix(root) {
        Ok(rel) => Path::new("/").join(rel),
        Err(_) => DEFAULT_BIN.into(),
    }
}

/// Records a successful first boot: when, and by which hanode.
pub fn record_success(cx: &Context) -> anyhow::Result<()> {
    let when = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let text = serde_json::json!({ "finished_unix": when, "hanode": env!("CARGO_PKG_VERSION") }).to_string() + "\n";
    files::write_atomic(&cx.host_path(Path::new(DONE)), text.as_bytes(), 0o644, None)
}
