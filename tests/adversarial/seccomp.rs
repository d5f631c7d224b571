//! Seccomp: every comparison operator of exprun's profile compiler checked
//! against runc's on the same bundle with a probe that makes the syscall, and
//! the attack of issue 13 (a container that clones itself into new namespaces
//! under the default profile, whose clone rule is a SCMP_CMP_MASKED_EQ).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::bundle::{bundle, shim};
use crate::common::rootless::{edit_config, Home};
use crate::common::{fixture_dir, privileged, repo, TestRoot};
use crate::host::{Marker, Snapshot};

/// The errno the operator profiles give a matched call: no syscall returns it
/// by itself here, so it can only come from the rule.
const MATCHED: i32 = 99;

/// The CLONE_NEW* flags the default profile's clone rule masks, each alone
/// and the pair the attack used (CLONE_NEWUSER | CLONE_NEWNET).
const NAMESPACE_FLAGS: &[&str] = &[
    "0x50000000",
    "0x10000000",
    "0x40000000",
    "0x20000",
    "0x2000000",
    "0x4000000",
    "0x8000000",
    "0x20000000",
];

/// The probe (seccomp_probe.c), compiled static into `dir`, readable by all.
fn probe(dir: &Path) -> PathBuf {
    let out = dir.join("probe");
    let st = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(repo().join("tests/adversarial/seccomp_probe.c"))
        .status()
        .expect("running cc");
    assert!(st.success(), "cc -static seccomp_probe.c failed: the test needs gcc and a static libc");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    out
}

/// runc, which the operator test compares with; `None` (after SKIP) without it.
fn runc(test: &str) -> Option<PathBuf> {
    let found = ["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc", "/usr/local/bin/runc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{test}: runc is not installed and CI=true");
        println!("SKIP: {test}: runc is not installed");
    }
    found
}

/// What a rule `op` with OCI's `value` and `valueTwo` means for argument `arg`.
fn matches(op: &str, value: u64, value_two: u64, arg: u64) -> bool {
    match op {
        "SCMP_CMP_NE" => arg != value,
        "SCMP_CMP_LT" => arg < value,
        "SCMP_CMP_LE" => arg <= value,
        "SCMP_CMP_EQ" => arg == value,
        "SCMP_CMP_GE" => arg >= value,
        "SCMP_CMP_GT" => arg > value,
        "SCMP_CMP_MASKED_EQ" => arg & value == value_two,
        _ => unreachable!("{op}"),
    }
}

/// A bundle of the fixture's base layer and the probe, as `/probe`, that runc
/// can run too: runc makes /dev's nodes with mknod, so /dev is not `nodev`
/// (as in runc's own spec and containerd's).
fn probe_bundle(work: &Path) -> PathBuf {
    let b = bundle(work, &["true"]);
    let bin = tempfile::tempdir().unwrap();
    std::fs::copy(probe(bin.path()), b.join("rootfs/probe")).unwrap();
    edit_config(&b, |c| {
        for m in c["mounts"].as_array_mut().unwrap() {
            if m["destination"] == "/dev" {
                m["options"].as_array_mut().unwrap().retain(|o| o != "nodev");
            }
        }
    });
    b
}

/// Run the bundle `b` (its command prints to stdout) with exprun and with
/// runc; their stdouts.
fn both(r: &TestRoot, runc: &Path, b: &Path, id: &str) -> (String, String) {
    let out = r.command(&["run", "--bundle", b.to_str().unwrap(), id]).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "exprun: {}", String::from_utf8_lossy(&out.stderr));
    let exprun = String::from_utf8(out.stdout).unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(runc)
        .arg("--root")
        .arg(state.path())
        .args(["run", "--bundle", b.to_str().unwrap(), id])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "runc: {}", String::from_utf8_lossy(&out.stderr));
    (exprun, String::from_utf8(out.stdout).unwrap())
}

#[test]
fn every_comparison_operator_matches_as_in_runc() {
    let Some(t) = shim("every_comparison_operator_matches_as_in_runc") else { return };
    let Some(runc) = runc("every_comparison_operator_matches_as_in_runc") else { return };
    let (r, work) = (&t.r, t.work.path());
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    let b = probe_bundle(work);

    // lseek's offset is 64 bits wide: values on both sides of the rule's, of
    // 2^32 and of the top bit, and values equal in one 32-bit half only.
    let a: u64 = 0x1_0000_0005;
    let args: Vec<u64> = vec![
        0,
        5,
        a - 1,
        a,
        a + 1,
        0x1_0000_0000,
        0xffff_ffff,
        0x2_0000_0005,
        0x8000_0000,
        0x8000_0000_0000_0000,
        u64::MAX,
        0x5000_0000,
        0x1_0000_0050,
        0x1_0000_0051,
        0x50,
        0x2_0000_0050,
    ];
    let cases: &[(&str, u64, u64)] = &[
        ("SCMP_CMP_NE", a, 0),
        ("SCMP_CMP_LT", a, 0),
        ("SCMP_CMP_LE", a, 0),
        ("SCMP_CMP_EQ", a, 0),
        ("SCMP_CMP_GE", a, 0),
        ("SCMP_CMP_GT", a, 0),
        // The 32-bit sign boundary, where a signed comparison would differ.
        ("SCMP_CMP_LT", 0x8000_0000, 0),
        // containerd's clone rule: none of the masked bits set.
        ("SCMP_CMP_MASKED_EQ", 0x7E02_0000, 0),
        // A mask across both halves and a datum that is not 0.
        ("SCMP_CMP_MASKED_EQ", 0xF_0000_00F0, 0x1_0000_0050),
    ];
    let mut cmd = vec!["/probe".to_string(), "lseek".into()];
    cmd.extend(args.iter().map(|v| format!("{v:#x}")));
    for (i, &(op, value, value_two)) in cases.iter().enumerate() {
        edit_config(&b, |c| {
            c["process"]["args"] = serde_json::json!(cmd);
            c["linux"]["seccomp"] = serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{
                    "names": ["lseek"], "action": "SCMP_ACT_ERRNO", "errnoRet": MATCHED,
                    "args": [{"index": 1, "value": value, "valueTwo": value_two, "op": op}]
                }]
            });
        });
        let want: String = args
            .iter()
            .map(|&v| {
                let errno = if matches(op, value, value_two, v) { MATCHED } else { libc::EBADF };
                format!("{v:#x} {errno}\n")
            })
            .collect();
        let (exprun, runc) = both(r, &runc, &b, &format!("op{i}"));
        let rule = format!("{op} value={value:#x} valueTwo={value_two:#x}");
        assert_eq!(runc, want, "runc, {rule}: lines are `argument errno`, {MATCHED} when the rule matched");
        assert_eq!(exprun, runc, "exprun and runc disagree on {rule} (lines are `argument errno`)");
    }
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "seccomp operators");
    r.assert_no_leftovers();
}

/// The probe's answer to a raw clone with each of `flags`: `FLAG ok` or
/// `FLAG EPERM`.
fn clone_lines(flags: &[&str], allowed: bool) -> String {
    flags
        .iter()
        .map(|f| if allowed { format!("{f} ok\n") } else { format!("{f} {}\n", libc::EPERM) })
        .collect()
}

#[test]
fn the_default_profile_refuses_clone_into_new_namespaces() {
    if !privileged("the_default_profile_refuses_clone_into_new_namespaces") {
        return;
    }
    let r = TestRoot::with_busybox();
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    let bin = tempfile::tempdir().unwrap();
    probe(bin.path());
    let volume = format!("{}:/p:ro", bin.path().display());
    let mut args = vec!["-v", &volume, "busybox:latest", "/p/probe", "clone", "0"];
    args.extend_from_slice(NAMESPACE_FLAGS);

    let (code, out, err) = r.run(&args);
    assert_eq!(code, 0, "{err}");
    let want = format!("0 ok\n{}", clone_lines(NAMESPACE_FLAGS, false));
    assert_eq!(out, want, "clone without namespace flags works, with any of them EPERM (`flags result`)");

    // CAP_SYS_ADMIN opens namespaces, as in Docker's profile.
    let mut admin = vec!["--cap-add", "SYS_ADMIN"];
    admin.extend_from_slice(&args);
    let (code, out, err) = r.run(&admin);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("0 ok\n{}", clone_lines(NAMESPACE_FLAGS, true)), "with --cap-add SYS_ADMIN");

    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "clone into new namespaces");
    r.assert_no_leftovers();
}

/// The same attack from a bundle whose config carries the default profile as
/// containerd writes its RuntimeDefault (the same MASKED_EQ clone rule), under
/// exprun and under runc.
#[test]
fn a_bundle_with_the_runtime_default_profile_refuses_clone_into_new_namespaces() {
    let test = "a_bundle_with_the_runtime_default_profile_refuses_clone_into_new_namespaces";
    let Some(t) = shim(test) else { return };
    let Some(runc) = runc(test) else { return };
    let (r, work) = (&t.r, t.work.path());
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    let b = probe_bundle(work);
    let caps: Vec<String> = exprun::spec::DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    let profile = exprun::seccomp::default::profile(&caps);
    edit_config(&b, |c| {
        let mut args = vec!["/probe", "clone", "0"];
        args.extend_from_slice(NAMESPACE_FLAGS);
        c["process"]["args"] = serde_json::json!(args);
        c["linux"]["seccomp"] = serde_json::to_value(&profile).unwrap();
    });
    let (exprun, runc) = both(r, &runc, &b, "runtime-default");
    let want = format!("0 ok\n{}", clone_lines(NAMESPACE_FLAGS, false));
    assert_eq!(runc, want, "runc");
    assert_eq!(exprun, want, "exprun (lines are `flags result`)");
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "clone from a RuntimeDefault bundle");
    r.assert_no_leftovers();
}

/// Rootless, where the container is already in a user namespace and the
/// kernel would let it nest another.
#[test]
fn a_rootless_container_may_not_clone_into_new_namespaces() {
    if !privileged("a_rootless_container_may_not_clone_into_new_namespaces (needs root to make the user)") {
        return;
    }
    let h = Home::new();
    let fixture = fixture_dir().join("busybox-oci");
    let (code, _, err) =
        h.exprun(&["image", "import", "--name", "busybox:latest", fixture.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[&h.root()]);
    let bin = tempfile::tempdir().unwrap();
    probe(bin.path());
    let volume = format!("{}:/p:ro", bin.path().display());
    let mut args = vec!["run", "--no-limits", "-v", &volume, "busybox:latest", "/p/probe", "clone", "0"];
    args.extend_from_slice(NAMESPACE_FLAGS);
    let (code, out, err) = h.exprun(&args);
    assert_eq!(code, 0, "{err}");
    let want = format!("0 ok\n{}", clone_lines(NAMESPACE_FLAGS, false));
    assert_eq!(out, want, "rootless: lines are `flags result`");
    Snapshot::take(&marker, &[&h.root()]).assert_same_as(&before, "rootless clone into new namespaces");
    h.remove_image();
    h.assert_no_leftovers();
}
