#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What a bundle's config.json asks for beyond the process and its mounts, as
//! containerd's CRI plugin writes it: hooks, seccomp, device nodes and rules.

mod common;

use std::process::Stdio;

use common::bundle::{bundle, oci, remove_parent_cgroups, shim};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

#[test]
fn the_six_kinds_of_hooks_run_at_their_points_with_the_state() {
    let Some(t) = shim("the_six_kinds_of_hooks_run_at_their_points_with_the_state") else { return };
    let (r, work) = (&t.r, t.work.path());
    let out = work.join("hooks");
    std::fs::create_dir(&out).unwrap();
    let b = bundle(work, &["sleep", "60"]);
    let log = b.join("log.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    // Runtime-side hooks write where they run (the host); createContainer runs
    // in the container's namespaces before pivot_root (so host paths still
    // resolve); startContainer runs in the container, which sees `out` at /hooks.
    let host_hook = |name: &str| serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}/{name}.json", out.display())], "timeout": 5});
    cfg["hooks"] = serde_json::json!({
        "prestart": [host_hook("prestart")],
        "createRuntime": [host_hook("createRuntime")],
        "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}/createContainer.json; readlink /proc/self/ns/mnt > {}/createContainer.ns", out.display(), out.display())]}],
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /hooks/startContainer.json"]}],
        "poststart": [host_hook("poststart")],
        "poststop": [host_hook("poststop")]
    });
    cfg["root"]["readonly"] = serde_json::json!(false);
    cfg["mounts"].as_array_mut().unwrap().push(serde_json::json!(
        {"destination": "/hooks", "type": "bind", "source": out, "options": ["rbind", "rw"]}
    ));
    std::fs::write(b.join("config.json"), cfg.to_string()).unwrap();
    let pid_file = b.join("init.pid");
    let st = r
        .command(&["create", "-b", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), "h"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    let init: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(out.join(format!("{name}.json"))).unwrap_or_else(|e| panic!("{name}: {e}")),
        )
        .unwrap()
    };
    for name in ["prestart", "createRuntime", "createContainer"] {
        let s = read(name);
        assert_eq!(
            (s["id"].as_str(), s["status"].as_str(), s["pid"].as_i64()),
            (Some("h"), Some("creating"), Some(init as i64)),
            "{name}"
        );
    }
    assert!(!out.join("startContainer.json").exists(), "startContainer ran before start");
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let cc_mnt = std::fs::read_to_string(out.join("createContainer.ns")).unwrap();
    assert_ne!(
        cc_mnt.trim(),
        host_mnt.to_string_lossy(),
        "createContainer must run in the container's mount namespace"
    );

    assert_eq!(oci(r, &log, &["start", "h"]).0, 0);
    assert_eq!(read("poststart")["status"], "running");
    let t0 = std::time::Instant::now();
    while !out.join("startContainer.json").exists() {
        assert!(t0.elapsed() < std::time::Duration::from_secs(5), "startContainer did not run");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(oci(r, &log, &["delete", "--force", "h"]).0, 0);
    waitpid(Pid::from_raw(init), None).unwrap();
    assert_eq!(read("poststop")["status"], "stopped");

    // A failing createRuntime hook fails create, and leaves nothing.
    cfg["hooks"] = serde_json::json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo refused >&2; exit 1"]}]});
    std::fs::write(b.join("config.json"), cfg.to_string()).unwrap();
    let (code, _, err) = oci(r, &log, &["create", "-b", b.to_str().unwrap(), "bad"]);
    assert_ne!(code, 0);
    assert!(err.contains("createRuntime hook") && err.contains("refused"), "{err}");
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn a_seccomp_profile_applies_to_init_and_exec() {
    let Some(t) = shim("a_seccomp_profile_applies_to_init_and_exec") else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sh", "-c", "grep Seccomp: /proc/self/status; mkdir /tmp/x 2>&1; read wait"]);
    let log = b.join("log.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    cfg["root"]["readonly"] = serde_json::json!(false);
    cfg["linux"]["seccomp"] = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    // Without no_new_privs the filter goes in while init still has CAP_SYS_ADMIN.
    for nnp in [true, false] {
        cfg["process"]["noNewPrivileges"] = serde_json::json!(nnp);
        std::fs::write(b.join("config.json"), cfg.to_string()).unwrap();
        let pid_file = b.join("init.pid");
        let id = format!("s{nnp}");
        let mut create = r
            .command(&["create", "-b", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), &id])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = create.stdin.take().unwrap();
        let stdout = create.stdout.take().unwrap();
        assert!(create.wait().unwrap().success(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
        let init = Pid::from_raw(std::fs::read_to_string(&pid_file).unwrap().parse().unwrap());
        assert_eq!(oci(r, &log, &["start", &id]).0, 0);
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        assert_eq!(lines.next().unwrap().unwrap(), "Seccomp:\t2");
        assert!(lines.next().unwrap().unwrap().contains("Operation not permitted"), "mkdir was allowed");
        let (code, out, _) = oci(r, &log, &["exec", &id, "sh", "-c", "mkdir /tmp/y 2>&1; true"]);
        assert_eq!(code, 0);
        assert!(out.contains("Operation not permitted"), "exec'd processes get the filter too: {out}");
        std::io::Write::write_all(&mut stdin, b"done\n").unwrap();
        assert_eq!(waitpid(init, None).unwrap(), WaitStatus::Exited(init, 0));
        assert_eq!(oci(r, &log, &["delete", &id]).0, 0);
    }
    let rec = r.last_record();
    assert!(rec["seccomp_digest"].as_str().unwrap().starts_with("sha256:"));
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn device_nodes_are_made_and_device_rules_enforced() {
    let Some(t) = shim("device_nodes_are_made_and_device_rules_enforced") else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(
        work,
        &[
            "sh",
            "-c",
            "stat -c '%a %u %g %t:%T' /dev/mynull; echo x > /dev/mynull && echo write-ok; \
             head -c1 /dev/sub/kmsg2 >/dev/null 2>&1 && echo kmsg2-open || echo kmsg2-denied; \
             head -c1 /dev/zero | wc -c; \
             cat /sys/fs/cgroup/devices/devices.list",
        ],
    );
    let log = b.join("log.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    // /dev as containerd's CRI plugin mounts it: without nodev, so nodes work.
    for m in cfg["mounts"].as_array_mut().unwrap() {
        if m["destination"] == "/dev" {
            m["options"] = serde_json::json!(["nosuid", "strictatime", "mode=755", "size=65536k"]);
        }
    }
    cfg["linux"]["devices"] = serde_json::json!([
        {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640, "uid": 1, "gid": 2},
        {"path": "/dev/sub/kmsg2", "type": "c", "major": 1, "minor": 11}
    ]);
    cfg["linux"]["resources"] = serde_json::json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
    ]});
    std::fs::write(b.join("config.json"), cfg.to_string()).unwrap();
    let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "dev"]);
    assert_eq!(code, 0, "{err}");
    // The config denies all but null; as with runc, the usual nodes stay usable.
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..4], ["640 1 2 1:3", "write-ok", "kmsg2-denied", "1"], "{out}");
    assert!(lines[4..].contains(&"c 1:3 rwm") && lines[4..].contains(&"c 136:* rwm"), "{out}");
    assert!(!out.contains("a *:*") && !out.contains("1:11"), "{out}");

    // A bad entry is refused by name before anything is made.
    cfg["linux"]["devices"] =
        serde_json::json!([{"path": "/etc/shadow", "type": "c", "major": 1, "minor": 3}]);
    std::fs::write(b.join("config.json"), cfg.to_string()).unwrap();
    let (code, _, err) = oci(r, &log, &["create", "-b", b.to_str().unwrap(), "bad"]);
    assert_eq!(code, 125);
    assert!(err.contains("linux.devices[0].path"), "{err}");
    r.assert_no_leftovers();
    remove_parent_cgroups();
}
