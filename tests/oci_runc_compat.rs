#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Where exprun must behave as runc does for the tools written against runc:
//! the same bundle run by both in one test, and what the kernel shows.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::bundle::{bundle, oci, remove_parent_cgroups, runc, runc_run, shim};
use common::rootless::edit_config;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// `exprun create` then `start` of `b` as `id`, the way the shim does: the
/// command's stdout, its exit status as the subreaper reaps it, and create's
/// and start's statuses.
fn create_start(t: &common::bundle::Shim, b: &Path, id: &str) -> (i32, String) {
    let (r, log) = (&t.r, t.work.path().join(format!("{id}.log")));
    let pid_file = t.work.path().join(format!("{id}.pid"));
    let mut create = r
        .command(&["--log", log.to_str().unwrap(), "--log-format", "json"])
        .args(["create", "-b", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = create.stdout.take().unwrap();
    assert!(
        create.wait().unwrap().success(),
        "create {id}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let init = Pid::from_raw(std::fs::read_to_string(&pid_file).unwrap().parse().unwrap());
    let (code, _, err) = oci(r, &log, &["start", id]);
    assert_eq!(code, 0, "start {id}: {err}");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
    let status = match waitpid(init, None).unwrap() {
        WaitStatus::Exited(_, c) => c,
        other => panic!("{id}: init ended with {other:?}"),
    };
    assert_eq!(oci(r, &log, &["delete", id]).0, 0);
    (status, text)
}

/// A Docker-style profile from before close_range existed: everything fails
/// with EPERM but an allow-list, here exprun's default one without
/// `close_range` and without `mkdir`/`mkdirat` (to see that the filter applies).
fn profile_without_close_range() -> serde_json::Value {
    let caps: Vec<String> = exprun::spec::DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    let mut p = serde_json::to_value(exprun::seccomp::default::profile(&caps)).unwrap();
    assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
    let mut removed = 0;
    for rule in p["syscalls"].as_array_mut().unwrap() {
        let names = rule["names"].as_array_mut().unwrap();
        let before = names.len();
        names.retain(|n| !["close_range", "mkdir", "mkdirat"].contains(&n.as_str().unwrap()));
        removed += before - names.len();
    }
    assert_eq!(removed, 3, "the allow-list had close_range, mkdir and mkdirat");
    p
}

/// The command under that profile: it runs, mkdir is denied, the filter is
/// on, and its capabilities (which must be runc's: without no_new_privs exprun
/// holds CAP_SYS_ADMIN until the filter is loaded, then drops it).
const SECCOMP_SCRIPT: &str =
    "echo started; mkdir /dev/shm/x 2>&1; grep -E '^(Seccomp|NoNewPrivs|Cap[A-Za-z]+):' /proc/self/status";
const SECCOMP_OUTPUT: &str = "started\nmkdir: can't create directory '/dev/shm/x': Operation not permitted\n";

#[test]
fn a_profile_without_close_range_runs_as_under_runc() {
    let test = "a_profile_without_close_range_runs_as_under_runc";
    let Some(t) = shim(test) else { return };
    let Some(runc) = runc(test) else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sh", "-c", SECCOMP_SCRIPT]);
    let profile = profile_without_close_range();
    // With no_new_privs the filter is exprun's last step but execve; without
    // it, loading it needs CAP_SYS_ADMIN, which the process does not keep.
    for nnp in [true, false] {
        edit_config(&b, |c| {
            c["process"]["noNewPrivileges"] = serde_json::json!(nnp);
            c["linux"]["seccomp"] = profile.clone();
            // runc makes /dev's nodes with mknod: they must open.
            for m in c["mounts"].as_array_mut().unwrap() {
                if m["destination"] == "/dev" {
                    m["options"].as_array_mut().unwrap().retain(|o| o != "nodev");
                }
            }
        });
        let state = tempfile::tempdir().unwrap();
        let (code, want, err) = runc_run(&runc, state.path(), &b, &format!("runc-{nnp}"));
        assert_eq!(code, 0, "runc, noNewPrivileges {nnp}: {err}");
        assert!(want.starts_with(SECCOMP_OUTPUT), "runc, noNewPrivileges {nnp}: {want}");
        assert!(want.contains("Seccomp:\t2\n") && want.contains("CapEff:"), "{want}");
        assert!(want.contains(&format!("NoNewPrivs:\t{}\n", nnp as u8)), "{want}");

        let (code, out) = create_start(&t, &b, &format!("cs-{nnp}"));
        assert_eq!(
            (code, out.as_str()),
            (0, want.as_str()),
            "exprun create/start vs runc, noNewPrivileges {nnp}"
        );

        let log = work.join("run.log");
        let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), &format!("run-{nnp}")]);
        assert_eq!(code, 0, "exprun run -b, noNewPrivileges {nnp}: {err}");
        assert_eq!(out, want, "exprun run -b vs runc, noNewPrivileges {nnp}");
    }

    // exprun's own `run` of an image with the profile as a file.
    let file = work.join("profile.json");
    std::fs::write(&file, profile.to_string()).unwrap();
    let images = common::TestRoot::with_busybox();
    let opt = format!("seccomp={}", file.display());
    let (code, out, err) = images.run(&["--security-opt", &opt, "busybox", "sh", "-c", SECCOMP_SCRIPT]);
    assert_eq!(code, 0, "exprun run IMAGE: {err}");
    assert!(out.starts_with(SECCOMP_OUTPUT) && out.contains("Seccomp:\t2\n"), "exprun run IMAGE: {out}");
    images.assert_no_leftovers();
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

/// Every array in `v`, with its path (`.linux.capabilities`).
fn arrays<'a>(v: &'a serde_json::Value, path: &str, out: &mut Vec<(String, &'a Vec<serde_json::Value>)>) {
    match v {
        serde_json::Value::Array(a) => out.push((path.to_string(), a)),
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                arrays(v, &format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn features_is_the_same_on_every_call_and_its_lists_are_sorted() {
    let features = || {
        let out = Command::new(common::exprun_bin()).arg("features").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let first = features();
    for _ in 0..5 {
        assert_eq!(features(), first, "exprun features printed something else on a later call");
    }
    let doc: serde_json::Value = serde_json::from_str(&first).unwrap();
    // The hooks are in the order they run, as runc lists them.
    let hooks = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"];
    assert_eq!(doc["hooks"], serde_json::json!(hooks));
    let mut lists = Vec::new();
    arrays(&doc, "", &mut lists);
    lists.retain(|(path, _)| path != ".hooks");
    assert!(lists.iter().any(|(p, _)| p == ".linux.capabilities"), "{lists:?}");
    for (path, list) in lists {
        let names: Vec<&str> = list.iter().map(|v| v.as_str().unwrap()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted, "features{path} is not sorted (or has duplicates)");
    }
    let caps = doc["linux"]["capabilities"].as_array().unwrap();
    assert!(caps.len() >= 41 && caps.iter().any(|c| c == "CAP_SYS_ADMIN"), "{caps:?}");
}

#[test]
fn boolean_flags_take_runcs_equals_true_and_false_forms() {
    let r = common::TestRoot::new();
    let missing = "container \"nope\" does not exist";
    // (command line, exit status, what stdout or stderr must hold): each flag
    // bare, =true and =false, reaching the verb (not refused by the parser).
    let table: &[(&[&str], i32, &str)] = &[
        (&["delete", "--force", "nope"], 0, ""),
        (&["delete", "--force=true", "nope"], 0, ""),
        (&["delete", "-f=true", "nope"], 0, ""),
        (&["delete", "--force=false", "nope"], 125, missing),
        (&["delete", "--force=1", "nope"], 0, ""),
        (&["delete", "--force=0", "nope"], 125, missing),
        (&["list", "--quiet"], 0, ""),
        (&["list", "--quiet=true"], 0, ""),
        (&["list", "-q=false"], 0, "ID "),
        (&["kill", "--all=true", "nope", "KILL"], 125, missing),
        (&["kill", "--all=false", "nope"], 125, missing),
        (&["kill", "-a", "nope"], 125, missing),
        (&["exec", "--detach=true", "--tty=false", "nope", "true"], 125, missing),
        (&["exec", "-d=false", "-t=false", "nope", "true"], 125, missing),
        (&["--debug=false", "--systemd-cgroup=false", "state", "nope"], 125, missing),
        (&["--systemd-cgroup=true", "state", "nope"], 125, missing),
        (
            &["create", "--no-pivot=false", "--no-new-keyring=true", "-b", "/nonexistent", "c"],
            125,
            "/nonexistent",
        ),
        (&["create", "--no-pivot", "--no-new-keyring=false", "-b", "/nonexistent", "c"], 125, "/nonexistent"),
        (
            &["run", "--detach=false", "--no-pivot=true", "--no-new-keyring", "-b", "/nonexistent", "c"],
            125,
            "/nonexistent",
        ),
        (&["run", "--no-subreaper=true", "-b", "/nonexistent", "c"], 125, "/nonexistent"),
        (&["run", "--no-subreaper", "-b", "/nonexistent", "c"], 125, "/nonexistent"),
        // Not a boolean: refused by name.
        (&["kill", "--all=maybe", "nope"], 125, "--all"),
    ];
    for (args, code, holds) in table {
        let out = r.exprun(args, None);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(*code), "exprun {args:?}: {stderr}");
        assert!(stdout.contains(holds) || stderr.contains(holds), "exprun {args:?}: {stdout}{stderr}");
    }
    let quiet = |flag: &str| r.exprun(&["list", flag], None).stdout;
    assert!(quiet("--quiet=true").is_empty() && quiet("-q").is_empty(), "list --quiet printed a header");
}

#[test]
fn exprun_errors_are_marked_as_errors_on_stderr_and_in_the_log() {
    let r = common::TestRoot::new();
    let work = tempfile::tempdir().unwrap();
    let msg = "container \"nope\" does not exist";
    let out = r.exprun(&["state", "nope"], None);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(String::from_utf8_lossy(&out.stderr), format!("exprun: error: {msg}\n"));

    // The shim reads the msg of the last "level":"error" line of --log.
    let json = work.path().join("log.json");
    for verb in [&["state", "nope"][..], &["kill", "nope", "KILL"], &["delete", "nope"]] {
        let (code, _, err) = oci(&r, &json, verb);
        assert_eq!((code, err.as_str()), (125, format!("exprun: error: {msg}\n").as_str()), "{verb:?}");
    }
    let text = std::fs::read_to_string(&json).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{text}");
    for l in &lines {
        assert_eq!((l["level"].as_str(), l["msg"].as_str()), (Some("error"), Some(msg)), "{l}");
        assert!(l["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
    }
    // Text format, as runc's logrus writes it.
    let log = work.path().join("log.txt");
    let out =
        r.command(&["--log", log.to_str().unwrap(), "state", "nope"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    let line = std::fs::read_to_string(&log).unwrap();
    assert!(
        line.starts_with("time=\"")
            && line.ends_with(" level=error msg=\"container \\\"nope\\\" does not exist\"\n"),
        "{line}"
    );
}

/// A container running `sleep 600` made by `runtime` (exprun's or runc's
/// command line, `--root` included) from a bundle of its own under `dir`.
fn sleeper(runtime: &[String], dir: &Path, id: &str) -> (PathBuf, Pid) {
    let b = bundle(dir, &["sleep", "600"]);
    edit_config(&b, |c| {
        // So that exec --no-new-privs shows.
        c["process"]["noNewPrivileges"] = serde_json::json!(false);
        for m in c["mounts"].as_array_mut().unwrap() {
            if m["destination"] == "/dev" {
                m["options"].as_array_mut().unwrap().retain(|o| o != "nodev");
            }
        }
    });
    let pid_file = dir.join("init.pid");
    let st = Command::new(&runtime[0])
        .args(&runtime[1..])
        .args(["create", "--bundle", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "{runtime:?} create {id}");
    let st = Command::new(&runtime[0]).args(&runtime[1..]).args(["start", id]).status().unwrap();
    assert!(st.success(), "{runtime:?} start {id}");
    (b, Pid::from_raw(std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap()))
}

/// The cgroup directories of `pid` on the host, by controller (co-mounted
/// controllers under their directory's name; the cgroup2 hierarchy as "").
fn cgroup_dirs(pid: Pid) -> Vec<(String, PathBuf)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
            // The cgroup2 hierarchy of a hybrid host is mounted at `unified`.
            let mount = if ctrl.is_empty() { "unified" } else { ctrl.strip_prefix("name=").unwrap_or(ctrl) };
            let dir = Path::new("/sys/fs/cgroup").join(mount).join(path.trim_start_matches('/'));
            // Only the container's own: never a cgroup of the host's.
            let ours = path.contains(&format!("/{}/", common::bundle::parent_cgroup()));
            (ours && dir.is_dir()).then(|| (ctrl.to_string(), dir))
        })
        .collect()
}

/// `RUNTIME exec ARGS` through `sh -c`, so that fd 3 can be a file: (status,
/// stdout, stderr).
fn exec_sh(runtime: &[String], args: &[&str], fd3: Option<&Path>) -> (i32, String, String) {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line: Vec<String> = runtime.iter().map(|s| quote(s)).collect();
    line.push("exec".into());
    line.extend(args.iter().map(|a| quote(a)));
    if let Some(f) = fd3 {
        line.push(format!("3>{}", quote(f.to_str().unwrap())));
    }
    let out = Command::new("sh").arg("-c").arg(line.join(" ")).stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn exec_options_do_what_runcs_do() {
    let test = "exec_options_do_what_runcs_do";
    let Some(t) = shim(test) else { return };
    let Some(runc) = runc(test) else { return };
    let work = t.work.path();
    let runc_root = work.join("runc-root");
    let runtimes = [
        (
            "exprun",
            vec![
                common::exprun_bin().display().to_string(),
                "--root".into(),
                t.r.path().display().to_string(),
            ],
        ),
        ("runc", vec![runc.display().to_string(), "--root".into(), runc_root.display().to_string()]),
    ];
    let mut seen: Vec<Vec<String>> = vec![Vec::new(); 2];
    let mut env_with_process = Vec::new();
    for (i, (name, rt)) in runtimes.iter().enumerate() {
        let (_, init) = sleeper(rt, &work.join(name), "c");
        let out = &mut seen[i];
        // --env replaces the variable --process sets.
        let proc_file = work.join(format!("{name}-process.json"));
        std::fs::write(
            &proc_file,
            r#"{"args":["sh","-c","tr '\\0' '\\n' < /proc/$$/environ | grep ^A="],"cwd":"/","env":["PATH=/bin","A=orig"],"user":{"uid":0,"gid":0}}"#,
        )
        .unwrap();
        // (runc 1.1.5 ignores every option but --process then: compared below
        // with what the option says, not with runc.)
        let (code, stdout, err) =
            exec_sh(rt, &["--env", "A=override", "--process", proc_file.to_str().unwrap(), "c"], None);
        assert_eq!(code, 0, "{name}: {err}");
        env_with_process.push(stdout);
        let (code, stdout, err) = exec_sh(
            rt,
            &["--env", "TERM=dumb", "c", "sh", "-c", "tr '\\0' '\\n' < /proc/$$/environ | grep ^TERM="],
            None,
        );
        assert_eq!(code, 0, "{name}: {err}");
        out.push(format!("env: {stdout}"));
        // --cap, as root and as another user.
        let caps = "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status";
        for user in ["0", "1000"] {
            let (code, stdout, err) =
                exec_sh(rt, &["--cap", "CAP_SYS_ADMIN", "-u", user, "c", "sh", "-c", caps], None);
            assert_eq!(code, 0, "{name}: {err}");
            out.push(format!("cap as {user}: {stdout}"));
        }
        // --no-new-privs, bare and in runc's =true|false forms.
        for flag in [None, Some("--no-new-privs"), Some("--no-new-privs=true"), Some("--no-new-privs=false")]
        {
            let mut args: Vec<&str> = flag.into_iter().collect();
            args.extend(["c", "grep", "NoNewPrivs:", "/proc/self/status"]);
            let (code, stdout, err) = exec_sh(rt, &args, None);
            assert_eq!(code, 0, "{name}: {err}");
            out.push(format!("{flag:?}: {stdout}"));
        }
        // --preserve-fds: fd 3 reaches the process, and nothing else does.
        let file = work.join(format!("{name}-fd3"));
        let script = "echo through fd 3 >&3; ls /proc/self/fd";
        let (code, stdout, err) = exec_sh(rt, &["--preserve-fds", "1", "c", "sh", "-c", script], Some(&file));
        assert_eq!(code, 0, "{name}: {err}");
        out.push(format!("preserve-fds: {stdout} wrote {:?}", std::fs::read_to_string(&file).unwrap()));
        // --cgroup: a sub-cgroup of the container's in one controller, then in all.
        let dirs = cgroup_dirs(init);
        let memory = dirs.iter().find(|(c, _)| c == "memory").map(|(_, d)| d.clone()).unwrap();
        std::fs::create_dir(memory.join("one")).unwrap();
        for (c, d) in &dirs {
            std::fs::create_dir(d.join("all")).unwrap();
            if c == "cpuset" {
                // A new cpuset has no CPUs nor memory nodes until given its parent's.
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    std::fs::write(d.join("all").join(f), std::fs::read(d.join(f)).unwrap()).unwrap();
                }
            }
        }
        let show = "grep -E ':(memory|pids):' /proc/self/cgroup | cut -d: -f2-";
        for sub in ["memory:one", "all", "/all"] {
            let (code, stdout, err) = exec_sh(rt, &["--cgroup", sub, "c", "sh", "-c", show], None);
            assert_eq!(code, 0, "{name}: {err}");
            out.push(format!("cgroup {sub}: {stdout}"));
        }
        let (code, _, err) = exec_sh(rt, &["--cgroup", "memory:none", "c", "true"], None);
        out.push(format!("cgroup missing: {}", code != 0));
        assert!(code != 0, "{name}: {err}");
        // --ignore-paused: refused without; with it the process waits for resume.
        let run = |args: &[&str]| Command::new(&rt[0]).args(&rt[1..]).args(args).output().unwrap();
        assert!(run(&["pause", "c"]).status.success());
        let mut refused = Command::new(&rt[0])
            .args(&rt[1..])
            .args(["exec", "c", "echo", "paused"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = std::time::Instant::now();
        while refused.try_wait().unwrap().is_none() {
            if t0.elapsed().as_secs() >= 10 {
                refused.kill().unwrap();
                assert!(run(&["resume", "c"]).status.success());
                panic!("{name}: exec into a paused container neither failed nor returned in 10 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let refused = refused.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{name}: exec into a paused container: {err}");
        out.push(format!("paused exec refused: {}", err.contains("paused")));
        let mut waiting = Command::new(&rt[0])
            .args(&rt[1..])
            .args(["exec", "--ignore-paused", "c", "echo", "thawed"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert!(waiting.try_wait().unwrap().is_none(), "{name}: the exec'd process ran in a frozen cgroup");
        assert!(run(&["resume", "c"]).status.success());
        let done = waiting.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&done.stdout);
        out.push(format!("ignore-paused: {} {stdout}", done.status.code().unwrap_or(-1)));
        for (_, d) in &dirs {
            std::fs::remove_dir(d.join("all")).unwrap();
        }
        std::fs::remove_dir(memory.join("one")).unwrap();

        let st = Command::new(&rt[0]).args(&rt[1..]).args(["kill", "c", "KILL"]).status().unwrap();
        assert!(st.success());
        waitpid(init, None).unwrap();
        let st = Command::new(&rt[0]).args(&rt[1..]).args(["delete", "c"]).status().unwrap();
        assert!(st.success());
    }
    println!("exprun: {:#?}\nrunc: {:#?}", seen[0], seen[1]);
    assert_eq!(seen[0], seen[1], "exprun (left) and runc (right) disagree");
    assert_eq!(env_with_process[0], "A=override\n", "exec --env with --process (the environment execve got)");
    assert_eq!(seen[0][0], "env: TERM=dumb\n", "exec --env (the environment execve got)");
    assert!(seen[0].iter().any(|l| l == "Some(\"--no-new-privs\"): NoNewPrivs:\t1\n"), "{:?}", seen[0]);
    assert!(seen[0].iter().any(|l| l == "None: NoNewPrivs:\t0\n"), "{:?}", seen[0]);
    assert!(seen[0].iter().any(|l| l == "cgroup memory:one: pids:/\nmemory:/one\n"), "{:?}", seen[0]);
    assert!(seen[0].iter().any(|l| l == "ignore-paused: 0 thawed\n"), "{:?}", seen[0]);

    // Fds that are not open are refused, not taken from exprun's own.
    let (code, _, err) =
        exec_sh(&runtimes[0].1, &["--preserve-fds", "2", "c", "true"], Some(&work.join("x")));
    assert_eq!(code, 125);
    assert!(err.contains("--preserve-fds 2: fd 4 is not open"), "{err}");
    t.r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn create_and_run_pass_the_preserved_fds_as_runc_does() {
    let test = "create_and_run_pass_the_preserved_fds_as_runc_does";
    let Some(t) = shim(test) else { return };
    let Some(runc) = runc(test) else { return };
    let work = t.work.path();
    let runc_root = work.join("runc-root");
    let runtimes = [
        ("exprun", common::exprun_bin(), t.r.path().to_path_buf()),
        ("runc", runc.clone(), runc_root.clone()),
    ];
    let mut wrote = Vec::new();
    for (name, bin, root) in &runtimes {
        let b = bundle(&work.join(name), &["sh", "-c", "echo from init >&3; ls /proc/self/fd >&3"]);
        edit_config(&b, |c| {
            for m in c["mounts"].as_array_mut().unwrap() {
                if m["destination"] == "/dev" {
                    m["options"].as_array_mut().unwrap().retain(|o| o != "nodev");
                }
            }
        });
        let sh = |verb: &str, id: &str, file: &Path| {
            let line = format!(
                "'{}' --root '{}' {verb} --preserve-fds 1 --bundle '{}' --pid-file '{}' {id} 3>'{}'",
                bin.display(),
                root.display(),
                b.display(),
                work.join(format!("{name}-{id}.pid")).display(),
                file.display()
            );
            // Not a pipe: init holds create's stdout until it ends.
            let st =
                Command::new("sh").arg("-c").arg(line).stdin(Stdio::null()).stdout(Stdio::null()).status();
            st.unwrap()
        };
        let created = work.join(format!("{name}-created"));
        assert!(sh("create", "c", &created).success(), "{name} create");
        let pid: i32 =
            std::fs::read_to_string(work.join(format!("{name}-c.pid"))).unwrap().trim().parse().unwrap();
        let st = Command::new(bin).arg("--root").arg(root).args(["start", "c"]).status().unwrap();
        assert!(st.success(), "{name} start");
        assert_eq!(waitpid(Pid::from_raw(pid), None).unwrap(), WaitStatus::Exited(Pid::from_raw(pid), 0));
        let st = Command::new(bin).arg("--root").arg(root).args(["delete", "c"]).status().unwrap();
        assert!(st.success(), "{name} delete");
        let ran = work.join(format!("{name}-ran"));
        assert!(sh("run", "r", &ran).success(), "{name} run");
        wrote.push((std::fs::read_to_string(&created).unwrap(), std::fs::read_to_string(&ran).unwrap()));
    }
    assert!(wrote[1].0.starts_with("from init\n0\n1\n2\n3\n"), "runc: {:?}", wrote[1]);
    assert_eq!(wrote[0], wrote[1], "exprun (left) and runc (right) disagree on what fd 3 got");
    t.r.assert_no_leftovers();
    remove_parent_cgroups();
}
