#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! exprun under a real containerd, driven through the CRI API as the kubelet
//! drives it: a private containerd (own config, root, state and sockets in a temp
//! dir, stopped by pid at the end) with a runtime handler `exprun` that runs
//! containerd's stock runc shim with `BinaryName` = exprun. The same pod lifecycle
//! also runs with the `runc` handler, and the two must agree.
//!
//! Needs root and Debian's containerd (`.ci/run` installs it). Without them it
//! prints SKIP, and under CI=true fails.
//!
//! With `EXPRUN_CRI_SYSTEMD_CGROUP=1` (on a host with systemd as pid 1: the
//! guest of tests/guest.rs, case `10-containerd-systemd`) both handlers run with
//! `SystemdCgroup = true` and the pods' parent is a systemd slice, so containerd
//! passes `--systemd-cgroup` and cgroupsPath `slice:cri-containerd:<id>`. The
//! test then also checks, for each running container, that its init is in an
//! active systemd scope unit whose ControlGroup is the one the kernel shows,
//! that the unit's MemoryMax and CPU quota are the limits asked for, and that
//! the units are gone with the pod; see containerd_cri/systemd.rs.
//! `EXPRUN_TEST_TIME_SCALE` (a whole number, default 1) multiplies the waits,
//! for slow machines (the guest runs under TCG).

mod common;
#[path = "containerd_cri/systemd.rs"]
mod systemd;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use systemd::{check_systemd_driver, unit_props, SystemdChecks};
use tonic::transport::{Channel, Endpoint, Uri};

/// How containerd and the runtimes make the pods' cgroups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Driver {
    /// cgroupfs paths below `/exprun-e2e-<pid>/<handler>`.
    Cgroupfs,
    /// `SystemdCgroup = true`: scope units in the slice `exprun_e2e_<pid>-<handler>.slice`.
    Systemd,
}

impl Driver {
    fn from_env() -> Self {
        match std::env::var("EXPRUN_CRI_SYSTEMD_CGROUP").as_deref() {
            Ok("1") => Driver::Systemd,
            Ok("0") | Err(_) => Driver::Cgroupfs,
            Ok(other) => panic!("EXPRUN_CRI_SYSTEMD_CGROUP={other}: use 1 (systemd driver) or 0"),
        }
    }
}

/// `d` times `EXPRUN_TEST_TIME_SCALE`.
fn patience(d: Duration) -> Duration {
    let scale: u32 = std::env::var("EXPRUN_TEST_TIME_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    d * scale.max(1)
}

/// The roots of the mounted cgroup hierarchies: `/sys/fs/cgroup` on a unified
/// (v2 only) host, each directory below it otherwise.
fn hierarchies() -> Vec<PathBuf> {
    let top = Path::new("/sys/fs/cgroup");
    if top.join("cgroup.controllers").exists() {
        return vec![top.to_path_buf()];
    }
    std::fs::read_dir(top).unwrap().flatten().map(|e| e.path()).collect()
}

/// A private containerd.
struct Containerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    driver: Driver,
    /// The cgroup holding every pod's (in each hierarchy), removed at the end:
    /// `exprun-e2e-<pid>`, or the slice `exprun_e2e_<pid>.slice`.
    cgroup_dir: String,
}

impl Containerd {
    fn start(exprun: &Path, driver: Driver) -> Self {
        let dir = tempfile::Builder::new().prefix("exprun-containerd-").tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("cni")).unwrap();
        std::fs::write(
            d.join("cni/10-loopback.conf"),
            r#"{"cniVersion":"0.3.1","name":"lo","type":"loopback"}"#,
        )
        .unwrap();
        let systemd = if driver == Driver::Systemd { "\n        SystemdCgroup = true" } else { "" };
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/exprun/pause:latest"
  # Lowering oom_score_adj needs CAP_SYS_RESOURCE, which root may lack (it does
  # on the machines this project is developed on); runc fails without it.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.exprun]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.exprun.options]
        BinaryName = "{exprun}"
        Root = "{d}/exprun-root"{systemd}
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{d}/runc-root"{systemd}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
"#,
            d = d.display(),
            exprun = exprun.display()
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        // exprun's node configuration: pod records outside the shim's root.
        let node = format!("[records]\nroot = \"{}\"\n", d.join("exprun-records").display());
        std::fs::write(d.join("exprun.toml"), node).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .env("EXPRUN_CONFIG", d.join("exprun.toml"))
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let cgroup_dir = match driver {
            Driver::Cgroupfs => format!("exprun-e2e-{}", std::process::id()),
            Driver::Systemd => format!("exprun_e2e_{}.slice", std::process::id()),
        };
        let c = Self { dir, child: Some(child), driver, cgroup_dir };
        let t0 = Instant::now();
        while !c.sock().exists() {
            assert!(
                t0.elapsed() < patience(Duration::from_secs(20)),
                "containerd did not come up: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    /// The cgroup_parent of `handler`'s pods: a cgroupfs path, or a slice
    /// (`a-b.slice` is `b` inside `a.slice`; containerd then makes the
    /// cgroupsPath `a-b.slice:cri-containerd:<id>`).
    fn pod_parent(&self, handler: &str) -> String {
        match self.driver {
            Driver::Cgroupfs => format!("/{}/{handler}", self.cgroup_dir),
            Driver::Systemd => format!("{}-{handler}.slice", self.cgroup_dir.trim_end_matches(".slice")),
        }
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr(&self, args: &[&str]) {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(self.sock())
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "ctr {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Stop containerd and everything it started, and remove its mounts and dirs.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::SIGTERM);
        let t0 = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let root = self.dir.path().display().to_string();
        // Shims outlive containerd by design; ours are done once their pods are gone.
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&root) {
                if let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() {
                    let _ =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
                }
            }
        }
        // The slices systemd made for the pods go, with any scope left in them.
        if self.driver == Driver::Systemd {
            let _ = Command::new("systemctl").args(["stop", &self.cgroup_dir]).status();
        }
        // A pod whose shim is gone keeps running, reparented to pid 1: end every
        // process in the pods' cgroups, then remove the cgroups, deepest first.
        for h in hierarchies() {
            common::remove_cgroup_tree(&h.join(&self.cgroup_dir));
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mut ours: Vec<String> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&root))
            .map(str::to_string)
            .collect();
        ours.reverse();
        for m in ours {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The fixture image as a docker-archive whose command waits forever: the pod
/// sandbox (the "pause" container).
fn pause_archive(dir: &Path) -> PathBuf {
    let src = common::fixture_dir().join("busybox-docker.tar");
    let mut entries: Vec<(tar::Header, Vec<u8>)> = Vec::new();
    let mut a = tar::Archive::new(std::fs::File::open(&src).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        entries.push((e.header().clone(), data));
    }
    let name = |h: &tar::Header| h.path().unwrap().to_string_lossy().into_owned();
    let manifest_at = entries.iter().position(|(h, _)| name(h) == "manifest.json").unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&entries[manifest_at].1).unwrap();
    let config_name = manifest[0]["Config"].as_str().unwrap().to_string();
    let config_at = entries.iter().position(|(h, _)| name(h) == config_name).unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(&entries[config_at].1).unwrap();
    config["config"]["Cmd"] = serde_json::json!(["/bin/sleep", "2147483647"]);
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_hex = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&config_bytes))
    };
    manifest[0]["Config"] = serde_json::json!(format!("{config_hex}.json"));
    manifest[0]["RepoTags"] = serde_json::json!(["exprun/pause:latest"]);
    let out = dir.join("pause.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&out).unwrap());
    for (i, (h, data)) in entries.iter().enumerate() {
        let (path, bytes) = if i == manifest_at {
            ("manifest.json".to_string(), serde_json::to_vec(&manifest).unwrap())
        } else if i == config_at {
            (format!("{config_hex}.json"), config_bytes.clone())
        } else if name(h) == "repositories" {
            continue;
        } else {
            (name(h), data.clone())
        };
        let mut h = h.clone();
        h.set_size(bytes.len() as u64);
        b.append_data(&mut h, path, &bytes[..]).unwrap();
    }
    b.finish().unwrap();
    out
}

async fn connect(sock: &Path) -> RuntimeServiceClient<Channel> {
    let sock = sock.to_path_buf();
    let channel = Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let sock = sock.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(sock).await?,
                ))
            }
        }))
        .await
        .unwrap();
    RuntimeServiceClient::new(channel)
}

/// What one pod lifecycle observed; exprun's and runc's must be equal.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    worker_state_running: bool,
    exec_stdout: String,
    exec_exit: i32,
    failing_exit: i32,
    oom_exit: i32,
    oom_reason: String,
    stopped_exit: i32,
}

/// The pid field of a verbose CRI status's `info` JSON.
fn info_pid(info: &std::collections::HashMap<String, String>) -> u32 {
    let v: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    v["pid"].as_u64().unwrap_or_else(|| panic!("no pid in {v}")) as u32
}

async fn container_pid(rt: &mut RuntimeServiceClient<Channel>, id: &str) -> u32 {
    let r = rt
        .container_status(ContainerStatusRequest { container_id: id.into(), verbose: true })
        .await
        .unwrap()
        .into_inner();
    info_pid(&r.info)
}

async fn sandbox_pid(rt: &mut RuntimeServiceClient<Channel>, id: &str) -> u32 {
    let r = rt
        .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: id.into(), verbose: true })
        .await
        .unwrap()
        .into_inner();
    info_pid(&r.info)
}

async fn wait_exited(rt: &mut RuntimeServiceClient<Channel>, id: &str) -> ContainerStatus {
    let t0 = Instant::now();
    loop {
        let s = rt
            .container_status(ContainerStatusRequest { container_id: id.into(), verbose: false })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        if s.state == ContainerState::ContainerExited as i32 {
            return s;
        }
        assert!(t0.elapsed() < patience(Duration::from_secs(30)), "container {id} did not exit: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status of an exited container once containerd has handled its OOM
/// event too. containerd 1.6 handles the shim's TaskExit and TaskOOM events
/// apart: under load the exit can be handled first (reason "Error" for a
/// moment) and the OOM kill a little later, which then sets "OOMKilled". The
/// kubelet, which polls, sees the same thing settle.
async fn wait_oom_killed(rt: &mut RuntimeServiceClient<Channel>, id: &str) -> ContainerStatus {
    let mut s = wait_exited(rt, id).await;
    let t0 = Instant::now();
    while s.reason != "OOMKilled" && t0.elapsed() < patience(Duration::from_secs(5)) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s = rt
            .container_status(ContainerStatusRequest { container_id: id.into(), verbose: false })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
    }
    s
}

/// RemoveContainer, retried as kubelet's garbage collector retries it.
///
/// containerd 1.6 handles each TaskOOM event by rewriting the container's
/// status file, in its own directory, and the kernel can report one OOM kill
/// as a dozen events. One that is handled while RemoveContainer empties that
/// directory makes the removal fail with "directory not empty"; the next
/// attempt succeeds. Any other error fails the test.
async fn remove_container(rt: &mut RuntimeServiceClient<Channel>, id: &str) {
    for attempt in 1.. {
        match rt.remove_container(RemoveContainerRequest { container_id: id.into() }).await {
            Ok(_) => return,
            Err(e) if attempt < 5 && e.message().contains("directory not empty") => {
                eprintln!("RemoveContainer {id}, attempt {attempt}: {}; retrying", e.message());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("RemoveContainer {id}: {e}"),
        }
    }
}

/// The pod lifecycle with `handler`, its pods in `cgroup_parent`; with the
/// systemd driver, `checks` records what systemd and the kernel show on the way.
async fn pod_lifecycle(
    rt: &mut RuntimeServiceClient<Channel>,
    handler: &str,
    logs: &Path,
    cgroup_parent: &str,
    mut checks: Option<&mut SystemdChecks>,
) -> Observed {
    let sandbox_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: format!("e2e-{handler}"),
            uid: format!("uid-{handler}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        // Host network, so the host's UTS namespace too: a hostname would be refused
        // (by runc and exprun alike: it needs a UTS namespace of the pod's own).
        hostname: String::new(),
        log_directory: logs.join(handler).display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.into(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: handler.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox with {handler}: {e}"))
        .into_inner()
        .pod_sandbox_id;

    // Every container asks for the runtime's default seccomp profile: containerd
    // writes its (Docker's) default profile into config.json, which must load.
    let container = |name: &str, args: &[&str], memory: i64| CreateContainerRequest {
        pod_sandbox_id: pod.clone(),
        config: Some(ContainerConfig {
            metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
            image: Some(ImageSpec {
                image: "docker.io/fixtures/busybox:latest".into(),
                ..Default::default()
            }),
            command: args.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources {
                    memory_limit_in_bytes: memory,
                    ..Default::default()
                }),
                security_context: Some(LinuxContainerSecurityContext {
                    seccomp: Some(SecurityProfile {
                        profile_type: security_profile::ProfileType::RuntimeDefault as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        sandbox_config: Some(sandbox_config.clone()),
    };
    let client = rt.clone();
    let create_start = |req: CreateContainerRequest| {
        let mut rt = client.clone();
        async move {
            let id = rt
                .create_container(req)
                .await
                .unwrap_or_else(|e| panic!("CreateContainer: {e}"))
                .into_inner()
                .container_id;
            rt.start_container(StartContainerRequest { container_id: id.clone() })
                .await
                .unwrap_or_else(|e| panic!("StartContainer: {e}"));
            id
        }
    };

    // A long-running worker: status, exec, resource update, stop. With the
    // systemd driver it has a memory limit from the start, to find in its unit.
    let worker_memory: u64 = if checks.is_some() { 256 << 20 } else { 0 };
    let worker =
        create_start(container("worker", &["sh", "-c", "echo started; sleep 60"], worker_memory as i64))
            .await;
    if let Some(c) = checks.as_deref_mut() {
        let pid = sandbox_pid(rt, &pod).await;
        c.running("sandbox", &pod, pid);
        let pid = container_pid(rt, &worker).await;
        c.running("worker", &worker, pid);
        c.limits("worker", &worker, worker_memory, None);
    }
    let status = rt
        .container_status(ContainerStatusRequest { container_id: worker.clone(), verbose: false })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    let exec = rt
        .exec_sync(ExecSyncRequest {
            container_id: worker.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "echo exec-out; grep Seccomp: /proc/self/status; exit 5".into(),
            ],
            timeout: 10,
        })
        .await
        .unwrap_or_else(|e| panic!("ExecSync: {e}"))
        .into_inner();
    rt.update_container_resources(UpdateContainerResourcesRequest {
        container_id: worker.clone(),
        linux: Some(LinuxContainerResources {
            memory_limit_in_bytes: 128 << 20,
            cpu_period: 100_000,
            cpu_quota: 50_000,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("UpdateContainerResources: {e}"));
    if let Some(c) = checks.as_deref_mut() {
        c.limits("worker after UpdateContainerResources", &worker, 128 << 20, Some(50_000));
    }
    rt.stop_container(StopContainerRequest { container_id: worker.clone(), timeout: 2 }).await.unwrap();
    let stopped = wait_exited(rt, &worker).await;

    // A command that fails, and one the OOM killer ends.
    let failing = create_start(container("fails", &["sh", "-c", "exit 3"], 0)).await;
    let failing_status = wait_exited(rt, &failing).await;
    let hog = "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo ${#x}";
    let oom = create_start(container("oom", &["sh", "-c", hog], 16 << 20)).await;
    let oom_status = wait_oom_killed(rt, &oom).await;

    for id in [&worker, &failing, &oom] {
        remove_container(rt, id).await;
    }
    rt.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    if let Some(c) = checks {
        for (name, id) in [("sandbox", &pod), ("worker", &worker), ("fails", &failing), ("oom", &oom)] {
            c.gone(name, id);
        }
    }

    Observed {
        worker_state_running: status.state == ContainerState::ContainerRunning as i32,
        exec_stdout: String::from_utf8_lossy(&exec.stdout).into_owned(),
        exec_exit: exec.exit_code,
        failing_exit: failing_status.exit_code,
        oom_exit: oom_status.exit_code,
        oom_reason: oom_status.reason,
        stopped_exit: stopped.exit_code,
    }
}

#[test]
fn a_pod_lifecycle_through_cri_with_exprun_matches_runc() {
    if !common::privileged("a_pod_lifecycle_through_cri_with_exprun_matches_runc") {
        return;
    }
    let missing: Vec<&str> = ["containerd", "containerd-shim-runc-v2", "ctr", "runc"]
        .into_iter()
        .filter(|t| which(t).is_none())
        .collect();
    if !missing.is_empty() {
        let why = format!("needs {} (apt-get install containerd runc)", missing.join(", "));
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "cannot run under CI: {why}");
        println!("SKIP: a_pod_lifecycle_through_cri_with_exprun_matches_runc: {why}");
        return;
    }
    let driver = Driver::from_env();
    if driver == Driver::Systemd {
        assert!(
            Path::new("/run/systemd/system").exists(),
            "EXPRUN_CRI_SYSTEMD_CGROUP=1 needs systemd as pid 1 (/run/systemd/system is absent): \
             run it in the guest of tests/guest.rs (case 10-containerd-systemd)"
        );
    }
    let mut c = Containerd::start(&common::exprun_bin(), driver);
    let work = c.dir.path().to_path_buf();
    c.ctr(&["images", "import", common::fixture_dir().join("busybox-docker.tar").to_str().unwrap()]);
    c.ctr(&["images", "import", pause_archive(&work).to_str().unwrap()]);
    let mut runc_checks = SystemdChecks::new("runc", &c.cgroup_dir, &c.pod_parent("runc"));
    let mut exprun_checks = SystemdChecks::new("exprun", &c.cgroup_dir, &c.pod_parent("exprun"));
    let systemd = driver == Driver::Systemd;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (exprun, runc) = rt.block_on(async {
        let mut client = connect(&c.sock()).await;
        let logs = work.join("logs");
        let runc_parent = c.pod_parent("runc");
        let checks = systemd.then_some(&mut runc_checks);
        let runc = pod_lifecycle(&mut client, "runc", &logs, &runc_parent, checks).await;
        let exprun_parent = c.pod_parent("exprun");
        let checks = systemd.then_some(&mut exprun_checks);
        let exprun = pod_lifecycle(&mut client, "exprun", &logs, &exprun_parent, checks).await;
        (exprun, runc)
    });
    assert!(exprun.worker_state_running, "{exprun:?}");
    assert_eq!(exprun.exec_stdout, "exec-out\nSeccomp:\t2\n", "the default profile must be in force");
    assert_eq!(exprun.exec_exit, 5);
    assert_eq!(exprun.failing_exit, 3);
    // containerd 1.6 can lose a container's OOM event when the exit is
    // handled first (seen in the TCG guest with the systemd driver: "Error"
    // for longer than the wait above, for runc, and for exprun once in three
    // CI runs of the same code); the reason is its shim's, which watches the
    // cgroup exprun made (whose placement check_systemd_driver checks). So
    // the reason is checked on exprun's side strictly except under systemd,
    // and runc's only for being one of the two containerd gives.
    assert_eq!(exprun.oom_exit, 137, "{exprun:?}");
    if systemd {
        assert!(["OOMKilled", "Error"].contains(&exprun.oom_reason.as_str()), "{exprun:?}");
    } else {
        assert_eq!(exprun.oom_reason, "OOMKilled", "{exprun:?}");
    }
    assert!(["OOMKilled", "Error"].contains(&runc.oom_reason.as_str()), "{runc:?}");
    let runc = Observed { oom_reason: exprun.oom_reason.clone(), ..runc };
    assert_eq!(exprun, runc, "exprun and runc disagree");
    if systemd {
        check_systemd_driver(&runc_checks, &exprun_checks);
    }

    // Every container exprun ran left a record, with its pod's names, in the
    // records root of the node configuration, not under the shim's --root
    // (<Root>/<containerd namespace>).
    let records: Vec<serde_json::Value> = std::fs::read_dir(work.join("exprun-records/runs"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("record.json")).ok())
        .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap())
        .collect();
    let names: Vec<String> =
        records.iter().filter_map(|r| r["kubernetes"]["container"].as_str().map(str::to_string)).collect();
    for want in ["worker", "fails", "oom"] {
        assert!(names.iter().any(|n| n == want), "no record for {want}: {names:?}");
    }
    assert!(records.iter().any(|r| r["kubernetes"]["container_type"] == "sandbox"), "no sandbox record");
    assert!(records
        .iter()
        .all(|r| r["kubernetes"]["pod"].is_string() && r["kubernetes"]["namespace"].is_string()));
    let in_shim_root = std::fs::read_dir(work.join("exprun-root/k8s.io/runs")).into_iter().flatten().count();
    assert_eq!(in_shim_root, 0, "pod records under the shim's root");

    c.stop();
    let root = work.display().to_string();
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&root),
        "mounts left under {root}"
    );
    for h in hierarchies() {
        let p = h.join(&c.cgroup_dir);
        assert!(!p.exists(), "cgroup left behind: {}", p.display());
    }
    if systemd {
        for slice in [c.cgroup_dir.clone(), c.pod_parent("runc"), c.pod_parent("exprun")] {
            let props = unit_props(&slice, &["ActiveState"]);
            assert_ne!(props["ActiveState"], "active", "{slice} left active");
        }
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(tool)).find(|p| p.exists())
}
