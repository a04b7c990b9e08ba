//! OS detection from os-release and the per-distribution profiles in `profiles/`.
//!
//! Profiles are compiled in; a directory given by `--profiles-dir` may replace a built-in one
//! (same `id`) or add a new distribution without rebuilding hanode.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::error::bad_input;

const BUILT_IN: &[(&str, &str)] = &[
    ("debian-12.toml", include_str!("../profiles/debian-12.toml")),
    ("debian-13.toml", include_str!("../profiles/debian-13.toml")),
    ("redos-7.3.toml", include_str!("../profiles/redos-7.3.toml")),
    ("redos-8.toml", include_str!("../profiles/redos-8.toml")),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageManager {
    Apt,
    Dnf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub id: String,
    pub name: String,
    /// os-release `ID`.
    pub os_id: String,
    /// os-release `VERSION_ID`s this profile serves: "7.3" matches "7.3" and "7.3.2".
    pub version_ids: Vec<String>,
    #[serde(default)]
    pub codename: Option<String>,
    pub package_manager: PackageManager,
    pub postgres: PostgresProfile,
    pub paths: Paths,
    pub packages: Packages,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresProfile {
    pub default_version: u32,
    pub distro_versions: Vec<u32>,
    pub packages: Vec<String>,
    pub bin_dir: String,
    pub user: String,
    pub home: String,
    pub data_dir: String,
    pub group: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paths {
    pub data_mount: String,
    pub wal_mount: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Packages {
    pub lvm: Vec<String>,
    pub filesystems: Vec<String>,
    pub selinux_tools: Vec<String>,
    pub python: Vec<String>,
    /// The distribution's Patroni package (`patroni.install = "package"`); empty if none.
    pub patroni: Vec<String>,
    /// With that package, the Python client of each DCS: the package depends on one of them
    /// only (trixie's picks Consul's), and Patroni cannot reach etcd without its own.
    #[serde(default)]
    pub patroni_etcd: Vec<String>,
    #[serde(default)]
    pub patroni_consul: Vec<String>,
}

impl Profile {
    pub fn matches(&self, os: &OsRelease) -> bool {
        os.id == self.os_id
            && self.version_ids.iter().any(|v| os.version_id == *v || os.version_id.starts_with(&format!("{v}.")))
    }

    /// Expands `{version}` in a profile value.
    pub fn expand(template: &str, pg_version: u32) -> String {
        template.replace("{version}", &pg_version.to_string())
    }
}

/// All profiles: the built-in ones, then those of `dir` (replacing built-ins with the same id).
pub fn load_all(dir: Option<&Path>) -> anyhow::Result<Vec<Profile>> {
    let mut by_id = BTreeMap::new();
    for (name, text) in BUILT_IN {
        let p: Profile = toml::from_str(text).with_context(|| format!("built-in profile {name} is invalid"))?;
        by_id.insert(p.id.clone(), p);
    }
    if let Some(dir) = dir {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| bad_input(format!("cannot read the profiles directory {}: {e}", dir.display())))?;
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| bad_input(format!("cannot read profile {}: {e}", path.display())))?;
            let p: Profile = toml::from_str(&text)
                .map_err(|e| bad_input(format!("profile {}: {}", path.display(), e.to_string().trim_end())))?;
            by_id.insert(p.id.clone(), p);
        }
    }
    Ok(by_id.into_values().collect())
}

/// The fields of os-release that hanode uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OsRelease {
    pub id: String,
    pub version_id: String,
    pub pretty_name: String,
}

impl OsRelease {
    /// Parses os-release(5): `KEY=value`, the value bare or in single or double quotes.
    pub fn parse(text: &str) -> OsRelease {
        let mut os = OsRelease::default();
        for line in text.lines() {
            let Some((key, raw)) = line.trim().split_once('=') else {
                continue;
            };
            let value = unquote(raw.trim());
            match key.trim() {
                "ID" => os.id = value,
                "VERSION_ID" => os.version_id = value,
                "PRETTY_NAME" => os.pretty_name = value,
                _ => {}
            }
        }
        os
    }

    /// Reads `<root>/etc/os-release`, falling back to `<root>/usr/lib/os-release`.
    pub fn read(root: &Path) -> anyhow::Result<(OsRelease, std::path::PathBuf)> {
        for rel in ["etc/os-release", "usr/lib/os-release"] {
            let path = root.join(rel);
            match std::fs::read_to_string(&path) {
                Ok(text) => return Ok((OsRelease::parse(&text), path)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            }
        }
        Err(bad_input(format!(
            "cannot tell which OS this is: neither {0}/etc/os-release nor {0}/usr/lib/os-release exists",
            root.display()
        )))
    }
}

fn unquote(v: &str) -> String {
    let inner = if v.len() >= 2 && (v.starts_with('"') && v.ends_with('"') || v.starts_with('\'') && v.ends_with('\''))
    {
        &v[1..v.len() - 1]
    } else {
        v
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

/// The profile for this OS, or exit 2 with the list of supported systems.
pub fn detect<'p>(os: &OsRelease, source: &Path, profiles: &'p [Profile]) -> anyhow::Result<&'p Profile> {
    profiles.iter().find(|p| p.matches(os)).ok_or_else(|| {
        let supported: Vec<String> = profiles.iter().map(|p| format!("{} (ID={} VERSION_ID={})", p.name, p.os_id, p.version_ids.join("|"))).collect();
        bad_input(format!(
            "unsupported OS: ID={:?} VERSION_ID={:?} (from {}); hanode supports: {}; for another system add a profile with --profiles-dir",
            os.id,
            os.version_id,
            source.display(),
            supported.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile_for(text: &str) -> Option<String> {
        let all = load_all(None).unwrap();
        detect(&OsRelease::parse(text), Path::new("os-release"), &all).ok().map(|p| p.id.clone())
    }

    #[test]
    fn detects_supported_systems() {
        assert_eq!(profile_for("ID=debian\nVERSION_ID=\"12\"\n").as_deref(), Some("debian-12"));
        assert_eq!(profile_for("ID=debian\nVERSION_ID=\"13\"\n").as_deref(), Some("debian-13"));
        assert_eq!(profile_for("ID=\"redos\"\nVERSION_ID=\"7.3.2\"\n").as_deref(), Some("redos-7.3"));
        assert_eq!(profile_for("ID=redos\nVERSION_ID=7.3\n").as_deref(), Some("redos-7.3"));
        assert_eq!(profile_for("ID='redos'\nVERSION_ID=\"8.0.2\"\n").as_deref(), Some("redos-8"));
    }

    #[test]
    fn refuses_others_listing_the_supported() {
        assert_eq!(profile_for("ID=ubuntu\nVERSION_ID=\"22.04\"\n"), None);
        assert_eq!(profile_for("ID=redos\nVERSION_ID=\"7.30\"\n"), None);
        let all = load_all(None).unwrap();
        let err = detect(&OsRelease::parse("ID=ubuntu"), Path::new("/etc/os-release"), &all).unwrap_err();
        assert_eq!(crate::error::kind_of(&err), crate::error::Kind::BadInput);
        assert!(err.to_string().contains("RED OS 8"), "{err}");
    }

    #[test]
    fn a_directory_profile_replaces_a_built_in() {
        let dir = tempfile::tempdir().unwrap();
        let text = BUILT_IN[0].1.replace("default_version = 15", "default_version = 16");
        std::fs::write(dir.path().join("mine.toml"), text).unwrap();
        let all = load_all(Some(dir.path())).unwrap();
        let deb = all.iter().find(|p| p.id == "debian-12").unwrap();
        assert_eq!(deb.postgres.default_version, 16);
        assert_eq!(all.len(), BUILT_IN.len());
    }
}
