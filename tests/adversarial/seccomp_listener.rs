//! A hostile bundle's `SCMP_ACT_NOTIFY` rule whose `linux.seccomp.listenerPath`
//! is not a seccomp agent: a regular file, a FIFO (a connect that must not
//! block), a directory, a dangling symlink. Each fails `create` naming the
//! field and the path, before the clone. A socket of another user, in a 0700
//! directory of that user, is connected to as runc does (exprun is root; the
//! listener is the bundle's to name): the agent gets this container's state
//! and notify fd, which concern only this container, and nothing on the host
//! changes.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;

use crate::common::bundle::{bundle, oci, shim};
use crate::host::{Marker, Snapshot};

fn notify_to(cfg: &mut serde_json::Value, listener: &std::path::Path) {
    cfg["linux"]["seccomp"] = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "listenerPath": listener,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
}

#[test]
fn a_listener_path_that_is_not_an_agent_is_refused_or_contained() {
    let Some(t) = shim("a_listener_path_that_is_not_an_agent_is_refused_or_contained") else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sh", "-c", "mkdir /attack; echo mkdir=$?"]);
    let cfg_path = b.join("config.json");
    let base: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    let log = work.join("log.json");
    let regular = work.join("regular");
    std::fs::write(&regular, "").unwrap();
    let fifo = work.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let dangling = work.join("dangling");
    std::os::unix::fs::symlink(work.join("nowhere/agent.sock"), &dangling).unwrap();
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    let cases = [
        (&regular, "Connection refused"),
        (&fifo, "Connection refused"),
        (&work.to_path_buf(), "Connection refused"),
        (&dangling, "No such file or directory"),
    ];
    for (path, says) in cases {
        let mut cfg = base.clone();
        notify_to(&mut cfg, path);
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "notify"]);
        assert_eq!(code, 125, "{} was not refused: {out}\n{err}", path.display());
        let named = format!("(linux.seccomp.listenerPath): {}: {says}", path.display());
        assert!(err.contains(&named), "{}: {err}", path.display());
    }

    // Another user's socket in that user's 0700 directory.
    let nobody = nix::unistd::Uid::from_raw(65534);
    let dir = work.join("nobody");
    std::fs::create_dir(&dir).unwrap();
    let sock = dir.join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    nix::unistd::chown(&sock, Some(nobody), Some(nix::unistd::Gid::from_raw(65534))).unwrap();
    nix::unistd::chown(&dir, Some(nobody), Some(nix::unistd::Gid::from_raw(65534))).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    // The agent reads the state (the notify fd, sent with it, is dropped) and
    // hangs up: the notified syscall then fails in the container.
    let agent = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = conn.read(&mut buf).unwrap();
        serde_json::from_slice::<serde_json::Value>(&buf[..n]).unwrap()
    });
    let mut cfg = base.clone();
    notify_to(&mut cfg, &sock);
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "notify"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "mkdir=1", "{err}");
    let message = agent.join().unwrap();
    assert_eq!(message["state"]["id"], "notify", "{message}");
    assert_eq!(message["fds"], serde_json::json!(["seccompFd"]), "{message}");
    assert!(!b.join("rootfs/attack").exists(), "the notified mkdir was done");
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "a listenerPath that is not an agent");
    r.assert_no_leftovers();
}
