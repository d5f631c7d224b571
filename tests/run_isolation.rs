#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `exprun run` as root on the fixture image: what the container sees.

mod common;

use common::{privileged, TestRoot};

/// Run `sh -c SCRIPT` in the fixture and return its stdout; the run must succeed.
fn sh(r: &TestRoot, extra: &[&str], script: &str) -> String {
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["busybox:latest", "--", "sh", "-c", script]);
    let (code, out, err) = r.run(&args);
    assert_eq!(code, 0, "run failed: {err}");
    out
}

#[test]
fn pid_hostname_user_and_environment_are_the_containers_own() {
    if !privileged("pid_hostname_user_and_environment_are_the_containers_own") {
        return;
    }
    let r = TestRoot::with_busybox();
    let out = sh(&r, &[], "echo pid=$$; hostname; id -u; env | sort");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pid=1", "{out}");
    assert_eq!(lines[1], "exprun", "default hostname: {out}");
    assert_eq!(lines[2], "0");
    assert!(!out.contains("EXPRUN_TEST_HOST_MARKER"), "host environment leaked: {out}");
    assert!(out.contains("FIXTURE=busybox"), "image Env missing: {out}");
    assert!(out.contains("HOME=/root"), "{out}");

    let out = sh(
        &r,
        &[
            "--hostname",
            "lab1",
            "-e",
            "A=1",
            "-e",
            "EXPRUN_TEST_HOST_MARKER",
            "-u",
            "researcher",
            "-w",
            "/work/dir",
        ],
        "hostname; id; pwd; echo $A $EXPRUN_TEST_HOST_MARKER $HOME",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "lab1");
    assert!(
        lines[1].starts_with("uid=1000(researcher) gid=1000(researcher) groups=1000(researcher),2000(extra)"),
        "{out}"
    );
    assert_eq!(lines[2], "/work/dir", "the working directory is created");
    assert_eq!(
        lines[3], "1 host-secret-value /home/researcher",
        "a named host variable is passed, only that one"
    );
    r.assert_no_leftovers();
}

#[test]
fn image_layers_are_merged_with_whiteouts_and_the_root_is_writable_but_private() {
    if !privileged("image_layers_are_merged_with_whiteouts_and_the_root_is_writable_but_private") {
        return;
    }
    let r = TestRoot::with_busybox();
    let out = sh(&r, &[], "ls /opt/data; ls /etc; echo x > /newfile && cat /newfile");
    assert!(out.contains("new"), "{out}");
    assert!(!out.contains("old-a") && !out.contains("old-b"), "opaque dir not honoured: {out}");
    assert!(!out.contains("removed-by-layer2"), "whiteout not honoured: {out}");
    assert!(out.trim_end().ends_with('x'), "{out}");
    // The write went to the run's private layer, not to the image.
    let again = sh(&r, &[], "ls /newfile 2>&1 || true");
    assert!(again.contains("No such file"), "{again}");
    r.assert_no_leftovers();
}

#[test]
fn mounts_dev_and_sys_are_the_expected_minimal_set() {
    if !privileged("mounts_dev_and_sys_are_the_expected_minimal_set") {
        return;
    }
    let r = TestRoot::with_busybox();
    let out = sh(&r, &[], "cat /proc/self/mountinfo; echo ---; ls /dev; echo ---; touch /sys/x 2>&1; echo ---; echo x 2>&1 >/proc/sys/kernel/hostname; cat /proc/keys | wc -c; true");
    let parts: Vec<&str> = out.split("---\n").collect();
    let mounts = parts[0];
    for (dest, fstype) in [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
    ] {
        assert!(
            mounts.lines().any(|l| l.split(' ').nth(4) == Some(dest) && l.contains(&format!(" - {fstype} "))),
            "{dest} ({fstype}) missing:\n{mounts}"
        );
    }
    let root_line = mounts.lines().find(|l| l.split(' ').nth(4) == Some("/")).unwrap();
    assert!(root_line.contains(" - overlay "), "root is not an overlay: {root_line}");
    assert!(
        mounts.lines().any(|l| l.contains(" /sys ") && l.contains(" ro,")),
        "/sys not read-only:\n{mounts}"
    );
    let devs: Vec<&str> = parts[1].split_whitespace().collect();
    for d in ["null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "fd", "ptmx"] {
        assert!(devs.contains(&d), "/dev/{d} missing: {devs:?}");
    }
    assert!(
        !devs.iter().any(|d| d.starts_with("sd") || d.starts_with("vd") || *d == "mem"),
        "host devices visible: {devs:?}"
    );
    assert!(parts[2].contains("Read-only file system"), "{}", parts[2]);
    let last: Vec<&str> = parts[3].lines().collect();
    assert!(last[0].contains("Read-only file system"), "/proc/sys writable: {}", parts[3]);
    assert_eq!(last[1].trim(), "0", "/proc/keys is not masked: {}", parts[3]);
    r.assert_no_leftovers();
}

#[test]
fn the_container_sees_its_own_cgroup_and_limits_read_only() {
    if !privileged("the_container_sees_its_own_cgroup_and_limits_read_only") {
        return;
    }
    let r = TestRoot::with_busybox();
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();
    let script = if v1 {
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; grep memory /proc/self/cgroup; mkdir /sys/fs/cgroup/memory/x 2>&1; true"
    } else {
        "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; cat /proc/self/cgroup; mkdir /sys/fs/cgroup/x 2>&1; true"
    };
    let out = sh(&r, &["--memory", "100m", "--pids-limit", "50"], script);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "104857600", "{out}");
    assert_eq!(lines[1], "50", "{out}");
    assert!(lines[2].ends_with(":/"), "the cgroup namespace is not rooted at the run's cgroup: {out}");
    assert!(lines[3].contains("Read-only file system"), "{out}");
    r.assert_no_leftovers();
}

#[test]
fn network_has_only_loopback_and_host_mode_shares_the_hosts() {
    if !privileged("network_has_only_loopback_and_host_mode_shares_the_hosts") {
        return;
    }
    let r = TestRoot::with_busybox();
    let out = sh(&r, &[], "ip -o link; ping -c1 -W1 127.0.0.1 >/dev/null && echo lo-works");
    let links: Vec<&str> = out.lines().filter(|l| l.contains(": <")).collect();
    assert_eq!(links.len(), 1, "{out}");
    assert!(links[0].contains(" lo: ") && links[0].contains("UP"), "{out}");
    assert!(out.contains("lo-works"), "{out}");
    let host_links = std::fs::read_to_string("/proc/net/dev").unwrap().lines().count();
    let out = sh(&r, &["--network", "host"], "cat /proc/net/dev | wc -l");
    assert_eq!(out.trim().parse::<usize>().unwrap(), host_links, "--network host");
    r.assert_no_leftovers();
}

#[test]
fn capabilities_are_the_default_set_and_no_new_privs_is_on() {
    if !privileged("capabilities_are_the_default_set_and_no_new_privs_is_on") {
        return;
    }
    let r = TestRoot::with_busybox();
    let status = sh(&r, &[], "cat /proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap()
    };
    // moby's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID
    // SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
    let expected: u64 = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31].iter().map(|b| 1u64 << b).sum();
    assert_eq!(field("CapBnd:"), expected, "{status}");
    assert_eq!(field("CapEff:"), expected);
    assert_eq!(field("CapInh:"), 0);
    assert_eq!(field("CapAmb:"), 0);
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2\n"), "the default seccomp profile is a filter: {status}");

    let status = sh(
        &r,
        &["--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE", "-u", "1000"],
        "grep Cap /proc/self/status",
    );
    assert!(status.contains("CapBnd:\t0000000000000400"), "{status}");
    assert!(status.contains("CapEff:\t0000000000000000"), "a non-root user has no effective caps: {status}");
    r.assert_no_leftovers();
}

#[test]
fn read_only_root_and_tmpfs_and_devices_cannot_be_made() {
    if !privileged("read_only_root_and_tmpfs_and_devices_cannot_be_made") {
        return;
    }
    let r = TestRoot::with_busybox();
    let out = sh(
        &r,
        &["--read-only", "--tmpfs", "/scratch:size=1m"],
        "touch /x 2>&1; echo hi > /scratch/f && cat /scratch/f; cat /etc/hostname",
    );
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("hi"), "{out}");
    assert!(out.contains("exprun"), "{out}");
    // CAP_MKNOD is in the default set (as with runc), but the devices cgroup
    // allows only the bound nodes and pseudo-terminals, and every writable mount
    // is nodev: a disk's node can neither be made nor opened.
    let out = sh(
        &r,
        &[],
        "mknod /tmp/disk b 8 0 2>&1; head -c1 /tmp/disk >/dev/null 2>&1 && echo OPENED || echo refused; \
         head -c1 /dev/zero | wc -c",
    );
    assert!(out.contains("mknod: /tmp/disk: Operation not permitted"), "{out}");
    assert!(
        out.contains("refused") && !out.contains("OPENED"),
        "a device node made in the container worked: {out}"
    );
    assert!(out.trim_end().ends_with('1'), "the bound /dev/zero must stay usable: {out}");
    r.assert_no_leftovers();
}

#[test]
fn terminal_and_stdin() {
    if !privileged("terminal_and_stdin") {
        return;
    }
    let r = TestRoot::with_busybox();
    let out = sh(&r, &["-t"], "[ -t 0 ] && [ -t 1 ] && echo tty-ok; tty; ls -l /dev/console | cut -c1");
    assert!(out.contains("tty-ok"), "{out}");
    assert!(out.contains("/dev/pts/") || out.contains("/dev/console"), "{out}");
    // -i: stdin reaches the command; without it the command reads /dev/null.
    let mut child = r
        .command(&["run", "-i", "busybox:latest", "--", "sh", "-c", "cat | wc -c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&[b'x'; 100_000]).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "100000");
    let out = sh(&r, &[], "cat | wc -c");
    assert_eq!(out.trim(), "0");
    r.assert_no_leftovers();
}

#[test]
fn image_defaults_env_files_and_entrypoint_overrides() {
    if !privileged("image_defaults_env_files_and_entrypoint_overrides") {
        return;
    }
    let r = TestRoot::with_busybox();
    // No command: the image's Cmd runs.
    let (code, out, err) = r.run(&["busybox:latest"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "hello from the exprun fixture\n");
    // --env-file, then -e overrides it; a bare name takes the caller's value.
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("exp.env");
    std::fs::write(&env_file, "# experiment\nLR=0.1\nEPOCHS=3\nEXPRUN_TEST_HOST_MARKER\n").unwrap();
    let out = sh(
        &r,
        &["--env-file", env_file.to_str().unwrap(), "-e", "EPOCHS=5"],
        "echo $LR $EPOCHS $EXPRUN_TEST_HOST_MARKER",
    );
    assert_eq!(out, "0.1 5 host-secret-value\n");
    let bad = dir.path().join("bad.env");
    std::fs::write(&bad, "GOOD=1\nBAD NAME=2\n").unwrap();
    let (code, _, err) = r.run(&["--env-file", bad.to_str().unwrap(), "busybox:latest", "--", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("bad.env") && err.contains("line 2"), "{err}");
    // --entrypoint replaces the image's; a JSON array gives several words.
    let (code, out, err) =
        r.run(&["--entrypoint", r#"["/bin/echo","from","entrypoint"]"#, "busybox:latest", "--", "arg"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "from entrypoint arg\n");
    r.assert_no_leftovers();
}
