#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The runc-compatible verbs driven the way containerd's runc shim drives them:
//! this test process is a child subreaper, so a container's init is reparented
//! to it when `exprun create` exits, and the test reaps it and reads its exit
//! status, as the shim does.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::bundle::{bundle, oci, parent_cgroup, remove_parent_cgroups, shim, status_of};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

#[test]
fn create_start_state_kill_delete_like_the_runc_shim() {
    let Some(t) = shim("create_start_state_kill_delete_like_the_runc_shim") else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sh", "-c", "echo hello from init; read x; exit 3"]);
    let log = b.join("log.json");
    let pid_file = b.join("init.pid");

    // create: stdio is handed over unchanged (a pipe here, as the shim does).
    let mut create = r
        .command(&["--log", log.to_str().unwrap(), "--log-format", "json"])
        .args(["create", "--bundle", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), "c1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut init_stdin = create.stdin.take().unwrap();
    let mut init_stdout = create.stdout.take().unwrap();
    assert!(
        create.wait().unwrap().success(),
        "create failed: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let pid_text = std::fs::read_to_string(&pid_file).unwrap();
    assert!(!pid_text.ends_with('\n'), "the pid file must not end in a newline");
    let pid: i32 = pid_text.parse().unwrap();
    let st = status_of(r, &log, "c1");
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"], pid);
    assert_eq!(st["ociVersion"], "1.2.0");
    assert_eq!(st["bundle"], b.to_str().unwrap());
    assert_eq!(st["annotations"]["io.kubernetes.cri.container-name"], "worker");

    // start releases init; its output arrives on the pipe create was given.
    let (code, _, err) = oci(r, &log, &["start", "c1"]);
    assert_eq!(code, 0, "{err}");
    let mut line = [0u8; 16];
    init_stdout.read_exact(&mut line).unwrap();
    assert_eq!(&line, b"hello from init\n");
    assert_eq!(status_of(r, &log, "c1")["status"], "running");
    let (code, _, err) = oci(r, &log, &["start", "c1"]);
    assert_ne!(code, 0);
    assert!(err.contains("running"), "{err}");
    let (code, _, _) = oci(r, &log, &["delete", "c1"]);
    assert_ne!(code, 0, "a running container needs --force");

    // The command ends; this process reaps it, as the shim does.
    std::io::Write::write_all(&mut init_stdin, b"go\n").unwrap();
    assert_eq!(waitpid(Pid::from_raw(pid), None).unwrap(), WaitStatus::Exited(Pid::from_raw(pid), 3));
    let st = status_of(r, &log, "c1");
    assert_eq!(st["status"], "stopped");
    assert_eq!(st["pid"], 0);
    let (code, _, err) = oci(r, &log, &["kill", "c1", "9"]);
    assert_ne!(code, 0);
    assert!(err.contains("container not running"), "{err}");
    assert_eq!(
        oci(r, &log, &["kill", "--all", "c1", "KILL"]).0,
        0,
        "kill --all of a stopped container succeeds"
    );
    assert_eq!(oci(r, &log, &["delete", "c1"]).0, 0);
    let (code, _, _) = oci(r, &log, &["delete", "c1"]);
    assert_ne!(code, 0);
    let last = std::fs::read_to_string(&log).unwrap().lines().last().unwrap().to_string();
    let last: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(last["level"], "error");
    assert!(last["msg"].as_str().unwrap().contains("does not exist"), "{last}");
    assert_eq!(
        oci(r, &log, &["delete", "--force", "c1"]).0,
        0,
        "delete --force of a missing container succeeds"
    );

    // The run record, with the CRI annotations.
    let rec = r.last_record();
    assert_eq!(rec["run_id"], "c1");
    assert_eq!(rec["status"], "supervised");
    assert!(rec["exit"]["code"].is_null());
    assert_eq!(rec["spec"]["annotations"]["io.kubernetes.cri.container-name"], "worker");
    assert_eq!(rec["spec"]["process"]["args"][2], "echo hello from init; read x; exit 3");
    assert!(rec["cgroup"]["dirs"]["memory"].as_str().unwrap().contains(&parent_cgroup()));
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn start_succeeds_when_the_command_ends_and_is_reaped_at_once() {
    let test = "start_succeeds_when_the_command_ends_and_is_reaped_at_once";
    let Some(t) = shim(test) else { return };
    if Command::new("strace").arg("-V").output().is_err() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{test} needs strace (apt-get install strace)"
        );
        println!("SKIP: {test}: needs strace");
        return;
    }
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["true"]);
    let log = b.join("log.json");
    // Init keeps create's stdio: nothing for this test to wait on.
    let created = r
        .command(&["create", "--bundle", b.to_str().unwrap(), "quick"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(created.success());
    let pid = Pid::from_raw(status_of(r, &log, "quick")["pid"].as_i64().unwrap() as i32);
    // The shim reaps the moment the command exits; so does this thread.
    let reaper = std::thread::spawn(move || waitpid(pid, None));
    // strace holds every open() of `start` for 50 ms on its way back, as a busy
    // host can: opening the exec FIFO releases init, and `true` runs, exits and
    // is reaped before `start` goes on.
    let out = Command::new("strace")
        .args(["-o", "/dev/null", "-e", "trace=openat", "-e", "inject=openat:delay_exit=50000"])
        .arg(common::exprun_bin())
        .arg("--root")
        .arg(r.path())
        .args(["start", "quick"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(reaper.join().unwrap(), Ok(WaitStatus::Exited(pid, 0)));
    assert_eq!(status_of(r, &log, "quick")["status"], "stopped");
    assert_eq!(oci(r, &log, &["delete", "quick"]).0, 0);
    remove_parent_cgroups();
}

#[test]
fn created_and_running_containers_can_be_killed_and_deleted() {
    let Some(t) = shim("created_and_running_containers_can_be_killed_and_deleted") else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sleep", "60"]);
    let log = b.join("log.json");
    let create = |id: &str| {
        let pid_file = b.join(format!("{id}.pid"));
        let st = r
            .command(&["create", "-b", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        Pid::from_raw(std::fs::read_to_string(pid_file).unwrap().parse().unwrap())
    };

    // Deleting a created (never started) container ends its init.
    let pid = create("never-started");
    assert_eq!(oci(r, &log, &["delete", "never-started"]).0, 0);
    assert!(matches!(waitpid(pid, None).unwrap(), WaitStatus::Signaled(_, nix::sys::signal::SIGKILL, _)));

    // kill by name reaches a running init; delete --force cleans up after it.
    let pid = create("runner");
    assert_eq!(oci(r, &log, &["start", "runner"]).0, 0);
    let (code, out, _) = oci(r, &log, &["list", "--format", "json"]);
    assert_eq!(code, 0);
    assert!(out.contains("\"runner\""), "{out}");
    assert_eq!(oci(r, &log, &["kill", "runner", "KILL"]).0, 0);
    assert!(matches!(waitpid(pid, None).unwrap(), WaitStatus::Signaled(_, nix::sys::signal::SIGKILL, _)));
    assert_eq!(oci(r, &log, &["delete", "--force", "runner"]).0, 0);

    // A missing command fails create, and leaves nothing.
    let b2 = bundle(&work.join("missing"), &["/no/such/command"]);
    let out =
        r.command(&["create", "-b", b2.to_str().unwrap(), "missing"]).stdin(Stdio::null()).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/command"));
    assert_eq!(oci(r, &log, &["state", "missing"]).0, 125);
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn a_container_joins_its_pods_namespaces_by_path() {
    let Some(t) = shim("a_container_joins_its_pods_namespaces_by_path") else { return };
    let (r, work) = (&t.r, t.work.path());
    let log = work.join("log.json");
    let create = |b: &Path, id: &str, stdout: Stdio| {
        let pid_file = b.join("init.pid");
        let mut child = r
            .command(&["create", "-b", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), id])
            .stdin(Stdio::null())
            .stdout(stdout)
            .spawn()
            .unwrap();
        let out = child.stdout.take();
        assert!(child.wait().unwrap().success(), "create {id}");
        (Pid::from_raw(std::fs::read_to_string(pid_file).unwrap().parse().unwrap()), out)
    };

    // The pod sandbox: its own namespaces and hostname.
    let sb = bundle(&work.join("sandbox"), &["sleep", "60"]);
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sb.join("config.json")).unwrap()).unwrap();
    cfg["hostname"] = serde_json::json!("pod1");
    std::fs::write(sb.join("config.json"), cfg.to_string()).unwrap();
    let (sandbox, _) = create(&sb, "sandbox", Stdio::null());
    assert_eq!(oci(r, &log, &["start", "sandbox"]).0, 0);

    // A container that joins the sandbox's pid, network, ipc and uts namespaces.
    let script =
        "hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/ipc; ps -o comm | grep -c sleep";
    let cb = bundle(&work.join("app"), &["sh", "-c", script]);
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cb.join("config.json")).unwrap()).unwrap();
    let ns = |t: &str| format!("/proc/{sandbox}/ns/{t}");
    cfg["linux"]["namespaces"] = serde_json::json!([
        {"type": "pid", "path": ns("pid")},
        {"type": "network", "path": ns("net")},
        {"type": "ipc", "path": ns("ipc")},
        {"type": "uts", "path": ns("uts")},
        {"type": "mount"},
        {"type": "cgroup"}
    ]);
    cfg.as_object_mut().unwrap().remove("hostname");
    std::fs::write(cb.join("config.json"), cfg.to_string()).unwrap();
    let (app, out) = create(&cb, "app", Stdio::piped());
    assert_eq!(oci(r, &log, &["start", "app"]).0, 0);
    let mut text = String::new();
    out.unwrap().read_to_string(&mut text).unwrap();
    assert_eq!(waitpid(app, None).unwrap(), WaitStatus::Exited(app, 0));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "pod1", "{text}");
    let host_link = |t: &str| std::fs::read_link(ns(t)).unwrap().to_string_lossy().into_owned();
    assert_eq!(lines[1], host_link("net"));
    assert_eq!(lines[2], host_link("ipc"));
    assert_eq!(lines[3], "1", "the sandbox's sleep is visible in the shared pid namespace: {text}");

    assert_eq!(oci(r, &log, &["delete", "app"]).0, 0);
    assert_eq!(oci(r, &log, &["kill", "sandbox", "KILL"]).0, 0);
    waitpid(sandbox, None).unwrap();
    assert_eq!(oci(r, &log, &["delete", "sandbox"]).0, 0);
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn exec_runs_a_process_inside_a_running_container() {
    let Some(t) = shim("exec_runs_a_process_inside_a_running_container") else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sleep", "60"]);
    let log = b.join("log.json");
    let pid_file = b.join("init.pid");
    let st = r
        .command(&["create", "-b", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), "c"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let init = Pid::from_raw(std::fs::read_to_string(&pid_file).unwrap().parse().unwrap());
    assert_eq!(oci(r, &log, &["start", "c"]).0, 0);

    // Foreground: in the container's pid namespace (init is pid 1 there), its
    // status comes back.
    let (code, out, err) =
        oci(r, &log, &["exec", "c", "sh", "-c", "echo pid=$$; ps -o comm | head -2 | tail -1; exit 7"]);
    assert_eq!(code, 7, "{err}");
    assert_eq!(out, "pid=2\nsleep\n");

    // Detached, from a process JSON as containerd writes it: the pid file names
    // the process, which is reparented to this (subreaper) process.
    let proc_file = work.join("process.json");
    std::fs::write(
        &proc_file,
        r#"{"args":["sh","-c","id -u; exit 4"],"cwd":"/","env":["PATH=/bin"],"user":{"uid":1000,"gid":1000},"terminal":false}"#,
    )
    .unwrap();
    let exec_pid = b.join("exec.pid");
    let out = r
        .command(&[
            "exec",
            "--process",
            proc_file.to_str().unwrap(),
            "--detach",
            "--pid-file",
            exec_pid.to_str().unwrap(),
            "c",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pid = Pid::from_raw(std::fs::read_to_string(&exec_pid).unwrap().parse().unwrap());
    assert_eq!(waitpid(pid, None).unwrap(), WaitStatus::Exited(pid, 4));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1000\n");

    // A missing command fails before exec returns.
    let (code, _, err) = oci(r, &log, &["exec", "c", "/no/such/tool"]);
    assert_ne!(code, 0);
    assert!(err.contains("/no/such/tool"), "{err}");

    assert_eq!(oci(r, &log, &["delete", "--force", "c"]).0, 0);
    waitpid(init, None).unwrap();
    let (code, _, err) = oci(r, &log, &["exec", "c", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("does not exist"), "{err}");
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn update_ps_sysctls_and_oom_score_adj() {
    let Some(t) = shim("update_ps_sysctls_and_oom_score_adj") else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sleep", "60"]);
    let log = b.join("log.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    cfg["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1", "kernel.shmmax": "12345"});
    cfg["process"]["oomScoreAdj"] = serde_json::json!(500);
    std::fs::write(b.join("config.json"), cfg.to_string()).unwrap();
    let pid_file = b.join("init.pid");
    let st = r
        .command(&["create", "-b", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), "c"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    let init: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert_eq!(oci(r, &log, &["start", "c"]).0, 0);
    let (code, out, err) = oci(
        r,
        &log,
        &[
            "exec",
            "c",
            "cat",
            "/proc/sys/net/ipv4/ip_forward",
            "/proc/sys/kernel/shmmax",
            "/proc/1/oom_score_adj",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1\n12345\n500\n");

    let (code, out, _) = oci(r, &log, &["ps", "--format", "json", "c"]);
    assert_eq!(code, 0);
    let pids: Vec<i32> = serde_json::from_str(&out).unwrap();
    assert_eq!(pids, vec![init]);

    let resources = r#"{"memory":{"limit":67108864},"pids":{"limit":50},"cpu":{"shares":512,"quota":50000,"period":100000}}"#;
    let mut child = r.command(&["update", "--resources", "-", "c"]).stdin(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), resources.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.path().join("containers/c/plan.json")).unwrap()).unwrap();
    let dir = |c: &str| PathBuf::from(plan["cgroup"]["dirs"][c].as_str().unwrap());
    if plan["cgroup"]["version"] == "v1" {
        let read = |c: &str, f: &str| std::fs::read_to_string(dir(c).join(f)).unwrap().trim().to_string();
        assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
        assert_eq!(read("pids", "pids.max"), "50");
        assert_eq!(read("cpu", "cpu.shares"), "512");
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
    }
    assert_eq!(plan["cgroup"]["limits"]["memory_bytes"], 67108864);

    assert_eq!(oci(r, &log, &["delete", "--force", "c"]).0, 0);
    waitpid(Pid::from_raw(init), None).unwrap();

    // A sysctl outside the container's namespaces is refused before anything runs.
    cfg["linux"]["sysctl"] = serde_json::json!({"kernel.pid_max": "4096"});
    std::fs::write(b.join("config.json"), cfg.to_string()).unwrap();
    let (code, _, err) = oci(r, &log, &["create", "-b", b.to_str().unwrap(), "bad"]);
    assert_ne!(code, 0);
    assert!(err.contains("kernel.pid_max") && err.contains("host"), "{err}");
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn pause_and_resume_freeze_the_container() {
    let Some(t) = shim("pause_and_resume_freeze_the_container") else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sh", "-c", "while true; do date +%s%N > /dev/shm/tick; sleep 0.05; done"]);
    let log = b.join("log.json");
    let pid_file = b.join("init.pid");
    let st = r
        .command(&["create", "-b", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), "p"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let init = Pid::from_raw(std::fs::read_to_string(&pid_file).unwrap().parse().unwrap());
    assert_eq!(oci(r, &log, &["pause", "p"]).0, 125, "a created container cannot be paused");
    assert_eq!(oci(r, &log, &["start", "p"]).0, 0);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(oci(r, &log, &["pause", "p"]).0, 0);
    assert_eq!(status_of(r, &log, "p")["status"], "paused");
    // The kernel's view: the container's cgroup is frozen.
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.path().join("containers/p/plan.json")).unwrap()).unwrap();
    if let Some(dir) = plan["cgroup"]["dirs"]["freezer"].as_str() {
        assert_eq!(std::fs::read_to_string(Path::new(dir).join("freezer.state")).unwrap().trim(), "FROZEN");
    }
    let (code, _, _) = oci(r, &log, &["delete", "p"]);
    assert_ne!(code, 0, "a paused container needs --force");
    assert_eq!(oci(r, &log, &["resume", "p"]).0, 0);
    assert_eq!(status_of(r, &log, "p")["status"], "running");
    assert_eq!(oci(r, &log, &["pause", "p"]).0, 0);
    // delete --force of a paused container kills it (thawing it so it can die).
    assert_eq!(oci(r, &log, &["delete", "--force", "p"]).0, 0);
    assert!(matches!(waitpid(init, None).unwrap(), WaitStatus::Signaled(_, nix::sys::signal::SIGKILL, _)));
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn features_describes_what_is_applied_and_spec_never_overwrites() {
    let out = Command::new(common::exprun_bin()).arg("features").output().unwrap();
    assert!(out.status.success());
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f["hooks"].as_array().unwrap().len(), 6);
    assert_eq!(f["linux"]["seccomp"]["enabled"], true);
    assert!(f["linux"]["seccomp"]["actions"].as_array().unwrap().iter().any(|a| a == "SCMP_ACT_NOTIFY"));
    assert!(f["linux"]["namespaces"].as_array().unwrap().iter().any(|n| n == "user"));
    assert!(f["mountOptions"].as_array().unwrap().iter().any(|o| o == "rro"));

    let dir = tempfile::tempdir().unwrap();
    let spec = |d: &Path| Command::new(common::exprun_bin()).args(["spec", "-b"]).arg(d).output().unwrap();
    assert!(spec(dir.path()).status.success());
    let written = std::fs::read(dir.path().join("config.json")).unwrap();
    let _: oci_spec::runtime::Spec = serde_json::from_slice(&written).unwrap();
    let again = spec(dir.path());
    assert_eq!(again.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&again.stderr).contains("config.json"), "the error names the file");
    assert_eq!(std::fs::read(dir.path().join("config.json")).unwrap(), written, "spec replaced a config");
}

#[test]
fn run_bundle_supervises_in_the_foreground_or_detaches() {
    let Some(t) = shim("run_bundle_supervises_in_the_foreground_or_detaches") else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sh", "-c", "echo out; echo err >&2; exit 7"]);
    let log = b.join("log.json");
    let bs = b.to_str().unwrap();

    // Foreground: the command's output and exit status, and a record with both.
    let (code, out, err) = oci(r, &log, &["run", "--bundle", bs, "fg"]);
    assert_eq!((code, out.as_str(), err.as_str()), (7, "out\n", "err\n"));
    let rec = r.last_record();
    assert_eq!((rec["run_id"].as_str(), rec["status"].as_str()), (Some("fg"), Some("exited")));
    assert_eq!(rec["exit"]["code"], 7);
    assert_eq!(rec["stdout"]["bytes"], 4);
    assert_eq!(oci(r, &log, &["state", "fg"]).0, 125, "the container is gone after the run");

    // While it runs, the other verbs see it; delete --force ends it, and the
    // supervising exprun records the kill and removes it.
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    cfg["process"]["args"] = serde_json::json!(["sh", "-c", "echo up; read x"]);
    let poststart = work.join("poststart.json");
    cfg["hooks"] = serde_json::json!({"poststart": [
        {"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", poststart.display())]}
    ]});
    std::fs::write(b.join("config.json"), cfg.to_string()).unwrap();
    let mut fg =
        r.command(&["run", "-b", bs, "live"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(fg.stdout.take().unwrap()));
    assert_eq!(lines.next().unwrap().unwrap(), "up");
    assert_eq!(status_of(r, &log, "live")["status"], "running");
    // The poststart hook runs once the command has started, so possibly after
    // its first line: wait for what it writes.
    let t0 = std::time::Instant::now();
    let hook: serde_json::Value = loop {
        match std::fs::read(&poststart).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
            Some(v) => break v,
            None if t0.elapsed().as_secs() < 10 => std::thread::sleep(std::time::Duration::from_millis(10)),
            None => panic!("the poststart hook wrote nothing to {}", poststart.display()),
        }
    };
    assert_eq!(hook["status"], "running");
    let (code, out, _) = oci(r, &log, &["exec", "live", "echo", "inside"]);
    assert_eq!((code, out.as_str()), (0, "inside\n"));
    let (code, _, err) = oci(r, &log, &["delete", "live"]);
    assert!(code != 0 && err.contains("--force"), "{err}");
    assert_eq!(oci(r, &log, &["delete", "--force", "live"]).0, 0);
    assert_eq!(fg.wait().unwrap().code(), Some(137));
    let rec = r.last_record();
    assert_eq!((rec["run_id"].as_str(), rec["exit"]["code"].as_i64()), (Some("live"), Some(137)));

    // --detach: create and start, then return; init is the caller's to reap.
    let pid_file = work.join("d.pid");
    let mut detached = r
        .command(&["run", "-d", "-b", bs, "--pid-file", pid_file.to_str().unwrap(), "bg"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _stdin = detached.stdin.take(); // held open: the command waits on `read`
    assert!(detached.wait().unwrap().success(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    let init = Pid::from_raw(std::fs::read_to_string(&pid_file).unwrap().parse().unwrap());
    assert_eq!(status_of(r, &log, "bg")["status"], "running");
    assert_eq!(oci(r, &log, &["kill", "bg", "KILL"]).0, 0);
    assert_eq!(waitpid(init, None).unwrap(), WaitStatus::Signaled(init, nix::sys::signal::SIGKILL, false));
    assert_eq!(oci(r, &log, &["delete", "bg"]).0, 0);

    // The image options make no sense with a bundle, and are refused by name.
    let (code, _, err) = oci(r, &log, &["run", "-b", bs, "--memory", "1g", "x"]);
    assert_eq!(code, 125);
    assert!(err.contains("--memory"), "{err}");
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn systemd_cgroup_is_refused_where_systemd_does_not_run_and_nothing_is_made() {
    let test = "systemd_cgroup_is_refused_where_systemd_does_not_run_and_nothing_is_made";
    if !common::privileged(test) {
        return;
    }
    if Path::new("/run/systemd/system").exists() {
        common::skip(test, "systemd runs here; the driver itself is proven in the guest (case 11)");
        return;
    }
    let _serial = common::bundle::serial();
    let r = common::TestRoot::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.json");
    let b = bundle(dir.path(), &["true"]);
    let set_path = |p: &str| {
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
        config["linux"]["cgroupsPath"] = serde_json::json!(p);
        std::fs::write(b.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    };
    let create = || oci(&r, &log, &["--systemd-cgroup", "create", "-b", b.to_str().unwrap(), "sd"]);

    set_path("exprun_test.slice:exprun:sd");
    let (code, _, err) = create();
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("--systemd-cgroup: systemd is not running on this host"), "{err}");
    for bad in ["/not/a/unit", "exprun_test.slice:exprun:../../x"] {
        set_path(bad);
        let (code, _, err) = create();
        assert_eq!(code, 125, "{bad}: {err}");
        assert!(err.contains("linux.cgroupsPath") && err.contains("slice"), "{bad}: {err}");
    }
    let (code, _, _) = oci(&r, &log, &["state", "sd"]);
    assert_ne!(code, 0, "a refused create left a container behind");
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        assert!(!h.path().join("exprun_test.slice").exists(), "a cgroup was made in {}", h.path().display());
    }
    r.assert_no_leftovers();
}
