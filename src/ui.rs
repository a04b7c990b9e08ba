//! What hanode prints: concise, marked-up lines on a terminal; plain lines that read well in
//! journald and cloud-init logs otherwise. With `--output json` the human lines go to stderr
//! so that stdout holds only the JSON document. Colour goes through anstream, which drops it
//! when the stream is not a terminal, or NO_COLOR or CLICOLOR=0 is set. When the stream is the
//! journal (systemd names it in JOURNAL_STREAM), every line starts with its syslog priority
//! (`<3>`), which journald reads and strips: `journalctl -p warning -u hanode-firstboot` then
//! shows the warnings and errors.

use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::sync::OnceLock;

use anstyle::{AnsiColor, Style};

#[derive(Debug, Clone, Copy)]
struct Mode {
    tty: bool,
    json: bool,
    verbose: bool,
    stdout_journal: bool,
    stderr_journal: bool,
}

static MODE: OnceLock<Mode> = OnceLock::new();

pub fn init(json: bool, verbose: bool) {
    let _ = MODE.set(Mode { tty: std::io::stdout().is_terminal() && !json, json, verbose, ..Mode::plain() });
}

fn mode() -> Mode {
    *MODE.get_or_init(Mode::plain)
}

impl Mode {
    /// Before `init` (and in library use): plain lines on stdout, journal prefixes where it is one.
    fn plain() -> Mode {
        Mode {
            tty: false,
            json: false,
            verbose: false,
            stdout_journal: is_journal(std::io::stdout().as_fd()),
            stderr_journal: is_journal(std::io::stderr().as_fd()),
        }
    }
}

/// Whether `fd` is the journal stream systemd connected: JOURNAL_STREAM is "DEVICE:INODE" of
/// it (a child whose output was redirected elsewhere inherits the variable, not the stream).
fn is_journal(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Ok(st) = nix::sys::stat::fstat(fd) else { return false };
    journal_stream_matches(&value.to_string_lossy(), st.st_dev, st.st_ino)
}

fn journal_stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    value.split_once(':').is_some_and(|(d, i)| d.parse() == Ok(dev) && i.parse() == Ok(ino))
}

/// syslog priorities, as journald reads them from a `<N>` line prefix.
#[derive(Clone, Copy)]
enum Priority {
    Error = 3,
    Warning = 4,
    Info = 6,
    Debug = 7,
}

/// Writes `text` line by line to stdout (stderr with `--output json`, or `to_stderr`), each line
/// with its priority when that stream is the journal.
fn emit_to(to_stderr: bool, priority: Priority, text: &str) {
    let m = mode();
    let journal = if to_stderr { m.stderr_journal } else { m.stdout_journal };
    let mut out = String::new();
    for line in text.lines() {
        if journal {
            out.push_str(&format!("<{}>", priority as u8));
        }
        out.push_str(line);
        out.push('\n');
    }
    let _ = if to_stderr {
        anstream::stderr().write_all(out.as_bytes())
    } else {
        anstream::stdout().write_all(out.as_bytes())
    };
}

fn emit(priority: Priority, text: &str) {
    emit_to(mode().json, priority, text)
}

/// Whether a person is watching: redraw progress in place, use symbols.
pub fn is_tty() -> bool {
    mode().tty
}

/// `text` in `style` (anstream drops the escape codes where colour is off).
fn styled(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

/// The start of a phase.
pub fn section(name: &str) {
    if is_tty() {
        emit(Priority::Info, &styled(Style::new().bold(), &format!("==> {name}")))
    } else {
        emit(Priority::Info, &format!("[{name}]"))
    }
}

pub fn info(msg: &str) {
    emit(Priority::Info, &indent(msg))
}

fn indent(msg: &str) -> String {
    if is_tty() { format!("    {msg}") } else { msg.to_string() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warn,
    Error,
}

/// One preflight result, kubeadm-style: `[OK] name: detail`.
pub fn check(status: Status, name: &str, detail: &str) {
    let (tag, color, priority) = match status {
        Status::Ok => ("OK", AnsiColor::Green, Priority::Info),
        Status::Warn => ("WARN", AnsiColor::Yellow, Priority::Warning),
        Status::Error => ("ERROR", AnsiColor::Red, Priority::Error),
    };
    let tag = if is_tty() { styled(color.on_default(), &format!("[{tag}]")) } else { format!("[{tag}]") };
    emit(priority, &indent(&format!("{tag} {name}: {detail}")));
}

/// A change, planned or being applied, with its diff indented below it.
pub fn change(verb: &str, summary: &str, diff: Option<&str>) {
    info(&format!("{verb} {summary}"));
    for line in diff.into_iter().flat_map(str::lines) {
        info(&format!("    {line}"));
    }
}

/// Only with `-v`: every command hanode runs.
pub fn debug(msg: &str) {
    if mode().verbose {
        emit_to(true, Priority::Debug, &format!("hanode: {msg}"));
    }
}

pub fn error(msg: &str) {
    emit_to(true, Priority::Error, &format!("{} {msg}", styled(AnsiColor::Red.on_default(), "error:")));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_is_matched_by_device_and_inode() {
        assert!(journal_stream_matches("8:1234", 8, 1234));
        assert!(!journal_stream_matches("8:1234", 8, 1235));
        assert!(!journal_stream_matches("9:1234", 8, 1234));
        assert!(!journal_stream_matches("garbage", 8, 1234));
        assert!(!journal_stream_matches("", 0, 0));
    }
}
