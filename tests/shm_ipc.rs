#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! /dev/shm and the IPC namespace of `exprun run`: `--shm-size`, `--ipc
//! private|host` and `--tmpfs /dev/shm`, as the kernel shows them in the
//! container; what a bundle without an ipc namespace gets, beside runc; and
//! the same options in a rootless run.

mod common;

use std::process::Command;

use common::bundle::{bundle, oci, remove_parent_cgroups, runc, runc_run, shim};
use common::rootless::Home;
use common::{privileged, TestRoot};

/// Run `sh -c SCRIPT` in the fixture with `extra` options: (code, stdout, stderr).
fn sh(r: &TestRoot, extra: &[&str], script: &str) -> (i32, String, String) {
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["busybox:latest", "--", "sh", "-c", script]);
    r.run(&args)
}

/// [`sh`], which must succeed: its stdout.
fn ok(r: &TestRoot, extra: &[&str], script: &str) -> String {
    let (code, out, err) = sh(r, extra, script);
    assert_eq!(code, 0, "{extra:?}: {err}");
    out
}

/// The /dev/shm line of a mountinfo: (per-mount options, fstype, super options).
fn shm_line(mountinfo: &str) -> (String, String, String) {
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/dev/shm"))
        .unwrap_or_else(|| panic!("no /dev/shm in\n{mountinfo}"));
    let f: Vec<&str> = line.split(' ').collect();
    let dash = f.iter().position(|x| *x == "-").unwrap();
    (f[5].to_string(), f[dash + 1].to_string(), f[dash + 3].to_string())
}

fn has(opts: &str, o: &str) -> bool {
    opts.split(',').any(|x| x == o)
}

/// A SysV shared-memory segment of `size` bytes made on the host with
/// ipcmk, removed on drop: its id.
struct Segment(String);

impl Segment {
    fn new(size: usize) -> Self {
        let out = Command::new("ipcmk").args(["-M", &size.to_string()]).output().expect("ipcmk");
        assert!(out.status.success(), "ipcmk: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        Segment(text.split_whitespace().last().unwrap().to_string())
    }

    /// Whether a /proc/sysvipc/shm listing holds this segment.
    fn listed_in(&self, listing: &str, size: usize) -> bool {
        listing.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&self.0.as_str()) && f.get(3) == Some(&size.to_string().as_str())
        })
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        let _ = Command::new("ipcrm").args(["-m", &self.0]).status();
    }
}

fn link(path: &str) -> String {
    std::fs::read_link(path).unwrap().to_string_lossy().into_owned()
}

#[test]
fn shm_size_is_the_size_of_dev_shm_and_is_recorded_for_replay() {
    if !privileged("shm_size_is_the_size_of_dev_shm_and_is_recorded_for_replay") {
        return;
    }
    let r = TestRoot::with_busybox();
    let script = "cat /proc/self/mountinfo; echo ---; df -k /dev/shm | tail -1";
    let out = ok(&r, &[], script);
    let (opts, fstype, sup) = shm_line(&out);
    assert_eq!(fstype, "tmpfs");
    assert!(has(&sup, "size=65536k"), "the default stays 64 MiB: {sup}");
    assert!(["nosuid", "nodev", "noexec"].iter().all(|o| has(&opts, o)), "{opts}");
    let default = r.last_record();
    let request = default["request"].as_object().unwrap();
    assert!(
        !request.contains_key("shm_size") && !request.contains_key("ipc"),
        "a run without the options records them as older exprun did: {request:?}"
    );

    let out = ok(&r, &["--name", "big-shm", "--shm-size", "1g"], script);
    let (opts, _, sup) = shm_line(&out);
    assert!(has(&sup, "size=1048576k"), "{sup}");
    assert!(["nosuid", "nodev", "noexec"].iter().all(|o| has(&opts, o)), "{opts}");
    let df: Vec<&str> = out.split("---\n").nth(1).unwrap().split_whitespace().collect();
    assert_eq!(df[1], "1048576", "df's 1K-blocks: {out}");
    assert_eq!(r.last_record()["request"]["shm_size"], 1u64 << 30);

    // A replay asks for the same /dev/shm.
    let out = r.exprun(&["replay", "big-shm"], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "replay: {}", String::from_utf8_lossy(&out.stderr));
    assert!(has(&shm_line(&stdout).2, "size=1048576k"), "the replay's /dev/shm:\n{stdout}");
    r.assert_no_leftovers();
}

#[test]
fn dev_shm_pages_are_charged_to_the_memory_limit() {
    if !privileged("dev_shm_pages_are_charged_to_the_memory_limit") {
        return;
    }
    let r = TestRoot::with_busybox();
    // 200 MiB into a 1 GiB /dev/shm: within its size, beyond a 64 MiB limit.
    let write = "dd if=/dev/zero of=/dev/shm/f bs=1M count=200 2>/dev/null; echo dd=$?; ls -l /dev/shm/f";
    let (code, out, err) = sh(&r, &["--memory", "64m", "--shm-size", "1g"], write);
    let rec = r.last_record();
    assert_eq!(code, 0, "the shell survives; dd does not: {err}");
    assert!(out.starts_with("dd=137\n"), "dd was not killed: {out}");
    assert_eq!(rec["exit"]["oom_killed"], true, "the record says why: {:#}", rec["exit"]);
    assert!(err.contains("the container ran out of memory"), "{err}");
    let size: u64 = out.split_whitespace().nth(5).unwrap().parse().unwrap();
    assert!(size < 64 << 20, "more than the limit got into /dev/shm: {out}");

    // Without the limit the same write fits.
    let out = ok(&r, &["--shm-size", "1g"], write);
    assert!(out.starts_with("dd=0\n") && out.contains(" 209715200 "), "{out}");
    assert_eq!(r.last_record()["exit"]["oom_killed"], false);
    // And the default 64 MiB /dev/shm is full before: ENOSPC.
    let out = ok(&r, &[], "dd if=/dev/zero of=/dev/shm/f bs=1M count=200 2>&1; echo dd=$?");
    assert!(out.contains("No space left on device") && out.ends_with("dd=1\n"), "{out}");
    r.assert_no_leftovers();
}

#[test]
fn ipc_host_shares_the_hosts_segments_and_dev_shm_and_private_does_not() {
    if !privileged("ipc_host_shares_the_hosts_segments_and_dev_shm_and_private_does_not") {
        return;
    }
    let r = TestRoot::with_busybox();
    let size = 40_000 + (std::process::id() as usize % 10_000);
    let seg = Segment::new(size);
    let marker = tempfile::Builder::new().prefix("exprun-shm-ipc-").tempfile_in("/dev/shm").unwrap();
    let name = marker.path().file_name().unwrap().to_string_lossy().into_owned();
    let script = format!(
        "readlink /proc/self/ns/ipc; ls /dev/shm/{name} 2>&1; cat /proc/sysvipc/shm; echo ---; \
         cat /proc/self/mountinfo"
    );
    let host_ipc = link("/proc/self/ns/ipc");

    let out = ok(&r, &["--ipc", "host"], &script);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], host_ipc, "the host's IPC namespace: {out}");
    assert_eq!(lines[1], format!("/dev/shm/{name}"), "the host's /dev/shm: {out}");
    assert!(seg.listed_in(&out, size), "segment {} of {size} bytes not seen:\n{out}", seg.0);
    let (opts, _, _) = shm_line(out.split("---\n").nth(1).unwrap());
    assert!(["nosuid", "nodev", "noexec"].iter().all(|o| has(&opts, o)), "{opts}");
    let rec = r.last_record();
    assert_eq!(rec["request"]["ipc"], "host");
    let spec_ns: Vec<&str> = rec["spec"]["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(!spec_ns.contains(&"ipc"), "{spec_ns:?}");
    let shown = r.exprun(&["runs", "show", "--latest"], None);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("ipc         HOST: the host's IPC namespace and /dev/shm"), "{shown}");

    for extra in [&[][..], &["--ipc", "private"]] {
        let out = ok(&r, extra, &script);
        let lines: Vec<&str> = out.lines().collect();
        assert_ne!(lines[0], host_ipc, "{extra:?}: {out}");
        assert!(lines[1].contains("No such file"), "{extra:?}: the host's /dev/shm is seen: {out}");
        assert!(!seg.listed_in(&out, size), "{extra:?}: the host's segment is seen:\n{out}");
    }
    r.assert_no_leftovers();
}

#[test]
fn a_dev_shm_tmpfs_replaces_the_default_with_its_options_merged() {
    if !privileged("a_dev_shm_tmpfs_replaces_the_default_with_its_options_merged") {
        return;
    }
    let r = TestRoot::with_busybox();
    let script = "cp /bin/busybox /dev/shm/echo && /dev/shm/echo ran 2>&1; cat /proc/self/mountinfo";
    let out = ok(&r, &["--tmpfs", "/dev/shm:size=300m,exec,nr_inodes=1000,mode=1770"], script);
    assert!(out.starts_with("ran\n"), "exec is asked: {out}");
    let (opts, fstype, sup) = shm_line(&out);
    assert_eq!(fstype, "tmpfs");
    assert!(has(&opts, "nosuid") && has(&opts, "nodev") && !has(&opts, "noexec"), "{opts}");
    for o in ["size=307200k", "nr_inodes=1000", "mode=1770"] {
        assert!(has(&sup, o), "{o} missing: {sup}");
    }
    assert_eq!(out.matches(" /dev/shm ").count(), 1, "one /dev/shm mount:\n{out}");
    let rec = r.last_record();
    assert_eq!(rec["request"]["tmpfs"][0]["destination"], "/dev/shm");

    // Without options it is the default; the defaults keep noexec.
    let out = ok(&r, &["--tmpfs", "/dev/shm"], script);
    assert!(out.contains("Permission denied"), "a noexec /dev/shm ran a program: {out}");
    let (opts, _, sup) = shm_line(&out);
    // (tmpfs shows its mode only when it is not 1777.)
    assert!(has(&opts, "noexec") && has(&sup, "size=65536k") && !sup.contains("mode="), "{opts} {sup}");
    r.assert_no_leftovers();
}

#[test]
fn contradicting_shm_options_are_refused_naming_both() {
    if !privileged("contradicting_shm_options_are_refused_naming_both") {
        return;
    }
    let r = TestRoot::with_busybox();
    for (extra, says) in [
        (&["--ipc", "host", "--shm-size", "1g"][..], "--ipc host and --shm-size cannot be used together"),
        (
            &["--ipc", "host", "--tmpfs", "/dev/shm:size=1g"],
            "--ipc host and --tmpfs /dev/shm:size=1g cannot be used together",
        ),
        (
            &["--shm-size", "2g", "--tmpfs", "/dev/shm:exec"],
            "--shm-size and --tmpfs /dev/shm:exec cannot be used together",
        ),
        (
            &["--tmpfs", "/dev/shm", "--tmpfs", "/dev/shm:size=1g"],
            "--tmpfs /dev/shm and --tmpfs /dev/shm:size=1g cannot be used together",
        ),
        (&["--shm-size", "0"], "--shm-size \"0\": must be greater than zero"),
        (&["--shm-size", "lots"], "--shm-size \"lots\": expected a number"),
        (&["--ipc", "container:x"], "invalid value 'container:x' for '--ipc <MODE>'"),
    ] {
        let (code, out, err) = sh(&r, extra, "echo ran");
        assert_eq!((code, out.as_str()), (125, ""), "{extra:?}: {err}");
        assert!(err.contains(says), "{extra:?}: {err}");
    }
    assert!(r.records().is_empty(), "a refused run is not recorded");
    let b = r.path().join("nowhere");
    let (code, _, err) = r.run(&["--bundle", b.to_str().unwrap(), "--shm-size", "1g", "id"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("--shm-size") && err.contains("--bundle"), "{err}");
    r.assert_no_leftovers();
}

/// `exprun create` (init's stdout to the file `out`), `start`, the command
/// reaped by this process (the shim's part), `delete`: (status, stdout, "").
fn create_start(r: &TestRoot, b: &std::path::Path, out: &std::path::Path, id: &str) -> (i32, String, String) {
    let log = out.with_extension("log");
    let created = r
        .command(&["create", "-b", b.to_str().unwrap(), id])
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .status()
        .unwrap();
    assert!(created.success(), "create {id}");
    let pid = common::bundle::status_of(r, &log, id)["pid"].as_i64().unwrap() as i32;
    let (code, _, err) = oci(r, &log, &["start", id]);
    assert_eq!(code, 0, "start {id}: {err}");
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    let code = match status {
        nix::sys::wait::WaitStatus::Exited(_, c) => c,
        s => panic!("{id}: {s:?}"),
    };
    assert_eq!(oci(r, &log, &["delete", id]).0, 0);
    (code, std::fs::read_to_string(out).unwrap(), String::new())
}

#[test]
fn a_bundle_without_an_ipc_namespace_is_in_the_hosts_as_with_runc() {
    let test = "a_bundle_without_an_ipc_namespace_is_in_the_hosts_as_with_runc";
    let Some(t) = shim(test) else { return };
    let (r, work) = (&t.r, t.work.path());
    let size = 50_000 + (std::process::id() as usize % 10_000);
    let seg = Segment::new(size);
    let b = bundle(
        work,
        &[
            "sh",
            "-c",
            "readlink /proc/self/ns/ipc; cat /proc/sysvipc/shm; echo ---; cat /proc/self/mountinfo",
        ],
    );
    // The config's own /dev/shm mount, as containerd writes one, and every
    // namespace but ipc.
    common::bundle::edit_for_runc(&b, |c| {
        c["linux"]["namespaces"] = serde_json::json!([
            {"type": "pid"}, {"type": "network"}, {"type": "uts"}, {"type": "mount"}
        ]);
        for m in c["mounts"].as_array_mut().unwrap() {
            if m["destination"] == "/dev/shm" {
                m["options"] = serde_json::json!(["nosuid", "noexec", "nodev", "mode=1777", "size=1024k"]);
            }
        }
    });
    let host_ipc = link("/proc/self/ns/ipc");
    let check = |who: &str, (code, out, err): (i32, String, String)| {
        assert_eq!(code, 0, "{who}: {err}");
        assert_eq!(out.lines().next(), Some(host_ipc.as_str()), "{who}: the host's IPC namespace");
        assert!(seg.listed_in(&out, size), "{who}: the host's segment is not seen:\n{out}");
        let (opts, fstype, sup) = shm_line(out.split("---\n").nth(1).unwrap());
        assert_eq!(fstype, "tmpfs", "{who}: the config's tmpfs, not the host's /dev/shm");
        assert!(has(&sup, "size=1024k") && has(&opts, "noexec"), "{who}: {opts} {sup}");
    };
    let log = work.join("log.json");
    check("exprun", oci(r, &log, &["run", "-b", b.to_str().unwrap(), "hostipc"]));
    check("exprun create/start", create_start(r, &b, &work.join("out"), "hostipc2"));
    if let Some(runc) = runc(test) {
        check("runc", runc_run(&runc, &work.join("runc-root"), &b, "hostipc"));
    }

    // Without a /dev/shm mount neither runtime makes one.
    common::bundle::edit_for_runc(&b, |c| {
        c["mounts"].as_array_mut().unwrap().retain(|m| m["destination"] != "/dev/shm");
        c["process"]["args"] = serde_json::json!(["sh", "-c", "grep -c ' /dev/shm ' /proc/self/mountinfo"]);
    });
    let none = |who: &str, (code, out, err): (i32, String, String)| {
        assert_eq!((code, out.trim()), (1, "0"), "{who}: {err}");
    };
    none("exprun", oci(r, &log, &["run", "-b", b.to_str().unwrap(), "noshm"]));
    if let Some(runc) = runc(test) {
        none("runc", runc_run(&runc, &work.join("runc-root"), &b, "noshm"));
    }
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn rootless_runs_take_shm_size_a_dev_shm_tmpfs_and_ipc_host() {
    if !privileged("rootless_runs_take_shm_size_a_dev_shm_tmpfs_and_ipc_host (needs root to make the user)") {
        return;
    }
    let h = Home::new();
    let fixture = common::fixture_dir().join("busybox-oci");
    let (code, _, err) =
        h.exprun(&["image", "import", "--name", "busybox:latest", fixture.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let run = |extra: &[&str], script: &str| -> String {
        let mut args = vec!["run", "--no-limits"];
        args.extend_from_slice(extra);
        args.extend(["busybox:latest", "--", "sh", "-c", script]);
        let (code, out, err) = h.exprun(&args);
        assert_eq!(code, 0, "{extra:?}: {err}");
        out
    };
    let mountinfo = "cat /proc/self/mountinfo";
    assert!(has(&shm_line(&run(&["--shm-size", "512m"], mountinfo)).2, "size=524288k"));
    let (opts, _, sup) = shm_line(&run(&["--tmpfs", "/dev/shm:size=100m,exec"], mountinfo));
    assert!(!has(&opts, "noexec") && has(&opts, "nodev") && has(&sup, "size=102400k"), "{opts} {sup}");

    // The host's IPC namespace: the segment is seen; there is no /dev/mqueue
    // (the kernel refuses a user namespace the host's), mq_open needs none.
    let size = 60_000 + (std::process::id() as usize % 10_000);
    let seg = Segment::new(size);
    let out = run(
        &["--ipc", "host"],
        "readlink /proc/self/ns/ipc; cat /proc/sysvipc/shm; cat /proc/self/mountinfo",
    );
    assert_eq!(out.lines().next(), Some(link("/proc/self/ns/ipc").as_str()), "{out}");
    assert!(seg.listed_in(&out, size), "{out}");
    assert_eq!(shm_line(&out).1, "tmpfs");
    assert!(!out.contains(" /dev/mqueue "), "{out}");
    let out = run(&[], "cat /proc/sysvipc/shm; cat /proc/self/mountinfo");
    assert!(!seg.listed_in(&out, size) && out.contains(" /dev/mqueue "), "{out}");
    h.remove_image();
    h.assert_no_leftovers();
}
