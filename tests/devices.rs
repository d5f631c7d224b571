#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `exprun run --device` and CDI devices, end to end on a host without a GPU:
//! /dev/null-class character devices stand in for a GPU, given by path or by a
//! CDI spec the test writes (YAML and JSON); the container's view (the node and
//! its numbers, what opens, the devices cgroup's list) and the record are checked.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{privileged, TestRoot};
use sha2::Digest;

/// /dev/fuse (c 10:229): a character device that opens for reading and
/// writing without further checks and is not among the nodes every container
/// may use, so only `--device` lets it through.
const FUSE: &str = "/dev/fuse";

/// A CDI spec directory (root's, 0755) with a YAML spec of kind
/// example.com/gpu (devices 0 and 1, a host directory mounted in, a variable
/// and a hook that writes `hook_out`) and a JSON spec of kind nvidia.com/gpu.
fn cdi_dir(hostdir: &Path, hook_out: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let yaml = format!(
        "cdiVersion: 0.6.0\nkind: example.com/gpu\ndevices:\n  - name: \"0\"\n    containerEdits:\n      \
         deviceNodes:\n        - path: /dev/fakegpu0\n          hostPath: /dev/null\n      env: [\"FAKEGPU=0\"]\n  \
         - name: \"1\"\n    containerEdits:\n      deviceNodes:\n        - path: /dev/fakegpu1\n          \
         hostPath: {FUSE}\n          permissions: r\ncontainerEdits:\n  mounts:\n    - hostPath: {}\n      \
         containerPath: /opt/driver\n      options: [ro, nosuid, nodev, bind]\n  hooks:\n    - hookName: \
         createRuntime\n      path: /bin/sh\n      args: [sh, -c, \"echo hook-ran > {}\"]\n",
        hostdir.display(),
        hook_out.display()
    );
    std::fs::write(dir.path().join("example.yaml"), yaml).unwrap();
    let json = serde_json::json!({
        "cdiVersion": "0.6.0", "kind": "nvidia.com/gpu",
        "devices": [
            {"name": "0", "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia0", "hostPath": "/dev/zero"}]}},
            {"name": "1", "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia1", "hostPath": "/dev/full"}]}},
        ],
        "containerEdits": {"env": ["NVIDIA_VISIBLE_DEVICES=void"]},
    });
    std::fs::write(dir.path().join("nvidia.json"), serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    dir
}

fn run_in(r: &TestRoot, cdi: Option<&Path>, args: &[&str]) -> (i32, String, String) {
    let mut full: Vec<&str> = Vec::new();
    let dir;
    if let Some(d) = cdi {
        dir = d.display().to_string();
        full.extend(["--cdi-spec-dir", &dir]);
    }
    full.push("run");
    full.extend_from_slice(args);
    let out = r.exprun(&full, None);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_device_gets_its_host_numbers_and_the_cgroup_lets_only_it_through_with_its_perms() {
    if !privileged("a_device_gets_its_host_numbers_and_the_cgroup_lets_only_it_through_with_its_perms") {
        return;
    }
    let r = TestRoot::with_busybox();
    let script =
        "exec 2>&1; stat -c '%n %t:%T' /dev/fakegpu0 /dev/k; echo x > /dev/fakegpu0 && echo wrote-fake; \
                  true > /dev/k && echo opened-k-for-write; true < /dev/k && echo opened-k-for-read; \
                  mknod /tmp/k2 c 10 229 && echo made-k; cat /sys/fs/cgroup/devices/devices.list";
    let (code, out, err) = run_in(
        &r,
        None,
        &[
            "--device",
            "/dev/null:/dev/fakegpu0",
            "--device",
            &format!("{FUSE}:/dev/k:r"),
            "busybox:latest",
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("/dev/fakegpu0 1:3") && out.contains("/dev/k a:e5"), "the host's numbers: {out}");
    assert!(out.contains("wrote-fake"), "{out}");
    assert!(out.contains("opened-k-for-read"), "r lets it be read: {out}");
    assert!(!out.contains("opened-k-for-write"), ":r must refuse a write open: {out}");
    assert!(!out.contains("made-k"), "no m: mknod of the same device is denied: {out}");
    assert!(out.contains("Operation not permitted"), "the cgroup's EPERM: {out}");
    if out.contains("c 1:3 rwm") {
        // cgroup v1: the controller's own list says what is allowed.
        assert!(out.contains("c 10:229 r\n"), "{out}");
    }

    // Not given: the same node cannot be made and opened, even on a tmpfs that allows nodes.
    let (code, out, err) = run_in(
        &r,
        None,
        &["--tmpfs", "/xdev:dev", "busybox:latest", "--", "sh", "-c",
          "exec 2>&1; mknod /xdev/k c 10 229 && echo made-k; true < /xdev/k && echo opened-k; cat /sys/fs/cgroup/devices/devices.list"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("made-k") && !out.contains("opened-k"), "{out}");
    assert!(!out.contains("c 10:229"), "{out}");
    let rec = r.last_record();
    assert!(rec["request"]["devices"].is_null(), "no device, nothing recorded: {}", rec["request"]);
    r.assert_no_leftovers();
}

#[test]
fn the_record_keeps_each_device_s_numbers() {
    if !privileged("the_record_keeps_each_device_s_numbers") {
        return;
    }
    let r = TestRoot::with_busybox();
    let (code, out, err) =
        run_in(&r, None, &["--device", "/dev/zero:/dev/z:rw", "busybox:latest", "--", "true"]);
    assert_eq!(code, 0, "{out}{err}");
    let rec = r.last_record();
    let d = &rec["request"]["devices"]["nodes"][0];
    assert_eq!(d["host"], "/dev/zero");
    assert_eq!(d["container"], "/dev/z");
    assert_eq!((d["kind"].as_str(), d["major"].as_u64(), d["minor"].as_u64()), (Some("c"), Some(1), Some(5)));
    assert_eq!(d["perms"], "rw");
    let spec_devices = rec["spec"]["linux"]["devices"].to_string();
    assert!(spec_devices.contains("/dev/z"), "{spec_devices}");
    r.assert_no_leftovers();
}

#[test]
fn cdi_devices_from_yaml_and_json_specs_bring_nodes_mounts_env_and_hooks() {
    if !privileged("cdi_devices_from_yaml_and_json_specs_bring_nodes_mounts_env_and_hooks") {
        return;
    }
    let r = TestRoot::with_busybox();
    let work = tempfile::tempdir().unwrap();
    let hostdir = work.path().join("driver");
    std::fs::create_dir(&hostdir).unwrap();
    std::fs::write(hostdir.join("libfake.so"), "driver-bytes").unwrap();
    let hook_out = work.path().join("hook-out");
    let cdi = cdi_dir(&hostdir, &hook_out);
    let script = "exec 2>&1; stat -c '%n %t:%T' /dev/fakegpu0 /dev/fakegpu1; echo x > /dev/fakegpu0 && echo wrote-0; \
                  true < /dev/fakegpu1 && echo read-1; true > /dev/fakegpu1 && echo wrote-1; cat /opt/driver/libfake.so; \
                  echo; echo env=$FAKEGPU; ls /dev/nvidia0 || echo no-nvidia";
    let (code, out, err) = run_in(
        &r,
        Some(cdi.path()),
        &["--device", "example.com/gpu=all", "busybox:latest", "--", "sh", "-c", script],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("/dev/fakegpu0 1:3") && out.contains("/dev/fakegpu1 a:e5"), "{out}");
    assert!(
        out.contains("wrote-0") && out.contains("read-1") && !out.contains("wrote-1"),
        "permissions: r: {out}"
    );
    assert!(out.contains("driver-bytes"), "the mount: {out}");
    assert!(out.contains("env=0"), "the env edit: {out}");
    assert!(out.contains("no-nvidia"), "another kind's devices stay out: {out}");
    assert_eq!(std::fs::read_to_string(&hook_out).unwrap().trim(), "hook-ran");

    let rec = r.last_record();
    let cdi_rec = rec["request"]["devices"]["cdi"].as_array().unwrap().clone();
    let names: Vec<&str> = cdi_rec.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["example.com/gpu=0", "example.com/gpu=1"]);
    let spec_file = cdi.path().join("example.yaml");
    let sha = hex::encode(sha2::Sha256::digest(std::fs::read(&spec_file).unwrap()));
    assert_eq!(cdi_rec[0]["spec"], spec_file.display().to_string());
    assert_eq!(cdi_rec[0]["sha256"], sha);
    let hooks = rec["spec"]["hooks"]["createRuntime"].to_string();
    assert!(hooks.contains("/bin/sh"), "the hook is in the spec that ran: {hooks}");

    // The JSON spec, by --gpus: docker's spelling of nvidia.com/gpu=...
    for (gpus, want, not) in
        [("2", "/dev/nvidia0 1:5 /dev/nvidia1 1:7", ""), ("device=1", "/dev/nvidia1 1:7", "nvidia0")]
    {
        let (code, out, err) = run_in(
            &r,
            Some(cdi.path()),
            &[
                "--gpus",
                gpus,
                "busybox:latest",
                "--",
                "sh",
                "-c",
                "stat -c '%n %t:%T' /dev/nvidia* | tr '\\n' ' '; echo $NVIDIA_VISIBLE_DEVICES",
            ],
        );
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains(want) && out.contains("void"), "--gpus {gpus}: {out}");
        assert!(not.is_empty() || !out.contains(not), "--gpus {gpus}: {out}");
    }
    r.assert_no_leftovers();
}

#[test]
fn bad_devices_unknown_cdi_names_and_unsafe_specs_are_refused_by_name() {
    if !privileged("bad_devices_unknown_cdi_names_and_unsafe_specs_are_refused_by_name") {
        return;
    }
    let r = TestRoot::with_busybox();
    let work = tempfile::tempdir().unwrap();
    let cdi = cdi_dir(work.path(), &work.path().join("out"));
    let d = cdi.path().display().to_string();
    for (args, want) in [
        (vec!["--device", "/etc/passwd"], vec!["--device", "/etc/passwd", "not a character or block device"]),
        (vec!["--device", "/dev/null:/etc/x"], vec!["--device", "not a path under /dev"]),
        (vec!["--device", "/dev/null:/dev/x:rwx"], vec!["--device", "not some of r, w, m"]),
        (
            vec!["--device", "example.com/gpu=9"],
            vec!["example.com/gpu=9", &d, "kind example.com/gpu has: 0, 1"],
        ),
        (vec!["--device", "nope.com/x=0"], vec!["no spec there has kind nope.com/x"]),
        (vec!["--gpus", "many"], vec!["--gpus many", "give all, a number"]),
    ] {
        let mut full = args.clone();
        full.extend(["busybox:latest", "--", "true"]);
        let (code, out, err) = run_in(&r, Some(cdi.path()), &full);
        assert_eq!(code, 125, "{args:?}: {out}{err}");
        for w in want {
            assert!(err.contains(w), "{args:?}: {w:?} in {err}");
        }
    }
    // A malformed spec: the file and the field.
    let bad = cdi.path().join("bad.json");
    std::fs::write(&bad, r#"{"cdiVersion": "0.6.0", "kind": "bad.com/x", "devices": [{"name": "0", "containerEdits": {"deviceNodes": [{"path": "dev/x"}]}}]}"#).unwrap();
    let (code, _, err) =
        run_in(&r, Some(cdi.path()), &["--device", "example.com/gpu=0", "busybox:latest", "--", "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains(&bad.display().to_string())
            && err.contains("devices[0].containerEdits.deviceNodes[0].path"),
        "{err}"
    );
    std::fs::remove_file(&bad).unwrap();
    // Writable by others: refused, naming it.
    let spec = cdi.path().join("example.yaml");
    std::fs::set_permissions(&spec, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, _, err) =
        run_in(&r, Some(cdi.path()), &["--device", "example.com/gpu=0", "busybox:latest", "--", "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains(&spec.display().to_string()) && err.contains("anyone can write it"), "{err}");
    std::fs::set_permissions(&spec, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(&spec, Some(65534), None).unwrap();
    let (code, _, err) =
        run_in(&r, Some(cdi.path()), &["--device", "example.com/gpu=0", "busybox:latest", "--", "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("owned by uid 65534"), "{err}");
    std::os::unix::fs::chown(&spec, Some(0), None).unwrap();
    // A symlinked spec is followed, and the file it names is what is checked.
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("example.yaml");
    std::fs::copy(&spec, &target).unwrap();
    std::fs::remove_file(&spec).unwrap();
    std::os::unix::fs::symlink(&target, &spec).unwrap();
    let device = ["--device", "example.com/gpu=0", "busybox:latest", "--", "true"];
    let (code, out, err) = run_in(&r, Some(cdi.path()), &device);
    assert_eq!(code, 0, "{out}{err}");
    std::os::unix::fs::chown(&target, Some(65534), None).unwrap();
    let (code, _, err) = run_in(&r, Some(cdi.path()), &device);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains(&spec.display().to_string()) && err.contains("owned by uid 65534"), "{err}");
    // Anything else named like a spec is refused, naming it, never skipped:
    // a dangling link, a directory.
    std::fs::remove_file(&target).unwrap();
    let (code, _, err) = run_in(&r, Some(cdi.path()), &device);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains(&format!("CDI spec {}: opening", spec.display())), "{err}");
    std::fs::remove_file(&spec).unwrap();
    let dir = cdi.path().join("more.json");
    std::fs::create_dir(&dir).unwrap();
    let (code, _, err) = run_in(&r, Some(cdi.path()), &device);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains(&dir.display().to_string()) && err.contains("not a regular file"), "{err}");
    r.assert_no_leftovers();
}

#[test]
fn rootless_a_device_is_the_host_node_bound_and_perms_it_cannot_keep_are_refused() {
    if !privileged(
        "rootless_a_device_is_the_host_node_bound_and_perms_it_cannot_keep_are_refused (makes the user)",
    ) {
        return;
    }
    let h = common::rootless::Home::new();
    let fixture = common::fixture_dir().join("busybox-oci");
    let (code, _, err) =
        h.exprun(&["image", "import", "--name", "busybox:latest", fixture.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = h.exprun(&[
        "run",
        "--no-limits",
        "--device",
        "/dev/zero:/dev/fakegpu0",
        "busybox:latest",
        "--",
        "sh",
        "-c",
        "stat -c '%n %t:%T' /dev/fakegpu0; head -c 3 /dev/fakegpu0 | od -An -tx1; echo x > /dev/fakegpu0 && echo wrote",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("/dev/fakegpu0 1:5") && out.contains("00 00 00") && out.contains("wrote"),
        "{out}{err}"
    );
    let (code, _, err) =
        h.exprun(&["run", "--no-limits", "--device", "/dev/zero:/dev/z:r", "busybox:latest", "--", "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("--device") && err.contains("rootless run has no devices cgroup"), "{err}");
    h.remove_image();
    h.assert_no_leftovers();
}

#[test]
fn replay_lists_a_device_whose_numbers_or_cdi_spec_changed() {
    if !privileged("replay_lists_a_device_whose_numbers_or_cdi_spec_changed") {
        return;
    }
    let r = TestRoot::with_busybox();
    let work = tempfile::tempdir().unwrap();
    let node = work.path().join("node");
    let mknod = |minor| {
        let _ = std::fs::remove_file(&node);
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o666);
        nix::sys::stat::mknod(&node, nix::sys::stat::SFlag::S_IFCHR, mode, nix::sys::stat::makedev(1, minor))
            .unwrap();
    };
    mknod(3);
    let cdi = cdi_dir(work.path(), &work.path().join("hook-out"));
    let dev = format!("{}:/dev/mine", node.display());
    let (code, out, err) = run_in(
        &r,
        Some(cdi.path()),
        &[
            "--name",
            "dev1",
            "--device",
            &dev,
            "--device",
            "example.com/gpu=0",
            "busybox:latest",
            "--",
            "true",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let replay = |extra: &[&str]| {
        let mut args = vec!["replay", "--dry-run", "dev1"];
        args.extend_from_slice(extra);
        let out = r.exprun(&args, None);
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let same = replay(&[]);
    assert!(same.contains("no drift") && !same.contains("WARNING"), "nothing changed: {same}");

    mknod(5);
    let spec = cdi.path().join("example.yaml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text.replace("FAKEGPU=0", "FAKEGPU=changed")).unwrap();
    let drift = replay(&[]);
    assert!(
        drift.contains(&format!("device {}", node.display()))
            && drift.contains("c 1:3")
            && drift.contains("c 1:5"),
        "{drift}"
    );
    assert!(
        drift.contains("cdi example.com/gpu=0") && drift.contains(&spec.display().to_string()),
        "{drift}"
    );

    std::fs::remove_file(&spec).unwrap();
    let gone = replay(&[]);
    assert!(gone.contains("cdi example.com/gpu=0") && gone.contains("is in no CDI spec"), "{gone}");
    r.assert_no_leftovers();
}

#[test]
fn runc_given_the_same_devices_and_rules_shows_the_same() {
    let test = "runc_given_the_same_devices_and_rules_shows_the_same";
    let Some(t) = common::bundle::shim(test) else { return };
    let Some(runc) = common::bundle::runc(test) else { return };
    let (r, work) = (&t.r, t.work.path());
    let out = r.exprun(
        &[
            "image",
            "import",
            "--name",
            "busybox:latest",
            common::fixture_dir().join("busybox-oci").to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success());
    let script =
        "exec 2>&1; stat -c '%n %t:%T %a' /dev/fakegpu0 /dev/k; echo x > /dev/fakegpu0 && echo wrote-fake; \
         true < /dev/k && echo read-k; true > /dev/k && echo wrote-k; mknod /dev/m c 10 229 && echo made-k; echo end";
    let (code, ours, err) = run_in(
        r,
        None,
        &[
            "--device",
            "/dev/null:/dev/fakegpu0",
            "--device",
            &format!("{FUSE}:/dev/k:r"),
            "busybox:latest",
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    assert_eq!(code, 0, "{ours}{err}");
    // The same linux.devices and device rules, in a bundle runc runs.
    let rec = r.last_record();
    let b = common::bundle::bundle(work, &["sh", "-c", script]);
    common::bundle::edit_for_runc(&b, |c| {
        c["linux"]["devices"] = rec["spec"]["linux"]["devices"].clone();
        c["linux"]["resources"] =
            serde_json::json!({"devices": rec["spec"]["linux"]["resources"]["devices"].clone()});
    });
    let (code, theirs, err) = common::bundle::runc_run(&runc, &work.join("runc-root"), &b, "devices-runc");
    assert_eq!(code, 0, "runc: {theirs}{err}");
    // runc also allows mknod of any device (its default rules add c *:* m and
    // b *:* m); exprun's rules do not: the mknod line differs, by design.
    let without_mknod = |o: &str| {
        o.lines().filter(|l| !l.contains("/dev/m") && *l != "made-k").map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(without_mknod(&ours), without_mknod(&theirs), "runc sees otherwise");
    assert!(theirs.contains("made-k"), "runc's mknod rule: {theirs}");
    assert!(
        ours.contains("wrote-fake")
            && ours.contains("read-k")
            && !ours.contains("wrote-k")
            && !ours.contains("made-k"),
        "{ours}"
    );
    r.assert_no_leftovers();
    common::bundle::remove_parent_cgroups();
}

#[test]
fn a_gpu_node_given_with_device_is_recorded_and_pins_cublas() {
    if !privileged("a_gpu_node_given_with_device_is_recorded_and_pins_cublas") {
        return;
    }
    let r = TestRoot::with_busybox();
    // An NVIDIA node number (c 195:0) made in a temp dir: no driver answers
    // it here, but exprun decides from the numbers.
    let work = tempfile::tempdir().unwrap();
    let node = work.path().join("nvidia0");
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o666);
    nix::sys::stat::mknod(&node, nix::sys::stat::SFlag::S_IFCHR, mode, nix::sys::stat::makedev(195, 0))
        .unwrap();
    let dev = format!("{}:/dev/nvidia0", node.display());
    let (code, out, err) = run_in(
        &r,
        None,
        &[
            "--device",
            &dev,
            "busybox:latest",
            "--",
            "sh",
            "-c",
            "stat -c '%t:%T' /dev/nvidia0; echo $CUBLAS_WORKSPACE_CONFIG",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "c3:0\n:4096:8\n", "{err}");
    let rec = r.last_record();
    let pins = rec["determinism"]["pins"].to_string();
    assert!(pins.contains("CUBLAS_WORKSPACE_CONFIG=:4096:8"), "{pins}");
    let gpus = rec["gpus"].to_string();
    assert!(gpus.contains("/dev/nvidia0") && gpus.contains("\"major\":195"), "{gpus}");
    r.assert_no_leftovers();
}

#[test]
fn a_directory_gives_every_node_under_it_and_cdi_gids_and_container_hooks_apply() {
    if !privileged("a_directory_gives_every_node_under_it_and_cdi_gids_and_container_hooks_apply") {
        return;
    }
    let r = TestRoot::with_busybox();
    let work = tempfile::tempdir().unwrap();

    // --device DIR: each node under it, at the same place under CONTAINER, with
    // PERMS; what is not a node stays out.
    let devs = work.path().join("devs");
    std::fs::create_dir_all(devs.join("sub")).unwrap();
    let mknod = |path: &Path, major: &str, minor: &str| {
        let st = std::process::Command::new("mknod").arg(path).args(["c", major, minor]).status().unwrap();
        assert!(st.success(), "mknod {}", path.display());
    };
    mknod(&devs.join("k"), "10", "229");
    mknod(&devs.join("sub/full"), "1", "7");
    std::fs::write(devs.join("plain"), "not a node").unwrap();
    let dev_arg = format!("{}:/dev/fake:r", devs.display());
    let (code, out, err) = run_in(
        &r,
        None,
        &[
            "--device",
            &dev_arg,
            "busybox:latest",
            "--",
            "sh",
            "-c",
            "exec 2>&1; find /dev/fake | sort; stat -c '%n %t:%T' /dev/fake/k /dev/fake/sub/full; \
           true > /dev/fake/k && echo wrote-k; grep '10:229' /sys/fs/cgroup/devices/devices.list",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("/dev/fake/k a:e5") && out.contains("/dev/fake/sub/full 1:7"), "{out}");
    assert!(!out.contains("/dev/fake/plain"), "a plain file is no device: {out}");
    assert!(out.contains("c 10:229 r\n") && !out.contains("wrote-k"), "PERMS r for each node: {out}");

    // A CDI device's additionalGIDs, createContainer hook (in the container's
    // mount namespace, before pivot_root: host paths) and startContainer hook
    // (in the container, after it: the container's paths).
    let hook_out = work.path().join("create-container");
    let cdi = tempfile::tempdir().unwrap();
    std::fs::set_permissions(cdi.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let spec = serde_json::json!({
        "cdiVersion": "0.6.0", "kind": "example.com/acc",
        "devices": [{"name": "x", "containerEdits": {
            "deviceNodes": [{"path": "/dev/acc0", "hostPath": "/dev/null"}],
            "additionalGIDs": [4242],
            "hooks": [
                {"hookName": "createContainer", "path": "/bin/sh",
                 "args": ["sh", "-c", format!("echo create > {}", hook_out.display())]},
                {"hookName": "startContainer", "path": "/bin/sh",
                 "args": ["sh", "-c", "echo start > /tmp/start-hook"]}
            ]}}]
    });
    std::fs::write(cdi.path().join("acc.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
    let (code, out, err) = run_in(
        &r,
        Some(cdi.path()),
        &[
            "--device",
            "example.com/acc=x",
            "busybox:latest",
            "--",
            "sh",
            "-c",
            "exec 2>&1; id -G; cat /tmp/start-hook",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.split_whitespace().any(|g| g == "4242"), "additionalGIDs: {out}");
    assert!(out.contains("start"), "startContainer ran in the container: {out}");
    assert_eq!(std::fs::read_to_string(&hook_out).unwrap().trim(), "create", "createContainer");
    r.assert_no_leftovers();
}
