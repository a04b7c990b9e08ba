//! The one way hanode runs external commands.
//!
//! Every command carries a human description; on failure the error names it and shows argv,
//! the exit status and the tail of stderr. Secrets go in through stdin, never argv or the
//! environment. Every command has a timeout, after which it is killed with its process group.
//! Tests swap [`System`] for [`Recording`] to check exact argv.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;

use crate::config::secrets::Secret;

#[derive(Clone, serde::Serialize)]
pub struct Cmd {
    pub description: String,
    pub argv: Vec<String>,
    #[serde(skip)]
    pub env: Vec<(String, String)>,
    #[serde(skip)]
    pub stdin: Option<Secret>,
    /// How long it may run before it is killed: [`Cmd::DEFAULT_TIMEOUT`] unless set.
    #[serde(skip)]
    pub timeout: Duration,
}

impl Cmd {
    /// Ample for a command that only asks or configures; one that hangs is killed after it.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
    /// For what may take long on a slow mirror or a large disk: package installs, pip, mkfs,
    /// relabelling a data directory.
    pub const LONG_TIMEOUT: Duration = Duration::from_secs(30 * 60);

    pub fn new(description: impl Into<String>, program: impl Into<String>) -> Self {
        Cmd {
            description: description.into(),
            argv: vec![program.into()],
            env: Vec::new(),
            stdin: None,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.argv.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Feeds a secret to the command's standard input.
    pub fn stdin(mut self, secret: Secret) -> Self {
        self.stdin = Some(secret);
        self
    }

    /// argv as a shell would show it.
    pub fn shell_words(&self) -> String {
        self.argv
            .iter()
            .map(|a| {
                if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
                    a.clone()
                } else {
                    format!("'{}'", a.replace('\'', r"'\''"))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (`{}`)", self.description, self.shell_words())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs commands. `output` reports any exit status; `run` makes a non-zero one an error.
pub trait Runner: Send + Sync {
    /// Runs `cmd` to completion; an error only when it could not be started.
    fn output(&self, cmd: &Cmd) -> anyhow::Result<Output>;

    fn run(&self, cmd: &Cmd) -> anyhow::Result<Output> {
        let out = self.output(cmd)?;
        if out.success() {
            return Ok(out);
        }
        let status = out.code.map_or("was killed by a signal".to_string(), |c| format!("exited with status {c}"));
        anyhow::bail!(
            "{} failed: `{}` {status}; its last stderr lines:\n    {}",
            cmd.description,
            cmd.shell_words(),
            tail(&out.stderr)
        )
    }
}

/// The last lines of a command's stderr, indented for an error message.
fn tail(stderr: &str) -> String {
    let tail: Vec<&str> = stderr.lines().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect();
    if tail.is_empty() { "(stderr was empty)".to_string() } else { tail.join("\n    ") }
}

/// Shared runners, so a test can keep a handle on a [`Recording`] it gave away.
impl<R: Runner> Runner for std::sync::Arc<R> {
    fn output(&self, cmd: &Cmd) -> anyhow::Result<Output> {
        (**self).output(cmd)
    }
}

/// Runs commands on the target host: this one, or inside `root` with chroot(8) when hanode
/// works on another root (an image being built; a test's temporary root, where it fails
/// instead of touching this machine).
#[derive(Default)]
pub struct System {
    root: Option<std::path::PathBuf>,
}

impl System {
    pub fn for_root(root: &std::path::Path) -> Self {
        System { root: (root != std::path::Path::new("/")).then(|| root.to_path_buf()) }
    }
}

impl Runner for System {
    fn output(&self, cmd: &Cmd) -> anyhow::Result<Output> {
        let mut argv: Vec<String> = Vec::new();
        if let Some(root) = &self.root {
            argv.extend(["chroot".to_string(), root.display().to_string()]);
        }
        argv.extend(cmd.argv.iter().cloned());
        crate::ui::debug(&format!("{}: {}", cmd.description, cmd.shell_words()));
        let mut expr = duct::cmd(&argv[0], &argv[1..]).env("LC_ALL", "C");
        for (k, v) in &cmd.env {
            expr = expr.env(k, v);
        }
        expr = match &cmd.stdin {
            Some(s) => expr.stdin_bytes(s.expose().as_bytes().to_vec()),
            None => expr.stdin_null(),
        };
        // Its own process group, so that a timeout kills what it started as well.
        let expr = expr.stdout_capture().stderr_capture().unchecked().before_spawn(|c| {
            std::os::unix::process::CommandExt::process_group(c, 0);
            Ok(())
        });
        let handle = match expr.start() {
            Ok(handle) => handle,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let missing = crate::error::MissingProgram { program: cmd.argv[0].clone() };
                return Err(anyhow::Error::new(missing).context(cmd.description.clone()));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e))
                    .with_context(|| format!("{}: cannot start `{}`", cmd.description, cmd.argv[0]));
            }
        };
        let waiting = || format!("{}: waiting for `{}`", cmd.description, cmd.argv[0]);
        if handle.wait_timeout(cmd.timeout).with_context(waiting)?.is_none() {
            for pid in handle.pids() {
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::SIGKILL);
            }
            // Its output, if the pipes close soon: a process that left the group (setsid)
            // may hold them open for ever, and the run must not hang on it.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || tx.send(handle.into_output()));
            let stderr = match rx.recv_timeout(std::time::Duration::from_secs(5)) {
                Ok(Ok(out)) => tail(&String::from_utf8_lossy(&out.stderr)),
                _ => "(not readable: a process it started still holds its output open)".to_string(),
            };
            anyhow::bail!(
                "{} did not finish within {:?}: `{}` was killed; check what it waits for (the network, a mirror, another package manager holding its lock, a slow disk), then run again; its last stderr lines:\n    {}",
                cmd.description,
                cmd.timeout,
                cmd.shell_words(),
                stderr
            );
        }
        let out = handle.into_output().with_context(waiting)?;
        Ok(Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Records argv instead of running; answers with canned output (success and empty by default).
#[derive(Default)]
pub struct Recording {
    pub calls: Mutex<Vec<Vec<String>>>,
    replies: Mutex<Vec<(Vec<String>, Output)>>,
}

impl Recording {
    /// Answers commands whose argv starts with `prefix` with `out`.
    pub fn reply(&self, prefix: &[&str], out: Output) {
        self.replies.lock().unwrap().push((prefix.iter().map(|s| s.to_string()).collect(), out));
    }

    pub fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().unwrap().clone()
    }
}

impl Runner for Recording {
    fn output(&self, cmd: &Cmd) -> anyhow::Result<Output> {
        self.calls.lock().unwrap().push(cmd.argv.clone());
        let replies = self.replies.lock().unwrap();
        let found = replies.iter().find(|(p, _)| cmd.argv.starts_with(p));
        Ok(found.map_or(Output { code: Some(0), ..Default::default() }, |(_, o)| o.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_names_command_status_and_stderr() {
        let cmd = Cmd::new("listing a missing file", "ls").arg("/nonexistent/hanode");
        let err = System::default().run(&cmd).unwrap_err().to_string();
        assert!(err.contains("listing a missing file failed"), "{err}");
        assert!(err.contains("`ls /nonexistent/hanode` exited with status 2"), "{err}");
        assert!(err.contains("No such file"), "{err}");
    }

    #[test]
    fn secrets_travel_on_stdin_only() {
        let cmd = Cmd::new("reading a secret", "cat").stdin(Secret::new("s3cr3t-value"));
        assert_eq!(System::default().run(&cmd).unwrap().stdout, "s3cr3t-value");
        assert!(!format!("{cmd:?}").contains("s3cr3t"));
        assert!(!serde_json::to_string(&cmd).unwrap().contains("s3cr3t"));
    }

    #[test]
    fn a_missing_program_says_so() {
        let err = System::default().run(&Cmd::new("probing", "hanode-no-such-program")).unwrap_err();
        assert!(format!("{err:#}").contains("is it installed"), "{err:#}");
    }

    #[test]
    fn a_command_that_overruns_its_timeout_is_killed_with_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        // The background sleep keeps stdout open: were it not killed too, waiting would take 60 s.
        let script = format!("sleep 60 & echo $! > {}; echo started >&2; wait", pid_file.display());
        let cmd = Cmd::new("waiting for nothing", "sh").args(["-c", &script]).timeout(Duration::from_secs(1));
        let start = std::time::Instant::now();
        let err = System::default().run(&cmd).unwrap_err().to_string();
        assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
        assert!(err.contains("waiting for nothing did not finish within 1s: `sh -c"), "{err}");
        assert!(err.contains("was killed; check what it waits for") && err.contains("started"), "{err}");
        let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok() {
            assert!(std::time::Instant::now() < deadline, "the background sleep {pid} outlived the timeout");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(Cmd::new("x", "true").timeout, Cmd::DEFAULT_TIMEOUT);
    }

    #[test]
    fn a_timeout_returns_though_an_escaped_process_holds_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        // setsid leaves the process group the timeout kills, keeping stdout and stderr open.
        let script = format!("setsid sleep 30 & echo $! > {}; wait", pid_file.display());
        let cmd = Cmd::new("escaping", "sh").args(["-c", &script]).timeout(Duration::from_secs(1));
        let start = std::time::Instant::now();
        let err = System::default().run(&cmd).unwrap_err().to_string();
        assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
        assert!(err.contains("still holds its output open"), "{err}");
        if let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|p| p.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
    }

    #[test]
    fn shell_words_quote_what_needs_it() {
        let cmd = Cmd::new("x", "echo").args(["a b", "it's", "plain"]);
        assert_eq!(cmd.shell_words(), r"echo 'a b' 'it'\''s' plain");
    }
}
