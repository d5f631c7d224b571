//! The runc-compatible verbs, as containerd's runc shim and CRI-O call them:
//! `create`, `start`, `state`, `kill`, `delete`, `list`, `features`, `spec`.
//! Options may come before or after the container id, as `--flag value` or
//! `--flag=value`.

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args};

use super::out::outln;
use super::Globals;
use crate::container::{self, CreateOptions};
use crate::error::{Error, Result};

/// `exprun create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The OCI bundle: a directory with config.json and the root filesystem
    #[arg(short = 'b', long, value_name = "DIR", default_value = ".")]
    bundle: PathBuf,
    /// Write the container's init pid here (no trailing newline)
    #[arg(long = "pid-file", value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Send the pseudo-terminal's master to this unix socket (process.terminal)
    #[arg(long = "console-socket", value_name = "SOCKET")]
    console_socket: Option<PathBuf>,
    /// Accepted for runc compatibility; exprun always uses pivot_root
    #[arg(long = "no-pivot",
          value_name = "true|false", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    no_pivot: bool,
    /// Accepted for runc compatibility; exprun creates no session keyring
    #[arg(long = "no-new-keyring",
          value_name = "true|false", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    no_new_keyring: bool,
    /// Pass this many extra fds (3 to 3+N-1) to the container's command
    #[arg(long = "preserve-fds", value_name = "N", default_value_t = 0)]
    preserve_fds: u32,
    /// The container id
    id: String,
}

/// Run `exprun create`.
pub fn create(globals: &Globals, a: CreateArgs) -> Result<i32> {
    // Refused here, not first at `delete`, where the record would be lost.
    crate::node::NodeConfig::load()?;
    let root = globals.state();
    let bundle = absolute(a.bundle)?;
    container::create(
        &root,
        &CreateOptions {
            id: &a.id,
            bundle: &bundle,
            pid_file: a.pid_file.as_deref(),
            console_socket: a.console_socket.as_deref(),
            systemd_cgroup: globals.systemd_cgroup,
            command_line: std::env::args().collect(),
            preserve_fds: a.preserve_fds,
        },
    )?;
    Ok(0)
}

/// `path` made absolute against the current directory.
pub fn absolute(path: PathBuf) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path);
    }
    let cwd = std::env::current_dir()
        .map_err(|source| Error::Io { op: "cannot read the current directory".into(), source })?;
    Ok(cwd.join(path))
}

/// `exprun exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// An OCI process JSON (args, env, cwd, user, capabilities, terminal, ...)
    #[arg(short = 'p', long, value_name = "FILE")]
    process: Option<PathBuf>,
    /// Return once the process runs; it is reparented to the caller
    #[arg(short = 'd', long,
          value_name = "true|false", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    detach: bool,
    /// Write the process's pid here (no trailing newline)
    #[arg(long = "pid-file", value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Send the pseudo-terminal's master to this unix socket
    #[arg(long = "console-socket", value_name = "SOCKET")]
    console_socket: Option<PathBuf>,
    /// Allocate a pseudo-terminal (needs --console-socket)
    #[arg(short = 't', long,
          value_name = "true|false", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    tty: bool,
    /// Working directory in the container
    #[arg(long, value_name = "DIR")]
    cwd: Option<String>,
    /// Set an environment variable (replacing the process's own of that name)
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// Run as UID[:GID]
    #[arg(short = 'u', long, value_name = "UID[:GID]")]
    user: Option<String>,
    /// Add a capability to the bounding, effective and permitted sets (and the
    /// ambient set where the inheritable set has it)
    #[arg(short = 'c', long = "cap", value_name = "CAP")]
    cap: Vec<String>,
    /// Run in a sub-cgroup of the container's, which must exist: PATH, or
    /// CONTROLLER[,CONTROLLER]:PATH for those controllers (cgroup v1)
    #[arg(long = "cgroup", value_name = "[CONTROLLERS:]PATH")]
    cgroup: Vec<String>,
    /// Exec into a paused container too (the process stays frozen until resume)
    #[arg(long = "ignore-paused",
          value_name = "true|false", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    ignore_paused: bool,
    /// Pass this many extra fds (3 to 3+N-1) to the process
    #[arg(long = "preserve-fds", value_name = "N", default_value_t = 0)]
    preserve_fds: u32,
    /// Set no_new_privs for the process (whatever --process says)
    #[arg(long = "no-new-privs",
          value_name = "true|false", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    no_new_privs: bool,
    /// The container id
    id: String,
    /// The command, when there is no --process
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Run `exprun exec`.
pub fn exec(globals: &Globals, a: ExecArgs) -> Result<i32> {
    container::exec(
        &globals.state(),
        &container::ExecOptions {
            id: &a.id,
            process_file: a.process.as_deref(),
            args: a.command,
            cwd: a.cwd.as_deref(),
            env: a.env,
            user: a.user.as_deref(),
            caps: a.cap,
            cgroups: a.cgroup,
            ignore_paused: a.ignore_paused,
            preserve_fds: a.preserve_fds,
            no_new_privs: a.no_new_privs,
            tty: a.tty,
            detach: a.detach,
            pid_file: a.pid_file.as_deref(),
            console_socket: a.console_socket.as_deref(),
        },
    )
}

/// `exprun update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// OCI LinuxResources JSON, from a file or `-` for stdin (what containerd sends)
    #[arg(short = 'r', long, value_name = "FILE|-")]
    resources: Option<PathBuf>,
    /// Memory limit in bytes
    #[arg(short = 'm', long, value_name = "BYTES")]
    memory: Option<String>,
    /// Memory plus swap in bytes, -1 for no limit (at least --memory)
    #[arg(long = "memory-swap", value_name = "BYTES", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Memory kept under pressure (cgroup v1 soft limit, v2 memory.low), in bytes
    #[arg(long = "memory-reservation", value_name = "BYTES")]
    memory_reservation: Option<String>,
    /// CPUs the container may use, e.g. 0-3,6
    #[arg(long = "cpuset-cpus", value_name = "LIST")]
    cpuset_cpus: Option<String>,
    /// Memory nodes the container may use, e.g. 0
    #[arg(long = "cpuset-mems", value_name = "LIST")]
    cpuset_mems: Option<String>,
    /// Block I/O weight, 10 to 1000
    #[arg(long = "blkio-weight", value_name = "N")]
    blkio_weight: Option<u16>,
    /// CFS quota in microseconds
    #[arg(long = "cpu-quota", value_name = "US")]
    cpu_quota: Option<i64>,
    /// CFS period in microseconds
    #[arg(long = "cpu-period", value_name = "US")]
    cpu_period: Option<u64>,
    /// CPU shares (relative weight)
    #[arg(long = "cpu-share", value_name = "N")]
    cpu_share: Option<u64>,
    /// Maximum number of processes
    #[arg(long = "pids-limit", value_name = "N")]
    pids_limit: Option<i64>,
    /// The container id
    id: String,
}

/// Run `exprun update`.
pub fn update(globals: &Globals, a: UpdateArgs) -> Result<i32> {
    let mut limits = match &a.resources {
        Some(p) => {
            let bytes = if p.as_os_str() == "-" {
                let mut b = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
                    .map_err(|source| Error::Io { op: "reading the resources from stdin".into(), source })?;
                b
            } else {
                std::fs::read(p)
                    .map_err(|source| Error::Io { op: format!("reading {}", p.display()), source })?
            };
            let r: oci_spec::runtime::LinuxResources = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Usage(format!("--resources: not OCI LinuxResources JSON: {e}")))?;
            let mut l = crate::plan::resources_limits(&r, &crate::plan::host::hugepage_sizes())?;
            // As with runc, update changes limits, not device rules.
            l.devices.clear();
            l
        }
        None => crate::cgroups::Limits::default(),
    };
    if let Some(m) = &a.memory {
        limits.memory_bytes = Some(crate::spec::options::parse_size("--memory", m)? as i64);
    }
    if let Some(m) = &a.memory_swap {
        limits.memory_swap = Some(match m.trim() {
            "-1" => -1,
            m => crate::spec::options::parse_size("--memory-swap", m)? as i64,
        });
    }
    if let Some(m) = &a.memory_reservation {
        limits.memory_reservation = Some(crate::spec::options::parse_size("--memory-reservation", m)? as i64);
    }
    let cpuset = |option: &str, v: &Option<String>| -> Result<Option<String>> {
        let Some(v) = v else { return Ok(None) };
        let ids = crate::spec::options::parse_cpuset(v)
            .map_err(|why| Error::Usage(format!("{option} {v:?}: {why}; give a list such as 0-3,6")))?;
        Ok(Some(crate::spec::options::format_cpuset(&ids)))
    };
    limits.cpuset_cpus = cpuset("--cpuset-cpus", &a.cpuset_cpus)?.or(limits.cpuset_cpus);
    limits.cpuset_mems = cpuset("--cpuset-mems", &a.cpuset_mems)?.or(limits.cpuset_mems);
    match a.blkio_weight {
        Some(w @ 10..=1000) => limits.block_io.weight = Some(w),
        Some(w) => return Err(Error::Usage(format!("--blkio-weight {w}: a block I/O weight is 10 to 1000"))),
        None => {}
    }
    limits.cpu_quota_us = a.cpu_quota.or(limits.cpu_quota_us);
    limits.cpu_period_us = a.cpu_period.or(limits.cpu_period_us);
    limits.cpu_shares = a.cpu_share.or(limits.cpu_shares);
    limits.pids_max = a.pids_limit.or(limits.pids_max);
    container::update(&globals.state(), &a.id, &limits)?;
    Ok(0)
}

/// `exprun ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// table or json (a JSON array of host pids, as containerd reads it)
    #[arg(short = 'f', long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
    /// The container id
    id: String,
}

/// Run `exprun ps`.
pub fn ps(globals: &Globals, a: PsArgs) -> Result<i32> {
    let pids = container::pids(&globals.state(), &a.id)?;
    if a.format == "json" {
        outln!("{}", to_json(&pids)?);
        return Ok(0);
    }
    outln!("{:<8} CMD", "PID");
    for pid in pids {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        // The container's processes set their own command lines.
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        outln!("{pid:<8} {}", crate::record::for_terminal(cmd.trim_end()));
    }
    Ok(0)
}

/// `exprun start`, `state`: just an id.
#[derive(Debug, Args)]
pub struct IdArg {
    /// The container id
    id: String,
}

/// Run `exprun pause` (`frozen`) or `exprun resume`.
pub fn pause(globals: &Globals, a: IdArg, frozen: bool) -> Result<i32> {
    container::set_paused(&globals.state(), &a.id, frozen)?;
    Ok(0)
}

/// Run `exprun start`.
pub fn start(globals: &Globals, a: IdArg) -> Result<i32> {
    container::start(&globals.state(), &a.id)?;
    Ok(0)
}

/// Run `exprun state`.
pub fn state(globals: &Globals, a: IdArg) -> Result<i32> {
    let s = container::state(&globals.state(), &a.id)?;
    println!("{}", to_json(&s)?);
    Ok(0)
}

/// `exprun kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal every process of the container, not only its init (succeeds on a
    /// stopped container too)
    #[arg(short = 'a', long,
          value_name = "true|false", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    all: bool,
    /// The container id
    id: String,
    /// The signal, as a number or a name (TERM, SIGKILL, ...)
    #[arg(default_value = "SIGTERM")]
    signal: String,
}

/// Run `exprun kill`.
pub fn kill(globals: &Globals, a: KillArgs) -> Result<i32> {
    container::kill(&globals.state(), &a.id, &a.signal, a.all)?;
    Ok(0)
}

/// `exprun delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Kill a running container first; succeed if it does not exist
    #[arg(short = 'f', long,
          value_name = "true|false", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    force: bool,
    /// The container id
    id: String,
}

/// Run `exprun delete`.
pub fn delete(globals: &Globals, a: DeleteArgs) -> Result<i32> {
    let node = crate::node::NodeConfig::load()?;
    container::delete(&globals.state(), &a.id, a.force, &node)?;
    Ok(0)
}

/// `exprun list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// table or json
    #[arg(short = 'f', long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
    /// Print only the ids
    #[arg(short = 'q', long,
          value_name = "true|false", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    quiet: bool,
}

/// Run `exprun list`.
pub fn list(globals: &Globals, a: ListArgs) -> Result<i32> {
    let all = container::list(&globals.state());
    if a.format == "json" {
        outln!("{}", to_json(&all)?);
        return Ok(0);
    }
    let rows: Vec<serde_json::Value> = all.iter().filter_map(|s| serde_json::to_value(s).ok()).collect();
    if a.quiet {
        for r in &rows {
            outln!("{}", r["id"].as_str().unwrap_or_default());
        }
        return Ok(0);
    }
    outln!("{:<24} {:<8} {:<8} {:<40} {:<21} OWNER", "ID", "PID", "STATUS", "BUNDLE", "CREATED");
    for r in &rows {
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        outln!(
            "{:<24} {:<8} {:<8} {:<40} {:<21} {}",
            s("id"),
            r["pid"].to_string(),
            s("status"),
            s("bundle"),
            s("created"),
            s("owner")
        );
    }
    Ok(0)
}

/// Run `exprun features`: what this runtime supports, as the OCI features document.
pub fn features() -> Result<i32> {
    // caps::all() is a hash set: sorted, so that the document is the same on
    // every call. Every list below is sorted too, but the hooks, which are in
    // the order they run.
    let mut caps: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    caps.sort();
    // The OCI document has no field for device rules: say on this host what
    // enforces linux.resources.devices, or that configs with rules are refused.
    let devices = match crate::cgroups::CgroupHost::detect().map_err(|e| e.to_string()) {
        Ok(host) => crate::cgroups::devices::enforcement(&host),
        Err(e) => Err(e),
    };
    let devices = match devices {
        Ok(how) => format!("enforced by the {how}"),
        Err(why) => format!("not enforceable ({why}): configs with linux.resources.devices are refused"),
    };
    let doc = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": crate::plan::mounts::KNOWN_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": caps,
            "cgroup": { "v1": true, "v2": true, "systemd": true, "systemdUser": false },
            "seccomp": {
                "enabled": true,
                "actions": [
                    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"
                ],
                "operators": [
                    "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
                ],
                "archs": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"]
            },
            "apparmor": { "enabled": true },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false }
        },
        "annotations": {
            "dev.exprun.version": env!("CARGO_PKG_VERSION"),
            "dev.exprun.devices": devices
        }
    });
    println!("{}", to_json(&doc)?);
    Ok(0)
}

/// `exprun spec`.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Write config.json into this directory
    #[arg(short = 'b', long, value_name = "DIR", default_value = ".")]
    bundle: PathBuf,
}

/// Run `exprun spec`: write a starting config.json, refusing to replace one.
/// With `rootless`, one an unprivileged caller can run, as `runc spec --rootless`
/// writes: a user namespace mapping the caller to root, the host's network
/// namespace, /sys bound from the host, no cgroup namespace or /sys/fs/cgroup.
pub fn spec(a: SpecArgs, rootless: bool) -> Result<i32> {
    let path = a.bundle.join("config.json");
    if path.exists() {
        return Err(Error::Usage(format!("{} already exists; remove it first", path.display())));
    }
    let m = |dst: &str, typ: &str, src: &str, o: &[&str]| serde_json::json!({"destination": dst, "type": typ, "source": src, "options": o});
    let caps = crate::spec::DEFAULT_CAPABILITIES;
    let doc = serde_json::json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [format!("PATH={}", crate::spec::DEFAULT_PATH), "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "exprun",
        "mounts": [
            m("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
            m("/dev", "tmpfs", "tmpfs", &["nosuid", "noexec", "nodev", "strictatime", "mode=755", "size=65536k"]),
            m("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
            m("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
            m("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
            m("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
            m("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", "ro"])
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": crate::spec::MASKED_PATHS,
            "readonlyPaths": crate::spec::READONLY_PATHS
        }
    });
    let mut doc = doc;
    if rootless {
        let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        doc["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "user"}]);
        doc["linux"]["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        doc["linux"]["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": gid, "size": 1}]);
        // Only the caller's ids exist inside: no tty group for /dev/pts, no
        // sysfs of a network namespace of its own, no cgroup of its own to show.
        doc["mounts"] = serde_json::json!([
            m("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
            m(
                "/dev",
                "tmpfs",
                "tmpfs",
                &["nosuid", "noexec", "nodev", "strictatime", "mode=755", "size=65536k"]
            ),
            m(
                "/dev/pts",
                "devpts",
                "devpts",
                &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
            ),
            m("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
            m("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
            m("/sys", "bind", "/sys", &["rbind", "nosuid", "noexec", "nodev", "ro"])
        ]);
    }
    let mut bytes = serde_json::to_vec_pretty(&doc)
        .map_err(|source| Error::Json { op: "writing config.json", source })?;
    bytes.push(b'\n');
    std::fs::write(&path, bytes)
        .map_err(|source| Error::Io { op: format!("writing {}", path.display()), source })?;
    Ok(0)
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string_pretty(v).map_err(|source| Error::Json { op: "cannot print JSON", source })
}
