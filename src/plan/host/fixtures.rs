//! Fixture hosts for unit tests of the planner: nothing here reads the machine.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{FileId, Host, NamespaceFile, ProcessHost};
use crate::cgroups::CgroupHost;

/// The bundle directory the fixtures know, with `rootfs/` in it.
pub const BUNDLE: &str = "/bundles/b1";

/// A cgroup v1/v2 hybrid host (controllers on v1, an empty cgroup2 mount).
pub const HYBRID_MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
36 30 0:32 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
35 30 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

fn dir(ino: u64) -> Result<FileId, i32> {
    Ok(FileId { dir: true, dev: 8, ino })
}

fn host(euid: u32, cgroups: CgroupHost) -> Host {
    let paths: BTreeMap<PathBuf, Result<FileId, i32>> = [
        (PathBuf::from(BUNDLE).join("rootfs"), dir(100)),
        (PathBuf::from("/data"), dir(101)),
        (PathBuf::from("/etc/resolv.conf"), Ok(FileId { dir: false, dev: 8, ino: 102 })),
        (PathBuf::from("/proc/1/ns/mnt"), Ok(FileId { dir: false, dev: 4, ino: 4026531841 })),
        (PathBuf::from("/run/netns/pod1"), Ok(FileId { dir: false, dev: 4, ino: 4026532999 })),
    ]
    .into();
    Host {
        cgroups,
        process: ProcessHost {
            euid,
            egid: euid,
            hard_rlimits: [(libc::RLIMIT_NOFILE, 1024)].into(),
            cap_sys_resource: euid == 0,
            arg_max: 2 << 20,
            apparmor: Err("No such file or directory (os error 2)".into()),
        },
        paths,
        namespace_files: [
            (
                PathBuf::from("/proc/1/ns/mnt"),
                Ok(NamespaceFile { name: "mnt:[4026531841]".into(), id: (4, 4026531841) }),
            ),
            (
                PathBuf::from("/run/netns/pod1"),
                Ok(NamespaceFile { name: "net:[4026532999]".into(), id: (4, 4026532999) }),
            ),
        ]
        .into(),
        own_namespaces: [("mnt", vec![(4, 4026531841)]), ("uts", vec![(4, 4026531838)])].into(),
        hugepage_sizes: vec!["2MB".into()],
        cgroup_dirs: BTreeMap::new(),
        system_manager: Some("systemd is not running on this host (/run/systemd/system is absent)".into()),
        user_manager: Some(format!("your D-Bus session bus is not running (/run/user/{euid}/bus is absent)")),
        user_manager_runs: false,
    }
}

/// uid 4242 on a hybrid host without systemd: nothing delegated, no user manager.
pub fn rootless() -> Host {
    host(
        4242,
        CgroupHost::parse(HYBRID_MOUNTINFO, "5:freezer:/\n4:pids:/\n3:memory:/\n2:cpu,cpuacct:/\n0::/\n"),
    )
}

/// Root on a hybrid (v1) host without systemd, in the cgroups of a CI job.
pub fn root_v1() -> Host {
    host(
        0,
        CgroupHost::parse(
            HYBRID_MOUNTINFO,
            "5:freezer:/\n4:pids:/\n3:memory:/ci/job7\n2:cpu,cpuacct:/\n0::/\n",
        ),
    )
}

/// Root on a unified (v2) host whose pid 1 is systemd, exprun in a service.
pub fn root_v2_systemd() -> Host {
    let mut cgroups = CgroupHost::parse(
        "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        "0::/system.slice/containerd.service\n",
    );
    cgroups.v2_controllers = ["cpuset", "cpu", "io", "memory", "hugetlb", "pids"].map(String::from).to_vec();
    let mut h = host(0, cgroups);
    h.system_manager = None;
    h.user_manager = None;
    h.user_manager_runs = true;
    h
}
