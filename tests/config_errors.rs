//! Malformed site and secrets files: each gives exit 2 and names the key and the line.

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

[disks]
data = { device = "/dev/sdb" }
wal = { device = "/dev/sdc" }

[patroni]
ttl = 30
loop_wait = 10
retry_timeout = 10
"#;

const SECRETS: &str = r#"[postgres]
superuser_password = "superuser-secret"
replication_password = "replication-secret"

[consul]
gossip_key = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="
"#;

/// (what, edited site file, key the message must name, line it must name, words it must say)
fn site_cases() -> Vec<(&'static str, String, &'static str, usize, &'static str)> {
    let edit = |from: &str, to: &str| {
        assert!(SITE.contains(from), "{from}");
        SITE.replacen(from, to, 1)
    };
    vec![
        ("unknown top-level table", format!("{SITE}[extra]\nx = 1\n"), "extra", 25, "unknown key"),
        (
            "misspelt key, with a suggestion",
            edit("postgres_version = 16", "postgres_version = 16\nnmae = \"x\""),
            "cluster.nmae",
            4,
            "did you mean `name`",
        ),
        (
            "version as a string",
            edit("postgres_version = 16", "postgres_version = \"16\""),
            "cluster.postgres_version",
            3,
            "expected an integer",
        ),
        (
            "version out of range",
            edit("postgres_version = 16", "postgres_version = 9"),
            "cluster.postgres_version",
            3,
            "out of range",
        ),
        ("missing cluster name", edit("name = \"main\"\n", ""), "cluster.name", 1, "missing"),
        (
            "a parameter a node decides",
            format!("{SITE}[postgresql]\nparameters = {{ work_mem = \"8MB\", port = 5433 }}\n"),
            "postgresql.parameters.port",
            26,
            "[patroni] postgres_port",
        ),
        (
            "a parameter name PostgreSQL cannot have",
            format!("{SITE}[postgresql]\nparameters = {{ \"work mem\" = \"8MB\" }}\n"),
            "postgresql.parameters.work mem",
            26,
            "not a PostgreSQL parameter name",
        ),
        (
            "a parameter value with a line break",
            format!("{SITE}[postgresql]\nparameters = {{ application_name = \"a\\nb\" }}\n"),
            "postgresql.parameters.application_name",
            26,
            "control character",
        ),
        (
            "a parameter set twice",
            format!("{SITE}[postgresql]\nparameters = {{ work_mem = \"8MB\", WORK_MEM = \"4MB\" }}\n"),
            "postgresql.parameters.work_mem",
            26,
            "set twice",
        ),
        (
            "a TLS parameter",
            format!("{SITE}[postgresql]\nparameters = {{ ssl_ciphers = \"NULL\" }}\n"),
            "postgresql.parameters.ssl_ciphers",
            26,
            "[tls] decides",
        ),
        (
            "a command PostgreSQL would run",
            format!("{SITE}[postgresql]\nparameters = {{ archive_cleanup_command = \"rm -rf /\" }}\n"),
            "postgresql.parameters.archive_cleanup_command",
            26,
            "a command or library",
        ),
        (
            "another file to include",
            format!("{SITE}[postgresql]\nparameters = {{ include_dir = \"/tmp\" }}\n"),
            "postgresql.parameters.include_dir",
            26,
            "no other file",
        ),
        (
            "a preloaded library by path",
            format!(
                "{SITE}[postgresql]\nparameters = {{ shared_preload_libraries = \"pg_stat_statements,/tmp/evil\" }}\n"
            ),
            "postgresql.parameters.shared_preload_libraries",
            26,
            "by name only",
        ),
        (
            "a parameter as a list",
            format!("{SITE}[postgresql]\nparameters = {{ work_mem = [1] }}\n"),
            "postgresql.parameters.work_mem",
            26,
            "expected a string, a decimal number",
        ),
        (
            "bad cluster name",
            edit("name = \"main\"", "name = \"main cluster\""),
            "cluster.name",
            2,
            "not a valid cluster name",
        ),
        (
            "duplicate member name",
            edit("name = \"pg2\"", "name = \"pg1\""),
            "cluster.members[1].name",
            6,
            "duplicate member name",
        ),
        (
            "duplicate member address",
            edit("10.0.0.12", "10.0.0.11"),
            "cluster.members[1].address",
            6,
            "duplicate member address",
        ),
        ("not an address", edit("10.0.0.13", "10.0.0.300"), "cluster.members[2].address", 7, "not an IP address"),
        (
            "unknown member key",
            edit("address = \"10.0.0.11\"", "adress = \"10.0.0.11\""),
            "cluster.members[0].adress",
            5,
            "unknown key",
        ),
        (
            "unknown member role",
            edit("address = \"10.0.0.11\" }", "address = \"10.0.0.11\", role = \"witness\" }"),
            "cluster.members[0].role",
            5,
            "unknown role",
        ),
        (
            "members not a list",
            edit("members = [", "members = \"pg1\"\nmembers_old = ["),
            "cluster.members",
            4,
            "expected a list of tables",
        ),
        (
            "VIP outside the members' subnet",
            edit("10.0.0.100/24", "10.0.1.100/24"),
            "vip.address",
            11,
            "outside the members' subnet",
        ),
        ("VIP without prefix", edit("10.0.0.100/24", "10.0.0.100"), "vip.address", 11, "prefix length"),
        ("VIP is a member's address", edit("10.0.0.100/24", "10.0.0.12/24"), "vip.address", 11, "own address"),
        (
            "bad interface name",
            edit("interface = \"eth0\"", "interface = \"eth0/1\""),
            "vip.interface",
            12,
            "not a network interface",
        ),
        (
            "unknown DCS",
            edit("type = \"etcd\"", "type = \"zookeeper\""),
            "dcs.type",
            15,
            "expected \"etcd\" or \"consul\"",
        ),
        ("data and WAL on one disk", edit("/dev/sdc", "/dev/sdb"), "disks.wal.device", 19, "same device"),
        (
            "device not under /dev",
            edit("device = \"/dev/sdb\"", "device = \"sdb\""),
            "disks.data.device",
            18,
            "not a device path",
        ),
        (
            "bad size",
            edit("{ device = \"/dev/sdb\" }", "{ device = \"/dev/sdb\", size = \"lots\" }"),
            "disks.data.size",
            18,
            "not a size",
        ),
        (
            "unknown filesystem",
            edit("[disks]", "[disks]\nfilesystem = \"btrfs\""),
            "disks.filesystem",
            18,
            "unsupported filesystem",
        ),
        ("relative min_size", edit("[disks]", "[disks]\nmin_size = \"50%\""), "disks.min_size", 18, "absolute size"),
        (
            "Patroni timings break the ttl rule",
            edit("ttl = 30", "ttl = 25"),
            "patroni.ttl",
            22,
            "loop_wait + 2*retry_timeout <= ttl",
        ),
        ("ttl as a string", edit("ttl = 30", "ttl = \"30s\""), "patroni.ttl", 22, "expected an integer"),
        ("unknown Patroni key", format!("{SITE}maximum_lag = 5\n"), "patroni.maximum_lag", 25, "unknown key"),
        (
            "Consul with ttl below 20",
            edit("type = \"etcd\"", "type = \"consul\"")
                .replace("ttl = 30\nloop_wait = 10\nretry_timeout = 10", "ttl = 15\nloop_wait = 5\nretry_timeout = 5"),
            "patroni.ttl",
            22,
            "floor with Consul",
        ),
        ("syntax error", edit("name = \"main\"", "name = \"main"), "", 2, "TOML syntax error"),
        (
            "empty member list",
            edit(
                "members = [\n  { name = \"pg1\", address = \"10.0.0.11\" },\n  { name = \"pg2\", address = \"10.0.0.12\" },\n  { name = \"pg3\", address = \"10.0.0.13\" },\n]",
                "members = []",
            ),
            "cluster.members",
            4,
            "empty",
        ),
        ("no [cluster] at all", SITE.replacen("[cluster]", "[clusterx]", 1), "cluster", 1, "missing"),
        (
            "boolean as a string",
            format!("{SITE}synchronous_mode = \"yes\"\n"),
            "patroni.synchronous_mode",
            25,
            "expected true or false",
        ),
        (
            "vip-manager 1.x with an etcd that has no v2 API",
            format!(
                "{SITE}[artifacts.etcd]\nversion = \"3.6.0\"\nurl = \"https://example.org/etcd-v3.6.0-linux-amd64.tar.gz\"\nsha256 = \"{h}\"\n[artifacts.vip-manager]\nversion = \"1.0.2\"\nurl = \"https://example.org/vip-manager_1.0.2_Linux_x86_64.tar.gz\"\nsha256 = \"{h}\"\n",
                h = "a".repeat(64)
            ),
            "artifacts",
            25,
            "removed in 3.6",
        ),
        (
            "Consul older than the tls block, with TLS on",
            format!(
                "{}[artifacts.consul]\nversion = \"1.11.4\"\nurl = \"https://example.org/consul_1.11.4_linux_amd64.zip\"\nsha256 = \"{h}\"\n",
                SITE.replace("type = \"etcd\"", "type = \"consul\""),
                h = "a".repeat(64)
            ),
            "artifacts",
            25,
            "Consul 1.12 and later",
        ),
        (
            "tls.enabled as a string",
            format!("{SITE}\n[tls]\nenabled = \"no\"\n"),
            "tls.enabled",
            27,
            "expected true or false",
        ),
    ]
}

/// Returns what is wrong with the run, if anything.
/// `hanode check` on a Debian 13 fixture root with these files.
fn check_files(root: &std::path::Path, site: &std::path::Path, secrets: &std::path::Path) -> common::Run {
    let (r, s, p) = (root.display().to_string(), site.display().to_string(), secrets.display().to_string());
    hanode(&["check", "--root", &r, "--config", &s, "--secrets", &p, "--node", "pg1"])
}

fn check_one(
    what: &str,
    site: &str,
    secrets: Option<(&str, u32)>,
    key: &str,
    line: usize,
    words: &str,
) -> Option<String> {
    let root = fixture_root("debian-13");
    let site_path = write(root.path(), "site.toml", site, 0o644);
    let mut args = vec![
        "check".to_string(),
        "--root".into(),
        root.path().display().to_string(),
        "--config".into(),
        site_path.display().to_string(),
        "--node".into(),
        "pg1".into(),
    ];
    if let Some((text, mode)) = secrets {
        let p = write(root.path(), "secrets.toml", text, mode);
        args.extend(["--secrets".into(), p.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = hanode(&args);
    let err = run.stderr;
    if run.code != 2 {
        return Some(format!("{what}: expected exit 2, got {}; stderr:\n{err}", run.code));
    }
    if !err.contains(&format!(":{line}:")) {
        return Some(format!("{what}: message does not name line {line}:\n{err}"));
    }
    if !key.is_empty() && !err.contains(&format!(": {key}: ")) {
        return Some(format!("{what}: message does not name key {key}:\n{err}"));
    }
    (!err.contains(words)).then(|| format!("{what}: message does not say {words:?}:\n{err}"))
}

fn assert_all(failures: Vec<String>) {
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn the_base_files_are_valid() {
    let root = fixture_root("debian-13");
    let site = write(root.path(), "site.toml", SITE, 0o644);
    let secrets = write(root.path(), "secrets.toml", SECRETS, 0o600);
    let r = root.path().display().to_string();
    let run = hanode(&[
        "plan",
        "--skip-phases",
        "packages,disks",
        "--root",
        &r,
        "--config",
        &site.display().to_string(),
        "--secrets",
        &secrets.display().to_string(),
        "--node",
        "pg1",
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("[OK] secrets"), "{}", run.stdout);
}

#[test]
fn malformed_site_files_exit_2_naming_key_and_line() {
    let cases = site_cases();
    assert!(cases.len() >= 20);
    assert_all(
        cases
            .into_iter()
            .filter_map(|(what, site, key, line, words)| check_one(what, &site, None, key, line, words))
            .collect(),
    );
}

#[test]
fn malformed_secrets_files_exit_2_naming_key_and_line() {
    let cases: Vec<(&str, String, &str, usize, &str)> = vec![
        (
            "missing replication password",
            SECRETS.replace("replication_password = \"replication-secret\"\n", ""),
            "postgres.replication_password",
            1,
            "missing",
        ),
        (
            "short password",
            SECRETS.replace("\"superuser-secret\"", "\"abc\""),
            "postgres.superuser_password",
            2,
            "too short",
        ),
        (
            "bad gossip key",
            SECRETS.replace("pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=", "not-base64"),
            "consul.gossip_key",
            6,
            "gossip key",
        ),
        ("unknown secrets key", format!("{SECRETS}token = \"abcdefgh123\"\n"), "consul.token", 7, "unknown key"),
        (
            "password as a number",
            SECRETS.replace("\"superuser-secret\"", "12345678"),
            "postgres.superuser_password",
            2,
            "expected a string",
        ),
    ];
    assert_all(
        cases
            .into_iter()
            .filter_map(|(what, text, key, line, words)| check_one(what, SITE, Some((&text, 0o600)), key, line, words))
            .collect(),
    );
}

#[test]
fn errors_of_both_files_come_together() {
    let site = SITE.replace("ttl = 30", "ttl = 25").replace("10.0.0.13", "10.0.0.300");
    let secrets = SECRETS.replace("\"superuser-secret\"", "\"abc\"");
    let root = fixture_root("debian-13");
    let s = write(root.path(), "site.toml", &site, 0o644);
    let p = write(root.path(), "secrets.toml", &secrets, 0o600);
    let run = check_files(root.path(), &s, &p);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("3 errors"), "{}", run.stderr);
    for key in ["cluster.members[2].address", "patroni.ttl", "postgres.superuser_password"] {
        assert!(run.stderr.contains(key), "{key} missing from:\n{}", run.stderr);
    }
    assert!(!run.stderr.contains("\"abc\""), "a secret was echoed:\n{}", run.stderr);
}

#[test]
fn one_mistake_is_one_error() {
    let root = fixture_root("debian-13");
    let site = write(root.path(), "site.toml", &SITE.replace("type = \"etcd\"", "type = \"zookeeper\""), 0o644);
    let run = hanode(&[
        "check",
        "--root",
        &root.path().display().to_string(),
        "--config",
        &site.display().to_string(),
        "--node",
        "pg1",
    ]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("1 error in the configuration"), "{}", run.stderr);
}

#[test]
fn a_readable_secrets_file_is_refused() {
    for mode in [0o644, 0o640, 0o604, 0o660] {
        let root = fixture_root("debian-13");
        let s = write(root.path(), "site.toml", SITE, 0o644);
        let p = write(root.path(), "secrets.toml", SECRETS, mode);
        let run = check_files(root.path(), &s, &p);
        assert_eq!(run.code, 2, "mode {mode:o}: {}", run.all());
        assert!(run.stderr.contains(&format!("chmod 0600 {}", p.display())), "{}", run.stderr);
    }
}
