#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! OCI `linux.resources` beyond memory, CPU quota and pids, against this host's
//! kernel: each limit is in the container's cgroup file while it runs, or the run
//! is refused naming the field and what the host lacks. Never dropped.

mod common;

use std::path::Path;

use common::bundle::{bundle, oci, remove_parent_cgroups, shim};

/// Write `resources` into the bundle's config.json.
fn set_resources(b: &Path, resources: serde_json::Value) {
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    cfg["linux"]["resources"] = resources;
    std::fs::write(b.join("config.json"), cfg.to_string()).unwrap();
}

/// A block device of this host as (major, minor).
fn a_block_device() -> Option<(u32, u32)> {
    let mut devs: Vec<String> = std::fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("dev")).ok())
        .collect();
    devs.sort();
    let (major, minor) = devs.first()?.trim().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Whether this host mounts cgroup v1 controller `ctrl`.
fn v1_has(ctrl: &str) -> bool {
    Path::new("/sys/fs/cgroup").join(ctrl).join("cgroup.procs").exists()
}

#[test]
fn cpuset_and_block_io_throttles_are_in_the_kernels_files_while_the_container_runs() {
    let test = "cpuset_and_block_io_throttles_are_in_the_kernels_files_while_the_container_runs";
    let Some(t) = shim(test) else { return };
    if !v1_has("cpuset") || !v1_has("blkio") {
        println!(
            "SKIP {test}: needs the v1 cpuset and blkio hierarchies (cgroup v2 is checked in the guest)"
        );
        return;
    }
    let (r, work) = (&t.r, t.work.path());
    let (major, minor) = a_block_device().expect("a block device");
    let b = bundle(
        work,
        &[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/cpuset/cpuset.mems; \
             grep Cpus_allowed_list /proc/self/status; \
             cat /sys/fs/cgroup/blkio/blkio.throttle.read_bps_device /sys/fs/cgroup/blkio/blkio.throttle.write_iops_device",
        ],
    );
    set_resources(
        &b,
        serde_json::json!({
            "cpu": {"cpus": "0", "mems": "0"},
            "blockIO": {
                "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}],
                "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 100}]
            }
        }),
    );
    let log = b.join("log.json");
    let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "limits"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        [
            "0",
            "0",
            "Cpus_allowed_list:\t0",
            &format!("{major}:{minor} 1048576"),
            &format!("{major}:{minor} 100"),
        ],
        "{out}"
    );
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn settings_this_host_cannot_apply_are_refused_naming_field_and_controller() {
    let test = "settings_this_host_cannot_apply_are_refused_naming_field_and_controller";
    let Some(t) = shim(test) else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["cat", "/sys/fs/cgroup/hugetlb/hugetlb.2MB.limit_in_bytes"]);
    let log = b.join("log.json");
    let run = |resources: serde_json::Value, id: &str| {
        set_resources(&b, resources);
        oci(r, &log, &["run", "-b", b.to_str().unwrap(), id])
    };

    let (code, out, err) =
        run(serde_json::json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}), "huge");
    if v1_has("hugetlb") {
        assert_eq!((code, out.trim()), (0, "4194304"), "{err}");
    } else {
        assert_eq!(code, 125, "{out}{err}");
        assert!(
            err.contains("linux.resources.hugepageLimits")
                && err.contains("the hugetlb cgroup controller is not mounted on this host"),
            "{err}"
        );
    }

    // A weight needs the BFQ I/O scheduler; without it the kernel has no
    // blkio.weight file, and the run is refused by field rather than run unweighted.
    let (code, out, err) = run(serde_json::json!({"blockIO": {"weight": 300}}), "weight");
    let bfq = Path::new("/sys/fs/cgroup/blkio/blkio.weight").exists();
    if bfq || !v1_has("blkio") {
        assert_ne!(code, 125, "{err}");
    } else {
        assert_eq!(code, 125, "{out}{err}");
        assert!(
            err.contains("linux.resources.blockIO.weight")
                && err.contains("blkio.weight")
                && err.contains("BFQ"),
            "{err}"
        );
    }

    // Fields exprun has no way to apply are refused by name before anything is made.
    for (resources, field) in [
        (serde_json::json!({"memory": {"kernel": 1048576}}), "linux.resources.memory.kernel"),
        (serde_json::json!({"network": {"classID": 7}}), "linux.resources.network.classID"),
        (serde_json::json!({"cpu": {"realtimeRuntime": 1000}}), "linux.resources.cpu.realtimeRuntime"),
        (serde_json::json!({"unified": {"memory.high": "1G"}}), "linux.resources.unified"),
        (serde_json::json!({"cpu": {"cpus": "0-x"}}), "linux.resources.cpu.cpus"),
    ] {
        let (code, out, err) = run(resources, "refused");
        assert_eq!(code, 125, "{field}: {out}{err}");
        assert!(err.contains(field), "{field}: {err}");
    }
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn update_changes_the_cpuset_and_throttles_and_refuses_what_it_cannot_write() {
    let test = "update_changes_the_cpuset_and_throttles_and_refuses_what_it_cannot_write";
    let Some(t) = shim(test) else { return };
    if !v1_has("cpuset") || !v1_has("blkio") {
        println!(
            "SKIP {test}: needs the v1 cpuset and blkio hierarchies (cgroup v2 is checked in the guest)"
        );
        return;
    }
    let (r, work) = (&t.r, t.work.path());
    let (major, minor) = a_block_device().expect("a block device");
    let b = bundle(work, &["sleep", "60"]);
    let throttle = |rate: u64| serde_json::json!({"throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": rate}]});
    set_resources(&b, serde_json::json!({"cpu": {"cpus": "0"}, "blockIO": throttle(1 << 20)}));
    let log = b.join("log.json");
    let pid_file = b.join("init.pid");
    // The container keeps stdout and stderr open: do not wait for them.
    let st = r
        .command(&["create", "-b", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), "u"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    let init: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert_eq!(oci(r, &log, &["start", "u"]).0, 0);
    let plan = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(r.path().join("containers/u/plan.json")).unwrap()).unwrap()
    };
    let read = |ctrl: &str, file: &str| {
        let dir = plan()["cgroup"]["dirs"][ctrl].as_str().unwrap().to_string();
        std::fs::read_to_string(Path::new(&dir).join(file)).unwrap().trim().to_string()
    };
    let update = |resources: serde_json::Value| {
        let path = work.join("resources.json");
        std::fs::write(&path, resources.to_string()).unwrap();
        oci(r, &log, &["update", "--resources", path.to_str().unwrap(), "u"])
    };
    assert_eq!(read("cpuset", "cpuset.cpus"), "0");
    let last = root_cpuset_last_cpu();
    let (code, _, err) =
        update(serde_json::json!({"cpu": {"cpus": format!("{last}")}, "blockIO": throttle(2 << 20)}));
    assert_eq!(code, 0, "{err}");
    assert_eq!(read("cpuset", "cpuset.cpus"), last.to_string());
    assert_eq!(read("blkio", "blkio.throttle.read_bps_device"), format!("{major}:{minor} 2097152"));
    assert_eq!(plan()["cgroup"]["limits"]["cpuset_cpus"], last.to_string());

    // Nothing is written when one setting cannot be: the memory limit stays unset.
    let (code, _, err) = update(serde_json::json!({
        "memory": {"limit": 67108864},
        "hugepageLimits": [{"pageSize": "3MB", "limit": 0}]
    }));
    assert_ne!(code, 0);
    assert!(err.contains("linux.resources.hugepageLimits"), "{err}");
    assert_ne!(read("memory", "memory.limit_in_bytes"), "67108864");

    assert_eq!(oci(r, &log, &["delete", "--force", "u"]).0, 0);
    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(init), None).unwrap();
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

/// The highest CPU of the root cpuset.
fn root_cpuset_last_cpu() -> usize {
    let cpus = std::fs::read_to_string("/sys/fs/cgroup/cpuset/cpuset.cpus").unwrap();
    cpus.trim().rsplit([',', '-']).next().unwrap().parse().unwrap()
}
