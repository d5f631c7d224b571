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
    /// Recursive attributes (`rro`, `rnosuid`, ...): `MOUNT_ATTR_*` bits set on
    /// the mount and every mount below it with mount_setattr(AT_RECURSIVE).
    #[serde(default, skip_serializing_if = "RecursiveAttrs::is_empty")]
    pub recursive_attrs: RecursiveAttrs,
}

/// The `MOUNT_ATTR_*` bits one mount_setattr(AT_RECURSIVE) call sets and
/// clears. To change the atime mode, `clear` holds all of [`ATTR_ATIME`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecursiveAttrs {
    /// Bits set.
    pub set: u64,
    /// Bits cleared.
    pub clear: u64,
}

impl RecursiveAttrs {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.set == 0 && self.clear == 0
    }
}

/// `MOUNT_ATTR_*` from `<linux/mount.h>`.
pub const ATTR_RDONLY: u64 = 0x1;
/// `MOUNT_ATTR_NOSUID`.
pub const ATTR_NOSUID: u64 = 0x2;
/// `MOUNT_ATTR_NODEV`.
pub const ATTR_NODEV: u64 = 0x4;
/// `MOUNT_ATTR_NOEXEC`.
pub const ATTR_NOEXEC: u64 = 0x8;
/// `MOUNT_ATTR__ATIME`: the atime mode's field.
pub const ATTR_ATIME: u64 = 0x70;
/// `MOUNT_ATTR_RELATIME` (a value of the atime field).
pub const ATTR_RELATIME: u64 = 0x0;
/// `MOUNT_ATTR_NOATIME` (a value of the atime field).
pub const ATTR_NOATIME: u64 = 0x10;
/// `MOUNT_ATTR_STRICTATIME` (a value of the atime field).
pub const ATTR_STRICTATIME: u64 = 0x20;
/// `MOUNT_ATTR_NODIRATIME`.
pub const ATTR_NODIRATIME: u64 = 0x80;
/// `MOUNT_ATTR_NOSYMFOLLOW`.
pub const ATTR_NOSYMFOLLOW: u64 = 0x20_0000;

/// `MS_NOSYMFOLLOW` (Linux 5.10), which nix does not name.
pub const MS_NOSYMFOLLOW: u64 = 0x100;

impl MountOp {
    /// The flags as nix's type (bits nix does not name, such as
    /// [`MS_NOSYMFOLLOW`], kept).
    pub fn ms_flags(&self) -> MsFlags {
        MsFlags::from_bits_retain(self.flags)
    }
}

/// What one option string of a Linux mount does.
enum Opt {
    /// A mount(2) flag set or cleared.
    Flag { set: MsFlags, clear: MsFlags },
    /// A recursive attribute set or cleared (the atime forms set a mode).
    Recursive(RecursiveAttrs),
    /// `bind` or `rbind`.
    Bind { recursive: bool },
    /// A propagation type.
    Propagation(MsFlags),
    /// `remount`: change the mount already at the destination.
    Remount,
    /// Anything else: filesystem data.
    Data,
}

/// Every mount option exprun knows (anything else is filesystem data), sorted:
/// what `features` reports as `mountOptions`.
pub const KNOWN_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "iversion",
    "lazytime",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "noiversion",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "unbindable",
];

fn option(o: &str) -> Opt {
    let flag = |set: MsFlags| Opt::Flag { set, clear: MsFlags::empty() };
    let unflag = |clear: MsFlags| Opt::Flag { set: MsFlags::empty(), clear };
    let rec = |set: u64, clear: u64| Opt::Recursive(RecursiveAttrs { set, clear });
    let atime = |mode: u64| Opt::Recursive(RecursiveAttrs { set: mode, clear: ATTR_ATIME });
    match o {
        "bind" => Opt::Bind { recursive: false },
        "rbind" => Opt::Bind { recursive: true },
        "defaults" => Opt::Flag { set: MsFlags::empty(), clear: MsFlags::empty() },
        "remount" => Opt::Remount,
        "ro" => flag(MsFlags::MS_RDONLY),
        "rw" => unflag(MsFlags::MS_RDONLY),
        "nosuid" => flag(MsFlags::MS_NOSUID),
        "suid" => unflag(MsFlags::MS_NOSUID),
        "nodev" => flag(MsFlags::MS_NODEV),
        "dev" => unflag(MsFlags::MS_NODEV),
        "noexec" => flag(MsFlags::MS_NOEXEC),
        "exec" => unflag(MsFlags::MS_NOEXEC),
        "sync" => flag(MsFlags::MS_SYNCHRONOUS),
        "async" => unflag(MsFlags::MS_SYNCHRONOUS),
        "dirsync" => flag(MsFlags::MS_DIRSYNC),
        "noatime" => flag(MsFlags::MS_NOATIME),
        "atime" => unflag(MsFlags::MS_NOATIME),
        "nodiratime" => flag(MsFlags::MS_NODIRATIME),
        "diratime" => unflag(MsFlags::MS_NODIRATIME),
        "relatime" => flag(MsFlags::MS_RELATIME),
        "norelatime" => unflag(MsFlags::MS_RELATIME),
        "strictatime" => flag(MsFlags::MS_STRICTATIME),
        "nostrictatime" => unflag(MsFlags::MS_STRICTATIME),
        "iversion" => flag(MsFlags::MS_I_VERSION),
        "noiversion" => unflag(MsFlags::MS_I_VERSION),
        "lazytime" => flag(MsFlags::MS_LAZYTIME),
        "nolazytime" => unflag(MsFlags::MS_LAZYTIME),
        "silent" => flag(MsFlags::MS_SILENT),
        "loud" => unflag(MsFlags::MS_SILENT),
        "mand" => flag(MsFlags::MS_MANDLOCK),
        "nomand" => unflag(MsFlags::MS_MANDLOCK),
        "nosymfollow" => flag(MsFlags::from_bits_retain(MS_NOSYMFOLLOW)),
        "symfollow" => unflag(MsFlags::from_bits_retain(MS_NOSYMFOLLOW)),
        "rro" => rec(ATTR_RDONLY, 0),
        "rrw" => rec(0, ATTR_RDONLY),
        "rnosuid" => rec(ATTR_NOSUID, 0),
        "rsuid" => rec(0, ATTR_NOSUID),
        "rnodev" => rec(ATTR_NODEV, 0),
        "rdev" => rec(0, ATTR_NODEV),
        "rnoexec" => rec(ATTR_NOEXEC, 0),
        "rexec" => rec(0, ATTR_NOEXEC),
        "rnodiratime" => rec(ATTR_NODIRATIME, 0),
        "rdiratime" => rec(0, ATTR_NODIRATIME),
        "rnosymfollow" => rec(ATTR_NOSYMFOLLOW, 0),
        "rsymfollow" => rec(0, ATTR_NOSYMFOLLOW),
        // The atime modes are one field: the last one given wins. As with
        // mount(2) without MS_NOATIME or MS_STRICTATIME, `atime`, leaving
        // noatime or strictatime, and `norelatime` (the kernel then keeps its
        // default) are relatime, as a mount with runc's `rnorelatime` is.
        "rrelatime" | "ratime" | "rnostrictatime" | "rnorelatime" => atime(ATTR_RELATIME),
        "rnoatime" => atime(ATTR_NOATIME),
        "rstrictatime" => atime(ATTR_STRICTATIME),
        "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable" | "runbindable" => {
            Opt::Propagation(propagation_flags(o))
        }
        _ => Opt::Data,
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
    if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
        return Err(bad(
            "uidMappings/gidMappings (an id-mapped mount) are not supported; bind the source with \
             ids the container's user namespace maps instead"
                .into(),
        ));
    }
    let typ = m.typ().clone().unwrap_or_default();
    let options = m.options().clone().unwrap_or_default();
    let mut bind = typ == "bind";
    let mut recursive = false;
    let mut remount = false;
    let mut flags = 0u64;
    let mut propagation = MsFlags::empty();
    let mut attrs = RecursiveAttrs::default();
    let mut data: Vec<String> = Vec::new();
    for o in &options {
        match option(o) {
            Opt::Bind { recursive: r } => {
                bind = true;
                recursive |= r;
            }
            Opt::Flag { set, clear } => {
                // As bits: nix's complement would drop the bits it does not name.
                flags = (flags & !clear.bits()) | set.bits();
            }
            Opt::Recursive(r) => {
                attrs.set = (attrs.set & !r.clear) | r.set;
                attrs.clear = (attrs.clear & !r.set) | r.clear;
                if r.clear & ATTR_ATIME != 0 {
                    // A mode is chosen: the whole field is replaced.
                    attrs.clear |= ATTR_ATIME;
                }
            }
            Opt::Propagation(p) => propagation = p,
            Opt::Remount => remount = true,
            Opt::Data => data.push(checked_data(o).map_err(bad)?),
        }
    }
    let source = m.source().as_ref().map(|s| s.display().to_string()).unwrap_or_default();
    if bind {
        if !Path::new(&source).is_absolute() {
            return Err(bad(format!("the bind source {source:?} must be an absolute host path")));
        }
        // mount(2) ignores data with MS_BIND; runc and crun pass it and the
        // kernel drops it. So does exprun.
        data.clear();
    } else if typ.is_empty() && !remount {
        return Err(bad("the mount has no type".into()));
    }
    Ok(MountOp {
        destination,
        fstype: (!bind).then_some(typ),
        source,
        bind,
        recursive,
        flags,
        data: data.join(","),
        propagation: propagation.bits(),
        file: false,
        remount,
        source_id: None,
        recursive_attrs: attrs,
    })
}

/// An option that is no flag exprun knows, checked as filesystem data: one
/// word that mount(2) can take, and none that the runtime spec reserves for a
/// feature exprun does not have.
fn checked_data(o: &str) -> Result<String, String> {
    match o {
        "idmap" | "ridmap" => Err(format!(
            "{o:?}: id-mapped mounts (mount uidMappings/gidMappings) are not supported; bind the \
             source with ids the container's user namespace maps instead"
        )),
        "tmpcopyup" => {
            Err("\"tmpcopyup\" (copying the image's files into a new tmpfs) is not supported; leave it \
             out, or bind a prepared directory"
                .into())
        }
        _ if o.is_empty() => Err("an option is empty".into()),
        _ if o.chars().any(|c| c.is_whitespace() || c.is_control()) => Err(format!(
            "option {o:?} is neither a mount flag nor filesystem data (it holds white space or a \
             control character)"
        )),
        _ => Ok(o.to_string()),
    }
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
        recursive_attrs: RecursiveAttrs::default(),
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
        recursive_attrs: RecursiveAttrs::default(),
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

/// `linux.rootfsPropagation`: the propagation type given to `/` before the
/// root is built, and to the container's root after pivot_root. Absent: `rslave`,
/// so that the container sees the host's new mounts and sends none back.
pub fn root_propagation(value: Option<&str>) -> Result<u64, Error> {
    match value.unwrap_or("") {
        "" => Ok(default_root_propagation()),
        v @ ("private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
        | "runbindable") => Ok(propagation_flags(v).bits()),
        v => Err(Error::Config(format!(
            "linux.rootfsPropagation: {v:?} is not a propagation type; use shared, slave, private or \
             unbindable (or rshared, rslave, rprivate, runbindable)"
        ))),
    }
}

/// Default rootfs propagation for plans written before it was planned.
pub fn default_root_propagation() -> u64 {
    (MsFlags::MS_SLAVE | MsFlags::MS_REC).bits()
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

    #[test]
    fn every_option_features_reports_is_known_and_the_list_is_sorted() {
        for o in KNOWN_OPTIONS {
            assert!(!matches!(option(o), Opt::Data), "{o} is listed but taken as data");
        }
        assert!(KNOWN_OPTIONS.windows(2).all(|w| w[0] < w[1]), "KNOWN_OPTIONS is not sorted");
        assert!(matches!(option("mode=755"), Opt::Data));
    }

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
    fn unknown_options_are_data_and_ignored_on_binds_as_runc_does() {
        let op = resolve(&mount("/x", "bind", "/data", &["rbind", "mode=755", "weird"])).unwrap();
        assert!(op.bind && op.recursive && op.data.is_empty());
        let op = resolve(&mount("/t", "tmpfs", "tmpfs", &["size=1m", "huge=never", "lazytime"])).unwrap();
        assert_eq!(op.data, "size=1m,huge=never");
        assert_eq!(op.ms_flags(), MsFlags::MS_LAZYTIME);
        let op = resolve(&mount("/t", "tmpfs", "tmpfs", &["nosymfollow", "defaults", "silent"])).unwrap();
        assert_eq!(op.flags, MS_NOSYMFOLLOW | MsFlags::MS_SILENT.bits());
        assert!(op.data.is_empty());
        let op = resolve(&mount("/t", "", "", &["remount", "ro"])).unwrap();
        assert!(op.remount && op.ms_flags().contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn recursive_attributes_set_and_clear_mount_attr_bits() {
        let op =
            resolve(&mount("/x", "bind", "/d", &["rbind", "rro", "rnosuid", "rnodev", "rnoexec"])).unwrap();
        let all = ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC;
        assert_eq!(op.recursive_attrs, RecursiveAttrs { set: all, clear: 0 });
        assert!(op.ms_flags().is_empty(), "recursive options are not mount(2) flags");
        let op =
            resolve(&mount("/x", "bind", "/d", &["rbind", "rro", "rrw", "rsuid", "rnosymfollow"])).unwrap();
        assert_eq!(
            op.recursive_attrs,
            RecursiveAttrs { set: ATTR_NOSYMFOLLOW, clear: ATTR_RDONLY | ATTR_NOSUID }
        );
        // The atime mode is one field: the last wins and the whole field is cleared.
        for (opts, mode) in [
            (&["rnoatime"][..], ATTR_NOATIME),
            (&["rnoatime", "rstrictatime"], ATTR_STRICTATIME),
            (&["rstrictatime", "ratime"], ATTR_RELATIME),
            (&["rnodiratime", "rnorelatime"], ATTR_RELATIME | ATTR_NODIRATIME),
            (&["rnorelatime", "rstrictatime"], ATTR_STRICTATIME),
        ] {
            let op = resolve(&mount("/x", "bind", "/d", opts)).unwrap();
            assert_eq!(op.recursive_attrs.set, mode, "{opts:?}");
            assert_eq!(op.recursive_attrs.clear, ATTR_ATIME, "{opts:?}");
        }
    }

    #[test]
    fn root_propagation_takes_the_spec_s_values() {
        let p = |v| MsFlags::from_bits_truncate(root_propagation(v).unwrap());
        assert_eq!(p(None), MsFlags::MS_SLAVE | MsFlags::MS_REC);
        assert_eq!(p(Some("shared")), MsFlags::MS_SHARED);
        assert_eq!(p(Some("rshared")), MsFlags::MS_SHARED | MsFlags::MS_REC);
        assert_eq!(p(Some("unbindable")), MsFlags::MS_UNBINDABLE);
        assert_eq!(p(Some("rprivate")), MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        let e = root_propagation(Some("bidirectional")).unwrap_err().to_string();
        assert!(e.contains("linux.rootfsPropagation") && e.contains("bidirectional"), "{e}");
    }

    #[test]
    fn bad_mounts_name_the_destination() {
        for (opt, says) in [
            ("bad option", "white space"),
            ("", "empty"),
            ("idmap", "id-mapped"),
            ("ridmap", "id-mapped"),
            ("tmpcopyup", "tmpcopyup"),
        ] {
            let e = resolve(&mount("/x", "bind", "/data", &["rbind", opt])).unwrap_err().to_string();
            assert!(e.contains("mount /x") && e.contains(says), "{opt:?}: {e}");
        }
        let mapped: oci_spec::runtime::Mount = serde_json::from_value(serde_json::json!({
            "destination": "/m", "type": "bind", "source": "/d", "options": ["rbind"],
            "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]
        }))
        .unwrap();
        let e = resolve(&mapped).unwrap_err().to_string();
        assert!(e.contains("mount /m") && e.contains("uidMappings"), "{e}");
        assert!(resolve(&mount("rel", "tmpfs", "tmpfs", &[])).is_err());
        assert!(resolve(&mount("/a/../b", "tmpfs", "tmpfs", &[])).is_err());
        assert!(resolve(&mount("/x", "bind", "relative", &["bind"])).is_err());
    }
}
