//! Plans built from fixture hosts ([`host::fixtures`]): a rootless caller, root
//! on a cgroup v1 host, root on a cgroup v2 host run by systemd. Nothing here
//! reads or changes the machine.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::host::fixtures::{self, BUNDLE};
use super::*;
use crate::cgroups::Version;

/// A bundle config: `linux` fields merged over a plain one.
fn spec(linux: serde_json::Value, extra_mounts: serde_json::Value) -> Spec {
    let mut mounts = json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/data", "type": "bind", "source": "/data", "options": ["rbind", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]}
    ]);
    mounts.as_array_mut().unwrap().extend(extra_mounts.as_array().cloned().unwrap_or_default());
    let mut l = json!({"namespaces": [
        {"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network"}
    ]});
    for (k, v) in linux.as_object().unwrap() {
        l[k] = v.clone();
    }
    serde_json::from_value(json!({
        "ociVersion": "1.2.0",
        "root": {"path": format!("{BUNDLE}/rootfs")},
        "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}]},
        "hostname": "c1",
        "mounts": mounts,
        "linux": l
    }))
    .unwrap()
}

fn plan(spec: Spec, host: &Host, systemd_cgroup: bool) -> Result<RunPlan> {
    build(
        spec,
        PlanContext {
            systemd_cgroup,
            ..PlanContext::bundle("c1", Path::new(BUNDLE), Path::new("/run/exprun/containers/c1"), host)
        },
    )
}

fn rootless_spec(linux: serde_json::Value) -> Spec {
    let mut l = json!({
        "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"},
                       {"type": "network"}, {"type": "user"}],
        "uidMappings": [{"containerID": 0, "hostID": 4242, "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": 4242, "size": 1}]
    });
    for (k, v) in linux.as_object().unwrap() {
        l[k] = v.clone();
    }
    spec(l, json!([]))
}

#[test]
fn a_rootless_host_plans_a_user_namespace_and_no_cgroup() {
    let host = fixtures::rootless();
    let p = plan(rootless_spec(json!({})), &host, false).unwrap();
    let ns = p.user_ns.as_ref().unwrap();
    assert!(!ns.privileged);
    assert_eq!(ns.uids, [IdRange { container: 0, host: 4242, size: 1 }]);
    assert_eq!(p.cgroup.version, Version::None);
    let none = p.no_cgroup.as_ref().unwrap();
    assert!(none.why.contains("no cgroup2 subtree is delegated to uid 4242"), "{}", none.why);
    assert!(none.why.contains("the memory, cpu, pids controllers are on cgroup v1"), "{}", none.why);
    assert!(p.devices_from_host, "mknod is refused in a user namespace");
    let data = p.mounts.iter().find(|m| m.destination == Path::new("/data")).unwrap();
    assert!(!data.file, "the fixture's /data is a directory");
    // No cgroup: the cgroup mount shows nothing of the host's.
    assert!(!p.mounts.iter().any(|m| m.source.starts_with("/sys/fs/cgroup/memory")), "{:?}", p.mounts);

    // A limit nothing could enforce is refused, named as the config names it.
    let e = plan(rootless_spec(json!({"resources": {"memory": {"limit": 1 << 26}}})), &host, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("rootless container (uid 4242) config.json sets linux.resources.memory.limit"), "{e}");
    // Above exprun's own hard limit, without CAP_SYS_RESOURCE.
    let mut s = rootless_spec(json!({}));
    let mut p = s.process().clone().unwrap();
    p.set_rlimits(Some(vec![serde_json::from_value(
        json!({"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}),
    )
    .unwrap()]));
    s.set_process(Some(p));
    let e = plan(s, &host, false).unwrap_err().to_string();
    assert!(e.contains("RLIMIT_NOFILE hard limit 4096 is above exprun's own (1024)"), "{e}");
    // --systemd-cgroup is for root.
    let e = plan(rootless_spec(json!({})), &host, true).unwrap_err().to_string();
    assert!(e.contains("--systemd-cgroup is for exprun as root"), "{e}");
}

#[test]
fn a_root_v1_host_plans_a_cgroup_per_hierarchy_under_the_callers() {
    let host = fixtures::root_v1();
    let p =
        plan(spec(json!({"resources": {"memory": {"limit": 1 << 26}}}), json!([])), &host, false).unwrap();
    assert!(p.user_ns.is_none() && !p.devices_from_host && p.no_cgroup.is_none());
    assert_eq!(p.cgroup.version, Version::V1);
    assert_eq!(p.cgroup.dirs["memory"], Path::new("/sys/fs/cgroup/memory/ci/job7/exprun-c1"));
    assert_eq!(p.cgroup.dirs["pids"], Path::new("/sys/fs/cgroup/pids/exprun-c1"));
    assert!(p.cgroup.dirs.contains_key("freezer"), "a bundle's cgroup can be paused");
    assert_eq!(p.cgroup.limits.memory_bytes, Some(1 << 26));
    // Without a cgroup namespace the cgroup mount binds the run's own dirs.
    let binds: Vec<&str> = p.mounts.iter().filter(|m| m.bind).map(|m| m.source.as_str()).collect();
    assert!(binds.contains(&"/sys/fs/cgroup/memory/ci/job7/exprun-c1"), "{binds:?}");
    // The host's facts decide: a page size it does not have, pid 1's mount
    // namespace, a namespace file that is not there, a bind source that is not.
    let e = plan(
        spec(json!({"resources": {"hugepageLimits": [{"pageSize": "1GB", "limit": 0}]}}), json!([])),
        &host,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not a huge page size of this host (/sys/kernel/mm/hugepages: 2MB)"), "{e}");
    let e = plan(
        spec(
            json!({"namespaces": [{"type": "pid"}, {"type": "uts"}, {"type": "mount", "path": "/proc/1/ns/mnt"}]}),
            json!([]),
        ),
        &host,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("is exprun's own (or pid 1's) mount namespace"), "{e}");
    let joined = plan(
        spec(
            json!({"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"},
                                  {"type": "network", "path": "/run/netns/pod1"}]}),
            json!([]),
        ),
        &host,
        false,
    )
    .unwrap();
    assert_eq!(joined.joins.len(), 1);
    let e = plan(
        spec(json!({"namespaces": [{"type": "mount"}, {"type": "uts"}, {"type": "network", "path": "/run/netns/gone"}]}), json!([])),
        &host,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("/run/netns/gone: No such file or directory"), "{e}");
    let e = plan(
        spec(
            json!({}),
            json!([{"destination": "/x", "type": "bind", "source": "/nowhere", "options": ["rbind"]}]),
        ),
        &host,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("mount /x source /nowhere"), "{e}");
    // The v1 host has no systemd, and --systemd-cgroup needs v2 anyway.
    let e = plan(spec(json!({}), json!([])), &host, true).unwrap_err().to_string();
    assert!(e.contains("--systemd-cgroup: systemd is not running on this host"), "{e}");
}

#[test]
fn a_root_v2_systemd_host_plans_a_scope_of_the_system_manager() {
    let host = fixtures::root_v2_systemd();
    let p = plan(
        spec(
            json!({"cgroupsPath": "kubepods.slice:cri-containerd:c1",
                   "resources": {"memory": {"limit": 1 << 26}, "pids": {"limit": 64}}}),
            json!([]),
        ),
        &host,
        true,
    )
    .unwrap();
    assert_eq!(p.cgroup.version, Version::V2);
    let scope = p.cgroup.scope.as_ref().unwrap();
    assert_eq!(scope.unit, "cri-containerd-c1.scope");
    assert_eq!(scope.slice, "kubepods.slice");
    assert_eq!(
        p.cgroup.dirs["unified"],
        PathBuf::from("/sys/fs/cgroup/kubepods.slice/cri-containerd-c1.scope")
    );
    assert!(!p.cgroup.make_parents, "systemd makes the slices and the scope");
    // Without --systemd-cgroup, below the root: under exprun's own parent.
    let p = plan(spec(json!({}), json!([])), &host, false).unwrap();
    assert_eq!(p.cgroup.dirs["unified"], PathBuf::from("/sys/fs/cgroup/exprun/exprun-c1"));
    assert!(p.cgroup.scope.is_none());
    // A system manager that cannot be reached is named.
    let mut no_bus = host.clone();
    no_bus.system_manager = Some("the D-Bus system bus is not running".into());
    let e = plan(spec(json!({}), json!([])), &no_bus, true).unwrap_err().to_string();
    assert!(e.contains("--systemd-cgroup: the D-Bus system bus is not running"), "{e}");
}
