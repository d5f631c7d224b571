//! The command line: clap definitions and dispatch. Each verb builds its arguments
//! and calls the library; nothing here touches the kernel directly.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::Error;

mod image;
mod run;
mod runs;

/// exprun: run experiments in isolated containers from immutable images, and keep a
/// record of every run.
#[derive(Debug, Parser)]
#[command(name = "exprun", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Directory for the image store, live containers and run records
    /// [default: /var/lib/exprun as root, $XDG_DATA_HOME/exprun otherwise]
    #[arg(long, global = true, env = "EXPRUN_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Print debug messages to stderr
    #[arg(long, global = true)]
    pub debug: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command in a new container from an image, and record the run
    Run(Box<run::RunArgs>),
    /// List, show and remove run records
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Import, list, inspect and remove images in the local store
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Clean up after runs whose exprun was killed, and unreferenced image data
    Gc,
}

/// Options every verb sees.
#[derive(Debug, Clone)]
pub struct Globals {
    /// The resolved state root.
    pub root: PathBuf,
    /// Whether debug output is on.
    pub debug: bool,
}

impl Globals {
    /// Where the image store lives under the root.
    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }
}

fn default_root() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
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
    // clap's own exit status for a bad command line is 2; exprun's errors are 125.
    let cli = match Cli::try_parse() {
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
    crate::log::init(cli.debug);
    let globals = Globals { root: cli.root.clone().unwrap_or_else(default_root), debug: cli.debug };
    let result = match cli.command {
        Command::Run(args) => run::run(&globals, *args),
        Command::Runs(cmd) => runs::run(&globals, cmd),
        Command::Image(cmd) => image::run(&globals, cmd),
        Command::Gc => runs::gc(&globals),
    };
    match result {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

/// Print an exprun error on stderr and return its exit status.
fn report(e: &Error) -> i32 {
    eprintln!("exprun: {e}");
    e.exit_code()
}
