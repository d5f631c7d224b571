//! What a hostile container, bundle or command line already cannot do: make
//! namespaces or mounts, write the host's kernel settings, make or open a disk
//! device, overwrite the runtime through /proc/<pid>/exe, use a descriptor
//! leaked from the caller, mount through a symlink pointing out of its root,
//! run under an id exprun cannot give, or exhaust the host's pids or memory.
//! Each test performs the attack through the real exprun binary, asserts the
//! refusal the container or the user sees, and that the host is unchanged.

use std::path::Path;
use std::process::{Command, Stdio};

use sha2::Digest as _;

use crate::common::bundle::{bundle, oci, shim};
use crate::common::{exprun_bin, privileged, TestRoot};
use crate::host::{Marker, Snapshot};

/// A root with busybox, a marker, and the snapshot taken before the attack.
fn setup() -> (TestRoot, Marker, Snapshot) {
    let r = TestRoot::with_busybox();
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    (r, marker, before)
}

/// Run `script` in busybox with `opts` before the image; (status, stdout, stderr).
fn run_script(r: &TestRoot, opts: &[&str], script: &str) -> (i32, String, String) {
    let mut args = opts.to_vec();
    args.extend(["busybox:latest", "sh", "-c", script]);
    r.run(&args)
}

#[test]
fn namespace_and_mount_syscalls_are_refused_in_a_run() {
    if !privileged("namespace_and_mount_syscalls_are_refused_in_a_run") {
        return;
    }
    let (r, marker, before) = setup();
    // setns to the container's own namespaces is as far as /proc/1/ns reaches
    // from inside; it needs CAP_SYS_ADMIN all the same.
    let script = format!(
        "unshare -U true; echo userns=$?; unshare -m true; echo mntns=$?; \
         unshare -n true; echo netns=$?; mount -t tmpfs tmpfs /mnt; echo mount=$?; \
         mount --bind / /mnt; echo bind=$?; \
         nsenter --mount=/proc/1/ns/mnt true; echo setns-mnt=$?; \
         nsenter --user=/proc/1/ns/user true; echo setns-user=$?; \
         nsenter --net=/proc/1/ns/net true; echo setns-net=$?; \
         ls {m} 2>/dev/null; echo marker=$?",
        m = marker.path().display()
    );
    let (code, out, err) = run_script(&r, &[], &script);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "userns=1",
            "mntns=1",
            "netns=1",
            "mount=1",
            "bind=1",
            "setns-mnt=1",
            "setns-user=1",
            "setns-net=1",
            "marker=1"
        ],
        "{err}"
    );
    for want in ["unshare(0x10000000): Operation not permitted", "unshare(0x20000): Operation not permitted"]
    {
        assert!(err.contains(want), "{want}: {err}");
    }
    assert!(err.contains("can't reassociate to namespace 'mnt': Operation not permitted"), "{err}");
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "namespace and mount syscalls");
    r.assert_no_leftovers();
}

#[test]
fn the_host_kernel_settings_are_read_only_in_a_run() {
    if !privileged("the_host_kernel_settings_are_read_only_in_a_run") {
        return;
    }
    let (r, marker, before) = setup();
    let sysctl = |name: &str| std::fs::read_to_string(format!("/proc/sys/kernel/{name}")).unwrap();
    let (panic, printk) = (sysctl("panic"), sysctl("printk"));
    // Each write puts back the value read, so that if a write went through the
    // host would still be as it was; `h` only prints sysrq's help, and 4 in
    // drop_caches only silences its log line.
    let script = "for k in panic printk core_pattern; do v=$(cat /proc/sys/kernel/$k); \
                  echo \"$v\" > /proc/sys/kernel/$k; echo $k=$?; done; \
                  echo h > /proc/sysrq-trigger; echo sysrq=$?; \
                  echo 4 > /proc/sys/vm/drop_caches; echo drop_caches=$?";
    let (code, out, err) = run_script(&r, &[], script);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["panic=1", "printk=1", "core_pattern=1", "sysrq=1", "drop_caches=1"],
        "{err}"
    );
    assert!(err.contains("can't create /proc/sys/kernel/panic: Read-only file system"), "{err}");
    assert!(err.contains("can't create /proc/sys/vm/drop_caches: Read-only file system"), "{err}");
    assert!(err.contains("/proc/sysrq-trigger"), "{err}");
    assert_eq!((sysctl("panic"), sysctl("printk")), (panic, printk));
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "writing /proc/sys and sysrq-trigger");
    r.assert_no_leftovers();
}

#[test]
fn a_disk_device_cannot_be_made_or_opened_in_a_run() {
    if !privileged("a_disk_device_cannot_be_made_or_opened_in_a_run") {
        return;
    }
    let (r, marker, before) = setup();
    // With CAP_MKNOD too: the device cgroup, not the capability, is the wall.
    let script = "mknod /tmp/disk b 8 0; echo mknod=$?; head -c1 /tmp/disk >/dev/null; echo open=$?; \
                  mknod /tmp/mem c 1 1; echo mknod-mem=$?";
    for opts in [&[][..], &["--cap-add", "MKNOD"]] {
        let (code, out, err) = run_script(&r, opts, script);
        assert_eq!(code, 0, "{opts:?}: {err}");
        assert_eq!(out, "mknod=1\nopen=1\nmknod-mem=1\n", "{opts:?}: {err}");
        assert!(err.contains("mknod: /tmp/disk: Operation not permitted"), "{opts:?}: {err}");
    }
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "mknod of a disk");
    r.assert_no_leftovers();
}

/// The attacker's half of CVE-2019-5736, from inside: write to every
/// /proc/<pid>/exe the container can see, for `secs` seconds, printing each
/// success.
const EXE_WRITER: &str = "end=$(( $(date +%s) + 3 )); while [ $(date +%s) -lt $end ]; do \
    for p in /proc/[0-9]*; do [ $p = /proc/$$ ] && continue; \
    (echo pwned >> $p/exe) 2>/dev/null && echo WROTE $p; done; done; echo done";

/// CVE-2019-5736 end to end: the container's /evil is `#!/proc/self/exe`, so
/// a runtime that execs it in the container runs its own binary there, which
/// the container then writes through /proc/<pid>/exe. Here `exprun exec` of
/// /evil is refused, and the container's writer, racing it, never opens the
/// runtime's binary; a container whose command is /evil (exec'd through the
/// exec trampoline, which is then all /proc/self/exe can be) fails to start
/// it: a copy of exprun (the runtime under attack) keeps its digest.
#[test]
fn the_runtime_binary_is_unchanged_after_a_proc_self_exe_attack() {
    let Some(s) = shim("the_runtime_binary_is_unchanged_after_a_proc_self_exe_attack") else { return };
    let marker = Marker::new();
    let work = s.work.path();
    let copy = work.join("exprun-victim");
    std::fs::copy(exprun_bin(), &copy).unwrap();
    let digest = |p: &Path| hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()));
    let was = digest(&copy);
    let b = bundle(work, &["sh", "-c", EXE_WRITER]);
    let evil = b.join("rootfs/evil");
    std::fs::write(&evil, "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(&evil, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let before = Snapshot::take(&marker, &[s.r.path()]);

    let runtime = |args: &[&str]| {
        let mut c = Command::new(&copy);
        c.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").arg("--root").arg(s.r.path()).args(args);
        c.stdin(Stdio::null());
        c
    };
    let run = runtime(&["run", "-b", b.to_str().unwrap(), "victim"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    for _ in 0..5 {
        let out = runtime(&["exec", "victim", "/evil"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "exec of a #!/proc/self/exe program: {err}");
        assert!(err.contains("cannot execute /evil"), "{err}");
    }
    let out = run.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout, "done\n", "the container wrote through some /proc/<pid>/exe");
    let config = b.join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["process"]["args"] = serde_json::json!(["/evil"]);
    std::fs::write(&config, serde_json::to_vec(&c).unwrap()).unwrap();
    let out = runtime(&["--debug", "run", "-b", b.to_str().unwrap(), "evil"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("container processes exec through a sealed exec trampoline"), "{err}");
    // This kernel refuses the exec (127); one that runs the trampoline again
    // sees it exit 126, without init's arguments.
    assert!(matches!(out.status.code(), Some(126 | 127)), "{err}");
    assert_eq!(digest(&copy), was, "the runtime's binary changed");
    Snapshot::take(&marker, &[s.r.path()]).assert_same_as(&before, "#!/proc/self/exe");
    s.r.assert_no_leftovers();
}

/// CVE-2024-21626 class: the caller leaks descriptors (a directory of the
/// host and a file opened for appending) into exprun. None reaches the
/// container, and a working directory through /proc/self/fd is refused.
#[test]
fn descriptors_leaked_by_the_caller_do_not_reach_the_container() {
    if !privileged("descriptors_leaked_by_the_caller_do_not_reach_the_container") {
        return;
    }
    let (r, marker, before) = setup();
    let leak = |args: &[&str]| {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("exec 7<\"$1\" 8>>\"$2\"; shift 2; exec \"$@\"")
            .arg("sh")
            .arg(marker.path())
            .arg(marker.path().join("secret"))
            .arg(exprun_bin())
            .arg("--root")
            .arg(r.path())
            .arg("run")
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null());
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // `ls` holds 3 itself, for the directory it lists.
    let script = "ls /proc/self/fd | tr '\\n' ' '; echo; echo pwned >&8; echo fd8=$?; ls /proc/self/fd/7/ >/dev/null 2>&1; echo fd7=$?";
    let (code, out, err) = leak(&["busybox:latest", "sh", "-c", script]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "0 1 2 3 \nfd8=1\nfd7=1\n", "{err}");
    for n in ["3", "7", "8"] {
        let dir = format!("/proc/self/fd/{n}");
        let (code, _, err) = leak(&["-w", &dir, "busybox:latest", "pwd"]);
        assert_eq!(code, Some(125), "-w {dir}: {err}");
        assert!(err.contains(&format!("resolving {dir} in the container")), "-w {dir}: {err}");
    }
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "leaked descriptors");
    r.assert_no_leftovers();
}

/// CVE-2021-30465 class, with the marker as the target: a bundle's rootfs has
/// symlinks to the marker (absolute, and climbing with `..`), and its config
/// mounts a tmpfs and a bind through them. Either the mount lands inside the
/// root or the run is refused naming the destination; the marker never
/// changes.
#[test]
fn a_mount_destination_symlinked_to_the_host_never_reaches_it() {
    let Some(s) = shim("a_mount_destination_symlinked_to_the_host_never_reaches_it") else { return };
    let marker = Marker::new();
    let work = s.work.path();
    let b = bundle(work, &["sh", "-c", "touch /abs/sub/pwned /rel/sub/pwned; ls /abs/sub; ls /rel/sub"]);
    let rootfs = b.join("rootfs");
    let m = marker.path().display().to_string();
    std::os::unix::fs::symlink(&m, rootfs.join("abs")).unwrap();
    std::os::unix::fs::symlink(format!("{}{m}", "/..".repeat(16)), rootfs.join("rel")).unwrap();
    let src = work.join("src");
    std::fs::create_dir(&src).unwrap();
    let cfg_path = b.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg["mounts"].as_array_mut().unwrap().extend([
        serde_json::json!({"destination": "/abs/sub", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}),
        serde_json::json!({"destination": "/rel/sub", "type": "bind", "source": src, "options": ["rbind"]}),
    ]);
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let log = work.join("log.json");
    let before = Snapshot::take(&marker, &[s.r.path()]);

    // The targets do not exist inside the root: refused, not followed out.
    let (code, _, err) = oci(&s.r, &log, &["run", "-b", b.to_str().unwrap(), "mount-escape"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("resolving /abs in the container: No such file or directory"), "{err}");
    Snapshot::take(&marker, &[s.r.path()]).assert_same_as(&before, "mount through a symlink (refused)");

    // They exist inside the root: both mounts land there.
    let inside = rootfs.join(marker.path().strip_prefix("/").unwrap()).join("sub");
    std::fs::create_dir_all(&inside).unwrap();
    let (code, out, err) = oci(&s.r, &log, &["run", "-b", b.to_str().unwrap(), "mount-inside"]);
    assert_eq!((code, out.as_str()), (0, "pwned\npwned\n"), "{err}");
    assert_eq!(std::fs::read_dir(&src).unwrap().count(), 1, "the bind mount is the source dir");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&m), "mounted on the host: {mounts}");
    Snapshot::take(&marker, &[s.r.path()]).assert_same_as(&before, "mount through a symlink (inside)");
    s.r.assert_no_leftovers();
}

#[test]
fn user_ids_that_do_not_parse_or_resolve_are_refused_by_name() {
    if !privileged("user_ids_that_do_not_parse_or_resolve_are_refused_by_name") {
        return;
    }
    let (r, marker, before) = setup();
    for (user, want) in [
        ("-1", "user \"-1\": no user \"-1\" in the image's /etc/passwd; give a numeric uid instead"),
        ("99999999999", "user \"99999999999\": no user \"99999999999\""),
        ("0:999999999999", "user \"0:999999999999\": no group \"999999999999\" in the image's /etc/group"),
        ("0:-1", "no group \"-1\""),
    ] {
        let flag = format!("--user={user}");
        let (code, out, err) = run_script(&r, &[&flag], "id");
        assert_eq!((code, out.as_str()), (125, ""), "{flag}: {err}");
        assert!(err.contains(want), "{flag}: {err}");
    }
    assert!(r.records().is_empty(), "a refused run is not recorded");
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "bad user ids");
    r.assert_no_leftovers();
}

/// uid and gid 4294967295 are `(uid_t)-1`, which setresuid(2) and setresgid(2)
/// read as "leave unchanged": asked to run as that id, the command ran as root.
#[test]
fn the_id_4294967295_is_refused_not_run_as_root() {
    let Some(s) = shim("the_id_4294967295_is_refused_not_run_as_root") else { return };
    let r = TestRoot::with_busybox();
    for user in ["4294967295", "4294967295:4294967295", "1000:4294967295"] {
        let flag = format!("--user={user}");
        let (code, out, err) = run_script(&r, &[&flag], "id -u; id -g");
        assert_eq!((code, out.as_str()), (125, ""), "{flag} ran as {out:?}: {err}");
        assert!(err.contains("4294967295"), "{flag}: {err}");
    }
    let work = s.work.path();
    let b = bundle(work, &["sh", "-c", "id -u; id -g"]);
    let log = work.join("log.json");
    let cfg_path = b.join("config.json");
    for (i, (uid, gid)) in [(4294967295u32, 0u32), (0, 4294967295)].into_iter().enumerate() {
        let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
        cfg["process"]["user"] = serde_json::json!({"uid": uid, "gid": gid});
        std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
        let (code, out, err) = oci(&s.r, &log, &["run", "-b", b.to_str().unwrap(), &format!("ids-{i}")]);
        assert_eq!((code, out.as_str()), (125, ""), "{uid}:{gid} ran as {out:?}: {err}");
        assert!(err.contains("4294967295"), "{err}");
    }
    r.assert_no_leftovers();
    s.r.assert_no_leftovers();
}

#[test]
fn a_fork_bomb_is_contained_by_the_pids_limit() {
    if !privileged("a_fork_bomb_is_contained_by_the_pids_limit") {
        return;
    }
    let (r, marker, before) = setup();
    // The bomb runs in a subshell; init then execs, needing no fork of its own,
    // and its exit ends the pid namespace and the bomb with it.
    let t0 = std::time::Instant::now();
    let (code, _, err) =
        run_script(&r, &["--pids-limit", "50"], "(b() { b | b & }; b) 2>/dev/null; exec sleep 2");
    assert_eq!(code, 0, "{err}");
    assert!(t0.elapsed().as_secs() < 20, "the run outlived its command");
    assert!(err.contains("fork(s) failed at the process limit (--pids-limit 50)"), "{err}");
    let rec = r.last_record();
    assert!(rec["usage"]["pids_limit_hits"].as_u64().unwrap() > 0, "{rec}");
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "fork bomb");
    r.assert_no_leftovers();
}

#[test]
fn a_memory_bomb_is_contained_by_the_memory_limit() {
    if !privileged("a_memory_bomb_is_contained_by_the_memory_limit") {
        return;
    }
    let (r, marker, before) = setup();
    // `tail -c` keeps what it reads: 300 MiB against a 64 MiB limit.
    let (code, out, err) = run_script(
        &r,
        &["--memory", "64m"],
        "head -c 300m /dev/zero | tail -c 300m >/dev/null; echo survived",
    );
    assert_eq!((code, out.as_str()), (0, "survived\n"), "{err}");
    assert!(
        err.contains("the container ran out of memory")
            && err.contains("at the memory limit of 64 MiB; raise --memory"),
        "{err}"
    );
    let rec = r.last_record();
    assert_eq!(rec["exit"]["oom_killed"], true, "{rec}");
    assert!(rec["usage"]["oom_kills"].as_u64().unwrap() >= 1, "{rec}");
    assert!(rec["usage"]["peak_memory_bytes"].as_u64().unwrap() <= 64 << 20, "{rec}");
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "memory bomb");
    r.assert_no_leftovers();
}
