//! The command line: parses arguments, dispatches, and turns errors into exit codes.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::{Role, Site};
use crate::context::{Context, Options};
use crate::engine::{self, Report, Stage};
use crate::error::{Kind, kind_of};
use crate::{exec, phases, ui};

#[derive(Parser)]
#[command(
    name = "hanode",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("HANODE_GIT_COMMIT"), ")"),
    about = "Turns this host into a member of a highly available PostgreSQL cluster (Patroni, etcd or Consul, vip-manager)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print every external command hanode runs (to stderr)
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Directory of OS profiles that replace or extend the built-in ones
    #[arg(long, global = true, env = "HANODE_PROFILES_DIR", value_name = "DIR")]
    profiles_dir: Option<PathBuf>,
    /// Treat DIR as the target host's root (tests and image builds)
    #[arg(long, global = true, env = "HANODE_ROOT", value_name = "DIR", hide = true)]
    root: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Converge this host to its role in the cluster; a second run changes nothing
    #[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
    Init {
        #[command(subcommand)]
        phase: Option<InitSub>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Show what `init` would change, with diffs of files; changes nothing
    Plan {
        #[command(flatten)]
        run: RunArgs,
        #[arg(long, value_enum, default_value = "human")]
        output: Output,
    },
    /// Download and verify every artifact of the site file into DIR (an offline bundle)
    Fetch {
        /// Where to put the files, their SHA256SUMS and manifest.json
        #[arg(long, value_name = "DIR")]
        dest: PathBuf,
        /// The site file [default: /etc/hanode/hanode.toml]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Fetch from this base URL or directory instead of the upstream URLs
        #[arg(long, value_name = "URL|DIR")]
        mirror: Option<String>,
    },
    /// Pin an artifact: read upstream's checksum file and write [artifacts.NAME] into the site file
    Pin {
        /// What to pin
        #[arg(value_enum)]
        name: crate::artifacts::Kind,
        /// The release version, e.g. 3.5.17
        version: String,
        /// The site file to update [default: /etc/hanode/hanode.toml]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Where the release files and their checksum file are, instead of upstream's release page
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
    },
    /// Secrets: `hanode secrets generate` writes a new secrets file for the operator to distribute
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Show this node: services, DCS health, Patroni role, the VIP, volumes; --cluster for all members
    Status {
        #[command(flatten)]
        input: InputArgs,
        /// Every member of the cluster, from Patroni: role, state, lag
        #[arg(long)]
        cluster: bool,
        #[arg(long, value_enum, default_value = "human")]
        output: Output,
    },
    /// Restart PostgreSQL where a changed parameter needs it: replicas first, then a switchover, the old leader last
    Restart {
        #[command(flatten)]
        input: InputArgs,
        /// One member at a time, each waited for (the only way hanode restarts a cluster)
        #[arg(long, required = true)]
        rolling: bool,
        /// Every member, not only those with a restart pending: after a PostgreSQL minor update (a new binary sets nothing pending)
        #[arg(long)]
        all: bool,
    },
    /// Cluster membership: `hanode member remove NAME` on a remaining member
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Run the preflight checks only; the exit code says whether `init` would proceed
    Check {
        #[command(flatten)]
        input: InputArgs,
        #[arg(long, value_enum, default_value = "human")]
        output: Output,
        /// Fail (exit 1) on warnings too: for provisioning pipelines that must not go on with
        /// anything doubtful (a permissive SELinux, TLS off, a certificate near its end)
        #[arg(long)]
        strict: bool,
    },
    /// Print the completion script for SHELL: `hanode completions bash > /usr/share/bash-completion/completions/hanode`
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff, section 8): `hanode man | man -l -`
    Man,
}

#[derive(Subcommand)]
enum MemberCommand {
    /// Remove a departed member (powered off or stopped, and out of the site file) from etcd once Patroni has forgotten it; refuses while it runs, while it leads, or below etcd's quorum
    Remove {
        #[command(flatten)]
        input: InputArgs,
        /// The member's name
        name: String,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Write random passwords and a Consul gossip key to a new file, mode 0600
    Generate {
        /// Where to write it [default: /etc/hanode/secrets.toml]
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print the cluster CA's certificate (public): clients verify the servers with it
    /// (`psql "sslmode=verify-full sslrootcert=ca.crt"`)
    ShowCa {
        /// The secrets file [default: /etc/hanode/secrets.toml]
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Take the next of a CA rotation's three steps (trust a new CA, issue from it, drop the
    /// old one); after each, copy the file to every node and run `hanode init` on each
    RotateCa {
        /// The secrets file [default: /etc/hanode/secrets.toml]
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Add what a secrets file written by an older hanode lacks (the cluster CA, etcd's
    /// passwords); what is there is never changed
    AddMissing {
        /// The secrets file to extend [default: /etc/hanode/secrets.toml]
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum InitSub {
    /// Run one phase (after preflight); e.g. to re-run it after fixing a failure
    #[command(after_help = phases::help())]
    Phase {
        /// The phase's name (listed below)
        name: String,
        #[command(flatten)]
        run: RunArgs,
    },
}

#[derive(Args, Clone)]
struct InputArgs {
    /// The role of this node
    #[arg(long, value_enum)]
    role: Option<Role>,
    /// The site file [default: /etc/hanode/hanode.toml]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The secrets file, mode 0600 [default: /etc/hanode/secrets.toml]
    #[arg(long, value_name = "FILE")]
    secrets: Option<PathBuf>,
    /// This node's member name [default: the member named like the hostname, else the one with a local address]
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
}

#[derive(Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Plan only: observe everything, change nothing
    #[arg(long)]
    dry_run: bool,
    /// `image`: what does not depend on the host's identity or disks; `firstboot`: the rest
    #[arg(long, value_enum, default_value = "all")]
    stage: Stage,
    /// Phases to leave out, comma-separated
    #[arg(long, value_delimiter = ',', value_name = "PHASES")]
    skip_phases: Vec<String>,
    /// Download artifacts from this base URL or directory instead of upstream [default: install.mirror]
    #[arg(long, value_name = "URL|DIR")]
    mirror: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Human,
    Json,
}

/// Parses the command line and runs it; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { Kind::BadInput.code() } else { 0 };
        }
    };
    let json = matches!(
        &cli.command,
        Command::Plan { output: Output::Json, .. }
            | Command::Check { output: Output::Json, .. }
            | Command::Status { output: Output::Json, .. }
    );
    ui::init(json, cli.verbose);
    match run(&cli) {
        Ok(()) => 0,
        Err(err) => {
            ui::error(&format!("{err:#}"));
            kind_of(&err).code()
        }
    }
}

fn options(cli: &Cli, input: &InputArgs, mirror: Option<&String>) -> Options {
    Options {
        identity_optional: false,
        root: cli.root.clone().unwrap_or_else(|| PathBuf::from("/")),
        config: input.config.clone(),
        secrets: input.secrets.clone(),
        profiles_dir: cli.profiles_dir.clone(),
        node: input.node.clone(),
        role: input.role,
        mirror: mirror.cloned(),
    }
}

/// A URL or directory from the command line, checked as the site file's are (here rather than
/// by clap, which would echo a refused value, credentials and all).
fn checked(
    flag: &str,
    value: Option<&String>,
    check: fn(&str) -> Result<String, String>,
) -> anyhow::Result<Option<String>> {
    value.map(|v| check(v).map_err(|e| crate::error::bad_input(format!("{flag}: {e}")))).transpose()
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Init { phase: None, run } => {
            run.input.role.ok_or_else(|| {
                crate::error::bad_input("init needs --role postgres|dcs: the role this host takes in the cluster")
            })?;
            converge(cli, run, None, run.dry_run, Output::Human)
        }
        Command::Init { phase: Some(InitSub::Phase { name, run }), .. } => {
            converge(cli, run, Some(name), run.dry_run, Output::Human)
        }
        Command::Plan { run, output } => converge(cli, run, None, true, *output),
        Command::Fetch { dest, config, mirror } => {
            let mirror = checked("--mirror", mirror.as_ref(), crate::config::kinds::mirror)?;
            let site = Site::load(&site_path(cli, config))?;
            ui::section("fetch");
            let manifest =
                crate::artifacts::fetch_bundle(&site, mirror.as_deref().or(site.install.mirror.as_deref()), dest)?;
            ui::info(&format!(
                "{} artifact(s) verified in {}; use it with --mirror {} or install.mirror",
                manifest.artifacts.len(),
                dest.display(),
                dest.display()
            ));
            Ok(())
        }
        Command::Pin { name, version, config, base_url } => {
            let url = |u: &str| crate::config::kinds::url(u).map(|_| u.to_string());
            let base_url = checked("--base-url", base_url.as_ref(), url)?;
            crate::pin::pin(&site_path(cli, config), *name, version, base_url.as_deref())
        }
        Command::Secrets { command } => {
            let default = || {
                cli.root
                    .clone()
                    .unwrap_or_else(|| "/".into())
                    .join(crate::config::DEFAULT_SECRETS.trim_start_matches('/'))
            };
            match command {
                SecretsCommand::Generate { out } => {
                    let path = out.clone().unwrap_or_else(default);
                    crate::config::secrets::generate(&path)?;
                    ui::info(&format!("wrote {} (mode 0600): copy it to every node of the cluster", path.display()));
                }
                SecretsCommand::ShowCa { file } => {
                    let path = file.clone().unwrap_or_else(default);
                    let s = crate::config::secrets::Secrets::load(&path)?;
                    let ca = s.ca.as_ref().ok_or_else(|| {
                        crate::error::bad_input(format!(
                            "{} has no cluster CA ([tls]): `hanode secrets add-missing --file {}` adds one",
                            path.display(),
                            path.display()
                        ))
                    })?;
                    // During a rotation, both CAs: clients keep working through every step.
                    print!("{}", crate::tls::trusted(ca, &s.ca_rotation));
                }
                SecretsCommand::RotateCa { file } => {
                    let path = file.clone().unwrap_or_else(default);
                    let step = crate::config::secrets::rotate_ca(&path)?;
                    let (done, next) = match step {
                        1 => (
                            "added a new CA, trusted but not yet issuing",
                            "run `hanode secrets rotate-ca` again: step 2 issues from the new CA",
                        ),
                        2 => (
                            "the new CA issues; the old one is still trusted",
                            "run `hanode secrets rotate-ca` again: step 3 drops the old CA",
                        ),
                        _ => (
                            "dropped the old CA",
                            "the rotation is done: certificates of the old CA are refused; give clients the new CA (`hanode secrets show-ca`)",
                        ),
                    };
                    ui::info(&format!(
                        "CA rotation step {step} of 3 in {}: {done} (the file as it was: {}.bak)",
                        path.display(),
                        path.display()
                    ));
                    ui::info(&format!(
                        "copy {} to every node and run `hanode init` on each, one node after another; then {next}",
                        path.display()
                    ));
                }
                SecretsCommand::AddMissing { file } => {
                    let path = file.clone().unwrap_or_else(default);
                    let added = crate::config::secrets::add_missing(&path)?;
                    if added.is_empty() {
                        ui::info(&format!("{} lacks nothing: left as it was", path.display()));
                    } else {
                        ui::info(&format!(
                            "added {} to {}: copy it to every node of the cluster, then run `hanode init` on each",
                            added.join(", "),
                            path.display()
                        ));
                    }
                }
            }
            Ok(())
        }
        Command::Status { input, output, cluster } => {
            let cx = Context::load(&options(cli, input, None), runner(cli))?;
            let st = crate::status::collect(&cx, *cluster)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&st)?),
                Output::Human => crate::status::print(&st),
            }
            // Scripts use the exit code: 0 only when every service of this node is healthy.
            anyhow::ensure!(st.healthy, "node {} is not healthy (see above)", st.node);
            Ok(())
        }
        Command::Restart { input, rolling: _, all } => {
            let cx = Context::load(&options(cli, input, None), runner(cli))?;
            crate::restart::rolling(&cx, *all)
        }
        Command::Member { command: MemberCommand::Remove { input, name } } => {
            let cx = Context::load(&options(cli, input, None), runner(cli))?;
            crate::member::remove(&cx, name)
        }
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "hanode", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => Ok(clap_mangen::Man::new(Cli::command()).section("8").render(&mut std::io::stdout())?),
        Command::Check { input, output, strict } => {
            // Judged as `init` judges (not with a plan's leniency), so the exit code says
            // whether `init` would proceed.
            let cx = Context::load(&options(cli, input, None), runner(cli))?;
            let selected = phases::select(cx.role, Stage::All, &[], None)?;
            let mut report = Report::default();
            let mut result = engine::preflight(&cx, &selected, &mut report);
            if *output == Output::Json {
                print_json(&cx, &report)?;
            }
            let warnings: Vec<&str> =
                report.checks.iter().filter(|c| c.status == ui::Status::Warn).map(|c| c.name.as_str()).collect();
            if result.is_ok() && *strict && !warnings.is_empty() {
                result = Err(anyhow::anyhow!(
                    "--strict: {} warning(s) ({}): resolve them, or run without --strict to accept them",
                    warnings.len(),
                    warnings.join(", ")
                ));
            }
            result
        }
    }
}

fn converge(cli: &Cli, run: &RunArgs, only: Option<&str>, dry_run: bool, output: Output) -> anyhow::Result<()> {
    let mirror = checked("--mirror", run.mirror.as_ref(), crate::config::kinds::mirror)?;
    let opts = Options { identity_optional: run.stage == Stage::Image, ..options(cli, &run.input, mirror.as_ref()) };
    // Two runs changing the host at once would interleave their steps; a plan changes nothing.
    let _lock = if dry_run { None } else { Some(crate::lock::acquire(&opts.root)?) };
    let mut cx = Context::load(&opts, runner(cli))?;
    cx.dry_run = dry_run;
    let selected = phases::select(cx.role, run.stage, &run.skip_phases, only)?;
    let mut report = Report::default();
    let mut result = Ok(());
    if selected.iter().any(|p| p.name == phases::preflight::NAME) {
        result = engine::preflight(&cx, &selected, &mut report);
    }
    if result.is_ok() {
        result = engine::converge(&cx, &selected, dry_run, &mut report);
    }
    // Converged means working: every run that manages the services ends by checking them.
    let services =
        selected.iter().any(|p| p.name == phases::units::PHASE.name) && cx.node.is_some() && cx.systemd_running();
    let mut unhealthy = 0;
    if result.is_ok() && services {
        if dry_run {
            let findings = crate::units::findings(&cx);
            for c in &findings {
                ui::check(c.status, &c.name, &c.detail);
            }
            unhealthy = findings.len();
            report.checks.extend(findings);
        } else {
            result = crate::units::verify(&cx);
        }
    }
    // A whole first boot done: hanode-firstboot.service need not run again.
    let whole = only.is_none() && run.skip_phases.is_empty() && run.stage != Stage::Image;
    if result.is_ok() && whole && !dry_run {
        result = phases::boot_unit::record_success(&cx);
    }
    if output == Output::Json {
        print_json(&cx, &report)?;
    } else if result.is_ok() {
        ui::section("summary");
        let n = report.changes.len();
        match (n, dry_run) {
            (0, true) if unhealthy > 0 => ui::info(&format!(
                "no changes planned, but {unhealthy} service{} not healthy (see [WARN] health above): init would exit 1",
                if unhealthy == 1 { " is" } else { "s are" }
            )),
            (0, _) => ui::info("no changes: this host is converged"),
            (n, true) => ui::info(&format!("{n} change{} planned; nothing was changed (dry run)", plural(n))),
            (n, false) => ui::info(&format!("{n} change{} applied", plural(n))),
        }
    }
    result
}

fn runner(cli: &Cli) -> Box<dyn exec::Runner> {
    Box::new(exec::System::for_root(cli.root.as_deref().unwrap_or(std::path::Path::new("/"))))
}

/// `--config`, else the default site file under the host root.
fn site_path(cli: &Cli, config: &Option<PathBuf>) -> PathBuf {
    config.clone().unwrap_or_else(|| {
        cli.root.clone().unwrap_or_else(|| "/".into()).join(crate::config::DEFAULT_SITE.trim_start_matches('/'))
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn print_json(cx: &Context, report: &Report) -> anyhow::Result<()> {
    let doc = serde_json::json!({
        // The version of this document's layout (2: modes as octal strings, "0640").
        "schema": 2,
        "node": cx.node.as_ref().map(|(m, _)| m),
        "role": cx.role,
        "os": cx.os,
        "profile": cx.profile.id,
        "checks": report.checks,
        "changes": report.changes,
        "applied": report.applied,
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
