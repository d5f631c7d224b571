//! CVE-2019-5736, rootless: the caller's own copy of exprun, which a rootless
//! container's root could write (it holds CAP_DAC_OVERRIDE over the caller's
//! files), runs from a bind mount whose read-only flag the kernel has locked.
//! A container root with CAP_SYS_ADMIN in its own namespaces and the host's
//! /proc in reach holds a descriptor of a running exprun's binary through
//! /proc/<pid>/exe, and once that exprun has exited tries to make the mount
//! writable and to write the binary.

use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::common::rootless::{edit_config, rootless_bundle, Home};
use crate::common::{exprun_bin, privileged, repo};

/// The container's `exprun run`, killed if the test fails before it ends
/// (the probe also gives up after 30 s).
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The probe (selfexe_probe.c), compiled static into `dir`.
fn probe(dir: &Path) -> PathBuf {
    let out = dir.join("probe");
    let st = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(repo().join("tests/adversarial/selfexe_probe.c"))
        .status()
        .expect("running cc");
    assert!(st.success(), "cc -static selfexe_probe.c failed: the test needs gcc and a static libc");
    out
}

#[test]
fn a_rootless_container_cannot_make_the_callers_exprun_writable_through_proc_pid_exe() {
    if !privileged(
        "a_rootless_container_cannot_make_the_callers_exprun_writable_through_proc_pid_exe (needs root to make the user)",
    ) {
        return;
    }
    let h = Home::new();
    let work = tempfile::tempdir().unwrap();
    // The caller's own exprun, mode 755: the container's root maps its owner.
    let own = h.path().join("exprun");
    std::fs::copy(exprun_bin(), &own).unwrap();
    std::os::unix::fs::chown(&own, Some(h.uid), Some(h.gid)).unwrap();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o755)).unwrap();
    let digest = |p: &Path| hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()));
    let was = digest(&own);
    let m = std::fs::metadata(&own).unwrap();

    let bundle = rootless_bundle(&h, work.path(), &["/probe"]);
    let p = probe(&bundle.join("rootfs"));
    let sock = work.path().join("sock");
    std::fs::create_dir(&sock).unwrap();
    for f in [&p, &sock] {
        std::os::unix::fs::chown(f, Some(h.uid), Some(h.gid)).unwrap();
    }
    edit_config(&bundle, |c| {
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set].as_array_mut().unwrap().push("CAP_SYS_ADMIN".into());
        }
        c["linux"].as_object_mut().unwrap().remove("seccomp");
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(serde_json::json!({
            "destination": "/hproc", "type": "bind", "source": "/proc",
            "options": ["rbind", "nosuid", "nodev", "noexec"]
        }));
        mounts.push(serde_json::json!({
            "destination": "/sock", "type": "bind", "source": sock, "options": ["bind"]
        }));
    });
    let root = h.path().join("oci");
    let root = root.to_str().unwrap();
    // The container runs under the root-owned build of exprun (which needs no
    // protection: the container's root does not map its owner), so that once
    // the `exec` below has ended, no process runs the caller's copy.
    let mut run = KillOnDrop(Some(
        h.command(&exprun_bin(), &["--root", root, "run", "-b", bundle.to_str().unwrap(), "attacked"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let waited = |what: &str, done: &dyn Fn() -> bool| {
        let t0 = Instant::now();
        while !done() {
            assert!(t0.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    waited("the probe never listened", &|| sock.join("s").exists());
    let exec = h
        .command(&own, &["--root", root, "--debug", "exec", "attacked", "sleep", "1"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The exec's exprun, once it has re-executed itself: its /proc/<pid>/exe
    // is the caller's copy, no longer reached through its path (a detached
    // mount's link reads `/`, a memfd's `/memfd:...`).
    let exe = format!("/proc/{}/exe", exec.id());
    let runs_own = || {
        std::fs::metadata(&exe).is_ok_and(|e| (e.dev(), e.ino()) == (m.dev(), m.ino()))
            && std::fs::read_link(&exe).is_ok_and(|l| l != own)
    };
    waited("the exec never ran the caller's exprun", &runs_own);
    let held =
        nix::fcntl::open(exe.as_str(), nix::fcntl::OFlag::O_PATH, nix::sys::stat::Mode::empty()).unwrap();
    let stream = std::os::unix::net::UnixStream::connect(sock.join("s")).unwrap();
    let pid = exec.id().to_string();
    let fds = [held.as_raw_fd()];
    nix::sys::socket::sendmsg::<()>(
        stream.as_raw_fd(),
        &[std::io::IoSlice::new(pid.as_bytes())],
        &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .unwrap();
    drop(held);
    drop(stream);
    let exec = exec.wait_with_output().unwrap();
    let exec_err = String::from_utf8_lossy(&exec.stderr);
    assert!(exec.status.success(), "{exec_err}");
    assert!(exec_err.contains("running from a locked read-only bind mount of exprun's binary"), "{exec_err}");
    let out = run.0.take().unwrap().wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The container cannot open the link itself (it has no CAP_SYS_PTRACE
    // over a process outside its user namespace). With the descriptor in
    // hand it can neither make the mount writable (the kernel unmounted it
    // when exprun's open_tree descriptor closed at the re-exec; its flags
    // can no longer be changed), nor clone it into a namespace of its own,
    // nor write through it.
    assert_eq!(
        stdout, "direct=EACCES\nsetattr=EINVAL\nremount=EINVAL\nopen=EROFS\nclone=EINVAL\n",
        "the container's root wrote exprun's binary or made its mount writable"
    );
    assert_eq!(digest(&own), was, "the caller's exprun changed");
    let live: Vec<_> = std::fs::read_dir(h.path().join("oci/containers"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(live.is_empty(), "containers left behind: {live:?}");
    let home = h.path().display().to_string();
    assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&home), "mounts left behind");
    let procs = Command::new("pgrep").args(["-f", &home]).output().unwrap();
    assert!(procs.stdout.is_empty(), "processes left: {}", String::from_utf8_lossy(&procs.stdout));
}
