//! Files hanode manages: observing them against what they should be, and writing them
//! atomically (temp file in the same directory, fsync, rename, fsync the directory).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::unistd::{Gid, Group, Uid, User};

/// The most hanode reads of a site or secrets file: far more than a real one holds, and a
/// bound for a path like /dev/zero that would otherwise be read until memory runs out.
pub const INPUT_CAP: u64 = 1 << 20;

/// Reads an input file (site, secrets) as text; one larger than [`INPUT_CAP`] is an error.
pub fn read_input(path: &Path) -> std::io::Result<String> {
    // A FIFO would block the run until someone writes to it.
    if fs::metadata(path)?.file_type().is_fifo() {
        let msg = "a named pipe, not a file: give the file itself";
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, msg));
    }
    read_capped(fs::File::open(path)?)
}

/// [`read_input`] of a file already open (and checked), or of a response.
pub fn read_capped(input: impl Read) -> std::io::Result<String> {
    let mut text = String::new();
    input.take(INPUT_CAP + 1).read_to_string(&mut text)?;
    if text.len() as u64 > INPUT_CAP {
        let msg =
            format!("larger than {} KiB, more than any hanode input holds: is it the right file?", INPUT_CAP >> 10);
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, msg));
    }
    Ok(text)
}

/// A file mode in JSON as people write it: `"0640"`, not 416.
pub fn octal<S: serde::Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

/// What a file should be. `path` is the path on the target host (absolute).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileSpec {
    pub path: PathBuf,
    #[serde(skip)]
    pub contents: Vec<u8>,
    #[serde(serialize_with = "octal")]
    pub mode: u32,
    pub owner: String,
    pub group: String,
    /// Contents are never shown in plans or logs.
    pub secret: bool,
}

impl FileSpec {
    pub fn new(path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        FileSpec {
            path: path.into(),
            contents: contents.into(),
            mode,
            owner: "root".into(),
            group: "root".into(),
            secret: false,
        }
    }

    pub fn owned_by(mut self, owner: &str, group: &str) -> Self {
        self.owner = owner.into();
        self.group = group.into();
        self
    }

    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
}

/// How a file differs from its spec; `None` when it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiff {
    pub summary: String,
    /// Unified diff of the contents (absent for secrets and when only metadata differs).
    pub diff: Option<String>,
}

pub fn lookup_ids(owner: &str, group: &str) -> anyhow::Result<(Uid, Gid)> {
    let user = User::from_name(owner).with_context(|| format!("looking up user {owner}"))?;
    let user = user.with_context(|| {
        format!("user {owner} does not exist on this host; it is created with the package that needs it")
    })?;
    let grp = Group::from_name(group).with_context(|| format!("looking up group {group}"))?;
    let grp = grp.with_context(|| format!("group {group} does not exist on this host"))?;
    Ok((user.uid, grp.gid))
}

/// Compares the file at `real` (the spec's path under the host root) with the spec.
pub fn observe(real: &Path, spec: &FileSpec) -> anyhow::Result<Option<FileDiff>> {
    let shown = spec.path.display();
    let meta = match metadata_no_symlink(real, false)? {
        Some(m) => m,
        None => {
            let diff =
                (!spec.secret).then(|| unified_diff("", &String::from_utf8_lossy(&spec.contents), &shown.to_string()));
            let summary = format!(
                "create {shown} ({}:{} {:04o}{})",
                spec.owner,
                spec.group,
                spec.mode,
                if spec.secret { ", secret" } else { "" }
            );
            return Ok(Some(FileDiff { summary, diff }));
        }
    };
    if !meta.is_file() {
        anyhow::bail!("{} exists but is not a regular file; move it aside so hanode can write it", real.display());
    }
    let current = fs::read(real).with_context(|| format!("reading {}", real.display()))?;
    let mut parts = Vec::new();
    let mut diff = None;
    if current != spec.contents {
        parts.push("contents".to_string());
        if !spec.secret {
            diff = Some(unified_diff(
                &String::from_utf8_lossy(&current),
                &String::from_utf8_lossy(&spec.contents),
                &shown.to_string(),
            ));
        }
    }
    let mode = meta.mode() & 0o7777;
    if mode != spec.mode {
        parts.push(format!("mode {mode:04o} -> {:04o}", spec.mode));
    }
    let (uid, gid) = lookup_ids(&spec.owner, &spec.group)?;
    if meta.uid() != uid.as_raw() || meta.gid() != gid.as_raw() {
        parts.push(format!("owner {}:{} -> {}:{}", meta.uid(), meta.gid(), spec.owner, spec.group));
    }
    Ok((!parts.is_empty()).then(|| FileDiff { summary: format!("update {shown}: {}", parts.join(", ")), diff }))
}

pub fn unified_diff(old: &str, new: &str, name: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{name} (now)"), &format!("{name} (planned)"))
        .to_string()
}

/// Writes `contents` to `path` so that readers see the old file or the new one, never a part.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32, ids: Option<(Uid, Gid)>) -> anyhow::Result<()> {
    let tmp = staged(path, contents, mode, ids)?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming a temporary file onto {}", path.display()))?;
    sync_parent(path)
}

/// Writes a file at `path` that must not exist yet (exit 3 if it does). The name is taken with
/// no-clobber semantics (renameat2 RENAME_NOREPLACE, else link), so a file that appears while
/// this one is written is never replaced.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = staged(path, contents, mode, None)?;
    match tmp.persist_noclobber(path) {
        Ok(_) => sync_parent(path),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Err(crate::error::refused(format!(
            "{} exists: hanode does not overwrite it; remove it first if you mean to replace it",
            path.display()
        ))),
        Err(e) => Err(e.error).with_context(|| format!("moving a temporary file to {}", path.display())),
    }
}

/// A synced temporary file beside `path` holding `contents`, with its final mode and owner.
fn staged(path: &Path, contents: &[u8], mode: u32, ids: Option<(Uid, Gid)>) -> anyhow::Result<tempfile::NamedTempFile> {
    let dir = path.parent().with_context(|| format!("{} has no parent directory", path.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".hanode-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    // Mode and owner are set before the contents go in, so a secret is never readable by others.
    let file = tmp.as_file();
    file.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode on a temporary file in {}", dir.display()))?;
    if let Some((uid, gid)) = ids {
        nix::unistd::fchown(file, Some(uid), Some(gid))
            .with_context(|| format!("changing the owner of a temporary file in {}", dir.display()))?;
    }
    tmp.write_all(contents).with_context(|| format!("writing {}", path.display()))?;
    tmp.as_file().sync_all().with_context(|| format!("syncing {}", path.display()))?;
    Ok(tmp)
}

fn sync_parent(path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().with_context(|| format!("{} has no parent directory", path.display()))?;
    fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing directory {}", dir.display()))
}

/// Replaces `link` with a symlink to `target`, atomically (a new link renamed over the old).
pub fn link(link: &Path, target: &Path) -> anyhow::Result<()> {
    let dir = link.parent().with_context(|| format!("{} has no parent directory", link.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".hanode-link-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).with_context(|| format!("creating a link in {}", dir.display()))?;
    fs::rename(&tmp, link).with_context(|| format!("replacing {}", link.display()))
}

/// A new directory, mode 0700, under `parent` (made 0700 if missing), removed when dropped:
/// for copies of secrets a child process reads. Its name holds this process's ID, so the
/// leftovers of runs killed before removing theirs are recognised and removed first.
pub fn private_dir(parent: &Path, prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    fs::create_dir_all(parent).with_context(|| format!("creating directory {}", parent.display()))?;
    set_owner_mode(parent, true, 0o700, Uid::effective(), Gid::effective())?;
    let entries = fs::read_dir(parent).with_context(|| format!("listing {}", parent.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.strip_prefix(&format!("{prefix}-")).and_then(|r| r.split('-').next());
        if pid.is_some_and(|p| !Path::new("/proc").join(p).exists()) {
            fs::remove_dir_all(entry.path())
                .with_context(|| format!("removing {}, left by an earlier run", entry.path().display()))?;
        }
    }
    tempfile::Builder::new()
        .prefix(&format!("{prefix}-{}-", std::process::id()))
        .permissions(fs::Permissions::from_mode(0o700))
        .tempdir_in(parent)
        .with_context(|| format!("creating a private directory in {}", parent.display()))
}

/// Creates `path` (and its parents) if missing, then sets its owner and mode.
pub fn ensure_dir(path: &Path, mode: u32, owner: &str, group: &str) -> anyhow::Result<()> {
    fs::create_dir_all(path).with_context(|| format!("creating directory {}", path.display()))?;
    let (uid, gid) = lookup_ids(owner, group)?;
    set_owner_mode(path, true, mode, uid, gid)
}

/// Sets the owner and mode of the directory (or file) at `path` through a descriptor opened
/// with `O_NOFOLLOW`: a symlink put there by a less privileged user (postgres replacing its data
/// directory with a link to /etc) is refused, never followed to give its target away.
fn set_owner_mode(path: &Path, dir: bool, mode: u32, uid: Uid, gid: Gid) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut flags = nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC;
    if dir {
        flags |= nix::libc::O_DIRECTORY;
    }
    let file = match fs::OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Ok(f) => f,
        // ELOOP, or ENOTDIR with O_DIRECTORY: either way a link is the reason.
        Err(_) if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) => {
            return Err(symlink_refused(path, dir));
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    nix::unistd::fchown(&file, Some(uid), Some(gid))
        .with_context(|| format!("changing the owner of {}", path.display()))?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

/// The metadata of `path` itself, `None` when it does not exist; a symlink is refused (exit 3)
/// where hanode expects a directory or file whose owner it decides.
pub fn metadata_no_symlink(path: &Path, dir: bool) -> anyhow::Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(symlink_refused(path, dir)),
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading the metadata of {}", path.display())),
    }
}

fn symlink_refused(path: &Path, dir: bool) -> anyhow::Error {
    let what = if dir { "a directory" } else { "a file" };
    crate::error::refused(format!(
        "{} is a symbolic link where hanode expects {what}: it will not change the owner or mode through it; \
         check who made it (ls -l {}), remove the link and run again",
        path.display(),
        path.display()
    ))
}

/// Writes a spec's file at `real` (its path under the host root).
pub fn apply(real: &Path, spec: &FileSpec) -> anyhow::Result<()> {
    let ids = lookup_ids(&spec.owner, &spec.group)?;
    write_atomic(real, &spec.contents, spec.mode, Some(ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> (String, String) {
        let u = User::from_uid(Uid::effective()).unwrap().unwrap();
        let g = Group::from_gid(Gid::effective()).unwrap().unwrap();
        (u.name, g.name)
    }

    #[test]
    fn write_then_observe_is_clean() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("etc/hanode/x.conf");
        let (u, g) = me();
        let spec = FileSpec::new("/etc/hanode/x.conf", "a\nb\n", 0o640).owned_by(&u, &g);
        let d = observe(&real, &spec).unwrap().unwrap();
        assert!(d.summary.starts_with("create /etc/hanode/x.conf"), "{}", d.summary);
        assert!(d.diff.unwrap().contains("+b"));
        apply(&real, &spec).unwrap();
        assert_eq!(fs::metadata(&real).unwrap().mode() & 0o7777, 0o640);
        assert_eq!(observe(&real, &spec).unwrap(), None);
        let spec2 = FileSpec { contents: b"a\nc\n".to_vec(), ..spec };
        let d = observe(&real, &spec2).unwrap().unwrap();
        assert!(d.diff.as_deref().unwrap().contains("-b\n+c"), "{:?}", d.diff);
        // no temp files left behind
        assert_eq!(fs::read_dir(real.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn secret_contents_are_never_diffed() {
        let dir = tempfile::tempdir().unwrap();
        let (u, g) = me();
        let spec = FileSpec::new("/s", "password=xyz", 0o600).owned_by(&u, &g).secret();
        let d = observe(&dir.path().join("s"), &spec).unwrap().unwrap();
        assert!(d.diff.is_none() && !d.summary.contains("xyz"));
    }

    #[test]
    fn ownership_is_never_changed_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let (u, g) = me();
        let target = dir.path().join("etc");
        fs::create_dir(&target).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o751)).unwrap();
        let owner = fs::metadata(&target).unwrap().uid();
        let link = dir.path().join("pgdata");
        std::os::unix::fs::symlink(&target, &link).unwrap();

        let err = ensure_dir(&link, 0o700, &u, &g).unwrap_err();
        assert_eq!(crate::error::kind_of(&err), crate::error::Kind::Refused);
        assert!(err.to_string().contains(&format!("{} is a symbolic link", link.display())), "{err}");
        let err = metadata_no_symlink(&link, true).unwrap_err();
        assert_eq!(crate::error::kind_of(&err), crate::error::Kind::Refused);
        let meta = fs::metadata(&target).unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o751, owner));

        // A file spec over a symlink is refused too, before anything is written.
        let file_link = dir.path().join("x.conf");
        std::os::unix::fs::symlink(target.join("passwd"), &file_link).unwrap();
        let err = observe(&file_link, &FileSpec::new("/x.conf", "x", 0o644)).unwrap_err();
        assert_eq!(crate::error::kind_of(&err), crate::error::Kind::Refused);

        // A real directory gets its mode.
        ensure_dir(&target, 0o700, &u, &g).unwrap();
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o7777, 0o700);
    }

    #[test]
    fn inputs_are_read_up_to_a_cap() {
        let err = read_input(Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("larger than 1024 KiB"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.toml");
        fs::write(&path, "x".repeat(INPUT_CAP as usize)).unwrap();
        assert_eq!(read_input(&path).unwrap().len() as u64, INPUT_CAP);
    }

    #[test]
    fn private_dirs_are_0700_and_leftovers_of_dead_runs_go() {
        let root = tempfile::tempdir().unwrap();
        let parent = root.path().join("run/hanode");
        // Left by a killed run (no process has this ID: above the kernel's pid_max), and another's.
        let dead = parent.join("patroni-4194305-abc");
        let alive = parent.join(format!("patroni-{}-live", std::os::unix::process::parent_id()));
        let other = parent.join("unrelated");
        for d in [&dead, &alive, &other] {
            fs::create_dir_all(d).unwrap();
        }
        let dir = private_dir(&parent, "patroni").unwrap();
        assert_eq!(fs::metadata(&parent).unwrap().mode() & 0o7777, 0o700);
        assert_eq!(fs::metadata(dir.path()).unwrap().mode() & 0o7777, 0o700);
        assert!(!dead.exists() && alive.exists() && other.exists());
        let kept = dir.path().to_path_buf();
        drop(dir);
        assert!(!kept.exists());
    }

    #[test]
    fn a_directory_in_the_way_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let spec = FileSpec::new("/d", "x", 0o644);
        let err = observe(dir.path(), &spec).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }
}
