//! Patroni in a dedicated Python venv, from PyPI files pinned by SHA-256 in profiles/patroni/.
//!
//! pip runs with `--require-hashes --only-binary :all:`: every file is checked against the
//! pin before it is unpacked. The one exception is python-etcd, which PyPI has only as a
//! source archive: it is hash-checked too and built by the pinned setuptools inside the venv,
//! without build isolation, so that nothing unpinned is ever fetched.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::config::DcsKind;
use crate::context::Context;
use crate::error::refused;
use crate::exec::Cmd;

pub const MARKER: &str = ".hanode-venv.json";
const BUILD_REQUIREMENTS: &str = include_str!("../profiles/patroni/build-requirements.txt");
const ETCD: &str = include_str!("../profiles/patroni/requirements-etcd.txt");
const CONSUL: &str = include_str!("../profiles/patroni/requirements-consul.txt");

/// The pinned requirements for a DCS; `--profiles-dir DIR` may hold `patroni/requirements-*.txt`
/// that replace the built-in ones.
#[derive(Debug, Clone, Serialize)]
pub struct Requirements {
    pub patroni_version: String,
    #[serde(skip)]
    pub text: String,
    /// What builds the source-only packages, if any.
    #[serde(skip)]
    pub build: Option<String>,
    pub sha256: String,
    pub source: String,
}

impl Requirements {
    pub fn for_dcs(dcs: DcsKind, profiles_dir: Option<&Path>) -> anyhow::Result<Requirements> {
        let (name, built_in) = match dcs {
            DcsKind::Etcd => ("requirements-etcd.txt", ETCD),
            DcsKind::Consul => ("requirements-consul.txt", CONSUL),
        };
        let read = |file: &str, built_in: &str| -> anyhow::Result<(String, String)> {
            match profiles_dir.map(|d| d.join("patroni").join(file)).filter(|p| p.exists()) {
                Some(p) => Ok((
                    std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
                    p.display().to_string(),
                )),
                None => Ok((built_in.to_string(), format!("built-in profiles/patroni/{file}"))),
            }
        };
        let (text, source) = read(name, built_in)?;
        let needs_build = text.lines().any(|l| l.starts_with("python-etcd=="));
        let build = if needs_build { Some(read("build-requirements.txt", BUILD_REQUIREMENTS)?.0) } else { None };
        let version = text
            .lines()
            .find_map(|l| l.strip_prefix("patroni=="))
            .map(|v| v.trim_end_matches(['\\', ' ']).to_string())
            .with_context(|| format!("{source} pins no patroni== version"))?;
        let sha256 = crate::download::sha256_reader(format!("{text}{}", build.as_deref().unwrap_or("")).as_bytes())?;
        Ok(Requirements { patroni_version: version, text, build, sha256, source })
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Marker {
    patroni_version: String,
    requirements_sha256: String,
}

/// What installing the venv takes; paths are on the target host.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub dir: PathBuf,
    pub requirements: Requirements,
    #[serde(serialize_with = "crate::config::kinds::serialize_masked_opt")]
    pub index_url: Option<String>,
}

/// One directory per set of pins: a re-pin builds beside the working venv, which stays in use
/// until the new one is complete and the links move.
pub fn venv_dir(cx: &Context, req: &Requirements) -> PathBuf {
    cx.site.install.prefix.join(format!("patroni-{}-{}", req.patroni_version, &req.sha256[..8]))
}

/// Whether the venv at `dir` (a path on the target) is complete and from these pins.
pub fn is_installed(cx: &Context, dir: &Path, req: &Requirements) -> anyhow::Result<bool> {
    let marker = cx.host_path(&dir.join(MARKER));
    let text = match std::fs::read_to_string(&marker) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("reading {}", marker.display())),
    };
    let ok = serde_json::from_str::<Marker>(&text).is_ok_and(|m| m.requirements_sha256 == req.sha256);
    Ok(ok && cx.host_path(&dir.join("bin/patroni")).exists())
}

fn pip(dir: &Path, what: &str) -> Cmd {
    Cmd::new(what, dir.join("bin/pip").display().to_string())
        .args(["install", "--disable-pip-version-check", "--no-input", "--require-hashes", "--only-binary", ":all:"])
        .timeout(Cmd::LONG_TIMEOUT)
}

/// `host[:port]` of a plain-http index, which pip must be told to trust.
pub fn insecure_host(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok().filter(|u| u.scheme() == "http")?;
    let host = u.host_str()?;
    Some(u.port().map_or(host.to_string(), |p| format!("{host}:{p}")))
}

/// The commands `apply` runs, in order (shown in tests; the requirements files are written first).
pub fn commands(plan: &Plan) -> Vec<Cmd> {
    let dir = &plan.dir;
    // The index goes in pip's environment, not its argv, which every local user can read
    // (`ps`) and which would carry a mirror's credentials.
    let index = |c: Cmd| match &plan.index_url {
        // pip refuses a plain-http index unless its host is trusted: every file is still
        // checked against its pinned SHA-256 (--require-hashes), so the transport adds nothing.
        Some(u) => match insecure_host(u) {
            Some(host) => c.env("PIP_INDEX_URL", u).env("PIP_TRUSTED_HOST", &host),
            None => c.env("PIP_INDEX_URL", u),
        },
        None => c,
    };
    let mut cmds = vec![Cmd::new(format!("creating the Python venv {}", dir.display()), "python3").args([
        "-m",
        "venv",
        &dir.display().to_string(),
    ])];
    if plan.requirements.build.is_some() {
        cmds.push(index(
            pip(dir, "installing pinned setuptools into the venv")
                .args(["-r", &dir.join("hanode-build-requirements.txt").display().to_string()]),
        ));
    }
    cmds.push(index(
        pip(dir, &format!("installing Patroni {} with pinned hashes", plan.requirements.patroni_version)).args([
            "--no-binary",
            "python-etcd",
            "--no-build-isolation",
            "-r",
            &dir.join("hanode-requirements.txt").display().to_string(),
        ]),
    ));
    cmds.push(
        Cmd::new("checking the installed Patroni", dir.join("bin/patroni").display().to_string()).arg("--version"),
    );
    cmds
}

/// Builds the venv in its final directory; the marker, written last, makes it count.
pub fn apply(cx: &Context, plan: &Plan) -> anyhow::Result<()> {
    let real = cx.host_path(&plan.dir);
    // A venv cannot be moved (its scripts name their directory), so a half-built one from an
    // interrupted run is removed and built again in place.
    if real.exists() {
        std::fs::remove_dir_all(&real).with_context(|| format!("removing the incomplete venv {}", real.display()))?;
    }
    let result = build(cx, plan, &real);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&real);
    }
    result
}

fn build(cx: &Context, plan: &Plan, real: &Path) -> anyhow::Result<()> {
    let cmds = commands(plan);
    cx.runner.run(&cmds[0])?;
    let req = &plan.requirements;
    crate::files::write_atomic(&real.join("hanode-requirements.txt"), req.text.as_bytes(), 0o644, None)?;
    if let Some(b) = &req.build {
        crate::files::write_atomic(&real.join("hanode-build-requirements.txt"), b.as_bytes(), 0o644, None)?;
    }
    let last = cmds.len() - 1;
    for cmd in &cmds[1..last] {
        if let Err(e) = cx.runner.run(cmd) {
            let text = format!("{e:#}");
            if text.contains("DO NOT MATCH THE HASHES") || text.contains("do not match the hashes") {
                return Err(refused(format!(
                    "a file from PyPI does not match its pinned SHA-256 ({}): nothing was installed. {text}",
                    req.source
                )));
            }
            return Err(e);
        }
    }
    let out = cx.runner.run(&cmds[last])?;
    let shown = format!("{}{}", out.stdout, out.stderr);
    if !shown.contains(&req.patroni_version) {
        anyhow::bail!("{} reports {:?}, expected Patroni {}", cmds[last].argv[0], shown.trim(), req.patroni_version);
    }
    let marker = Marker { patroni_version: req.patroni_version.clone(), requirements_sha256: req.sha256.clone() };
    crate::files::write_atomic(&real.join(MARKER), &serde_json::to_vec_pretty(&marker)?, 0o644, None)
}
