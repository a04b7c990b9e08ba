//! The `artifacts` phase: etcd or Consul, and vip-manager, from pinned, checksummed downloads.

use crate::artifacts::{self, Plan};
use crate::config::{Artifact, Role};
use crate::context::Context;
use crate::engine::{Action, Change, Check, Phase, Stage, Step, Steps};
use crate::error::Kind;

pub const PHASE: Phase = Phase::new(
    "artifacts",
    "installs etcd or Consul and vip-manager from pinned, checksummed downloads",
    Stage::Image,
    Role::ALL,
    steps,
)
.with_checks(checks);

fn checks(cx: &Context) -> Vec<Check> {
    artifacts::needed(&cx.site, cx.role)
            .into_iter()
            .map(|kind| (kind.name(), cx.site.artifact(kind)))
            .map(|(name, pin)| match pin {
                Some(a) => Check::ok(&format!("artifact {name}"), format!("{} {} from {} (sha256 {}…)", a.name, a.version, artifacts::source(a, cx.mirror()), &a.sha256[..12])),
                None => {
                    let msg = format!("this node runs {name} but {} has no [artifacts.{name}] (version, url, sha256); `hanode pin {name} VERSION` writes it from upstream's checksums", cx.site.path.display());
                    Check::blocking(&format!("artifact {name}"), Kind::BadInput, msg)
                }
            })
            .collect()
}

fn steps(cx: &Context) -> Steps {
    Ok(artifacts::needed(&cx.site, cx.role)
        .into_iter()
        .filter_map(|kind| cx.site.artifact(kind))
        .map(|a| Box::new(InstallArtifact(a.clone())) as Box<dyn Step>)
        .collect())
}

struct InstallArtifact(Artifact);

impl Step for InstallArtifact {
    fn name(&self) -> String {
        self.0.name.clone()
    }

    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        let a = &self.0;
        let install = &cx.site.install;
        let dir = artifacts::install_dir(install, a);
        let real_dir = cx.host_path(&dir);
        let mut changes = Vec::new();
        if !artifacts::is_installed(&real_dir, a)? {
            let plan = Plan {
                artifact: a.clone(),
                source: artifacts::source(a, cx.mirror()),
                cache_dir: cx.host_path(&install.cache_dir),
                install_dir: real_dir,
            };
            let summary = format!(
                "install {} {} into {} from {} (sha256 {})",
                a.name,
                a.version,
                dir.display(),
                plan.source,
                a.sha256
            );
            changes.push(Change::new(summary, Action::InstallArtifact(Box::new(plan))));
        }
        for file in &a.files {
            changes.extend(Change::for_link(cx, &install.bin_dir.join(file), &dir.join(file))?);
        }
        Ok(changes)
    }
}
