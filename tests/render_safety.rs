//! Hostile strings in the site and secrets files stay data in every file hanode renders: the
//! YAML, JSON, units and fstab read back as exactly the value meant, by the readers that matter
//! (serde_norway and serde_json always; PyYAML, `systemd-analyze verify` and `findmnt --verify`
//! where this machine has them).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use hanode::context::{Context, Options};
use hanode::exec::Recording;
use hanode::units::Fill;
use proptest::prelude::*;

const SITE: &str = r#"[cluster]
name = "main"
members = [{ name = "pg1", address = "10.0.0.11" }, { name = "pg2", address = "10.0.0.12" }]
[vip]
address = "10.0.0.100/24"
interface = "eth0"
[dcs]
type = "DCS"
"#;

/// Strings a YAML, unit or fstab writer could get wrong.
const HOSTILE: &[&str] = &[
    "yes",
    "1:20",
    "2001-12-14",
    "~",
    "null",
    "<<",
    "  leading spaces",
    "trailing ",
    "a: b # c",
    "#comment",
    "'single\" double",
    "back\\slash\\",
    "nonchar\u{fffe}",
    "zero\u{200b}width",
    "%n%%$HOME${X}",
    "кириллица-пароль",
    "emoji 🐘",
];

/// A TOML basic string (TOML takes no raw DEL).
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap().replace('\u{7f}', "\\u007F")
}

fn context(dcs: &str, password: &str, root: &Path) -> Context {
    let site = common::write(root, "site.toml", &SITE.replace("DCS", dcs), 0o644);
    let p = toml_str(password);
    const U: &str = "3f6c1c2e-0000-4000-8000-0000000000";
    let secrets = format!(
        "[postgres]\nsuperuser_password = {p}\nreplication_password = {p}\nrewind_password = {p}\n\
         [patroni]\nrest_api_password = {p}\n[etcd]\nroot_password = {p}\npatroni_password = {p}\n\
         vip_manager_password = {p}\n[consul]\ngossip_key = \"pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=\"\n\
         acl_token = \"{U}a1\"\npatroni_token = \"{U}b2\"\nvip_manager_token = \"{U}c3\"\n"
    );
    let secrets = common::write(root, "secrets.toml", &secrets, 0o600);
    let opts = Options {
        root: root.into(),
        config: Some(site),
        secrets: Some(secrets),
        node: Some("pg1".into()),
        ..Options::default()
    };
    Context::load(&opts, Box::new(Arc::new(Recording::default()))).unwrap()
}

/// Every rendered file holds the password exactly where it belongs, as serde parses it back.
fn round_trip(dcs: &str, password: &str) -> Vec<String> {
    let root = common::fixture_root("debian-12");
    let cx = context(dcs, password, root.path());
    let patroni = hanode::patroni::config(&cx).unwrap();
    let p: serde_json::Value = serde_norway::from_str(&patroni).unwrap();
    assert_eq!(strip_nulls(&serde_json::to_value(hanode::patroni::settings(&cx).unwrap()).unwrap()), p);
    assert_eq!(p["postgresql"]["authentication"]["superuser"]["password"], password);
    assert_eq!(p["restapi"]["authentication"]["password"], password);
    let vip = hanode::vip::config(&cx, "eth0").unwrap();
    let v: serde_json::Value = serde_norway::from_str(&vip).unwrap();
    let mut texts = vec![patroni, vip.clone()];
    if dcs == "consul" {
        // Tokens are UUIDs (the loader sees to it); the gossip key base64.
        let consul = hanode::dcs::consul_config(&cx).unwrap();
        let c: serde_json::Value = serde_json::from_str(&consul).unwrap();
        assert_eq!(c["acl"]["tokens"]["agent"], "3f6c1c2e-0000-4000-8000-0000000000a1");
        assert_eq!(v["consul-token"], "3f6c1c2e-0000-4000-8000-0000000000c3");
    } else {
        assert_eq!(p["etcd3"]["password"], password);
        assert_eq!(v["etcd-password"], password);
        texts.push(hanode::dcs::etcd_config(&cx, "new").to_yaml());
    }
    texts
}

fn strip_nulls(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), strip_nulls(v))).collect()
        }
        serde_json::Value::Array(a) => a.iter().map(strip_nulls).collect(),
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any password the secrets loader takes (8 characters or more, printable: control
    /// characters are refused at load, tests/hostile_input.rs).
    #[test]
    fn any_accepted_password_round_trips(pw in "[^\\p{Cc}\u{2028}\u{2029}\u{feff}]{8,40}", consul in any::<bool>()) {
        prop_assume!(hanode::config::kinds::secret_text(&pw).is_ok());
        round_trip(if consul { "consul" } else { "etcd" }, &pw);
    }

    #[test]
    fn any_string_is_one_yaml_scalar(s in "\\PC*|.*|[\u{0}-\u{ff}]{0,20}") {
        let text = hanode::yaml::file("c", &std::collections::BTreeMap::from([("k", s.as_str()), ("l", "after")]));
        let back: std::collections::BTreeMap<String, String> = serde_norway::from_str(&text).unwrap();
        prop_assert_eq!(back.len(), 2);
        prop_assert_eq!(&back["k"], &s);
    }

    /// A path the loader could take lands in fstab as one field that decodes to itself.
    #[test]
    fn fstab_fields_decode_to_the_path(p in "/[^\u{0}]{1,30}") {
        let line = hanode::phases::disks::fstab_line("0f0e-11", Path::new(&p), "ext4", &["noatime".into()]).unwrap();
        let fields: Vec<&str> = line.split([' ', '\t']).collect();
        prop_assert_eq!(fields.len(), 6);
        prop_assert_eq!(unescape_octal(fields[1]), p.clone());
    }

    /// An argument or setting value either is refused or stays on its own line.
    #[test]
    fn unit_values_never_add_lines(s in "\\PC*|.*|[\u{0}-\u{ff}]{0,20}") {
        for fill in [Fill::Arg(s.clone()), Fill::Text(s.clone()), Fill::Program(PathBuf::from(format!("/{s}")))] {
            if let Ok(text) = hanode::units::render("ExecStart={{v}}\nUser=x\n", &[("v", fill)]) {
                prop_assert_eq!(text.lines().count(), 2);
                prop_assert!(text.ends_with("\nUser=x\n"));
            }
        }
    }
}

/// fstab(5)'s octal escapes, decoded as mount(8) does.
fn unescape_octal(f: &str) -> String {
    let b = f.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push(u8::from_str_radix(&f[i + 1..i + 4], 8).unwrap());
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn hostile_passwords_round_trip() {
    for pw in HOSTILE.iter().map(|p| format!("{p}--padding")) {
        round_trip("etcd", &pw);
        round_trip("consul", &pw);
    }
}

/// A real parser a test needs is not installed: skipped on a developer's machine, a failure in
/// CI (scripts/install-test-deps installs them all), where a skip would prove nothing.
fn missing(what: &str) {
    assert!(std::env::var_os("CI").is_none(), "{what} is not installed: CI must run this test for real");
    println!("skipped: {what} is not installed");
}

/// PyYAML is what Patroni reads patroni.yml with: YAML 1.1, where a plain `yes` is true.
#[test]
fn pyyaml_reads_back_what_serde_does() {
    let probe = Command::new("python3").args(["-c", "import yaml"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return missing("python3 with PyYAML (apt-get install python3-yaml)");
    }
    let mut texts = Vec::new();
    for pw in HOSTILE.iter().map(|p| format!("{p}--padding")) {
        texts.extend(round_trip("etcd", &pw));
        texts.extend(round_trip("consul", &pw));
    }
    let dir = tempfile::tempdir().unwrap();
    for (i, text) in texts.iter().enumerate() {
        let path = dir.path().join(format!("{i}.yml"));
        std::fs::write(&path, text).unwrap();
        let out = Command::new("python3")
            .args([
                "-c",
                "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1], encoding='utf-8'))))",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "PyYAML: {}\n{text}", String::from_utf8_lossy(&out.stderr));
        let py: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let serde: serde_json::Value = serde_norway::from_str(text).unwrap();
        assert_eq!(py, serde, "{text}");
    }
}

#[test]
fn unit_values_are_escaped_for_their_place() {
    let r = |fill: Fill| hanode::units::render("X={{v}}", &[("v", fill)]);
    assert_eq!(r(Fill::Arg("a b\"c\\d$e%f".into())).unwrap(), r#"X="a b\"c\\d$$e%%f""#);
    assert_eq!(r(Fill::Program("/opt/a b%c$d".into())).unwrap(), r#"X="/opt/a b%%c$d""#);
    assert_eq!(r(Fill::Text("50% of %n".into())).unwrap(), "X=50%% of %%n");
    assert_eq!(r(Fill::Paths(vec!["/a b".into(), "/c".into()])).unwrap(), r#"X=-"/a b" -/c"#);
    // Plain words stay unquoted, as an operator would write them.
    assert_eq!(r(Fill::Program("/usr/bin/patroni".into())).unwrap(), "X=/usr/bin/patroni");
    assert_eq!(r(Fill::Arg("10.0.0.100/24".into())).unwrap(), "X=10.0.0.100/24");
    assert_eq!(r(Fill::Env(vec![("K", "v \"$x\" 5%".into())])).unwrap(), r#"X=Environment="K=v \"$x\" 5%%""#);
    assert_eq!(r(Fill::Env(Vec::new())).unwrap(), "X=# (no environment)");
    for bad in [
        Fill::Text("eth0\nUser=root".into()),
        Fill::Arg("x\nExecStartPre=/bin/sh".into()),
        Fill::Arg("nel\u{85}".into()),
        Fill::Text("continued\\".into()),
        Fill::Program("/opt/a\"b".into()),
        Fill::Program("relative/bin".into()),
        Fill::Paths(vec!["/a\\b".into()]),
    ] {
        let e = r(bad.clone()).expect_err(&format!("{bad:?}"));
        assert_eq!(hanode::error::kind_of(&e), hanode::error::Kind::BadInput, "{e:#}");
    }
    // A value is not searched for placeholders.
    assert_eq!(
        hanode::units::render("{{a}} {{b}}", &[("a", Fill::Text("{{b}}".into())), ("b", Fill::Text("x".into()))])
            .unwrap(),
        "{{b}} x"
    );
}

/// systemd reads the escaped program paths back: `verify` checks that each is an executable
/// file, so a path it decoded otherwise would be reported.
#[test]
fn systemd_analyze_verify_reads_escaped_paths() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        return missing("systemd-analyze (apt-get install systemd)");
    }
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("bin dir $HOME %n 50%");
    std::fs::create_dir_all(&odd).unwrap();
    let program = common::write(&odd, "vip-manager", "#!/bin/sh\n", 0o755);
    let data = dir.path().join("data dir %i $x");
    std::fs::create_dir_all(&data).unwrap();
    let text = hanode::units::render(
        "[Unit]\nDescription={{d}}\n[Service]\nExecStart={{p}} {{a}}\nExecStopPost=-{{p}} {{a}}\nReadWritePaths={{w}}\n{{e}}\n",
        &[
            ("d", Fill::Text("100% \"odd\" $USER".into())),
            ("p", Fill::Program(program)),
            ("a", Fill::Arg("--config=/etc/a b/$x%.yml".into())),
            ("w", Fill::Paths(vec![data, "/nonexistent dir".into()])),
            ("e", Fill::Env(vec![("A", "b \"c\" %d".into())])),
        ],
    )
    .unwrap();
    let unit = common::write(dir.path(), "odd.service", &text, 0o644);
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&unit).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "systemd-analyze verify:\n{err}\n{text}");
}

#[test]
fn findmnt_verifies_rendered_fstab() {
    if Command::new("findmnt").arg("--version").output().is_err() {
        return missing("findmnt (apt-get install util-linux)");
    }
    let dir = tempfile::tempdir().unwrap();
    let mounts: Vec<PathBuf> =
        ["pg data", "pg\tdata", "pg\\data", "pg\ndata", "pg#1"].iter().map(|m| dir.path().join(m)).collect();
    let text: String = mounts
        .iter()
        .enumerate()
        .map(|(i, m)| {
            std::fs::create_dir_all(m).unwrap();
            let opts = ["noatime".to_string(), "nofail".to_string()];
            hanode::phases::disks::fstab_line(&format!("0000-00{i}"), m, "ext4", &opts).unwrap() + "\n"
        })
        .collect();
    assert_eq!(text.lines().count(), mounts.len());
    let tab = common::write(dir.path(), "fstab", &text, 0o644);
    let out = Command::new("findmnt").arg("--verify").arg("--tab-file").arg(&tab).output().unwrap();
    let all = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // The only findings allowed: the filesystems are not on this machine.
    let other =
        all.lines().filter(|l| l.contains("[E]") || l.contains("[W]")).any(|l| !l.contains("source: UUID=0000-00"));
    assert!(all.contains("0 parse errors") && !other, "{all}\n{text}");
    let json = Command::new("findmnt").args(["--tab-file"]).arg(&tab).args(["-J", "-o", "TARGET"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let targets: Vec<PathBuf> =
        v["filesystems"].as_array().unwrap().iter().map(|f| PathBuf::from(f["target"].as_str().unwrap())).collect();
    assert_eq!(targets, mounts);
    for bad in [["noatime,exec"], ["no atime"], [""]] {
        let opts: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
        assert!(hanode::phases::disks::fstab_line("0f0e-11", Path::new("/x"), "ext4", &opts).is_err(), "{bad:?}");
    }
}

/// RFC 4231, test case 1.
#[test]
fn hmac_sha256_matches_rfc_4231() {
    assert_eq!(
        hex(&hanode::units::hmac_sha256(&[0x0b; 20], b"Hi There")),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The units carry a keyed hash: the same config gives the same hash on a node (restarts
/// follow changes only), a changed one another, and the key is root's alone.
#[test]
fn unit_hashes_are_keyed_and_stable() {
    use std::os::unix::fs::PermissionsExt;
    let root = common::fixture_root("debian-12");
    let cx = context("etcd", "password-1", root.path());
    let a = hanode::units::config_hash(&cx, "config").unwrap();
    assert_eq!(a, hanode::units::config_hash(&cx, "config").unwrap());
    assert_ne!(a, hanode::units::config_hash(&cx, "config2").unwrap());
    let plain = hex(&sha2_of(b"config"));
    assert_ne!(a, plain);
    let key = root.path().join(hanode::units::HASH_KEY.trim_start_matches('/'));
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 32);
    assert_eq!(a, hex(&hanode::units::hmac_sha256(&std::fs::read(&key).unwrap(), b"config")));
}

fn sha2_of(b: &[u8]) -> Vec<u8> {
    hanode::download::sha256_reader(b)
        .map(|h| (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect())
        .unwrap()
}
