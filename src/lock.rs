//! One run that changes the host at a time: it holds an exclusive flock on /run/hanode.lock
//! (under the host root) while it works. The file holds the holder's PID for whoever waits.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

pub const PATH: &str = "/run/hanode.lock";

/// How long a second run waits for the first; `HANODE_LOCK_WAIT` (seconds) overrides it.
fn wait() -> Duration {
    let secs = std::env::var("HANODE_LOCK_WAIT").ok().and_then(|s| s.parse::<f64>().ok());
    secs.and_then(|s| Duration::try_from_secs_f64(s).ok()).unwrap_or(Duration::from_secs(30))
}

/// Held until dropped (or the process ends: the kernel releases a flock with its descriptor).
pub struct Lock(#[allow(dead_code)] Flock<File>);

/// Takes the lock of the host at `root`, waiting a while for a run that holds it.
pub fn acquire(root: &Path) -> anyhow::Result<Lock> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = root.join(PATH.trim_start_matches('/'));
    let dir = path.parent().context("the lock file has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Not truncated on open: the holder's PID stays readable for a run that waits.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    // Root's alone: anyone who can open it can hold the flock and block every run.
    nix::sys::stat::fchmod(&file, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .with_context(|| format!("making {} private (0600)", path.display()))?;
    let (start, wait) = (Instant::now(), wait());
    let mut told = false;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let me = std::process::id();
                lock.set_len(0)
                    .and_then(|()| lock.rewind())
                    .and_then(|()| writeln!(lock, "{me}"))
                    .with_context(|| format!("writing this run's PID into {}", path.display()))?;
                return Ok(Lock(lock));
            }
            Err((f, Errno::EWOULDBLOCK)) => file = f,
            Err((_, e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
        }
        let holder = holder(&mut file);
        if start.elapsed() >= wait {
            anyhow::bail!(
                "another hanode run ({holder}) still holds {} after {wait:?}; let it finish (see its output or `journalctl -u hanode-firstboot`), then run again",
                path.display()
            );
        }
        if !told {
            crate::ui::info(&format!(
                "another hanode run ({holder}) is changing this host: waiting up to {wait:?} for it to finish"
            ));
            told = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// "PID n" from the lock file, as its holder wrote it.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let read = file.rewind().and_then(|()| file.take(32).read_to_string(&mut text));
    match read.ok().and(text.trim().parse::<u32>().ok()) {
        Some(pid) => format!("PID {pid}"),
        None => "PID unknown".to_string(),
    }
}
