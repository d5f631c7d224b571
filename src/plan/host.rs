//! What the planner knows of the host, as a value: the cgroup layout and the
//! caller's place in it, exprun's own ids and limits, the files the config
//! names, whether systemd can be asked for a scope.
//!
//! [`Host::gather`] (with [`ProcessHost::gather`] and [`hugepage_sizes`]) is
//! the only code of plan/ that reads the machine; everything else in plan/
//! decides from a [`Host`], so plans are unit-tested on fixture hosts.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::cgroups::systemd::Manager;
use crate::cgroups::CgroupHost;

/// Where the kernel says whether AppArmor is enabled (`Y`).
pub const APPARMOR_ENABLED: &str = "/sys/module/apparmor/parameters/enabled";

/// Where the kernel lists the huge page sizes it supports (`hugepages-2048kB`).
pub const HUGEPAGES_DIR: &str = "/sys/kernel/mm/hugepages";

/// What the planner knows of the host.
#[derive(Debug, Clone)]
pub struct Host {
    /// The cgroup layout and the caller's cgroups.
    pub cgroups: CgroupHost,
    /// exprun's own process.
    pub process: ProcessHost,
    /// stat(2) of the paths the config names (bind sources, namespace files,
    /// root.path): the file, or the errno of the failure.
    pub paths: BTreeMap<PathBuf, Result<FileId, i32>>,
    /// Each file the config's `linux.namespaces` name, as opened once, or the
    /// errno of opening it.
    pub namespace_files: BTreeMap<PathBuf, Result<NamespaceFile, i32>>,
    /// The namespaces of exprun and of pid 1, by `/proc/<pid>/ns` name
    /// (`mnt`, `uts`): (device, inode) of each.
    pub own_namespaces: BTreeMap<&'static str, Vec<(u64, u64)>>,
    /// This host's huge page sizes, named as in hugetlb files (`2MB`).
    pub hugepage_sizes: Vec<String>,
    /// cgroup2 directories a rootless run's cgroup may go in or under.
    pub cgroup_dirs: BTreeMap<PathBuf, CgroupDir>,
    /// Why the systemd system manager cannot be asked for a scope, if it cannot.
    pub system_manager: Option<String>,
    /// Why the caller's systemd user manager cannot be asked for a scope.
    pub user_manager: Option<String>,
    /// Whether the caller's systemd user manager runs (its private socket).
    pub user_manager_runs: bool,
}

/// A namespace file (what /proc/<pid>/ns/<name> links to), as one open of it
/// shows: its name and identity come from the same file, whatever its path
/// names a moment later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceFile {
    /// The kernel's name of the file opened: `mnt:[4026531841]` for a mount
    /// namespace, a path for anything else.
    pub name: String,
    /// (st_dev, st_ino).
    pub id: (u64, u64),
}

/// A file found by stat(2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    /// A directory.
    pub dir: bool,
    /// st_dev.
    pub dev: u64,
    /// st_ino.
    pub ino: u64,
}

/// A cgroup2 directory, as a rootless caller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupDir {
    /// The directory, its `cgroup.procs` and `cgroup.subtree_control` all belong
    /// to the caller: it may make cgroups, move processes and enable controllers.
    pub delegated: bool,
    /// Its `cgroup.controllers`, or why it cannot be read.
    pub controllers: Result<String, String>,
}

/// What exprun's own process is and may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessHost {
    /// Effective uid.
    pub euid: u32,
    /// Effective gid.
    pub egid: u32,
    /// Hard limit of each `RLIMIT_*` resource.
    pub hard_rlimits: BTreeMap<u32, u64>,
    /// CAP_SYS_RESOURCE is effective.
    pub cap_sys_resource: bool,
    /// sysconf(_SC_ARG_MAX); 0 when unknown.
    pub arg_max: usize,
    /// The content of [`APPARMOR_ENABLED`], or why it cannot be read.
    pub apparmor: Result<String, String>,
}

impl ProcessHost {
    /// Read exprun's own ids, limits and capabilities.
    pub fn gather() -> Self {
        use nix::sys::resource::{getrlimit, Resource};
        let hard_rlimits = [
            Resource::RLIMIT_CPU,
            Resource::RLIMIT_FSIZE,
            Resource::RLIMIT_DATA,
            Resource::RLIMIT_STACK,
            Resource::RLIMIT_CORE,
            Resource::RLIMIT_RSS,
            Resource::RLIMIT_NPROC,
            Resource::RLIMIT_NOFILE,
            Resource::RLIMIT_MEMLOCK,
            Resource::RLIMIT_AS,
            Resource::RLIMIT_LOCKS,
            Resource::RLIMIT_SIGPENDING,
            Resource::RLIMIT_MSGQUEUE,
            Resource::RLIMIT_NICE,
            Resource::RLIMIT_RTPRIO,
            Resource::RLIMIT_RTTIME,
        ]
        .into_iter()
        .filter_map(|r| Some((r as u32, getrlimit(r).ok()?.1)))
        .collect();
        Self {
            euid: nix::unistd::geteuid().as_raw(),
            egid: nix::unistd::getegid().as_raw(),
            hard_rlimits,
            cap_sys_resource: caps::has_cap(
                None,
                caps::CapSet::Effective,
                caps::Capability::CAP_SYS_RESOURCE,
            )
            .unwrap_or(false),
            arg_max: nix::unistd::sysconf(nix::unistd::SysconfVar::ARG_MAX)
                .ok()
                .flatten()
                .map_or(0, |n| n.max(0) as usize),
            apparmor: std::fs::read_to_string(APPARMOR_ENABLED).map_err(|e| e.to_string()),
        }
    }
}

impl Host {
    /// Read what planning `spec` needs of this host, with `cgroups` its cgroup
    /// layout and `cgroup_parent` the `--cgroup-parent` asked for. Without a
    /// spec, only what does not depend on one (the cgroup parts).
    pub fn gather(cgroups: &CgroupHost, spec: Option<&Spec>, cgroup_parent: Option<&str>) -> Self {
        let process = ProcessHost::gather();
        let mut paths = BTreeMap::new();
        let mut namespace_files = BTreeMap::new();
        let mut cgroups_path = None;
        if let Some(spec) = spec {
            // Only absolute sources are host paths: a bind source must be one
            // (the planner refuses others), and `proc`, `tmpfs` and the like
            // are no paths at all, which stat would look up in the caller's
            // working directory.
            let mut names: Vec<PathBuf> = spec
                .mounts()
                .iter()
                .flatten()
                .filter_map(|m| m.source().clone())
                .filter(|p| p.is_absolute())
                .collect();
            names.extend(spec.root().as_ref().map(|r| r.path().clone()));
            if let Some(linux) = spec.linux() {
                for p in linux.namespaces().iter().flatten().filter_map(|n| n.path().clone()) {
                    let file = namespace_file(&p).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO));
                    namespace_files.insert(p.clone(), file);
                    names.push(p);
                }
                cgroups_path = linux.cgroups_path().clone();
            }
            for p in names {
                paths
                    .entry(p.clone())
                    .or_insert_with(|| stat(&p).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO)));
            }
        }
        let mut own_namespaces = BTreeMap::new();
        for t in [LinuxNamespaceType::Mount, LinuxNamespaceType::Uts] {
            let name = super::namespaces::proc_name(t);
            let ids = ["/proc/self/ns", "/proc/1/ns"]
                .iter()
                .filter_map(|d| stat(&Path::new(d).join(name)).ok())
                .map(|s| (s.dev, s.ino))
                .collect();
            own_namespaces.insert(name, ids);
        }
        let uid = process.euid;
        let user = Manager::User { uid };
        let mut cgroup_dirs = BTreeMap::new();
        if uid != 0 {
            let parents = [
                cgroup_parent.map(PathBuf::from),
                cgroups_path.and_then(|p| p.parent().map(Path::to_path_buf)),
            ];
            for dir in super::cgroup::delegated::candidates(cgroups, uid, parents.iter().flatten()) {
                let owned = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.uid() == uid);
                let delegated = [dir.clone(), dir.join("cgroup.procs"), dir.join("cgroup.subtree_control")]
                    .iter()
                    .all(|p| owned(p));
                let controllers =
                    std::fs::read_to_string(dir.join("cgroup.controllers")).map_err(|e| e.to_string());
                cgroup_dirs.insert(dir, CgroupDir { delegated, controllers });
            }
        }
        Self {
            cgroups: cgroups.clone(),
            process,
            paths,
            namespace_files,
            own_namespaces,
            hugepage_sizes: hugepage_sizes(),
            cgroup_dirs,
            system_manager: Manager::System.unavailable(),
            user_manager: user.unavailable(),
            user_manager_runs: user_manager_socket(uid).exists(),
        }
    }

    /// The namespace file `path`, as gathered; a path not gathered reads as
    /// missing.
    pub fn namespace_file(&self, path: &Path) -> io::Result<NamespaceFile> {
        match self.namespace_files.get(path) {
            Some(Ok(file)) => Ok(file.clone()),
            Some(Err(errno)) => Err(io::Error::from_raw_os_error(*errno)),
            None => Err(io::Error::from_raw_os_error(libc::ENOENT)),
        }
    }

    /// stat(2) of `path` as gathered; a path not gathered reads as missing.
    pub fn stat(&self, path: &Path) -> io::Result<FileId> {
        match self.paths.get(path) {
            Some(Ok(id)) => Ok(*id),
            Some(Err(errno)) => Err(io::Error::from_raw_os_error(*errno)),
            None => Err(io::Error::from_raw_os_error(libc::ENOENT)),
        }
    }

    /// Whether the cgroup2 directory `dir` is delegated to the caller.
    pub fn delegated(&self, dir: &Path) -> bool {
        self.cgroup_dirs.get(dir).is_some_and(|d| d.delegated)
    }
}

fn stat(p: &Path) -> io::Result<FileId> {
    let m = std::fs::metadata(p)?;
    Ok(FileId { dir: m.is_dir(), dev: m.dev(), ino: m.ino() })
}

/// Open `path` once with O_PATH (which reads nothing and does not block on a
/// FIFO) and read both its kernel name and its identity from that descriptor.
fn namespace_file(path: &Path) -> io::Result<NamespaceFile> {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH).open(path)?;
    let name = crate::fsutil::fd_name(f.as_fd())?.to_string_lossy().into_owned();
    let m = f.metadata()?;
    Ok(NamespaceFile { name, id: (m.dev(), m.ino()) })
}

/// Where a user's systemd manager listens (`systemd --user` makes this socket
/// in the user's runtime directory); without it no scope can be asked for.
pub fn user_manager_socket(uid: u32) -> PathBuf {
    PathBuf::from(format!("/run/user/{uid}/systemd/private"))
}

/// This host's huge page sizes, named as in hugetlb cgroup files (`2MB`, `1GB`).
pub fn hugepage_sizes() -> Vec<String> {
    let mut sizes: Vec<u64> = std::fs::read_dir(HUGEPAGES_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse().ok())
        .collect();
    sizes.sort_unstable();
    sizes
        .into_iter()
        .map(|kb| match kb {
            kb if kb % (1 << 20) == 0 => format!("{}GB", kb >> 20),
            kb if kb % (1 << 10) == 0 => format!("{}MB", kb >> 10),
            kb => format!("{kb}KB"),
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exprun_s_own_ids_and_limits_are_read_as_the_kernel_gives_them() {
        let p = ProcessHost::gather();
        assert_eq!(p.euid, nix::unistd::geteuid().as_raw());
        assert_eq!(p.egid, nix::unistd::getegid().as_raw());
        assert_eq!(p.hard_rlimits.len(), 16, "{:?}", p.hard_rlimits);
        let (_, nofile) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(p.hard_rlimits[&libc::RLIMIT_NOFILE], nofile);
        assert!(p.arg_max >= 128 << 10, "ARG_MAX {}", p.arg_max);
    }

    #[test]
    fn only_absolute_mount_sources_are_looked_up_never_the_working_directory() {
        // Tests run in the package's directory, which has a `src`.
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "/"},
            "mounts": [
                {"destination": "/a", "type": "tmpfs", "source": "src"},
                {"destination": "/b", "type": "bind", "source": "/tmp", "options": ["bind"]}
            ]
        }))
        .unwrap();
        let host = Host::gather(&CgroupHost::parse("", ""), Some(&spec), None);
        assert!(Path::new("src").is_dir());
        assert_eq!(host.stat(Path::new("src")).map_err(|e| e.raw_os_error()), Err(Some(libc::ENOENT)));
        assert!(host.stat(Path::new("/tmp")).is_ok_and(|s| s.dir));
    }
}
