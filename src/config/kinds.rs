//! What each kind of string in the site file may be, decided once, by what it becomes: a path
//! in fstab and unit files, an interface name, a version in a directory name, a mount option, an
//! mkfs argument, a URL. Everything is checked when the file loads (exit 2 naming the key), so a
//! value can never turn into an extra line, an extra option or another path on the host.

use std::net::IpAddr;
use std::path::PathBuf;

/// Directories a volume must never be mounted over nor inside: the system's own, what the host
/// needs to boot and run, other users' and root's own files, and directories anyone may write
/// to (a volume there, owned by postgres, would hand postgres what lies in them, or let a user
/// put a link where the mount point should be).
const SYSTEM_TREES: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/root",
    "/home",
    "/tmp",
    "/var/tmp",
    "/var/spool",
    "/var/mail",
    "/var/lib/hanode",
    "/var/cache/hanode",
];
/// Directories a volume must not be mounted over, though one may go inside them.
const SYSTEM_DIRS: &[&str] =
    &["/media", "/mnt", "/opt", "/srv", "/var", "/var/cache", "/var/lib", "/var/log", "/var/opt", "/var/local"];

/// Characters a path from the site file may hold. Wider sets buy nothing for a cluster's own
/// directories and each extra character is one more escaping rule in fstab, units and YAML.
fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/._-+@".contains(c)
}

/// An absolute, normalised path: no `.`, `..` or empty segments, no trailing `/`, only
/// `A-Z a-z 0-9 / . _ - + @`, at most 255 bytes.
pub fn abs_path(s: &str) -> Result<PathBuf, String> {
    if !s.starts_with('/') {
        return Err(format!("`{}` is not an absolute path (it must start with /)", shown(s)));
    }
    if let Some(c) = s.chars().find(|c| !path_char(*c)) {
        return Err(format!(
            "`{}` holds {}: a path here may use only letters, digits and / . _ - + @",
            shown(s),
            describe(c)
        ));
    }
    if s.len() > 255 {
        return Err(format!("the path is {} bytes long: 255 at most", s.len()));
    }
    if s != "/" && s[1..].split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return Err(format!("`{s}` is not a normalised path: write it without `.`, `..`, `//` or a trailing /"));
    }
    Ok(PathBuf::from(s))
}

/// A mount point for a volume: an [`abs_path`] that is not `/` nor a system directory, and
/// not inside the system's own trees.
pub fn mount_point(s: &str) -> Result<PathBuf, String> {
    let p = abs_path(s)?;
    if s == "/" || SYSTEM_DIRS.contains(&s) || SYSTEM_TREES.contains(&s) {
        return Err(format!(
            "`{s}` is a system directory: mounting a volume there hides what it holds; choose a directory of its own, e.g. /pgdata"
        ));
    }
    if let Some(t) = SYSTEM_TREES.iter().find(|t| s.starts_with(&format!("{t}/"))) {
        return Err(format!(
            "`{s}` is inside {t}, which belongs to the system: choose a directory of its own, e.g. /pgdata"
        ));
    }
    Ok(p)
}

/// Whether one mount point is the other or lies inside it (a volume would hide the other).
pub fn nested(a: &std::path::Path, b: &std::path::Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// A device path: `/dev/...`, normalised.
pub fn device(s: &str) -> Result<PathBuf, String> {
    if !s.starts_with("/dev/") || s.len() == 5 {
        return Err(format!("`{}` is not a device path: give /dev/sdX or /dev/disk/by-id/...", shown(s)));
    }
    abs_path(s).map_err(|e| format!("{e}; give /dev/sdX or /dev/disk/by-id/..."))
}

/// A network interface name by the kernel's rules (1 to 15 bytes, not `.` or `..`, no `/`,
/// `:` or white space), narrowed to letters, digits and `- _ .` (every name udev and
/// NetworkManager make fits).
pub fn interface(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{}` is not a network interface name: 1 to 15 letters, digits, `-`, `_` or `.` (e.g. \"eth0\", \"ens3\", \"bond0.100\")",
            shown(s)
        ))
    }
}

/// A release version, which becomes part of a directory name: `3.5.17`, `1.0.2`, `2.8.0-rc1`.
pub fn version(s: &str) -> Result<String, String> {
    let s = s.strip_prefix('v').unwrap_or(s);
    let ok = s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || ".-+_".contains(c))
        && !s.contains("..");
    if ok { Ok(s.to_string()) } else { Err(format!("`{}` is not a version (e.g. \"3.5.17\")", shown(s))) }
}

/// A program name inside a release archive, installed as a file of that name.
pub fn file_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("`{}` is not a plain program name (letters, digits, `-`, `_`, `.`, `+`; no directories)", shown(s)))
    }
}

/// One mount option: `noatime`, `commit=60`, `logbsize=256k`. No `,` (it would add options)
/// and no white space (it would add fstab fields).
pub fn mount_option(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "=_.-:+".contains(c));
    if !ok {
        return Err(format!(
            "`{}` is not one mount option: letters, digits and = _ . - : + only; give each option as its own list item",
            shown(s)
        ));
    }
    // These would change what is mounted where, let users mount or unmount the volume, or
    // override the SELinux label hanode's rules give it.
    let name = s.split('=').next().unwrap_or(s);
    if ["bind", "rbind", "move", "remount", "loop", "offset", "sizelimit", "x-systemd.automount"].contains(&name) {
        return Err(format!("mount option `{s}` changes what is mounted where: hanode mounts the volume itself"));
    }
    if ["user", "users", "owner", "group"].contains(&name) {
        return Err(format!("mount option `{s}` lets unprivileged users mount or unmount the volume"));
    }
    if ["context", "fscontext", "defcontext", "rootcontext"].contains(&name) {
        return Err(format!("mount option `{s}` overrides the SELinux labels hanode's rules give the volume"));
    }
    Ok(s.to_string())
}

/// The options mkfs.ext4 / mkfs.xfs take from the site file: tuning only. Options that name a
/// file or a device (`-d` for ext4, `-J`, `-l logdev=`), force an overwrite (`-f`, `-F`) or read
/// a configuration file are refused; values may not hold `/`.
pub fn mkfs_options(fs: super::Filesystem, opts: &[String]) -> Result<(), String> {
    // (flag, takes a value)
    let allowed: &[(&str, bool)] = match fs {
        super::Filesystem::Ext4 => &[
            ("-b", true),
            ("-C", true),
            ("-E", true),
            ("-G", true),
            ("-g", true),
            ("-i", true),
            ("-I", true),
            ("-j", false),
            ("-m", true),
            ("-N", true),
            ("-O", true),
            ("-T", true),
            ("-e", true),
        ],
        super::Filesystem::Xfs => &[
            ("-b", true),
            ("-d", true),
            ("-i", true),
            ("-l", true),
            ("-m", true),
            ("-n", true),
            ("-s", true),
            ("-K", false),
        ],
    };
    let mut it = opts.iter();
    while let Some(o) = it.next() {
        let Some((_, takes)) = allowed.iter().find(|(f, _)| f == o) else {
            let flags: Vec<&str> = allowed.iter().map(|(f, _)| *f).collect();
            return Err(format!(
                "mkfs.{} option `{}` is not allowed here: hanode passes only tuning options ({}), each flag and its value as separate list items",
                fs.name(),
                shown(o),
                flags.join(" ")
            ));
        };
        if *takes {
            let Some(v) = it.next() else {
                return Err(format!("mkfs option `{o}` needs a value as the next list item"));
            };
            let ok = !v.is_empty()
                && v.len() <= 128
                && v.chars().all(|c| c.is_ascii_alphanumeric() || "=,._:+-".contains(c));
            if !ok
                || v.starts_with('-')
                || v.contains("file")
                || v.contains("name=")
                || v.contains("logdev")
                || v.contains("rtdev")
            {
                return Err(format!(
                    "`{}` is not a value hanode passes to mkfs option `{o}`: letters, digits and = , . _ : + - only, naming no file or device",
                    shown(v)
                ));
            }
        }
    }
    Ok(())
}

/// An http(s) URL: a scheme, a host, no white space or control characters. Credentials in it
/// are allowed and never shown ([`masked`]).
pub fn url(s: &str) -> Result<reqwest::Url, String> {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{}` holds white space or a control character: it is not a URL", shown(&masked(s))));
    }
    let u = reqwest::Url::parse(s).map_err(|e| format!("`{}` is not a URL: {e}", masked(s)))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{}` is not an http(s) URL with a host", masked(s)));
    }
    Ok(u)
}

/// A URL path segment with its `%XX` escapes decoded; `None` if they do not decode to UTF-8.
pub fn percent_decoded(segment: &str) -> Option<String> {
    let b = segment.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex =
            b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A mirror of the release files: an http(s) base URL or an absolute directory.
pub fn mirror(s: &str) -> Result<String, String> {
    if s.starts_with('/') {
        abs_path(s).map(|_| s.to_string())
    } else {
        url(s).map(|_| s.to_string()).map_err(|e| format!("{e}; or give an absolute directory"))
    }
}

/// A URL for messages and plans: any password (and user) replaced by `***`.
pub fn masked(s: &str) -> String {
    match reqwest::Url::parse(s) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("***");
            let _ = u.set_password(None);
            u.to_string()
        }
        Ok(_) => s.to_string(),
        // Not a URL: hide anything that looks like credentials before an `@`.
        Err(_) => match (s.find("://"), s.rfind('@')) {
            (Some(i), Some(j)) if j > i => format!("{}***{}", &s[..i + 3], &s[j..]),
            _ => s.to_string(),
        },
    }
}

/// Serialises a URL masked (plans and reports in JSON): `#[serde(serialize_with = ...)]`.
pub fn serialize_masked<S: serde::Serializer>(url: &str, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&masked(url))
}

/// [`serialize_masked`] of an optional URL.
pub fn serialize_masked_opt<S: serde::Serializer>(url: &Option<String>, ser: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(u) => ser.serialize_some(&masked(u)),
        None => ser.serialize_none(),
    }
}

/// An address a member or the VIP may have: one host's own, reachable by others.
pub fn host_address(a: IpAddr) -> Result<IpAddr, String> {
    let bad = match a {
        IpAddr::V4(v4) => {
            if v4.is_unspecified() {
                Some("the unspecified address")
            } else if v4.is_broadcast() {
                Some("the broadcast address")
            } else if v4.is_multicast() {
                Some("a multicast address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_unspecified() {
                Some("the unspecified address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else {
                None
            }
        }
    };
    match bad {
        Some(what) => Err(format!("{a} is {what}, not one host's address")),
        None => Ok(a),
    }
}

/// Names with a meaning of their own in pg_hba or in SQL role specifications.
const SQL_RESERVED: &[&str] = &[
    "all",
    "sameuser",
    "samerole",
    "samegroup",
    "replication",
    "public",
    "none",
    "current_user",
    "current_role",
    "session_user",
    "user",
    "default",
];

/// A role or database name hanode creates or writes into pg_hba: lower-case letters, digits and
/// `_`, not first a digit, not `pg_…` (PostgreSQL's own), at most 63 bytes (NAMEDATALEN). Such a
/// name needs no quoting in SQL nor in pg_hba and means the same in both.
pub fn sql_name(s: &str) -> Result<String, String> {
    let ok = s.len() <= 63
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(format!(
            "`{}` is not a name hanode creates: lower-case letters, digits and _, not starting with a digit, at most 63 bytes",
            shown(s)
        ));
    }
    if s.starts_with("pg_") || SQL_RESERVED.contains(&s) {
        return Err(format!("`{s}` is reserved by PostgreSQL (pg_hba or SQL give it a meaning of its own)"));
    }
    Ok(s.to_string())
}

/// A password or other secret text: printable, since it ends up in YAML, JSON, `.pgpass` and
/// SQL, where a control character is cut, changed (U+0085 becomes a space in YAML) or refused.
pub fn secret_text(s: &str) -> Result<(), String> {
    if let Some(c) = s.chars().find(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')) {
        return Err(format!("must not contain control characters or line separators (found {})", describe(c)));
    }
    Ok(())
}

/// A value for a message: control characters shown escaped, so an error cannot itself inject
/// lines into a log, and long values cut.
fn shown(s: &str) -> String {
    let e: String = s.chars().flat_map(char::escape_debug).collect();
    if e.chars().count() > 80 { format!("{}…", e.chars().take(80).collect::<String>()) } else { e }
}

fn describe(c: char) -> String {
    if c.is_whitespace() || c.is_control() { format!("the character {}", c.escape_unicode()) } else { format!("`{c}`") }
}

/// An enum's word, as [`word`] reads it (`Stage::Firstboot` -> "firstboot").
pub fn name_of<E: clap::ValueEnum>(e: &E) -> String {
    e.to_possible_value().map(|p| p.get_name().to_string()).unwrap_or_default()
}

/// One of an enum's words (`type = "etcd"`): the enum's `clap::ValueEnum` names are the one
/// spelling of its words, for the site file, the command line and messages alike.
pub fn word<E: clap::ValueEnum>(s: &str, what: &str) -> Result<E, String> {
    E::from_str(s, false).map_err(|_| {
        let names: Vec<String> = E::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|p| format!("\"{}\"", p.get_name()))
            .collect();
        let expected = match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        format!("{what} `{s}`: expected {expected}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_absolute_normalised_and_plain() {
        assert!(abs_path("/opt/hanode").is_ok());
        for bad in ["opt", "/opt/../etc", "/opt//x", "/opt/.", "/opt/", "/a b", "/a\nb", "/a%b", "/a$b", "/é"] {
            assert!(abs_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mount_points_stay_out_of_the_system() {
        assert!(mount_point("/pgdata").is_ok());
        assert!(mount_point("/var/lib/pgsql").is_ok());
        for bad in ["/", "/etc", "/var", "/usr/local", "/etc/x", "/pgdata/..", "/boot/efi", "/.*"] {
            assert!(mount_point(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mkfs_options_are_tuning_only() {
        use crate::config::Filesystem::*;
        let v = |o: &[&str]| o.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(mkfs_options(Ext4, &v(&["-E", "lazy_itable_init=0,lazy_journal_init=0", "-m", "1"])).is_ok());
        assert!(mkfs_options(Xfs, &v(&["-d", "su=64k,sw=4"])).is_ok());
        for bad in [&["-d", "/root"][..], &["-F"], &["-J", "device=/dev/sda"], &["-m"], &["-b", "-F"]] {
            assert!(mkfs_options(Ext4, &v(bad)).is_err(), "{bad:?}");
        }
        assert!(mkfs_options(Xfs, &v(&["-d", "file=1,name=/etc/passwd"])).is_err());
        assert!(mkfs_options(Xfs, &v(&["-l", "logdev=x"])).is_err());
    }

    #[test]
    fn urls_hide_their_credentials() {
        assert_eq!(masked("https://u:p4ss@mirror.example/x"), "https://***@mirror.example/x");
        assert_eq!(masked("https://mirror.example/x"), "https://mirror.example/x");
        assert!(url("https://mirror.example/simple").is_ok());
        assert!(url("https://mirror.example/a b").is_err());
        assert!(url("ftp://mirror.example/").is_err());
        let e = url("https://u:secret@[::1/").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn url_segments_decode() {
        assert_eq!(
            percent_decoded("vip-manager_1.0.2-6%2bb2_amd64.deb").as_deref(),
            Some("vip-manager_1.0.2-6+b2_amd64.deb")
        );
        assert_eq!(percent_decoded("%2e%2e").as_deref(), Some(".."));
        assert_eq!(percent_decoded("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(percent_decoded("50%").as_deref(), Some("50%"));
    }

    #[test]
    fn secrets_are_printable() {
        assert!(secret_text("päss wörd \"#: x").is_ok());
        for bad in ["a\u{7f}b", "a\u{85}b", "a\u{9b}b", "a\tb", "a\u{2028}b"] {
            assert!(secret_text(bad).is_err(), "{bad:?}");
        }
    }
}
