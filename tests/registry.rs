#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `exprun pull` and `exprun push` against a real registry (Debian's
//! docker-registry on 127.0.0.1, started per test with its config in a temp
//! dir), cross-checked with skopeo, and through a proxy that adds token auth,
//! a dropped connection and a corrupted blob (tests/common/registry.rs).
//!
//! Needs root (the fixture's layers hold a whiteout device and trusted.*
//! xattrs, and the runs are real containers).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

mod common;
use common::registry::{auth_file, available, ConnectProxy, Mode, Proxy, Registry};
use common::{fixture_dir, pinned, privileged, TestRoot};

fn ready(test: &str) -> bool {
    privileged(test) && available(test)
}

/// Run exprun; require success; stdout.
fn ok(root: &TestRoot, args: &[&str]) -> String {
    let out = root.exprun(args, None);
    assert!(out.status.success(), "exprun {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run exprun; require exit 125; stderr.
fn fails(root: &TestRoot, args: &[&str]) -> String {
    let out = root.exprun(args, None);
    assert_eq!(out.status.code(), Some(125), "exprun {args:?}: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The manifest (or index) the registry serves for `reference`, read by skopeo.
fn skopeo_raw(reference: &str) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{reference}")])
        .output()
        .expect("run skopeo");
    assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn skopeo_digest(reference: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(skopeo_raw(reference))))
}

/// Push the fixture with exprun from a fresh root.
fn push_fixture(target: &str) -> String {
    let src = TestRoot::with_busybox();
    ok(&src, &["push", "-q", "busybox:latest", target]).trim().to_string()
}

#[test]
fn push_then_pull_round_trips_by_digest_and_runs() {
    if !ready("push_then_pull_round_trips_by_digest_and_runs") {
        return;
    }
    let reg = Registry::start(None);
    let target = format!("{}/fixtures/busybox:1", reg.host());
    let manifest = pinned("MANIFEST_DIGEST");
    assert_eq!(push_fixture(&target), manifest);
    // An independent client sees the same manifest.
    assert_eq!(skopeo_digest(&target), manifest);

    let root = TestRoot::new();
    let out = ok(&root, &["pull", &target]);
    assert!(out.contains(&manifest) && out.contains("2 layers fetched, 0 already stored"), "{out}");
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&root, &["image", "inspect", &target])).unwrap();
    assert_eq!(inspect["manifest_digest"], manifest.as_str());
    assert_eq!(inspect["origin"]["reference"], target.as_str());
    assert_eq!(inspect["origin"]["resolved_digest"], manifest.as_str());

    // Pulling again fetches nothing; the layers are shared.
    let out = ok(&root, &["pull", &target]);
    assert!(out.contains("0 layers fetched, 2 already stored"), "{out}");

    // A run of the pulled image records where it came from.
    let (code, stdout, stderr) = root.run(&[&target, "--", "busybox", "--help"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.is_empty());
    let rec = root.last_record();
    assert_eq!(rec["image"]["manifest_digest"], manifest.as_str());
    assert_eq!(rec["image"]["origin"]["reference"], target.as_str());
    let id = rec["run_id"].as_str().unwrap();
    let statement: serde_json::Value =
        serde_json::from_str(&ok(&root, &["runs", "export", id, "--format", "in-toto"])).unwrap();
    let deps = &statement["predicate"]["buildDefinition"]["resolvedDependencies"];
    assert_eq!(deps[0]["uri"], format!("oci://{target}@{manifest}").as_str(), "{deps}");

    // skopeo pulls what exprun pushed, and exprun pushes what it pulled.
    let again = format!("{}/fixtures/copy:2", reg.host());
    assert_eq!(ok(&root, &["push", "-q", &target, &again]).trim(), manifest);
    assert_eq!(skopeo_digest(&again), manifest);
    root.assert_no_leftovers();
}

#[test]
fn run_pulls_only_when_asked() {
    if !ready("run_pulls_only_when_asked") {
        return;
    }
    let reg = Registry::start(None);
    let target = format!("{}/fixtures/busybox:run", reg.host());
    push_fixture(&target);
    let root = TestRoot::new();
    let (code, _, stderr) = root.run(&[&target, "--", "true"]);
    assert_eq!(code, 125);
    assert!(stderr.contains("no image matches"), "{stderr}");
    assert!(
        !root.path().join("store/refs.json").exists() || !ok(&root, &["image", "ls"]).contains("busybox")
    );
    let (code, stdout, stderr) = root.run(&["--pull", "missing", &target, "--", "echo", "pulled-and-ran"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "pulled-and-ran\n");
    assert!(stderr.contains("pulled"), "{stderr}");
    // Now present: no pull.
    let (code, _, stderr) = root.run(&["--pull", "missing", &target, "--", "true"]);
    assert_eq!(code, 0);
    assert!(!stderr.contains("pulled"), "{stderr}");
    root.assert_no_leftovers();
}

/// An OCI layout with an index of two images: the fixture (linux/amd64) and a
/// one-file linux/arm64 image.
fn multi_arch_layout(dir: &Path) {
    let src = fixture_dir().join("busybox-oci");
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    for e in std::fs::read_dir(src.join("blobs/sha256")).unwrap().flatten() {
        std::fs::copy(e.path(), dir.join("blobs/sha256").join(e.file_name())).unwrap();
    }
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |bytes: &[u8]| {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(dir.join("blobs/sha256").join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, "arch", &b"arm\n"[..]).unwrap();
    let layer = tar.into_inner().unwrap();
    let (layer_d, layer_n) = put(&layer);
    let config = format!(
        r#"{{"architecture":"arm64","os":"linux","variant":"v8","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{layer_d}"]}}}}"#
    );
    let (config_d, config_n) = put(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_d}","size":{config_n}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_d}","size":{layer_n}}}]}}"#
    );
    let (arm_d, arm_n) = put(manifest.as_bytes());
    let amd_d = pinned("MANIFEST_DIGEST");
    let amd_n = std::fs::metadata(src.join("blobs/sha256").join(&amd_d[7..])).unwrap().len();
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{arm_d}","size":{arm_n},"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{amd_d}","size":{amd_n},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
    );
    let (index_d, index_n) = put(index.as_bytes());
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{index_d}","size":{index_n},"annotations":{{"org.opencontainers.image.ref.name":"multi"}}}}]}}"#
        ),
    )
    .unwrap();
}

#[test]
fn a_multi_arch_index_gives_the_host_platform_or_the_one_asked_for() {
    if !ready("a_multi_arch_index_gives_the_host_platform_or_the_one_asked_for") {
        return;
    }
    let reg = Registry::start(None);
    let layout = tempfile::tempdir().unwrap();
    multi_arch_layout(layout.path());
    let target = format!("{}/fixtures/multi:1", reg.host());
    let st = Command::new("skopeo")
        .args(["copy", "-q", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:multi", layout.path().display()))
        .arg(format!("docker://{target}"))
        .status()
        .unwrap();
    assert!(st.success(), "skopeo copy --all failed");
    // skopeo re-serialises what it copies; what the registry serves is what counts.
    let served = skopeo_digest(&target);
    let index: serde_json::Value = serde_json::from_slice(&skopeo_raw(&target)).unwrap();
    let arm_d = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "arm64")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();

    let root = TestRoot::new();
    ok(&root, &["pull", "-q", &target]);
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&root, &["image", "inspect", &target])).unwrap();
    assert_eq!(inspect["manifest_digest"], pinned("MANIFEST_DIGEST").as_str());
    assert_eq!(inspect["origin"]["resolved_digest"], served.as_str());
    assert_eq!(inspect["origin"]["platform"], "linux/amd64");

    let arm = TestRoot::new();
    assert_eq!(ok(&arm, &["pull", "-q", "--platform", "linux/arm64", &target]).trim(), arm_d);
    let e = fails(&arm, &["pull", "--platform", "linux/s390x", &target]);
    assert!(e.contains("no image for linux/s390x") && e.contains("linux/arm64/v8, linux/amd64"), "{e}");
    let e = fails(&arm, &["pull", "--platform", "arm64", &target]);
    assert!(e.contains("OS/ARCH"), "{e}");
}

#[test]
fn basic_auth_reads_the_auth_file_and_keeps_the_password_out_of_the_store() {
    if !ready("basic_auth_reads_the_auth_file_and_keeps_the_password_out_of_the_store") {
        return;
    }
    let reg = Registry::start(Some(("alice", "s3cret-pw")));
    let target = format!("{}/lab/busybox:1", reg.host());
    let root = TestRoot::with_busybox();
    let e = fails(&root, &["push", "busybox:latest", &target]);
    assert!(e.contains("wants credentials") && e.contains("REGISTRY_AUTH_FILE"), "{e}");

    let creds = tempfile::tempdir().unwrap();
    let wrong = auth_file(creds.path(), &reg.host(), "alice", "wrong");
    let out = root
        .command(&["push", "busybox:latest", &target])
        .env("REGISTRY_AUTH_FILE", &wrong)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("\"alice\" was refused"), "{e}");

    let good = auth_file(creds.path(), &reg.host(), "alice", "s3cret-pw");
    let out =
        root.command(&["push", "busybox:latest", &target]).env("REGISTRY_AUTH_FILE", &good).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A credential helper named in the auth file is asked instead.
    let helpers = tempfile::tempdir().unwrap();
    let helper = helpers.path().join("docker-credential-exprun-test");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\n[ \"$1\" = get ] && [ \"$server\" = {} ] || exit 1\n\
             echo '{{\"Username\":\"alice\",\"Secret\":\"s3cret-pw\"}}'\n",
            reg.host()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let via_helper = creds.path().join("helper.json");
    std::fs::write(&via_helper, format!(r#"{{"credHelpers":{{"{}":"exprun-test"}}}}"#, reg.host())).unwrap();
    let path = format!("{}:/usr/bin:/bin", helpers.path().display());
    let helped = TestRoot::new();
    let out = helped
        .command(&["pull", "-q", &target])
        .env("REGISTRY_AUTH_FILE", &via_helper)
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // --authfile names the file, as with podman; a missing one is an error.
    let named = TestRoot::new();
    ok(&named, &["pull", "-q", "--authfile", good.to_str().unwrap(), &target]);
    let e = fails(&named, &["pull", "--authfile", "/nonexistent/auth.json", &target]);
    assert!(e.contains("/nonexistent/auth.json") && e.contains("cannot read it"), "{e}");

    let other = TestRoot::new();
    let out = other.command(&["pull", &target]).env("REGISTRY_AUTH_FILE", &good).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, _, stderr) = other.run(&[&target, "--", "true"]);
    assert_eq!(code, 0, "{stderr}");
    let grep = Command::new("grep").args(["-r", "-l", "s3cret-pw"]).arg(other.path()).output().unwrap();
    assert!(grep.stdout.is_empty(), "the password is in {}", String::from_utf8_lossy(&grep.stdout));
    other.assert_no_leftovers();
}

#[test]
fn login_checks_the_credentials_and_keeps_them_where_podman_does() {
    if !ready("login_checks_the_credentials_and_keeps_them_where_podman_does") {
        return;
    }
    let reg = Registry::start(Some(("alice", "s3cret-pw")));
    let root = TestRoot::with_busybox();
    let runtime = tempfile::tempdir().unwrap();
    let auth = runtime.path().join("containers/auth.json");
    let exprun = |args: &[&str], stdin: &str| {
        use std::io::Write as _;
        let mut child = root
            .command(args)
            .env("XDG_RUNTIME_DIR", runtime.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    };
    let host = reg.host();
    let (code, e) = exprun(&["login", "-u", "alice", "--password-stdin", &host], "wrong\n");
    assert!(code == Some(125) && e.contains("\"alice\" was refused"), "{e}");
    assert!(!auth.exists(), "refused credentials were stored");
    let (code, e) = exprun(&["login", &host], "");
    assert!(code == Some(125) && e.contains("not a terminal") && e.contains("--password-stdin"), "{e}");

    let (code, out) = exprun(&["login", "-u", "alice", "--password-stdin", &host], "s3cret-pw\n");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Login Succeeded"), "{out}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&auth).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // push and pull find it there, as they find podman's.
    let target = format!("{host}/lab/busybox:login");
    let (code, out) = exprun(&["push", "-q", "busybox:latest", &target], "");
    assert_eq!(code, Some(0), "{out}");
    let grep = Command::new("grep").args(["-r", "-l", "s3cret-pw"]).arg(root.path()).output().unwrap();
    assert!(grep.stdout.is_empty(), "the password is in {}", String::from_utf8_lossy(&grep.stdout));

    // Asked on a terminal.
    std::fs::remove_file(&auth).unwrap();
    let cmd = format!("{} login {host}", common::exprun_bin().display());
    let mut script = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("XDG_RUNTIME_DIR", runtime.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = script.stdin.take().unwrap();
        stdin.write_all(b"alice\n").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        stdin.write_all(b"s3cret-pw\n").unwrap();
    }
    let out = script.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("Username for {host}: ")) && text.contains("Password: "), "{text:?}");
    assert!(text.contains("Login Succeeded"), "{text:?}");
    assert!(auth.exists());

    let (code, out) = exprun(&["logout", &host], "");
    assert_eq!(code, Some(0), "{out}");
    let (code, e) = exprun(&["pull", &target], "");
    assert!(code == Some(125) && e.contains("wants credentials"), "{e}");
    let (code, e) = exprun(&["logout", &host], "");
    assert!(code == Some(125) && e.contains("not logged in"), "{e}");
    // --authfile: written there, and read from there.
    let named = runtime.path().join("named.json");
    let named_s = named.to_str().unwrap();
    let login = ["login", "-u", "alice", "--password-stdin", "--authfile", named_s, &host];
    let (code, out) = exprun(&login, "s3cret-pw\n");
    assert!(code == Some(0) && named.exists(), "{out}");
    let (code, err) = exprun(&["pull", "-q", "--authfile", named_s, &target], "");
    assert_eq!(code, Some(0), "{err}");

    // A token service checks them too.
    let open = Registry::start(None);
    let proxy = Proxy::start(open.port, Mode::Bearer { user: "bob".into(), password: "pw".into() });
    let (code, e) = exprun(&["login", "-u", "bob", "--password-stdin", &proxy.host()], "nope\n");
    assert!(code == Some(125) && e.contains("token service refused"), "{e}");
    let (code, out) = exprun(&["login", "-u", "bob", "-p", "pw", &proxy.host()], "");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        proxy.requests().iter().any(|l| l.starts_with("GET /token?") && !l.contains("scope")),
        "{:#?}",
        proxy.requests()
    );
    root.assert_no_leftovers();
}

#[test]
fn the_proxy_in_the_environment_is_used_except_for_no_proxy_hosts() {
    if !ready("the_proxy_in_the_environment_is_used_except_for_no_proxy_hosts") {
        return;
    }
    let reg = Registry::start(None);
    let target = format!("{}/fixtures/busybox:proxied", reg.host());
    push_fixture(&target);
    let proxy = ConnectProxy::start();
    let root = TestRoot::new();
    let pull = |no_proxy: &str| {
        let out = root
            .command(&["pull", "-q", &target])
            .env("HTTPS_PROXY", proxy.url())
            .env("HTTP_PROXY", proxy.url())
            .env("NO_PROXY", no_proxy)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    pull("");
    let log = proxy.requests();
    assert!(
        !log.is_empty() && log.iter().all(|l| l == &format!("CONNECT {} HTTP/1.1", reg.host())),
        "{log:#?}"
    );
    ok(&root, &["image", "rm", &target]);
    ok(&root, &["image", "gc"]);
    pull("127.0.0.1");
    assert_eq!(proxy.requests().len(), log.len(), "NO_PROXY was not honoured");
    root.assert_no_leftovers();
}

#[test]
fn registries_conf_mirrors_locations_and_blocks_as_podman_reads_them() {
    if !ready("registries_conf_mirrors_locations_and_blocks_as_podman_reads_them") {
        return;
    }
    let (primary, mirror) = (Registry::start(None), Registry::start(None));
    push_fixture(&format!("{}/mirror/fixtures/busybox:1", mirror.host()));
    push_fixture(&format!("{}/fixtures/busybox:only-here", primary.host()));
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "unqualified-search-registries = [\"docker.io\"]\n\
             [[registry]]\nlocation = \"{p}\"\n\
             [[registry.mirror]]\nlocation = \"0.0.0.0:{m}/mirror\"\ninsecure = true\n\
             [[registry]]\nprefix = \"lab.example\"\nlocation = \"{p}/lab\"\n\
             [[registry]]\nprefix = \"*.blocked.example\"\nblocked = true\n",
            p = primary.host(),
            // Not a loopback name, so HTTPS is tried first: `insecure` falls back to HTTP.
            m = mirror.port
        ),
    )
    .unwrap();
    let root = TestRoot::with_busybox();
    let exprun = |args: &[&str]| {
        let out = root.command(args).env("CONTAINERS_REGISTRIES_CONF", &conf).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), err)
    };
    // From the mirror; the record keeps the reference asked for and where it came from.
    let target = format!("{}/fixtures/busybox:1", primary.host());
    let (code, _, err) = exprun(&["pull", "-q", &target]);
    assert_eq!(code, Some(0), "{err}");
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&root, &["image", "inspect", &target])).unwrap();
    assert_eq!(inspect["origin"]["reference"], target.as_str());
    let fetched_from = format!("0.0.0.0:{}/mirror/fixtures/busybox", mirror.port);
    assert_eq!(inspect["origin"]["fetched_from"], fetched_from.as_str());
    // What the mirror lacks comes from the location, saying so.
    let (code, _, err) = exprun(&["pull", "-q", &format!("{}/fixtures/busybox:only-here", primary.host())]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains(&format!("mirror 0.0.0.0:{}", mirror.port)) && err.contains("trying"), "{err}");
    // A push goes to the location, never to a mirror.
    let (code, _, err) = exprun(&["push", "-q", "busybox:latest", "lab.example/team/busybox:2"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(skopeo_digest(&format!("{}/lab/team/busybox:2", primary.host())), pinned("MANIFEST_DIGEST"));
    // Blocked.
    let (code, _, err) = exprun(&["pull", "x.blocked.example/a/b:1"]);
    assert!(code == Some(125) && err.contains("blocks *.blocked.example"), "{err}");
    // A file that does not parse is named.
    std::fs::write(&conf, "[[registry]\n").unwrap();
    let (code, _, err) = exprun(&["pull", &target]);
    assert!(code == Some(125) && err.contains("registries.conf"), "{err}");
    root.assert_no_leftovers();
}

#[test]
fn bearer_tokens_are_fetched_from_the_realm_the_registry_names() {
    if !ready("bearer_tokens_are_fetched_from_the_realm_the_registry_names") {
        return;
    }
    let reg = Registry::start(None);
    push_fixture(&format!("{}/fixtures/busybox:tok", reg.host()));
    let proxy = Proxy::start(reg.port, Mode::Bearer { user: "bob".into(), password: "pw".into() });
    let target = format!("{}/fixtures/busybox:tok", proxy.host());
    let root = TestRoot::new();
    let e = fails(&root, &["pull", &target]);
    assert!(e.contains("authentication failed") && e.contains("wants credentials"), "{e}");
    let creds = tempfile::tempdir().unwrap();
    let file = auth_file(creds.path(), &proxy.host(), "bob", "pw");
    let out = root.command(&["pull", &target]).env("REGISTRY_AUTH_FILE", &file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = proxy.requests();
    assert!(
        log.iter().any(|l| l.starts_with("GET /token?")
            && l.contains("scope=repository%3Afixtures%2Fbusybox%3Apull")
            || l.starts_with("GET /token?") && l.contains("repository:fixtures/busybox:pull")),
        "{log:#?}"
    );
    assert!(log.iter().any(|l| l.contains("/manifests/tok") && l.ends_with("auth=Bearer")), "{log:#?}");
}

#[test]
fn a_dropped_connection_resumes_where_it_stopped() {
    if !ready("a_dropped_connection_resumes_where_it_stopped") {
        return;
    }
    let reg = Registry::start(None);
    push_fixture(&format!("{}/fixtures/busybox:drop", reg.host()));
    let layer = pinned("LAYER1_DIGEST");
    let proxy = Proxy::start(reg.port, Mode::DropOnce { digest: layer.clone(), after: 100_000 });
    let target = format!("{}/fixtures/busybox:drop", proxy.host());
    let root = TestRoot::new();
    assert_eq!(ok(&root, &["pull", "-q", &target]).trim(), pinned("MANIFEST_DIGEST"));
    let gets: Vec<String> =
        proxy.requests().into_iter().filter(|l| l.contains(&format!("/blobs/{layer}"))).collect();
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert!(gets[0].contains("range= "), "{gets:#?}");
    let resumed_at: u64 =
        gets[1].split("range=bytes=").nth(1).unwrap().split('-').next().unwrap().parse().unwrap();
    assert!(resumed_at > 0 && resumed_at <= 100_000, "{gets:#?}");
    let (code, _, stderr) = root.run(&[&target, "--", "true"]);
    assert_eq!(code, 0, "{stderr}");

    // A partial blob left by an earlier, interrupted pull is resumed from disk.
    let again = TestRoot::new();
    let blob = std::fs::read(fixture_dir().join("busybox-oci/blobs/sha256").join(&layer[7..])).unwrap();
    std::fs::create_dir_all(again.path().join("store/partial")).unwrap();
    std::fs::write(again.path().join("store/partial").join(&layer[7..]), &blob[..50_000]).unwrap();
    let plain = Proxy::start(reg.port, Mode::Plain);
    ok(&again, &["pull", "-q", &format!("{}/fixtures/busybox:drop", plain.host())]);
    let gets: Vec<String> =
        plain.requests().into_iter().filter(|l| l.contains(&format!("/blobs/{layer}"))).collect();
    assert_eq!(gets.len(), 1, "{gets:#?}");
    assert!(gets[0].contains("range=bytes=50000-"), "{gets:#?}");
    assert!(std::fs::read_dir(again.path().join("store/partial"))
        .unwrap()
        .flatten()
        .all(|e| e.file_name().to_string_lossy().ends_with(".lock")));
    root.assert_no_leftovers();
}

#[test]
fn a_registry_answering_503_is_asked_again_then_given_up_on() {
    if !ready("a_registry_answering_503_is_asked_again_then_given_up_on") {
        return;
    }
    let reg = Registry::start(None);
    push_fixture(&format!("{}/fixtures/busybox:flaky", reg.host()));
    let flaky = Proxy::start(reg.port, Mode::Unavailable { times: 2 });
    let root = TestRoot::new();
    let target = format!("{}/fixtures/busybox:flaky", flaky.host());
    assert_eq!(ok(&root, &["pull", "-q", &target]).trim(), pinned("MANIFEST_DIGEST"));
    let gets = flaky.requests().iter().filter(|l| l.contains("/manifests/flaky")).count();
    assert_eq!(gets, 3, "{:#?}", flaky.requests());
    let down = Proxy::start(reg.port, Mode::Unavailable { times: 100 });
    let e = fails(&TestRoot::new(), &["pull", &format!("{}/fixtures/busybox:flaky", down.host())]);
    assert!(e.contains("HTTP 503") && e.contains("UNAVAILABLE: back soon"), "{e}");
    let gets = down.requests().iter().filter(|l| l.contains("/manifests/flaky")).count();
    assert_eq!(gets, 4, "{:#?}", down.requests());
    root.assert_no_leftovers();
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused_and_nothing_is_stored() {
    if !ready("a_blob_that_does_not_match_its_digest_is_refused_and_nothing_is_stored") {
        return;
    }
    let reg = Registry::start(None);
    push_fixture(&format!("{}/fixtures/busybox:bad", reg.host()));
    let layer = pinned("LAYER1_DIGEST");
    let proxy = Proxy::start(reg.port, Mode::Corrupt { digest: layer.clone() });
    let root = TestRoot::new();
    let e = fails(&root, &["pull", &format!("{}/fixtures/busybox:bad", proxy.host())]);
    assert!(
        e.contains(&format!("blob {layer}")) && e.contains("digest mismatch") && e.contains("refused"),
        "{e}"
    );
    assert_eq!(ok(&root, &["image", "ls", "--json"]).trim(), "[]");
    let blobs: Vec<_> =
        std::fs::read_dir(root.path().join("store/blobs/sha256")).unwrap().flatten().collect();
    assert!(blobs.is_empty(), "{blobs:?}");
    assert!(!root.path().join("store/partial").join(&layer[7..]).exists());
    let layers: Vec<_> = std::fs::read_dir(root.path().join("store/layers")).unwrap().flatten().collect();
    assert!(layers.is_empty());
    root.assert_no_leftovers();

    // Unknown names and unreachable registries say what and where.
    let e = fails(&root, &["pull", &format!("{}/fixtures/nothing:1", reg.host())]);
    assert!(e.contains("not found on registry"), "{e}");
    let e = fails(&root, &["pull", "127.0.0.1:1/x/y:1"]);
    assert!(e.contains("cannot reach"), "{e}");
    let e = fails(&root, &["pull", "Bad/Name"]);
    assert!(e.contains("invalid registry reference"), "{e}");
}

#[test]
fn blobs_redirected_to_storage_get_no_credentials_and_download_in_parallel() {
    if !ready("blobs_redirected_to_storage_get_no_credentials_and_download_in_parallel") {
        return;
    }
    let reg = Registry::start(None);
    push_fixture(&format!("{}/fixtures/busybox:hub", reg.host()));
    let layer = pinned("LAYER1_DIGEST");
    let hold = Duration::from_millis(400);
    let proxy = Proxy::start(reg.port, Mode::Hub { hold, drop: Some(layer.clone()) });
    let target = format!("{}/fixtures/busybox:hub", proxy.host());
    // Anonymous: there is no auth file, and the token service asks for none.
    let root = TestRoot::new();
    assert_eq!(ok(&root, &["pull", "-q", &target]).trim(), pinned("MANIFEST_DIGEST"));
    let log = proxy.requests();
    assert!(log.iter().any(|l| l.starts_with("GET /token?") && l.ends_with("auth=")), "{log:#?}");
    // The registry was asked with the token and redirected every blob (the
    // config and both layers) to storage, which would have refused the pull
    // had it been sent the token too.
    let storage: Vec<&String> = log.iter().filter(|l| l.starts_with("GET /storage/")).collect();
    assert!(storage.iter().all(|l| l.ends_with("auth=")), "{storage:#?}");
    let layer_gets: Vec<&String> = log.iter().filter(|l| l.contains(&format!("/blobs/{layer}"))).collect();
    assert_eq!(layer_gets.len(), 4, "{layer_gets:#?}");
    assert!(
        layer_gets[0].starts_with("GET /v2/") && layer_gets[0].ends_with("auth=Bearer"),
        "{layer_gets:#?}"
    );
    assert!(layer_gets[1].starts_with("GET /storage/"), "{layer_gets:#?}");
    // The cut download resumed through the registry, which redirected again.
    assert!(
        layer_gets[2].starts_with("GET /v2/") && layer_gets[2].contains("range=bytes="),
        "{layer_gets:#?}"
    );
    assert!(layer_gets[3].starts_with("GET /storage/") && layer_gets[3].contains("range=bytes="));
    assert_eq!(storage.len(), 4, "{storage:#?}");
    // Both layers were downloading at once (each storage answer is held 400 ms).
    assert_eq!(proxy.most_at_once(), 2, "{log:#?}");
    let (code, _, stderr) = root.run(&[&target, "--", "true"]);
    assert_eq!(code, 0, "{stderr}");
    root.assert_no_leftovers();

    // --jobs 1 downloads one layer at a time.
    let one = TestRoot::new();
    let serial = Proxy::start(reg.port, Mode::Hub { hold, drop: None });
    ok(&one, &["pull", "-q", "--jobs", "1", &format!("{}/fixtures/busybox:hub", serial.host())]);
    assert_eq!(serial.most_at_once(), 1);
    one.assert_no_leftovers();
}

#[test]
fn pulls_of_one_image_at_once_download_each_layer_once() {
    if !ready("pulls_of_one_image_at_once_download_each_layer_once") {
        return;
    }
    let reg = Registry::start(None);
    push_fixture(&format!("{}/fixtures/busybox:many", reg.host()));
    let proxy = Proxy::start(reg.port, Mode::Hub { hold: Duration::from_millis(300), drop: None });
    let target = format!("{}/fixtures/busybox:many", proxy.host());
    let root = TestRoot::new();
    let pulls: Vec<_> = (0..4)
        .map(|_| {
            root.command(&["pull", "-q", &target])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for p in pulls {
        let out = p.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), pinned("MANIFEST_DIGEST"));
    }
    let log = proxy.requests();
    for layer in [pinned("LAYER1_DIGEST"), pinned("LAYER2_DIGEST")] {
        let gets = log.iter().filter(|l| l.starts_with("GET /storage/") && l.contains(&layer)).count();
        assert_eq!(gets, 1, "layer {layer} downloaded {gets} times: {log:#?}");
    }
    // Only the lock files stay in partial/.
    let partial: Vec<String> = std::fs::read_dir(root.path().join("store/partial"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(partial.is_empty(), "{partial:?}");
    let (code, _, stderr) = root.run(&[&target, "--", "true"]);
    assert_eq!(code, 0, "{stderr}");
    root.assert_no_leftovers();
}

#[test]
fn push_uploads_blobs_at_once_and_starts_a_dropped_upload_over() {
    if !ready("push_uploads_blobs_at_once_and_starts_a_dropped_upload_over") {
        return;
    }
    let reg = Registry::start(None);
    let proxy = Proxy::start(reg.port, Mode::Uploads { hold: Duration::from_millis(300) });
    let target = format!("{}/fixtures/busybox:up", proxy.host());
    let src = TestRoot::with_busybox();
    // On a terminal, each blob has its bar.
    let cmd = format!(
        "{} --root {} push busybox:latest {target}",
        common::exprun_bin().display(),
        src.path().display()
    );
    let out = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("3 blobs uploaded, 0 already there"), "{text:?}");
    for d in [pinned("LAYER1_DIGEST"), pinned("LAYER2_DIGEST")] {
        assert!(text.contains(&format!("{} [", &d[7..19])), "no bar for {d}: {text:?}");
    }
    // The first upload was cut off and started over: four PUTs for three blobs.
    let log = proxy.requests();
    let puts = log.iter().filter(|l| l.starts_with("PUT ") && l.contains("/blobs/uploads/")).count();
    assert_eq!(puts, 4, "{log:#?}");
    assert!(proxy.most_at_once() >= 2, "uploads ran one at a time: {log:#?}");
    assert_eq!(skopeo_digest(&target), pinned("MANIFEST_DIGEST"));

    // --jobs 1: one at a time.
    let serial = Proxy::start(reg.port, Mode::Uploads { hold: Duration::from_millis(100) });
    let out =
        ok(&src, &["push", "--jobs", "1", "busybox:latest", &format!("{}/fixtures/serial:1", serial.host())]);
    assert!(out.contains("3 blobs uploaded"), "{out}");
    assert_eq!(serial.most_at_once(), 1);
    let e = fails(&src, &["push", "--jobs", "0", "busybox:latest", &target]);
    assert!(e.contains("--jobs") && e.contains("1..=16"), "{e}");
    src.assert_no_leftovers();
}

#[test]
fn a_docker_schema_2_image_pulls_and_shows_per_layer_progress_on_a_terminal() {
    if !ready("a_docker_schema_2_image_pulls_and_shows_per_layer_progress_on_a_terminal") {
        return;
    }
    let reg = Registry::start(None);
    // Docker Hub serves most images as Docker schema 2; skopeo writes one from
    // the fixture's docker-archive (gzip layers: schema 2 has no zstd).
    let target = format!("{}/fixtures/busybox:docker", reg.host());
    let archive = format!("docker-archive:{}", fixture_dir().join("busybox-docker.tar").display());
    let out = Command::new("skopeo")
        .args(["copy", "-q", "--format", "v2s2", "--dest-tls-verify=false", &archive])
        .arg(format!("docker://{target}"))
        .output()
        .expect("run skopeo");
    assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
    let raw: serde_json::Value = serde_json::from_slice(&skopeo_raw(&target)).unwrap();
    assert_eq!(raw["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
    let served = skopeo_digest(&target);

    // On a terminal (script(1) gives exprun a pty) each layer has its bar.
    let root = TestRoot::new();
    let cmd = format!("{} --root {} pull {target}", common::exprun_bin().display(), root.path().display());
    let out = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let layers: Vec<String> =
        raw["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect();
    assert_eq!(layers.len(), 2);
    for l in &layers {
        let short = &l[7..19];
        assert!(text.contains(&format!("{short} [")), "no bar for layer {short}: {text:?}");
    }
    assert!(text.contains(&served), "{text:?}");

    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&root, &["image", "inspect", &target])).unwrap();
    assert_eq!(inspect["manifest_digest"], served.as_str());
    let (code, stdout, stderr) = root.run(&[&target, "--", "echo", "docker-schema-2"]);
    assert_eq!((code, stdout.as_str()), (0, "docker-schema-2\n"), "{stderr}");
    assert_eq!(root.last_record()["image"]["manifest_digest"], served.as_str());
    // Not a terminal: no bars, only the summary line.
    let quiet = TestRoot::new();
    let out = quiet.exprun(&["pull", &target], None);
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    root.assert_no_leftovers();
}

#[test]
fn a_layer_whose_content_is_not_its_diff_id_is_refused_and_nothing_is_stored() {
    if !ready("a_layer_whose_content_is_not_its_diff_id_is_refused_and_nothing_is_stored") {
        return;
    }
    // The fixture with the config naming a wrong diff_id for its second layer:
    // every blob matches its digest, the layer's content does not match the config.
    let layout = tempfile::tempdir().unwrap();
    let (src, dir) = (fixture_dir().join("busybox-oci"), layout.path());
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    for e in std::fs::read_dir(src.join("blobs/sha256")).unwrap().flatten() {
        std::fs::copy(e.path(), dir.join("blobs/sha256").join(e.file_name())).unwrap();
    }
    std::fs::copy(src.join("oci-layout"), dir.join("oci-layout")).unwrap();
    let blob = |d: &str| std::fs::read(dir.join("blobs/sha256").join(&d[7..])).unwrap();
    let put = |bytes: &[u8]| {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(dir.join("blobs/sha256").join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let mut manifest: serde_json::Value = serde_json::from_slice(&blob(&pinned("MANIFEST_DIGEST"))).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let wrong = format!("sha256:{}", hex::encode(Sha256::digest(b"not this layer")));
    config["rootfs"]["diff_ids"][1] = wrong.clone().into();
    let (config_d, config_n) = put(&serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = config_d.into();
    manifest["config"]["size"] = config_n.into();
    let (manifest_d, manifest_n) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_d, "size": manifest_n,
        "annotations": {"org.opencontainers.image.ref.name": "bad"}}]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    let reg = Registry::start(None);
    let target = format!("{}/fixtures/busybox:bad-diff-id", reg.host());
    let st = Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:bad", dir.display()))
        .arg(format!("docker://{target}"))
        .status()
        .unwrap();
    assert!(st.success(), "skopeo copy failed");

    let root = TestRoot::new();
    let e = fails(&root, &["pull", &target]);
    assert!(e.contains(&pinned("LAYER2_DIGEST")) && e.contains("diff_id") && e.contains(&wrong), "{e}");
    assert_eq!(ok(&root, &["image", "ls", "--json"]).trim(), "[]");
    let layers: Vec<_> = std::fs::read_dir(root.path().join("store/layers")).unwrap().flatten().collect();
    assert!(layers.is_empty(), "{layers:?}");
    root.assert_no_leftovers();
}

#[test]
fn a_pushed_run_replays_and_verifies_on_another_machine() {
    if !ready("a_pushed_run_replays_and_verifies_on_another_machine") {
        return;
    }
    let reg = Registry::start(None);
    let a = TestRoot::with_busybox();
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("in")).unwrap();
    std::fs::write(work.path().join("in/data.csv"), "1,2,3\n4,5,6\n").unwrap();
    let input = format!("{}:/in", work.path().join("in").display());
    let output = format!("{}:/out", work.path().join("out").display());
    let (code, _, stderr) = a.run(&[
        "--name",
        "exp",
        "--input",
        &input,
        "--output",
        &output,
        "busybox",
        "--",
        "sh",
        "-c",
        "wc -l < /in/data.csv > /out/lines; echo counted",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let original = a.last_record();
    let id = original["run_id"].as_str().unwrap().to_string();

    let target = format!("{}/lab/exp:v1", reg.host());
    let out = ok(&a, &["push", "--run", "--include-inputs", "exp", &target]);
    assert!(out.contains(&format!("exprun replay oci://{target}")), "{out}");
    let lean = format!("{}/lab/exp:lean", reg.host());
    ok(&a, &["push", "--run", "exp", &lean]);
    // The colleague's machine has neither the inputs nor the outputs.
    drop(work);

    let b = TestRoot::new();
    let out = b.exprun(&["replay", &format!("oci://{target}")], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("no drift"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "counted\n");
    let replay = b.last_record();
    assert_eq!(replay["replay_of"], id.as_str());
    assert_eq!(replay["outputs"][0]["tree"]["digest"], original["outputs"][0]["tree"]["digest"]);
    assert_eq!(replay["image"]["manifest_digest"], pinned("MANIFEST_DIGEST").as_str());
    // The shared copy of the record arrived, with the same digests and the
    // host's paths replaced, and the kept stdout with it.
    let fetched: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.path().join("runs").join(&id).join("record.json")).unwrap())
            .unwrap();
    for field in ["run_id", "outputs/0/tree", "inputs/0/tree", "stdout", "image", "determinism"] {
        let at = format!("/{field}");
        assert_eq!(fetched.pointer(&at), original.pointer(&at), "{field}");
    }
    assert_eq!(fetched["inputs"][0]["source"], "/exprun-withheld/input/in");
    assert_eq!(fetched["command_line"][0], "exprun");
    assert_eq!(std::fs::read_to_string(b.path().join("runs").join(&id).join("stdout")).unwrap(), "counted\n");

    // verify compares against the artifact's outputs.
    let out = b.exprun(&["verify", &id], None);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("REPRODUCED"));

    // An image layer that arrives corrupted: the replay fails, and the record
    // and files it fetched before are gone again.
    let proxy = Proxy::start(reg.port, Mode::Corrupt { digest: pinned("LAYER1_DIGEST") });
    let d = TestRoot::new();
    let e = fails(&d, &["replay", &format!("oci://{}/lab/exp:v1", proxy.host())]);
    assert!(e.contains("digest mismatch"), "{e}");
    assert!(!d.path().join("runs").join(&id).exists(), "a half-fetched run was left");
    d.assert_no_leftovers();

    // Without its inputs, the replay says which path it needs.
    let c = TestRoot::new();
    let e = fails(&c, &["replay", &format!("oci://{lean}")]);
    assert!(e.contains("/in"), "{e}");
    // An image is not a run.
    let image = format!("{}/fixtures/busybox:img", reg.host());
    push_fixture(&image);
    let e = fails(&c, &["replay", &format!("oci://{image}")]);
    assert!(e.contains("not a run pushed with exprun push --run"), "{e}");
    // A bundle run has nothing to replay.
    let e = fails(&a, &["push", "--run", "nope", &target]);
    assert!(e.contains("nope"), "{e}");
    b.assert_no_leftovers();
    c.assert_no_leftovers();
}

#[test]
fn a_built_image_travels_through_the_registry_unchanged() {
    if !ready("a_built_image_travels_through_the_registry_unchanged") {
        return;
    }
    // The lab's builder image is on its registry; a researcher pulls it, builds
    // on it and pushes the result next to it.
    let reg = Registry::start(None);
    let proxy = Proxy::start(reg.port, Mode::Plain);
    let builder = format!("{}/s2i/builder:1", proxy.host());
    ok(&TestRoot::with_builder(), &["push", "-q", "builder:latest", &builder]);
    let a = TestRoot::new();
    ok(&a, &["pull", "-q", &builder]);
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("app.sh"), "echo \"hello from $(cat message.txt)\"\n").unwrap();
    std::fs::write(src.path().join("message.txt"), "the lab\n").unwrap();
    let src = src.path().to_str().unwrap();
    let out =
        ok(&a, &["build", "-q", "--compress", "gzip", "--builder", &builder, "--source", src, "-t", "app:1"]);
    let built = out.trim().to_string();
    let target = format!("{}/lab/app:1", proxy.host());
    let out = ok(&a, &["push", "app:1", &target]);
    assert!(out.contains(&built), "{out}");
    // The builder's layers are mounted from its repository, not sent again;
    // the new layer and the new config are uploaded.
    let builder_layers: Vec<String> = inspect_layers(&a, &builder);
    let mounted = format!(
        "2 blobs uploaded, {} mounted from other repositories, 0 already there",
        builder_layers.len()
    );
    assert!(out.contains(&mounted), "{out}");
    let log = proxy.requests();
    for l in &builder_layers {
        assert!(
            log.iter().any(|r| r.starts_with("POST /v2/lab/app/blobs/uploads/?mount=")
                && r.contains(l.as_str())
                && r.contains("from=s2i/builder")),
            "no mount of {l}: {log:#?}"
        );
    }
    let puts = log.iter().filter(|r| r.starts_with("PUT /v2/lab/app/blobs/uploads/")).count();
    assert_eq!(puts, 2, "{log:#?}");
    assert_eq!(skopeo_digest(&target), built);

    let b = TestRoot::new();
    assert_eq!(ok(&b, &["pull", "-q", &target]).trim(), built);
    let (code, stdout, stderr) = b.run(&[&target]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "hello from the lab\n");
    a.assert_no_leftovers();
    b.assert_no_leftovers();
}

/// The layer digests of a stored image.
fn inspect_layers(root: &TestRoot, reference: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&ok(root, &["image", "inspect", reference])).unwrap();
    v["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
}
