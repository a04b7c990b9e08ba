//! What hanode prints: concise, marked-up lines on a terminal; plain lines that read well in
//! journald and cloud-init logs otherwise. With `--output json` the human lines go to stderr
//! so that stdout holds only the JSON document.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy)]
struct Mode {
    tty: bool,
    json: bool,
    verbose: bool,
}

static MODE: OnceLock<Mode> = OnceLock::new();

pub fn init(json: bool, verbose: bool) {
    let _ = MODE.set(Mode { tty: std::io::stdout().is_terminal() && !json, json, verbose });
}

fn mode() -> Mode {
    *MODE.get_or_init(|| Mode { tty: false, json: false, verbose: false })
}

/// Whether a person is watching: redraw progress in place, use symbols.
pub fn is_tty() -> bool {
    mode().tty
}

fn emit(line: &str) {
    if mode().json {
        let _ = writeln!(std::io::stderr(), "{line}");
    } else {
        let _ = writeln!(std::io::stdout(), "{line}");
    }
}

/// The start of a phase.
pub fn section(name: &str) {
    if is_tty() { emit(&format!("\x1b[1m==> {name}\x1b[0m")) } else { emit(&format!("[{name}]")) }
}

pub fn info(msg: &str) {
    if is_tty() { emit(&format!("    {msg}")) } else { emit(msg) }
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
    let tag = match status {
        Status::Ok => "OK",
        Status::Warn => "WARN",
        Status::Error => "ERROR",
    };
    if is_tty() {
        let color = match status {
            Status::Ok => "32",
            Status::Warn => "33",
            Status::Error => "31",
        };
        emit(&format!("    \x1b[{color}m[{tag}]\x1b[0m {name}: {detail}"));
    } else {
        emit(&format!("[{tag}] {name}: {detail}"));
    }
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
        let _ = writeln!(std::io::stderr(), "hanode: {msg}");
    }
}

pub fn error(msg: &str) {
    let prefix = if std::io::stderr().is_terminal() { "\x1b[31merror:\x1b[0m" } else { "error:" };
    let _ = writeln!(std::io::stderr(), "{prefix} {msg}");
}
