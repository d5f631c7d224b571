//! Device rules (`linux.resources.devices`) against a container that holds
//! CAP_MKNOD and a /dev that allows device nodes (as containerd's does): the
//! cgroup must stop it from opening a disk, whether the node was made by the
//! runtime (`linux.devices`) or by the container itself. On cgroup v1 the
//! devices controller decides; on cgroup v2 the BPF program exprun attaches.
//! The same tests prove either, on whichever host runs them.

use crate::common::bundle::{bundle, oci, shim};
use crate::common::{privileged, TestRoot};

/// A disk this test process may open itself (one of /proc/partitions, else the
/// first loop device), as (major, minor): only the container's rules can stop it.
fn openable_disk() -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let parts = std::fs::read_to_string("/proc/partitions").unwrap();
    let listed = parts.lines().skip(2).filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        Some((f.first()?.parse().ok()?, f.get(1)?.parse().ok()?))
    });
    for (i, (major, minor)) in listed.chain([(7, 0)]).enumerate() {
        let node = dir.path().join(i.to_string());
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
        let dev = nix::sys::stat::makedev(major, minor);
        nix::sys::stat::mknod(&node, nix::sys::stat::SFlag::S_IFBLK, mode, dev).unwrap();
        if std::fs::File::open(&node).is_ok() {
            return (major, minor);
        }
    }
    panic!("no block device that this process may open");
}

/// Open the runtime's node, make one and open it, use /dev/null; one line each
/// for what worked, the shell's errors inline.
fn attack((major, minor): (u64, u64)) -> String {
    format!(
        "exec 2>&1; true < /dev/xdisk && echo given-opened; mknod /dev/made b {major} {minor} && echo made; \
         true < /dev/made && echo made-opened; echo x > /dev/null && echo null-works"
    )
}

/// A bundle running [`attack`] with `rules` as its device rules, /dev without
/// nodev and the disk given as `linux.devices`; its output.
fn run_bundle(test: &str, rules: serde_json::Value) -> Option<String> {
    let t = shim(test)?;
    let (r, work) = (&t.r, t.work.path());
    let disk = openable_disk();
    let b = bundle(work, &["sh", "-c", &attack(disk)]);
    let cfg_path = b.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    for m in cfg["mounts"].as_array_mut().unwrap() {
        if m["destination"] == "/dev" {
            m["options"] = serde_json::json!(["nosuid", "strictatime", "mode=755", "size=65536k"]);
        }
    }
    cfg["linux"]["devices"] = serde_json::json!([{
        "path": "/dev/xdisk", "type": "b", "major": disk.0, "minor": disk.1, "fileMode": 0o600, "uid": 0, "gid": 0
    }]);
    cfg["linux"]["resources"] = serde_json::json!({ "devices": rules });
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    let log = b.join("log.json");
    let (code, out, err) = oci(r, &log, &["run", "--bundle", b.to_str().unwrap(), "devs"]);
    assert_eq!(code, 0, "{err}\n{out}");
    r.assert_no_leftovers();
    Some(out)
}

#[test]
fn bundle_deny_all_stops_a_disk_node() {
    let rules = serde_json::json!([{ "allow": false, "access": "rwm" }]);
    let Some(out) = run_bundle("bundle_deny_all_stops_a_disk_node", rules) else { return };
    let said = |word: &str| out.lines().any(|l| l == word);
    assert!(!said("given-opened"), "the runtime's disk node opened under deny-all: {out}");
    assert!(!said("made") && !said("made-opened"), "mknod of a disk worked under deny-all: {out}");
    assert!(out.contains("xdisk: Operation not permitted"), "{out}");
    assert!(out.contains("mknod: /dev/made: Operation not permitted"), "{out}");
    assert!(said("null-works"), "/dev/null must stay usable: {out}");
}

#[test]
fn bundle_allow_all_opens_the_disk_node() {
    let rules = serde_json::json!([{ "allow": true, "access": "rwm" }]);
    let Some(out) = run_bundle("bundle_allow_all_opens_the_disk_node", rules) else { return };
    for word in ["given-opened", "made", "made-opened", "null-works"] {
        assert!(out.lines().any(|l| l == word), "{word} missing under allow-all: {out}");
    }
}

/// `exprun run` denies every device but the bound nodes: a disk node cannot
/// even be made.
#[test]
fn run_cannot_make_a_disk_node() {
    if !privileged("run_cannot_make_a_disk_node") {
        return;
    }
    let r = TestRoot::with_busybox();
    let (major, minor) = openable_disk();
    let script =
        format!("mknod /dev/made b {major} {minor} && echo made; mknod /dev/n c 1 3 && echo null-made");
    let (code, out, err) = r.run(&["busybox:latest", "sh", "-c", &script]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "null-made", "a disk node was made, or /dev/null's was not: {out}\n{err}");
    assert!(err.contains("mknod: /dev/made: Operation not permitted"), "{err}");
    r.assert_no_leftovers();
}

/// `exprun features` says what enforces device rules on this host (the OCI
/// document has no field for it).
#[test]
fn features_says_what_enforces_device_rules() {
    if !privileged("features_says_what_enforces_device_rules") {
        return;
    }
    let out = std::process::Command::new(crate::common::exprun_bin()).arg("features").output().unwrap();
    assert!(out.status.success());
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let devices = f["annotations"]["dev.exprun.devices"].as_str().unwrap();
    assert!(
        devices == "enforced by the cgroup v1 devices controller"
            || devices == "enforced by the cgroup v2 device BPF program",
        "{devices}"
    );
}
