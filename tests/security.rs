#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The default seccomp profile and regressions for known container escapes, on
//! real runs of the fixture image.

mod common;

use common::bundle::{bundle, oci, shim};
use common::{privileged, TestRoot};

#[test]
fn the_default_seccomp_profile_applies_and_can_be_replaced() {
    if !privileged("the_default_seccomp_profile_applies_and_can_be_replaced") {
        return;
    }
    let r = TestRoot::with_busybox();
    // Unprivileged user namespaces are open to any process on this kernel; the
    // default profile closes them (Docker's does too), whatever the capabilities.
    let (code, out, err) = r.run(&[
        "busybox:latest",
        "sh",
        "-c",
        "grep Seccomp: /proc/self/status; unshare -U true 2>/dev/null; echo userns=$?",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "Seccomp:\t2\nuserns=1\n");
    let rec = r.last_record();
    assert!(
        rec["seccomp_digest"].as_str().unwrap().starts_with("sha256:"),
        "the profile's digest is recorded"
    );

    let (code, out, _) = r.run(&[
        "--security-opt",
        "seccomp=unconfined",
        "busybox:latest",
        "sh",
        "-c",
        "grep Seccomp: /proc/self/status; unshare -U true; echo userns=$?",
    ]);
    assert_eq!((code, out.as_str()), (0, "Seccomp:\t0\nuserns=0\n"));
    assert!(r.last_record().get("seccomp_digest").is_none());

    // With CAP_SYS_ADMIN the profile lets namespaces be made, as Docker's does.
    let (code, out, err) =
        r.run(&["--cap-add", "SYS_ADMIN", "busybox:latest", "sh", "-c", "unshare -n true; echo netns=$?"]);
    assert_eq!((code, out.as_str()), (0, "netns=0\n"), "{err}");

    // A profile from a file.
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("deny-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let (code, out, _) =
        r.run(&["--security-opt", &opt, "busybox:latest", "sh", "-c", "mkdir /tmp/x 2>/dev/null; echo $?"]);
    assert_eq!((code, out.as_str()), (0, "1\n"));

    for (opt, want) in [
        ("seccomp=/nonexistent.json", "reading the profile /nonexistent.json"),
        ("apparmor=unconfined", "only seccomp=FILE or seccomp=unconfined"),
    ] {
        let (code, _, err) = r.run(&["--security-opt", opt, "busybox:latest", "true"]);
        assert_eq!(code, 125, "{opt}");
        assert!(err.contains(want), "{opt}: {err}");
    }
    std::fs::write(&profile, "{\"defaultAction\": 3}").unwrap();
    let (code, _, err) = r.run(&["--security-opt", &opt, "busybox:latest", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("is not an OCI seccomp profile"), "{err}");
    r.assert_no_leftovers();
}

#[test]
fn known_escapes_stay_closed() {
    if !privileged("known_escapes_stay_closed") {
        return;
    }
    let r = TestRoot::with_busybox();
    let script = "\
        ls /proc/self/fd | tr '\\n' ' '; echo;\
        cat /proc/kcore >/dev/null 2>&1 && echo kcore-readable || echo kcore-masked;\
        (echo b > /proc/sysrq-trigger) 2>/dev/null && echo sysrq-writable || echo sysrq-refused;\
        (echo evil > /proc/sys/kernel/hostname) 2>/dev/null && echo sysctl-writable || echo sysctl-refused;\
        mknod /tmp/disk b 8 0 2>/dev/null && (head -c1 /tmp/disk >/dev/null 2>&1 && echo disk-readable || echo disk-refused) || echo mknod-refused;\
        grep NoNewPrivs /proc/self/status;\
        grep -c host-secret-value /proc/1/environ; true";
    let (code, out, err) = r.run(&["busybox:latest", "sh", "-c", script]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    // CVE-2024-21626: no host fd leaks into the container (ls holds 3 itself).
    assert_eq!(lines[0].trim(), "0 1 2 3", "{out}");
    // The last line: /proc/1 is the container's own init, whose environment
    // holds nothing of the environment exprun was started with.
    assert_eq!(
        &lines[1..],
        ["kcore-masked", "sysrq-refused", "sysctl-refused", "mknod-refused", "NoNewPrivs:\t1", "0"],
        "{out}"
    );
    // A leaked fd as the working directory: refused before anything runs.
    let (code, out, err) = r.run(&["-w", "/proc/self/fd/7", "busybox:latest", "pwd"]);
    assert_eq!(code, 125, "a working directory through /proc/self/fd must not work: {out}{err}");
    assert!(
        err.contains("resolving /proc/self/fd/7 in the container") && err.contains("/proc magic link"),
        "{err}"
    );
    r.assert_no_leftovers();
}

#[test]
fn a_mount_destination_through_a_symlink_stays_inside_the_root() {
    let Some(s) = shim("a_mount_destination_through_a_symlink_stays_inside_the_root") else { return };
    let work = s.work.path();
    // CVE-2021-30465 class: the rootfs has a symlink that points out of it, and
    // the config mounts through it.
    let outside = work.join("outside");
    std::fs::create_dir(&outside).unwrap();
    let b = bundle(work, &["sh", "-c", "ls -d /escape/m/"]);
    let rootfs = b.join("rootfs");
    std::os::unix::fs::symlink(
        format!("../../../../../../../..{}", outside.display()),
        rootfs.join("escape"),
    )
    .unwrap();
    let cfg_path = b.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg["mounts"].as_array_mut().unwrap().push(serde_json::json!({
        "destination": "/escape/m", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]
    }));
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let log = work.join("log.json");
    let host_untouched = || {
        assert!(!outside.join("m").exists(), "the mount point was made on the host");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&outside.display().to_string()), "mounted on the host");
    };
    // The symlink's target does not exist inside the root: refused, not followed out.
    let (code, _, err) = oci(&s.r, &log, &["run", "-b", b.to_str().unwrap(), "symlink-escape"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("/escape"), "{err}");
    host_untouched();
    // It exists inside the root: the tmpfs is mounted there.
    let inside = rootfs.join(outside.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&inside).unwrap();
    let (code, out, err) = oci(&s.r, &log, &["run", "-b", b.to_str().unwrap(), "symlink-escape-2"]);
    assert_eq!((code, out.as_str()), (0, "/escape/m/\n"), "{err}");
    assert!(inside.join("m").is_dir(), "made inside the rootfs");
    host_untouched();
    s.r.assert_no_leftovers();
}

#[test]
fn a_setuid_binary_gains_nothing_under_no_new_privs() {
    let Some(s) = shim("a_setuid_binary_gains_nothing_under_no_new_privs") else { return };
    let work = s.work.path();
    let b = bundle(work, &["/suid-euid"]);
    // A static setuid-root program that prints its effective uid.
    let src = work.join("euid.c");
    std::fs::write(&src, "#include <stdio.h>\n#include <unistd.h>\nint main(void){printf(\"%d\\n\",(int)geteuid());return 0;}\n")
        .unwrap();
    let bin = b.join("rootfs/suid-euid");
    let cc = std::process::Command::new("gcc").args(["-static", "-O2", "-o"]).arg(&bin).arg(&src).status();
    assert!(cc.unwrap().success(), "gcc failed");
    std::os::unix::fs::chown(&bin, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    let cfg_path = b.join("config.json");
    let log = work.join("log.json");
    for (nnp, want) in [(true, "1000\n"), (false, "0\n")] {
        let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
        cfg["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
        cfg["process"]["noNewPrivileges"] = serde_json::json!(nnp);
        std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
        let id = format!("suid-{nnp}");
        let (code, out, err) = oci(&s.r, &log, &["run", "-b", b.to_str().unwrap(), &id]);
        assert_eq!((code, out.as_str()), (0, want), "noNewPrivileges {nnp}: {err}");
    }
    s.r.assert_no_leftovers();
}

/// CVE-2019-5736: the attack opens `/proc/<pid>/exe` of a process running the
/// runtime's binary that it can reach (one that a `#!/proc/self/exe` command
/// made the kernel run, or one in its pid namespace, with CAP_SYS_PTRACE),
/// and once nothing runs the binary any more, writes it on the host through
/// that descriptor. This kernel already refuses to execve a `/proc/self/exe`
/// outside the caller's root, so the test plays the attacker from the host,
/// as root, against a copy of exprun, at each such process:
///
/// - a container's init runs the copy itself until it execs the command,
///   through the sealed exec trampoline, which is all a `#!/proc/self/exe`
///   command can then run; until then the init is alone in its new pid
///   namespace, so no container process can reach it;
/// - `exprun exec` clones into a pid namespace where the container's
///   processes are: it runs from a read-only bind mount of the copy, so the
///   write fails with EROFS;
/// - an immutable copy (`chattr +i`) needs neither, and the write fails with
///   EPERM.
#[test]
fn the_runtime_binary_cannot_be_written_through_proc_pid_exe() {
    if !privileged("the_runtime_binary_cannot_be_written_through_proc_pid_exe") {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let _serial = common::bundle::serial();
    let r = TestRoot::with_busybox();
    let work = tempfile::tempdir().unwrap();
    let copy = work.path().join("exprun-victim");
    std::fs::copy(common::exprun_bin(), &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let victim = |args: &[&str]| {
        let mut c = std::process::Command::new(&copy);
        c.arg("--root").arg(r.path()).args(args).stdin(std::process::Stdio::null());
        c
    };
    let runs_copy = |pid: u32| {
        let (c, e) = (std::fs::metadata(&copy).unwrap(), std::fs::metadata(format!("/proc/{pid}/exe")));
        e.is_ok_and(|e| (e.dev(), e.ino()) == (c.dev(), c.ino()))
    };
    let wait_until = |what: &str, done: &dyn Fn() -> bool| {
        let t0 = std::time::Instant::now();
        while !done() {
            assert!(t0.elapsed().as_secs() < 10, "{what}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };

    // The init of a created container runs the copy, alone in its pid namespace.
    let b = bundle(work.path(), &["sleep", "3"]);
    // The init keeps create's stdio: a file, not a pipe that would stay open.
    let log = work.path().join("create.log");
    let created = victim(&["--debug", "create", "-b", b.to_str().unwrap(), "victim"])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(created.success(), "{err}");
    assert!(err.contains("container processes exec through a sealed exec trampoline"), "{err}");
    let state = victim(&["state", "victim"]).output().unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
    let init = state["pid"].as_u64().unwrap() as u32;
    assert!(runs_copy(init), "the init does not run the copy: the test checks nothing");
    let ns = std::fs::read_link(format!("/proc/{init}/ns/pid")).unwrap();
    let sharing: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/ns/pid")).is_ok_and(|l| l == ns))
        .collect();
    assert_eq!(sharing, [init], "another process shares the init's pid namespace");
    // Started, it execs the command through the trampoline (for an instant
    // its exe is `/memfd:exprun-exec`): nothing in the container runs the
    // copy any more.
    assert!(victim(&["start", "victim"]).status().unwrap().success());
    let exe = || std::fs::read_link(format!("/proc/{init}/exe")).unwrap_or_default();
    wait_until("the init never exec'd its command", &|| exe().ends_with("bin/busybox"));

    // `exec` clones into the container: the attacker's two steps against it.
    let mut exec = victim(&["exec", "victim", "sleep", "1"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let held = std::fs::File::open(format!("/proc/{}/exe", exec.id())).unwrap();
    assert!(exec.wait().unwrap().success());
    let fd = std::os::fd::AsRawFd::as_raw_fd(&held);
    let write = std::fs::OpenOptions::new().write(true).open(format!("/proc/self/fd/{fd}"));
    let err = write.expect_err("the runtime's binary opened for writing");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    assert!(victim(&["delete", "-f", "victim"]).status().unwrap().success());
    assert_eq!(std::fs::read(&copy).unwrap(), before);
    // The read-only mount is private to the process: none is left.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("exprun-victim"), "{mounts}");

    // An immutable binary (chattr +i) is run as it is, and cannot be written either.
    let chattr = |flag: &str| {
        let st = std::process::Command::new("chattr").arg(flag).arg(&copy).status().unwrap();
        assert!(st.success(), "chattr {flag}");
    };
    chattr("+i");
    let mut run = victim(&["run", "busybox:latest", "--", "sleep", "1"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let exe = std::fs::read_link(format!("/proc/{}/exe", run.id()));
    let held = std::fs::File::open(format!("/proc/{}/exe", run.id()));
    let status = run.wait();
    let fd = std::os::fd::AsRawFd::as_raw_fd(held.as_ref().unwrap());
    let write = std::fs::OpenOptions::new().write(true).open(format!("/proc/self/fd/{fd}"));
    chattr("-i");
    assert!(status.unwrap().success());
    assert_eq!(exe.unwrap(), copy, "an immutable binary needs no protected copy");
    let err = write.expect_err("an immutable binary opened for writing");
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    assert_eq!(std::fs::read(&copy).unwrap(), before);
    common::bundle::remove_parent_cgroups();
    r.assert_no_leftovers();
}

/// Where the exec trampoline cannot serve a container, exprun re-executes
/// itself from a read-only copy once the container is planned, before
/// anything of it exists: a seccomp profile that does not allow the
/// trampoline's `execveat` and `fcntl` whatever their arguments, an init
/// that joins a pid namespace (where other processes could reach it before
/// it execs), startContainer hooks. Each still runs, from the protected copy.
#[test]
fn containers_the_trampoline_cannot_serve_run_from_a_read_only_copy() {
    if !privileged("containers_the_trampoline_cannot_serve_run_from_a_read_only_copy") {
        return;
    }
    let _serial = common::bundle::serial();
    let r = TestRoot::with_busybox();
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("log.json");
    let b = bundle(work.path(), &["sh", "-c", "readlink /proc/self/exe"]);
    let cfg_path = b.join("config.json");
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
        f(&mut cfg);
        std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    };
    let run = |id: &str| {
        let out = r.command(&["--debug", "run", "-b", b.to_str().unwrap(), id]).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // No filter: the trampoline.
    let (code, out, err) = run("plain");
    assert_eq!((code, out.as_str()), (Some(0), "/bin/busybox\n"), "{err}");
    assert!(err.contains("container processes exec through a sealed exec trampoline"), "{err}");
    assert!(!err.contains("re-executing"), "{err}");

    // execveat refused by the profile (through the trampoline, the run would
    // fail with EPERM).
    edit(&|c| {
        c["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["execveat"], "action": "SCMP_ACT_ERRNO"}]
        });
    });
    let (code, out, err) = run("no-execveat");
    assert_eq!((code, out.as_str()), (Some(0), "/bin/busybox\n"), "{err}");
    assert!(
        err.contains(
            "no exec trampoline for this container (the seccomp profile does not allow execveat and fcntl"
        ),
        "{err}"
    );

    // A pid namespace joined by path (a running container's).
    edit(&|c| {
        c["linux"].as_object_mut().unwrap().remove("seccomp");
        c["process"]["args"] = serde_json::json!(["sleep", "5"]);
    });
    let pid_file = work.path().join("pid");
    let holder = common::bundle::run_detached(&r, &b, &pid_file, "holder");
    edit(&|c| {
        c["process"]["args"] = serde_json::json!(["sh", "-c", "readlink /proc/self/exe"]);
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "pid" {
                ns["path"] = format!("/proc/{holder}/ns/pid").into();
            }
        }
    });
    let (code, out, err) = run("joined");
    assert_eq!((code, out.as_str()), (Some(0), "/bin/busybox\n"), "{err}");
    assert!(err.contains("no exec trampoline for this container (the container's init does not get a pid namespace of its own)"), "{err}");
    let _ = oci(&r, &log, &["delete", "-f", "holder"]);

    // A startContainer hook: a program of the container run beside the init.
    edit(&|c| {
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            ns.as_object_mut().unwrap().remove("path");
        }
        c["hooks"] = serde_json::json!({"startContainer": [{"path": "/bin/true"}]});
    });
    let (code, out, err) = run("hooked");
    assert_eq!((code, out.as_str()), (Some(0), "/bin/busybox\n"), "{err}");
    assert!(
        err.contains("no exec trampoline for this container (startContainer hooks run in the container before the command)"),
        "{err}"
    );
    common::bundle::remove_parent_cgroups();
    r.assert_no_leftovers();
}

/// A command the kernel will not execute (here ENOEXEC: executable, but no
/// program) fails in the exec trampoline's execve, which reports it as init
/// would: on the channel, which `run` reads (126 and the errno's text), or,
/// once `create` has exited and nobody reads it, on the container's stderr.
#[test]
fn a_command_the_kernel_will_not_execute_is_reported_through_the_trampoline() {
    if !privileged("a_command_the_kernel_will_not_execute_is_reported_through_the_trampoline") {
        return;
    }
    let _serial = common::bundle::serial();
    let r = TestRoot::new();
    let work = tempfile::tempdir().unwrap();
    let b = bundle(work.path(), &["/garbage"]);
    let garbage = b.join("rootfs/garbage");
    std::fs::write(&garbage, b"\x00\x01 not a program\n").unwrap();
    std::fs::set_permissions(&garbage, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let b = b.to_str().unwrap();

    let out = r
        .command(&["--debug", "run", "-b", b, "garbage-run"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(126), "{err}");
    assert!(err.contains("container processes exec through a sealed exec trampoline"), "{err}");
    assert!(err.contains("cannot execute /garbage: exec format error"), "{err}");

    // The init keeps create's stdio: a file, not a pipe that would stay open.
    let log = work.path().join("create.log");
    let file = || std::fs::File::create(&log).unwrap();
    let created = r.command(&["create", "-b", b, "garbage-created"]).stdout(file()).stderr(file()).status();
    assert!(created.unwrap().success(), "{}", std::fs::read_to_string(&log).unwrap());
    assert!(r.command(&["start", "garbage-created"]).status().unwrap().success());
    let t0 = std::time::Instant::now();
    let said = || std::fs::read_to_string(&log).unwrap_or_default();
    while !said().contains("exprun: cannot execute /garbage: errno 8\n") {
        assert!(t0.elapsed().as_secs() < 10, "nothing on the container's stderr: {:?}", said());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(r.command(&["delete", "-f", "garbage-created"]).status().unwrap().success());
    common::bundle::remove_parent_cgroups();
    r.assert_no_leftovers();
}

/// Ptrace of the runtime: nothing of exprun is in the container's reach. Its
/// processes are outside the container's pid namespace (the container sees only
/// its own), and the process `exprun exec` clones into it is non-dumpable until
/// it execs, so its `/proc/<pid>` is root's and closed to ptrace and /proc reads.
#[test]
fn no_runtime_process_is_visible_from_the_container() {
    if !privileged("no_runtime_process_is_visible_from_the_container") {
        return;
    }
    let r = TestRoot::with_busybox();
    let (code, out, err) = r.run(&[
        "busybox:latest",
        "sh",
        "-c",
        "for p in /proc/[0-9]*; do echo \"${p#/proc/} $(cat $p/comm 2>/dev/null)\"; done",
    ]);
    assert_eq!(code, 0, "{err}");
    let procs: Vec<&str> = out.lines().collect();
    // pid 1 is the command itself; the loop's own children come and go.
    assert!(procs.contains(&"1 sh"), "{out}");
    assert!(procs.iter().all(|l| !l.contains("exprun")), "a runtime process is visible: {out}");
    assert!(procs.iter().all(|l| l.split(' ').next().unwrap().parse::<u32>().unwrap() < 100), "{out}");
    r.assert_no_leftovers();
}
