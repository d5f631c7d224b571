#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The runc-compatible verbs as an unprivileged user, on a bundle written by
//! `exprun spec --rootless`, as rootless containerd or podman would drive them.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::rootless::{edit_config, rootless_bundle, Home};
use common::{exprun_bin, privileged};

/// `exprun --root <home>/oci ARGS` as the user: (status, stdout, stderr).
fn oci(h: &Home, args: &[&str]) -> (i32, String, String) {
    let root = h.path().join("oci");
    let mut all = vec!["--root", root.to_str().unwrap()];
    all.extend_from_slice(args);
    h.exprun(&all)
}

/// The container's `status` from `exprun state`.
fn status(h: &Home, id: &str) -> String {
    let (code, out, err) = oci(h, &["state", id]);
    assert_eq!(code, 0, "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    s["status"].as_str().unwrap().to_string()
}

#[test]
fn an_unprivileged_user_drives_a_bundle_through_the_runc_verbs() {
    if !privileged(
        "an_unprivileged_user_drives_a_bundle_through_the_runc_verbs (needs root to make the user)",
    ) {
        return;
    }
    // The containers' inits are reparented to this process when `create` exits,
    // as they are to containerd's shim.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let h = Home::new();
    let work = tempfile::tempdir().unwrap();
    let script = "id -u; tr -s ' ' < /proc/self/uid_map; exit 4";
    let bundle = rootless_bundle(&h, work.path(), &["sh", "-c", script]);
    let b = bundle.to_str().unwrap();

    // `run`: root inside, the caller outside, the command's status.
    // With no limits in config.json and no cgroup to be had, it runs, with a note.
    let (code, stdout, err) = oci(&h, &["run", "-b", b, "r0"]);
    assert_eq!(code, 4, "{err}");
    assert_eq!(stdout, format!("0\n 0 {} 1\n", h.uid));
    assert!(err.contains("running without a cgroup") && err.contains("no cgroup can be had"), "{err}");

    // create, start, exec, ps, kill, delete.
    edit_config(&bundle, |c| c["process"]["args"] = serde_json::json!(["sleep", "300"]));
    let root = h.path().join("oci");
    // The container's init keeps create's stdio: a file, not a pipe to wait on.
    let err_file = work.path().join("create.err");
    let created = h
        .command(&exprun_bin(), &["--root", root.to_str().unwrap(), "create", "-b", b, "c1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_file).unwrap())
        .status()
        .unwrap();
    let create_err = std::fs::read_to_string(&err_file).unwrap();
    assert!(created.success(), "{create_err}");
    assert!(create_err.contains("running without a cgroup"), "create notes it too: {create_err}");
    assert_eq!(status(&h, "c1"), "created");
    let (code, _, err) = oci(&h, &["start", "c1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(status(&h, "c1"), "running");
    // The exec'd process is in the container's user and pid namespaces.
    let (code, stdout, err) =
        oci(&h, &["exec", "c1", "sh", "-c", "id -u; tr -s ' ' < /proc/self/uid_map; cat /proc/1/cmdline"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(stdout, format!("0\n 0 {} 1\nsleep\x00300\x00", h.uid));
    let (code, stdout, err) = oci(&h, &["ps", "--format", "json", "c1"]);
    assert_eq!(code, 0, "{err}");
    let pids: Vec<i64> = serde_json::from_str(&stdout).unwrap();
    let (_, state, _) = oci(&h, &["state", "c1"]);
    let init = serde_json::from_str::<serde_json::Value>(&state).unwrap()["pid"].as_i64().unwrap();
    assert_eq!(pids, [init], "without a cgroup, ps lists the processes of the container's pid namespace");
    let (code, _, err) = oci(&h, &["kill", "c1", "KILL"]);
    assert_eq!(code, 0, "{err}");
    let t0 = Instant::now();
    while status(&h, "c1") != "stopped" {
        let _ = nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        assert!(t0.elapsed() < Duration::from_secs(10), "c1 did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, _, err) = oci(&h, &["delete", "c1"]);
    assert_eq!(code, 0, "{err}");
    let (_, listed, _) = oci(&h, &["list", "-q"]);
    assert_eq!(listed, "");

    // Limits need a delegated cgroup, which this user has not got.
    edit_config(&bundle, |c| c["linux"]["resources"] = serde_json::json!({"pids": {"limit": 10}}));
    let (code, _, err) = oci(&h, &["run", "-b", b, "r1"]);
    assert_ne!(code, 0);
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains("config.json sets linux.resources.pids.limit, but")
            && err.contains("no cgroup2 subtree is delegated")
            && err.contains("remove them from config.json"),
        "{err}"
    );

    let live: Vec<_> =
        std::fs::read_dir(root.join("containers")).unwrap().flatten().map(|e| e.path()).collect();
    assert!(live.is_empty(), "containers left behind: {live:?}");
    let home = h.path().display().to_string();
    assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&home), "mounts left behind");
    // Reap what was reparented to this process, as the shim would.
    while let Ok(nix::sys::wait::WaitStatus::Exited(..) | nix::sys::wait::WaitStatus::Signaled(..)) =
        nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
    {}
    let procs = Command::new("pgrep").args(["-u", &h.uid.to_string()]).output().unwrap();
    assert!(procs.stdout.is_empty(), "processes left: {}", String::from_utf8_lossy(&procs.stdout));
}
