//! Hostile and malformed input: site files, secrets files and command lines that would turn into
//! something else on the host (an extra unit line, an fstab entry, a mount over `/`, an SELinux
//! rule for the whole filesystem, an argument to mkfs). Each is refused before anything runs:
//! exit 2 (bad input), naming the file, the line and the key.

mod common;
use common::{fixture_root, hanode, write};

const SITE: &str = r#"[cluster]
name = "main"
postgres_version = 16
members = [
  { name = "pg1", address = "10.0.0.11" },
  { name = "pg2", address = "10.0.0.12" },
  { name = "pg3", address = "10.0.0.13" },
]

[vip]
address = "10.0.0.100/24"
interface = "eth0"

[dcs]
type = "etcd"
client_port = 2379
peer_port = 2380

[disks]
volume_group = "pg"
filesystem = "ext4"
mount_options = ["noatime"]
mkfs_options = ["-m", "1"]
min_size = "1G"
data = { device = "/dev/sdb", volume = "pg_data", mount = "/pgdata", size = "90%" }
wal = { device = "/dev/sdc", volume = "pg_wal", mount = "/pgwal", size = "100%" }

[patroni]
rest_api_port = 8008
postgres_port = 5432
watchdog = "off"

[install]
cache_dir = "/var/cache/hanode"
prefix = "/opt/hanode"
bin_dir = "/usr/local/bin"
mirror = "https://mirror.example/hanode"
pip_index = "https://pypi.example/simple"

[packages]
extra = ["htop"]

[postgresql]
users = ["app"]
databases = [{ name = "app", owner = "app" }]
clients = [{ network = "10.20.0.0/16", databases = ["app"], users = ["app"] }]

[artifacts.etcd]
version = "3.5.17"
url = "https://github.com/etcd-io/etcd/releases/download/v3.5.17/etcd-v3.5.17-linux-amd64.tar.gz"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
files = ["etcd", "etcdctl"]
"#;

const SECRETS: &str = r#"[postgres]
superuser_password = "superuser-secret"
replication_password = "replication-secret"
[users]
app = "app-secret-123"
"#;

/// A TOML basic string holding exactly `s` (control characters as \u escapes).
fn q(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o += "\\\"",
            '\\' => o += "\\\\",
            c if c.is_control() => o += &format!("\\u{:04X}", c as u32),
            c => o.push(c),
        }
    }
    o + "\""
}

struct Case {
    what: String,
    site: String,
    secrets: Option<String>,
    /// The key the message must name.
    key: &'static str,
    /// Whether the message names a line (rules across files and the OS profile name the file and
    /// key only).
    line: bool,
}

fn edit(from: &str, to: &str) -> String {
    assert!(SITE.contains(from), "the base site file has no {from:?}");
    SITE.replacen(from, to, 1)
}

/// String values that must be refused at one key: `from` is the key's text in the base file,
/// `lhs` what precedes the value.
fn strings(cases: &mut Vec<Case>, key: &'static str, from: &str, lhs: &str, values: &[&str]) {
    for v in values {
        cases.push(Case {
            what: format!("{key} = {v:?}"),
            site: edit(from, &format!("{lhs}{}", q(v))),
            secrets: None,
            key,
            line: true,
        });
    }
}

/// Raw TOML replacements (lists, numbers) that must be refused at one key.
fn raw(cases: &mut Vec<Case>, key: &'static str, from: &str, tos: &[&str]) {
    for to in tos {
        cases.push(Case { what: format!("{key}: {to}"), site: edit(from, to), secrets: None, key, line: true });
    }
}

/// Every string that becomes a path in a unit file, fstab or a directory name.
const BAD_PATHS: &[&str] = &[
    "relative/dir",
    "/opt/hanode\nUser=root",
    "/opt/hanode\nExecStartPre=/bin/touch /tmp/pwned",
    "/opt/../etc",
    "/opt//hanode",
    "/opt/hanode/",
    "/opt/./hanode",
    "/opt/han ode",
    "/opt/han\tode",
    "/opt/$HOME",
    "/opt/%h",
    "/opt/\"x\"",
    "/opt/x;id",
    "/opt/\u{85}x",
    "/opt/é",
];

fn site_cases() -> Vec<Case> {
    let mut c = Vec::new();
    // Injection into unit files.
    strings(
        &mut c,
        "vip.interface",
        "interface = \"eth0\"",
        "interface = ",
        &[
            "eth0\nUser=root",
            "eth0\nExecStartPre=/bin/touch /tmp/pwned",
            "eth 0",
            "eth0/1",
            "eth0:1",
            "",
            "abcdefghijklmnop",
            ".",
            "..",
            "eth0;id",
            "eth$0",
            "eth%i",
            "eth0\u{85}",
            "eth0\"",
        ],
    );
    strings(&mut c, "install.bin_dir", "bin_dir = \"/usr/local/bin\"", "bin_dir = ", BAD_PATHS);
    strings(&mut c, "install.prefix", "prefix = \"/opt/hanode\"", "prefix = ", &BAD_PATHS[..8]);
    strings(
        &mut c,
        "install.cache_dir",
        "cache_dir = \"/var/cache/hanode\"",
        "cache_dir = ",
        &["/", "/var/../etc", "var/cache", "/var/cache\n"],
    );
    // Mount points: fstab lines, mounts over the system, SELinux rules for everything.
    strings(
        &mut c,
        "disks.data.mount",
        "mount = \"/pgdata\"",
        "mount = ",
        &[
            "/pgdata/..",
            "/etc",
            "/",
            "/.*",
            "/pg data",
            "/pgdata\n/dev/sda9 /boot ext4 defaults 0 0",
            "/pgdata\tx",
            "/usr/local/pg",
            "/var",
            "/var/lib",
            "/proc/pg",
            "/boot/pg",
            "/run/pg",
            "/home",
            "/pg[a-z]*",
            "/pg(data)?",
            "pgdata",
            "/root/.ssh",
            "/var/spool/cron",
            "/var/lib/hanode",
            "/tmp/pg",
            "/var/tmp/pg",
            "/home/u/pg",
            "/opt/hanode",
            "/opt/hanode/pg",
            "/usr/local/bin",
            "/var/cache/hanode/pg",
        ],
    );
    strings(&mut c, "disks.wal.mount", "mount = \"/pgwal\"", "mount = ", &["/pgdata", "/pgdata/wal", "/sys", "/tmp"]);
    strings(
        &mut c,
        "disks.data.device",
        "device = \"/dev/sdb\"",
        "device = ",
        &["/dev/../etc/passwd", "sdb", "/dev/", "/dev/sdb\n", "/tmp/disk", "/dev/sd b", "/dev//sdb"],
    );
    raw(
        &mut c,
        "disks.mount_options",
        "mount_options = [\"noatime\"]",
        &[
            "mount_options = [\"noatime,suid\"]",
            "mount_options = [\"noatime 0 0\\nUUID=x / ext4 defaults\"]",
            "mount_options = [\"bind\"]",
            "mount_options = [\"remount\"]",
            "mount_options = [\"\"]",
            "mount_options = [\"no atime\"]",
            "mount_options = [\"x-systemd.automount\"]",
            "mount_options = [\"context=system_u:object_r:etc_t:s0\"]",
            "mount_options = [\"user\"]",
            "mount_options = [\"users\"]",
            "mount_options = [\"owner\"]",
            "mount_options = [\"context=\\\"system_u:object_r:etc_t:s0\\\"\"]",
        ],
    );
    raw(
        &mut c,
        "disks.mkfs_options",
        "mkfs_options = [\"-m\", \"1\"]",
        &[
            "mkfs_options = [\"-d\", \"/root\"]",
            "mkfs_options = [\"-F\"]",
            "mkfs_options = [\"-J\", \"device=/dev/sda\"]",
            "mkfs_options = [\"-E\"]",
            "mkfs_options = [\"-b\", \"4096;\"]",
            "mkfs_options = [\"--\", \"/dev/sda\"]",
            "mkfs_options = [\"-m 1\"]",
            "mkfs_options = [\"/dev/sda\"]",
            "mkfs_options = [\"-c\"]",
            "mkfs_options = [\"-b\", \"-F\"]",
        ],
    );
    for xfs in [
        "mkfs_options = [\"-f\"]",
        "mkfs_options = [\"-d\", \"file=1,name=/etc/passwd\"]",
        "mkfs_options = [\"-l\", \"logdev=/dev/sda\"]",
        "mkfs_options = [\"-p\", \"/etc/protofile\"]",
    ] {
        c.push(Case {
            what: format!("xfs {xfs}"),
            site: edit("filesystem = \"ext4\"", "filesystem = \"xfs\"").replacen(
                "mkfs_options = [\"-m\", \"1\"]",
                xfs,
                1,
            ),
            secrets: None,
            key: "disks.mkfs_options",
            line: true,
        });
    }
    strings(
        &mut c,
        "disks.volume_group",
        "volume_group = \"pg\"",
        "volume_group = ",
        &["pg\n", "../pg", "pg/x", "-pg", ""],
    );
    strings(
        &mut c,
        "disks.data.volume",
        "volume = \"pg_data\"",
        "volume = ",
        &["pg_data/x", "-x", "pg data", "pg_data\n"],
    );
    strings(&mut c, "disks.data.size", "size = \"90%\"", "size = ", &["-1G", "0", "101%", "1Q", "99999999999T", "0%"]);
    strings(&mut c, "disks.min_size", "min_size = \"1G\"", "min_size = ", &["50%", "abc", ""]);
    // Versions and names that become directory and file names.
    strings(
        &mut c,
        "artifacts.etcd.version",
        "version = \"3.5.17\"",
        "version = ",
        &["..", "3.5.17/../..", "3.5.17\n", "", "3.5 17", "../../etc", "3..5", "-3.5", "3.5.17;id"],
    );
    strings(
        &mut c,
        "artifacts.etcd.url",
        "url = \"https://github.com/etcd-io/etcd/releases/download/v3.5.17/etcd-v3.5.17-linux-amd64.tar.gz\"",
        "url = ",
        &[
            "file:///etc/passwd",
            "https://example.com/dir/",
            "https://example.com/etcd.tar.gz\nx",
            "http://",
            "https://example.com/%2e%2e",
            "https://example.com/etc%2Fpasswd",
            "https://example.com/..",
            "ftp://example.com/etcd.tar.gz",
            "https://exa mple.com/etcd.tar.gz",
        ],
    );
    strings(
        &mut c,
        "artifacts.etcd.sha256",
        "sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"",
        "sha256 = ",
        &["x", &"g".repeat(64)],
    );
    raw(
        &mut c,
        "artifacts.etcd.files",
        "files = [\"etcd\", \"etcdctl\"]",
        &[
            "files = [\"../etcd\"]",
            "files = [\"etcd\\n\"]",
            "files = [\".hidden\"]",
            "files = [\"bin/etcd\"]",
            "files = [\"\"]",
            "files = []",
            "files = [\"etcd ctl\"]",
        ],
    );
    raw(
        &mut c,
        "packages.extra",
        "extra = [\"htop\"]",
        &[
            "extra = [\"vim; rm -rf /\"]",
            "extra = [\"-oDpkg::Pre-Invoke=x\"]",
            "extra = [\"../x\"]",
            "extra = [\"a b\"]",
            "extra = [\"openssh-server-\"]",
            "extra = [\"htop+\"]",
        ],
    );
    // URLs.
    strings(
        &mut c,
        "install.mirror",
        "mirror = \"https://mirror.example/hanode\"",
        "mirror = ",
        &[
            "ftp://mirror.example/",
            "https://",
            "https://mirror example/",
            "file:///etc",
            "/srv/../etc",
            "mirror.example",
            "https://mirror.example/\nx",
        ],
    );
    strings(
        &mut c,
        "install.pip_index",
        "pip_index = \"https://pypi.example/simple\"",
        "pip_index = ",
        &["https://pypi.example/simple --index-url x", "javascript:alert(1)", "//pypi.example/simple", "/srv/pypi"],
    );
    // Names.
    strings(
        &mut c,
        "cluster.name",
        "name = \"main\"",
        "name = ",
        &["main\nx", "../x", "a b", "", &"x".repeat(64), "main;rm", "main/x"],
    );
    strings(
        &mut c,
        "cluster.members[0].name",
        "name = \"pg1\"",
        "name = ",
        &["pg1\n", "../pg1", "pg 1", "-pg1", "pg1;id"],
    );
    // Addresses and ports.
    strings(
        &mut c,
        "cluster.members[0].address",
        "address = \"10.0.0.11\"",
        "address = ",
        &["0.0.0.0", "255.255.255.255", "224.0.0.1", "::", "ff02::1", "10.0.0.11/24", "10.0.0.11\n", "10.0.0.256"],
    );
    strings(
        &mut c,
        "vip.address",
        "address = \"10.0.0.100/24\"",
        "address = ",
        &[
            "10.0.0.0/24",
            "10.0.0.255/24",
            "224.0.0.5/24",
            "10.0.0.100/0",
            "10.0.0.100/33",
            "10.0.0.100",
            "0.0.0.0/8",
            "10.0.0.11/24",
        ],
    );
    raw(
        &mut c,
        "dcs.client_port",
        "client_port = 2379",
        &["client_port = 8008", "client_port = 5432", "client_port = 0", "client_port = 70000"],
    );
    raw(&mut c, "dcs.peer_port", "peer_port = 2380", &["peer_port = 2379"]);
    raw(&mut c, "patroni.postgres_port", "postgres_port = 5432", &["postgres_port = 8008", "postgres_port = 2380"]);
    raw(&mut c, "patroni.rest_api_port", "rest_api_port = 8008", &["rest_api_port = 2379", "rest_api_port = -1"]);
    // Types and enumerations.
    strings(&mut c, "patroni.watchdog", "watchdog = \"off\"", "watchdog = ", &["on", "off\n"]);
    strings(&mut c, "dcs.type", "type = \"etcd\"", "type = ", &["zookeeper", "etcd\n"]);
    // Roles, databases and networks become SQL and pg_hba fields: plain names, real networks.
    let names = ["App", "pg_monitor", "all", "public", "1app", "app\n", "a-b", "app;drop", "a b", "+app", "@file", ""];
    let users = "users = [\"app\"]\ndatabases";
    for v in names.iter().chain(&["postgres", "replicator", "rewinder", &"a".repeat(64)]) {
        c.push(Case {
            what: format!("postgresql.users = [{v:?}]"),
            site: edit(users, &format!("users = [{}]\ndatabases", q(v))),
            secrets: None,
            key: "postgresql.users",
            line: true,
        });
    }
    strings(
        &mut c,
        "postgresql.databases[0].name",
        "name = \"app\"",
        "name = ",
        &["template1", "postgres", "Db", "x y", "all"],
    );
    strings(&mut c, "postgresql.databases[0].owner", "owner = \"app\"", "owner = ", &["other", "postgres", "app\n"]);
    strings(
        &mut c,
        "postgresql.clients[0].network",
        "network = \"10.20.0.0/16\"",
        "network = ",
        &[
            "10.20.0.1/16",
            "10.20.0.0/0",
            "10.20.0.0",
            "10.20.0.0/33",
            "10.20.0.0/16\nhost all all 0.0.0.0/0 trust",
            "samenet",
        ],
    );
    raw(
        &mut c,
        "postgresql.clients[0].users",
        "users = [\"app\"] }",
        &["postgres", "app,postgres", "+grp", "@file", "sameuser", "replicator"]
            .map(|v| format!("users = [{}] }}", q(v)))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    raw(
        &mut c,
        "postgresql.clients[0].users",
        "users = [\"app\"] }",
        &["users = [] }", "users = [\"app\", \"all\"] }"],
    );
    raw(&mut c, "postgresql.clients[0].databases", "databases = [\"app\"], users", &["databases = [], users"]);
    c
}

fn secrets_cases() -> Vec<Case> {
    let mut c = Vec::new();
    for (key, from) in [
        ("postgres.superuser_password", "superuser_password = \"superuser-secret\""),
        ("postgres.replication_password", "replication_password = \"replication-secret\""),
    ] {
        let lhs = &from[..from.find('=').unwrap() + 2];
        for v in [
            "xyz\u{7f}zy123",
            "xyz\u{85}zy123",
            "xyz\u{9b}zy123",
            "xyz\tzy123",
            "xyz\u{2028}zy123",
            "xyzzy12\n3",
            "xyz\u{0}zy123",
            "zzy",
        ] {
            assert!(SECRETS.contains(from));
            c.push(Case {
                what: format!("{key} = {v:?}"),
                site: SITE.to_string(),
                secrets: Some(SECRETS.replacen(from, &format!("{lhs}{}", q(v)), 1)),
                key,
                line: true,
            });
        }
    }
    c
}

/// Runs `hanode check` on a case: exit 2, the file, the line and the key named, no secret echoed.
fn refused(case: &Case) -> Option<String> {
    let root = fixture_root("debian-13");
    let site = write(root.path(), "site.toml", &case.site, 0o644);
    let mut args = vec!["check".to_string(), "--root".into(), root.path().display().to_string()];
    args.extend(["--config".into(), site.display().to_string(), "--node".into(), "pg1".into()]);
    let file = match &case.secrets {
        Some(text) => {
            let p = write(root.path(), "secrets.toml", text, 0o600);
            args.extend(["--secrets".into(), p.display().to_string()]);
            "secrets.toml"
        }
        None => "site.toml",
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = hanode(&args);
    let err = &run.stderr;
    let what = &case.what;
    if run.code != 2 {
        return Some(format!("{what}: expected exit 2, got {}:\n{}", run.code, run.all()));
    }
    if !err.contains(case.key) {
        return Some(format!("{what}: the message does not name {}:\n{err}", case.key));
    }
    let named = err.match_indices(&format!("{file}:")).any(|(i, m)| {
        let rest = &err[i + m.len()..];
        !case.line || rest.starts_with(|c: char| c.is_ascii_digit())
    });
    if !named {
        return Some(format!("{what}: the message does not name {file} and a line:\n{err}"));
    }
    if err.contains("panicked") {
        return Some(format!("{what}: hanode panicked:\n{err}"));
    }
    if case.secrets.is_some() && (err.contains("xyz") || err.contains("zzy")) {
        return Some(format!("{what}: a secret was echoed:\n{err}"));
    }
    None
}

fn assert_all(cases: &[Case]) {
    let failures: Vec<String> = cases.iter().filter_map(refused).collect();
    assert!(failures.is_empty(), "{} of {} case(s) failed:\n{}", failures.len(), cases.len(), failures.join("\n\n"));
}

#[test]
fn the_base_files_pass_the_loader() {
    let root = fixture_root("debian-13");
    let site = write(root.path(), "site.toml", SITE, 0o644);
    let secrets = write(root.path(), "secrets.toml", SECRETS, 0o600);
    let r = root.path().display().to_string();
    let (site, secrets) = (site.display().to_string(), secrets.display().to_string());
    let run = hanode(&["check", "--root", &r, "--config", &site, "--secrets", &secrets, "--node", "pg1"]);
    assert!(run.stdout.contains("[OK] config:") && run.stdout.contains("[OK] secrets:"), "{}", run.all());
    // A file name with a percent escape (Debian's pool writes `+` as `%2b`) is a file name.
    let pool = "https://deb.debian.org/debian/pool/main/v/vip-manager/vip-manager_1.0.2-6%2bb2_amd64.deb";
    let text = SITE
        .replacen("https://github.com/etcd-io/etcd/releases/download/v3.5.17/etcd-v3.5.17-linux-amd64.tar.gz", pool, 1)
        .replacen("files = [\"etcd\", \"etcdctl\"]", "files = [\"etcd\"]", 1);
    let site = write(root.path(), "pool.toml", &text, 0o644).display().to_string();
    let run = hanode(&["check", "--root", &r, "--config", &site, "--secrets", &secrets, "--node", "pg1"]);
    assert!(run.stdout.contains("[OK] config:"), "{}", run.all());
}

#[test]
fn hostile_site_files_are_refused_naming_file_line_and_key() {
    let cases = site_cases();
    println!("{} hostile site files", cases.len());
    assert!(cases.len() >= 120, "{} cases", cases.len());
    assert_all(&cases);
}

#[test]
fn hostile_secrets_are_refused_without_being_echoed() {
    assert_all(&secrets_cases());
}

#[test]
fn mount_points_are_apart_after_the_profiles_defaults() {
    // Debian's default WAL mount is /pgwal: a data mount of /pgwal/data lies inside it.
    let site =
        SITE.replacen("mount = \"/pgdata\"", "mount = \"/pgwal/data\"", 1).replacen(", mount = \"/pgwal\"", "", 1);
    let case = Case {
        what: "data mount inside the default WAL mount".into(),
        site,
        secrets: None,
        key: "disks.data.mount",
        line: false,
    };
    assert_all(&[case]);
}

#[test]
fn hostile_command_lines_exit_2() {
    let root = fixture_root("debian-13");
    let r = root.path().display().to_string();
    let site = write(root.path(), "site.toml", SITE, 0o644).display().to_string();
    for (args, words) in [
        (vec!["plan", "--root", &r, "--config", &site, "--mirror", "ftp://mirror.example/"], "--mirror"),
        (vec!["plan", "--root", &r, "--config", &site, "--mirror", "https://mirror.example/\nx"], "--mirror"),
        (vec!["plan", "--root", &r, "--config", &site, "--mirror", "/srv/../etc"], "--mirror"),
        (vec!["fetch", "--config", &site, "--dest", &r, "--mirror", "relative/dir"], "--mirror"),
        (vec!["plan", "--root", &r, "--config", &site, "--node", "../../etc"], "../../etc"),
        (vec!["plan", "--root", &r, "--config", &site, "--node", "pg1\nUser=root"], "member"),
        (vec!["init", "--root", &r, "--config", &site, "--role", "root"], "--role"),
        (vec!["plan", "--root", &r, "--config", &site, "--node", "pg1", "--skip-phases", "../etc"], "phase"),
        (vec!["pin", "etcd", "3.5.17", "--config", &site, "--base-url", "ftp://mirror.example/"], "--base-url"),
        (vec!["pin", "etcd", "3.5.17", "--config", &site, "--base-url", "https://mirror .example/"], "--base-url"),
    ] {
        let run = hanode(&args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.all());
        assert!(run.stderr.contains(words), "{args:?}: expected {words:?} in {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}

#[test]
fn hostile_users_passwords_are_refused_without_being_echoed() {
    let mut cases: Vec<Case> = ["xyz\u{e9}zy123", "xyzzy12\n3", "zzy"]
        .iter()
        .map(|v| Case {
            what: format!("users.app = {v:?}"),
            site: SITE.to_string(),
            secrets: Some(SECRETS.replacen("app = \"app-secret-123\"", &format!("app = {}", q(v)), 1)),
            key: "users.app",
            line: true,
        })
        .collect();
    cases.push(Case {
        what: "a role name that is not one".into(),
        site: SITE.to_string(),
        secrets: Some(SECRETS.replacen("app = ", "\"App-1\" = ", 1)),
        key: "users.App-1",
        line: true,
    });
    // A user of the site file without a password: the check names the secrets file and the user.
    cases.push(Case {
        what: "a user without a password".into(),
        site: SITE.replacen("users = [\"app\"]\ndatabases", "users = [\"app\", \"report\"]\ndatabases", 1),
        secrets: Some(SECRETS.to_string()),
        key: "`report`",
        line: false,
    });
    assert_all(&cases);
}
