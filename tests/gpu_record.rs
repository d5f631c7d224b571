#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The record's GPU facts, on a machine without a GPU: a fake
//! /proc/driver/nvidia tree bound over /proc/driver in a private mount
//! namespace around each exprun command (`unshare -m`), a fake `nvidia-smi`
//! first on PATH that logs its calls, and bundles listing /dev/nvidia0 (char
//! 195:0; the node need not open). The record holds what the tree and the fake
//! say; a run without a GPU node reads neither; a hanging `nvidia-smi` is a
//! note; `runs show`/`runs diff`, `replay` and `verify` show the facts and
//! their changes.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::bundle::{bundle, outcome, remove_parent_cgroups, shim};
use common::{exprun_bin, TestRoot};
use serde_json::{json, Value};

/// A fake driver: /proc/driver's replacement and a bin directory with `nvidia-smi`.
struct FakeDriver {
    dir: PathBuf,
}

impl FakeDriver {
    fn new(parent: &Path, name: &str, model: &str, driver: &str, cuda: &str) -> Self {
        let dir = parent.join(name);
        let gpu = dir.join("proc/nvidia/gpus/0000:3b:00.0");
        std::fs::create_dir_all(&gpu).unwrap();
        std::fs::write(
            gpu.join("information"),
            format!(
                "Model: \t\t {model}\nIRQ:   \t\t 185\nGPU UUID: \t GPU-{name}-0000-0000-000000000000\n\
                 Video BIOS: \t 96.00.99.00.01\nBus Type: \t PCIe\nDMA Size: \t 52 bits\n\
                 DMA Mask: \t 0xfffffffffffff\nBus Location: \t 0000:3b:00.0\nDevice Minor: \t 0\n\
                 GPU Excluded:\t No\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("proc/nvidia/version"),
            format!(
                "NVRM version: NVIDIA UNIX x86_64 Kernel Module  {driver}  Sat Aug 19 01:15:15 UTC 2023\n\
                 GCC version:  gcc version 11.4.0 (Ubuntu 11.4.0-1ubuntu1~22.04)\n"
            ),
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let f = Self { dir };
        f.smi(&format!(
            "case \"$1\" in\n\
             -q) printf '==============NVSMI LOG==============\\n\\nDriver Version : {driver}\\nCUDA Version : {cuda}\\n';;\n\
             *) echo '00000000:3B:00.0, GPU-{name}-0000-0000-000000000000, {model}, {driver}';;\n\
             esac"
        ));
        // Old enough that any read moves it (relatime).
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let version = std::fs::File::options().write(true).open(f.dir.join("proc/nvidia/version")).unwrap();
        version.set_times(std::fs::FileTimes::new().set_accessed(old)).unwrap();
        f
    }

    /// `nvidia-smi`: logs its arguments, then runs `body`.
    fn smi(&self, body: &str) {
        let path = self.dir.join("bin/nvidia-smi");
        let log = self.dir.join("smi-calls");
        std::fs::write(&path, format!("#!/bin/sh\necho \"$*\" >> {}\n{body}\n", log.display())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn smi_calls(&self) -> String {
        std::fs::read_to_string(self.dir.join("smi-calls")).unwrap_or_default()
    }

    fn version_read(&self) -> bool {
        let md = std::fs::metadata(self.dir.join("proc/nvidia/version")).unwrap();
        md.accessed().unwrap() > SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
    }

    /// `exprun --root ROOT ARGS` with this driver: its tree over /proc/driver in
    /// a mount namespace of its own, its `nvidia-smi` first on PATH.
    fn command(&self, root: &Path, args: &[&str]) -> Command {
        let script = format!("mount --bind {} /proc/driver && exec \"$@\"", self.dir.join("proc").display());
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
            .arg(exprun_bin())
            .arg("--root")
            .arg(root)
            .args(args)
            .env_clear()
            .env("PATH", format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", self.dir.join("bin").display()))
            .stdin(Stdio::null());
        cmd
    }

    fn exprun(&self, root: &Path, args: &[&str]) -> (i32, String, String) {
        outcome(self.command(root, args).output().unwrap())
    }
}

/// A bundle whose config lists /dev/nvidia0 (char 195:0), the one node its device cgroup allows
/// beyond the defaults.
fn gpu_bundle(work: &Path, args: &[&str]) -> PathBuf {
    let b = bundle(work, args);
    common::rootless::edit_config(&b, |c| {
        c["linux"]["devices"] =
            json!([{"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0, "fileMode": 0o666}]);
        c["linux"]["resources"]["devices"] = json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 195, "minor": 0, "access": "rwm"}
        ]);
    });
    b
}

fn record(r: &TestRoot, id: &str) -> Value {
    serde_json::from_slice(&std::fs::read(r.path().join("runs").join(id).join("record.json")).unwrap())
        .unwrap()
}

#[test]
fn bundle_runs_record_the_gpu_and_runs_show_and_diff_list_it() {
    let Some(t) = shim("bundle_runs_record_the_gpu_and_runs_show_and_diff_list_it") else { return };
    let (r, work) = (&t.r, t.work.path());
    let h100 = FakeDriver::new(work, "h100", "NVIDIA H100 80GB HBM3", "535.104.05", "12.2");
    let a100 = FakeDriver::new(work, "a100", "NVIDIA A100-SXM4-40GB", "550.54.14", "12.4");
    let b = gpu_bundle(work, &["sh", "-c", "ls -l /dev/nvidia0"]);

    // `run -b` in the foreground.
    let (code, out, err) = h100.exprun(r.path(), &["run", "-b", b.to_str().unwrap(), "gpu-a"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("195,   0") || out.contains("195, 0"), "the node is made: {out}");
    let g = &record(r, "gpu-a")["gpus"];
    assert_eq!(
        g,
        &json!([{
            "path": "/dev/nvidia0", "vendor": "nvidia", "major": 195, "minor": 0,
            "model": "NVIDIA H100 80GB HBM3", "uuid": "GPU-h100-0000-0000-000000000000",
            "pci_bus_id": "0000:3b:00.0", "driver_version": "535.104.05", "cuda_version": "12.2"
        }]),
        "{g:#}"
    );
    assert!(h100.smi_calls().contains("--query-gpu="), "{}", h100.smi_calls());

    // create, start, delete: the record, written by delete, with the other driver.
    let pid_file = work.join("gpu-b.pid");
    let st = a100
        .command(
            r.path(),
            &["create", "-b", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), "gpu-b"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "create: {st}");
    let pid = nix::unistd::Pid::from_raw(std::fs::read_to_string(&pid_file).unwrap().parse().unwrap());
    let (code, out, err) = a100.exprun(r.path(), &["start", "gpu-b"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(matches!(nix::sys::wait::waitpid(pid, None).unwrap(), nix::sys::wait::WaitStatus::Exited(_, 0)));
    let (code, out, err) = a100.exprun(r.path(), &["delete", "gpu-b"]);
    assert_eq!(code, 0, "{out}{err}");
    let g = &record(r, "gpu-b")["gpus"][0];
    assert_eq!(g["model"], "NVIDIA A100-SXM4-40GB", "{g:#}");
    assert_eq!(g["driver_version"], "550.54.14");
    assert_eq!(g["cuda_version"], "12.4");

    let (code, out, err) = outcome(r.exprun(&["runs", "show", "gpu-a"], None));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "gpu:        /dev/nvidia0 NVIDIA H100 80GB HBM3 (GPU-h100-0000-0000-000000000000, 0000:3b:00.0), \
             driver 535.104.05, CUDA 12.2"
        ),
        "{out}"
    );
    let (_, out, err) = outcome(r.exprun(&["runs", "diff", "gpu-a", "gpu-b"], None));
    for line in [
        "gpus[/dev/nvidia0].model: NVIDIA H100 80GB HBM3 -> NVIDIA A100-SXM4-40GB",
        "gpus[/dev/nvidia0].driver_version: 535.104.05 -> 550.54.14",
        "gpus[/dev/nvidia0].cuda_version: 12.2 -> 12.4",
    ] {
        assert!(out.contains(line), "{line} not in:\n{out}{err}");
    }
    r.assert_no_leftovers();
    drop(t);
    remove_parent_cgroups();
}

#[test]
fn a_run_without_a_gpu_node_reads_no_driver_file_and_runs_no_nvidia_smi() {
    let Some(t) = shim("a_run_without_a_gpu_node_reads_no_driver_file_and_runs_no_nvidia_smi") else {
        return;
    };
    let (r, work) = (&t.r, t.work.path());
    let fake = FakeDriver::new(work, "h100", "NVIDIA H100 80GB HBM3", "535.104.05", "12.2");
    let b = bundle(work, &["true"]);
    // nvidiactl is no GPU: it alone reads nothing either.
    common::rootless::edit_config(&b, |c| {
        c["linux"]["devices"] = json!([{"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255}]);
        c["linux"]["resources"]["devices"] = json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 195, "minor": 255, "access": "rwm"}
        ]);
    });
    let (code, out, err) = fake.exprun(r.path(), &["run", "-b", b.to_str().unwrap(), "no-gpu"]);
    assert_eq!(code, 0, "{out}{err}");
    let rec = record(r, "no-gpu");
    assert!(rec.get("gpus").is_none(), "{:#}", rec["gpus"]);
    assert_eq!(fake.smi_calls(), "", "nvidia-smi ran for a run without a GPU");
    assert!(!fake.version_read(), "/proc/driver/nvidia/version was read for a run without a GPU");
    // The probe can tell: a run with a GPU reads it.
    let g = gpu_bundle(&work.join("with"), &["true"]);
    let (code, out, err) = fake.exprun(r.path(), &["run", "-b", g.to_str().unwrap(), "gpu"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(fake.version_read() && !fake.smi_calls().is_empty());
    r.assert_no_leftovers();
    drop(t);
    remove_parent_cgroups();
}

#[test]
fn a_hanging_nvidia_smi_is_killed_and_noted() {
    let Some(t) = shim("a_hanging_nvidia_smi_is_killed_and_noted") else { return };
    let (r, work) = (&t.r, t.work.path());
    let fake = FakeDriver::new(work, "h100", "NVIDIA H100 80GB HBM3", "535.104.05", "12.2");
    fake.smi("sleep 6173");
    let b = gpu_bundle(work, &["true"]);
    let t0 = Instant::now();
    let (code, out, err) = fake.exprun(r.path(), &["run", "-b", b.to_str().unwrap(), "hang"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(t0.elapsed() < Duration::from_secs(30), "the run waited {:?}", t0.elapsed());
    let g = &record(r, "hang")["gpus"][0];
    assert_eq!(g["model"], "NVIDIA H100 80GB HBM3", "{g:#}");
    assert_eq!(g["driver_version"], "535.104.05");
    assert!(g.get("cuda_version").is_none(), "{g:#}");
    let notes = g["notes"].to_string();
    assert!(notes.contains("nvidia-smi") && notes.contains("no answer within 5 s"), "{notes}");
    // Nothing of it is left running.
    let ps = Command::new("pgrep").args(["-f", "sleep 6173"]).output().unwrap();
    assert!(ps.stdout.is_empty(), "left running: {}", String::from_utf8_lossy(&ps.stdout));
    r.assert_no_leftovers();
    drop(t);
    remove_parent_cgroups();
}

#[test]
fn replay_lists_gpu_drift_and_verify_says_the_gpu_may_explain_a_difference() {
    if !common::privileged("replay_lists_gpu_drift_and_verify_says_the_gpu_may_explain_a_difference") {
        return;
    }
    let r = TestRoot::with_busybox();
    let work = tempfile::tempdir().unwrap();
    let a100 = FakeDriver::new(work.path(), "a100", "NVIDIA A100-SXM4-40GB", "550.54.14", "12.4");
    let (code, _, err) = r.run(&["--name", "random", "busybox", "cat", "/proc/sys/kernel/random/uuid"]);
    assert_eq!(code, 0, "{err}");
    // The run as a run with /dev/nvidia0 on an H100 host records it (`exprun
    // run` has no device option of its own to attach one here).
    let id = r.last_record()["run_id"].as_str().unwrap().to_string();
    let path = r.path().join("runs").join(&id).join("record.json");
    let mut rec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    rec["gpus"] = json!([{
        "path": "/dev/nvidia0", "vendor": "nvidia", "major": 195, "minor": 0,
        "model": "NVIDIA H100 80GB HBM3", "uuid": "GPU-h100", "pci_bus_id": "0000:3b:00.0",
        "driver_version": "535.104.05", "cuda_version": "12.2"
    }]);
    std::fs::write(&path, serde_json::to_vec_pretty(&rec).unwrap()).unwrap();

    let (code, out, err) = a100.exprun(r.path(), &["replay", "random"]);
    assert_eq!(code, 0, "GPU drift does not block: {out}{err}");
    let all = format!("{out}{err}");
    for (item, was, now) in [
        ("gpu /dev/nvidia0 model", "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"),
        ("gpu /dev/nvidia0 driver", "535.104.05", "550.54.14"),
        ("gpu /dev/nvidia0 cuda", "12.2", "12.4"),
    ] {
        let line =
            all.lines().find(|l| l.starts_with(item)).unwrap_or_else(|| panic!("no {item} in:\n{all}"));
        let words: Vec<&str> = line.split("  ").map(str::trim).filter(|w| !w.is_empty()).collect();
        assert_eq!(words, [item, was, now, "no"], "{line}");
    }

    let (code, out, err) = a100.exprun(r.path(), &["verify", "random"]);
    assert_ne!(code, 0, "the uuid differs: {out}{err}");
    let all = format!("{out}{err}");
    assert!(all.contains("DIFFERS"), "{all}");
    assert!(
        all.contains(
            "the difference may come from the GPU or its driver: gpu /dev/nvidia0: NVIDIA H100 80GB HBM3"
        ),
        "{all}"
    );
    r.assert_no_leftovers();
}
