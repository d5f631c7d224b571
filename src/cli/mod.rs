//! The command line: clap definitions and dispatch. Each verb builds its arguments
//! and calls the library; nothing here touches the kernel directly.

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser, Subcommand};

use crate::error::Error;

mod build;
mod image;
mod oci;
mod out;
mod registry;
mod run;
mod runs;
mod runs_ls;
mod verify;

/// exprun: run experiments in isolated containers from immutable images, and keep a
/// record of every run.
#[derive(Debug, Parser)]
#[command(name = "exprun", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    globals: GlobalArgs,

    #[command(subcommand)]
    command: Command,
}

// exprun's options before or after any verb. No doc comment: a flattened
// struct's would replace exprun's `about`.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Directory for the image store, live containers and run records
    /// [default: /var/lib/exprun as root, $XDG_DATA_HOME/exprun otherwise]
    #[arg(long, global = true, env = "EXPRUN_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Print debug messages to stderr
    #[arg(long, global = true,
          value_name = "true|false", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub debug: bool,

    /// Also write errors to this file (runc-compatible; containerd's shim reads it)
    #[arg(long, global = true, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Format of --log lines: text or json
    #[arg(long = "log-format", global = true, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,

    /// Use systemd's cgroup driver: cgroupsPath is slice:prefix:name, and the
    /// container's cgroup is the scope prefix-name.scope that systemd makes in
    /// slice, with the limits as its unit properties (runc-compatible; cgroup v2
    /// hosts with systemd; as root)
    #[arg(long = "systemd-cgroup", global = true,
          value_name = "true|false", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub systemd_cgroup: bool,

    /// Rootless mode (runc-compatible). exprun is rootless exactly when it is not
    /// root, so `auto` and `false` change nothing, and `true` is refused to root.
    /// `exprun spec --rootless` writes a config for an unprivileged caller
    #[arg(
        long,
        global = true,
        value_name = "true|false|auto",
        value_parser = ["true", "false", "auto"],
        num_args = 0..=1,
        require_equals = false,
        default_missing_value = "true"
    )]
    pub rootless: Option<String>,

    /// A directory of CDI specs for `--device vendor.com/class=name` and `--gpus`
    /// (repeatable, later ones winning; replaces the defaults /etc/cdi and
    /// /var/run/cdi, as podman's option does)
    #[arg(long = "cdi-spec-dir", global = true, value_name = "DIR", action = ArgAction::Append)]
    pub cdi_spec_dir: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command in a new container from an image, and record the run
    Run(Box<run::RunArgs>),
    /// Run a recorded run again, exactly, after checking what has drifted
    Replay(verify::ReplayArgs),
    /// Replay a recorded run and compare its results with the original's
    Verify(verify::VerifyArgs),
    /// List, show and remove run records
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Import, list, inspect and remove images in the local store
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Pull an image from an OCI registry into the local store
    Pull(registry::PullArgs),
    /// Push a stored image, or a recorded run, to an OCI registry
    Push(registry::PushArgs),
    /// Log in to a registry: check the credentials, then keep them in podman's auth file
    Login(registry::LoginArgs),
    /// Remove a registry's credentials from the auth file
    Logout(registry::LogoutArgs),
    /// Build an image from source with an s2i builder image, reproducibly
    Build(build::BuildArgs),
    /// Clean up after runs whose exprun was killed, unreferenced image data, and pod
    /// containers' records past the retention of /etc/exprun/exprun.toml ($EXPRUN_CONFIG)
    Gc,
    /// Create a container from an OCI bundle and leave it waiting for start (runc-compatible)
    Create(oci::CreateArgs),
    /// Start a created container (runc-compatible)
    Start(oci::IdArg),
    /// Print a container's OCI state as JSON (runc-compatible)
    State(oci::IdArg),
    /// Send a signal to a container (runc-compatible)
    Kill(oci::KillArgs),
    /// Run a further process in a container (runc-compatible)
    Exec(oci::ExecArgs),
    /// Change a container's resource limits (runc-compatible)
    Update(oci::UpdateArgs),
    /// List a container's processes (runc-compatible)
    Ps(oci::PsArgs),
    /// Freeze every process of a container (runc-compatible)
    Pause(oci::IdArg),
    /// Thaw a paused container (runc-compatible)
    Resume(oci::IdArg),
    /// Delete a container and write its run record (runc-compatible); a pod container's goes
    /// to the records root of /etc/exprun/exprun.toml ($EXPRUN_CONFIG)
    Delete(oci::DeleteArgs),
    /// List the containers made with create (runc-compatible)
    List(oci::ListArgs),
    /// Print the OCI features document of this runtime (runc-compatible)
    Features,
    /// Write a starting config.json for an OCI bundle (runc-compatible)
    Spec(oci::SpecArgs),
}

/// Options every verb sees.
#[derive(Debug, Clone)]
pub struct Globals {
    /// The resolved state root.
    pub root: PathBuf,
    /// Whether debug output is on.
    pub debug: bool,
    /// `--systemd-cgroup`.
    pub systemd_cgroup: bool,
    /// Where live runs go when not under the root (rootless, default root).
    pub runtime: Option<PathBuf>,
    /// The CDI spec directories, lowest priority first.
    pub cdi_spec_dirs: Vec<PathBuf>,
}

impl Globals {
    /// Where the image store lives under the root.
    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }

    /// The state root.
    pub fn state(&self) -> crate::state::Root {
        crate::state::Root::with_runtime(&self.root, self.runtime.clone())
    }
}

/// A rootless caller's live runs go under `$XDG_RUNTIME_DIR/exprun` (when the
/// state root is the default one).
fn runtime_dir() -> Option<PathBuf> {
    if nix::unistd::geteuid().is_root() && crate::userns::in_initial_userns() {
        return None;
    }
    std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()).map(|d| PathBuf::from(d).join("exprun"))
}

fn default_root() -> PathBuf {
    // Root in one of our user namespaces (a rootless image command re-run there)
    // is still the caller: keep the caller's root.
    if nix::unistd::geteuid().is_root() && crate::userns::in_initial_userns() {
        return PathBuf::from("/var/lib/exprun");
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("exprun");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
    PathBuf::from(home).join(".local/share/exprun")
}

/// Parse the command line, run the verb, and return the process exit status.
pub fn main() -> i32 {
    // The verbs that start container processes keep exprun's binary out of the
    // container's reach (CVE-2019-5736; see selfexe/): through the exec
    // trampoline, or by re-executing from a copy that no container can write.
    // Decided before clap parses anything, which a re-exec'd process does
    // again anyway.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if let Some(v) = verb(&args).filter(|v| CONTAINER_VERBS.contains(v)) {
        crate::selfexe::protect(ONE_CONTAINER_VERBS.contains(&v));
    }
    // clap's own exit status for a bad command line is 2; exprun's errors are 125.
    let cli = match parse(&args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => crate::error::EXIT_EXPRUN_FAILED,
            };
            let _ = e.print();
            return code;
        }
    };
    let Cli { globals: g, command } = cli;
    crate::log::init(g.debug);
    crate::selfexe::report();
    let globals = Globals {
        root: g.root.clone().unwrap_or_else(default_root),
        debug: g.debug,
        systemd_cgroup: g.systemd_cgroup,
        runtime: g.root.is_none().then(runtime_dir).flatten(),
        cdi_spec_dirs: if g.cdi_spec_dir.is_empty() {
            crate::cdi::DEFAULT_SPEC_DIRS.iter().map(PathBuf::from).collect()
        } else {
            g.cdi_spec_dir.clone()
        },
    };
    let log = LogTarget { path: g.log.clone(), json: g.log_format == "json" };
    let rootless = g.rootless.as_deref() == Some("true");
    if rootless && nix::unistd::geteuid().is_root() && !matches!(command, Command::Spec(_)) {
        let e = Error::Usage(
            "--rootless=true: exprun is running as root; it is rootless when an unprivileged user runs it \
             (a user namespace then maps that user to root), so run it as that user"
                .into(),
        );
        return report(&e, &log);
    }
    // A rootless caller with subordinate ids manages the store from inside a
    // user namespace that maps them, so layers keep their files' owners.
    if matches!(command, Command::Image(_) | Command::Pull(_) | Command::Gc)
        && !nix::unistd::geteuid().is_root()
        && crate::userns::in_initial_userns()
    {
        if let Some(maps) = crate::userns::caller_maps() {
            return match crate::userns::rerun_mapped(&maps) {
                Ok(code) => code,
                Err(source) => {
                    report(&Error::Io { op: "re-running in a user namespace".into(), source }, &log)
                }
            };
        }
    }
    let result = match command {
        Command::Run(args) => run::run(&globals, *args),
        Command::Replay(a) => verify::replay(&globals, a),
        Command::Verify(a) => verify::verify(&globals, a),
        Command::Runs(cmd) => runs::run(&globals, cmd),
        Command::Image(cmd) => image::run(&globals, cmd),
        Command::Pull(a) => registry::pull(&globals, a),
        Command::Push(a) => registry::push(&globals, a),
        Command::Login(a) => registry::login(a),
        Command::Logout(a) => registry::logout(a),
        Command::Build(a) => build::run(&globals, a),
        Command::Gc => runs::gc(&globals),
        Command::Create(a) => oci::create(&globals, a),
        Command::Start(a) => oci::start(&globals, a),
        Command::State(a) => oci::state(&globals, a),
        Command::Kill(a) => oci::kill(&globals, a),
        Command::Exec(a) => oci::exec(&globals, a),
        Command::Update(a) => oci::update(&globals, a),
        Command::Ps(a) => oci::ps(&globals, a),
        Command::Pause(a) => oci::pause(&globals, a, true),
        Command::Resume(a) => oci::pause(&globals, a, false),
        Command::Delete(a) => oci::delete(&globals, a),
        Command::List(a) => oci::list(&globals, a),
        Command::Features => oci::features(),
        Command::Spec(a) => oci::spec(a, rootless),
    };
    match result {
        Ok(code) => code,
        Err(e) => report(&e, &log),
    }
}

/// The verbs that start processes inside containers.
const CONTAINER_VERBS: &[&str] = &["run", "replay", "verify", "build", "create", "exec"];

/// Of those, the verbs whose process starts one container's init, which can
/// exec its command through the exec trampoline ([`crate::selfexe::settle`]
/// decides once the container is planned); `verify` and `build` start
/// several, and `exec` a process beside the container's.
const ONE_CONTAINER_VERBS: &[&str] = &["run", "replay", "create"];

/// The command line, parsed. The verbs that start or drive containers are
/// parsed first against a command of that verb alone (see [`one_verb`]): for
/// `exprun run`, clap's share of a run's CPU went to about a third of what
/// building the whole tree of verbs cost. Whatever that parse does not accept
/// (help, a bad option, another verb) goes to the whole tree, so errors and
/// help read as they always did.
fn parse(args: &[std::ffi::OsString]) -> Result<Cli, clap::Error> {
    parse_one_verb(args).map_or_else(Cli::try_parse, Ok)
}

/// The command line parsed against [`one_verb`]'s command, if it has such a
/// verb and that parse accepts it.
fn parse_one_verb(args: &[std::ffi::OsString]) -> Option<Cli> {
    use clap::FromArgMatches;
    let cmd = verb(args).and_then(one_verb)?;
    let argv = std::iter::once(std::ffi::OsString::from("exprun")).chain(args.iter().cloned());
    cmd.try_get_matches_from(argv).and_then(|m| Cli::from_arg_matches(&m)).ok()
}

/// exprun's command with its global options and the one verb `verb`, built
/// from the same definitions as [`Cli`]: `run` and the verbs containerd's shim
/// calls for every container and exec probe.
fn one_verb(verb: &str) -> Option<clap::Command> {
    use clap::Args;
    type Augment = fn(clap::Command) -> clap::Command;
    let (name, augment): (&'static str, Augment) = match verb {
        "run" => ("run", run::RunArgs::augment_args),
        "create" => ("create", oci::CreateArgs::augment_args),
        "start" => ("start", oci::IdArg::augment_args),
        "state" => ("state", oci::IdArg::augment_args),
        "kill" => ("kill", oci::KillArgs::augment_args),
        "exec" => ("exec", oci::ExecArgs::augment_args),
        "delete" => ("delete", oci::DeleteArgs::augment_args),
        _ => return None,
    };
    let sub = augment(clap::Command::new(name));
    let top = clap::Command::new("exprun").version(env!("CARGO_PKG_VERSION")).propagate_version(true);
    Some(GlobalArgs::augment_args(top).subcommand(sub).subcommand_required(true))
}

/// The global options that take a value (in the next argument unless `--opt=value`).
const VALUED_GLOBALS: &[&str] = &["--root", "--log", "--log-format", "--rootless", "--cdi-spec-dir"];

/// The verb of a command line (its first argument that is neither an option nor
/// a global option's value), without clap.
fn verb(args: &[std::ffi::OsString]) -> Option<&str> {
    let mut it = args.iter().map(|a| a.to_str());
    while let Some(a) = it.next() {
        let a = a?;
        if VALUED_GLOBALS.contains(&a) {
            it.next();
        } else if !a.starts_with('-') {
            return Some(a);
        }
    }
    None
}

/// `--log` and `--log-format`.
struct LogTarget {
    path: Option<PathBuf>,
    json: bool,
}

/// Print an exprun error on stderr (and into `--log`) and return its exit status.
/// The stderr line says `error:` (as clap's own errors do), so that a tool
/// reading a runtime's stderr, which runc marks `level=error`, sees an error and
/// not a note; in `--log` the line's level says it.
fn report(e: &Error, log: &LogTarget) -> i32 {
    let message = e.for_terminal();
    eprintln!("exprun: error: {message}");
    if let Some(path) = &log.path {
        crate::log::append_error(path, log.json, &message);
    }
    e.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verb_is_found_past_global_options() {
        let v = |line: &str| {
            let args: Vec<std::ffi::OsString> = line.split_whitespace().map(Into::into).collect();
            verb(&args).map(str::to_string)
        };
        assert_eq!(v("run busybox"), Some("run".into()));
        assert_eq!(v("--root /x --debug exec c sh"), Some("exec".into()));
        assert_eq!(v("--log /l --log-format json create -b . c"), Some("create".into()));
        assert_eq!(v("--root=/x --rootless false state c"), Some("state".into()));
        assert_eq!(v("--version"), None);
        assert_eq!(v("--root"), None);
    }

    const ONE_VERB: [&str; 7] = ["run", "create", "start", "state", "kill", "exec", "delete"];

    #[test]
    fn one_verb_defines_its_verb_and_the_globals_as_the_whole_tree_does() {
        use clap::CommandFactory;
        let args = |c: &clap::Command| c.get_arguments().map(|a| format!("{a:?}")).collect::<Vec<_>>();
        let mut whole = Cli::command();
        whole.build();
        for verb in ONE_VERB {
            let mut one = one_verb(verb).unwrap_or_else(|| panic!("{verb}: no one-verb command"));
            one.build();
            assert_eq!(args(&one), args(&whole), "{verb}: the global options differ");
            let (Some(a), Some(b)) = (one.find_subcommand(verb), whole.find_subcommand(verb)) else {
                panic!("{verb}: not a subcommand of both");
            };
            assert_eq!(args(a), args(b), "{verb}: its options differ from the whole tree's");
            let names: Vec<&str> =
                one.get_subcommands().map(|c| c.get_name()).filter(|n| *n != "help").collect();
            assert_eq!(names, [verb], "{verb}: other verbs built too");
        }
        assert!(one_verb("runs").is_none() && one_verb("image").is_none());
    }

    #[test]
    fn a_one_verb_parse_is_the_whole_trees_parse_or_none() {
        use clap::Parser;
        let lines = [
            "run busybox:latest -- /bin/true",
            "--root /r --debug run --name x --memory 64m --env A=1 -v /d:/d:ro busybox sh -c 'x'",
            "run --debug=false --rootless=auto busybox:latest",
            "--log /l --log-format json create -b /b --pid-file /p --console-socket /s c1",
            "--root /r --systemd-cgroup start c1",
            "state c1",
            "--rootless false kill --all c1 KILL",
            "exec --process /p.json --detach --pid-file /q c1",
            "exec -t --cwd /w c1 sh -c true",
            "delete -f c1",
            "--cdi-spec-dir /a --cdi-spec-dir /b run --gpus all img nvidia-smi",
        ];
        for line in lines {
            let args: Vec<std::ffi::OsString> = line.split_whitespace().map(Into::into).collect();
            let whole = Cli::try_parse_from(std::iter::once("exprun".into()).chain(args.iter().cloned()))
                .unwrap_or_else(|e| panic!("{line}: {e}"));
            let one = parse_one_verb(&args).unwrap_or_else(|| panic!("{line}: not parsed by one verb"));
            assert_eq!(format!("{one:?}"), format!("{whole:?}"), "{line}");
        }
        // What the one-verb parse does not take goes to the whole tree:
        // help, errors, and the other verbs.
        for line in
            ["run --help", "run --no-such-option img", "create", "kill", "runs ls", "--version", "image ls"]
        {
            let args: Vec<std::ffi::OsString> = line.split_whitespace().map(Into::into).collect();
            assert!(parse_one_verb(&args).is_none(), "{line}: parsed by one verb");
        }
    }
}
