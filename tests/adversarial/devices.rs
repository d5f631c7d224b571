//! Attacks on the device nodes a container gets, and on `exec --cwd`.
//!
//! Container root holds CAP_CHOWN, CAP_FOWNER and CAP_MKNOD. If its /dev/null
//! were the host's inode (a bind mount), `chown` inside would change the
//! host's; the container must own its nodes. `exec --cwd` through a /proc
//! magic link (a descriptor the exec'd process holds, CVE-2024-21626) must not
//! land outside the container's root.

use std::path::Path;
use std::process::Stdio;

use nix::sys::wait::waitpid;

use crate::common::bundle::{bundle, oci, run_detached, shim};
use crate::common::{privileged, TestRoot};
use crate::host::{Marker, Snapshot};

/// Every default node and a masked file (bound from /dev/null) attacked as
/// root inside; then the nodes must still work. Prints `changed` or `refused`
/// per attempt (the container's own nodes may change; the host's never).
const ATTACK: &str = r#"
for n in /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty /proc/kcore; do
  chown 1234:1234 $n 2>/dev/null; chmod 0600 $n 2>/dev/null; touch $n 2>/dev/null
  chmod 0666 /dev/null 2>/dev/null
done
echo x > /dev/null && echo null-works
head -c 4 /dev/zero | od -An -tx1 | tr -d ' \n'; echo
head -c 4 /dev/urandom | wc -c
"#;

fn assert_nodes_work(out: &str, err: &str) {
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 3, "stdout: {out}\nstderr: {err}");
    assert_eq!(lines[0], "null-works", "stderr: {err}");
    assert_eq!(lines[1], "00000000", "/dev/zero: {out}");
    assert_eq!(lines[2].trim(), "4", "/dev/urandom: {out}");
}

#[test]
fn run_container_cannot_change_the_hosts_device_nodes() {
    if !privileged("run_container_cannot_change_the_hosts_device_nodes") {
        return;
    }
    let r = TestRoot::with_busybox();
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    // A node the container makes itself (CAP_MKNOD) sits on the nodev /dev:
    // opening it is refused, so it cannot reach a host device.
    let script = format!(
        "{ATTACK}mknod /dev/mine c 1 3 && echo made; echo y > /dev/mine && echo mine-works; \
         stat -c '%u:%g %a %t:%T' /dev/null"
    );
    let (code, out, err) = r.run(&["busybox:latest", "sh", "-c", &script]);
    assert_eq!(code, 0, "{err}");
    assert_nodes_work(&out, &err);
    assert!(out.contains("made"), "mknod was not even allowed: {out}\n{err}");
    assert!(!out.contains("mine-works"), "a node made in the container works: {out}");
    // The attack really changed the container's own node.
    assert!(out.contains("1234:1234 666 1:3"), "the container's /dev/null is not its own: {out}");
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "chown/chmod/touch of /dev nodes in a run");
    r.assert_no_leftovers();
}

/// A bundle as containerd writes it: /dev a tmpfs without nodev, where runc
/// makes the nodes with mknod.
#[test]
fn bundle_container_cannot_change_the_hosts_device_nodes() {
    let Some(t) = shim("bundle_container_cannot_change_the_hosts_device_nodes") else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sh", "-c", ATTACK]);
    let cfg_path = b.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    for m in cfg["mounts"].as_array_mut().unwrap() {
        if m["destination"] == "/dev" {
            m["options"] = serde_json::json!(["nosuid", "strictatime", "mode=755", "size=65536k"]);
        }
    }
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    let log = b.join("log.json");
    let (code, out, err) = oci(r, &log, &["run", "--bundle", b.to_str().unwrap(), "devs"]);
    assert_eq!(code, 0, "{err}");
    assert_nodes_work(&out, &err);
    Snapshot::take(&marker, &[r.path()])
        .assert_same_as(&before, "chown/chmod/touch of /dev nodes in a bundle");
    r.assert_no_leftovers();
}

/// `exprun exec` with a host directory open as fd 9 (a caller's leaked
/// descriptor, which the exec'd process holds until it execs).
fn exec_with_host_fd(r: &TestRoot, host_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let cmd = r.command(args);
    let prog = cmd.get_program().to_owned();
    let argv: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut sh = std::process::Command::new("sh");
    sh.arg("-c").arg("exec 9<\"$0\"; shift; exec \"$@\"").arg(host_dir).arg("--").arg(prog).args(argv);
    sh.env_clear().envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))));
    let out = sh.stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn exec_cwd_through_a_magic_link_is_refused() {
    let Some(t) = shim("exec_cwd_through_a_magic_link_is_refused") else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sleep", "60"]);
    std::os::unix::fs::symlink("/", b.join("rootfs/to-root")).unwrap();
    std::os::unix::fs::symlink("../../../../..", b.join("rootfs/tmp/up")).unwrap();
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    let log = b.join("log.json");
    let pid_file = work.join("init.pid");
    let init = run_detached(r, &b, &pid_file, "c");

    // A magic link, to a host directory the process holds or through init's
    // cwd: refused, before the command runs.
    let show = "pwd; ls";
    for cwd in ["/proc/self/fd/9", "/proc/1/cwd/..", "/proc/self/root"] {
        let (code, out, err) =
            exec_with_host_fd(r, marker.path(), &["exec", "--cwd", cwd, "c", "sh", "-c", show]);
        assert_eq!(code, 125, "--cwd {cwd} was not refused: {out}\n{err}");
        assert!(!out.contains("secret"), "--cwd {cwd} reached the host's marker tree: {out}");
        assert!(err.contains("magic link"), "--cwd {cwd}: {err}");
    }
    // Symlinks out of the root resolve inside it.
    for cwd in ["/to-root", "/tmp/up"] {
        let (code, out, err) =
            exec_with_host_fd(r, marker.path(), &["exec", "--cwd", cwd, "c", "sh", "-c", "pwd; ls /"]);
        assert_eq!(code, 0, "--cwd {cwd}: {err}");
        assert!(out.starts_with("/\n") && out.contains("bin"), "--cwd {cwd} left the root: {out}");
    }
    assert_eq!(oci(r, &log, &["kill", "c", "KILL"]).0, 0);
    waitpid(init, None).unwrap();
    let (code, _, err) = oci(r, &log, &["delete", "c"]);
    assert_eq!(code, 0, "{err}");
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "exec --cwd through a magic link");
    r.assert_no_leftovers();
}

/// `run` refuses the same working directory with the same message.
#[test]
fn run_cwd_through_a_magic_link_is_refused() {
    if !privileged("run_cwd_through_a_magic_link_is_refused") {
        return;
    }
    let r = TestRoot::with_busybox();
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    let args = ["run", "-w", "/proc/self/fd/9", "busybox:latest", "sh", "-c", "pwd; ls"];
    let (code, out, err) = exec_with_host_fd(&r, marker.path(), &args);
    assert_eq!(code, 125, "not refused: {out}\n{err}");
    assert!(err.contains("magic link"), "{err}");
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "run --cwd through a magic link");
    r.assert_no_leftovers();
}
