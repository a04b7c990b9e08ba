//! Pinned downloads (etcd, Consul, vip-manager): the cache, extraction, and versioned installs.
//!
//! An artifact is installed into `<prefix>/<name>-<version>/` built in a temporary directory
//! beside it and renamed into place, with a marker that records the archive's and each
//! program's SHA-256; stable links in `<bin_dir>` point into it. An upgrade or a failed install
//! never leaves a half-written program where the links point.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::config::{ArchiveFormat, Artifact, Install, Role, Site};
use crate::download::{self, Source};
use crate::error::refused;
use crate::ui;

pub const MARKER: &str = ".hanode-artifact.json";

/// The downloads hanode knows how to install: the one list (the site file's `[artifacts.*]`
/// tables, `hanode pin`, the SELinux rules and the artifacts phase read it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Etcd,
    Consul,
    VipManager,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Etcd, Kind::Consul, Kind::VipManager];

    /// Its name in the site file (`[artifacts.vip-manager]`) and in install directories.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Etcd => "etcd",
            Kind::Consul => "consul",
            Kind::VipManager => "vip-manager",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The programs a release ships that hanode installs.
    pub fn programs(self) -> &'static [&'static str] {
        match self {
            Kind::Etcd => &["etcd", "etcdctl"],
            Kind::Consul => &["consul"],
            Kind::VipManager => &["vip-manager"],
        }
    }
}

/// The artifacts this node runs.
pub fn needed(site: &Site, role: Role) -> Vec<Kind> {
    let mut kinds = vec![match site.dcs.kind {
        crate::config::DcsKind::Etcd => Kind::Etcd,
        crate::config::DcsKind::Consul => Kind::Consul,
    }];
    if site.vip.is_some() && role == Role::Postgres {
        kinds.push(Kind::VipManager);
    }
    kinds
}

/// Where to get an artifact's file: the mirror (URL or directory) when set, else upstream.
pub fn source(artifact: &Artifact, mirror: Option<&str>) -> Source {
    match mirror {
        Some(m) if m.starts_with("http://") || m.starts_with("https://") => {
            Source::Url(format!("{}/{}", m.trim_end_matches('/'), artifact.file_name()))
        }
        Some(dir) => Source::File(Path::new(dir).join(artifact.file_name())),
        None => Source::Url(artifact.url.clone()),
    }
}

/// What an install directory's marker records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub name: String,
    pub version: String,
    pub archive_sha256: String,
    /// Program name -> SHA-256 of the installed file.
    pub files: BTreeMap<String, String>,
}

/// Everything needed to install one artifact; the plan shows it, `apply` carries it out.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub artifact: Artifact,
    pub source: Source,
    /// Real paths (under the host root).
    pub cache_dir: PathBuf,
    pub install_dir: PathBuf,
}

pub fn install_dir(install: &Install, a: &Artifact) -> PathBuf {
    install.prefix.join(format!("{}-{}", a.name, a.version))
}

/// Whether `dir` holds exactly this artifact, intact. Errors only on unreadable state.
pub fn is_installed(dir: &Path, a: &Artifact) -> anyhow::Result<bool> {
    let marker_path = dir.join(MARKER);
    let text = match fs::read_to_string(&marker_path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("reading {}", marker_path.display())),
    };
    let Ok(marker) = serde_json::from_str::<Marker>(&text) else {
        return Ok(false);
    };
    if marker.archive_sha256 != a.sha256 || a.files.iter().any(|f| !marker.files.contains_key(f)) {
        return Ok(false);
    }
    for (file, sha) in &marker.files {
        let path = dir.join(file);
        if !path.exists() || download::sha256_file(&path)? != *sha {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The verified release file in the cache, downloaded (or copied from the mirror) if needed.
pub fn cached(plan: &Plan) -> anyhow::Result<PathBuf> {
    let a = &plan.artifact;
    let path = plan.cache_dir.join("sha256").join(&a.sha256);
    if path.exists() {
        // The cache is re-verified: a corrupted entry is replaced, never used.
        if download::sha256_file(&path)? == a.sha256 {
            ui::debug(&format!("{} {}: cached at {}", a.name, a.version, path.display()));
            return Ok(path);
        }
        fs::remove_file(&path).with_context(|| format!("removing corrupted cache entry {}", path.display()))?;
    }
    ui::info(&format!("fetching {} {} from {}", a.name, a.version, plan.source));
    download::fetch_verified(&plan.source, &a.sha256, &path, a.file_name())?;
    Ok(path)
}

/// Downloads (or reuses), verifies, extracts and installs; then renames into place.
pub fn apply(plan: &Plan) -> anyhow::Result<()> {
    let a = &plan.artifact;
    let archive = cached(plan)?;
    let parent = plan.install_dir.parent().context("install directory has no parent")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}-{}.partial-", a.name, a.version))
        .tempdir_in(parent)
        .with_context(|| format!("creating a temporary directory in {}", parent.display()))?;
    let files = extract(&archive, a, tmp.path())?;
    let marker = Marker { name: a.name.clone(), version: a.version.clone(), archive_sha256: a.sha256.clone(), files };
    let marker_json = serde_json::to_vec_pretty(&marker)?;
    crate::files::write_atomic(&tmp.path().join(MARKER), &marker_json, 0o644, None)?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))?;
    replace_dir(&tmp.keep(), &plan.install_dir)
}

/// Renames `new` onto `dest`, moving an existing (broken) `dest` aside first.
fn replace_dir(new: &Path, dest: &Path) -> anyhow::Result<()> {
    if dest.exists() {
        let trash = dest.with_file_name(format!(
            ".{}.old-{}",
            dest.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        fs::rename(dest, &trash).with_context(|| format!("moving the broken install {} aside", dest.display()))?;
        fs::rename(new, dest).with_context(|| format!("renaming {} to {}", new.display(), dest.display()))?;
        fs::remove_dir_all(&trash).with_context(|| format!("removing {}", trash.display()))?;
    } else {
        fs::rename(new, dest).with_context(|| format!("renaming {} to {}", new.display(), dest.display()))?;
    }
    let parent = dest.parent().unwrap_or(Path::new("/"));
    File::open(parent).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", parent.display()))
}

fn unsafe_entry(archive: &Path, entry: &Path) -> anyhow::Error {
    refused(format!(
        "{} holds an entry with an unsafe path `{}` (absolute or with `..`): refusing to install anything from it",
        archive.display(),
        entry.display()
    ))
}

fn is_safe(path: &Path) -> bool {
    path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Writes the wanted programs of `archive` into `dir`; returns name -> SHA-256.
fn extract(archive: &Path, a: &Artifact, dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut found = BTreeMap::new();
    let mut all_names = Vec::new();
    let mut take = |name: &str, reader: &mut dyn io::Read| -> anyhow::Result<()> {
        if !a.files.iter().any(|f| f == name) {
            return Ok(());
        }
        if found.contains_key(name) {
            anyhow::bail!("{} holds `{name}` twice: cannot tell which to install", archive.display());
        }
        let dest = dir.join(name);
        let mut out = File::create(&dest).with_context(|| format!("creating {}", dest.display()))?;
        io::copy(reader, &mut out).with_context(|| format!("extracting {name} from {}", archive.display()))?;
        out.set_permissions(fs::Permissions::from_mode(0o755))?;
        out.sync_all()?;
        found.insert(name.to_string(), download::sha256_file(&dest)?);
        Ok(())
    };
    let open = || File::open(archive).with_context(|| format!("opening {}", archive.display()));
    match a.format {
        ArchiveFormat::Binary => take(&a.files[0], &mut open()?)?,
        ArchiveFormat::TarGz => {
            // First pass: every path must be safe, or nothing is extracted.
            let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(open()?));
            for entry in tar.entries().with_context(|| format!("reading {}", archive.display()))? {
                let entry = entry.with_context(|| format!("reading {}", archive.display()))?;
                let path = entry.path()?.into_owned();
                if !is_safe(&path) {
                    return Err(unsafe_entry(archive, &path));
                }
            }
            let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(open()?));
            for entry in tar.entries()? {
                let mut entry = entry?;
                let path = entry.path()?.into_owned();
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                all_names.push(path.display().to_string());
                if entry.header().entry_type().is_file() {
                    take(&name, &mut entry)?;
                }
            }
        }
        ArchiveFormat::Zip => {
            let mut zip = zip::ZipArchive::new(open()?)
                .with_context(|| format!("reading {} as a zip file", archive.display()))?;
            for i in 0..zip.len() {
                let mut file = zip.by_index(i)?;
                let Some(path) = file.enclosed_name() else {
                    return Err(unsafe_entry(archive, Path::new(&*String::from_utf8_lossy(file.name_raw()))));
                };
                all_names.push(path.display().to_string());
                if file.is_file() {
                    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    take(&name, &mut file)?;
                }
            }
        }
    }
    let missing: Vec<&String> = a.files.iter().filter(|f| !found.contains_key(*f)).collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "{} ({} {}) has no {}; it holds: {}. Set `files` in [artifacts.{}] to the programs it ships",
            a.file_name(),
            a.name,
            a.version,
            missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
            all_names.join(", "),
            a.name
        );
    }
    Ok(found)
}

/// An offline bundle's manifest (`manifest.json` beside the files).
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub artifacts: Vec<ManifestEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub name: String,
    pub version: String,
    pub file: String,
    pub sha256: String,
    /// Where it came from, credentials masked (the manifest is world-readable).
    pub url: String,
}

/// `hanode fetch --dest DIR`: every artifact of the site file, verified, into DIR, with a
/// manifest and a SHA256SUMS that `sha256sum -c` reads. DIR then serves as `install.mirror`.
pub fn fetch_bundle(site: &Site, mirror: Option<&str>, dest: &Path) -> anyhow::Result<Manifest> {
    if site.artifacts.is_empty() {
        return Err(crate::error::bad_input(format!(
            "{} pins no artifacts: nothing to fetch; add [artifacts.NAME] tables (`hanode pin`)",
            site.path.display()
        )));
    }
    fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut manifest = Manifest { artifacts: Vec::new() };
    for a in &site.artifacts {
        let path = dest.join(a.file_name());
        if path.exists() && download::sha256_file(&path)? == a.sha256 {
            ui::info(&format!("{} {}: {} is already there and verified", a.name, a.version, path.display()));
        } else {
            let src = source(a, mirror);
            ui::info(&format!("fetching {} {} from {src}", a.name, a.version));
            download::fetch_verified(&src, &a.sha256, &path, a.file_name())?;
        }
        manifest.artifacts.push(ManifestEntry {
            name: a.name.clone(),
            version: a.version.clone(),
            file: a.file_name().into(),
            sha256: a.sha256.clone(),
            url: crate::config::kinds::masked(&a.url),
        });
    }
    let sums: String = manifest.artifacts.iter().map(|e| format!("{}  {}\n", e.sha256, e.file)).collect();
    crate::files::write_atomic(&dest.join("SHA256SUMS"), sums.as_bytes(), 0o644, None)?;
    crate::files::write_atomic(&dest.join("manifest.json"), &serde_json::to_vec_pretty(&manifest)?, 0o644, None)?;
    Ok(manifest)
}
