//! OS packages through the distribution's package manager, non-interactively.

use std::collections::BTreeSet;

use crate::engine::Change;
use crate::exec::{Cmd, Runner};
use crate::profile::PackageManager;

/// The packages of `names` that are not installed.
pub fn missing(runner: &dyn Runner, pm: PackageManager, names: &[String]) -> anyhow::Result<Vec<String>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let installed: BTreeSet<String> = match pm {
        // dpkg-query exits 1 when some names are unknown; it still lists the known ones.
        PackageManager::Apt => {
            let cmd = Cmd::new("listing installed packages", "dpkg-query")
                .args(["-W", "-f", "${Package}\t${db:Status-Abbrev}\n"])
                .args(names.iter().cloned());
            let out = runner.output(&cmd)?;
            if out.code.is_none_or(|c| c > 1) {
                anyhow::bail!("listing installed packages failed: `{}`: {}", cmd.shell_words(), out.stderr.trim());
            }
            out.stdout
                .lines()
                .filter_map(|l| l.split_once('\t'))
                .filter(|(_, status)| status.starts_with("ii"))
                .map(|(name, _)| name.split(':').next().unwrap_or(name).to_string())
                .collect()
        }
        // rpm -q exits with the number of packages not installed.
        PackageManager::Dnf => {
            let cmd = Cmd::new("listing installed packages", "rpm")
                .args(["-q", "--qf", "%{NAME}\n"])
                .args(names.iter().cloned());
            let out = runner.output(&cmd)?;
            if out.code.is_none() {
                anyhow::bail!("listing installed packages failed: `{}` was killed", cmd.shell_words());
            }
            out.stdout.lines().map(str::to_string).collect()
        }
    };
    Ok(names.iter().filter(|n| !installed.contains(*n)).cloned().collect())
}

/// The changes that install `names`: refresh the package lists, then install.
pub fn install_changes(pm: PackageManager, names: &[String]) -> Vec<Change> {
    let tool = match pm {
        PackageManager::Apt => "apt-get",
        PackageManager::Dnf => "dnf",
    };
    install_cmds(pm, names)
        .into_iter()
        .map(|cmd| {
            let summary = if cmd.argv[1] == "update" {
                format!("{tool} update")
            } else {
                format!("{tool} install {}", names.join(" "))
            };
            Change::run(summary, cmd)
        })
        .collect()
}

/// The commands that install `names`: refresh the package lists, then install.
pub fn install_cmds(pm: PackageManager, names: &[String]) -> Vec<Cmd> {
    let list = names.join(" ");
    match pm {
        PackageManager::Apt => vec![
            Cmd::new("refreshing the apt package lists", "apt-get")
                .args(["update", "-q"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .timeout(Cmd::LONG_TIMEOUT),
            Cmd::new(format!("installing {list}"), "apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                // Keep configuration files an operator changed; never ask.
                .args(["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"])
                .args(names.iter().cloned())
                .env("DEBIAN_FRONTEND", "noninteractive")
                .timeout(Cmd::LONG_TIMEOUT),
        ],
        PackageManager::Dnf => vec![
            Cmd::new(format!("installing {list}"), "dnf")
                .args(["install", "-y", "-q"])
                .args(names.iter().cloned())
                .timeout(Cmd::LONG_TIMEOUT),
        ],
    }
}
