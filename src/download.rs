//! Getting a file whose SHA-256 is known in advance, from a URL or a local directory.
//!
//! The bytes are hashed while they stream into a temporary file beside the destination; the
//! file is kept only when the hash matches, so nothing unverified is ever left behind.
//! Transient failures (timeouts, 5xx, 429, a cut-off body) are retried with backoff; a 404 or
//! a TLS failure is reported at once with the URL. Every download has a size cap and an overall
//! deadline, so a server that sends without end or trickles forever cannot hold a run.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::error::{bad_input, refused};
use crate::ui;

const ATTEMPTS: u32 = 4;
const BUF: usize = 256 * 1024;
/// The largest artifact hanode accepts: several times the largest release it installs.
const MAX_BYTES: u64 = 1 << 30;
/// How long one download may take, retries included.
const DEADLINE: Duration = Duration::from_secs(30 * 60);

/// Where a file comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Source {
    Url(#[serde(serialize_with = "crate::config::kinds::serialize_masked")] String),
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Url(u) => f.write_str(&crate::config::kinds::masked(u)),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Network timeouts; `HANODE_HTTP_TIMEOUT` (seconds) overrides the read timeout.
fn read_timeout() -> Duration {
    let secs = std::env::var("HANODE_HTTP_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    Duration::from_secs(secs)
}

/// A download's limits; `HANODE_DOWNLOAD_MAX_MIB` and `HANODE_DOWNLOAD_DEADLINE` (seconds)
/// override them for tests.
struct Limits {
    max_bytes: u64,
    total: Duration,
    deadline: Instant,
}

impl Limits {
    fn new() -> Limits {
        let env = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<u64>().ok());
        let total = env("HANODE_DOWNLOAD_DEADLINE").map_or(DEADLINE, Duration::from_secs);
        Limits {
            max_bytes: env("HANODE_DOWNLOAD_MAX_MIB").map_or(MAX_BYTES, |m| m << 20),
            total,
            deadline: Instant::now() + total,
        }
    }

    /// The error for a download that went past a limit: never worth retrying.
    fn error(&self, source: &Source, over: Over) -> anyhow::Error {
        match over {
            Over::Size => refused(format!(
                "{source} is larger than {} MiB, the most hanode accepts for an artifact; nothing was installed: check the URL in the site file or the mirror's file",
                self.max_bytes >> 20
            )),
            Over::Time => anyhow::anyhow!(
                "downloading {source} took longer than {:?}; nothing was installed: use a mirror near this host (install.mirror or --mirror) or an offline bundle (`hanode fetch`)",
                self.total
            ),
        }
    }
}

/// A limit a transfer went past.
enum Over {
    Size,
    Time,
}

/// Why a transfer stopped short.
enum Stop {
    Io(io::Error),
    Over(Over),
}

/// The retry delay before attempt `n` (1-based); `HANODE_HTTP_BACKOFF_MS` scales it for tests.
fn backoff(n: u32) -> Duration {
    let base = std::env::var("HANODE_HTTP_BACKOFF_MS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000u64);
    Duration::from_millis(base << (n - 1).min(5))
}

pub fn client() -> anyhow::Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        // Blocking reqwest applies this to each read, not to the whole transfer.
        .timeout(read_timeout())
        .user_agent(concat!("hanode/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("setting up the HTTP client")
}

/// Hex SHA-256 of everything `r` yields.
pub fn sha256_reader(mut r: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    sha256_reader(f).with_context(|| format!("reading {}", path.display()))
}

/// An attempt's failure: worth retrying or not.
enum Failure {
    Transient(anyhow::Error),
    Permanent(anyhow::Error),
}

/// Fetches `source` into `dest`, verifying `sha256` on the way. `label` names it in progress.
pub fn fetch_verified(source: &Source, sha256: &str, dest: &Path, label: &str) -> anyhow::Result<()> {
    let dir = dest.parent().context("destination has no directory")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let client = match source {
        Source::Url(_) => Some(client()?),
        Source::File(_) => None,
    };
    let limits = Limits::new();
    let mut attempt = 1;
    loop {
        let mut tmp = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        let result = match source {
            Source::Url(url) => get(client.as_ref().unwrap(), url, tmp.as_file_mut(), label, &limits),
            Source::File(path) => copy_local(path, tmp.as_file_mut(), label, &limits),
        };
        match result {
            Ok(got) if got == sha256 => {
                tmp.as_file().sync_all().with_context(|| format!("syncing {}", dest.display()))?;
                tmp.persist(dest)
                    .map_err(|e| e.error)
                    .with_context(|| format!("moving the verified file to {}", dest.display()))?;
                return Ok(());
            }
            // The temporary file is deleted when `tmp` drops: a bad download is never kept.
            Ok(got) => {
                return Err(refused(format!(
                    "checksum mismatch for {source}: expected sha256 {sha256}, got {got}; the file was deleted and nothing was installed. If upstream re-published the file, review it and update the pin (`hanode pin`)"
                )));
            }
            Err(Failure::Permanent(e)) => return Err(e),
            Err(Failure::Transient(e)) if attempt >= ATTEMPTS => {
                return Err(e.context(format!(
                    "downloading {source} failed {ATTEMPTS} times; check the network or the mirror, then run again"
                )));
            }
            Err(Failure::Transient(_)) if Instant::now() + backoff(attempt) >= limits.deadline => {
                return Err(limits.error(source, Over::Time));
            }
            Err(Failure::Transient(e)) => {
                let wait = backoff(attempt);
                ui::info(&format!(
                    "{label}: {e:#}; retrying in {:.1} s (attempt {} of {ATTEMPTS})",
                    wait.as_secs_f32(),
                    attempt + 1
                ));
                std::thread::sleep(wait);
                attempt += 1;
            }
        }
    }
}

fn copy_local(path: &Path, out: &mut File, label: &str, limits: &Limits) -> Result<String, Failure> {
    let f = File::open(path).map_err(|e| {
        Failure::Permanent(bad_input(format!(
            "cannot open {}: {e}; is the bundle directory complete (hanode fetch --dest)?",
            path.display()
        )))
    })?;
    let len = f.metadata().map(|m| m.len()).ok();
    stream(f, out, len, label, limits).map_err(|stop| match stop {
        Stop::Io(e) => Failure::Permanent(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
        Stop::Over(over) => Failure::Permanent(limits.error(&Source::File(path.to_path_buf()), over)),
    })
}

fn get(
    client: &reqwest::blocking::Client,
    url: &str,
    out: &mut File,
    label: &str,
    limits: &Limits,
) -> Result<String, Failure> {
    let resp = client.get(url).send().map_err(|e| classify(url, e))?;
    // Messages name the URL without the credentials a mirror's URL may carry.
    let url = &crate::config::kinds::masked(url);
    let status = resp.status();
    if !status.is_success() {
        let msg = anyhow::anyhow!("GET {url}: HTTP {status}");
        return Err(if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            Failure::Transient(msg)
        } else {
            Failure::Permanent(msg.context(match status.as_u16() {
                404 | 410 => {
                    "the file is not there: check the version and URL in the site file, or the mirror's contents"
                }
                401 | 403 => "the server refused access: check the mirror's permissions",
                _ => "the server refused the download",
            }))
        });
    }
    let len = resp.content_length();
    let source = Source::Url(url.to_string());
    // Refused before a byte is read when the server announces too much.
    if len.is_some_and(|l| l > limits.max_bytes) {
        return Err(Failure::Permanent(limits.error(&source, Over::Size)));
    }
    let got = stream(resp, out, len, label, limits).map_err(|stop| match stop {
        Stop::Io(e) => Failure::Transient(anyhow::anyhow!("GET {url}: the transfer broke off: {e}")),
        Stop::Over(over) => Failure::Permanent(limits.error(&source, over)),
    })?;
    // A body shorter than announced is a broken transfer, not a checksum mismatch.
    let written = out.metadata().map(|m| m.len()).unwrap_or(0);
    if let Some(len) = len.filter(|&l| l != written) {
        return Err(Failure::Transient(anyhow::anyhow!("GET {url}: received {written} of {len} bytes")));
    }
    Ok(got)
}

fn classify(url: &str, e: reqwest::Error) -> Failure {
    let url = &crate::config::kinds::masked(url);
    let e = e.without_url();
    let text = format!("{e:#}");
    let chain = {
        let mut s = text.clone();
        let mut src = std::error::Error::source(&e);
        while let Some(c) = src {
            s.push_str(&format!(": {c}"));
            src = c.source();
        }
        s
    };
    if chain.contains("certificate") || chain.contains("tls") || chain.contains("TLS") {
        Failure::Permanent(anyhow::anyhow!(
            "GET {url}: TLS failure: {chain}; check the system's CA certificates or use a mirror (install.mirror)"
        ))
    } else if e.is_builder() {
        Failure::Permanent(bad_input(format!("{url} is not a valid URL: {chain}")))
    } else {
        Failure::Transient(anyhow::anyhow!("GET {url}: {chain}"))
    }
}

/// Copies `r` into `out`, hashing as it goes, with progress, within `limits` (the deadline is
/// checked after each read, which the read timeout bounds); returns the hex SHA-256.
fn stream(mut r: impl Read, out: &mut File, len: Option<u64>, label: &str, limits: &Limits) -> Result<String, Stop> {
    let progress = Progress::new(label, len);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF];
    let mut done = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Stop::Io(e)),
        };
        done += n as u64;
        if done > limits.max_bytes {
            return Err(Stop::Over(Over::Size));
        }
        if Instant::now() >= limits.deadline {
            return Err(Stop::Over(Over::Time));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(Stop::Io)?;
        progress.update(done);
    }
    progress.finish(done);
    Ok(hex::encode(hasher.finalize()))
}

/// A bar on a terminal; a plain line every 5 s otherwise (journald, cloud-init logs).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    label: String,
    len: Option<u64>,
    last: std::cell::Cell<Instant>,
}

impl Progress {
    fn new(label: &str, len: Option<u64>) -> Self {
        let bar = ui::is_tty().then(|| {
            let bar = len.map_or_else(indicatif::ProgressBar::new_spinner, indicatif::ProgressBar::new);
            let style = indicatif::ProgressStyle::with_template(
                "    {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar.set_message(label.to_string());
            bar
        });
        Progress { bar, label: label.to_string(), len, last: std::cell::Cell::new(Instant::now()) }
    }

    fn update(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        } else if self.last.get().elapsed() >= Duration::from_secs(5) {
            self.last.set(Instant::now());
            ui::info(&format!("{}: {}", self.label, amount(done, self.len)));
        }
    }

    fn finish(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        ui::debug(&format!("{}: {}", self.label, amount(done, self.len)));
    }
}

fn amount(done: u64, len: Option<u64>) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    match len {
        Some(l) if l > 0 => format!("{:.1} of {:.1} MiB ({}%)", mib(done), mib(l), done * 100 / l),
        _ => format!("{:.1} MiB", mib(done)),
    }
}
