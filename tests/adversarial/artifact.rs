//! Runs shared as OCI artifacts. Fetching (`exprun replay oci://REF`): the
//! artifact's files come from whoever pushed it, through a registry on
//! loopback that serves what the attack crafted (`evil_registry`). Pushing
//! (`exprun push --run`): what leaves the host is only what the user meant,
//! checked on a real registry (`common::registry`, docker-registry).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::registry::{available, Registry};
use crate::common::{privileged, TestRoot};
use crate::evil_registry::EvilRegistry;
use crate::host::{Marker, Snapshot};

/// `cmd` as the user nobody: any other local user (runuser, not setpriv; see
/// `store::as_nobody`).
fn as_nobody(cmd: &[&str]) -> std::process::Output {
    Command::new("runuser").args(["-u", "nobody", "--"]).args(cmd).output().unwrap()
}

/// One crafted tar entry, its name and link bytes written as given.
enum E<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str, u32),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Node(&'a str, tar::EntryType, u32, u32),
}

/// A gzip'd tar of `entries`, owned by root, as an attacker writes it (the tar
/// crate's setters refuse `..` and absolute names, so names are raw bytes).
fn crafted(entries: &[E<'_>]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, data, link, kind, mode): (&str, &[u8], &str, _, u32) = match e {
            E::File(n, d, m) => (n, d, "", tar::EntryType::Regular, *m),
            E::Dir(n, m) => (n, &[], "", tar::EntryType::Directory, *m),
            E::Symlink(n, t) => (n, &[], t, tar::EntryType::Symlink, 0o777),
            E::Hardlink(n, t) => (n, &[], t, tar::EntryType::Link, 0o644),
            E::Node(n, k, major, minor) => {
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                (n, &[], "", *k, 0o666)
            }
        };
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// A real record to dress the attacks in: a run of the fixture with one
/// output, under a run id of its own.
fn donor_record(id: &str) -> serde_json::Value {
    let donor = TestRoot::with_busybox();
    let out = tempfile::tempdir().unwrap();
    let output = format!("{}:/out", out.path().display());
    let (code, _, err) = donor.run(&["--output", &output, "busybox:latest", "sh", "-c", "echo 1 > /out/r"]);
    assert_eq!(code, 0, "{err}");
    let mut record = donor.last_record();
    record["run_id"] = id.into();
    donor.assert_no_leftovers();
    record
}

fn fresh_id() -> String {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b)).unwrap();
    hex::encode(b)
}

/// `exprun replay --dry-run oci://HOST/evil/run:TAG` in `root`: (exit code, stderr).
fn fetch(root: &TestRoot, reg: &EvilRegistry, tag: &str) -> (i32, String) {
    let out = root.exprun(&["replay", "--dry-run", &format!("oci://{}/evil/run:{tag}", reg.host())], None);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn a_setuid_root_file_of_an_artifact_keeps_no_bits_and_no_other_user_reaches_it() {
    if !privileged("a_setuid_root_file_of_an_artifact_keeps_no_bits_and_no_other_user_reaches_it") {
        return;
    }
    let id = fresh_id();
    let record = donor_record(&id);
    let reg = EvilRegistry::start();
    let id_binary = std::fs::read("/usr/bin/id").unwrap();
    let outputs = crafted(&[
        E::Dir("0", 0o777),
        E::File("0/id", &id_binary, 0o4755),
        E::Dir("0/shared", 0o1777),
        E::File("0/shared/world", b"w\n", 0o666),
    ]);
    let streams = crafted(&[E::File("stdout", b"1\n", 0o6755)]);
    reg.put_run("evil/run", "suid", &record, &[("streams.tar.gz", streams), ("outputs.tar.gz", outputs)]);

    let r = TestRoot::with_busybox();
    // /var/lib/exprun is 0755 on most hosts; so is this root for the attack.
    std::fs::set_permissions(r.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    let (_, err) = fetch(&r, &reg, "suid");
    assert!(err.contains(&format!("fetched run {}", &id[..12])), "{err}");

    let runs = r.path().join("runs");
    let run = runs.join(&id);
    let files = run.join("artifact");
    for d in [&runs, &run, &files, &files.join("outputs"), &files.join("streams")] {
        assert_eq!(mode(d), 0o700, "{} is open to other users", d.display());
    }
    let out0 = files.join("outputs/0");
    assert_eq!(mode(&out0.join("id")), 0o755, "set-id bits kept");
    assert_eq!(mode(&out0.join("shared")), 0o755, "sticky and world-write kept");
    assert_eq!(mode(&out0.join("shared/world")), 0o644, "world-write kept");
    assert_eq!(mode(&files.join("streams/stdout")), 0o755);
    assert_eq!(mode(&run.join("stdout")), 0o600);
    assert_eq!(std::fs::read(run.join("stdout")).unwrap(), b"1\n");
    let me = nix::unistd::geteuid().as_raw();
    assert_eq!(std::fs::symlink_metadata(out0.join("id")).unwrap().uid(), me);

    // Another user: the binary, the directories, the world-writable one.
    let out = as_nobody(&[out0.join("id").to_str().unwrap(), "-u"]);
    assert!(!out.status.success(), "another user ran the artifact's binary: {out:?}");
    let out = as_nobody(&["ls", runs.to_str().unwrap()]);
    assert!(!out.status.success(), "another user listed runs/: {out:?}");
    let out = as_nobody(&["touch", out0.join("shared/planted").to_str().unwrap()]);
    assert!(!out.status.success(), "another user wrote into the artifact: {out:?}");
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "a setuid-root file in an artifact");
    r.assert_no_leftovers();
}

#[test]
fn device_nodes_fifos_and_hardlinks_in_an_artifact_refuse_the_fetch_and_leave_nothing() {
    if !privileged("device_nodes_fifos_and_hardlinks_in_an_artifact_refuse_the_fetch_and_leave_nothing") {
        return;
    }
    let id = fresh_id();
    let record = donor_record(&id);
    let marker = Marker::new();
    let secret = marker.path().join("secret");
    let secret = secret.to_str().unwrap();
    let reg = EvilRegistry::start();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("mem", crafted(&[E::Dir("0", 0o755), E::Node("0/mem", tar::EntryType::Char, 1, 1)]), "0/mem"),
        ("disk", crafted(&[E::Dir("0", 0o755), E::Node("0/sda", tar::EntryType::Block, 8, 0)]), "0/sda"),
        ("fifo", crafted(&[E::Dir("0", 0o755), E::Node("0/pipe", tar::EntryType::Fifo, 0, 0)]), "0/pipe"),
        ("hardlink", crafted(&[E::Dir("0", 0o755), E::Hardlink("0/secret", secret)]), "0/secret"),
    ];
    let r = TestRoot::with_busybox();
    let before = Snapshot::take(&marker, &[r.path()]);
    for (tag, outputs, entry) in cases {
        reg.put_run("evil/run", tag, &record, &[("outputs.tar.gz", outputs)]);
        let (code, err) = fetch(&r, &reg, tag);
        assert_eq!(code, 125, "{tag}: {err}");
        assert!(
            err.contains(&format!("outputs.tar.gz of the artifact, entry {entry}"))
                && err.contains("an artifact holds only files, directories and symlinks"),
            "{tag}: {err}"
        );
        assert!(!r.path().join("runs").join(&id).exists(), "{tag}: a half-fetched run was left");
    }
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "special files in an artifact");
    r.assert_no_leftovers();
}

#[test]
fn a_stream_symlinked_to_a_host_file_is_never_followed() {
    if !privileged("a_stream_symlinked_to_a_host_file_is_never_followed") {
        return;
    }
    let id = fresh_id();
    let record = donor_record(&id);
    let marker = Marker::new();
    let secret = marker.path().join("secret");
    let reg = EvilRegistry::start();
    // `stdout -> the host file`: copied to runs/<id>/stdout, it would show in
    // `verify`'s diffs and in whatever reads the run's output.
    let streams = crafted(&[E::Symlink("stdout", secret.to_str().unwrap())]);
    reg.put_run("evil/run", "stdout", &record, &[("streams.tar.gz", streams)]);
    // A link inside a tree, then a file through it.
    let dir = marker.path().to_str().unwrap();
    let through =
        crafted(&[E::Dir("0", 0o755), E::Symlink("0/l", dir), E::File("0/l/secret", b"pwned\n", 0o644)]);
    reg.put_run("evil/run", "through", &record, &[("outputs.tar.gz", through)]);

    let r = TestRoot::with_busybox();
    // runs/ as an older exprun left it.
    std::fs::create_dir(r.path().join("runs")).unwrap();
    std::fs::set_permissions(r.path().join("runs"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = Snapshot::take(&marker, &[r.path()]);
    let (code, err) = fetch(&r, &reg, "stdout");
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("streams.tar.gz of the artifact, entry stdout") && err.contains("symlink"), "{err}");
    assert!(err.contains("was mode 0755, open to other users; it is now 0700"), "{err}");
    assert_eq!(mode(&r.path().join("runs")), 0o700);
    assert!(!r.path().join("runs").join(&id).exists(), "a half-fetched run was left");

    let (code, err) = fetch(&r, &reg, "through");
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("entry 0/l/secret") && err.contains("nothing is written through it"), "{err}");
    assert!(!r.path().join("runs").join(&id).exists(), "a half-fetched run was left");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "host marker\n");
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "symlinks in an artifact");
    r.assert_no_leftovers();
}

#[test]
fn artifact_paths_that_climb_out_or_are_absolute_are_refused() {
    if !privileged("artifact_paths_that_climb_out_or_are_absolute_are_refused") {
        return;
    }
    let id = fresh_id();
    let record = donor_record(&id);
    let marker = Marker::new();
    let reg = EvilRegistry::start();
    let planted = marker.path().join("planted");
    let absolute = planted.to_str().unwrap().to_string();
    let climb = format!("0/../../../../../../../..{absolute}");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("dotdot", crafted(&[E::File(&climb, b"pwned\n", 0o644)]), "`..`"),
        ("absolute", crafted(&[E::File(&absolute, b"pwned\n", 0o644)]), "an absolute path"),
        ("top", crafted(&[E::File("7/x", b"pwned\n", 0o644)]), "holds only 0 to 0"),
    ];
    let r = TestRoot::with_busybox();
    let before = Snapshot::take(&marker, &[r.path()]);
    for (tag, outputs, why) in cases {
        reg.put_run("evil/run", tag, &record, &[("outputs.tar.gz", outputs)]);
        let (code, err) = fetch(&r, &reg, tag);
        assert_eq!(code, 125, "{tag}: {err}");
        assert!(err.contains("outputs.tar.gz of the artifact, entry") && err.contains(why), "{tag}: {err}");
        assert!(!r.path().join("runs").join(&id).exists(), "{tag}: a half-fetched run was left");
    }
    assert!(!planted.exists());
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "paths out of an artifact");
    r.assert_no_leftovers();
}

/// Every blob the registry stores, decompressed when gzip'd.
fn uploaded(reg: &Registry) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut dirs = vec![reg.dir.path().join("data/docker/registry/v2/blobs")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.file_name().is_some_and(|n| n == "data") {
                let bytes = std::fs::read(&p).unwrap();
                let mut plain = Vec::new();
                if bytes.starts_with(&[0x1f, 0x8b]) {
                    let mut gz = flate2::read::GzDecoder::new(bytes.as_slice());
                    std::io::Read::read_to_end(&mut gz, &mut plain).unwrap();
                } else {
                    plain = bytes;
                }
                out.push(plain);
            }
        }
    }
    out
}

fn holds(blobs: &[Vec<u8>], needle: &str) -> bool {
    blobs.iter().any(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
}

/// A run with an input holding secrets and an output, as a user whose name is
/// in its paths; (root, work dir, input dir, output dir).
struct Shared {
    root: TestRoot,
    _work: tempfile::TempDir,
    home: PathBuf,
    input: PathBuf,
    output: PathBuf,
}

const AWS_KEY: &str = "AKIAQWERTYUIOPASDFGH";
const USER: &str = "alice-exprun-test";

fn shared_run() -> Shared {
    let root = TestRoot::with_busybox();
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home").join(USER);
    let (input, output) = (home.join("project/data"), home.join("project/out"));
    std::fs::create_dir_all(input.join(".git")).unwrap();
    std::fs::write(input.join(".env"), "DB=postgres\n").unwrap();
    std::fs::write(input.join(".git/config"), "[core]\n").unwrap();
    std::fs::write(input.join("notes.txt"), format!("input-only-content\naws_access_key_id = {AWS_KEY}\n"))
        .unwrap();
    // A file of the home directory that only the command line names.
    let env_file = home.join("vars.env");
    std::fs::write(&env_file, "MODE=fast\n").unwrap();
    let args = [
        "run",
        "--name",
        "shared",
        "--env-file",
        env_file.to_str().unwrap(),
        "--input",
        &format!("{}:/data", input.display()),
        "--output",
        &format!("{}:/out", output.display()),
        "busybox:latest",
        "sh",
        "-c",
        "wc -l < /data/notes.txt > /out/lines",
    ];
    let out = root.command(&args).env("HOME", &home).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Shared { root, _work: work, home, input, output }
}

fn push(s: &Shared, extra: &[&str], target: &str) -> (i32, String) {
    let mut args = vec!["push", "--run"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["shared", target]);
    let out = s.root.command(&args).env("HOME", &s.home).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn push_run_lists_secrets_and_uploads_no_inputs_unless_asked() {
    if !privileged("push_run_lists_secrets_and_uploads_no_inputs_unless_asked")
        || !available("push_run_lists_secrets_and_uploads_no_inputs_unless_asked")
    {
        return;
    }
    let s = shared_run();
    let reg = Registry::start(None);
    let target = format!("{}/lab/shared:1", reg.host());

    // By default: no inputs, and the listing says so.
    let (code, err) = push(&s, &[], &target);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("inputs          not uploaded: 1 input, 3 files"), "{err}");
    assert!(err.contains("0/lines"), "{err}");
    let blobs = uploaded(&reg);
    assert!(!holds(&blobs, "input-only-content") && !holds(&blobs, AWS_KEY), "an input was uploaded");

    // Asked for, the inputs' secrets are named and the push refused.
    let again = format!("{}/lab/shared:2", reg.host());
    let (code, err) = push(&s, &["--include-inputs"], &again);
    assert_eq!(code, 125, "{err}");
    for line in ["0/.env  12 B  SECRET by name (.env)", "0/.git/config  7 B  SECRET by name (.git/config)"] {
        assert!(err.contains(line), "{line}: {err}");
    }
    assert!(
        err.contains("0/notes.txt") && err.contains("SECRET by content (a credential on line 2)"),
        "{err}"
    );
    assert!(err.contains("3 files it would upload hold secrets") && err.contains("--allow-secrets"), "{err}");
    assert_eq!(uploaded(&reg).len(), blobs.len(), "a refused push uploaded something");
    // --dry-run lists and sends nothing.
    let (code, err) = push(&s, &["--include-inputs", "--allow-secrets", "--dry-run"], &again);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("--dry-run: nothing was uploaded"), "{err}");
    assert_eq!(uploaded(&reg).len(), blobs.len(), "a dry run uploaded something");
    let (code, err) = push(&s, &["--include-inputs", "--allow-secrets"], &again);
    assert_eq!(code, 0, "{err}");
    assert!(holds(&uploaded(&reg), AWS_KEY), "--include-inputs --allow-secrets did not upload the input");
    s.root.assert_no_leftovers();
}

#[test]
fn push_run_refuses_outputs_changed_since_the_run() {
    if !privileged("push_run_refuses_outputs_changed_since_the_run")
        || !available("push_run_refuses_outputs_changed_since_the_run")
    {
        return;
    }
    let s = shared_run();
    let reg = Registry::start(None);
    let target = format!("{}/lab/shared:1", reg.host());
    std::fs::write(s.output.join("written-later"), "not from the run\n").unwrap();
    std::fs::write(s.output.join("lines"), "99\n").unwrap();
    let (code, err) = push(&s, &[], &target);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("output /out") && err.contains("lines changed, written-later added"), "{err}");
    assert!(uploaded(&reg).is_empty(), "a refused push uploaded something");
    // An input changed since the run is refused as well, when it is pushed.
    std::fs::write(s.output.join("lines"), "2\n").unwrap();
    std::fs::remove_file(s.output.join("written-later")).unwrap();
    std::fs::remove_file(s.input.join(".env")).unwrap();
    let (code, err) = push(&s, &["--include-inputs", "--allow-secrets"], &target);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("input /data") && err.contains(".env removed"), "{err}");
    let (code, err) = push(&s, &[], &target);
    assert_eq!(code, 0, "the output put back as recorded: {err}");
    s.root.assert_no_leftovers();
}

#[test]
fn push_run_shares_no_host_paths_or_user_names_unless_asked() {
    if !privileged("push_run_shares_no_host_paths_or_user_names_unless_asked")
        || !available("push_run_shares_no_host_paths_or_user_names_unless_asked")
    {
        return;
    }
    let s = shared_run();
    let reg = Registry::start(None);
    let (code, err) = push(&s, &[], &format!("{}/lab/shared:1", reg.host()));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("host details replaced by /exprun-withheld/"), "{err}");
    let blobs = uploaded(&reg);
    let root = s.root.path().display().to_string();
    let exe = crate::common::exprun_bin().display().to_string();
    for needle in [USER, root.as_str(), exe.as_str(), s.home.to_str().unwrap()] {
        assert!(!holds(&blobs, needle), "{needle:?} was uploaded");
    }
    assert!(holds(&blobs, "/exprun-withheld/input/data"), "no placeholder in the record");

    // The copy replays elsewhere, and into its own root only as a local run.
    let b = TestRoot::with_busybox();
    let at = format!("oci://{}/lab/shared:1", reg.host());
    let out = b.exprun(&["replay", "--dry-run", &at], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fetched run"), "{err}");
    let out = s.root.exprun(&["replay", "--dry-run", &at], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("it was recorded in this state root") && err.contains("exprun replay"), "{err}");

    let (code, err) = push(&s, &["--keep-host-details"], &format!("{}/lab/shared:2", reg.host()));
    assert_eq!(code, 0, "{err}");
    assert!(holds(&uploaded(&reg), s.input.to_str().unwrap()), "--keep-host-details did not keep the paths");
    s.root.assert_no_leftovers();
    b.assert_no_leftovers();
}
