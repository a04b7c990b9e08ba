//! Running the hanode binary in tests.
#![allow(dead_code)]

pub mod http;

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

pub fn hanode(args: &[&str]) -> Run {
    hanode_env(args, &[])
}

/// The binary under test: HANODE_TEST_BIN (the static release build, scripts/test-release), else
/// this build's.
pub fn bin() -> PathBuf {
    std::env::var_os("HANODE_TEST_BIN").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_BIN_EXE_hanode").into())
}

pub fn hanode_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(bin())
        .args(args)
        .envs(env.iter().copied())
        .env_remove("HANODE_ROOT")
        .env_remove("HANODE_PROFILES_DIR")
        .output()
        .expect("running hanode");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn repo(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel).to_string_lossy().into_owned()
}

/// A host root holding the os-release of a fixture (tests/fixtures/NAME), writable.
pub fn fixture_root(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::copy(repo(&format!("tests/fixtures/{name}/etc/os-release")), dir.path().join("etc/os-release")).unwrap();
    dir
}

pub fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// Plans one phase (dry run, after the preflight checks) for member `node` on a host `root` with the site file `site`,
/// commands answered by `runner`.
pub fn plan_phase(
    root: &Path,
    site: &str,
    node: &str,
    phase: &str,
    runner: std::sync::Arc<hanode::exec::Recording>,
) -> hanode::engine::Report {
    use hanode::context::{Context, Options};
    let config = write(root, "site.toml", site, 0o644);
    let opts = Options { root: root.into(), config: Some(config), node: Some(node.into()), ..Options::default() };
    let mut cx = Context::load(&opts, Box::new(runner)).unwrap();
    cx.dry_run = true;
    let phases = hanode::phases::select(cx.role, hanode::engine::Stage::All, &[], Some(phase)).unwrap();
    let mut report = hanode::engine::Report::default();
    hanode::engine::preflight(&cx, &phases, &mut report).unwrap();
    hanode::engine::converge(&cx, &phases, true, &mut report).unwrap();
    report
}

/// The argv of every command a plan would run, in order.
pub fn commands(report: &hanode::engine::Report) -> Vec<String> {
    report
        .changes
        .iter()
        .filter_map(|c| match &c.action {
            hanode::engine::Action::Run(cmd) => Some(cmd.argv.join(" ")),
            _ => None,
        })
        .collect()
}
