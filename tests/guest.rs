#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The guest-kernel tests: boot a Debian 12 guest (its own 6.1 kernel, systemd
//! as pid 1, cgroup v2 unified) under qemu, give it this build's exprun and the
//! fixture image over a 9p share, run the case scripts of tests/guest/cases in
//! it, and fail when one fails. See tests/guest/README.md.
//!
//! The image is built once by tests/guest/build-image.sh and cached under
//! `$EXPRUN_GUEST_CACHE` (default `$XDG_CACHE_HOME/exprun-guest`, else
//! `~/.cache/exprun-guest`), in a directory named by the digest of what built
//! it. `EXPRUN_GUEST_ACCEL=kvm|tcg` skips the KVM probe. `EXPRUN_GUEST_CASES`
//! (comma-separated parts of case names, e.g. `00,10`) runs only the cases
//! whose names contain one of them; `EXPRUN_GUEST_LOGS=1` prints the output
//! of the cases that passed too (a failed case's is always printed).
//!
//! A case may run one of this build's integration-test binaries in the guest:
//! a line `# test-binary: NAME` in it puts `target/<profile>/deps/NAME-<hash>`
//! on the share as `tests/NAME`. `cargo test` builds every test binary before
//! running any; alone, `cargo test --test guest` does not, so build it too
//! (`cargo test --test guest --test NAME guest`).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The files whose contents make the image: a change to one rebuilds it.
const IMAGE_INPUTS: &[&str] = &["build-image.sh", "packages"];

fn guest_dir() -> PathBuf {
    common::repo().join("tests/guest")
}

/// Prints `SKIP: guest: <why>`; under `CI=true` fails instead.
fn skip(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("the guest-kernel tests cannot run here ({why}) and CI=true forbids skipping");
    }
    println!("SKIP: guest: {why}");
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn image_digest() -> String {
    let mut h = Sha256::new();
    for name in IMAGE_INPUTS {
        let bytes = std::fs::read(guest_dir().join(name)).unwrap();
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    hex::encode(h.finalize())
}

fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("EXPRUN_GUEST_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("exprun-guest")
}

/// The cached image for the current inputs, built when missing (older images
/// are removed then). Err: why it cannot be had.
fn image() -> Result<PathBuf, String> {
    let root = cache_root();
    let dir = root.join(image_digest());
    if dir.join("rootfs.img").exists() {
        println!("guest: cached image {}", dir.display());
        return Ok(dir);
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("building the guest image needs root".into());
    }
    for tool in ["mmdebstrap", "mke2fs"] {
        if !have(tool) {
            return Err(format!("{tool} is not installed (scripts/install-deps.sh installs it)"));
        }
    }
    std::fs::create_dir_all(&root).unwrap();
    // Builds whose test process died half-way.
    for e in std::fs::read_dir(&root).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("building-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let tmp = root.join(format!("building-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    println!("guest: building the image in {}", tmp.display());
    let start = Instant::now();
    let out = Command::new("bash")
        .arg(guest_dir().join("build-image.sh"))
        .arg(&tmp)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        panic!(
            "tests/guest/build-image.sh failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        // Another test process built the same image first.
        let _ = std::fs::remove_dir_all(&tmp);
        assert!(dir.join("rootfs.img").exists(), "{} -> {}: {e}", tmp.display(), dir.display());
    }
    println!("guest: built the image in {:.0} s", start.elapsed().as_secs_f64());
    // Images of older inputs (directories named by another digest) go.
    for e in std::fs::read_dir(&root).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let digest_name = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
        if digest_name && e.path() != dir {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    Ok(dir)
}

/// Waits for `child` until `limit`; kills it past that. Returns whether it
/// exited by itself.
fn wait_or_kill(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// KVM where a guest kernel boots under it, TCG otherwise: a kernel with no
/// root disk panics within seconds under a working KVM (and `-no-reboot` ends
/// qemu); under nested virtualisation that lacks support it hangs.
fn accel(image: &Path) -> &'static str {
    match std::env::var("EXPRUN_GUEST_ACCEL").as_deref() {
        Ok("kvm") => return "kvm",
        Ok("tcg") => return "tcg",
        _ => {}
    }
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return "tcg";
    }
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "kvm", "-cpu", "host", "-m", "256", "-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(image.join("vmlinuz"))
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let exited = wait_or_kill(&mut child, Duration::from_secs(20));
    let mut console = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut console);
    if exited && console.contains("Kernel panic") {
        "kvm"
    } else {
        println!("guest: a KVM guest did not boot within 20 s here; using TCG");
        "tcg"
    }
}

/// The 9p share: this build's exprun, the runner, the cases to run, the
/// test binaries they name, the fixtures, and `out/` for the results.
fn stage_share(dir: &Path, cases: &[String]) {
    std::fs::copy(common::exprun_bin(), dir.join("exprun")).unwrap();
    for f in ["run-cases.sh", "lib.sh"] {
        std::fs::copy(guest_dir().join(f), dir.join(f)).unwrap();
    }
    std::fs::create_dir(dir.join("cases")).unwrap();
    std::fs::create_dir(dir.join("tests")).unwrap();
    for name in cases {
        let file = format!("{name}.sh");
        let text = std::fs::read_to_string(guest_dir().join("cases").join(&file)).unwrap();
        std::fs::write(dir.join("cases").join(&file), &text).unwrap();
        for bin in text.lines().filter_map(|l| l.strip_prefix("# test-binary: ")) {
            let bin = bin.trim();
            let path = test_binary(bin).unwrap_or_else(|why| panic!("guest case {name}: {why}"));
            std::fs::copy(path, dir.join("tests").join(bin)).unwrap();
        }
        // `# share: PATH`: the repository's PATH, at repo/PATH on the share.
        for rel in text.lines().filter_map(|l| l.strip_prefix("# share: ")).map(str::trim) {
            let to = dir.join("repo").join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            let st = Command::new("cp").arg("-a").arg(common::repo().join(rel)).arg(&to).status().unwrap();
            assert!(st.success(), "guest case {name}: staging {rel} failed");
        }
        // `# share-bin: VAR NAME`: the file the environment variable VAR names, as NAME.
        for line in text.lines().filter_map(|l| l.strip_prefix("# share-bin: ")) {
            let (var, to) = line.trim().split_once(' ').expect("# share-bin: VAR NAME");
            let from = std::env::var_os(var)
                .unwrap_or_else(|| panic!("guest case {name} needs {var} set to the binary to give it"));
            std::fs::copy(&from, dir.join(to.trim()))
                .unwrap_or_else(|e| panic!("guest case {name}: {var}={from:?}: {e}"));
        }
    }
    let fixtures = common::fixture_dir();
    let st = Command::new("cp")
        .arg("-a")
        .arg(fixtures.join("busybox-oci"))
        .arg(fixtures.join("busybox-docker.tar"))
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success(), "staging the guest share failed");
    std::fs::create_dir(dir.join("out")).unwrap();
}

/// This build's integration-test binary `name` (`deps/NAME-<hash>` beside this
/// test's own binary; the newest where there are several), when it is newer
/// than its sources. Err: why there is none.
fn test_binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let build = format!("build it: cargo test --test guest --test {name} guest");
    let newest = std::fs::read_dir(deps)
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let hash = n.strip_prefix(&format!("{name}-")).unwrap_or_default();
            hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max();
    let Some((built, path)) = newest else {
        return Err(format!("no test binary {name} in {} ({build})", deps.display()));
    };
    let tests = common::repo().join("tests");
    let mut sources = vec![tests.join(format!("{name}.rs"))];
    for d in [tests.join(name), tests.join("common")] {
        sources.extend(std::fs::read_dir(d).into_iter().flatten().flatten().map(|e| e.path()));
    }
    for src in sources {
        let changed = std::fs::metadata(&src).and_then(|m| m.modified());
        if changed.is_ok_and(|t| t > built) {
            return Err(format!("{} is older than {} ({build})", path.display(), src.display()));
        }
    }
    Ok(path)
}

/// The cases to run: all but those marked `# opt-in` (a benchmark), or those
/// `EXPRUN_GUEST_CASES` selects.
fn case_names() -> Vec<String> {
    let filter = std::env::var("EXPRUN_GUEST_CASES").unwrap_or_default();
    let parts: Vec<&str> = filter.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    let opt_in = |n: &str| {
        let text =
            std::fs::read_to_string(guest_dir().join("cases").join(format!("{n}.sh"))).unwrap_or_default();
        text.lines().any(|l| l.trim() == "# opt-in")
    };
    let mut names: Vec<String> = std::fs::read_dir(guest_dir().join("cases"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".sh")).map(String::from))
        .filter(|n| if parts.is_empty() { !opt_in(n) } else { parts.iter().any(|p| n.contains(p)) })
        .collect();
    names.sort();
    assert!(!names.is_empty(), "EXPRUN_GUEST_CASES={filter} selects no case of tests/guest/cases");
    names
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn the_guest_cases_pass_under_systemd_on_cgroup_v2() {
    if !have("qemu-system-x86_64") {
        return skip("qemu-system-x86_64 is not installed (scripts/install-deps.sh installs it)");
    }
    let image = match image() {
        Ok(d) => d,
        Err(why) => return skip(&why),
    };
    let cases = case_names();
    let accel = accel(&image);
    let work = tempfile::Builder::new().prefix("exprun-guest-").tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    stage_share(&share, &cases);
    let console_path = work.path().join("console.log");

    let cpu = if accel == "kvm" { "host" } else { "max" };
    let limit: u64 = std::env::var("EXPRUN_GUEST_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(1200);
    println!("guest: booting with {accel}, at most {limit} s");
    let start = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", accel, "-cpu", cpu, "-smp", "2", "-m", "2048"])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(image.join("vmlinuz"))
        .arg("-initrd")
        .arg(image.join("initrd.img"))
        .args([
            "-append",
            "root=/dev/vda rw console=ttyS0 panic=-1 fsck.mode=skip systemd.unified_cgroup_hierarchy=1",
        ])
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=raw,snapshot=on", image.join("rootfs.img").display()))
        .arg("-virtfs")
        .arg(format!("local,path={},mount_tag=exprun-host,security_model=none,id=host", share.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&console_path).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let exited = wait_or_kill(&mut qemu, Duration::from_secs(limit));
    let elapsed = start.elapsed().as_secs_f64();
    let console = String::from_utf8_lossy(&std::fs::read(&console_path).unwrap()).into_owned();
    let results = std::fs::read_to_string(share.join("out/results")).unwrap_or_default();
    if let Ok(env) = std::fs::read_to_string(share.join("out/guest-env.txt")) {
        println!("guest: {}", env.trim_end().replace('\n', "; "));
    }
    println!("guest: boot, cases and power-off took {elapsed:.0} s ({accel})");
    println!("{}", results.trim_end());
    if !results.lines().any(|l| l == "DONE") {
        panic!(
            "the guest did not finish its cases ({}); console:\n{}",
            if exited { "it powered off early" } else { "killed after the time limit" },
            tail(&console, 80)
        );
    }

    let mut failed = Vec::new();
    for name in cases {
        let line = results.lines().find(|l| l.split_whitespace().nth(1) == Some(name.as_str()));
        match line {
            Some(l) if l.starts_with("PASS ") => {
                if std::env::var("EXPRUN_GUEST_LOGS").as_deref() == Ok("1") {
                    let log =
                        std::fs::read_to_string(share.join(format!("out/{name}.log"))).unwrap_or_default();
                    println!("---- guest case {name}: {l}\n{log}");
                }
            }
            other => {
                let log = std::fs::read_to_string(share.join(format!("out/{name}.log"))).unwrap_or_default();
                println!("---- guest case {name}: {}\n{log}", other.unwrap_or("no result"));
                failed.push(name);
            }
        }
    }
    if results.lines().any(|l| l.starts_with("FAIL setup")) {
        failed.push("setup".into());
    }
    assert!(failed.is_empty(), "guest cases failed: {failed:?} (their output is above)");
}
