//! The run plan: one resolved, validated, serializable value that spawning reads and
//! the record stores, so what was recorded is exactly what ran.
//!
//! [`build`] turns an OCI runtime spec plus the run's context into a [`RunPlan`]. It
//! has no side effects (it reads the host's cgroup layout and checks that bind
//! sources exist); every bad combination is refused here with a message that names
//! the field.

pub mod devices;
pub mod mounts;
mod namespaces;
mod resources;
mod rootless;
mod unapplied;

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

use crate::cgroups::{CgroupHost, CgroupPlan, Limits, Placement};
use crate::image::ResolvedImage;
use crate::spec::options::HostMount;
pub use devices::DeviceNode;
pub use mounts::MountOp;
pub use namespaces::{IdRange, Join, UserNs};
pub use resources::resources_limits;
pub use rootless::NoCgroup;

/// Version of the plan's JSON form (plan.json in a container's state directory).
pub const PLAN_SCHEMA: u32 = 1;

/// Longest overlayfs option string the kernel accepts in one page, with margin.
const MAX_OVERLAY_DATA: usize = 4000;

/// Plan errors: the spec or its context cannot be run as given.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A mount entry is bad.
    #[error("mount {destination}: {why}")]
    Mount {
        /// The mount's destination.
        destination: String,
        /// What is wrong.
        why: String,
    },
    /// A process field is bad.
    #[error("process {field}: {why}")]
    Process {
        /// The spec field, e.g. `args`.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The spec asks for something exprun does not do yet.
    #[error("{0}")]
    Unsupported(String),
    /// A field of the config is invalid; the text names it.
    #[error("{0}")]
    Config(String),
    /// The image cannot be mounted as asked.
    #[error("image {image}: {why}")]
    Image {
        /// The image reference.
        image: String,
        /// What is wrong.
        why: String,
    },
    /// A bind source is missing or unreadable.
    #[error("{option} source {path}: {source}")]
    Source {
        /// The option or spec field that named it.
        option: String,
        /// The host path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The cgroup cannot be planned.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::Error),
    /// The seccomp profile cannot be compiled.
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::Error),
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// What becomes the container's `/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootfsPlan {
    /// An overlay of an image's layers from the store and a per-run writable layer.
    Overlay(Overlay),
    /// A directory prepared by the caller (an OCI bundle's rootfs), used in place.
    Bundle {
        /// The directory, absolute.
        path: PathBuf,
    },
}

impl RootfsPlan {
    /// The directory that becomes `/`.
    pub fn target(&self) -> &Path {
        match self {
            RootfsPlan::Overlay(o) => &o.target,
            RootfsPlan::Bundle { path } => path,
        }
    }

    /// The store layers (diff_id hex) the root is made of.
    pub fn layers(&self) -> &[String] {
        match self {
            RootfsPlan::Overlay(o) => &o.lower,
            RootfsPlan::Bundle { .. } => &[],
        }
    }
}

/// The overlay that becomes the container's `/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlay {
    /// The directory holding the layer directories (lowerdirs are relative to it,
    /// which keeps the mount data short).
    pub layers_root: PathBuf,
    /// Layer directory names, topmost first (overlayfs order).
    pub lower: Vec<String>,
    /// The per-run writable layer.
    pub upper: PathBuf,
    /// overlayfs's work directory (same filesystem as `upper`).
    pub work: PathBuf,
    /// The mount point.
    pub target: PathBuf,
    /// Where upper/ and work/ live.
    pub scratch: Scratch,
    /// The most bytes the writable layer's tmpfs holds (none on disk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch_bytes: Option<u64>,
}

/// The writable layer's size without `--storage-opt size=` or `--memory`: a
/// container must not fill half of the host's memory (a tmpfs's own default).
pub const DEFAULT_SCRATCH_BYTES: u64 = 4 << 30;

/// Where the run's writable layer lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scratch {
    /// A tmpfs that init mounts over the run directory inside its own mount
    /// namespace: no disk writes, charged to the run's memory cgroup, and gone with
    /// the namespace, whatever happens to exprun.
    Tmpfs,
    /// Directories on the state root's filesystem (`--keep`: kept after the run).
    Disk,
}

/// The capability sets of the process, as `CAP_*` names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapSets {
    /// Bounding set.
    pub bounding: Vec<String>,
    /// Effective set.
    pub effective: Vec<String>,
    /// Permitted set.
    pub permitted: Vec<String>,
    /// Inheritable set.
    pub inheritable: Vec<String>,
    /// Ambient set.
    pub ambient: Vec<String>,
}

/// One resource limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_*` name.
    pub name: String,
    /// `RLIMIT_*` number.
    pub resource: u32,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// The process the container runs, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessPlan {
    /// argv; `args[0]` is looked up in the container's PATH when it has no `/`.
    pub args: Vec<String>,
    /// The whole environment, `NAME=VALUE`.
    pub env: Vec<String>,
    /// Working directory inside the container (created when missing).
    pub cwd: PathBuf,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// File mode creation mask.
    pub umask: u32,
    /// Capabilities.
    pub caps: CapSets,
    /// Resource limits, all explicit.
    pub rlimits: Vec<Rlimit>,
    /// PR_SET_NO_NEW_PRIVS.
    pub no_new_privs: bool,
    /// Allocate a terminal.
    pub terminal: bool,
    /// /proc/self/oom_score_adj.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i32>,
    /// personality(2) persona, from `linux.personality` (e.g. ADDR_NO_RANDOMIZE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personality: Option<u64>,
    /// CPUs the command is bound to (`--cpuset-cpus`); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpu_affinity: Vec<usize>,
    /// `process.apparmorProfile`: the AppArmor profile the command is exec'd into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apparmor_profile: Option<String>,
}

/// Everything about one run that the spawn and the record need.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunPlan {
    /// [`PLAN_SCHEMA`].
    pub schema: u32,
    /// The run id (32 hex characters).
    pub id: String,
    /// `--name`, if given.
    pub name: Option<String>,
    /// The exprun command line that asked for the run.
    pub command_line: Vec<String>,
    /// The run's state directory.
    pub state_dir: PathBuf,
    /// The OCI runtime spec the plan was made from.
    pub spec: Spec,
    /// The image, when the run comes from the store.
    pub image: Option<ResolvedImage>,
    /// The root filesystem.
    pub rootfs: RootfsPlan,
    /// Mounts, in order.
    pub mounts: Vec<MountOp>,
    /// The device nodes every container gets in its /dev tmpfs. (Plans written
    /// before had `devices`, host paths to bind: ignored when read back.)
    #[serde(default)]
    pub default_devices: Vec<DeviceNode>,
    /// Bind `default_devices` read-only from the host's nodes of the same path instead
    /// of making them: in a user namespace mknod is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub devices_from_host: bool,
    /// `linux.devices`: nodes made in the container, after /dev is populated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_nodes: Vec<DeviceNode>,
    /// Paths covered in the container.
    pub masked_paths: Vec<PathBuf>,
    /// Paths made read-only in the container.
    pub readonly_paths: Vec<PathBuf>,
    /// Remount `/` read-only at the end.
    pub readonly_root: bool,
    /// `linux.rootfsPropagation` as MS_* flags, given to `/` before the root is
    /// built and to the container's root after pivot_root.
    #[serde(default = "mounts::default_root_propagation")]
    pub root_propagation: u64,
    /// Namespaced sysctls to set in the container: (key, value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sysctls: Vec<(String, String)>,
    /// The process.
    pub process: ProcessPlan,
    /// Namespaces created at clone (CLONE_NEW* bits).
    pub clone_flags: u64,
    /// Namespaces joined instead of created (CRI containers join their pod's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joins: Vec<Join>,
    /// A new cgroup namespace, entered after joining the cgroup.
    pub cgroup_ns: bool,
    /// A new network namespace (bring loopback up).
    pub new_net: bool,
    /// Hostname, set in the container's UTS namespace (new, or joined by path).
    pub hostname: Option<String>,
    /// The cgroup.
    pub cgroup: CgroupPlan,
    /// Why the run has no cgroup (a rootless run where none can be had).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_cgroup: Option<NoCgroup>,
    /// Read from the caller's stdin (`-i`).
    pub interactive: bool,
    /// Host directories mounted read-only and digested before the run.
    pub inputs: Vec<HostMount>,
    /// Host directories mounted writable and digested after the run.
    pub outputs: Vec<HostMount>,
    /// Keep the writable layer after the run.
    pub keep: bool,
    /// The OCI bundle, when the run comes from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<PathBuf>,
    /// OCI hooks to run around the container's life.
    #[serde(default)]
    pub hooks: crate::hooks::Hooks,
    /// The compiled seccomp filter, when the config has a profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<crate::seccomp::Filter>,
    /// Files init writes into the run directory before mounting: (name, content).
    pub files: Vec<(String, String)>,
    /// How `exprun run` was asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Request>,
    /// A new user namespace in which the caller's ids are root (rootless runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_ns: Option<UserNs>,
}

/// What [`build`] needs besides the spec.
pub struct PlanContext<'a> {
    /// Run id.
    pub id: &'a str,
    /// `--name`.
    pub name: Option<&'a str>,
    /// The exprun command line.
    pub command_line: Vec<String>,
    /// The run's state directory (not created yet).
    pub state_dir: &'a Path,
    /// Where the root filesystem comes from.
    pub source: Source<'a>,
    /// The host's cgroups.
    pub cgroups: &'a CgroupHost,
    /// `--cgroup-parent`.
    pub cgroup_parent: Option<&'a str>,
    /// `--systemd-cgroup`: the cgroup is a scope systemd makes, named by
    /// `linux.cgroupsPath` in the form `slice:prefix:name`.
    pub systemd_cgroup: bool,
    /// `-i`.
    pub interactive: bool,
    /// `--input`s.
    pub inputs: Vec<HostMount>,
    /// `--output`s.
    pub outputs: Vec<HostMount>,
    /// `--keep`.
    pub keep: bool,
    /// `--storage-opt size=`: the writable layer's size.
    pub scratch_bytes: Option<u64>,
    /// Where compiled seccomp programs are cached.
    pub cache_dir: &'a Path,
    /// CPUs to bind the command to (`--cpuset-cpus`).
    pub cpu_affinity: Vec<usize>,
    /// How `exprun run` was asked for the run (none for a bundle).
    pub request: Option<Request>,
}

/// How `exprun run` was asked for a run: what replay needs to ask again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The options, normalised.
    pub options: crate::spec::options::RunOptions,
    /// The deterministic profile as decided.
    pub determinism: crate::spec::pins::Determinism,
    /// The run this one replays (`exprun replay`, `exprun verify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
    /// The variation this run was made under (`exprun verify --vary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variation: Option<String>,
    /// The command that made this replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub made_by: Option<crate::record::MadeBy>,
    /// What differed from the replayed run when the replay started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<crate::record::Drift>,
}

/// Where a run's root filesystem comes from.
pub enum Source<'a> {
    /// An image in the store.
    Image {
        /// The image.
        image: &'a ResolvedImage,
        /// The store's layer directory.
        layers_root: &'a Path,
    },
    /// The `root.path` of an OCI bundle's config.json, resolved against the bundle.
    Bundle {
        /// The bundle directory.
        dir: &'a Path,
    },
}

/// The device nodes every container gets: path, major, minor (Linux's fixed
/// numbers). The container owns them (made with mknod in its /dev, 0666 and
/// root's, as runc makes them), so nothing it does to them reaches the host's.
pub const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

fn default_devices() -> Vec<DeviceNode> {
    DEFAULT_DEVICES
        .iter()
        .map(|&(path, major, minor)| DeviceNode {
            path: PathBuf::from(path),
            kind: 'c',
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
        .collect()
}

/// Resolve and check `spec` into a plan.
pub fn build(spec: Spec, ctx: PlanContext<'_>) -> Result<RunPlan> {
    unapplied::refuse_in_config(&spec)?;
    let mut process = process_plan(&spec)?;
    let linux = spec.linux().clone().unwrap_or_default();
    process.personality = linux.personality().as_ref().map(personality).transpose()?;
    process.cpu_affinity = ctx.cpu_affinity.clone();

    let hostname = spec.hostname().clone();
    let namespaces = namespaces::resolve(&linux, hostname.is_some())?;
    let new_net = namespaces.made(LinuxNamespaceType::Network);
    let new_uts = namespaces.made(LinuxNamespaceType::Uts);
    let own_pid = namespaces.own_pid();
    let namespaces::Namespaces { clone_flags, joins, cgroup_ns, user_ns } = namespaces;

    let mut limits = limits(&linux)?;
    if !limits.devices.is_empty() {
        limits.devices.extend(crate::cgroups::devices::always_allowed());
    }
    let name = format!("exprun-{}", ctx.id);
    let placement = match linux.cgroups_path() {
        Some(path) => Placement::Path(path.to_str().unwrap_or_default()),
        None => Placement::Child { name: &name, parent: ctx.cgroup_parent },
    };
    if user_ns.as_ref().is_some_and(|ns| ns.privileged && !ns.maps(process.uid, process.gid)) {
        return Err(Error::Process {
            field: "user",
            why: format!(
                "uid {}:{} is not in the user namespace's linux.uidMappings and linux.gidMappings; map it, \
                 or run the process as an id that is mapped",
                process.uid, process.gid
            ),
        });
    }
    if let Some(ns) = user_ns.as_ref().filter(|ns| !ns.maps(process.uid, process.gid)) {
        return Err(Error::Process {
            field: "user",
            why: format!(
                "uid {}:{} does not exist in this rootless container, which maps {}; give the caller \
                 subordinate ids in /etc/subuid and /etc/subgid (with newuidmap installed), run as root \
                 inside, or run exprun as root",
                process.uid,
                process.gid,
                if ns.needs_helpers() {
                    "only the ranges of /etc/subuid and /etc/subgid"
                } else {
                    "only root (the caller)"
                }
            ),
        });
    }
    let rootless = user_ns.is_some() && !nix::unistd::geteuid().is_root();
    let (cgroup, no_cgroup) = if ctx.systemd_cgroup {
        if rootless {
            return Err(Error::Unsupported(
                "--systemd-cgroup is for exprun as root; leave it out as a rootless user (exprun then asks \
                 your systemd user manager for a scope itself where it has to)"
                    .into(),
            ));
        }
        // runc's default name for a bundle that names no cgroup.
        let given = match linux.cgroups_path() {
            Some(p) => p.to_string_lossy().into_owned(),
            None => format!("system.slice:exprun:{}", ctx.id),
        };
        let path =
            crate::spec::bundle::systemd_cgroup_path(&given).map_err(|e| Error::Config(e.to_string()))?;
        (ctx.cgroups.plan_system_scope(&path, limits)?, None)
    } else if rootless {
        rootless::cgroup(&ctx, &placement, limits)?
    } else {
        (ctx.cgroups.plan(&placement, limits, matches!(ctx.source, Source::Bundle { .. }))?, None)
    };
    if let (Some(none), false) = (&no_cgroup, own_pid) {
        return Err(Error::Unsupported(format!(
            "linux.namespaces: without a pid namespace of its own the container's processes can only be \
             found (to kill and delete them) through its cgroup, and this container has none ({}); add \
             {{\"type\": \"pid\"}}",
            none.why
        )));
    }

    let mut mounts = Vec::new();
    for m in spec.mounts().clone().unwrap_or_default() {
        let mut op = mounts::resolve(&m)?;
        if op.bind && Path::new(&op.source).starts_with(ctx.state_dir) {
            // A file the run writes itself (hosts, hostname) before it starts.
            op.file = true;
        } else if op.bind && ctx.outputs.iter().any(|o| Path::new(&op.source) == o.source) {
            // An output directory, created (if missing) when the run is set up.
            op.file = false;
        } else if op.bind {
            let meta = std::fs::metadata(&op.source).map_err(|source| Error::Source {
                option: format!("mount {}", op.destination.display()),
                path: op.source.clone().into(),
                source,
            })?;
            op.file = !meta.is_dir();
        }
        if m.typ().as_deref() == Some("cgroup") {
            let v1 = cgroup.version == crate::cgroups::Version::V1;
            let expanded = if cgroup_ns {
                let h = v1.then(|| ctx.cgroups.v1_hierarchies(&cgroup));
                mounts::cgroup_mounts(&op, mounts::CgroupView::Namespace(h.as_deref()))
            } else {
                let dirs: Vec<(String, PathBuf)> = if v1 {
                    ctx.cgroups.v1_hierarchy_dirs(&cgroup).into_iter().map(|(n, _, d)| (n, d)).collect()
                } else {
                    cgroup.dirs.values().map(|d| (String::new(), d.clone())).collect()
                };
                mounts::cgroup_mounts(&op, mounts::CgroupView::Bind { v2: !v1, dirs: &dirs })
            };
            mounts.extend(expanded);
            continue;
        }
        // Two of exprun run's own mounts on one path is a mistake on the command
        // line; in a bundle a later mount stacks on an earlier one (CRI binds the
        // pod's /dev/shm over the default tmpfs), as with runc.
        let from_image = matches!(ctx.source, Source::Image { .. });
        if from_image && mounts.iter().any(|o: &MountOp| o.destination == op.destination) {
            return Err(Error::Mount {
                destination: op.destination.display().to_string(),
                why: "two mounts have this destination".into(),
            });
        }
        mounts.push(op);
    }

    let root_path = spec.root().as_ref().map(|r| r.path().clone());
    let rootfs = match ctx.source {
        Source::Image { image, layers_root } => {
            let memory = linux.resources().as_ref().and_then(|r| r.memory().as_ref()).and_then(|m| m.limit());
            RootfsPlan::Overlay(overlay(&ctx, image, layers_root, root_path, memory.filter(|l| *l > 0))?)
        }
        Source::Bundle { .. } => {
            let path = root_path.filter(|p| p.is_absolute()).ok_or_else(|| Error::Process {
                field: "root.path",
                why: "missing or not absolute (resolve it against the bundle first)".into(),
            })?;
            if !path.is_dir() {
                return Err(Error::Mount {
                    destination: "/".into(),
                    why: format!("the root filesystem {} is not a directory", path.display()),
                });
            }
            RootfsPlan::Bundle { path }
        }
    };
    let dev_tmpfs =
        mounts.iter().any(|m| m.destination == Path::new("/dev") && m.fstype.as_deref() == Some("tmpfs"));
    let (default_devices, device_nodes) = devices::merge(
        default_devices(),
        devices::plan(linux.devices().as_deref().unwrap_or_default())?,
        dev_tmpfs,
        process.terminal,
        user_ns.is_some(),
    );
    let readonly_root = spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false);
    let paths =
        |v: &Option<Vec<String>>| v.clone().unwrap_or_default().into_iter().map(PathBuf::from).collect();
    let masked_paths = paths(linux.masked_paths());
    let readonly_paths = paths(linux.readonly_paths());

    // exprun run gives the container /etc/hosts and /etc/hostname; a bundle's
    // config brings its own mounts for them.
    let sysctls = sysctls(&linux, new_net, clone_flags & LinuxNamespaceType::Ipc as u64 != 0, new_uts)?;
    let host_name = hostname.clone().unwrap_or_default();
    let files = if matches!(ctx.source, Source::Bundle { .. }) {
        Vec::new()
    } else {
        vec![
            ("hostname".to_string(), format!("{host_name}\n")),
            (
                "hosts".to_string(),
                format!("127.0.0.1\tlocalhost {host_name}\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
            ),
        ]
    };

    Ok(RunPlan {
        schema: PLAN_SCHEMA,
        id: ctx.id.to_string(),
        name: ctx.name.map(str::to_string),
        command_line: ctx.command_line,
        state_dir: ctx.state_dir.to_path_buf(),
        image: match ctx.source {
            Source::Image { image, .. } => Some(image.clone()),
            Source::Bundle { .. } => None,
        },
        rootfs,
        mounts,
        default_devices,
        devices_from_host: user_ns.is_some(),
        device_nodes,
        masked_paths,
        readonly_paths,
        readonly_root,
        root_propagation: mounts::root_propagation(linux.rootfs_propagation().as_deref())?,
        sysctls,
        process,
        clone_flags,
        joins,
        cgroup_ns,
        new_net,
        hostname,
        cgroup,
        no_cgroup,
        interactive: ctx.interactive,
        inputs: ctx.inputs,
        outputs: ctx.outputs,
        keep: ctx.keep,
        files,
        request: ctx.request,
        user_ns,
        bundle: match ctx.source {
            Source::Bundle { dir } => Some(dir.to_path_buf()),
            Source::Image { .. } => None,
        },
        hooks: crate::hooks::Hooks::from_spec(spec.hooks().as_ref())
            .map_err(|why| Error::Process { field: "hooks", why })?,
        seccomp: match linux.seccomp() {
            Some(profile) => Some(crate::seccomp::prepare(profile, ctx.cache_dir)?),
            None => None,
        },
        spec,
    })
}

fn overlay(
    ctx: &PlanContext<'_>,
    image: &ResolvedImage,
    layers_root: &Path,
    root: Option<PathBuf>,
    memory: Option<i64>,
) -> Result<Overlay> {
    let target = root.unwrap_or_else(|| crate::spec::rootfs_dir(ctx.state_dir));
    let lower: Vec<String> = image.layers.iter().rev().map(|l| l.diff_id.hex().to_string()).collect();
    if lower.is_empty() {
        return Err(Error::Image { image: image.reference.clone(), why: "the image has no layers".into() });
    }
    let data_len: usize =
        lower.iter().map(|l| l.len() + 1).sum::<usize>() + 2 * ctx.state_dir.as_os_str().len() + 64;
    if data_len > MAX_OVERLAY_DATA {
        return Err(Error::Image {
            image: image.reference.clone(),
            why: format!(
                "{} layers do not fit in one overlayfs mount (limit about {} layers); squash the image",
                lower.len(),
                MAX_OVERLAY_DATA / 65
            ),
        });
    }
    Ok(Overlay {
        layers_root: layers_root.to_path_buf(),
        lower,
        upper: ctx.state_dir.join("upper"),
        work: ctx.state_dir.join("work"),
        target,
        scratch: if ctx.keep { Scratch::Disk } else { Scratch::Tmpfs },
        scratch_bytes: scratch_bytes(ctx, memory)?,
    })
}

/// The writable layer's size: as asked, else the memory limit (the tmpfs is
/// charged to the run's memory cgroup and cannot outgrow it anyway), else
/// [`DEFAULT_SCRATCH_BYTES`]. A kept layer is on disk, where no size applies.
fn scratch_bytes(ctx: &PlanContext<'_>, memory: Option<i64>) -> Result<Option<u64>> {
    match (ctx.keep, ctx.scratch_bytes) {
        (true, Some(_)) => Err(Error::Config(
            "--storage-opt size: a layer kept with --keep is written to disk, where exprun cannot \
             bound its size; drop one of the two"
                .into(),
        )),
        (true, None) => Ok(None),
        (false, Some(n)) => Ok(Some(n)),
        (false, None) => Ok(Some(memory.map_or(DEFAULT_SCRATCH_BYTES, |m| m as u64))),
    }
}

/// The config's sysctls, each checked to belong to a namespace the container has
/// of its own: anything else would change the host.
fn sysctls(
    linux: &oci_spec::runtime::Linux,
    net: bool,
    ipc: bool,
    uts: bool,
) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = linux.sysctl().clone().unwrap_or_default().into_iter().collect();
    out.sort();
    for (key, _) in &out {
        let ok = if key.starts_with("net.") {
            net
        } else if [
            "kernel.msgmax",
            "kernel.msgmnb",
            "kernel.msgmni",
            "kernel.sem",
            "kernel.shmall",
            "kernel.shmmax",
            "kernel.shmmni",
            "kernel.shm_rmid_forced",
        ]
        .contains(&key.as_str())
            || key.starts_with("fs.mqueue.")
        {
            ipc
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            uts
        } else {
            false
        };
        if !ok || key.contains("..") || key.contains('/') {
            return Err(Error::Process {
                field: "linux.sysctl",
                why: format!(
                    "{key} is not in a namespace of the container's own; setting it would change the host"
                ),
            });
        }
    }
    Ok(out)
}

/// personality(2) domains (linux/personality.h).
const PER_LINUX: u64 = 0x0000;
const PER_LINUX32: u64 = 0x0008;

/// The personality(2) persona for `linux.personality`: the LINUX or LINUX32
/// domain, plus ADDR_NO_RANDOMIZE when listed in its flags.
fn personality(p: &oci_spec::runtime::LinuxPersonality) -> Result<u64> {
    use oci_spec::runtime::LinuxPersonalityDomain;
    let mut persona = match p.domain() {
        LinuxPersonalityDomain::PerLinux => PER_LINUX,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    };
    for f in p.flags().iter().flatten() {
        match f.as_str() {
            "ADDR_NO_RANDOMIZE" => persona |= libc::ADDR_NO_RANDOMIZE as u64,
            other => {
                return Err(Error::Config(format!(
                    "linux.personality.flags: {other:?} is not supported (only ADDR_NO_RANDOMIZE)"
                )))
            }
        }
    }
    Ok(persona)
}

fn limits(linux: &oci_spec::runtime::Linux) -> Result<Limits> {
    let Some(r) = linux.resources() else { return Ok(Limits::default()) };
    resources_limits(r)
}

fn process_plan(spec: &Spec) -> Result<ProcessPlan> {
    let p = spec.process().clone().ok_or(Error::Process { field: "process", why: "missing".into() })?;
    process_plan_from(&p)
}

/// Resolve and check an OCI process (the config's, or `exec --process`'s).
pub fn process_plan_from(p: &oci_spec::runtime::Process) -> Result<ProcessPlan> {
    unapplied::refuse_in_process(p)?;
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        return Err(Error::Process { field: "args", why: "no command to run".into() });
    }
    if args.iter().any(|a| a.contains('\0')) {
        return Err(Error::Process { field: "args", why: "an argument contains a NUL byte".into() });
    }
    let env = p.env().clone().unwrap_or_default();
    if let Some(bad) = env.iter().find(|e| !e.contains('=') || e.starts_with('=') || e.contains('\0')) {
        return Err(Error::Process { field: "env", why: format!("{bad:?} is not NAME=VALUE") });
    }
    // execve refuses more than ARG_MAX bytes of arguments and environment (with
    // their pointers); say so now, naming the sizes, not with E2BIG at the end.
    let size: usize = args.iter().chain(&env).map(|s| s.len() + 1 + std::mem::size_of::<usize>()).sum();
    // SAFETY: sysconf with a valid name has no memory effects.
    let arg_max = unsafe { libc::sysconf(libc::_SC_ARG_MAX) }.max(0) as usize;
    if arg_max > 0 && size > arg_max {
        return Err(Error::Process {
            field: "args and env",
            why: format!(
                "{} arguments and {} variables take {size} bytes, over the kernel's limit of {arg_max} (ARG_MAX); \
                 pass large data in a file",
                args.len(),
                env.len()
            ),
        });
    }
    if !p.cwd().is_absolute() {
        return Err(Error::Process { field: "cwd", why: format!("{} is not absolute", p.cwd().display()) });
    }
    let caps = p.capabilities().clone().unwrap_or_default();
    let names = |set: &Option<oci_spec::runtime::Capabilities>| -> Vec<String> {
        let mut v: Vec<String> = set.iter().flatten().map(|c| format!("CAP_{c}")).collect();
        v.sort();
        v
    };
    let permitted = names(caps.permitted());
    let inheritable = names(caps.inheritable());
    // The kernel raises an ambient capability only when it is both permitted and
    // inheritable; runc and crun skip the others (`runc spec` writes ambient
    // without inheritable), and so does exprun. The plan keeps what applies.
    let ambient = names(caps.ambient())
        .into_iter()
        .filter(|c| permitted.contains(c) && inheritable.contains(c))
        .collect();
    let caps = CapSets {
        bounding: names(caps.bounding()),
        effective: names(caps.effective()),
        permitted,
        inheritable,
        ambient,
    };
    for c in caps.bounding.iter().chain(&caps.effective).chain(&caps.permitted).chain(&caps.ambient) {
        if c.parse::<caps::Capability>().is_err() {
            return Err(Error::Process {
                field: "capabilities",
                why: format!("{c} is not known to this kernel interface"),
            });
        }
    }
    let mut rlimits = Vec::new();
    for r in p.rlimits().clone().unwrap_or_default() {
        let name = serde_json::to_value(r.typ())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let resource = rlimit_number(&name)
            .ok_or_else(|| Error::Process { field: "rlimits", why: format!("unknown resource {name}") })?;
        if r.soft() > r.hard() {
            return Err(Error::Process {
                field: "rlimits",
                why: format!("{name}: soft limit above hard limit"),
            });
        }
        check_raisable(&name, resource, r.hard())?;
        rlimits.push(Rlimit { name, resource, soft: r.soft(), hard: r.hard() });
    }
    let user = p.user();
    // (uid_t)-1 is no id: setresuid and setresgid read it as "leave this one
    // as it is", so the command would keep init's root (and, from a bundle,
    // its whole capability set).
    let ids = [("uid", user.uid()), ("gid", user.gid())]
        .into_iter()
        .chain(user.additional_gids().iter().flatten().map(|g| ("additionalGids", *g)));
    for (field, id) in ids {
        if id == u32::MAX {
            return Err(Error::Process {
                field: "user",
                why: format!(
                    "{field} {id} is (uid_t)-1, which the kernel takes as \"unchanged\", not an id; \
                     give an id below {id}"
                ),
            });
        }
    }
    Ok(ProcessPlan {
        args,
        env,
        cwd: p.cwd().clone(),
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask().unwrap_or(0o022),
        caps,
        rlimits,
        no_new_privs: p.no_new_privileges().unwrap_or(false),
        terminal: p.terminal().unwrap_or(false),
        oom_score_adj: p.oom_score_adj(),
        personality: None,
        cpu_affinity: Vec::new(),
        apparmor_profile: apparmor_profile(p)?,
    })
}

/// Where the kernel says whether AppArmor is enabled (`Y`).
const APPARMOR_ENABLED: &str = "/sys/module/apparmor/parameters/enabled";

/// `process.apparmorProfile`, when AppArmor can apply it on this host; a profile
/// it cannot apply is refused, never dropped.
fn apparmor_profile(p: &oci_spec::runtime::Process) -> Result<Option<String>> {
    let Some(profile) = p.apparmor_profile().clone().filter(|s| !s.is_empty()) else { return Ok(None) };
    if profile.contains(['\0', '\n']) {
        return Err(Error::Process {
            field: "apparmorProfile",
            why: format!("{profile:?} contains a NUL or newline"),
        });
    }
    match std::fs::read_to_string(APPARMOR_ENABLED) {
        Ok(s) if s.trim() == "Y" => Ok(Some(profile)),
        found => Err(Error::Process {
            field: "apparmorProfile",
            why: format!(
                "{profile:?} cannot be applied: AppArmor is not enabled on this host ({APPARMOR_ENABLED} {}); \
                 remove the field, or run on a host with AppArmor",
                match found {
                    Ok(s) => format!("says {:?}", s.trim()),
                    Err(e) => format!("cannot be read: {e}"),
                }
            ),
        }),
    }
}

/// Raising a hard limit above exprun's own needs CAP_SYS_RESOURCE; say so before
/// anything starts rather than fail inside the container's setup.
fn check_raisable(name: &str, resource: u32, hard: u64) -> Result<()> {
    let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit through the pointer, which is live.
    if unsafe { libc::getrlimit(resource as _, &mut cur) } != 0 || hard <= cur.rlim_max {
        return Ok(());
    }
    if caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SYS_RESOURCE).unwrap_or(false) {
        return Ok(());
    }
    Err(Error::Process {
        field: "rlimits",
        why: format!(
            "{name} hard limit {hard} is above exprun's own ({}), and raising it needs CAP_SYS_RESOURCE, which exprun does not have",
            cur.rlim_max
        ),
    })
}

fn rlimit_number(name: &str) -> Option<u32> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ambient_capabilities_apply_only_when_permitted_and_inheritable() {
        let process = |caps: serde_json::Value| -> oci_spec::runtime::Process {
            serde_json::from_value(serde_json::json!({"user": {"uid": 0, "gid": 0}, "args": ["true"], "cwd": "/", "capabilities": caps}))
                .unwrap()
        };
        let three = serde_json::json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        // What `runc spec` writes: ambient without inheritable.
        let runc_spec = process(serde_json::json!({
            "bounding": three, "effective": three, "permitted": three, "ambient": three
        }));
        assert!(process_plan_from(&runc_spec).unwrap().caps.ambient.is_empty());
        let inheritable = process(serde_json::json!({
            "bounding": three, "effective": three, "permitted": three,
            "inheritable": ["CAP_KILL"], "ambient": three
        }));
        assert_eq!(process_plan_from(&inheritable).unwrap().caps.ambient, ["CAP_KILL"]);
    }
}
