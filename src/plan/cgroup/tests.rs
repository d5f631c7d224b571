//! Rootless cgroup planning on fixture hosts: what is delegated is a fact of
//! the [`Host`], so nothing is chowned and nothing needs root.

use std::path::{Path, PathBuf};

use super::delegated;
use crate::cgroups::{CgroupHost, Error, Limits, Version};
use crate::plan::host::{CgroupDir, Host};

/// A cgroup2 tree as systemd lays it out for user 4242 at /sys/fs/cgroup:
/// everything from `user@4242.service` down belongs to the user; `cpu pids`
/// were delegated. exprun runs in `caller`.
fn delegated_host(caller: &str) -> Host {
    let mut host = crate::plan::host::fixtures::rootless();
    host.cgroups = CgroupHost::parse(
        "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n",
        &format!("0::{caller}\n"),
    );
    let root = Path::new("/sys/fs/cgroup");
    let service = root.join("user.slice/user-4242.slice/user@4242.service");
    host.cgroup_dirs = [
        (root.to_path_buf(), false, ""),
        (root.join("user.slice"), false, ""),
        (root.join("user.slice/session-1.scope"), false, ""),
        (service.clone(), true, "cpu pids\n"),
        (service.join("app.slice"), true, ""),
        (service.join("app.slice/run-r1.scope"), true, ""),
    ]
    .into_iter()
    .map(|(d, delegated, c)| (d, CgroupDir { delegated, controllers: Ok(c.to_string()) }))
    .collect();
    host
}

fn service() -> PathBuf {
    PathBuf::from("/sys/fs/cgroup/user.slice/user-4242.slice/user@4242.service")
}

#[test]
fn a_rootless_run_goes_next_to_exprun_in_the_delegated_subtree() {
    let host = delegated_host("/user.slice/user-4242.slice/user@4242.service/app.slice/run-r1.scope");
    let limits = Limits { pids_max: Some(16), cpu_quota_us: Some(50_000), ..Limits::default() };
    let plan = delegated::plan(&host, "exprun-x", None, limits.clone()).unwrap();
    let service = service();
    assert_eq!(plan.version, Version::V2);
    assert_eq!(plan.dirs["unified"], service.join("app.slice/exprun-x"));
    assert_eq!(plan.enable_in, vec![service.clone(), service.join("app.slice")]);
    assert_eq!(plan.limits, limits);

    // A controller the subtree was not given is named, with where to look.
    let memory = Limits { memory_bytes: Some(1 << 26), ..Limits::default() };
    let err = delegated::plan(&host, "exprun-x", None, memory).unwrap_err().to_string();
    assert!(err.contains("--memory") && err.contains("memory controller is not delegated"), "{err}");
    assert!(err.contains(&service.join("cgroup.controllers").display().to_string()), "{err}");

    // --cgroup-parent: only inside the subtree.
    let parent = "/user.slice/user-4242.slice/user@4242.service";
    let plan = delegated::plan(&host, "exprun-x", Some(parent), Limits::default()).unwrap();
    assert_eq!(plan.dirs["unified"], service.join("exprun-x"));
    assert_eq!(plan.enable_in, vec![service.clone()]);
    let err = delegated::plan(&host, "exprun-x", Some("/user.slice"), Limits::default()).unwrap_err();
    assert!(matches!(err, Error::NotDelegated { .. }), "{err}");
    // Another user has nothing delegated here.
    let mut other = host.clone();
    other.cgroup_dirs.values_mut().for_each(|d| d.delegated = false);
    let err = delegated::plan(&other, "exprun-x", None, Limits::default()).unwrap_err();
    assert!(err.to_string().contains("is not delegated to you"), "{err}");
}

#[test]
fn a_rootless_caller_outside_a_delegated_subtree_is_told_what_to_do() {
    let host = delegated_host("/user.slice/session-1.scope");
    let err = delegated::plan(&host, "exprun-x", None, Limits::default()).unwrap_err().to_string();
    assert!(err.contains("session-1.scope is not delegated to you"), "{err}");

    // Its own cgroup delegated, but with processes in it and a parent that is not.
    let host = delegated_host("/user.slice/user-4242.slice/user@4242.service");
    let err = delegated::plan(&host, "exprun-x", None, Limits::default()).unwrap_err().to_string();
    assert!(err.contains("no internal processes") && err.contains("/cli/cgroup.procs"), "{err}");

    // No cgroup2 hierarchy at all.
    let mut host = delegated_host("/");
    host.cgroups = CgroupHost::parse("", "0::/\n");
    let err = delegated::plan(&host, "exprun-x", None, Limits::default()).unwrap_err().to_string();
    assert!(err.contains("no cgroup2 hierarchy"), "{err}");
}

#[test]
fn the_directories_gathered_are_those_the_plan_asks_about() {
    let host = delegated_host("/user.slice/user-4242.slice/user@4242.service/app.slice/run-r1.scope");
    let parent = PathBuf::from("/user.slice/other");
    let dirs = delegated::candidates(&host.cgroups, 4242, [&parent, &PathBuf::from("../escape")]);
    let root = Path::new("/sys/fs/cgroup");
    for d in host.cgroup_dirs.keys().filter(|d| !d.ends_with("session-1.scope")) {
        assert!(dirs.contains(d), "{} not gathered: {dirs:?}", d.display());
    }
    assert!(dirs.contains(&root.join("user.slice/other")), "{dirs:?}");
    assert!(dirs.iter().all(|d| d.starts_with(root)), "{dirs:?}");
}

#[test]
fn the_reason_for_no_cgroup_names_what_was_looked_for() {
    let mi = "\
25 24 0:22 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
26 24 0:23 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
27 24 0:24 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
    let mut host = crate::plan::host::fixtures::rootless();
    host.process.euid = 4_000_000;
    host.cgroups = CgroupHost::parse(mi, "4:memory:/\n3:pids:/\n0::/\n");
    let why = delegated::delegated_parent(&host, None).unwrap_err().to_string();
    let reason = delegated::no_cgroup_reason(&host, &why);
    assert!(
        reason.starts_with("no cgroup can be had: no cgroup2 subtree is delegated to uid 4000000 ("),
        "{reason}"
    );
    assert!(
        reason.contains("no systemd user manager (/run/user/4000000/systemd/private is absent)"),
        "{reason}"
    );
    assert!(reason.contains("the memory, pids controllers are on cgroup v1"), "{reason}");
    // A pure cgroup2 host: nothing said about v1.
    host.cgroups = CgroupHost::parse(&mi[mi.find("27 ").unwrap()..], "0::/user.slice\n");
    let reason = delegated::no_cgroup_reason(&host, "x");
    assert!(!reason.contains("v1"), "{reason}");
}
