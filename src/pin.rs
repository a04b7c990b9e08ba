//! `hanode pin NAME VERSION`: reads upstream's published checksum file for a release and
//! writes `[artifacts.NAME]` (version, url, sha256) into the site file, for review.
//!
//! The checksum comes from the file upstream publishes beside each release (etcd's
//! SHA256SUMS, vip-manager's checksums.txt, HashiCorp's consul_X_SHA256SUMS), fetched over
//! TLS. hanode does not check HashiCorp's GPG signature of that file: review the diff.

use std::path::Path;

use anyhow::Context;

use crate::artifacts::Kind;
use crate::error::bad_input;
use crate::{download, files, ui};

/// A release's file and the checksum file that lists it.
#[derive(Debug, PartialEq, Eq)]
pub struct Release {
    pub dir_url: String,
    pub file: String,
    pub sums_file: String,
}

/// Upstream's release layout (see reference.md), for amd64 or arm64.
pub fn release(kind: Kind, version: &str, arch: &str) -> anyhow::Result<Release> {
    let name = kind.name();
    let v = version.strip_prefix('v').unwrap_or(version);
    let (go_arch, vip_arch) = match arch {
        "x86_64" | "amd64" => ("amd64", "x86_64"),
        "aarch64" | "arm64" => ("arm64", "arm64"),
        other => {
            return Err(bad_input(format!("no {name} release for architecture {other}")));
        }
    };
    Ok(match kind {
        Kind::Etcd => Release {
            dir_url: format!("https://github.com/etcd-io/etcd/releases/download/v{v}"),
            file: format!("etcd-v{v}-linux-{go_arch}.tar.gz"),
            sums_file: "SHA256SUMS".into(),
        },
        Kind::VipManager => Release {
            dir_url: format!("https://github.com/cybertec-postgresql/vip-manager/releases/download/v{v}"),
            file: format!("vip-manager_{v}_Linux_{vip_arch}.tar.gz"),
            sums_file: "checksums.txt".into(),
        },
        Kind::Consul => Release {
            dir_url: format!("https://releases.hashicorp.com/consul/{v}"),
            file: format!("consul_{v}_linux_{go_arch}.zip"),
            sums_file: format!("consul_{v}_SHA256SUMS"),
        },
    })
}

/// The SHA-256 of `file` in a `sha256sum`-style listing (`<hex>  <file>` or `<hex> *<file>`).
pub fn find_sum(listing: &str, file: &str) -> Option<String> {
    listing.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let (hex, name) = (parts.next()?, parts.next()?);
        let name = name.trim_start_matches('*');
        let name = name.rsplit('/').next().unwrap_or(name);
        (name == file && hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| hex.to_ascii_lowercase())
    })
}

/// Fetches the checksum and writes the pin into `site_path`; `base_url` replaces upstream's
/// release directory (a mirror of the release files).
pub fn pin(site_path: &Path, kind: Kind, version: &str, base_url: Option<&str>) -> anyhow::Result<()> {
    let name = kind.name();
    let rel = release(kind, version, std::env::consts::ARCH)?;
    let dir = base_url.map_or(rel.dir_url.clone(), |b| b.trim_end_matches('/').to_string());
    let sums_url = format!("{dir}/{}", rel.sums_file);
    let url = format!("{dir}/{}", rel.file);
    // Messages show a mirror's URL without its credentials.
    let shown = crate::config::kinds::masked(&sums_url);
    ui::info(&format!("reading {shown}"));
    let resp = download::client()?
        .get(&sums_url)
        .send()
        .map_err(|e| e.without_url())
        .with_context(|| format!("GET {shown}"))?;
    if !resp.status().is_success() {
        anyhow::bail!("GET {shown}: HTTP {}: is {name} {version} released? Check the version", resp.status());
    }
    let listing = crate::files::read_capped(resp).with_context(|| format!("reading {shown}"))?;
    let sha = find_sum(&listing, &rel.file)
        .with_context(|| format!("{shown} lists no {}; is this the right version?", rel.file))?;

    let text = crate::files::read_input(site_path)
        .map_err(|e| bad_input(format!("cannot read the site file {}: {e}", site_path.display())))?;
    let mut doc: toml_edit::DocumentMut =
        text.parse().map_err(|e| bad_input(format!("{}: {e}", site_path.display())))?;
    let artifacts = doc.entry("artifacts").or_insert(toml_edit::table());
    let artifacts =
        artifacts.as_table_mut().with_context(|| format!("{}: `artifacts` is not a table", site_path.display()))?;
    artifacts.set_implicit(true);
    let mut t = toml_edit::Table::new();
    t.decor_mut().set_prefix(format!("\n# pinned by `hanode pin {name} {version}` from {shown}\n"));
    t["version"] = toml_edit::value(version.strip_prefix('v').unwrap_or(version));
    t["url"] = toml_edit::value(url);
    t["sha256"] = toml_edit::value(sha.clone());
    artifacts.insert(name, toml_edit::Item::Table(t));
    let new = doc.to_string();
    if new == text {
        ui::info(&format!("{} already pins {name} {version}", site_path.display()));
        return Ok(());
    }
    // The result must still be a valid site file.
    crate::config::Site::parse(site_path, &new)?;
    ui::change(
        "-",
        &format!("pin {name} {version} (sha256 {sha}) in {}", site_path.display()),
        Some(&files::unified_diff(&text, &new, &site_path.display().to_string())),
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(site_path)?.permissions()) & 0o7777;
    files::write_atomic(site_path, new.as_bytes(), mode, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_layouts() {
        let r = release(Kind::Etcd, "v3.5.17", "x86_64").unwrap();
        assert_eq!(
            format!("{}/{}", r.dir_url, r.file),
            "https://github.com/etcd-io/etcd/releases/download/v3.5.17/etcd-v3.5.17-linux-amd64.tar.gz"
        );
        let r = release(Kind::VipManager, "2.8.0", "x86_64").unwrap();
        assert_eq!(r.file, "vip-manager_2.8.0_Linux_x86_64.tar.gz");
        let r = release(Kind::Consul, "1.20.1", "aarch64").unwrap();
        assert_eq!(
            (r.file.as_str(), r.sums_file.as_str()),
            ("consul_1.20.1_linux_arm64.zip", "consul_1.20.1_SHA256SUMS")
        );
    }

    #[test]
    fn finds_a_sum_in_either_style() {
        let h = "a".repeat(64);
        let listing = format!("{}  other.tar.gz\n{h} *etcd-v3.5.17-linux-amd64.tar.gz\n", "b".repeat(64));
        assert_eq!(find_sum(&listing, "etcd-v3.5.17-linux-amd64.tar.gz"), Some(h));
        assert_eq!(find_sum(&listing, "nope"), None);
    }
}
