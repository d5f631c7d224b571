//! OCI mount entries → resolved mount operations (flags and data), checked.

use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;
use serde::{Deserialize, Serialize};

use super::Error;

/// One mount the container's init performs, fully resolved: the child does not
/// parse option strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountOp {
    /// Absolute path inside the container.
    pub destination: PathBuf,
    /// Filesystem type (`proc`, `tmpfs`, ...); `None` for a bind mount.
    pub fstype: Option<String>,
    /// Host path for a bind mount; the filesystem source name otherwise.
    pub source: String,
    /// Bind the source (MS_BIND), recursively when `recursive`.
    pub bind: bool,
    /// MS_REC with MS_BIND.
    pub recursive: bool,
    /// Flags for the mount call (for a bind: applied afterwards by a remount).
    pub flags: u64,
    /// Filesystem data (`mode=755,size=65536k`).
    pub data: String,
    /// Propagation flags to apply after mounting (MS_PRIVATE, MS_SLAVE, ...), if any.
    pub propagation: u64,
    /// The mount point is a file (a bind of a file), not a directory.
    pub file: bool,
    /// Change the flags of the mount already at `destination` (MS_REMOUNT).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remount: bool,
    /// A bind source exprun checked (an output): its device and inode. Init
    /// binds the source only while it is still that directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<(u64, u64)>,
}

impl MountOp {
    /// The flags as nix's type.
    pub fn ms_flags(&self) -> MsFlags {
        MsFlags::from_bits_truncate(self.flags)
    }
}

/// Resolve one OCI mount.
pub fn resolve(m: &oci_spec::runtime::Mount) -> Result<MountOp, Error> {
    let destination = m.destination().clone();
    let dest_str = destination.display().to_string();
    let bad = |why: String| Error::Mount { destination: dest_str.clone(), why };
    if !destination.is_absolute() || destination.components().any(|c| c == Component::ParentDir) {
        return Err(bad("the destination must be an absolute path without '..'".into()));
    }
    let typ = m.typ().clone().unwrap_or_default();
    let options = m.options().clone().unwrap_or_default();
    let mut bind = typ == "bind";
    let mut recursive = false;
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data: Vec<String> = Vec::new();
    for o in &options {
        let (set, clear) = match o.as_str() {
            "bind" => {
                bind = true;
                continue;
            }
            "rbind" => {
                bind = true;
                recursive = true;
                continue;
            }
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                propagation = propagation_flags(o);
                continue;
            }
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        flags |= set;
        flags &= !clear;
    }
    let source = m.source().as_ref().map(|s| s.display().to_string()).unwrap_or_default();
    if bind {
        if let Some(d) = data.first() {
            return Err(bad(format!("unknown option {d:?} for a bind mount")));
        }
        if !Path::new(&source).is_absolute() {
            return Err(bad(format!("the bind source {source:?} must be an absolute host path")));
        }
    } else if typ.is_empty() {
        return Err(bad("the mount has no type".into()));
    }
    Ok(MountOp {
        destination,
        fstype: (!bind).then_some(typ),
        source,
        bind,
        recursive,
        flags: flags.bits(),
        data: data.join(","),
        propagation: propagation.bits(),
        file: false,
        remount: false,
        source_id: None,
    })
}

/// How the container sees its cgroup at `/sys/fs/cgroup`.
pub enum CgroupView<'a> {
    /// Through its own cgroup namespace: the hierarchies are mounted, and the
    /// namespace roots each at the run's cgroup. `None` on v2, else (directory
    /// name, mount options) per v1 hierarchy.
    Namespace(Option<&'a [(String, String)]>),
    /// Without a cgroup namespace (as containerd asks on cgroup v1): the run's
    /// cgroup directories are bound, as runc does. v2: `[("", dir)]`.
    Bind { v2: bool, dirs: &'a [(String, PathBuf)] },
}

/// The operations behind one OCI `cgroup` mount: the container's own view of its
/// cgroup (see [`CgroupView`]). On v1 a tmpfs holds one mount per hierarchy the
/// run's cgroup lives in and is then made read-only.
pub fn cgroup_mounts(m: &MountOp, view: CgroupView<'_>) -> Vec<MountOp> {
    let op = |dest: PathBuf, fstype: &str, flags: MsFlags, data: &str| MountOp {
        destination: dest,
        fstype: Some(fstype.to_string()),
        source: fstype.to_string(),
        bind: false,
        recursive: false,
        flags: flags.bits(),
        data: data.to_string(),
        propagation: 0,
        file: false,
        remount: false,
        source_id: None,
    };
    let bind = |dest: PathBuf, source: &Path| MountOp {
        destination: dest,
        fstype: None,
        source: source.display().to_string(),
        bind: true,
        recursive: false,
        flags: (m.ms_flags() | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC).bits(),
        data: String::new(),
        propagation: 0,
        file: false,
        remount: false,
        source_id: None,
    };
    let plain = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let tmpfs_data = "mode=755,size=64k";
    let mut ops = vec![op(m.destination.clone(), "tmpfs", plain, tmpfs_data)];
    match view {
        CgroupView::Namespace(None) => return vec![op(m.destination.clone(), "cgroup2", m.ms_flags(), "")],
        CgroupView::Bind { v2: true, dirs } => {
            return dirs.iter().take(1).map(|(_, d)| bind(m.destination.clone(), d)).collect();
        }
        CgroupView::Namespace(Some(hierarchies)) => {
            for (name, controllers) in hierarchies {
                ops.push(op(m.destination.join(name), "cgroup", m.ms_flags(), controllers));
            }
        }
        CgroupView::Bind { v2: false, dirs } => {
            for (name, dir) in dirs {
                ops.push(bind(m.destination.join(name), dir));
            }
        }
    }
    let mut ro = op(m.destination.clone(), "tmpfs", plain | MsFlags::MS_RDONLY, tmpfs_data);
    ro.remount = true;
    ops.push(ro);
    ops
}

fn propagation_flags(o: &str) -> MsFlags {
    let rec = if o.starts_with('r') { MsFlags::MS_REC } else { MsFlags::empty() };
    let kind = match o.trim_start_matches('r') {
        "private" => MsFlags::MS_PRIVATE,
        "shared" => MsFlags::MS_SHARED,
        "slave" => MsFlags::MS_SLAVE,
        _ => MsFlags::MS_UNBINDABLE,
    };
    kind | rec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(dst: &str, typ: &str, src: &str, opts: &[&str]) -> oci_spec::runtime::Mount {
        serde_json::from_value(
            serde_json::json!({"destination": dst, "type": typ, "source": src, "options": opts}),
        )
        .unwrap()
    }

    #[test]
    fn fs_mount_splits_flags_and_data() {
        let op =
            resolve(&mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]))
                .unwrap();
        assert!(!op.bind);
        assert_eq!(op.fstype.as_deref(), Some("tmpfs"));
        assert_eq!(op.ms_flags(), MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(op.data, "mode=755,size=65536k");
    }

    #[test]
    fn bind_mount_with_ro_and_propagation() {
        let op = resolve(&mount("/in", "bind", "/data", &["rbind", "ro", "nosuid", "rslave"])).unwrap();
        assert!(op.bind && op.recursive);
        assert_eq!(op.ms_flags(), MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(MsFlags::from_bits_truncate(op.propagation), MsFlags::MS_SLAVE | MsFlags::MS_REC);
        let rw = resolve(&mount("/in", "none", "/data", &["bind", "ro", "rw"])).unwrap();
        assert!(rw.bind && !rw.recursive && rw.ms_flags().is_empty());
    }

    #[test]
    fn cgroup_mount_expands_per_hierarchy_on_v1_and_once_on_v2() {
        let base =
            resolve(&mount("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "ro"]))
                .unwrap();
        let v2 = cgroup_mounts(&base, CgroupView::Namespace(None));
        assert_eq!(v2.len(), 1);
        assert_eq!(v2[0].fstype.as_deref(), Some("cgroup2"));
        assert!(v2[0].ms_flags().contains(MsFlags::MS_RDONLY));
        let h =
            vec![("memory".to_string(), "memory".to_string()), ("cpu,cpuacct".into(), "cpu,cpuacct".into())];
        let v1 = cgroup_mounts(&base, CgroupView::Namespace(Some(&h)));
        let dests: Vec<String> = v1.iter().map(|o| o.destination.display().to_string()).collect();
        assert_eq!(
            dests,
            ["/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup"]
        );
        assert_eq!(v1[2].data, "cpu,cpuacct");
        assert!(v1[3].remount && v1[3].ms_flags().contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn bad_mounts_name_the_destination() {
        let e = resolve(&mount("/x", "bind", "/data", &["rbind", "weird"])).unwrap_err().to_string();
        assert!(e.contains("/x") && e.contains("weird"), "{e}");
        assert!(resolve(&mount("rel", "tmpfs", "tmpfs", &[])).is_err());
        assert!(resolve(&mount("/a/../b", "tmpfs", "tmpfs", &[])).is_err());
        assert!(resolve(&mount("/x", "bind", "relative", &["bind"])).is_err());
    }
}
