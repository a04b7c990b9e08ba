//! The converge engine on a temporary host root, with a recording command runner.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hanode::config::Role;
use hanode::context::{Context, Options};
use hanode::engine::{self, Action, Change, Phase, Report, Stage, Step};
use hanode::exec::{Cmd, Recording};
use hanode::files::FileSpec;

const SITE: &str = "[cluster]\nname = \"main\"\nmembers = [{ name = \"pg1\", address = \"10.0.0.11\" }]\n";

fn context(root: &Path, runner: Arc<Recording>) -> Context {
    let site = common::write(root, "site.toml", SITE, 0o644);
    let opts = Options {
        root: root.to_path_buf(),
        config: Some(site),
        node: Some("pg1".into()),
        role: Some(Role::Postgres),
        ..Options::default()
    };
    Context::load(&opts, Box::new(runner)).unwrap()
}

fn me() -> (String, String) {
    let u = nix::unistd::User::from_uid(nix::unistd::Uid::effective()).unwrap().unwrap();
    let g = nix::unistd::Group::from_gid(nix::unistd::Gid::effective()).unwrap().unwrap();
    (u.name, g.name)
}

/// Ensures a file, and runs a command whenever it writes it (as a unit reload would).
struct FileStep(FileSpec);

impl Step for FileStep {
    fn name(&self) -> String {
        format!("file {}", self.0.path.display())
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        let Some(c) = Change::for_file(cx, self.0.clone())? else {
            return Ok(vec![]);
        };
        let reload = Change::new(
            "reload",
            Action::Run(Cmd::new("reloading the test daemon", "systemctl").args(["reload", "test.service"])),
        );
        Ok(vec![c, reload])
    }
}

struct Broken;

impl Step for Broken {
    fn name(&self) -> String {
        "broken".into()
    }
    fn plan(&self, _: &Context) -> anyhow::Result<Vec<Change>> {
        anyhow::bail!("cannot read /dev/sdb: permission denied")
    }
}

/// A step that never converges: it always plans the same command.
struct Stubborn;

impl Step for Stubborn {
    fn name(&self) -> String {
        "stubborn".into()
    }
    fn plan(&self, _: &Context) -> anyhow::Result<Vec<Change>> {
        Ok(vec![Change::new("touch", Action::Run(Cmd::new("touching", "true")))])
    }
}

fn test_phase(steps: fn(&Context) -> engine::Steps) -> Phase {
    Phase {
        name: "test",
        help: "test steps",
        stage: Stage::All,
        roles: &[Role::Postgres],
        run_if: engine::always,
        checks: engine::no_checks,
        steps,
    }
}

fn file_phase() -> Vec<Box<dyn Step>> {
    let (u, g) = me();
    vec![Box::new(FileStep(FileSpec::new("/etc/test/test.conf", "key = value\n", 0o640).owned_by(&u, &g)))]
}

fn tree(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
                out.push((p, Vec::new()));
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn dry_run_plans_and_writes_nothing() {
    let root = common::fixture_root("debian-13");
    let rec = Arc::new(Recording::default());
    let cx = context(root.path(), rec.clone());
    let before = tree(root.path());
    let phase = test_phase(|_| Ok(file_phase()));
    let mut report = Report::default();
    engine::converge(&cx, &[&phase], true, &mut report).unwrap();
    assert_eq!(report.changes.len(), 2);
    assert!(report.changes[0].summary.starts_with("create /etc/test/test.conf"));
    assert!(report.changes[0].diff.as_deref().unwrap().contains("+key = value"));
    assert_eq!(tree(root.path()), before, "dry run changed the root");
    assert!(rec.calls().is_empty(), "dry run ran {:?}", rec.calls());
}

#[test]
fn apply_then_a_converged_host_plans_nothing() {
    let root = common::fixture_root("debian-13");
    let rec = Arc::new(Recording::default());
    let cx = context(root.path(), rec.clone());
    let phase = test_phase(|_| Ok(file_phase()));
    let mut report = Report::default();
    engine::converge(&cx, &[&phase], false, &mut report).unwrap();
    assert_eq!(std::fs::read_to_string(root.path().join("etc/test/test.conf")).unwrap(), "key = value\n");
    assert_eq!(rec.calls(), vec![vec!["systemctl", "reload", "test.service"]]);

    let mut again = Report::default();
    engine::converge(&cx, &[&phase], false, &mut again).unwrap();
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(rec.calls().len(), 1, "a converged step ran a command");
}

#[test]
fn a_failing_observation_is_an_error_not_a_skip() {
    let root = common::fixture_root("debian-13");
    let cx = context(root.path(), Arc::new(Recording::default()));
    let phase = test_phase(|_| Ok(vec![Box::new(Broken), Box::new(Stubborn)]));
    for dry_run in [true, false] {
        let err = engine::converge(&cx, &[&phase], dry_run, &mut Report::default()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("observing test/broken") && msg.contains("/dev/sdb"), "{msg}");
    }
}

#[test]
fn a_step_that_does_not_converge_is_reported() {
    let root = common::fixture_root("debian-13");
    let cx = context(root.path(), Arc::new(Recording::default()));
    let phase = test_phase(|_| Ok(vec![Box::new(Stubborn)]));
    let err = engine::converge(&cx, &[&phase], false, &mut Report::default()).unwrap_err();
    assert!(err.to_string().contains("test/stubborn did not converge"), "{err}");
}

#[test]
fn a_failing_command_names_the_step_and_stops() {
    let root = common::fixture_root("debian-13");
    let rec = Arc::new(Recording::default());
    rec.reply(
        &["systemctl"],
        hanode::exec::Output { code: Some(1), stdout: String::new(), stderr: "Unit test.service not found.".into() },
    );
    let cx = context(root.path(), rec.clone());
    let phase = test_phase(|_| Ok(file_phase()));
    let err = engine::converge(&cx, &[&phase], false, &mut Report::default()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("test/file /etc/test/test.conf: reload"), "{msg}");
    assert!(msg.contains("Unit test.service not found."), "{msg}");
    assert_eq!(hanode::error::kind_of(&err), hanode::error::Kind::Failed);
}

/// A step that needs a program an earlier change would install: pending in a plan, the
/// failure it is in a real run.
#[test]
fn a_missing_program_after_earlier_changes_is_pending_in_a_plan_only() {
    /// Plans an install once; observed again after applying, it is done.
    struct Installs(std::sync::atomic::AtomicBool);
    impl Step for Installs {
        fn name(&self) -> String {
            "install".into()
        }
        fn plan(&self, _cx: &Context) -> anyhow::Result<Vec<Change>> {
            let done = self.0.swap(true, std::sync::atomic::Ordering::SeqCst);
            Ok(if done { Vec::new() } else { vec![Change::run("install the tool", Cmd::new("installing", "true"))] })
        }
    }
    struct Needs;
    impl Step for Needs {
        fn name(&self) -> String {
            "observe".into()
        }
        fn plan(&self, _cx: &Context) -> anyhow::Result<Vec<Change>> {
            let cmd = Cmd::new("reading state", "hanode-test-no-such-tool");
            hanode::exec::Runner::output(&hanode::exec::System::default(), &cmd).map(|_| Vec::new())
        }
    }
    let p = test_phase(|_| Ok(vec![Box::new(Installs(Default::default())), Box::new(Needs)]));
    let root = common::fixture_root("debian-12");
    let cx = context(root.path(), Arc::new(Recording::default()));
    let mut report = Report::default();
    engine::converge(&cx, &[&p], true, &mut report).unwrap();
    let pending = report.changes.last().unwrap();
    assert!(matches!(&pending.action, Action::Pending { waits_for } if waits_for == "hanode-test-no-such-tool"));
    assert!(pending.summary.contains("cannot be planned yet"), "{}", pending.summary);
    let mut report = Report::default();
    let err = engine::converge(&cx, &[&p], false, &mut report).unwrap_err();
    assert!(format!("{err:#}").contains("cannot start `hanode-test-no-such-tool`"), "{err:#}");
}

/// A step that observes what is not there yet (a daemon still starting): a plan shows it as
/// pending; a run waits for it within its allowance, and fails with the step's own error,
/// exit code and all, when the allowance is spent or there is none.
#[test]
fn not_yet_is_pending_in_a_plan_and_waited_for_in_a_run() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    /// Answers on its third observation.
    fn starting(_: &Context) -> anyhow::Result<Vec<Change>> {
        if CALLS.fetch_add(1, Ordering::SeqCst) < 2 {
            let why = hanode::error::refused("the daemon does not answer yet");
            return Err(hanode::error::not_yet_for("ask the daemon", Duration::from_secs(30), why));
        }
        Ok(Vec::new())
    }
    fn never(_: &Context) -> anyhow::Result<Vec<Change>> {
        Err(hanode::error::not_yet("write the file", hanode::error::bad_input("the secrets file is missing")))
    }
    let root = common::fixture_root("debian-12");
    let cx = context(root.path(), Arc::new(Recording::default()));

    let p = test_phase(|_| Ok(vec![engine::step("daemon", starting)]));
    let mut report = Report::default();
    engine::converge(&cx, &[&p], true, &mut report).unwrap();
    let pending = report.changes.last().expect("a pending change");
    assert!(matches!(&pending.action, Action::Pending { waits_for } if waits_for == "ask the daemon"));
    assert!(pending.summary.contains("the daemon does not answer yet"), "{}", pending.summary);

    CALLS.store(0, Ordering::SeqCst);
    engine::converge(&cx, &[&p], false, &mut Report::default()).expect("waited until it answered");
    assert_eq!(CALLS.load(Ordering::SeqCst), 3, "observed until it answered, no more");

    let p = test_phase(|_| Ok(vec![engine::step("file", never)]));
    let mut report = Report::default();
    engine::converge(&cx, &[&p], true, &mut report).unwrap();
    assert!(matches!(&report.changes.last().unwrap().action, Action::Pending { .. }));
    let err = engine::converge(&cx, &[&p], false, &mut Report::default()).unwrap_err();
    assert_eq!(hanode::error::kind_of(&err), hanode::error::Kind::BadInput, "{err:#}");
    let shown = format!("{err:#}");
    assert!(shown.contains("the secrets file is missing"), "{shown}");
    assert_eq!(shown.matches("the secrets file is missing").count(), 1, "said once: {shown}");
}

/// A check that blocks a run only is a warning in a plan, an error in a run.
#[test]
fn a_blocking_check_is_a_warning_in_a_plan() {
    fn checks(_: &Context) -> Vec<engine::Check> {
        vec![engine::Check::blocking("test-blocking", hanode::error::Kind::BadInput, "no secrets file")]
    }
    let p = Phase { checks, ..test_phase(|_| Ok(Vec::new())) };
    let root = common::fixture_root("debian-12");
    let mut cx = context(root.path(), Arc::new(Recording::default()));
    let err = engine::preflight(&cx, &[&p], &mut Report::default()).unwrap_err();
    assert_eq!(hanode::error::kind_of(&err), hanode::error::Kind::BadInput);
    cx.dry_run = true;
    let mut report = Report::default();
    engine::preflight(&cx, &[&p], &mut report).expect("a plan goes on");
    let c = report.checks.iter().find(|c| c.name == "test-blocking").unwrap();
    assert_eq!(c.status, hanode::ui::Status::Warn);
}
