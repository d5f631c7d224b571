#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Rootless runs: exprun run by an unprivileged user that the test makes, with
//! the image store and records under that user's XDG_DATA_HOME.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::rootless::{Home, USER};
use common::{exprun_bin, fixture_dir, privileged};

#[test]
fn an_unprivileged_user_imports_and_runs_in_a_user_namespace() {
    if !privileged("an_unprivileged_user_imports_and_runs_in_a_user_namespace (needs root to make the user)")
    {
        return;
    }
    let h = Home::new();
    let fixture = fixture_dir().join("busybox-oci");
    let (code, _, err) =
        h.exprun(&["image", "import", "--name", "busybox:latest", fixture.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    // Everything the import made belongs to the user.
    let meta = std::fs::metadata(h.root().join("store")).unwrap();
    assert_eq!(meta.uid(), h.uid);

    // Where no cgroup can be had (this user has no delegated cgroup2 subtree and
    // no systemd user manager), a run without limits runs, and one line on
    // stderr says why it has no cgroup; its record says usage is unavailable.
    let (code, stdout, err) = h.exprun(&["run", "busybox:latest", "echo", "ran"]);
    assert_eq!((code, stdout.as_str()), (0, "ran\n"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line of note: {err}");
    assert!(
        err.contains("running without a cgroup")
            && err.contains(&format!("no cgroup2 subtree is delegated to uid {}", h.uid))
            && err.contains(&format!("no systemd user manager (/run/user/{}/systemd/private", h.uid))
            && err.contains("--no-limits"),
        "{err}"
    );
    let (code, json, err) = h.exprun(&["runs", "show", "--latest", "--json"]);
    assert_eq!(code, 0, "{err}");
    let rec: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rec["cgroup"]["version"], "none");
    let why = rec["usage"]["unavailable"].as_str().unwrap_or_else(|| panic!("{:#}", rec["usage"]));
    assert!(why.starts_with("no cgroup can be had: no cgroup2 subtree is delegated"), "{why}");
    let (code, shown, err) = h.exprun(&["runs", "show", "--latest"]);
    assert_eq!(code, 0, "{err}");
    assert!(shown.contains("usage:      unavailable: no cgroup can be had"), "{shown}");

    // A run that asks for limits is refused, each limit named, with what to do.
    let (code, _, err) = h.exprun(&["run", "--memory", "64m", "busybox:latest", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("asks for --memory, but") && err.contains("Run as root"), "{err}");
    let (code, _, err) =
        h.exprun(&["run", "--memory", "256m", "--pids-limit", "50", "--cpus", "1", "busybox:latest", "true"]);
    assert_eq!(code, 125);
    assert!(
        err.contains("asks for --memory, --cpus, --pids-limit, but")
            && err.contains("no cgroup can be had")
            && err.contains("systemd user manager"),
        "{err}"
    );
    // --no-limits says running without a cgroup is meant: no note. A ulimit is
    // not a cgroup limit: it applies without one.
    let (code, stdout, err) = h.exprun(&[
        "run",
        "--no-limits",
        "--ulimit",
        "nofile=64:64",
        "busybox:latest",
        "sh",
        "-c",
        "ulimit -n",
    ]);
    assert_eq!((code, stdout.as_str(), err.as_str()), (0, "64\n", ""), "{err}");

    let out = h.path().join("out");
    let output = format!("{}:/out", out.display());
    let (code, stdout, err) = h.exprun(&[
        "run",
        "--no-limits",
        "--output",
        &output,
        "busybox:latest",
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map | tr -s ' '; ls /opt/data; grep Seccomp: /proc/self/status; \
         echo 42 > /out/result; touch /proc/sys/kernel/x 2>/dev/null || echo proc-sys-ro; exit 3",
    ]);
    assert_eq!(code, 3, "{err}");
    let uid_map = format!(" 0 {} 1", h.uid);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["0", uid_map.as_str(), "new", "Seccomp:\t2", "proc-sys-ro"],
        "root inside, the caller outside; the image's opaque directory hides the lower layer"
    );
    assert_eq!(std::fs::read_to_string(out.join("result")).unwrap(), "42\n");
    assert_eq!(std::fs::metadata(out.join("result")).unwrap().uid(), h.uid, "outputs belong to the caller");

    // The record says what the run was, and verify works as the user too.
    let (code, json, err) = h.exprun(&["runs", "show", "--latest", "--json"]);
    assert_eq!(code, 0, "{err}");
    let rec: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rec["cgroup"]["version"], "none");
    assert_eq!(rec["spec"]["linux"]["uidMappings"][0]["hostID"], h.uid);
    assert_eq!(rec["spec"]["linux"]["gidMappings"][0]["hostID"], h.gid);
    assert_eq!(rec["exit"]["code"], 3);
    let (code, stdout, err) = h.exprun(&["verify", "--latest"]);
    assert_eq!(code, 0, "{stdout} {err}");
    let (code, stdout, err) = h.exprun(&["verify", "--latest", "--vary", "user,tz", "--json"]);
    assert_eq!(code, 0, "{stdout} {err}");
    let verdict: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(verdict["not_applicable"][0].as_str().unwrap().starts_with("user:"), "{verdict:#}");

    // Only root exists inside: another user is refused before anything starts.
    let (code, _, err) = h.exprun(&["run", "--no-limits", "-u", "1000", "busybox:latest", "id"]);
    assert_eq!(code, 125);
    assert!(
        err.contains("uid 1000:1000 does not exist in this rootless container")
            && err.contains("/etc/subuid"),
        "{err}"
    );

    // With subordinate ids (newuidmap and newgidmap write the maps), the image's
    // other users exist too.
    for f in ["/etc/subuid", "/etc/subgid"] {
        let mut text = std::fs::read_to_string(f).unwrap_or_default();
        text.push_str(&format!("{USER}:3000000:65536\n"));
        std::fs::write(f, text).unwrap();
    }
    let (code, stdout, err) = h.exprun(&[
        "run",
        "--no-limits",
        "-u",
        "1000",
        "busybox:latest",
        "sh",
        "-c",
        "id -u; tr -s ' ' < /proc/self/uid_map; touch /tmp/f; stat -c %u /tmp/f",
    ]);
    assert_eq!(code, 0, "{err}");
    let own = format!(" 0 {} 1", h.uid);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["1000", own.as_str(), " 1 3000000 65536", "1000"]);

    // A subordinate range that holds the user's own ids: the map's two lines
    // overlap on the host, which the kernel would refuse to newuidmap. The run
    // is refused before anything starts, naming the files to fix, and leaves
    // nothing.
    let granted: Vec<String> =
        ["/etc/subuid", "/etc/subgid"].iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    for (f, own) in [("/etc/subuid", h.uid), ("/etc/subgid", h.gid)] {
        let mut text = std::fs::read_to_string(f).unwrap().replace(&format!("{USER}:3000000:65536\n"), "");
        text.push_str(&format!("{USER}:{}:10\n", own.saturating_sub(5)));
        std::fs::write(f, text).unwrap();
    }
    let (code, stdout, err) = h.exprun(&["run", "--no-limits", "busybox:latest", "echo", "ran"]);
    assert_eq!((code, stdout.as_str()), (125, ""), "{err}");
    assert!(
        err.contains(&format!("[1] (host ids {}-{}) overlaps [0]", h.uid - 5, h.uid + 4))
            && err.contains("/etc/subuid and /etc/subgid")
            && err.contains(&format!("its own id ({})", h.uid)),
        "{err}"
    );
    h.assert_no_leftovers();
    for (f, text) in ["/etc/subuid", "/etc/subgid"].iter().zip(&granted) {
        std::fs::write(f, text).unwrap();
    }

    // With subordinate ids the image commands run in a user namespace that maps
    // them: a new import keeps the files' owners, and the caller can remove them.
    h.remove_image();
    let (code, _, err) =
        h.exprun(&["image", "import", "--name", "busybox:latest", fixture.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let homes: Vec<PathBuf> = std::fs::read_dir(h.root().join("store/layers"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("home/researcher"))
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(homes.len(), 1);
    assert_eq!(
        std::fs::metadata(&homes[0]).unwrap().uid(),
        3000000 + 999,
        "uid 1000 inside is subuid start + 999"
    );
    let (code, stdout, err) = h.exprun(&[
        "run",
        "--no-limits",
        "-u",
        "1000",
        "busybox:latest",
        "sh",
        "-c",
        "touch /home/researcher/x && echo wrote",
    ]);
    assert_eq!((code, stdout.as_str()), (0, "wrote\n"), "{err}");
    h.remove_image();
    let left: Vec<_> = std::fs::read_dir(h.root().join("store/layers")).unwrap().flatten().collect();
    assert!(left.is_empty(), "layers the caller could not remove: {left:?}");

    // A pull as the user, from a registry on this host, keeps the owners too.
    if common::registry::available("an_unprivileged_user_imports_and_runs_in_a_user_namespace (pull)") {
        let reg = common::registry::Registry::start(None);
        let target = format!("{}/fixtures/busybox:rootless", reg.host());
        let src = common::TestRoot::with_busybox();
        assert!(src.exprun(&["push", "-q", "busybox:latest", &target], None).status.success());
        // Who owns the image's /home/researcher on the host.
        let owners = || -> Vec<u32> {
            std::fs::read_dir(h.root().join("store/layers"))
                .unwrap()
                .flatten()
                .map(|e| e.path().join("home/researcher"))
                .filter(|p| p.is_dir())
                .map(|p| std::fs::metadata(p).unwrap().uid())
                .collect()
        };
        let (code, _, err) = h.exprun(&["pull", "-q", &target]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(owners(), [3000000 + 999]);
        let (code, stdout, err) = h.exprun(&["run", "--no-limits", &target, "echo", "pulled"]);
        assert_eq!((code, stdout.as_str()), (0, "pulled\n"), "{err}");
        let rm = || {
            for args in [&["image", "rm", target.as_str()][..], &["image", "gc"]] {
                let (code, _, err) = h.exprun(args);
                assert_eq!(code, 0, "{args:?}: {err}");
            }
        };
        rm();
        // `run --pull missing` pulls the same way.
        let (code, stdout, err) =
            h.exprun(&["run", "--no-limits", "--pull", "missing", &target, "echo", "ran"]);
        assert_eq!((code, stdout.as_str()), (0, "ran\n"), "{err}");
        assert_eq!(owners(), [3000000 + 999]);
        rm();
    }

    // The caller's own copy of exprun (which a rootless container's root could
    // write, even with no write bit: it holds CAP_DAC_OVERRIDE over the
    // caller's files) is never what a container process runs (CVE-2019-5736):
    // the container's command is exec'd through the sealed exec trampoline,
    // or, where that cannot serve (here a profile that refuses execveat),
    // exprun runs from a read-only bind mount of itself whose read-only flag
    // the kernel has locked.
    let own = h.path().join("exprun");
    std::fs::copy(exprun_bin(), &own).unwrap();
    std::os::unix::fs::chown(&own, Some(h.uid), Some(h.gid)).unwrap();
    let (code, _, err) =
        h.exprun(&["image", "import", "--name", "busybox:latest", fixture.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let out = h
        .command(&own, &["--debug", "run", "--no-limits", "busybox:latest", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("container processes exec through a sealed exec trampoline"), "{err}");
    let no_execveat = h.path().join("no-execveat.json");
    std::fs::write(
        &no_execveat,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["execveat"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let seccomp = format!("seccomp={}", no_execveat.display());
    for mode in [0o755, 0o555] {
        std::fs::set_permissions(&own, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
        let mut run = h
            .command(
                &own,
                &["run", "--no-limits", "--security-opt", &seccomp, "busybox:latest", "sleep", "1"],
            )
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(500));
        // setpriv and env exec in place: the spawned pid is exprun's.
        let exe = format!("/proc/{}/exe", run.id());
        let on = std::fs::metadata(&exe).unwrap();
        let mount = nix::sys::statvfs::statvfs(exe.as_str()).unwrap();
        assert!(run.wait().unwrap().success());
        let own_meta = std::fs::metadata(&own).unwrap();
        assert_eq!(
            (on.dev(), on.ino()),
            (own_meta.dev(), own_meta.ino()),
            "mode {mode:o}: not the same file"
        );
        assert!(
            mount.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
            "mode {mode:o}: not read-only"
        );
    }
    // The record names the installed binary's digest, which the copy found in
    // the cache under the installed file, not under the copy.
    let (_, json, _) = h.exprun(&["runs", "show", "--latest", "--json"]);
    let rec: serde_json::Value = serde_json::from_str(&json).unwrap();
    let sha = Command::new("sha256sum").arg(&own).output().unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout).split(' ').next().unwrap().to_string();
    assert_eq!(rec["exprun"]["binary_digest"], format!("sha256:{sha}").as_str());
    let m = std::fs::metadata(&own).unwrap();
    let cached = std::fs::read_to_string(h.root().join("cache/exprun-binary-digest")).unwrap();
    assert!(cached.starts_with(&format!("{}:{}:", m.dev(), m.ino())), "{cached}");
    // Where no user namespace can be made (here under a seccomp filter like
    // Docker's default), the re-exec runs from a sealed memfd copy, and
    // --debug says why.
    let no_userns = h.path().join("no_userns");
    let cc = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&no_userns)
        .arg(common::repo().join("tests/no_userns.c"))
        .status()
        .expect("running cc");
    assert!(cc.success(), "cc -static no_userns.c failed: the test needs gcc and a static libc");
    let out = h
        .command(&no_userns, &[own.to_str().unwrap(), "--debug", "exec", "nope", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("running from a sealed memfd copy (no locked read-only bind mount: a helper in a new user namespace: Operation not permitted"),
        "{err}"
    );
    h.remove_image();
    h.assert_no_leftovers();
}
