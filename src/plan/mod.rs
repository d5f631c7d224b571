//! The run plan: one resolved, validated, serializable value that spawning reads and
//! the record stores, so what was recorded is exactly what ran.
//!
//! [`build`] turns an OCI runtime spec plus the run's context and what is known
//! of the host ([`Host`], gathered beforehand) into a [`RunPlan`]. It has no
//! side effects and reads nothing of the machine; every bad combination is
//! refused here with a message that names the field.
//!
//! By concept: [`namespaces`] (and sysctls), [`process`], [`cgroup`] placement,
//! [`resources`] (the cgroup limits), [`rootfs`] and [`mounts`], [`devices`];
//! [`host`] is what is known of the host, and its only reader.

pub mod cgroup;
pub mod devices;
pub mod host;
pub mod mounts;
mod namespaces;
mod process;
mod resources;
mod rootfs;
mod unapplied;

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

use crate::cgroups::CgroupPlan;
use crate::image::ResolvedImage;
use crate::spec::options::HostMount;
pub use cgroup::NoCgroup;
pub use devices::DeviceNode;
pub use host::Host;
pub use mounts::MountOp;
pub use namespaces::{IdRange, Join, UserNs};
pub use process::{process_plan_from, CapSets, ProcessPlan, Rlimit};
pub use resources::resources_limits;
pub use rootfs::{Overlay, RootfsPlan, Scratch, DEFAULT_SCRATCH_BYTES};

/// Version of the plan's JSON form (plan.json in a container's state directory).
pub const PLAN_SCHEMA: u32 = 1;

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
    /// The seccomp profile is bad.
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::Error),
}

type Result<T, E = Error> = std::result::Result<T, E>;

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
    /// The seccomp filter, when the config has a profile: checked here, its
    /// program compiled when the run is applied ([`crate::seccomp::compile_planned`]).
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
    /// What is known of the host ([`Host::gather`]).
    pub host: &'a Host,
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
    /// CPUs to bind the command to (`--cpuset-cpus`).
    pub cpu_affinity: Vec<usize>,
    /// How `exprun run` was asked for the run (none for a bundle).
    pub request: Option<Request>,
}

impl<'a> PlanContext<'a> {
    /// The context of an OCI bundle's container (`create`, `run -b`): no
    /// image, inputs, outputs or request of `exprun run`'s.
    pub fn bundle(id: &'a str, dir: &'a Path, state_dir: &'a Path, host: &'a Host) -> Self {
        PlanContext {
            id,
            name: None,
            command_line: Vec::new(),
            state_dir,
            source: Source::Bundle { dir },
            host,
            cgroup_parent: None,
            systemd_cgroup: false,
            interactive: false,
            inputs: Vec::new(),
            outputs: Vec::new(),
            keep: false,
            scratch_bytes: None,
            cpu_affinity: Vec::new(),
            request: None,
        }
    }
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

/// The spec's `linux` section, or an empty one where it has none: borrowed,
/// not cloned (it holds the seccomp profile, hundreds of names).
fn linux_of(spec: &Spec) -> std::borrow::Cow<'_, oci_spec::runtime::Linux> {
    match spec.linux() {
        Some(l) => std::borrow::Cow::Borrowed(l),
        None => std::borrow::Cow::Owned(oci_spec::runtime::Linux::default()),
    }
}

/// Resolve and check `spec` into a plan.
pub fn build(spec: Spec, ctx: PlanContext<'_>) -> Result<RunPlan> {
    let host = ctx.host;
    unapplied::refuse_in_config(&spec)?;
    let mut process = process::process_plan(&spec, &host.process)?;
    let linux = &*linux_of(&spec);
    process.personality = linux.personality().as_ref().map(process::personality).transpose()?;
    process.cpu_affinity = ctx.cpu_affinity.clone();

    let hostname = spec.hostname().clone();
    let namespaces = namespaces::resolve(linux, hostname.is_some(), host)?;
    let new_net = namespaces.made(LinuxNamespaceType::Network);
    let new_uts = namespaces.made(LinuxNamespaceType::Uts);
    let own_pid = namespaces.own_pid();
    let namespaces::Namespaces { clone_flags, joins, cgroup_ns, user_ns } = namespaces;

    let mut limits = resources::limits(linux, &host.hugepage_sizes)?;
    if !limits.devices.is_empty() {
        limits.devices.extend(crate::cgroups::devices::always_allowed());
    }
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
    let rootless = user_ns.is_some() && host.process.euid != 0;
    let (cgroup, no_cgroup) = cgroup::plan(&ctx, host, linux, limits, rootless)?;
    if let (Some(none), false) = (&no_cgroup, own_pid) {
        return Err(Error::Unsupported(format!(
            "linux.namespaces: without a pid namespace of its own the container's processes can only be \
             found (to kill and delete them) through its cgroup, and this container has none ({}); add \
             {{\"type\": \"pid\"}}",
            none.why
        )));
    }

    let mounts = rootfs::mounts(&spec, &ctx, host, &cgroup, cgroup_ns)?;
    let rootfs = rootfs::rootfs(&spec, &ctx, host)?;
    let dev_tmpfs =
        mounts.iter().any(|m| m.destination == Path::new("/dev") && m.fstype.as_deref() == Some("tmpfs"));
    let (default_devices, device_nodes) = devices::merge(
        devices::default_devices(),
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
    let mut sysctls =
        namespaces::sysctls(linux, new_net, clone_flags & LinuxNamespaceType::Ipc as u64 != 0, new_uts)?;
    if let Some(d) = namespaces::domainname(&spec, new_uts)? {
        // As with runc, a `kernel.domainname` sysctl, applied after it, wins.
        if !sysctls.iter().any(|(k, _)| k == "kernel.domainname") {
            sysctls.push(("kernel.domainname".to_string(), d));
        }
    }
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
            .map_err(|e| Error::Process { field: "hooks", why: e.to_string() })?,
        seccomp: match linux.seccomp() {
            Some(profile) => Some(crate::seccomp::check(profile)?),
            None => None,
        },
        spec,
    })
}

#[cfg(test)]
mod tests;
