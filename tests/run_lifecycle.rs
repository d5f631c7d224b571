#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `exprun run` as root: exit codes, signals, limits, volumes, inputs and outputs,
//! the run record, and cleanup after a killed exprun.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{privileged, TestRoot};

/// Wait until a run of this root has its command running; return its plan.
fn wait_running(r: &TestRoot) -> serde_json::Value {
    let containers = r.path().join("containers");
    let t0 = Instant::now();
    loop {
        if t0.elapsed() > Duration::from_secs(20) {
            let listing: Vec<_> =
                std::fs::read_dir(&containers).into_iter().flatten().flatten().map(|e| e.path()).collect();
            let ps = std::process::Command::new("ps")
                .args(["-eo", "pid,ppid,stat,wchan:30,args"])
                .output()
                .unwrap();
            panic!("the run never started: {listing:?}\n{}", String::from_utf8_lossy(&ps.stdout));
        }
        std::thread::sleep(Duration::from_millis(20));
        let Some(dir) = std::fs::read_dir(&containers).ok().and_then(|mut d| d.next()).and_then(|e| e.ok())
        else {
            continue;
        };
        let Ok(bytes) = std::fs::read(dir.path().join("plan.json")) else { continue };
        let plan: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let procs = Path::new(plan["cgroup"]["dirs"]["pids"].as_str().unwrap()).join("cgroup.procs");
        if std::fs::read_to_string(procs).is_ok_and(|p| !p.trim().is_empty()) {
            // The command itself, not just init: give init the moment it needs to exec.
            std::thread::sleep(Duration::from_millis(100));
            return plan;
        }
    }
}

fn code_of(r: &TestRoot, args: &[&str]) -> (i32, String) {
    let (code, _out, err) = r.run(args);
    (code, err)
}

#[test]
fn exit_statuses_follow_the_contract() {
    if !privileged("exit_statuses_follow_the_contract") {
        return;
    }
    let r = TestRoot::with_busybox();
    assert_eq!(code_of(&r, &["busybox:latest", "--", "sh", "-c", "exit 3"]).0, 3);
    assert_eq!(code_of(&r, &["busybox:latest", "--", "true"]).0, 0);
    let (c, err) = code_of(&r, &["busybox:latest", "--", "no-such-command"]);
    assert_eq!(c, 127, "{err}");
    assert!(err.contains("no-such-command") && err.contains("not found"), "{err}");
    let (c, err) = code_of(&r, &["busybox:latest", "--", "/etc/passwd"]);
    assert_eq!(c, 126, "{err}");
    let (c, err) = code_of(&r, &["no/such:image", "--", "true"]);
    assert_eq!(c, 125, "{err}");
    assert!(err.contains("no/such:image"), "{err}");
    let (c, err) = code_of(&r, &["--memory", "1k", "busybox:latest"]);
    assert_eq!(c, 125);
    assert!(err.contains("--memory") && err.contains("minimum"), "{err}");
    // A process killed by a signal inside: 128+N.
    let (c, _) = code_of(&r, &["busybox:latest", "--", "sh", "-c", "sh -c 'kill -USR1 $$'; exit $?"]);
    assert_eq!(c, 128 + libc::SIGUSR1);
    // Every run, even failed ones, left a record.
    let statuses: Vec<String> =
        r.records().iter().map(|x| x["status"].as_str().unwrap().to_string()).collect();
    assert!(statuses.contains(&"not-started".to_string()), "{statuses:?}");
    r.assert_no_leftovers();
}

#[test]
fn signals_to_exprun_reach_the_command() {
    if !privileged("signals_to_exprun_reach_the_command") {
        return;
    }
    let r = TestRoot::with_busybox();
    // A pid 1 without a handler: the forwarded SIGTERM must still end it, 143.
    let mut child = r.command(&["run", "busybox:latest", "--", "sleep", "60"]).spawn().unwrap();
    wait_running(&r);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::SIGTERM).unwrap();
    let t0 = Instant::now();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(143));
    assert!(t0.elapsed() < Duration::from_secs(5));
    let rec = r.last_record();
    assert_eq!(rec["signals"][0]["signal"], "SIGTERM");
    assert_eq!(rec["signals"][0]["delivered_as"], "SIGKILL");

    // A pid 1 with a handler gets the signal itself and decides.
    let script = "trap 'echo got-int; exit 7' INT; echo ready; while true; do sleep 0.1; done";
    let mut child = r
        .command(&["run", "busybox:latest", "--", "sh", "-c", script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut buf).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::SIGINT).unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(7));
    assert!(rest.contains("got-int"), "{rest}");
    assert_eq!(r.last_record()["signals"][0]["delivered_as"], "SIGINT");
    r.assert_no_leftovers();
}

#[test]
fn memory_hog_is_oom_killed_and_reported() {
    if !privileged("memory_hog_is_oom_killed_and_reported") {
        return;
    }
    let r = TestRoot::with_busybox();
    let (code, _out, err) = r.run(&[
        "--memory",
        "32m",
        "busybox:latest",
        "--",
        "sh",
        "-c",
        "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo ${#x}",
    ]);
    assert_eq!(code, 137, "{err}");
    assert!(err.contains("out of memory") && err.contains("32 MiB"), "{err}");
    let rec = r.last_record();
    assert_eq!(rec["exit"]["oom_killed"], true);
    assert!(rec["usage"]["oom_kills"].as_u64().unwrap() >= 1);
    assert_eq!(rec["cgroup"]["limits"]["memory_bytes"], 32 << 20);
    assert!(rec["usage"]["peak_memory_bytes"].as_u64().unwrap() > 16 << 20);
    r.assert_no_leftovers();
}

#[test]
fn fork_bomb_hits_the_pids_limit() {
    if !privileged("fork_bomb_hits_the_pids_limit") {
        return;
    }
    let r = TestRoot::with_busybox();
    let script = "n=0; for i in $(seq 100); do sleep 5 & n=$((n+1)); done 2>/dev/null; echo started; kill $(jobs -p) 2>/dev/null; true";
    let (code, out, err) = r.run(&["--pids-limit", "20", "busybox:latest", "--", "sh", "-c", script]);
    assert!(err.contains("process limit"), "{err}");
    let rec = r.last_record();
    assert!(rec["usage"]["pids_limit_hits"].as_u64().unwrap() > 0, "{rec}");
    assert_eq!(rec["cgroup"]["limits"]["pids_max"], 20);
    // busybox sh gives up with 2 when it cannot fork, before the loop ends.
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert_eq!(rec["exit"]["code"], 2, "{rec}");
    // And CPU: the quota is in the kernel's file, as the container sees its
    // own cgroup, and in the record.
    let v1 = std::path::Path::new("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists();
    let read = if v1 { "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us" } else { "cat /sys/fs/cgroup/cpu.max" };
    let (code, out, err) = r.run(&["--cpus", "0.5", "busybox:latest", "--", "sh", "-c", read]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), if v1 { "50000" } else { "50000 100000" }, "the kernel's cpu quota");
    assert_eq!(r.last_record()["cgroup"]["limits"]["cpu_quota_us"], 50_000);
    r.assert_no_leftovers();
}

#[test]
fn volumes_inputs_and_outputs_with_digests() {
    if !privileged("volumes_inputs_and_outputs_with_digests") {
        return;
    }
    let r = TestRoot::with_busybox();
    let data = tempfile::tempdir().unwrap();
    let input = data.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("a.csv"), "1,2\n3,4\n").unwrap();
    let output = data.path().join("out");
    let vol = data.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    let spec_in = format!("{}:/data", input.display());
    let spec_out = format!("{}:/out", output.display());
    let spec_vol = format!("{}:/vol:ro", vol.display());
    let (code, out, err) = r.run(&[
        "--input",
        &spec_in,
        "--output",
        &spec_out,
        "-v",
        &spec_vol,
        "busybox:latest",
        "--",
        "sh",
        "-c",
        "cat /data/a.csv; touch /data/x 2>&1; touch /vol/x 2>&1; /usr/local/bin/experiment",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3,4"));
    assert_eq!(out.matches("Read-only file system").count(), 2, "{out}");
    assert_eq!(std::fs::read_to_string(output.join("result.txt")).unwrap(), "result: 42\n");
    let rec = r.last_record();
    let input_digest = |p: &Path| {
        let out = std::process::Command::new("sha256sum").arg(p).output().unwrap();
        format!("sha256:{}", String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap())
    };
    let entries = &rec["inputs"][0]["tree"]["entries"];
    assert_eq!(entries[0]["path"], "a.csv");
    assert_eq!(entries[0]["digest"], input_digest(&input.join("a.csv")));
    let out_entries = &rec["outputs"][0]["tree"]["entries"];
    assert_eq!(out_entries[0]["path"], "result.txt");
    assert_eq!(out_entries[0]["digest"], input_digest(&output.join("result.txt")));
    assert_eq!(rec["stdout"]["bytes"].as_u64().unwrap() as usize, out.len());
    r.assert_no_leftovers();
}

#[test]
fn the_record_holds_the_run_context() {
    if !privileged("the_record_holds_the_run_context") {
        return;
    }
    let r = TestRoot::with_busybox();
    let (code, out, err) = r.run(&[
        "--name",
        "exp1",
        "-e",
        "HF_TOKEN=hunter2",
        "-e",
        "SEED=7",
        "--memory",
        "64m",
        "busybox:latest",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!(code, 0, "{err}");
    let rec = r.last_record();
    assert_eq!(rec["schema"], "exprun.dev/run-record/v1");
    assert_eq!(rec["name"], "exp1");
    assert_eq!(rec["status"], "exited");
    assert_eq!(rec["exit"]["code"], 0);
    assert_eq!(rec["image"]["manifest_digest"], common::pinned("MANIFEST_DIGEST"));
    assert_eq!(rec["image"]["config_digest"], common::pinned("CONFIG_DIGEST"));
    assert_eq!(rec["image"]["layers"][1]["diff_id"], common::pinned("LAYER2_DIFF_ID"));
    assert!(rec["exprun"]["binary_digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(rec["command_line"].as_array().unwrap().iter().any(|a| a == "--memory"));
    let text = rec.to_string();
    assert!(!text.contains("hunter2"), "a secret reached the record");
    let env: Vec<&str> =
        rec["spec"]["process"]["env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(env.contains(&"SEED=7"));
    assert!(env.iter().any(|e| e.starts_with("HF_TOKEN=<redacted hmac-sha256:")), "{env:?}");
    let spec = &rec["spec"];
    assert_eq!(spec["process"]["args"][0], "sh");
    assert_eq!(spec["process"]["cwd"], "/");
    assert_eq!(spec["hostname"], "exprun");
    assert!(spec["process"]["rlimits"].as_array().unwrap().iter().any(|l| l["type"] == "RLIMIT_NOFILE"));
    assert!(spec["process"]["capabilities"]["bounding"].as_array().unwrap().len() == 14);
    let ns: Vec<&str> =
        spec["linux"]["namespaces"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
    for want in ["pid", "network", "ipc", "uts", "mount", "cgroup"] {
        assert!(ns.contains(&want), "{ns:?}");
    }
    assert!(spec["mounts"].as_array().unwrap().iter().any(|m| m["destination"] == "/proc"));
    assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
    let host = &rec["host"];
    for k in [
        "kernel_release",
        "arch",
        "cpu_model",
        "cpus_online",
        "memory_bytes",
        "cgroup_mode",
        "cgroup_controllers",
    ] {
        assert!(!host[k].is_null(), "host.{k} missing");
    }
    assert!(rec["time"]["wall_seconds"].as_f64().unwrap() > 0.0);
    assert!(rec["usage"]["cpu_user_us"].is_u64());
    assert!(rec["usage"]["peak_memory_bytes"].as_u64().unwrap() > 0);
    assert_eq!(rec["stdout"]["bytes"], 4);
    assert_eq!(rec["stderr"]["bytes"], 4);
    let sha = |s: &str| {
        use sha2::Digest as _;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(s.as_bytes())))
    };
    assert_eq!(rec["stdout"]["digest"], sha(&out));
    assert_eq!(rec["executable"], "/bin/sh");

    // The CLI views of it.
    let ls = r.exprun(&["runs", "ls"], None);
    assert!(String::from_utf8_lossy(&ls.stdout).contains("exp1"));
    let show = r.exprun(&["runs", "show", "exp1"], None);
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(show.contains("exited (exit 0)") && show.contains("limits:     memory 64 MiB"), "{show}");
    let json = r.exprun(&["runs", "show", "--json", &rec["run_id"].as_str().unwrap()[..8]], None);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&json.stdout).unwrap()["run_id"], rec["run_id"]);
    // Names are unique while the record exists.
    let (code, err) = code_of(&r, &["--name", "exp1", "busybox:latest", "--", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("already exists") && err.contains("runs rm"), "{err}");
    assert!(r.exprun(&["runs", "rm", "exp1"], None).status.success());
    assert_eq!(code_of(&r, &["--name", "exp1", "busybox:latest", "--", "true"]).0, 0);
    r.assert_no_leftovers();
}

#[test]
fn a_killed_exprun_is_cleaned_up_by_the_next_one() {
    if !privileged("a_killed_exprun_is_cleaned_up_by_the_next_one") {
        return;
    }
    let r = TestRoot::with_busybox();
    let mut child =
        r.command(&["run", "--memory", "64m", "busybox:latest", "--", "sleep", "60"]).spawn().unwrap();
    let plan = wait_running(&r);
    child.kill().unwrap(); // SIGKILL: no cleanup of its own
    child.wait().unwrap();
    // The container dies with exprun (parent-death signal).
    let memory_dir = plan["cgroup"]["dirs"]["memory"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    while std::fs::read_to_string(Path::new(&memory_dir).join("cgroup.procs"))
        .map(|p| !p.trim().is_empty())
        .unwrap_or(false)
    {
        assert!(t0.elapsed() < Duration::from_secs(5), "the container outlived exprun");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(Path::new(&memory_dir).exists(), "precondition: the cgroup is left behind");
    let gc = r.exprun(&["gc"], None);
    assert!(gc.status.success(), "{}", String::from_utf8_lossy(&gc.stderr));
    assert!(String::from_utf8_lossy(&gc.stdout).contains("recorded as lost"));
    let rec = r.last_record();
    assert_eq!(rec["status"], "lost");
    r.assert_no_leftovers();

    // The next run cleans up too, without being asked.
    let mut child = r.command(&["run", "busybox:latest", "--", "sleep", "60"]).spawn().unwrap();
    let plan = wait_running(&r);
    child.kill().unwrap();
    child.wait().unwrap();
    let (code, _, err) = r.run(&["busybox:latest", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let lost = r.records().into_iter().filter(|x| x["status"] == "lost").count();
    assert_eq!(lost, 2);
    assert!(!Path::new(plan["cgroup"]["dirs"]["pids"].as_str().unwrap()).exists());
    r.assert_no_leftovers();
}

#[test]
fn concurrent_runs_do_not_interfere() {
    if !privileged("concurrent_runs_do_not_interfere") {
        return;
    }
    let r = TestRoot::with_busybox();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            r.command(&["run", "busybox:latest", "--", "sh", "-c", &format!("echo {i}; exit {i}")])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let out = h.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(i as i32));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), i.to_string());
    }
    assert_eq!(r.records().len(), 8);
    r.assert_no_leftovers();
}

#[test]
fn keep_saves_the_writable_layer_with_the_record() {
    if !privileged("keep_saves_the_writable_layer_with_the_record") {
        return;
    }
    let r = TestRoot::with_busybox();
    let (code, _, err) = r.run(&[
        "--keep",
        "--name",
        "kept",
        "busybox:latest",
        "--",
        "sh",
        "-c",
        "echo data > /result; rm /etc/passwd",
    ]);
    assert_eq!(code, 0, "{err}");
    let id = r.last_record()["run_id"].as_str().unwrap().to_string();
    let upper = r.path().join("runs").join(&id).join("upper");
    assert_eq!(std::fs::read_to_string(upper.join("result")).unwrap(), "data\n");
    use std::os::unix::fs::FileTypeExt;
    let wh = std::fs::symlink_metadata(upper.join("etc/passwd")).unwrap();
    assert!(wh.file_type().is_char_device(), "a deletion is kept as an overlay whiteout");
    r.assert_no_leftovers();
    assert!(r.exprun(&["runs", "rm", "kept"], None).status.success());
    assert!(!r.path().join("runs").join(&id).exists());
}

#[test]
fn image_gc_keeps_the_layers_of_a_live_run() {
    if !privileged("image_gc_keeps_the_layers_of_a_live_run") {
        return;
    }
    let r = TestRoot::with_busybox();
    let child = r
        .command(&["run", "busybox:latest", "--", "sh", "-c", "sleep 1; ls /bin/busybox"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_running(&r);
    assert!(r.exprun(&["image", "rm", "busybox:latest"], None).status.success());
    let gc = r.exprun(&["image", "gc"], None);
    assert!(
        String::from_utf8_lossy(&gc.stdout).contains(" 0 layers"),
        "{}",
        String::from_utf8_lossy(&gc.stdout)
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "/bin/busybox");
    let gc = r.exprun(&["gc"], None);
    assert!(
        String::from_utf8_lossy(&gc.stdout).contains(" 2 layers"),
        "{}",
        String::from_utf8_lossy(&gc.stdout)
    );
    r.assert_no_leftovers();
}

#[test]
fn live_plans_and_records_are_private_to_root() {
    if !privileged("live_plans_and_records_are_private_to_root") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let r = TestRoot::with_busybox();
    assert_eq!(code_of(&r, &["--name", "p", "busybox:latest", "--", "true"]).0, 0);
    for d in ["containers", "runs", "runs/by-name"] {
        let mode = std::fs::metadata(r.path().join(d)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{d} is {mode:o}");
    }
    r.assert_no_leftovers();
}

#[test]
fn runs_racing_for_one_name_get_it_once() {
    if !privileged("runs_racing_for_one_name_get_it_once") {
        return;
    }
    let r = TestRoot::with_busybox();
    let children: Vec<std::process::Child> = (0..4)
        .map(|_| {
            r.command(&["run", "--name", "race", "busybox:latest", "--", "sleep", "0.3"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outcomes: Vec<(i32, String)> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
        })
        .collect();
    let won = outcomes.iter().filter(|(c, _)| *c == 0).count();
    assert_eq!(won, 1, "exactly one run gets the name: {outcomes:?}");
    for (code, err) in outcomes.iter().filter(|(c, _)| *c != 0) {
        assert_eq!(*code, 125, "{err}");
        assert!(err.contains("a run named \"race\" already exists"), "{err}");
    }
    let named: Vec<_> = r.records().into_iter().filter(|rec| rec["name"] == "race").collect();
    assert_eq!(named.len(), 1, "one record carries the name");
    r.assert_no_leftovers();
}
