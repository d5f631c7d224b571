//! `exprun run`: parse the options into [`RunOptions`] and call [`crate::run::run`].

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args};

use super::Globals;
use crate::error::{Error, Result};
use crate::spec::options::{self as o, Network, RunOptions};
use crate::spec::shm::{self, Ipc};

/// The options of `exprun run`.
#[derive(Debug, Args)]
#[command(after_help = "Exit status: the command's own; 125 when exprun failed, 126 when the command \
    cannot be executed, 127 when it is not found, 128+N when it was killed by signal N.\n\n\
    The container's writable layer is in memory (charged to --memory, at most the --memory limit \
    or 4 GiB unless --storage-opt size= says otherwise) and discarded after the run; \
    write results to an --output directory, or use --keep.\n\n\
    Examples:\n  exprun run busybox:latest -- sh -c 'echo hello'\n  \
    exprun run --input ./data:/data --output ./out:/out --memory 2g --cpus 1.5 img -- python train.py")]
pub struct RunArgs {
    /// Set an environment variable (NAME=VALUE, or NAME to pass the caller's value)
    #[arg(short = 'e', long = "env", value_name = "NAME[=VALUE]", action = ArgAction::Append)]
    env: Vec<String>,
    /// Read environment variables from a file (NAME=VALUE lines, # comments)
    #[arg(long = "env-file", value_name = "FILE", action = ArgAction::Append)]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container (created if missing)
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// User to run as: NAME, UID, NAME:GROUP or UID:GID (resolved in the image)
    #[arg(short = 'u', long = "user", value_name = "USER")]
    user: Option<String>,
    /// Hostname inside the container [default: exprun]
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// Bind-mount a host path: SRC:DST[:ro]
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:ro]", action = ArgAction::Append)]
    volume: Vec<String>,
    /// Read-only input, digested before the run: SRC:DST
    #[arg(long = "input", value_name = "SRC:DST", action = ArgAction::Append)]
    input: Vec<String>,
    /// Writable output directory, digested after the run (created if missing):
    /// SRC:DST[:suid,dev]. Every symlink on the way to SRC must be owned by root
    /// or the caller, and SRC by root, the caller or the user the command runs as. After the run, setuid/setgid bits and file
    /// capabilities are removed from its files (unless suid) and device nodes, fifos and sockets are
    /// removed (unless dev); the record and stderr say what was changed
    #[arg(long = "output", value_name = "SRC:DST[:OPTS]", action = ArgAction::Append)]
    output: Vec<String>,
    /// The most bytes of output files hashed after the run, over all outputs
    /// (e.g. 100g, or none); files past it are recorded as not digested, and
    /// `verify` cannot compare them [default: 32g]
    #[arg(long = "output-digest-limit", value_name = "SIZE")]
    output_digest_limit: Option<String>,
    /// Mount a tmpfs: DST[:OPTIONS], e.g. /scratch:size=1g. At /dev/shm it
    /// replaces the default one, its options merged into the defaults
    /// (nosuid,noexec,nodev,mode=1777,size=64m; e.g. /dev/shm:size=8g,exec)
    #[arg(long = "tmpfs", value_name = "DST[:OPTS]", action = ArgAction::Append)]
    tmpfs: Vec<String>,
    /// Size of /dev/shm (a tmpfs; its pages count against --memory), e.g. 8g
    /// [default: 64m]
    #[arg(long = "shm-size", value_name = "SIZE")]
    shm_size: Option<String>,
    /// IPC namespace: private (a new one, with a /dev/shm of the run's own) or
    /// host (the host's, and the host's /dev/shm bound)
    #[arg(long, value_name = "MODE", default_value = "private", value_parser = ["private", "host"])]
    ipc: String,
    /// Memory limit (swap is not added on top), e.g. 512m, 2g
    #[arg(short = 'm', long = "memory", value_name = "SIZE")]
    memory: Option<String>,
    /// CPU limit as a number of CPUs, e.g. 1.5
    #[arg(long, value_name = "N")]
    cpus: Option<String>,
    /// Maximum number of processes
    #[arg(long = "pids-limit", value_name = "N")]
    pids_limit: Option<String>,
    /// Network: none (a new namespace with loopback only) or host
    #[arg(long, value_name = "MODE", default_value = "none", value_parser = ["none", "host"])]
    network: String,
    /// Name of the run (unique among recorded runs)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Keep the writable layer after the run, on disk in the run's record directory
    #[arg(long)]
    keep: bool,
    /// Storage option: size=SIZE, the most the in-memory writable layer holds
    /// [default: the --memory limit, else 4g]
    #[arg(long = "storage-opt", value_name = "size=SIZE", action = ArgAction::Append)]
    storage_opt: Vec<String>,
    /// Mount the container's root filesystem read-only
    #[arg(long = "read-only")]
    read_only: bool,
    /// Allocate a pseudo-terminal
    #[arg(short = 't', long = "tty")]
    tty: bool,
    /// Keep stdin open and pass it to the container
    #[arg(short = 'i', long = "interactive")]
    interactive: bool,
    /// Override the image's entrypoint (a command, or a JSON array; "" for none)
    #[arg(long, value_name = "CMD")]
    entrypoint: Option<String>,
    /// Add a capability (e.g. NET_ADMIN, or ALL)
    #[arg(long = "cap-add", value_name = "CAP", action = ArgAction::Append)]
    cap_add: Vec<String>,
    /// Drop a capability (e.g. NET_RAW, or ALL)
    #[arg(long = "cap-drop", value_name = "CAP", action = ArgAction::Append)]
    cap_drop: Vec<String>,
    /// Set a resource limit: NAME=SOFT[:HARD], e.g. nofile=1024:4096
    #[arg(long = "ulimit", value_name = "LIMIT", action = ArgAction::Append)]
    ulimit: Vec<String>,
    /// Pass the caller's variables whose names match (NAME or a glob like CUDA_*);
    /// nothing else of the caller's environment reaches the container
    #[arg(long = "pass-env", value_name = "NAME|GLOB", action = ArgAction::Append)]
    pass_env: Vec<String>,
    /// Remove a pin of the deterministic profile: tz, locale, source-date-epoch,
    /// threads, pythonhashseed, cublas, or all
    #[arg(long = "unpin", value_name = "PIN", action = ArgAction::Append)]
    unpin: Vec<String>,
    /// File mode creation mask of the command, octal [default: 022]
    #[arg(long, value_name = "MODE")]
    umask: Option<String>,
    /// Address-space layout randomisation: on (the kernel's default) or off (fixed
    /// addresses, for programs whose results depend on them)
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = ["on", "off"])]
    aslr: String,
    /// Bind the command to these CPUs, e.g. 0-3,6; the thread-count variables
    /// (OMP_NUM_THREADS, ...) follow
    #[arg(long = "cpuset-cpus", value_name = "LIST")]
    cpuset_cpus: Option<String>,
    /// Rootless on a host where no cgroup can be had (cgroup v1, or v2 with no
    /// subtree delegated to the caller): say that running without a cgroup,
    /// limits and usage figures is meant, and silence the note that says so
    /// (such a run goes ahead without it too)
    #[arg(long = "no-limits", conflicts_with_all = ["memory", "cpus", "pids_limit"])]
    no_limits: bool,
    /// Give the container a host device: HOST[:CONTAINER][:PERMS] (a device node,
    /// a symlink to one, or a directory of them; PERMS some of rwm, the device
    /// cgroup's access, default rwm), or a CDI device vendor.com/class=name
    /// from the specs of --cdi-spec-dir (default /etc/cdi, /var/run/cdi)
    #[arg(long = "device", value_name = "HOST[:CONTAINER][:PERMS]|CDI-NAME", action = ArgAction::Append)]
    device: Vec<String>,
    /// GPUs, docker's spelling of CDI devices: all, a count N (GPUs 0 to N-1) or
    /// device=ID,... (indexes or UUIDs), as nvidia.com/gpu=all, =0, ... (the
    /// NVIDIA container toolkit's CDI spec: nvidia-ctk cdi generate)
    #[arg(long = "gpus", value_name = "all|N|device=ID,...", action = ArgAction::Append)]
    gpus: Vec<String>,
    /// Security options: seccomp=FILE (an OCI seccomp profile) or seccomp=unconfined
    /// [default: a profile equivalent to containerd's and Docker's]
    #[arg(long = "security-opt", value_name = "OPT", action = ArgAction::Append)]
    security_opt: Vec<String>,
    /// Pull the image from its registry first: never (the default: a run never
    /// reaches the network by itself), missing (when the store lacks it) or always
    #[arg(long, value_name = "POLICY", default_value = "never", value_parser = ["never", "missing", "always"])]
    pull: String,
    #[command(flatten)]
    registry: super::registry::RegistryArgs,
    /// Parent cgroup, as a path inside the cgroup hierarchy [default: exprun's own
    /// cgroup; rootless: the delegated parent of exprun's own cgroup]
    #[arg(long = "cgroup-parent", value_name = "PATH")]
    cgroup_parent: Option<String>,
    /// Run the OCI bundle in DIR as runc's `run` does: its config.json says
    /// everything, IMAGE is the container id, and the image options are refused
    #[arg(
        short = 'b',
        long,
        value_name = "DIR",
        conflicts_with_all = [
            "env", "env_file", "workdir", "user", "hostname", "volume", "input", "output",
            "output_digest_limit", "tmpfs", "shm_size", "ipc", "memory", "cpus", "pids_limit", "name", "keep", "storage_opt",
            "read_only", "tty", "interactive",
            "entrypoint", "cap_add", "cap_drop", "ulimit", "cgroup_parent", "command", "pass_env",
            "unpin", "umask", "aslr", "cpuset_cpus", "security_opt", "no_limits", "pull", "device", "gpus"
        ]
    )]
    bundle: Option<PathBuf>,
    /// With --bundle: create and start the container, then return (runc's run --detach)
    #[arg(short = 'd', long, requires = "bundle",
          value_name = "true|false", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    detach: bool,
    /// With --bundle: write the container's init pid here (no trailing newline)
    #[arg(long = "pid-file", value_name = "FILE", requires = "bundle")]
    pid_file: Option<PathBuf>,
    /// With --bundle --detach: send the pseudo-terminal's master to this unix socket
    #[arg(long = "console-socket", value_name = "SOCKET", requires = "detach")]
    console_socket: Option<PathBuf>,
    /// With --bundle: accepted for runc compatibility; exprun always uses pivot_root
    #[arg(long = "no-pivot", requires = "bundle",
          value_name = "true|false", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    no_pivot: bool,
    /// With --bundle: accepted for runc compatibility; exprun creates no session keyring
    #[arg(long = "no-new-keyring", requires = "bundle",
          value_name = "true|false", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    no_new_keyring: bool,
    /// With --bundle: accepted for runc compatibility; exprun is the container
    /// init's parent, so it needs no subreaper to reap it
    #[arg(long = "no-subreaper", requires = "bundle",
          value_name = "true|false", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    no_subreaper: bool,
    /// With --bundle: pass this many extra fds (3 to 3+N-1) to the container's command
    #[arg(long = "preserve-fds", value_name = "N", default_value_t = 0, requires = "bundle")]
    preserve_fds: u32,
    /// The image: NAME[:TAG], NAME@sha256:..., or a digest prefix (with --bundle: the container id)
    #[arg(value_name = "IMAGE")]
    image: String,
    /// The command and its arguments (replaces the image's Cmd)
    #[arg(value_name = "COMMAND", trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

impl RunArgs {
    /// `--device` and `--gpus`: host nodes read, CDI names resolved from `cdi_dirs`.
    fn devices(&self, cwd: &std::path::Path, cdi_dirs: &[PathBuf]) -> Result<crate::spec::devices::Devices> {
        let mut devices = crate::spec::devices::Devices::default();
        let mut names = Vec::new();
        for d in &self.device {
            if crate::cdi::is_name(d) {
                names.push(d.clone());
            } else {
                devices.nodes.extend(crate::spec::devices::parse_device(d, cwd)?);
            }
        }
        for g in &self.gpus {
            names.extend(crate::cdi::gpus(g).map_err(crate::spec::Error::from)?);
        }
        let resolved = crate::cdi::resolve(cdi_dirs, &names, nix::unistd::geteuid().as_raw())
            .map_err(crate::spec::Error::from)?;
        if !names.is_empty() {
            devices.cdi_spec_dirs = cdi_dirs.to_vec();
        }
        devices.cdi = resolved.devices;
        devices.cdi_edits = resolved.edits;
        Ok(devices)
    }

    /// Check and normalise every option. Reads the --env-files, the --device
    /// nodes and the CDI specs.
    fn into_options(self, cdi_dirs: &[PathBuf]) -> Result<RunOptions> {
        let cwd = std::env::current_dir()
            .map_err(|source| Error::Io { op: "cannot read the current directory".into(), source })?;
        let lookup = |n: &str| std::env::var(n).ok();
        let caller: Vec<(String, String)> = std::env::vars().collect();
        let mut env = o::pass_env(&self.pass_env, &caller)?;
        let passed_env = env.iter().map(|(k, _)| k.clone()).collect();
        for f in &self.env_file {
            let text = std::fs::read_to_string(f)
                .map_err(|source| crate::spec::Error::EnvFileRead { path: f.clone(), source })?;
            env.extend(o::parse_env_file(f, &text, &lookup)?);
        }
        for e in &self.env {
            env.extend(o::parse_env("--env", e, &lookup)?);
        }
        let entrypoint = match self.entrypoint.as_deref() {
            None => None,
            Some("") => Some(Vec::new()),
            Some(s) if s.trim_start().starts_with('[') => {
                Some(serde_json::from_str(s).map_err(|e| crate::spec::Error::Option {
                    option: "--entrypoint",
                    value: s.into(),
                    why: format!("not a JSON array of strings: {e}"),
                })?)
            }
            Some(s) => Some(vec![s.to_string()]),
        };
        let mounts = |opt: &'static str, v: &[String], mode: bool| -> Result<Vec<o::HostMount>> {
            v.iter().map(|s| o::parse_host_mount(opt, s, &cwd, mode).map_err(Error::from)).collect()
        };
        let volumes = mounts("--volume", &self.volume, true)?;
        let inputs = mounts("--input", &self.input, false)?;
        for (option, m) in
            volumes.iter().map(|v| ("--volume", v)).chain(inputs.iter().map(|i| ("--input", i)))
        {
            if !m.source.exists() {
                return Err(crate::spec::Error::Option {
                    option,
                    value: m.source.display().to_string(),
                    why: "the host path does not exist".into(),
                }
                .into());
            }
        }
        let devices = self.devices(&cwd, cdi_dirs)?;
        let tmpfs: Vec<o::TmpfsMount> =
            self.tmpfs.iter().map(|t| o::parse_tmpfs(t)).collect::<Result<_, _>>()?;
        let shm_size = self.shm_size.map(|s| shm::parse_shm_size(&s)).transpose()?;
        let ipc = if self.ipc == "host" { Ipc::Host } else { Ipc::Private };
        shm::check_shm(shm_size, ipc, &tmpfs)?;
        Ok(RunOptions {
            devices,
            image: self.image,
            command: self.command,
            entrypoint,
            env,
            workdir: self.workdir.map(|w| o::container_path("--workdir", &w)).transpose()?,
            user: self.user,
            hostname: self.hostname.map(|h| o::parse_hostname(&h)).transpose()?,
            volumes,
            inputs,
            outputs: self.output.iter().map(|s| o::parse_output(s, &cwd)).collect::<Result<_, _>>()?,
            tmpfs,
            shm_size,
            ipc,
            memory: self.memory.map(|m| o::parse_memory(&m)).transpose()?,
            cpus: self.cpus.map(|c| o::parse_cpus(&c, crate::record::host::cpus_online())).transpose()?,
            pids_limit: self.pids_limit.map(|p| o::parse_pids_limit(&p)).transpose()?,
            network: if self.network == "host" { Network::Host } else { Network::None },
            name: self.name.map(|n| o::parse_name(&n)).transpose()?,
            keep: self.keep,
            storage_size: o::parse_storage_opts(&self.storage_opt)?,
            read_only: self.read_only,
            tty: self.tty,
            interactive: self.interactive,
            cap_add: self
                .cap_add
                .iter()
                .map(|c| o::parse_capability("--cap-add", c))
                .collect::<Result<_, _>>()?,
            cap_drop: self
                .cap_drop
                .iter()
                .map(|c| o::parse_capability("--cap-drop", c))
                .collect::<Result<_, _>>()?,
            ulimits: self.ulimit.iter().map(|u| o::parse_ulimit(u)).collect::<Result<_, _>>()?,
            cgroup_parent: self.cgroup_parent,
            pass_env: self.pass_env,
            passed_env,
            unpin: self.unpin,
            umask: self.umask.map(|u| o::parse_umask(&u)).transpose()?,
            aslr: self.aslr == "on",
            no_limits: self.no_limits,
            output_digest_limit: self.output_digest_limit.map(|s| o::parse_digest_limit(&s)).transpose()?,
            seccomp: match self.security_opt.last() {
                Some(s) => o::parse_security_opt(s, &|p| std::fs::read_to_string(p))?,
                None => o::SeccompChoice::Default,
            },
            cpuset: self
                .cpuset_cpus
                .map(|c| o::parse_cpuset_option(&c, &crate::record::host::allowed_cpus()))
                .transpose()?
                .unwrap_or_default(),
        })
    }
}

/// Run `exprun run`.
pub fn run(globals: &Globals, args: RunArgs) -> Result<i32> {
    let root = globals.state();
    let result = match args.bundle.clone() {
        Some(bundle) => {
            let bundle = super::oci::absolute(bundle)?;
            let o = crate::container::CreateOptions {
                id: &args.image,
                bundle: &bundle,
                pid_file: args.pid_file.as_deref(),
                console_socket: args.console_socket.as_deref(),
                systemd_cgroup: globals.systemd_cgroup,
                command_line: std::env::args().collect(),
                preserve_fds: args.preserve_fds,
            };
            if args.detach {
                crate::container::create(&root, &o)?;
                crate::container::start(&root, o.id)?;
                return Ok(0);
            }
            crate::container::run(&root, &o)?
        }
        None => {
            let (policy, registry) = (args.pull.clone(), args.registry.clone());
            // Every option is checked before anything is pulled.
            let opts = args.into_options(&globals.cdi_spec_dirs)?;
            let fetch = || super::registry::pull_for_run(globals, &opts.image, &policy, &registry);
            let pull = crate::run::Pull { always: policy == "always", fetch: &fetch };
            let pull = (policy != "never").then_some(&pull);
            crate::run::run(&root, &opts, std::env::args().collect(), pull)?
        }
    };
    if let Some(note) = &result.note {
        eprintln!("exprun: {note} (run {})", result.run_id.get(..12).unwrap_or(&result.run_id));
    }
    Ok(result.exit_code)
}
