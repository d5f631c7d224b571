#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! OCI memory reservation, swap, swappiness and OOM killer, network class and
//! priorities, and RDMA limits on this host's cgroup v1 hierarchies: the
//! kernel's files of the container's cgroup hold what runc writes for the same
//! bundle (cgroup v2 is checked in the guest, case 14).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::bundle::{bundle, oci, parent_cgroup, remove_parent_cgroups, runc, runc_run, shim};

/// Write `resources` into the bundle's config.json, whose /dev runc can use
/// too (runc reopens /dev/null there: no nodev).
fn set_resources(b: &Path, resources: serde_json::Value) {
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    cfg["linux"]["resources"] = resources;
    for m in cfg["mounts"].as_array_mut().unwrap() {
        if m["destination"] == "/dev" {
            m["options"].as_array_mut().unwrap().retain(|o| o != "nodev");
        }
    }
    std::fs::write(b.join("config.json"), cfg.to_string()).unwrap();
}

/// Whether this host's v1 memory hierarchy is mounted and counts swap.
fn v1_memory_with_swap(test: &str) -> bool {
    let ok = Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
    if !ok {
        println!("SKIP {test}: needs the v1 memory hierarchy with swap accounting (v2: guest case 14)");
    }
    ok
}

/// The memory files a container prints from its own cgroup.
const SHOW_MEMORY: &str =
    "cd /sys/fs/cgroup/memory && cat memory.limit_in_bytes memory.memsw.limit_in_bytes \
     memory.soft_limit_in_bytes memory.swappiness && grep oom_kill_disable memory.oom_control";

#[test]
fn memory_reservation_swap_swappiness_and_oom_killer_are_the_files_runc_writes() {
    let test = "memory_reservation_swap_swappiness_and_oom_killer_are_the_files_runc_writes";
    let Some(t) = shim(test) else { return };
    if !v1_memory_with_swap(test) {
        return;
    }
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sh", "-c", SHOW_MEMORY]);
    set_resources(
        &b,
        serde_json::json!({"memory": {
            "limit": 64 << 20, "swap": 96 << 20, "reservation": 32 << 20,
            "swappiness": 10, "disableOOMKiller": true
        }}),
    );
    let log = b.join("log.json");
    let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "mem"]);
    assert_eq!(code, 0, "{err}");
    let want = format!("{}\n{}\n{}\n10\noom_kill_disable 1\n", 64 << 20, 96 << 20, 32 << 20);
    assert_eq!(out, want);
    if let Some(runc) = runc(test) {
        let (code, runc_out, err) = runc_run(&runc, &work.join("runc-root"), &b, "mem-runc");
        assert_eq!(code, 0, "runc: {err}");
        assert_eq!(out, runc_out, "exprun vs runc");
    }

    // What the kernel cannot take is refused by field before anything is made.
    for (memory, field, why) in [
        (
            serde_json::json!({"limit": 64 << 20, "swap": 32 << 20}),
            "memory.swap",
            "less than the memory limit",
        ),
        (serde_json::json!({"swap": 32 << 20}), "memory.swap", "needs a memory limit"),
        (serde_json::json!({"swappiness": 101}), "memory.swappiness", "0 to 100"),
    ] {
        set_resources(&b, serde_json::json!({ "memory": memory }));
        let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "bad"]);
        assert_eq!(code, 125, "{memory}: {out}{err}");
        assert!(err.contains(&format!("linux.resources.{field}")) && err.contains(why), "{err}");
    }
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

/// The host directory of `pid`'s v1 memory cgroup.
fn memory_dir(pid: i32) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = text.lines().find_map(|l| l.splitn(3, ':').nth(2).filter(|_| l.contains(":memory:"))).unwrap();
    assert!(path.contains(&parent_cgroup()), "{path}");
    Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'))
}

/// Runs `updates` (runc's update flags) on a container of `runtime` (its
/// command line) made from `b`, and after each the exit status and the
/// memory files: limit, memory plus swap, soft limit.
fn update_sequence(runtime: &[String], b: &Path, id: &str, updates: &[&[&str]]) -> Vec<String> {
    let err_file = b.join(format!("{id}.err"));
    let run = |args: &[&str]| {
        Command::new(&runtime[0])
            .args(&runtime[1..])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // A file: the container's init keeps it open.
            .stderr(std::fs::File::create(&err_file).unwrap())
            .status()
            .unwrap()
    };
    let ok = |st: std::process::ExitStatus| {
        assert!(st.success(), "{runtime:?}: {}", std::fs::read_to_string(&err_file).unwrap())
    };
    let pid_file = b.join(format!("{id}.pid"));
    ok(run(&["create", "-b", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), id]));
    ok(run(&["start", id]));
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let dir = memory_dir(pid);
    let files = || {
        ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes"]
            .map(|f| std::fs::read_to_string(dir.join(f)).unwrap().trim().to_string())
            .join(" ")
    };
    let mut seen = vec![files()];
    for u in updates {
        let args: Vec<&str> = ["update"].iter().chain(u.iter()).chain([id].iter()).copied().collect();
        let code = run(&args).code().unwrap_or(-1);
        seen.push(format!("{} -> {}: {}", u.join(" "), if code == 0 { "ok" } else { "refused" }, files()));
    }
    ok(run(&["delete", "--force", id]));
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    seen
}

#[test]
fn update_changes_swap_and_reservation_as_runc_update_does() {
    let test = "update_changes_swap_and_reservation_as_runc_update_does";
    let Some(t) = shim(test) else { return };
    if !v1_memory_with_swap(test) {
        return;
    }
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sleep", "600"]);
    set_resources(&b, serde_json::json!({"memory": {"limit": 64 << 20, "swap": 64 << 20}}));
    let updates: &[&[&str]] = &[
        &["--memory-swap", "134217728", "--memory-reservation", "16777216"],
        // Past the current memory plus swap: swap is raised first.
        &["--memory", "268435456", "--memory-swap", "536870912"],
        // Down again: the limit is lowered first.
        &["--memory", "33554432", "--memory-swap", "50331648"],
        // Less memory plus swap than memory.
        &["--memory-swap", "16777216"],
        &["--memory-swap", "-1"],
    ];
    let exprun =
        vec![common::exprun_bin().display().to_string(), "--root".into(), r.path().display().to_string()];
    let seen = update_sequence(&exprun, &b, "upd", updates);
    let max = "9223372036854771712";
    assert_eq!(
        seen,
        [
            format!("67108864 67108864 {max}"),
            "--memory-swap 134217728 --memory-reservation 16777216 -> ok: 67108864 134217728 16777216".into(),
            "--memory 268435456 --memory-swap 536870912 -> ok: 268435456 536870912 16777216".into(),
            "--memory 33554432 --memory-swap 50331648 -> ok: 33554432 50331648 16777216".into(),
            "--memory-swap 16777216 -> refused: 33554432 50331648 16777216".into(),
            format!("--memory-swap -1 -> ok: 33554432 {max} 16777216"),
        ]
    );
    if let Some(runc) = runc(test) {
        let runc =
            vec![runc.display().to_string(), "--root".into(), work.join("runc-root").display().to_string()];
        assert_eq!(seen, update_sequence(&runc, &b, "upd-runc", updates), "exprun vs runc");
    }
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

/// A container printing its net_cls class id and its net_prio map.
const SHOW_NET: &str =
    "cat /sys/fs/cgroup/net_cls,net_prio/net_cls.classid /sys/fs/cgroup/net_cls,net_prio/net_prio.ifpriomap";

#[test]
fn network_class_and_priorities_are_applied_where_a_net_cls_hierarchy_is_mounted_and_refused_where_not() {
    let test =
        "network_class_and_priorities_are_applied_where_a_net_cls_hierarchy_is_mounted_and_refused_where_not";
    let Some(t) = shim(test) else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sh", "-c", SHOW_NET]);
    set_resources(
        &b,
        serde_json::json!({"network": {"classID": 0x100001, "priorities": [{"name": "lo", "priority": 5}]}}),
    );
    let log = b.join("log.json");
    let hosts_own = std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains("net_cls");
    if !hosts_own {
        // This host mounts no net_cls hierarchy: refused, naming field and controller.
        let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "net"]);
        assert_eq!(code, 125, "{out}{err}");
        assert!(
            err.contains("linux.resources.network.classID")
                && err.contains("the net_cls cgroup controller is not mounted on this host"),
            "{err}"
        );
    }
    // In a mount namespace of its own, the test mounts the hierarchy (as a
    // host that uses it would) and runs exprun and runc there.
    // runc looks for hierarchies under /sys/fs/cgroup only: the namespace gets
    // a /sys/fs/cgroup of its own with the host's hierarchies bound into it.
    let runc = runc(test);
    let script = r#"
        set -e
        mkdir "$WORK/host-cgroup"
        mount --rbind /sys/fs/cgroup "$WORK/host-cgroup"
        mount -t tmpfs -o mode=755 exprun-test /sys/fs/cgroup
        for d in "$WORK"/host-cgroup/*; do
            n=${d##*/}
            if [ -L "$d" ]; then cp -P "$d" /sys/fs/cgroup/
            else mkdir "/sys/fs/cgroup/$n"; mount --bind "$d" "/sys/fs/cgroup/$n"; fi
        done
        umount -l "$WORK/host-cgroup"
        MNT=/sys/fs/cgroup/net_cls,net_prio
        mkdir "$MNT"
        before=$(awk '$1 == "net_cls" { print $2 }' /proc/cgroups)
        mount -t cgroup -o net_cls,net_prio exprun-test "$MNT"
        # A v1 hierarchy outlives its unmount while the kernel still holds
        # removed cgroups of it: mounted again once they are gone, it ends.
        gone() { awk '$1 == "net_cls" && $2 == 0 { f = 1 } END { exit !f }' /proc/cgroups; }
        cleanup() {
            rmdir "$MNT/$PARENT" 2>/dev/null || true
            umount "$MNT"
            [ "$before" = 0 ] || return 0
            for i in 1 2 3 4 5 6 7 8 9 10; do
                sleep 0.2
                gone && return 0
                mount -t cgroup -o net_cls,net_prio exprun-test "$MNT" && umount "$MNT"
            done
        }
        trap cleanup EXIT
        "$EXPRUN" --root "$ROOT" run -b "$B" net > "$WORK/exprun.out"
        if [ -n "$RUNC" ]; then "$RUNC" --root "$WORK/runc-root" run -b "$B" net-runc > "$WORK/runc.out"; fi
    "#;
    let st = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("PARENT", parent_cgroup())
        .env("EXPRUN", common::exprun_bin())
        .env("ROOT", r.path())
        .env("B", &b)
        .env("WORK", work)
        .env("RUNC", runc.as_deref().map(Path::as_os_str).unwrap_or_default())
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    let out = std::fs::read_to_string(work.join("exprun.out")).unwrap();
    // The kernel lists the interfaces of the host's network namespace.
    assert!(out.starts_with("1048577\nlo 5\n"), "{out}");
    if runc.is_some() {
        assert_eq!(out, std::fs::read_to_string(work.join("runc.out")).unwrap(), "exprun vs runc");
    }

    // No RDMA controller here: refused by field, never dropped.
    if !std::fs::read_to_string("/proc/cgroups").unwrap().contains("rdma") {
        set_resources(&b, serde_json::json!({"rdma": {"mlx5_0": {"hcaHandles": 2}}}));
        let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "rdma"]);
        assert_eq!(code, 125, "{out}{err}");
        assert!(
            err.contains("linux.resources.rdma") && err.contains("the rdma cgroup controller is not mounted"),
            "{err}"
        );
    }
    let hierarchy = std::fs::read_to_string("/proc/cgroups").unwrap();
    if !hosts_own {
        assert!(hierarchy.contains("net_cls\t0\t"), "the test's net_cls hierarchy outlived it:\n{hierarchy}");
    }
    r.assert_no_leftovers();
    remove_parent_cgroups();
}
