#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Process fields through `create`/`start` on a bundle: `consoleSize` sizes the
//! pty sent to `--console-socket` (with runc on the same bundle), and the
//! fields exprun does not apply are refused by name before anything is made.

mod common;

use std::io::{IoSliceMut, Read};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::bundle::{bundle, edit_for_runc as edit, oci, remove_parent_cgroups, runc, shim};

/// A console socket at `path`: the thread takes the pty master sent to it and
/// returns everything read from it until the container's side closes.
fn console_socket(path: &Path) -> std::thread::JoinHandle<String> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::AsRawFd;
        let (stream, _) = listener.accept().unwrap();
        let mut name = [0u8; 256];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty()).unwrap();
        let fd = msg
            .cmsgs()
            .unwrap()
            .find_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })
            .expect("no pty master came over the console socket");
        // SAFETY: the fd just arrived with SCM_RIGHTS; nothing else owns it.
        let mut master = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the last slave is closed: the command has ended.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    })
}

fn wait_stopped(state: impl Fn() -> String) {
    let t0 = Instant::now();
    while state() != "stopped" {
        assert!(t0.elapsed() < Duration::from_secs(10), "the container did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn console_size_is_the_size_of_the_pty_sent_to_the_console_socket_as_with_runc() {
    let test = "console_size_is_the_size_of_the_pty_sent_to_the_console_socket_as_with_runc";
    let Some(t) = shim(test) else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["stty", "size"]);
    edit(&b, |cfg| {
        cfg["process"]["terminal"] = serde_json::json!(true);
        cfg["process"]["consoleSize"] = serde_json::json!({"height": 33, "width": 101});
    });
    let log = work.join("log.json");
    let sock = work.join("console.sock");
    let got = console_socket(&sock);
    let (code, _, err) = oci(
        r,
        &log,
        &["create", "-b", b.to_str().unwrap(), "--console-socket", sock.to_str().unwrap(), "tty"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = oci(r, &log, &["start", "tty"]);
    assert_eq!(code, 0, "{err}");
    let out = got.join().unwrap();
    // The test process is the subreaper the container's init was handed to.
    let _ = nix::sys::wait::waitpid(None, None);
    wait_stopped(|| common::bundle::status_of(r, &log, "tty")["status"].as_str().unwrap_or("").to_string());
    assert_eq!(oci(r, &log, &["delete", "tty"]).0, 0);
    assert_eq!(out.trim(), "33 101", "stty size in the container");

    if let Some(runc) = runc(test) {
        let state = work.join("runc-root");
        let sock = work.join("runc-console.sock");
        let got = console_socket(&sock);
        let run = |args: &[&str]| {
            Command::new(&runc).arg("--root").arg(&state).args(args).stdin(Stdio::null()).output().unwrap()
        };
        let out =
            run(&["create", "-b", b.to_str().unwrap(), "--console-socket", sock.to_str().unwrap(), "rtty"]);
        assert!(out.status.success(), "runc create: {}", String::from_utf8_lossy(&out.stderr));
        assert!(run(&["start", "rtty"]).status.success());
        let runc_out = got.join().unwrap();
        let _ = nix::sys::wait::waitpid(None, None);
        let _ = run(&["delete", "-f", "rtty"]);
        assert_eq!(runc_out.trim(), "33 101", "stty size under runc");
    }
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn process_and_config_fields_exprun_does_not_apply_are_refused_by_name() {
    let Some(t) = shim("process_and_config_fields_exprun_does_not_apply_are_refused_by_name") else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["true"]);
    let log = work.join("log.json");
    for (field, value, named) in [
        (
            "process",
            serde_json::json!({"ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 0}}),
            "ioPriority",
        ),
        ("process", serde_json::json!({"scheduler": {"policy": "SCHED_IDLE"}}), "scheduler"),
        ("process", serde_json::json!({"selinuxLabel": "system_u:system_r:container_t:s0"}), "selinuxLabel"),
        ("linux", serde_json::json!({"intelRdt": {"closID": "exprun"}}), "linux.intelRdt"),
        (
            "linux",
            serde_json::json!({"timeOffsets": {"boottime": {"secs": 5, "nanosecs": 0}}}),
            "linux.timeOffsets",
        ),
    ] {
        let saved = std::fs::read(b.join("config.json")).unwrap();
        edit(&b, |cfg| {
            for (k, v) in value.as_object().unwrap() {
                cfg[field][k] = v.clone();
            }
        });
        // `run -b`, not `create`: a container made after all must not keep
        // this test's pipes open and hang it instead of failing it.
        let (code, _, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "refused"]);
        assert_eq!(code, 125, "{named}: {err}");
        assert!(err.contains(named) && err.contains("remove the field"), "{named}: {err}");
        assert_ne!(oci(r, &log, &["state", "refused"]).0, 0, "{named}: a container was left");
        std::fs::write(b.join("config.json"), saved).unwrap();
    }
    // The same config without them runs.
    let (code, _, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "plain"]);
    assert_eq!(code, 0, "{err}");
    r.assert_no_leftovers();
    remove_parent_cgroups();
}
