//! Producing the OCI runtime spec of a run: the image's config, overridden by the
//! command line, completed with exprun's defaults. No side effects: this module
//! reads the image's layers (for /etc/passwd) and the options, and returns a value.

pub mod bundle;
pub mod devices;
pub mod options;
pub mod pins;
pub mod shm;
pub mod user;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use crate::image::ResolvedImage;
use options::{Network, RunOptions};
use pins::{Determinism, PinContext};
use shm::Ipc;

/// Spec errors: a bad option, an unusable image config, an unknown user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command-line option has a bad value.
    #[error("{option} {value:?}: {why}")]
    Option {
        /// The option as spelled on the command line.
        option: &'static str,
        /// The value given.
        value: String,
        /// What is wrong and what to give instead.
        why: String,
    },
    /// Two options ask for contradicting things.
    #[error("{first} and {second} cannot be used together: {why}")]
    Conflict {
        /// One option, as spelled on the command line.
        first: String,
        /// The other.
        second: String,
        /// Why, and what to give instead.
        why: String,
    },
    /// A line of an --env-file is bad.
    #[error("--env-file {path}, line {line}: {why}")]
    EnvFile {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// Reading an --env-file failed.
    #[error("--env-file {path}: {source}")]
    EnvFileRead {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The user cannot be resolved in the image.
    #[error("user {user:?}: {why}")]
    User {
        /// The user as given.
        user: String,
        /// Why it cannot be resolved.
        why: String,
    },
    /// The image has no command and none was given.
    #[error("image {image}: it has no Entrypoint or Cmd; give the command after the image, e.g. exprun run {image} -- /bin/sh")]
    NoCommand {
        /// The image reference.
        image: String,
    },
    /// Reading a file of the image's layers failed.
    #[error("reading {path} from the image's layers: {source}")]
    ImageFile {
        /// The path inside the image.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An OCI bundle cannot be used.
    #[error("{path}: {why}")]
    Bundle {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A CDI device cannot be resolved.
    #[error(transparent)]
    Cdi(#[from] crate::cdi::Error),
    /// The assembled spec does not deserialize: a bug in exprun.
    #[error("internal error building the runtime spec: {0}")]
    Internal(String),
}

/// The capabilities a container's root user gets by default: the set containerd,
/// Docker and runc-based engines give (moby's default capability list).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// Paths covered so the container cannot read or use them (runc's defaults).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Paths made read-only (runc's defaults).
pub const READONLY_PATHS: &[&str] =
    &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The PATH a container gets when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The hostname a container gets when none is given: the same on every run, so a
/// program that prints its hostname reproduces.
pub const DEFAULT_HOSTNAME: &str = "exprun";

/// What `from_image` needs besides the options and the image.
pub struct SpecContext<'a> {
    /// The resolved image.
    pub image: &'a ResolvedImage,
    /// The image's unpacked layers, bottom first.
    pub layer_dirs: &'a [PathBuf],
    /// The run's state directory (rootfs mount point, hosts files).
    pub state_dir: &'a Path,
    /// The caller's rlimits, as (OCI name, soft, hard).
    pub host_rlimits: &'a [(String, u64, u64)],
    /// CPUs exprun may run on (the `threads` pin's default).
    pub host_cpus: usize,
    /// The pins a recorded run was decided with (replay): used as they are
    /// instead of being decided again on this host.
    pub pins: Option<&'a Determinism>,
    /// A rootless run: the caller's ids, mapped to root in a new user namespace.
    pub rootless: Option<Rootless>,
}

/// The caller of a rootless run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rootless {
    /// The caller's uid, root inside.
    pub uid: u32,
    /// The caller's gid, root's group inside.
    pub gid: u32,
    /// The caller's subordinate uids and gids (first, count) from /etc/subuid
    /// and /etc/subgid, mapped from 1 up, when both exist and newuidmap and
    /// newgidmap are installed.
    pub subordinate: Option<((u32, u32), (u32, u32))>,
    /// A cgroup2 subtree is delegated to the caller: the run gets a cgroup
    /// there, and with it a cgroup namespace and its own /sys/fs/cgroup.
    pub cgroup: bool,
}

impl Rootless {
    /// The caller, with subordinate ids if the host gives them.
    pub fn of_caller(uid: u32, gid: u32) -> Self {
        let name =
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name);
        let range = |file: &str, id: u32| -> Option<(u32, u32)> {
            let text = std::fs::read_to_string(file).ok()?;
            text.lines().find_map(|l| {
                let mut f = l.trim().split(':');
                let who = f.next()?;
                let (start, count) = (f.next()?.parse().ok()?, f.next()?.parse().ok()?);
                (who == id.to_string() || Some(who) == name.as_deref()).then_some((start, count))
            })
        };
        let helpers = ["newuidmap", "newgidmap"].iter().all(|h| {
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).any(|d| d.join(h).is_file()))
                .unwrap_or(false)
                || std::path::Path::new("/usr/bin").join(h).is_file()
        });
        let subordinate = match (range("/etc/subuid", uid), range("/etc/subgid", gid)) {
            (Some(u), Some(g)) if helpers => Some((u, g)),
            _ => None,
        };
        Rootless { uid, gid, subordinate, cgroup: false }
    }

    fn maps(own: u32, sub: Option<(u32, u32)>) -> Vec<Value> {
        let mut v = vec![json!({"containerID": 0, "hostID": own, "size": 1})];
        if let Some((start, count)) = sub {
            v.push(json!({"containerID": 1, "hostID": start, "size": count}));
        }
        v
    }
}

/// The mount point of the run's root filesystem inside its state directory.
pub fn rootfs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("rootfs")
}

/// Build the OCI runtime spec for `opts` on `ctx.image`, with the deterministic
/// profile applied; returns the profile too, for the record.
pub fn from_image(opts: &RunOptions, ctx: &SpecContext<'_>) -> Result<(Spec, Determinism), Error> {
    let cfg = ctx.image.config.config().clone().unwrap_or_default();

    // argv: a command on the command line replaces Cmd; --entrypoint replaces
    // Entrypoint (and then the image's Cmd is dropped too, as in podman).
    let entrypoint = match &opts.entrypoint {
        Some(e) => e.clone(),
        None => cfg.entrypoint().clone().unwrap_or_default(),
    };
    let cmd = if !opts.command.is_empty() {
        opts.command.clone()
    } else if opts.entrypoint.is_some() {
        Vec::new()
    } else {
        cfg.cmd().clone().unwrap_or_default()
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(Error::NoCommand { image: opts.image.clone() });
    }

    let user_spec = opts.user.clone().or_else(|| cfg.user().clone()).unwrap_or_default();
    let read = |p: &str| {
        user::read_image_file(ctx.layer_dirs, Path::new(p))
            .map_err(|source| Error::ImageFile { path: Path::new("/").join(p), source })
    };
    let user = user::resolve(&user_spec, read("etc/passwd")?.as_deref(), read("etc/group")?.as_deref())?;

    let hostname = opts.hostname.clone().unwrap_or_else(|| DEFAULT_HOSTNAME.into());
    let image_env = cfg.env().clone().unwrap_or_default();
    let determinism = match ctx.pins {
        Some(d) => d.clone(),
        None => pins::resolve(
            opts,
            &PinContext {
                image_env: &image_env,
                image_created: ctx.image.config.created().as_deref(),
                host_cpus: ctx.host_cpus,
                home: &home_of(&user),
                hostname: &hostname,
            },
        )?,
    };
    // CDI devices' variables go over the pins, beneath -e.
    let mut pinned = determinism.env();
    pinned.extend(
        opts.devices
            .cdi_edits
            .env
            .iter()
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.into(), v.into())),
    );
    let env = merge_env(&image_env, &pinned, &opts.env, &user, opts.tty);
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| cfg.working_dir().clone().filter(|w| !w.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| "/".into());
    let cwd = options::container_path("-w", &cwd.to_string_lossy())?;

    let caps = capabilities(&opts.cap_add, &opts.cap_drop);
    let (effective, permitted) = if user.uid == 0 { (caps.clone(), caps.clone()) } else { (vec![], vec![]) };
    let rlimits: Vec<Value> = rlimits(ctx.host_rlimits, &opts.ulimits)
        .into_iter()
        .map(|(name, soft, hard)| json!({"type": name, "soft": soft, "hard": hard}))
        .collect();

    let mut namespaces = vec!["pid"];
    if opts.ipc == Ipc::Private {
        namespaces.push("ipc");
    }
    namespaces.extend(["uts", "mount"]);
    if opts.network == Network::None {
        namespaces.push("network");
    }
    // A rootless run has a user namespace, and a cgroup namespace only when it
    // has a cgroup of its own (in a subtree delegated to the caller).
    if ctx.rootless.is_some() {
        namespaces.push("user");
    }
    if ctx.rootless.is_none_or(|r| r.cgroup) {
        namespaces.push("cgroup");
    }

    let mut resources = serde_json::Map::new();
    if let Some(m) = opts.memory {
        resources.insert("memory".into(), json!({"limit": m, "swap": m}));
    }
    if let Some(c) = opts.cpus {
        resources
            .insert("cpu".into(), json!({"quota": cpu_quota(c), "period": crate::cgroups::CPU_PERIOD_US}));
    }
    if let Some(p) = opts.pids_limit {
        resources.insert("pids".into(), json!({"limit": p}));
    }
    // The plan adds the devices every container may use. A rootless run has no
    // devices cgroup; its /dev holds the bound nodes only, and every mount is nodev.
    // `--device` and CDI nodes: made in /dev and let through the devices cgroup
    // (with their PERMS); rootless, the host's nodes bound.
    let mut extra_mounts = devices::cdi_mounts(&opts.devices.cdi_edits);
    let mut linux_devices = Vec::new();
    if ctx.rootless.is_none() {
        let mut rules = vec![crate::cgroups::devices::deny_all().oci_json()];
        rules.extend(devices::allow_rules(&opts.devices));
        resources.insert("devices".into(), Value::Array(rules));
        linux_devices = devices::linux_devices(&opts.devices);
    } else {
        extra_mounts.extend(devices::rootless_binds(&opts.devices)?);
    }
    let cdi_gids = &opts.devices.cdi_edits.additional_gids;
    if ctx.rootless.is_some() && !cdi_gids.is_empty() {
        return Err(Error::Option {
            option: "--device",
            value: opts.devices.cdi.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(","),
            why: format!(
                "its CDI spec adds the groups {cdi_gids:?}, and a rootless run cannot set supplementary \
                 groups (setgroups is denied in its user namespace); run exprun as root"
            ),
        });
    }
    let mut additional_gids = user.additional_gids.clone();
    additional_gids.extend(cdi_gids.iter().filter(|g| !user.additional_gids.contains(g)));

    let spec = json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": opts.tty,
            "user": {
                "uid": user.uid,
                "gid": user.gid,
                "umask": determinism.umask(),
                // setgroups(2) is denied in a rootless user namespace.
                "additionalGids": if ctx.rootless.is_some() { Vec::new() } else { additional_gids },
            },
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": caps,
                "effective": effective,
                "permitted": permitted,
                "inheritable": [],
                "ambient": [],
            },
            "rlimits": rlimits,
            "noNewPrivileges": true,
        },
        "root": { "path": rootfs_dir(ctx.state_dir), "readonly": opts.read_only },
        "hostname": hostname,
        "mounts": mounts(opts, ctx.state_dir, ctx.rootless, extra_mounts),
        "hooks": devices::cdi_hooks(&opts.devices.cdi_edits),
        "linux": {
            "namespaces": namespaces.iter().map(|n| json!({"type": n})).collect::<Vec<_>>(),
            "uidMappings": ctx.rootless.map(|r| Rootless::maps(r.uid, r.subordinate.map(|s| s.0))),
            "gidMappings": ctx.rootless.map(|r| Rootless::maps(r.gid, r.subordinate.map(|s| s.1))),
            "resources": resources,
            "devices": linux_devices,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    });
    let mut spec: Spec = serde_json::from_value(spec).map_err(|e| Error::Internal(e.to_string()))?;
    let seccomp = match &opts.seccomp {
        options::SeccompChoice::Default => Some(crate::seccomp::default::profile(&caps)),
        options::SeccompChoice::Unconfined => None,
        options::SeccompChoice::File { profile, .. } => Some(profile.clone()),
    };
    if let Some(linux) = spec.linux_mut() {
        linux.set_seccomp(seccomp);
    }
    if !determinism.aslr() {
        set_aslr(&mut spec, false);
    }
    Ok((spec, determinism))
}

/// Turn address-space randomisation off (`linux.personality` with the
/// ADDR_NO_RANDOMIZE flag) or back to the kernel's default.
pub fn set_aslr(spec: &mut Spec, on: bool) {
    use oci_spec::runtime::{LinuxPersonalityBuilder, LinuxPersonalityDomain};
    let personality = (!on)
        .then(|| {
            LinuxPersonalityBuilder::default()
                .domain(LinuxPersonalityDomain::PerLinux)
                .flags(vec!["ADDR_NO_RANDOMIZE".to_string()])
                .build()
                .ok()
        })
        .flatten();
    spec.linux_mut().get_or_insert_with(Default::default).set_personality(personality);
}

/// The home directory the container user gets when the image sets no HOME.
fn home_of(user: &user::ResolvedUser) -> String {
    user.home.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| "/".into())
}

/// The CFS quota for `cpus` CPUs per [`crate::cgroups::CPU_PERIOD_US`].
pub fn cpu_quota(cpus: f64) -> i64 {
    (cpus * crate::cgroups::CPU_PERIOD_US as f64).round() as i64
}

/// The image's Env, then the deterministic profile's variables the image does not
/// set, then the command line's (a later value for a name replaces an earlier one
/// in place); PATH and HOME are added when missing, TERM with a terminal.
fn merge_env(
    image_env: &[String],
    pinned: &[(String, String)],
    cli_env: &[(String, String)],
    user: &user::ResolvedUser,
    tty: bool,
) -> Vec<String> {
    // An index by name keeps this linear: an image config may carry a million
    // entries, and a search per entry made `run` spin for minutes on one.
    let mut out: Vec<(String, String)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut set = |k: &str, v: &str| match index.get(k) {
        Some(&i) => out[i].1 = v.to_string(),
        None => {
            index.insert(k.to_string(), out.len());
            out.push((k.to_string(), v.to_string()));
        }
    };
    for e in image_env {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        set(k, v);
    }
    for (k, v) in pinned.iter().chain(cli_env) {
        set(k, v);
    }
    let defaults = [("PATH", DEFAULT_PATH.to_string()), ("HOME", home_of(user))];
    for (k, v) in defaults.into_iter().chain(tty.then(|| ("TERM", "xterm".to_string()))) {
        if !index.contains_key(k) {
            out.push((k.to_string(), v));
        }
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The default capabilities with `--cap-add` and `--cap-drop` applied (drop first,
/// then add, so `--cap-drop ALL --cap-add NET_BIND_SERVICE` keeps just that one).
pub fn capabilities(add: &[String], drop: &[String]) -> Vec<String> {
    let mut caps: Vec<String> = if drop.iter().any(|d| d == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).filter(|c| !drop.contains(c)).collect()
    };
    if add.iter().any(|a| a == "ALL") {
        caps = caps::all().iter().map(|c| c.to_string()).collect();
    } else {
        caps.extend(add.iter().cloned());
    }
    caps.sort();
    caps.dedup();
    caps
}

/// The caller's rlimits with `--ulimit` overrides: every limit is explicit in the
/// spec, so the record says what the process ran under and replay can restore it.
fn rlimits(host: &[(String, u64, u64)], ulimits: &[options::Ulimit]) -> Vec<(String, u64, u64)> {
    let mut out: Vec<(String, u64, u64)> = host.to_vec();
    for u in ulimits {
        match out.iter_mut().find(|(n, _, _)| *n == u.name) {
            Some(e) => *e = (u.name.clone(), u.soft, u.hard),
            None => out.push((u.name.clone(), u.soft, u.hard)),
        }
    }
    out
}

/// System mounts, then the run's /etc files, then the user's mounts (and
/// `extra`: the devices' mounts) sorted so a parent is mounted before anything
/// inside it.
fn mounts(
    opts: &RunOptions,
    state_dir: &Path,
    caller: Option<Rootless>,
    extra: Vec<(PathBuf, Value)>,
) -> Vec<Value> {
    let rootless = caller.is_some();
    let m = |dst: &str, typ: &str, src: &str, o: &[&str]| json!({"destination": dst, "type": typ, "source": src, "options": o});
    // In a user namespace, group 5 (tty) is not mapped, and sysfs can only be
    // mounted by the owner of the network namespace: with the host's network,
    // the host's /sys is bound instead.
    let devpts: &[&str] = if rootless {
        &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    } else {
        &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
    };
    let mut v = vec![
        m("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        m("/dev", "tmpfs", "tmpfs", &["nosuid", "noexec", "nodev", "strictatime", "mode=755", "size=65536k"]),
        m("/dev/pts", "devpts", "devpts", devpts),
        shm_mount(opts),
    ];
    // The kernel refuses a user namespace the mount of the host IPC
    // namespace's message queues; mq_open(3) does not need the mount.
    if !(rootless && opts.ipc == Ipc::Host) {
        v.push(m("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]));
    }
    if rootless && opts.network == Network::Host {
        v.push(m("/sys", "bind", "/sys", &["rbind", "nosuid", "noexec", "nodev", "ro"]));
    } else {
        v.push(m("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]));
    }
    if caller.is_none_or(|r| r.cgroup) {
        v.push(m("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", "ro"]));
    }
    let bind = |src: &Path, dst: &Path, ro: bool| {
        let mut o = vec!["rbind", "nosuid", "nodev"];
        o.push(if ro { "ro" } else { "rw" });
        json!({"destination": dst, "type": "bind", "source": src, "options": o})
    };
    for f in ["hosts", "hostname"] {
        v.push(bind(&state_dir.join(f), &Path::new("/etc").join(f), false));
    }
    if opts.network == Network::Host {
        v.push(bind(Path::new("/etc/resolv.conf"), Path::new("/etc/resolv.conf"), true));
    }
    let mut user: Vec<(PathBuf, Value)> = Vec::new();
    for hm in &opts.volumes {
        user.push((hm.destination.clone(), bind(&hm.source, &hm.destination, hm.readonly)));
    }
    for hm in &opts.inputs {
        user.push((hm.destination.clone(), bind(&hm.source, &hm.destination, true)));
    }
    for hm in &opts.outputs {
        user.push((hm.destination.clone(), bind(&hm.source, &hm.destination, false)));
    }
    let shm_tmpfs = shm::shm_tmpfs(&opts.tmpfs);
    for t in opts.tmpfs.iter().filter(|t| !shm_tmpfs.is_some_and(|s| std::ptr::eq(s, *t))) {
        let mut o: Vec<String> = vec!["nosuid".into(), "nodev".into()];
        if !t.options.iter().any(|x| x.starts_with("mode=")) {
            o.push("mode=1777".into());
        }
        o.extend(t.options.iter().cloned());
        user.push((
            t.destination.clone(),
            json!({"destination": t.destination, "type": "tmpfs", "source": "tmpfs", "options": o}),
        ));
    }
    user.extend(extra);
    user.sort_by_key(|(d, _)| d.components().count());
    v.extend(user.into_iter().map(|(_, m)| m));
    v
}

/// /dev/shm: with `--ipc host` the host's, bound; else a tmpfs of the run's
/// own, of `--shm-size` and with a `--tmpfs /dev/shm`'s options merged in.
fn shm_mount(opts: &RunOptions) -> Value {
    let (typ, source, options) = match opts.ipc {
        Ipc::Host => {
            ("bind", shm::SHM_PATH, vec!["rbind".into(), "nosuid".into(), "nodev".into(), "noexec".into()])
        }
        Ipc::Private => ("tmpfs", "shm", shm::shm_options(opts.shm_size, shm::shm_tmpfs(&opts.tmpfs))),
    };
    json!({"destination": shm::SHM_PATH, "type": typ, "source": source, "options": options})
}

/// The caller's current rlimits, as (OCI name, soft, hard), `u64::MAX` = unlimited.
pub fn caller_rlimits() -> Vec<(String, u64, u64)> {
    use nix::sys::resource::{getrlimit, Resource};
    let all = [
        (Resource::RLIMIT_AS, "RLIMIT_AS"),
        (Resource::RLIMIT_CORE, "RLIMIT_CORE"),
        (Resource::RLIMIT_CPU, "RLIMIT_CPU"),
        (Resource::RLIMIT_DATA, "RLIMIT_DATA"),
        (Resource::RLIMIT_FSIZE, "RLIMIT_FSIZE"),
        (Resource::RLIMIT_LOCKS, "RLIMIT_LOCKS"),
        (Resource::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"),
        (Resource::RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"),
        (Resource::RLIMIT_NICE, "RLIMIT_NICE"),
        (Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE"),
        (Resource::RLIMIT_NPROC, "RLIMIT_NPROC"),
        (Resource::RLIMIT_RSS, "RLIMIT_RSS"),
        (Resource::RLIMIT_RTPRIO, "RLIMIT_RTPRIO"),
        (Resource::RLIMIT_RTTIME, "RLIMIT_RTTIME"),
        (Resource::RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING"),
        (Resource::RLIMIT_STACK, "RLIMIT_STACK"),
    ];
    all.iter().filter_map(|(r, name)| getrlimit(*r).ok().map(|(s, h)| (name.to_string(), s, h))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_merge_overrides_in_place_and_adds_defaults() {
        let user = user::ResolvedUser { uid: 0, gid: 0, additional_gids: vec![], home: Some("/root".into()) };
        let env = merge_env(
            &["A=1".into(), "PATH=/bin".into(), "B=2".into()],
            &[],
            &[("A".into(), "x".into()), ("C".into(), "3".into())],
            &user,
            true,
        );
        assert_eq!(env, ["A=x", "PATH=/bin", "B=2", "C=3", "HOME=/root", "TERM=xterm"]);
        let env = merge_env(
            &[],
            &[],
            &[],
            &user::ResolvedUser { uid: 5, gid: 5, additional_gids: vec![], home: None },
            false,
        );
        assert_eq!(env, [format!("PATH={DEFAULT_PATH}"), "HOME=/".to_string()]);
    }

    #[test]
    fn capability_adds_and_drops() {
        let all_default = capabilities(&[], &[]);
        assert_eq!(all_default.len(), DEFAULT_CAPABILITIES.len());
        let c = capabilities(&["CAP_SYS_PTRACE".into()], &["CAP_NET_RAW".into()]);
        assert!(c.contains(&"CAP_SYS_PTRACE".to_string()) && !c.contains(&"CAP_NET_RAW".to_string()));
        assert_eq!(capabilities(&["CAP_KILL".into()], &["ALL".into()]), ["CAP_KILL"]);
    }

    #[test]
    fn ulimit_overrides_host_value() {
        let host = vec![("RLIMIT_NOFILE".to_string(), 1024, 4096), ("RLIMIT_CORE".into(), 0, u64::MAX)];
        let u = options::Ulimit { name: "RLIMIT_NOFILE".into(), soft: 10, hard: 20 };
        let r = rlimits(&host, &[u]);
        assert_eq!(r[0], ("RLIMIT_NOFILE".into(), 10, 20));
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn cpu_quota_rounds_to_microseconds() {
        assert_eq!(cpu_quota(1.5), 150_000);
        assert_eq!(cpu_quota(0.01), 1_000);
    }
}
