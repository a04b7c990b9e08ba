//! The artifacts phase against real release tarballs (Debian's etcd and vip-manager, re-packed
//! in the upstream layout by scripts/fixtures) served from a loopback HTTP server.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::http::{Fault, Server};
use common::{Run, fixture_root, hanode_env, write};

/// Waits for `cond`, failing the test after `secs` seconds.
fn poll(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Fixtures {
    dir: PathBuf,
    etcd: String,
    vip: String,
}

impl Fixtures {
    fn load() -> Fixtures {
        let dir = std::env::var("HANODE_TEST_FIXTURES")
            .map(PathBuf::from)
            .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fixtures"));
        let versions = std::fs::read_to_string(dir.join("versions")).unwrap_or_else(|_| {
            panic!("no test fixtures in {}: run scripts/fixtures first (scripts/test does)", dir.display())
        });
        let get = |k: &str| versions.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap().to_string();
        Fixtures { etcd: get("etcd"), vip: get("vip-manager"), dir }
    }
    fn etcd_file(&self) -> String {
        format!("etcd-v{}-linux-amd64.tar.gz", self.etcd)
    }
    fn vip_file(&self) -> String {
        format!("vip-manager_{}_Linux_x86_64.tar.gz", self.vip)
    }
    fn sum(&self, list: &str, file: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(list)).unwrap();
        text.lines().find(|l| l.ends_with(file)).unwrap()[..64].to_string()
    }
}

/// A site file pinning both artifacts at `base`, with checksums overridable.
fn site(f: &Fixtures, base: &str, etcd_sha: Option<&str>) -> String {
    let etcd_sha = etcd_sha.map_or_else(|| f.sum("SHA256SUMS", &f.etcd_file()), str::to_string);
    format!(
        r#"[cluster]
name = "lab"
members = [{{ name = "pg1", address = "127.0.0.1" }}]

[vip]
address = "127.0.0.100/8"

[artifacts.etcd]
version = "{}"
url = "{base}/{}"
sha256 = "{etcd_sha}"

[artifacts.vip-manager]
version = "{}"
url = "{base}/{}"
sha256 = "{}"
"#,
        f.etcd,
        f.etcd_file(),
        f.vip,
        f.vip_file(),
        f.sum("checksums.txt", &f.vip_file())
    )
}

struct Host {
    root: tempfile::TempDir,
    site: PathBuf,
}

impl Host {
    fn new(site_text: &str) -> Host {
        let root = fixture_root("debian-13");
        let site = write(root.path(), "site.toml", site_text, 0o644);
        Host { root, site }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p.trim_start_matches('/'))
    }
    /// `init phase artifacts` on this host, with `extra` arguments.
    fn args(&self, extra: &[&str]) -> Vec<String> {
        let root = self.root.path().display().to_string();
        let site = self.site.display().to_string();
        // Only the artifacts phase: the others would run apt, useradd... inside the temporary root.
        let args = ["init", "phase", "artifacts", "--role", "postgres", "--root", &root, "--config", &site];
        args.iter().chain(&["--node", "pg1"]).chain(extra).map(|s| s.to_string()).collect()
    }
    fn init(&self, extra: &[&str], env: &[(&str, &str)]) -> Run {
        let args = self.args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        hanode_env(&args, &[&[("HANODE_HTTP_BACKOFF_MS", "20")], env].concat())
    }
    /// `init` started in the background, its output captured.
    fn spawn(&self, env: &[(&str, &str)]) -> std::process::Child {
        std::process::Command::new(common::bin())
            .args(self.args(&[]))
            .envs(env.iter().copied())
            .env_remove("HANODE_ROOT")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
    /// Files under the cache and install prefix, to show nothing was left behind.
    fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        for d in ["var/cache/hanode", "opt/hanode", "usr/local/bin"] {
            let mut stack = vec![self.path(d)];
            while let Some(p) = stack.pop() {
                for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                    if e.path().is_dir() {
                        stack.push(e.path());
                    } else {
                        out.push(e.path().display().to_string());
                    }
                }
            }
        }
        out
    }
}

fn version_of(bin: &Path) -> String {
    let out = std::process::Command::new(bin).arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn installs_verified_releases_and_a_rerun_downloads_nothing() {
    let f = Fixtures::load();
    let server = Server::start(f.dir.clone());
    let host = Host::new(&site(&f, &server.url, None));
    let run = host.init(&[], &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains(&format!("install etcd {} into /opt/hanode/etcd-{}", f.etcd, f.etcd)),
        "{}",
        run.stdout
    );

    let link = host.path("/usr/local/bin/etcd");
    assert_eq!(std::fs::read_link(&link).unwrap(), PathBuf::from(format!("/opt/hanode/etcd-{}/etcd", f.etcd)));
    let etcd = host.path(&format!("/opt/hanode/etcd-{}/etcd", f.etcd));
    assert!(version_of(&etcd).contains(&f.etcd), "{}", version_of(&etcd));
    assert!(host.path(&format!("/opt/hanode/etcd-{}/etcdctl", f.etcd)).exists());
    assert!(host.path(&format!("/opt/hanode/vip-manager-{}/vip-manager", f.vip)).exists());
    assert_eq!(
        std::fs::read_link(host.path("/usr/local/bin/vip-manager")).unwrap(),
        PathBuf::from(format!("/opt/hanode/vip-manager-{}/vip-manager", f.vip))
    );
    assert_eq!((server.hits(&f.etcd_file()), server.hits(&f.vip_file())), (1, 1));

    let again = host.init(&[], &[]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(again.stdout.contains("no changes"), "{}", again.stdout);
    assert_eq!(server.total_hits(), 2, "a converged host downloaded again");
}

#[test]
fn a_wrong_checksum_installs_nothing_and_keeps_nothing() {
    let f = Fixtures::load();
    let server = Server::start(f.dir.clone());
    let wrong = f.sum("checksums.txt", &f.vip_file()); // a real checksum, of another file
    let host = Host::new(&site(&f, &server.url, Some(&wrong)));
    let run = host.init(&[], &[]);
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(run.stderr.contains("checksum mismatch") && run.stderr.contains(&f.etcd_file()), "{}", run.stderr);
    assert!(
        run.stderr.contains(&f.sum("SHA256SUMS", &f.etcd_file())),
        "the message shows the real hash: {}",
        run.stderr
    );
    assert_eq!(host.leftovers(), Vec::<String>::new());
}

#[test]
fn transient_failures_are_retried() {
    let f = Fixtures::load();
    for fault in [Fault::Status(500, 1), Fault::Status(429, 2), Fault::Status(503, 1), Fault::Truncate(1)] {
        let server = Server::start(f.dir.clone());
        server.set_fault(fault);
        let host = Host::new(&site(&f, &server.url, None));
        let run = host.init(&[], &[]);
        assert_eq!(run.code, 0, "{fault:?}: {}", run.all());
        assert!(run.stdout.contains("retrying"), "{fault:?}: {}", run.stdout);
        let expected = match fault {
            Fault::Status(_, n) => n + 1,
            _ => 2,
        };
        assert_eq!(server.hits(&f.etcd_file()), expected, "{fault:?}");
        assert!(host.path(&format!("/opt/hanode/etcd-{}/etcd", f.etcd)).exists());
    }
}

#[test]
fn a_body_that_is_always_cut_off_fails_after_retries() {
    let f = Fixtures::load();
    let server = Server::start(f.dir.clone());
    server.set_fault(Fault::Truncate(100));
    let host = Host::new(&site(&f, &server.url, None));
    let run = host.init(&[], &[]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("failed 4 times") && run.stderr.contains(&f.etcd_file()), "{}", run.stderr);
    assert_eq!(server.hits(&f.etcd_file()), 4);
    assert_eq!(host.leftovers(), Vec::<String>::new());
}

#[test]
fn not_found_fails_at_once_naming_the_url() {
    let f = Fixtures::load();
    let server = Server::start(f.dir.clone());
    let host = Host::new(&site(&f, &format!("{}/missing", server.url), None));
    let run = host.init(&[], &[]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains(&format!("{}/missing/{}: HTTP 404", server.url, f.etcd_file())), "{}", run.stderr);
    assert!(run.stderr.contains("check the version and URL"), "{}", run.stderr);
    assert_eq!(server.total_hits(), 1, "a 404 was retried");
}

#[test]
fn a_mirrors_credentials_are_never_shown() {
    let f = Fixtures::load();
    let server = Server::start(f.dir.clone());
    let with_creds = server.url.replacen("http://", "http://mirror-user:s3cret-pw@", 1);
    let host = Host::new(&site(&f, &format!("{with_creds}/missing"), None));
    let mut plan_json = host.args(&["--output", "json"]);
    plan_json.splice(0..3, ["plan".to_string()]);
    let plan_json: Vec<&str> = plan_json.iter().map(String::as_str).collect();
    for run in [host.init(&[], &[]), host.init(&["--dry-run"], &[]), common::hanode(&plan_json)] {
        assert!(!run.all().contains("s3cret-pw") && !run.all().contains("mirror-user"), "{}", run.all());
        assert!(run.all().contains("http://***@127.0.0.1"), "{}", run.all());
    }
    // A refused --mirror is not echoed by the argument parser either.
    let bad = format!("{with_creds} x");
    let run = host.init(&["--mirror", &bad], &[]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(!run.all().contains("s3cret-pw"), "{}", run.all());
}

#[test]
fn a_stalled_server_times_out_but_a_slow_one_finishes() {
    let f = Fixtures::load();
    let server = Server::start(f.dir.clone());
    server.set_fault(Fault::Stall(Duration::from_secs(20)));
    let host = Host::new(&site(&f, &server.url, None));
    let run = host.init(&[], &[("HANODE_HTTP_TIMEOUT", "1")]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("failed 4 times"), "{}", run.stderr);
    assert_eq!(host.leftovers(), Vec::<String>::new());

    // Steady progress slower than the read timeout in total, never idle that long: succeeds.
    let server = Server::start(f.dir.clone());
    server.set_fault(Fault::Slow(Duration::from_millis(400)));
    let host = Host::new(&site(&f, &server.url, None));
    let run = host.init(&[], &[("HANODE_HTTP_TIMEOUT", "1")]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(server.hits(&f.etcd_file()), 1);
}

#[test]
fn a_download_past_its_size_cap_or_deadline_stops_naming_the_url() {
    let f = Fixtures::load();
    let url = |server: &Server| format!("{}/{}", server.url, f.etcd_file());
    // The etcd tarball is larger than 4 MiB: refused on the announced length, and while it
    // streams when no length is announced.
    for fault in [Fault::None, Fault::Unannounced] {
        let server = Server::start(f.dir.clone());
        server.set_fault(fault);
        let host = Host::new(&site(&f, &server.url, None));
        let run = host.init(&[], &[("HANODE_DOWNLOAD_MAX_MIB", "4")]);
        assert_eq!(run.code, 3, "{fault:?}: {}", run.all());
        assert!(run.stderr.contains(&format!("{} is larger than 4 MiB", url(&server))), "{}", run.stderr);
        assert_eq!(server.hits(&f.etcd_file()), 1, "a download past its cap was retried");
        assert_eq!(host.leftovers(), Vec::<String>::new());
    }
    // Never idle as long as the read timeout, but slower in total than the deadline.
    let server = Server::start(f.dir.clone());
    server.set_fault(Fault::Slow(Duration::from_millis(700)));
    let host = Host::new(&site(&f, &server.url, None));
    let run = host.init(&[], &[("HANODE_DOWNLOAD_DEADLINE", "2")]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains(&format!("downloading {} took longer than 2s", url(&server))), "{}", run.stderr);
    assert_eq!(server.hits(&f.etcd_file()), 1);
    assert_eq!(host.leftovers(), Vec::<String>::new());
}

#[test]
fn a_tarball_with_parent_paths_is_refused() {
    let f = Fixtures::load();
    let dir = tempfile::tempdir().unwrap();
    let file = f.etcd_file();
    {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(dir.path().join(&file)).unwrap(),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        for name in ["etcd-dir/etcd", "etcd-dir/etcdctl", "../../usr/local/bin/evil"] {
            let mut h = tar::Header::new_old();
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            h.set_size(4);
            h.set_mode(0o755);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            tar.append(&h, &b"#!/x"[..]).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }
    let sha = hanode::download::sha256_file(&dir.path().join(&file)).unwrap();
    std::fs::copy(f.dir.join(f.vip_file()), dir.path().join(f.vip_file())).unwrap();
    let server = Server::start(dir.path().to_path_buf());
    let host = Host::new(&site(&f, &server.url, Some(&sha)));
    let run = host.init(&[], &[]);
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(run.stderr.contains("unsafe path `../../usr/local/bin/evil`"), "{}", run.stderr);
    assert!(!host.path("/opt/hanode").join(format!("etcd-{}", f.etcd)).exists());
    assert!(!host.path("/usr/local/bin/evil").exists() && !host.path("/usr/local/bin").exists());
}

#[test]
fn offline_bundle_installs_with_the_server_stopped() {
    let f = Fixtures::load();
    let mut server = Server::start(f.dir.clone());
    let host = Host::new(&site(&f, &server.url, None));
    let bundle = tempfile::tempdir().unwrap();
    let b = bundle.path().display().to_string();
    let run = hanode_env(&["fetch", "--dest", &b, "--config", &host.site.display().to_string()], &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["artifacts"].as_array().unwrap().len(), 2);
    let check = std::process::Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(bundle.path())
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    // fetching again reuses what is there
    let hits = server.total_hits();
    assert_eq!(hanode_env(&["fetch", "--dest", &b, "--config", &host.site.display().to_string()], &[]).code, 0);
    assert_eq!(server.total_hits(), hits);

    server.stop();
    let offline = Host::new(&site(&f, &server.url, None));
    let run = offline.init(&["--mirror", &b], &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(version_of(&offline.path(&format!("/opt/hanode/etcd-{}/etcd", f.etcd))).contains(&f.etcd));
}

#[test]
fn a_tampered_binary_is_reinstalled_from_the_cache() {
    let f = Fixtures::load();
    let mut server = Server::start(f.dir.clone());
    let host = Host::new(&site(&f, &server.url, None));
    assert_eq!(host.init(&[], &[]).code, 0);
    let etcd = host.path(&format!("/opt/hanode/etcd-{}/etcd", f.etcd));
    std::fs::write(&etcd, b"#!/bin/sh\necho tampered\n").unwrap();
    server.stop(); // the cache must serve it
    let run = host.init(&["--dry-run"], &[]);
    assert!(run.stdout.contains(&format!("would install etcd {}", f.etcd)), "{}", run.stdout);
    let run = host.init(&[], &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(version_of(&etcd).contains(&f.etcd));
}

#[test]
fn a_foreign_binary_in_bin_dir_is_not_overwritten() {
    let f = Fixtures::load();
    let server = Server::start(f.dir.clone());
    let host = Host::new(&site(&f, &server.url, None));
    std::fs::create_dir_all(host.path("/usr/local/bin")).unwrap();
    std::fs::write(host.path("/usr/local/bin/etcd"), b"mine").unwrap();
    let run = host.init(&[], &[]);
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(run.stderr.contains("is not a link hanode made"), "{}", run.stderr);
    assert_eq!(std::fs::read(host.path("/usr/local/bin/etcd")).unwrap(), b"mine");
}

#[test]
fn pin_writes_upstream_checksums_into_the_site_file() {
    let f = Fixtures::load();
    let server = Server::start(f.dir.clone());
    let dir = tempfile::tempdir().unwrap();
    let base = "# our cluster\n[cluster]\nname = \"lab\"\nmembers = [{ name = \"pg1\", address = \"127.0.0.1\" }]\n";
    let site = write(dir.path(), "site.toml", base, 0o640);
    let s = site.display().to_string();
    for (name, version) in [("etcd", f.etcd.as_str()), ("vip-manager", f.vip.as_str())] {
        let run = hanode_env(&["pin", name, version, "--config", &s, "--base-url", &server.url], &[]);
        assert_eq!(run.code, 0, "{}", run.all());
    }
    let text = std::fs::read_to_string(&site).unwrap();
    assert!(text.starts_with("# our cluster\n"), "{text}");
    let parsed = hanode::config::Site::parse(&site, &text).unwrap();
    let etcd = parsed.artifacts.iter().find(|a| a.name == "etcd").unwrap();
    assert_eq!(etcd.sha256, f.sum("SHA256SUMS", &f.etcd_file()));
    assert_eq!(etcd.url, format!("{}/{}", server.url, f.etcd_file()));
    let vip = parsed.artifacts.iter().find(|a| a.name == "vip-manager").unwrap();
    assert_eq!(vip.sha256, f.sum("checksums.txt", &f.vip_file()));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&site).unwrap().permissions().mode() & 0o777, 0o640);
    // A version upstream does not list is an error, and the file is unchanged.
    let run = hanode_env(&["pin", "etcd", "9.9.9", "--config", &s, "--base-url", &server.url], &[]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("lists no etcd-v9.9.9-linux-amd64.tar.gz"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&site).unwrap(), text);
}

#[test]
fn one_run_at_a_time_changes_a_host() {
    let f = Fixtures::load();
    let server = Server::start(f.dir.clone());
    // Slow enough (2 files of 8 pieces, 0.7 s apart) that the first run holds the lock for ~11 s.
    server.set_fault(Fault::Slow(Duration::from_millis(700)));
    let host = Host::new(&site(&f, &server.url, None));
    let first = host.spawn(&[]);
    let lock = host.path("/run/hanode.lock");
    // It downloads only once it holds the lock.
    poll(30, "the first run's download", || server.total_hits() > 0);
    assert_eq!(std::fs::read_to_string(&lock).unwrap().trim(), first.id().to_string());

    let impatient = host.init(&[], &[("HANODE_LOCK_WAIT", "0.5")]);
    assert_eq!(impatient.code, 1, "{}", impatient.all());
    assert!(impatient.stdout.contains(&format!("another hanode run (PID {}) is changing this host", first.id())));
    assert!(impatient.stderr.contains(&format!("(PID {}) still holds {}", first.id(), lock.display())));
    assert_eq!(server.total_hits(), 1, "the second run downloaded while the first held the lock");

    // Patient enough for a loaded machine: the wait is bounded by the first run, not a clock.
    let patient = host.spawn(&[("HANODE_LOCK_WAIT", "600")]);
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let patient = patient.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&patient.stdout);
    assert!(patient.status.success(), "{out}{}", String::from_utf8_lossy(&patient.stderr));
    assert!(out.contains("waiting up to 600s") && out.contains("no changes"), "{out}");
    assert_eq!(server.total_hits(), 2, "the waiting run downloaded again");
    assert!(host.leftovers().iter().all(|p| !p.contains(".partial")), "{:?}", host.leftovers());
}
