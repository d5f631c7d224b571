use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::super::model::{Model, BLOCK, CHAR, MKNOD, READ, WRITE};
use super::super::{always_allowed, apply_v2, deny_all, DeviceRule, ATTACH_CGROUP_DEVICE};
use super::*;

/// Run `prog` on a device access as the kernel would: an interpreter of the
/// instructions [`program`] emits (any other is a test failure).
fn run(prog: &[Insn], kind: u32, major: u32, minor: u32, access: u32) -> u64 {
    let ctx = [(access << 16) | kind, major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        let (d, s) = (usize::from(i.dst), usize::from(i.src));
        let imm = i64::from(i.imm) as u64;
        let target = (pc as i64 + 1 + i64::from(i.off)) as usize;
        pc += 1;
        match i.code {
            op::LDX_W => {
                assert_eq!(s, 1, "loads only from the context");
                r[d] = u64::from(ctx[usize::try_from(i.off).unwrap() / 4]);
            }
            op::MOV_X => r[d] = r[s],
            op::MOV_K => r[d] = imm,
            op::RSH_K => r[d] >>= i.imm,
            op::AND_K => r[d] &= imm,
            op::JNE32_K if r[d] as u32 != i.imm as u32 => pc = target,
            op::JNE_X if r[d] != r[s] => pc = target,
            op::JEQ_K if r[d] == imm => pc = target,
            op::JNE32_K | op::JNE_X | op::JEQ_K => {}
            op::EXIT => return r[0],
            c => panic!("opcode {c:#x} at {}", pc - 1),
        }
        assert!(pc < prog.len(), "ran off the end");
    }
}

fn rule(allow: bool, kind: char, major: Option<i64>, minor: Option<i64>, access: &str) -> DeviceRule {
    DeviceRule { allow, kind, major, minor, access: access.into() }
}

/// Rules, an access (type, major, minor, access bits), whether it is allowed.
type Case<'a> = (&'a [DeviceRule], (u32, u32, u32, u32), bool);

/// Rule sets and accesses, with what the v1 controller answers (worked out from
/// security/device_cgroup.c by hand, not by [`Model`]).
#[test]
fn the_program_decides_as_the_v1_controller() {
    let exprun_run: Vec<DeviceRule> = [deny_all()].into_iter().chain(always_allowed()).collect();
    let cases: &[Case<'_>] = &[
        (&exprun_run, (CHAR, 1, 3, READ | WRITE), true),
        (&exprun_run, (CHAR, 1, 3, MKNOD), true),
        (&exprun_run, (CHAR, 136, 7, READ | WRITE), true),
        (&exprun_run, (CHAR, 1, 4, READ), false),
        (&exprun_run, (BLOCK, 254, 0, READ), false),
        (&exprun_run, (BLOCK, 1, 3, READ), false),
        (&[], (BLOCK, 8, 0, READ), true),
        (&[rule(true, 'a', None, None, "rwm")], (BLOCK, 8, 0, READ | WRITE | MKNOD), true),
        (&[rule(false, 'a', None, None, "rwm")], (CHAR, 1, 3, READ), false),
        (
            &[rule(false, 'a', None, None, "rwm"), rule(true, 'b', Some(8), None, "r")],
            (BLOCK, 8, 16, READ),
            true,
        ),
        (
            &[rule(false, 'a', None, None, "rwm"), rule(true, 'b', Some(8), None, "r")],
            (BLOCK, 8, 16, READ | WRITE),
            false,
        ),
        (
            &[rule(false, 'a', None, None, "rwm"), rule(true, 'b', Some(8), None, "r")],
            (CHAR, 8, 16, READ),
            false,
        ),
        (&[rule(true, 'a', None, None, "rwm"), rule(false, 'b', None, None, "w")], (BLOCK, 8, 0, READ), true),
        (
            &[rule(true, 'a', None, None, "rwm"), rule(false, 'b', None, None, "w")],
            (BLOCK, 8, 0, READ | WRITE),
            false,
        ),
        (
            &[rule(true, 'a', None, None, "rwm"), rule(false, 'c', Some(1), Some(5), "rwm")],
            (CHAR, 1, 5, READ),
            false,
        ),
        (
            &[rule(true, 'a', None, None, "rwm"), rule(false, 'c', Some(1), Some(5), "rwm")],
            (CHAR, 1, 3, READ),
            true,
        ),
        (
            &[
                rule(false, 'a', None, None, "rwm"),
                rule(true, 'c', None, Some(3), "rw"),
                rule(false, 'c', None, Some(3), "w"),
            ],
            (CHAR, 9, 3, READ),
            true,
        ),
        (
            &[
                rule(false, 'a', None, None, "rwm"),
                rule(true, 'c', None, Some(3), "rw"),
                rule(false, 'c', None, Some(3), "w"),
            ],
            (CHAR, 9, 3, WRITE),
            false,
        ),
        (
            &[
                rule(false, 'a', None, None, "rwm"),
                rule(true, 'c', Some(1), Some(3), "rwm"),
                rule(true, 'a', None, None, ""),
            ],
            (BLOCK, 8, 0, READ),
            true,
        ),
        (
            &[rule(false, 'a', None, None, "rwm"), rule(true, 'c', Some(3_000_000_000), Some(1), "r")],
            (CHAR, 3_000_000_000, 1, READ),
            true,
        ),
        (
            &[rule(false, 'a', None, None, "rwm"), rule(true, 'c', Some(3_000_000_000), Some(1), "r")],
            (CHAR, 2_147_483_648, 1, READ),
            false,
        ),
    ];
    for (i, (rules, (kind, major, minor, access), want)) in cases.iter().enumerate() {
        let got = run(&program(rules), *kind, *major, *minor, *access) == 1;
        assert_eq!(got, *want, "case {i}: {rules:?} on {kind} {major}:{minor} access {access:#b}");
        assert_eq!(Model::from_rules(rules).allows(*kind, *major, *minor, *access), *want, "model, case {i}");
    }
}

/// Many rule sets over a small space of devices, the program against the model
/// it is built from: the jumps and the access tests, not the semantics.
#[test]
fn the_program_agrees_with_its_model_everywhere() {
    let mut seed = 0x2545_f491_u64;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let accesses = ["r", "w", "m", "rw", "rm", "wm", "rwm"];
    for _ in 0..300 {
        let rules: Vec<DeviceRule> = (0..next(7))
            .map(|_| {
                let kind = ['a', 'b', 'c', 'c'][next(4) as usize];
                let num = |v: u64| if v == 3 { None } else { Some(v as i64 + 1) };
                rule(next(2) == 0, kind, num(next(4)), num(next(4)), accesses[next(7) as usize])
            })
            .collect();
        let prog = program(&rules);
        let model = Model::from_rules(&rules);
        for kind in [BLOCK, CHAR] {
            for major in 0..5 {
                for minor in 0..5 {
                    for access in 1..8 {
                        let got = run(&prog, kind, major, minor, access) == 1;
                        assert_eq!(
                            got,
                            model.allows(kind, major, minor, access),
                            "{rules:?} {kind} {major}:{minor} {access}"
                        );
                    }
                }
            }
        }
    }
}

/// A child of the host's cgroup2 mount, removed on drop.
struct Cgroup2Child(PathBuf);

impl Drop for Cgroup2Child {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|f| f.get(2) == Some(&"cgroup2"))
        .map(|f| PathBuf::from(f[1]))
}

/// A block node in `dir` for a disk this process may open itself (one of
/// /proc/partitions, else the first loop device): only the program can stop it.
fn a_disk(dir: &Path) -> PathBuf {
    let parts = std::fs::read_to_string("/proc/partitions").unwrap();
    let listed = parts.lines().skip(2).filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        Some((f.first()?.parse().ok()?, f.get(1)?.parse().ok()?))
    });
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
    for (i, (major, minor)) in listed.chain([(7, 0)]).enumerate() {
        let node = dir.join(format!("disk{i}"));
        let dev = nix::sys::stat::makedev(major, minor);
        nix::sys::stat::mknod(&node, nix::sys::stat::SFlag::S_IFBLK, mode, dev).unwrap();
        if std::fs::File::open(&node).is_ok() {
            return node;
        }
    }
    panic!("no block device that this process may open");
}

/// Open each of `nodes` for reading from a process in `cgroup`: its shell's
/// words for each, `ok` or the error.
fn open_from(cgroup: &Path, nodes: &[&Path]) -> String {
    let script = r#"echo $$ > "$1/cgroup.procs" || exit 9; shift
        for f in "$@"; do if true < "$f"; then echo "$f ok"; fi; done 2>&1"#;
    let out = Command::new("sh").arg("-c").arg(script).arg("sh").arg(cgroup).args(nodes).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The real kernel runs the program: in a cgroup with deny-all and the bound
/// nodes allowed, a disk's node and /dev/zero's do not open (EPERM), /dev/null
/// does; with allow-all they all open.
#[test]
fn the_kernel_enforces_the_program_in_a_cgroup2_cgroup() {
    let root = nix::unistd::geteuid().is_root();
    let Some(mount) = cgroup2_mount().filter(|_| root) else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "needs root and a cgroup2 mount; CI=true forbids skipping"
        );
        println!("SKIP: needs root and a cgroup2 mount");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let disk = a_disk(tmp.path());
    let zero = tmp.path().join("zero");
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
    nix::sys::stat::mknod(&zero, nix::sys::stat::SFlag::S_IFCHR, mode, nix::sys::stat::makedev(1, 5))
        .unwrap();
    let null = Path::new("/dev/null");
    let nodes = [disk.as_path(), zero.as_path(), null];

    let denying = Cgroup2Child(mount.join(format!("exprun-test-devices-deny-{}", std::process::id())));
    std::fs::create_dir(&denying.0).unwrap();
    let rules = [deny_all(), rule(true, 'c', Some(1), Some(3), "rwm")];
    apply_v2(&denying.0, &rules).unwrap();
    let dir = std::fs::File::open(&denying.0).unwrap();
    assert_eq!(crate::sys::bpf_prog_query(dir.as_fd(), ATTACH_CGROUP_DEVICE).unwrap().len(), 1);
    let out = open_from(&denying.0, &nodes);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].contains(&disk.display().to_string()) && lines[0].contains("Operation not permitted"),
        "{out}"
    );
    assert!(
        lines[1].contains(&zero.display().to_string()) && lines[1].contains("Operation not permitted"),
        "{out}"
    );
    assert_eq!(lines[2], "/dev/null ok", "{out}");

    let allowing = Cgroup2Child(mount.join(format!("exprun-test-devices-allow-{}", std::process::id())));
    std::fs::create_dir(&allowing.0).unwrap();
    apply_v2(&allowing.0, &[rule(true, 'a', None, None, "rwm")]).unwrap();
    let out = open_from(&allowing.0, &nodes);
    assert_eq!(out, format!("{} ok\n{} ok\n/dev/null ok\n", disk.display(), zero.display()));
}

/// A run's cgroup on a v2 hierarchy (this host's cgroup2 mount, planned as a
/// unified host would be): `apply_devices` attaches the program made from the
/// rules `exprun run` uses, and the kernel applies it to the cgroup's processes.
#[test]
fn a_v2_cgroup_gets_its_device_rules_from_apply_devices() {
    use crate::cgroups::{Cgroup, CgroupHost, Limits, Version};
    use crate::plan::cgroup::Placement;
    let root = nix::unistd::geteuid().is_root();
    let Some(mount) = cgroup2_mount().filter(|_| root) else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "needs root and a cgroup2 mount; CI=true forbids skipping"
        );
        println!("SKIP: needs root and a cgroup2 mount");
        return;
    };
    let mi = format!("30 25 0:26 / {} rw,nosuid - cgroup2 cgroup2 rw\n", mount.display());
    let mut host = CgroupHost::parse(&mi, "0::/\n");
    host.v2_controllers = vec!["memory".into()];
    assert_eq!(host.version(), Version::V2);
    let devices = [deny_all()].into_iter().chain(always_allowed()).collect();
    let name = format!("/exprun-test-v2-devices-{}", std::process::id());
    let plan = host.plan(&Placement::Path(&name), Limits { devices, ..Limits::default() }, false).unwrap();
    let cg = Cgroup::create(&plan).unwrap();
    let dir = mount.join(&name[1..]);
    let _gone = Cgroup2Child(dir.clone());
    let opened = |nodes: &[&Path]| open_from(&dir, nodes);
    let tmp = tempfile::tempdir().unwrap();
    let disk = a_disk(tmp.path());
    assert_eq!(opened(&[&disk]), format!("{} ok\n", disk.display()), "before apply_devices");
    cg.apply_devices().unwrap();
    let out = opened(&[&disk, Path::new("/dev/null"), Path::new("/dev/urandom")]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].ends_with(&format!("{}: Operation not permitted", disk.display())), "{out}");
    assert_eq!(lines[1..], ["/dev/null ok", "/dev/urandom ok"], "{out}");
    cg.destroy().unwrap();
    assert!(!dir.exists());
}
