//! Unit tests of writing limits (on plans of fake layouts), on fake trees.

use super::*;
use std::path::Path;

use crate::plan::cgroup::Placement;

const HYBRID_MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
const HYBRID_SELF: &str = "\
8:pids:/
4:memory:/jobs/job42
2:cpuacct:/
1:cpu:/
0::/
";

#[test]
fn hybrid_host_plans_v1_dirs_under_the_callers_cgroups() {
    let host = CgroupHost::parse(HYBRID_MOUNTINFO, HYBRID_SELF);
    assert_eq!(host.version(), Version::V1);
    let plan = host
        .plan(
            &Placement::Child { name: "exprun-abc", parent: None },
            Limits { memory_bytes: Some(1 << 26), ..Limits::default() },
            false,
        )
        .unwrap();
    assert_eq!(plan.dirs["memory"], Path::new("/sys/fs/cgroup/memory/jobs/job42/exprun-abc"));
    assert_eq!(plan.dirs["pids"], Path::new("/sys/fs/cgroup/pids/exprun-abc"));
    assert_eq!(plan.dirs["cpuacct"], Path::new("/sys/fs/cgroup/cpuacct/exprun-abc"));
    assert_eq!(host.describe().0, "hybrid");
    let h = host.v1_hierarchies(&plan);
    assert_eq!(h.len(), 4);
    assert!(h.contains(&("memory".to_string(), "memory".to_string())), "{h:?}");
}

#[test]
fn oci_cgroups_paths_are_absolute_from_the_root_or_relative_to_the_caller() {
    let host = CgroupHost::parse(HYBRID_MOUNTINFO, HYBRID_SELF);
    let plan = host.plan(&Placement::Path("/kubepods/pod1/c1"), Limits::default(), false).unwrap();
    assert_eq!(plan.dirs["memory"], Path::new("/sys/fs/cgroup/memory/kubepods/pod1/c1"));
    assert_eq!(plan.dirs["pids"], Path::new("/sys/fs/cgroup/pids/kubepods/pod1/c1"));
    assert!(plan.make_parents);
    let plan = host.plan(&Placement::Path("k/c1"), Limits::default(), false).unwrap();
    assert_eq!(plan.dirs["memory"], Path::new("/sys/fs/cgroup/memory/jobs/job42/k/c1"));
    assert!(host.plan(&Placement::Path("/a/../b"), Limits::default(), false).is_err());
}

#[test]
fn co_mounted_cpu_and_cpuacct_share_one_dir() {
    let mi = "31 30 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
              33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
    let host = CgroupHost::parse(mi, "3:cpu,cpuacct:/a\n2:memory:/a\n");
    let plan = host.plan(&Placement::Child { name: "x", parent: None }, Limits::default(), false).unwrap();
    assert_eq!(plan.dirs["cpu"], plan.dirs["cpuacct"]);
    assert_eq!(plan.dirs["cpu"], Path::new("/sys/fs/cgroup/cpu,cpuacct/a/x"));
    let h = host.v1_hierarchies(&plan);
    assert_eq!(
        h,
        vec![("cpu,cpuacct".to_string(), "cpu,cpuacct".to_string()), ("memory".into(), "memory".into())]
    );
}

#[test]
fn a_limit_without_its_controller_is_refused_by_name() {
    let mi = "33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
    let host = CgroupHost::parse(mi, "2:memory:/\n");
    let err = host
        .plan(
            &Placement::Child { name: "x", parent: None },
            Limits { pids_max: Some(10), ..Limits::default() },
            false,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("--pids-limit") && err.contains("pids cgroup controller"), "{err}");
}

#[test]
fn cgroup_parent_must_be_absolute_and_plain() {
    let host = CgroupHost::parse(HYBRID_MOUNTINFO, HYBRID_SELF);
    for bad in ["relative", "/a/../b", ""] {
        assert!(
            host.plan(&Placement::Child { name: "x", parent: Some(bad) }, Limits::default(), false).is_err(),
            "{bad}"
        );
    }
    let plan = host
        .plan(&Placement::Child { name: "x", parent: Some("/experiments") }, Limits::default(), false)
        .unwrap();
    assert_eq!(plan.dirs["memory"], Path::new("/sys/fs/cgroup/memory/experiments/x"));
}

#[test]
fn shares_convert_to_weights_like_runc() {
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(262_144), 10_000);
}

#[test]
fn mountinfo_octal_escapes_are_decoded() {
    assert_eq!(unescape(r"/mnt/with\040space"), "/mnt/with space");
    assert_eq!(unescape("/plain"), "/plain");
}

/// A fake cgroup2 tree in a temp dir: the files the kernel would provide.
fn v2_fixture() -> (tempfile::TempDir, CgroupHost) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::write(root.join("cgroup.controllers"), "cpuset cpu io memory hugetlb pids\n").unwrap();
    fs::write(root.join("cgroup.subtree_control"), "").unwrap();
    fs::create_dir(root.join("user.slice")).unwrap();
    fs::write(root.join("user.slice/cgroup.subtree_control"), "memory\n").unwrap();
    fs::write(root.join("user.slice/cgroup.controllers"), "cpu memory pids\n").unwrap();
    let mi = format!("30 25 0:26 / {} rw,nosuid - cgroup2 cgroup2 rw\n", root.display());
    let mut host = CgroupHost::parse(&mi, "0::/user.slice\n");
    host.v2_controllers = vec!["cpu".into(), "memory".into(), "pids".into()];
    (dir, host)
}

#[test]
fn v2_plan_create_writes_limits_and_enables_controllers_top_down() {
    let (dir, host) = v2_fixture();
    assert_eq!(host.version(), Version::V2);
    let limits = Limits {
        memory_bytes: Some(64 << 20),
        cpu_quota_us: Some(150_000),
        pids_max: Some(32),
        ..Limits::default()
    };
    let plan = host
        .plan(&Placement::Child { name: "exprun-t", parent: Some("/user.slice") }, limits, false)
        .unwrap();
    let cg_dir = dir.path().join("user.slice/exprun-t");
    assert_eq!(plan.dirs["unified"], cg_dir);
    assert_eq!(plan.enable_in, vec![dir.path().to_path_buf(), dir.path().join("user.slice")]);
    // The kernel creates the interface files; on a plain directory we pre-create
    // the ones cgroups-rs reads before writing.
    fs::create_dir(&cg_dir).unwrap();
    fs::write(cg_dir.join("cpu.max"), "max 100000\n").unwrap();
    fs::write(cg_dir.join("memory.swap.max"), "max\n").unwrap();
    fs::write(cg_dir.join("cgroup.procs"), "").unwrap();
    let cg = Cgroup::create(&plan).unwrap();
    assert_eq!(fs::read_to_string(cg_dir.join("memory.max")).unwrap(), "67108864");
    assert_eq!(fs::read_to_string(cg_dir.join("memory.swap.max")).unwrap(), "0");
    assert_eq!(fs::read_to_string(cg_dir.join("pids.max")).unwrap(), "32");
    assert_eq!(fs::read_to_string(cg_dir.join("cpu.max")).unwrap(), "150000 100000");
    // A plain file only keeps the last write; the kernel file accumulates.
    let root_ctl = fs::read_to_string(dir.path().join("cgroup.subtree_control")).unwrap();
    assert!(root_ctl.starts_with('+'), "{root_ctl}");
    let slice_ctl = fs::read_to_string(dir.path().join("user.slice/cgroup.subtree_control")).unwrap();
    assert_eq!(slice_ctl, "+cpu", "memory was already enabled there");
    fs::write(cg_dir.join("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
    fs::write(cg_dir.join("memory.peak"), "1234\n").unwrap();
    fs::write(cg_dir.join("cpu.stat"), "usage_usec 30\nuser_usec 20\nsystem_usec 10\n").unwrap();
    fs::write(cg_dir.join("pids.events"), "max 7\n").unwrap();
    let u = cg.usage();
    assert_eq!(
        u,
        Usage {
            peak_memory_bytes: Some(1234),
            oom_kills: 1,
            cpu_user_us: Some(20),
            cpu_system_us: Some(10),
            pids_limit_hits: 7
        }
    );
    assert_eq!(cg.join_files().unwrap().len(), 1);
}

#[test]
fn v2_runs_go_under_a_parent_of_their_own_when_exprun_is_not_at_the_root() {
    // exprun in a systemd unit or session: its cgroup holds exprun, so it
    // cannot pass controllers on; the run goes under /exprun, made if missing.
    let (dir, host) = v2_fixture();
    let plan =
        host.plan(&Placement::Child { name: "exprun-t", parent: None }, Limits::default(), false).unwrap();
    assert_eq!(plan.dirs["unified"], dir.path().join("exprun/exprun-t"));
    assert_eq!(plan.enable_in, vec![dir.path().to_path_buf(), dir.path().join("exprun")]);
    assert!(plan.make_parents);
    // At the root of the hierarchy (a container's cgroup namespace), under exprun's own.
    let mi = format!("30 25 0:26 / {} rw,nosuid - cgroup2 cgroup2 rw\n", dir.path().display());
    let mut at_root = CgroupHost::parse(&mi, "0::/\n");
    at_root.v2_controllers = host.v2_controllers.clone();
    let plan =
        at_root.plan(&Placement::Child { name: "exprun-t", parent: None }, Limits::default(), false).unwrap();
    assert_eq!(plan.dirs["unified"], dir.path().join("exprun-t"));
    assert!(!plan.make_parents);
    // --cgroup-parent and OCI paths are taken as given.
    let plan = host
        .plan(&Placement::Child { name: "x", parent: Some("/user.slice") }, Limits::default(), false)
        .unwrap();
    assert_eq!(plan.dirs["unified"], dir.path().join("user.slice/x"));
    let plan = host.plan(&Placement::Path("c1"), Limits::default(), false).unwrap();
    assert_eq!(plan.dirs["unified"], dir.path().join("user.slice/c1"));
}

#[test]
fn v2_controller_missing_is_refused() {
    let (_dir, mut host) = v2_fixture();
    host.v2_controllers = vec!["memory".into()];
    let err = host
        .plan(
            &Placement::Child { name: "x", parent: None },
            Limits { cpu_quota_us: Some(1000), ..Limits::default() },
            false,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("--cpus") && err.contains("cgroup.controllers"), "{err}");
}

#[test]
fn oci_paths_make_their_missing_parents() {
    let (dir, host) = v2_fixture();
    let plan = host.plan(&Placement::Path("/kubepods/pod1/c1"), Limits::default(), false).unwrap();
    for d in ["kubepods", "kubepods/pod1"] {
        // What the kernel would give a new cgroup; a plain mkdir gives nothing.
        fs::create_dir_all(dir.path().join(d)).unwrap();
        fs::write(dir.path().join(d).join("cgroup.subtree_control"), "").unwrap();
    }
    fs::remove_dir_all(dir.path().join("kubepods")).unwrap();
    // Without the kernel files enabling controllers fails, but the parents are
    // made first: check that part.
    let _ = Cgroup::create(&plan);
    assert!(dir.path().join("kubepods/pod1").is_dir());
}

#[test]
fn missing_parent_is_an_error_naming_it() {
    let (dir, host) = v2_fixture();
    let plan =
        host.plan(&Placement::Child { name: "x", parent: Some("/nope") }, Limits::default(), false).unwrap();
    let err = Cgroup::create(&plan).unwrap_err().to_string();
    assert!(err.contains(&dir.path().join("nope").display().to_string()), "{err}");
    assert!(err.contains("--cgroup-parent"), "{err}");
}

#[test]
fn v2_controllers_enabled_are_those_the_limits_need_and_memory_where_there_is_one() {
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path().to_path_buf();
    fs::write(top.join("cgroup.controllers"), "cpu pids\n").unwrap();
    let pids = Limits { pids_max: Some(3), ..Limits::default() };
    assert_eq!(limits::v2_wanted(&pids, std::slice::from_ref(&top)).unwrap(), vec!["pids"]);
    fs::write(top.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
    assert_eq!(limits::v2_wanted(&pids, std::slice::from_ref(&top)).unwrap(), vec!["memory", "pids"]);
}

#[test]
fn a_controller_an_ancestor_cannot_pass_on_is_named() {
    let (dir, host) = v2_fixture();
    fs::write(dir.path().join("user.slice/cgroup.controllers"), "memory\n").unwrap();
    let limits = Limits { pids_max: Some(8), ..Limits::default() };
    let plan = host
        .plan(&Placement::Child { name: "exprun-t", parent: Some("/user.slice") }, limits, false)
        .unwrap();
    fs::create_dir(dir.path().join("user.slice/exprun-t")).unwrap();
    let err = Cgroup::create(&plan).unwrap_err().to_string();
    assert!(err.contains("the pids controller is not available there"), "{err}");
    assert!(err.contains("user.slice/cgroup.controllers"), "{err}");
}

fn more_limits() -> Limits {
    Limits {
        cpuset_cpus: Some("0".into()),
        cpuset_mems: Some("0".into()),
        hugepages: [("2MB".to_string(), 4 << 20)].into(),
        block_io: BlockIo {
            weight: Some(500),
            throttles: vec![Throttle { kind: ThrottleKind::ReadBps, major: 254, minor: 0, rate: 1 << 20 }],
            ..BlockIo::default()
        },
        ..Limits::default()
    }
}

#[test]
fn cpuset_hugepage_and_block_io_limits_become_v1_and_v2_files() {
    let lines = |v2| {
        settings(&more_limits(), v2)
            .unwrap()
            .into_iter()
            .map(|s| format!("{}/{}={}", s.controller, s.file, s.value))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        lines(false),
        [
            "cpuset/cpuset.cpus=0",
            "cpuset/cpuset.mems=0",
            "hugetlb/hugetlb.2MB.limit_in_bytes=4194304",
            "blkio/blkio.weight=500",
            "blkio/blkio.throttle.read_bps_device=254:0 1048576",
        ]
    );
    assert_eq!(
        lines(true),
        [
            "cpuset/cpuset.cpus=0",
            "cpuset/cpuset.mems=0",
            "hugetlb/hugetlb.2MB.max=4194304",
            "io/io.bfq.weight=500",
            "io/io.max=254:0 rbps=1048576",
        ]
    );
    let v2 = settings(&more_limits(), true).unwrap();
    assert_eq!(v2[3].fallback, Some(("io.weight".to_string(), blkio_to_io_weight(500).to_string())));
    assert_eq!((blkio_to_io_weight(10), blkio_to_io_weight(1000)), (1, 10_000));
}

#[test]
fn settings_a_version_has_no_file_for_are_refused_by_field() {
    let leaf =
        Limits { block_io: BlockIo { leaf_weight: Some(100), ..BlockIo::default() }, ..Limits::default() };
    let e = settings(&leaf, true).unwrap_err().to_string();
    assert!(e.contains("linux.resources.blockIO.leafWeight") && e.contains("cgroup v2"), "{e}");
    assert_eq!(settings(&leaf, false).unwrap()[0].file, "blkio.leaf_weight");
    let unified =
        Limits { unified: [("memory.high".to_string(), "1G".to_string())].into(), ..Limits::default() };
    let e = settings(&unified, false).unwrap_err().to_string();
    assert!(e.contains("linux.resources.unified") && e.contains("cgroup v1"), "{e}");
    assert_eq!(settings(&unified, true).unwrap()[0].controller, "memory");
    for bad in ["cgroup.procs", "../x.max", "nodot", "memory.high/x"] {
        let l = Limits { unified: [(bad.to_string(), "1".to_string())].into(), ..Limits::default() };
        let e = settings(&l, true).unwrap_err().to_string();
        assert!(e.contains("linux.resources.unified") && e.contains(bad), "{e}");
    }
}

#[test]
fn a_v1_host_without_the_controller_refuses_the_field_by_name() {
    // HYBRID_MOUNTINFO has no cpuset, hugetlb or blkio hierarchy.
    let host = CgroupHost::parse(HYBRID_MOUNTINFO, HYBRID_SELF);
    let cases = [
        (Limits { cpuset_cpus: Some("0".into()), ..Limits::default() }, "linux.resources.cpu.cpus", "cpuset"),
        (Limits { hugepages: [("2MB".into(), 0)].into(), ..Limits::default() }, "hugepageLimits", "hugetlb"),
        (
            Limits { block_io: BlockIo { weight: Some(100), ..BlockIo::default() }, ..Limits::default() },
            "linux.resources.blockIO.weight",
            "blkio",
        ),
    ];
    for (limits, field, ctrl) in cases {
        let e =
            host.plan(&Placement::Child { name: "x", parent: None }, limits, false).unwrap_err().to_string();
        assert!(
            e.contains(field) && e.contains(&format!("the {ctrl} cgroup controller is not mounted")),
            "{e}"
        );
    }
    let mi = format!("{HYBRID_MOUNTINFO}36 30 0:32 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n");
    let host = CgroupHost::parse(&mi, "3:cpuset:/\n");
    let plan = host
        .plan(
            &Placement::Child { name: "x", parent: None },
            Limits { cpuset_cpus: Some("0".into()), ..Limits::default() },
            false,
        )
        .unwrap();
    assert_eq!(plan.dirs["cpuset"], Path::new("/sys/fs/cgroup/cpuset/x"));
    let plan = host.plan(&Placement::Child { name: "x", parent: None }, Limits::default(), false).unwrap();
    assert!(!plan.dirs.contains_key("cpuset"), "a run that asks for no cpuset stays out of that hierarchy");
}

#[test]
fn v2_missing_controller_refuses_the_field_and_present_ones_are_written() {
    let (dir, mut host) = v2_fixture();
    let e = host
        .plan(&Placement::Child { name: "x", parent: Some("/user.slice") }, more_limits(), false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("linux.resources.cpu.cpus") && e.contains("the cpuset controller is not enabled"),
        "{e}"
    );
    host.v2_controllers = ["cpuset", "cpu", "io", "memory", "hugetlb", "pids"].map(String::from).to_vec();
    fs::write(dir.path().join("user.slice/cgroup.controllers"), "cpuset cpu io memory hugetlb pids\n")
        .unwrap();
    let plan = host
        .plan(&Placement::Child { name: "x", parent: Some("/user.slice") }, more_limits(), false)
        .unwrap();
    let cg_dir = dir.path().join("user.slice/x");
    fs::create_dir(&cg_dir).unwrap();
    // The files a kernel without BFQ gives: io.weight but no io.bfq.weight.
    for f in ["cpuset.cpus", "cpuset.mems", "hugetlb.2MB.max", "io.weight", "io.max", "cgroup.procs"] {
        fs::write(cg_dir.join(f), "").unwrap();
    }
    let _cg = Cgroup::create(&plan).unwrap();
    let read = |f: &str| fs::read_to_string(cg_dir.join(f)).unwrap();
    assert_eq!(read("cpuset.cpus"), "0");
    assert_eq!(read("hugetlb.2MB.max"), "4194304");
    assert_eq!(read("io.weight"), blkio_to_io_weight(500).to_string());
    assert_eq!(read("io.max"), "254:0 rbps=1048576");
    let slice_ctl = read("../cgroup.subtree_control");
    assert_eq!(slice_ctl, "+io", "cpuset, hugetlb and io are enabled in turn; a plain file keeps the last");
    // A file the kernel does not offer is refused by field, not skipped.
    fs::remove_file(cg_dir.join("hugetlb.2MB.max")).unwrap();
    let e = Cgroup::adopt(&plan).apply(&more_limits()).unwrap_err().to_string();
    assert!(e.contains("linux.resources.hugepageLimits") && e.contains("hugetlb.2MB.max"), "{e}");
}

#[test]
fn a_new_v1_cpuset_gets_its_parents_cpus_and_mems_top_down() {
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path();
    fs::write(top.join("cpuset.cpus"), "0-3\n").unwrap();
    fs::write(top.join("cpuset.mems"), "0\n").unwrap();
    let mid = top.join("exp");
    let leaf = mid.join("run");
    fs::create_dir_all(&leaf).unwrap();
    for d in [&mid, &leaf] {
        fs::write(d.join("cpuset.cpus"), "\n").unwrap();
        fs::write(d.join("cpuset.mems"), "\n").unwrap();
    }
    limits::fill_v1_cpuset(&leaf).unwrap();
    for d in [&mid, &leaf] {
        assert_eq!(fs::read_to_string(d.join("cpuset.cpus")).unwrap(), "0-3");
        assert_eq!(fs::read_to_string(d.join("cpuset.mems")).unwrap(), "0");
    }
}

#[test]
fn memory_network_and_rdma_settings_are_the_files_runc_writes() {
    let l = Limits {
        memory_reservation: Some(32 << 20),
        memory_swappiness: Some(10),
        oom_kill_disable: true,
        net_class_id: Some(0x100001),
        net_priorities: vec![("lo".into(), 5), ("eth0".into(), 2)],
        rdma: [("mlx5_0".to_string(), RdmaLimit { hca_handles: Some(3), hca_objects: None })].into(),
        ..Limits::default()
    };
    let lines = |l: &Limits, v2| -> Vec<(String, String, String)> {
        settings(l, v2).unwrap().into_iter().map(|s| (s.controller, s.file, s.value)).collect()
    };
    let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        lines(&l, false),
        [
            s("memory", "memory.soft_limit_in_bytes", "33554432"),
            s("memory", "memory.swappiness", "10"),
            s("memory", "memory.oom_control", "1"),
            s("net_cls", "net_cls.classid", "1048577"),
            s("net_prio", "net_prio.ifpriomap", "lo 5"),
            s("net_prio", "net_prio.ifpriomap", "eth0 2"),
            s("rdma", "rdma.max", "mlx5_0 hca_handle=3"),
        ]
    );
    let v2 = Limits { memory_reservation: Some(-1), rdma: l.rdma.clone(), ..Limits::default() };
    assert_eq!(
        lines(&v2, true),
        [s("memory", "memory.low", "max"), s("rdma", "rdma.max", "mlx5_0 hca_handle=3")]
    );
    for (l, field) in [
        (Limits { memory_swappiness: Some(0), ..Limits::default() }, "linux.resources.memory.swappiness"),
        (Limits { oom_kill_disable: true, ..Limits::default() }, "linux.resources.memory.disableOOMKiller"),
        (Limits { net_class_id: Some(1), ..Limits::default() }, "linux.resources.network.classID"),
        (
            Limits { net_priorities: vec![("lo".into(), 1)], ..Limits::default() },
            "linux.resources.network.priorities",
        ),
    ] {
        let e = settings(&l, true).unwrap_err().to_string();
        assert!(e.contains(field) && e.contains("cgroup v2"), "{e}");
        assert!(settings(&l, false).is_ok());
    }
    let needs = limits::needed_controllers(&l, false).unwrap();
    let needs: Vec<&str> = needs.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(needs, ["memory", "net_cls", "net_prio", "rdma"]);
}

#[test]
fn swap_is_memory_plus_swap_on_v1_and_what_goes_on_top_on_v2_in_an_order_the_kernel_takes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files = |l: &Limits, v2| -> Vec<(&str, String)> {
        limits::memory_lines(l, v2, d).unwrap().into_iter().map(|(_, f, v)| (f, v)).collect()
    };
    let mem = |m: i64, s: Option<i64>| Limits { memory_bytes: Some(m), memory_swap: s, ..Limits::default() };
    // Without swap accounting only "no swap on top" goes unwritten.
    assert_eq!(files(&mem(100, None), false), [("memory.limit_in_bytes", "100".into())]);
    let e = limits::memory_lines(&mem(100, Some(200)), false, d).unwrap_err().to_string();
    assert!(e.contains("linux.resources.memory.swap") && e.contains("swapaccount=1"), "{e}");
    fs::write(d.join("memory.memsw.limit_in_bytes"), "").unwrap();
    fs::write(d.join("memory.swap.max"), "").unwrap();
    // A fresh cgroup (no limit yet): the limit first, then memory plus swap.
    assert_eq!(
        files(&mem(100, None), false),
        [("memory.limit_in_bytes", "100".into()), ("memory.memsw.limit_in_bytes", "100".into())]
    );
    // Growing past the current limit: memory plus swap first.
    fs::write(d.join("memory.limit_in_bytes"), "150\n").unwrap();
    assert_eq!(
        files(&mem(200, Some(300)), false),
        [("memory.memsw.limit_in_bytes", "300".into()), ("memory.limit_in_bytes", "200".into())]
    );
    assert_eq!(
        files(&mem(100, Some(120)), false),
        [("memory.limit_in_bytes", "100".into()), ("memory.memsw.limit_in_bytes", "120".into())]
    );
    assert_eq!(files(&mem(100, Some(-1)), false)[0], ("memory.memsw.limit_in_bytes", "-1".into()));
    assert_eq!(
        files(&mem(100, Some(300)), true),
        [("memory.max", "100".into()), ("memory.swap.max", "200".into())]
    );
    assert_eq!(files(&mem(100, None), true)[1], ("memory.swap.max", "0".into()));
    assert_eq!(files(&mem(100, Some(-1)), true)[1], ("memory.swap.max", "max".into()));
    for (m, s, why) in [
        (Some(100), 50, "less than the memory limit"),
        (None, 50, "needs a memory limit"),
        (Some(1), -2, "neither"),
    ] {
        let l = Limits { memory_bytes: m, memory_swap: Some(s), ..Limits::default() };
        let e = limits::memory_lines(&l, true, d).unwrap_err().to_string();
        assert!(e.contains("linux.resources.memory.swap") && e.contains(why), "{e}");
    }
}
