//! Helpers for the tests that drive the runc-compatible verbs on OCI bundles,
//! playing containerd's runc shim: the test process is a child subreaper, so a
//! container's init is reparented to it when `exprun create` exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use super::{privileged, TestRoot};

/// The tests reap grandchildren: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// A bundle whose rootfs is the fixture's base layer.
pub fn bundle(dir: &Path, args: &[&str]) -> PathBuf {
    let b = dir.join("bundle");
    std::fs::create_dir_all(b.join("rootfs")).unwrap();
    let archive = super::fixture_dir().join("busybox-docker.tar");
    let manifest = Command::new("tar").arg("-xOf").arg(&archive).arg("manifest.json").output().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    let layer = manifest[0]["Layers"][0].as_str().unwrap();
    let sh = format!("tar -xOf {} {layer} | tar -x -C {}", archive.display(), b.join("rootfs").display());
    assert!(Command::new("sh").args(["-c", &sh]).status().unwrap().success());
    let r = Command::new(super::exprun_bin()).args(["spec", "-b"]).arg(&b).status().unwrap();
    assert!(r.success());
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    config["process"]["args"] = serde_json::json!(args);
    config["process"]["terminal"] = serde_json::json!(false);
    // A path below a parent that does not exist yet: exprun makes it, as runc does.
    config["linux"]["cgroupsPath"] =
        serde_json::json!(format!("/{}/{}", parent_cgroup(), dir.file_name().unwrap().to_string_lossy()));
    config["annotations"] = serde_json::json!({"io.kubernetes.cri.container-name": "worker"});
    std::fs::write(b.join("config.json"), serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    b
}

/// The parent cgroup the bundles' cgroupsPath names (the test plays kubelet, who
/// owns such parents).
pub fn parent_cgroup() -> String {
    format!("exprun-oci-test-{}", std::process::id())
}

/// Remove the parent cgroups made for the bundles, in every hierarchy.
pub fn remove_parent_cgroups() {
    for e in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p = e.path().join(parent_cgroup());
        if p.is_dir() {
            std::fs::remove_dir(&p).unwrap_or_else(|err| panic!("{}: {err}", p.display()));
        }
    }
    let unified = std::path::Path::new("/sys/fs/cgroup").join(parent_cgroup());
    if unified.is_dir() {
        std::fs::remove_dir(&unified).unwrap();
    }
}

/// The tests share the parent cgroups, so they run one at a time.
pub struct Serial(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

pub fn serial() -> Serial {
    // A failed test must not fail the others through a poisoned lock.
    Serial(SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

impl Drop for Serial {
    /// A failed test leaves no container behind: kill what is in the parent
    /// cgroups and remove them, deepest first.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for e in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            super::remove_cgroup_tree(&e.path().join(parent_cgroup()));
        }
    }
}

/// `exprun --root R --log L --log-format json VERB ARGS`: (status, stdout, stderr).
pub fn oci(r: &TestRoot, log: &Path, args: &[&str]) -> (i32, String, String) {
    outcome(
        r.command(&["--log", log.to_str().unwrap(), "--log-format", "json"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    )
}

/// `exprun run -d -b B --pid-file PIDFILE ID`, asserted to succeed: the
/// container's init, as its pid file names it. The container's stdio is not
/// a pipe (it would stay open as long as the container runs); exprun's own
/// stderr goes to the test's.
pub fn run_detached(r: &TestRoot, b: &Path, pid_file: &Path, id: &str) -> nix::unistd::Pid {
    let st = r
        .command(&["run", "-d", "-b", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "run -d {id}: {st}");
    nix::unistd::Pid::from_raw(std::fs::read_to_string(pid_file).unwrap().trim().parse().unwrap())
}

pub fn status_of(r: &TestRoot, log: &Path, id: &str) -> serde_json::Value {
    let (code, out, err) = oci(r, log, &["state", id]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// What every bundle test starts from: the lock, this process as the
/// containers' subreaper (as the shim is), a private root and a work dir.
pub struct Shim {
    /// The state root.
    pub r: TestRoot,
    /// Scratch space for bundles, logs and pid files.
    pub work: tempfile::TempDir,
    _serial: Serial,
}

impl Drop for Shim {
    /// The parent cgroups the test made as kubelet would go with it (before the
    /// lock is released). A test that failed may have left a container inside;
    /// then they stay, and the test's own failure says why.
    fn drop(&mut self) {
        for e in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let _ = std::fs::remove_dir(e.path().join(parent_cgroup()));
        }
        let _ = std::fs::remove_dir(std::path::Path::new("/sys/fs/cgroup").join(parent_cgroup()));
    }
}

/// Set up `test`, or `None` (after printing SKIP) when it cannot run here.
pub fn shim(test: &str) -> Option<Shim> {
    if !privileged(test) {
        return None;
    }
    let serial = serial();
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    Some(Shim { r: TestRoot::new(), work: tempfile::tempdir().unwrap(), _serial: serial })
}

/// `runc` on this host, or `None` (the comparison is skipped, saying so;
/// under `CI=true` a skip is a failure).
pub fn runc(test: &str) -> Option<PathBuf> {
    let found = ["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc", "/usr/local/bin/runc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        super::skip(test, "runc is not installed, so the runc part cannot run");
    }
    found
}

/// Edit the bundle's config, with /dev mounted as containerd mounts it: without
/// the nodev that `exprun spec` adds, under which runc's device nodes do not open.
pub fn edit_for_runc(b: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    super::rootless::edit_config(b, |c| {
        for m in c["mounts"].as_array_mut().unwrap() {
            if m["destination"] == "/dev" {
                m["options"] = serde_json::json!(["nosuid", "strictatime", "mode=755", "size=65536k"]);
            }
        }
        f(c)
    })
}

/// A finished command's (status, stdout, stderr).
pub fn outcome(out: std::process::Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `runc run` of the bundle in the foreground: (status, stdout, stderr).
pub fn runc_run(runc: &Path, root: &Path, b: &Path, id: &str) -> (i32, String, String) {
    outcome(
        Command::new(runc)
            .arg("--root")
            .arg(root)
            .args(["run", "-b", b.to_str().unwrap(), id])
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    )
}
