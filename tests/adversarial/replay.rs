//! Runs fetched from a registry are someone else's claim. Each test records an
//! honest run in one root, rewrites its record as an attacker would, serves it
//! from the evil registry, and replays (or verifies) it in another root: what
//! the record asks for beyond the default profile is refused unless allowed by
//! name, its inputs come from the artifact alone, digest-checked, and the host
//! is unchanged.

use std::path::Path;

use serde_json::{json, Value};

use crate::common::{privileged, TestRoot};
use crate::evil_registry::{tar_gz, EvilRegistry};
use crate::host::{Marker, Snapshot};

/// `exprun ARGS` in `root` with `env` added to its environment: (status, stdout, stderr).
fn exprun(root: &TestRoot, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = root.command(args);
    cmd.envs(env.iter().copied()).stdin(std::process::Stdio::null());
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An honest run `sh -c SCRIPT` recorded in a root of its own, with `args`
/// before the image; its record.
fn recorded(args: &[&str], script: &str) -> (TestRoot, Value) {
    let here = TestRoot::with_busybox();
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["busybox:latest", "sh", "-c", script]);
    let (code, _, err) = here.run(&full);
    assert_eq!(code, 0, "{err}");
    let record = here.last_record();
    (here, record)
}

/// The stdout a run left, as the artifact's streams layer: with it the fetch
/// makes `runs/<id>/artifact/`.
fn streams(here: &TestRoot, record: &Value) -> (&'static str, Vec<u8>) {
    let id = record["run_id"].as_str().unwrap();
    let stdout = std::fs::read(here.path().join("runs").join(id).join("stdout")).unwrap_or_default();
    ("streams.tar.gz", tar_gz(&[("stdout", &stdout, 0o644)]))
}

/// `record` with its files served by a fresh evil registry; the `oci://` reference.
fn serve(record: &Value, files: &[(&str, Vec<u8>)]) -> (EvilRegistry, String) {
    let registry = EvilRegistry::start();
    registry.put_run("lab/exp", "v1", record, files);
    let reference = format!("oci://{}/lab/exp:v1", registry.host());
    (registry, reference)
}

/// The records in `root` besides the fetched one: replays that ran.
fn replays(root: &TestRoot) -> usize {
    root.records().iter().filter(|r| r["replay_of"].is_string()).count()
}

fn host_mount(source: &Path, destination: &str, readonly: bool) -> Value {
    json!({"source": source, "destination": destination, "readonly": readonly})
}

#[test]
fn a_fetched_request_gets_no_host_mount_or_privilege_unless_each_is_allowed() {
    if !privileged("a_fetched_request_gets_no_host_mount_or_privilege_unless_each_is_allowed") {
        return;
    }
    let marker = Marker::new();
    let (here, mut record) = recorded(&[], "echo hi");
    let m = marker.path().display().to_string();
    let request = &mut record["request"];
    request["volumes"] = json!([host_mount(marker.path(), "/host", false)]);
    request["cap_add"] = json!(["CAP_SYS_ADMIN"]);
    request["seccomp"] = json!("unconfined");
    request["network"] = json!("host");
    request["command"] = json!(["sh", "-c", "echo pwned > /host/pwned; cat /host/secret"]);
    let files = [streams(&here, &record)];
    let (_registry, reference) = serve(&record, &files);
    let there = TestRoot::with_busybox();
    let before = Snapshot::take(&marker, &[there.path()]);

    let (code, out, err) = exprun(&there, &["replay", &reference], &[]);
    assert_eq!(code, 125, "{err}");
    assert!(!out.contains("host marker"), "{out}");
    assert!(err.contains("refusing to replay run") && err.contains("fetched from a registry"), "{err}");
    assert!(err.contains(&format!("volumes[0]: binds the host's path {m} at /host, writable")), "{err}");
    let flags = format!(
        "to permit it, only if you trust whoever pushed the run: --allow mount:{m}:rw --allow cap:SYS_ADMIN \
         --allow network:host --allow seccomp:unconfined"
    );
    assert!(err.contains(&flags), "{err}");

    // --dry-run shows the request that would run, as it is, and is refused too.
    let (code, _, err) = exprun(&there, &["replay", "--dry-run", &reference], &[]);
    assert_eq!(code, 125, "{err}");
    for shown in [
        format!("HOST MOUNT  /host <- host {m} (WRITABLE)"),
        "caps        14 of the 14 default; ADDED CAP_SYS_ADMIN".into(),
        "seccomp     NONE (unconfined)".into(),
        "network     HOST: the host's network namespace".into(),
        "command     the image's Entrypoint, then sh -c 'echo pwned > /host/pwned; cat /host/secret'".into(),
        "[REFUSED; --allow cap:SYS_ADMIN permits it]".into(),
    ] {
        assert!(err.contains(&shown), "dry-run does not show {shown:?}:\n{err}");
    }

    // Allowing one thing leaves the others refused, by name.
    let (code, _, err) = exprun(&there, &["replay", "--allow", "cap:sys_admin", &reference], &[]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("[allowed by --allow cap:SYS_ADMIN]"), "{err}");
    assert!(
        err.contains(&format!(
            "only if you trust whoever pushed the run: --allow mount:{m}:rw --allow network:host --allow seccomp:unconfined\n"
        )),
        "{err}"
    );

    // verify applies the same checks, and so does a later replay of the run
    // fetched before, by its id.
    let (code, out, err) = exprun(&there, &["verify", &reference], &[]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains(&flags) && !out.contains("REPRODUCED"), "{err}");
    let (code, _, err) = exprun(&there, &["verify", "--dry-run", &reference], &[]);
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains("verify of run") && err.contains(&format!("HOST MOUNT  /host <- host {m} (WRITABLE)")),
        "{err}"
    );
    let id = record["run_id"].as_str().unwrap();
    let (code, _, err) = exprun(&there, &["replay", id], &[]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains(&flags), "{err}");

    assert_eq!(replays(&there), 0, "a refused replay ran");
    Snapshot::take(&marker, &[there.path()])
        .assert_same_as(&before, "a fetched request binding a host path rw");
    there.assert_no_leftovers();
    here.assert_no_leftovers();
}

#[test]
fn an_allowed_privilege_is_granted_and_an_honest_artifact_replays() {
    if !privileged("an_allowed_privilege_is_granted_and_an_honest_artifact_replays") {
        return;
    }
    let marker = Marker::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("data.csv"), "1,2\n3,4\n").unwrap();
    let input = format!("{}:/in", data.path().display());
    let (here, record) = recorded(&["--input", &input], "wc -l < /in/data.csv");
    let inputs = ("inputs.tar.gz", tar_gz(&[("0/data.csv", b"1,2\n3,4\n", 0o644)]));
    let (_registry, reference) = serve(&record, &[streams(&here, &record), inputs.clone()]);
    let there = TestRoot::with_busybox();
    let before = Snapshot::take(&marker, &[there.path()]);
    let (code, out, err) = exprun(&there, &["replay", &reference], &[]);
    assert_eq!((code, out.as_str()), (0, "2\n"), "{err}");
    assert!(
        err.contains("runs this request") && err.contains("beyond the default profile: nothing"),
        "{err}"
    );
    assert!(err.contains("/artifact/inputs/0 (read-only)") && err.contains("no drift"), "{err}");
    assert!(!err.contains("disagree"), "an honest record's spec and request agree: {err}");

    let (here2, mut record) = recorded(&[], "true");
    record["request"]["cap_add"] = json!(["CAP_SYS_ADMIN"]);
    record["request"]["seccomp"] = json!("unconfined");
    record["request"]["command"] = json!(["sh", "-c", "grep -E '^(CapEff|Seccomp):' /proc/self/status"]);
    let (_registry2, reference) = serve(&record, &[streams(&here2, &record)]);
    let there2 = TestRoot::with_busybox();
    let before2 = Snapshot::take(&marker, &[there2.path()]);
    let allow =
        ["replay", "--allow", "cap:SYS_ADMIN", "--allow", "seccomp:unconfined", "--allow", "network:host"];
    let (code, out, err) = exprun(&there2, &[&allow[..], &[reference.as_str()]].concat(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Seccomp:\t0"), "seccomp still on: {out}");
    let cap_eff = out.lines().find_map(|l| l.strip_prefix("CapEff:\t")).unwrap();
    assert!(u64::from_str_radix(cap_eff, 16).unwrap() & (1 << 21) != 0, "no CAP_SYS_ADMIN: {out}");
    assert!(err.contains("--allow network:host: the request asks for nothing it permits"), "{err}");
    Snapshot::take(&marker, &[there.path()]).assert_same_as(&before, "an honest replay");
    Snapshot::take(&marker, &[there2.path()]).assert_same_as(&before2, "a replay with allowed privileges");
    for r in [&here, &here2, &there, &there2] {
        r.assert_no_leftovers();
    }
}

/// Serve `record` to a fresh root and replay it: (root, status, stdout, stderr).
fn replay_in_fresh_root(
    record: &Value,
    files: &[(&str, Vec<u8>)],
    args: &[&str],
) -> (TestRoot, i32, String, String) {
    let (_registry, reference) = serve(record, files);
    let there = TestRoot::with_busybox();
    let (code, out, err) = exprun(&there, &[&["replay"], args, &[reference.as_str()]].concat(), &[]);
    (there, code, out, err)
}

#[test]
fn a_fetched_runs_inputs_come_from_its_artifact_never_from_a_host_path() {
    if !privileged("a_fetched_runs_inputs_come_from_its_artifact_never_from_a_host_path") {
        return;
    }
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[]);
    let m = marker.path().display().to_string();
    // The attacker knows what the file holds, so the record's digest matches it.
    let (here, record) = recorded(&["--input", &format!("{m}:/in")], "cat /in/secret");
    let files = [streams(&here, &record)];

    // Not in the artifact: never read from the host path the record names.
    let (there, code, out, err) = replay_in_fresh_root(&record, &files, &[]);
    assert_eq!(code, 125, "{err}");
    assert!(!out.contains("host marker"), "{out}");
    assert!(err.contains(&format!("inputs[0]: reads the host's {m} at /in")), "{err}");
    assert!(err.contains("give it with --input PATH:/in"), "{err}");
    there.assert_no_leftovers();
    // Named by the user, it is read, digest-checked.
    let (there, code, out, err) = replay_in_fresh_root(&record, &files, &["--input", &format!("{m}:/in")]);
    assert_eq!((code, out.as_str()), (0, "host marker\n"), "{err}");
    there.assert_no_leftovers();
    let (there, code, _, err) =
        replay_in_fresh_root(&record, &files, &["--input", &format!("{m}:/elsewhere")]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("--input /elsewhere: the run has no input there (its inputs: /in)"), "{err}");
    there.assert_no_leftovers();

    // A request input without a digest in the record, or without a record at all.
    let mut undigested = record.clone();
    undigested["inputs"][0]["tree"] = Value::Null;
    let mut unrecorded = record.clone();
    unrecorded["inputs"] = json!([]);
    let mut more = record.clone();
    more["request"]["inputs"] =
        json!([record["request"]["inputs"][0], host_mount(Path::new("/etc"), "/etc2", true)]);
    let copy = ("inputs.tar.gz", tar_gz(&[("0/secret", b"host marker\n", 0o644)]));
    for (attack, r, why) in [
        ("an input without a digest", &undigested, "its record has no whole digest of input /in"),
        (
            "an input the record does not list",
            &unrecorded,
            "its request has 1 input(s) and its record digests 0",
        ),
        ("more request inputs than recorded", &more, "its request has 2 input(s) and its record digests 1"),
    ] {
        let (there, code, out, err) =
            replay_in_fresh_root(r, &[files[0].clone(), copy.clone()], &["--allow-drift"]);
        assert_eq!(code, 125, "{attack}: {err}");
        assert!(err.contains(why) && !out.contains("host marker"), "{attack}: {err}");
        assert_eq!(replays(&there), 0, "{attack}");
        there.assert_no_leftovers();
    }

    // An artifact whose copy is not what the record digests: refused, also
    // with --allow-drift.
    let altered = ("inputs.tar.gz", tar_gz(&[("0/secret", b"other\n", 0o644)]));
    let (there, code, _, err) =
        replay_in_fresh_root(&record, &[files[0].clone(), altered], &["--allow-drift"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("its artifact's copy of input /in is not what its record digests"), "{err}");
    there.assert_no_leftovers();

    Snapshot::take(&marker, &[]).assert_same_as(&before, "inputs of a fetched run on host paths");
    here.assert_no_leftovers();
}

#[test]
fn a_record_whose_spec_and_request_disagree_shows_the_request_that_runs() {
    if !privileged("a_record_whose_spec_and_request_disagree_shows_the_request_that_runs") {
        return;
    }
    let (here, mut record) = recorded(&[], "echo hi");
    // The spec still says network none, and is what runs show used to print.
    record["request"]["network"] = json!("host");
    let files = [streams(&here, &record)];
    let (there, code, _, err) = replay_in_fresh_root(&record, &files, &["--dry-run"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("network     HOST: the host's network namespace"), "{err}");
    assert!(
        err.contains("WARNING: the record's spec and request disagree; a replay runs the request"),
        "{err}"
    );
    assert!(
        err.contains("network: the spec its own network namespace, the request the host's network"),
        "{err}"
    );
    let id = record["run_id"].as_str().unwrap();
    let (code, out, err) = exprun(&there, &["runs", "show", id], &[]);
    assert_eq!(code, 0, "{err}");
    for shown in [
        "origin:     fetched from a registry",
        "request:    what `exprun replay` runs:",
        "  network     HOST: the host's network namespace",
        "network: the host's network namespace (every interface and port of this host)  [REFUSED; --allow network:host permits it]",
        "WARNING: the record's spec and request disagree",
    ] {
        assert!(out.contains(shown), "runs show does not show {shown:?}:\n{out}");
    }
    there.assert_no_leftovers();
    here.assert_no_leftovers();
}

#[test]
fn a_fetched_request_exprun_cannot_apply_whole_is_refused_by_field() {
    if !privileged("a_fetched_request_exprun_cannot_apply_whole_is_refused_by_field") {
        return;
    }
    let (here, record) = recorded(&[], "echo hi");
    let files = [streams(&here, &record)];
    let mut unknown = record.clone();
    unknown["request"]["privileged"] = json!(true);
    unknown["request"]["sysctls"] = json!({"kernel.sysrq": "1"});
    let mut bad = record.clone();
    bad["request"]["tmpfs"] = json!([{"destination": "/t", "options": ["rbind"]}]);
    for (attack, r, why) in [
        (
            "unknown fields",
            &unknown,
            "its record's request.privileged, request.sysctls: exprun does not know it, so it would not be applied",
        ),
        ("a tmpfs option exprun run refuses", &bad, "its record's request.tmpfs[0].options: \"rbind\" is not a tmpfs option"),
    ] {
        let (there, code, out, err) = replay_in_fresh_root(r, &files, &[]);
        assert_eq!(code, 125, "{attack}: {err}");
        assert!(err.contains(why) && out.is_empty(), "{attack}: {err}");
        there.assert_no_leftovers();
    }
    here.assert_no_leftovers();
}

#[test]
fn a_fetched_run_takes_no_secret_from_the_callers_environment_unless_allowed() {
    if !privileged("a_fetched_run_takes_no_secret_from_the_callers_environment_unless_allowed") {
        return;
    }
    let (here, record) = recorded(&["-e", "API_TOKEN=s3cret"], "echo token=$API_TOKEN");
    let (_registry, reference) = serve(&record, &[streams(&here, &record)]);
    let there = TestRoot::with_busybox();
    let caller = [("API_TOKEN", "hunter2")];
    let (code, out, err) = exprun(&there, &["replay", &reference], &caller);
    assert_eq!(code, 125, "{err}");
    assert!(!out.contains("hunter2") && !err.contains("hunter2"), "{out}{err}");
    assert!(
        err.contains("env: $API_TOKEN from your environment") && err.contains("--allow env:API_TOKEN"),
        "{err}"
    );
    let (code, out, err) = exprun(&there, &["replay", "--allow", "env:API_TOKEN", &reference], &caller);
    assert_eq!((code, out.as_str()), (0, "token=hunter2\n"), "{err}");
    assert!(err.contains("API_TOKEN=<secret, from your environment>") && !err.contains("hunter2"), "{err}");
    there.assert_no_leftovers();
    here.assert_no_leftovers();
}

#[test]
fn a_fetched_request_gets_no_host_device_or_host_ipc_unless_each_is_allowed() {
    if !privileged("a_fetched_request_gets_no_host_device_or_host_ipc_unless_each_is_allowed") {
        return;
    }
    let marker = Marker::new();
    // A node of this host's the attacker names: /dev/zero's numbers, so that a
    // refusal that fails costs nothing.
    let node = marker.path().join("hostdisk");
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 5),
    )
    .unwrap();
    let (here, mut record) = recorded(&["--device", "/dev/zero:/dev/xdisk"], "true");
    let request = &mut record["request"];
    assert_eq!(request["devices"]["nodes"][0]["host"], json!("/dev/zero"), "{request}");
    request["devices"]["nodes"][0]["host"] = json!(node);
    request["ipc"] = json!("host");
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    request["command"] = json!(["sh", "-c", "ls -l /dev/xdisk; readlink /proc/self/ns/ipc"]);
    let (_registry, reference) = serve(&record, &[streams(&here, &record)]);
    let there = TestRoot::with_busybox();
    let before = Snapshot::take(&marker, &[there.path()]);
    let n = node.display();

    let (code, out, err) = exprun(&there, &["replay", &reference], &[]);
    assert_eq!(code, 125, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains(&format!("devices.nodes[0]: the host's device {n} (c 1:5) at /dev/xdisk")), "{err}");
    assert!(err.contains(&format!("--allow device:{n} --allow ipc:host")), "{err}");

    // One allowed, the other still refused, by name.
    let (code, _, err) = exprun(&there, &["replay", "--allow", &format!("device:{n}"), &reference], &[]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains(&format!("[allowed by --allow device:{n}]")), "{err}");
    assert!(err.contains("only if you trust whoever pushed the run: --allow ipc:host\n"), "{err}");
    assert_eq!(replays(&there), 0, "a refused replay ran");

    // Both allowed: the node is there with its numbers, and the IPC namespace is the host's.
    let (code, out, err) = exprun(
        &there,
        &["replay", "--allow", &format!("device:{n}"), "--allow", "ipc:host", &reference],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1,   5") && out.contains(&host_ipc.display().to_string()), "{out}");
    Snapshot::take(&marker, &[there.path()])
        .assert_same_as(&before, "a fetched request naming a host device");
    there.assert_no_leftovers();
    here.assert_no_leftovers();
}
