//! Unit tests of the run options' parsers.

use super::*;
use crate::record::files::Keep;

#[test]
fn cpu_lists_parse_and_print_back() {
    assert_eq!(parse_cpuset("0-2,6,1").unwrap(), [0, 1, 2, 6]);
    assert_eq!(format_cpuset(&[0, 1, 2, 6, 8, 9]), "0-2,6,8-9");
    for bad in ["", "a", "3-1", "0-99999"] {
        assert!(parse_cpuset(bad).is_err(), "{bad}");
    }
    let e = parse_cpuset_option("0-5", &[0, 1]).unwrap_err().to_string();
    assert!(e.contains("--cpuset-cpus") && e.contains("CPU 2 is not available") && e.contains("0-1"), "{e}");
}

#[test]
fn pass_env_takes_matching_names_only() {
    let caller: Vec<(String, String)> =
        [("CUDA_HOME", "/c"), ("CUDA_X", "1"), ("HOME", "/root"), ("SEED", "7")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let got = pass_env(&["CUDA_*".into(), "SEED".into()], &caller).unwrap();
    let names: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["CUDA_HOME", "CUDA_X", "SEED"]);
    assert!(pass_env(&["A=1".into()], &caller).unwrap_err().to_string().contains("--pass-env"));
    assert_eq!(parse_umask("027").unwrap(), 0o027);
    assert!(parse_umask("999").is_err());
}

#[test]
fn sizes_accept_units_and_refuse_nonsense() {
    assert_eq!(parse_size("x", "100").unwrap(), 100);
    assert_eq!(parse_size("x", "64m").unwrap(), 64 << 20);
    assert_eq!(parse_size("x", "64MiB").unwrap(), 64 << 20);
    assert_eq!(parse_size("x", "1.5g").unwrap(), 3 << 29);
    assert_eq!(parse_size("x", "512K").unwrap(), 512 << 10);
    for bad in ["", "m", "-1m", "0", "12q", "1e400"] {
        assert!(parse_size("x", bad).is_err(), "{bad}");
    }
    let e = parse_memory("1m").unwrap_err().to_string();
    assert!(e.contains("--memory") && e.contains("minimum is 6 MiB"), "{e}");
}

#[test]
fn cpus_bounded_by_online_count() {
    assert_eq!(parse_cpus("1.5", 2).unwrap(), 1.5);
    assert!(parse_cpus("3", 2).unwrap_err().to_string().contains("2 CPUs online"));
    assert!(parse_cpus("0", 2).is_err());
    assert!(parse_cpus("abc", 2).is_err());
}

#[test]
fn host_mounts_are_normalised_and_checked() {
    let cwd = Path::new("/home/r/exp");
    let m = parse_host_mount("-v", "data/../in:/in:ro", cwd, true).unwrap();
    assert_eq!(
        m,
        HostMount {
            source: "/home/r/exp/in".into(),
            destination: "/in".into(),
            readonly: true,
            keep: Default::default()
        }
    );
    assert!(parse_host_mount("-v", "/a:rel", cwd, true).is_err());
    assert!(parse_host_mount("-v", "/a:/b/../c", cwd, true).is_err());
    assert!(parse_host_mount("-v", "/a:/", cwd, true).is_err());
    assert!(parse_host_mount("-v", "/a:/b:rx", cwd, true).unwrap_err().to_string().contains("rx"));
    assert!(parse_host_mount("--input", "/a:/b:ro", cwd, false).is_err());
    assert_eq!(container_path("-w", "/a/./b/").unwrap(), Path::new("/a/b"));
}

#[test]
fn output_options_say_what_is_kept() {
    let cwd = Path::new("/w");
    let plain = parse_output("out:/out", cwd).unwrap();
    assert_eq!((plain.source.to_str(), plain.keep), (Some("/w/out"), Keep::default()));
    assert_eq!(parse_output("/o:/out:suid", cwd).unwrap().keep, Keep { suid: true, dev: false });
    assert_eq!(parse_output("/o:/out:dev,suid", cwd).unwrap().keep, Keep { suid: true, dev: true });
    let e = parse_output("/o:/out:ro", cwd).unwrap_err().to_string();
    assert!(e.contains("--output") && e.contains("\"ro\"") && e.contains("use suid"), "{e}");
    assert_eq!(parse_digest_limit("none").unwrap(), u64::MAX);
    assert_eq!(parse_digest_limit("2g").unwrap(), 2 << 30);
    assert!(parse_digest_limit("0").unwrap_err().to_string().contains("--output-digest-limit"));
}

#[test]
fn env_from_flags_and_files() {
    let lookup = |n: &str| (n == "HOSTVAR").then(|| "fromhost".to_string());
    assert_eq!(parse_env("-e", "A=1=2", &lookup).unwrap(), Some(("A".into(), "1=2".into())));
    assert_eq!(parse_env("-e", "HOSTVAR", &lookup).unwrap(), Some(("HOSTVAR".into(), "fromhost".into())));
    assert_eq!(parse_env("-e", "UNSET", &lookup).unwrap(), None);
    assert!(parse_env("-e", "=x", &lookup).is_err());
    let text = "# comment\n\nA=1\n  B=two words\nHOSTVAR\nBAD NAME=1\n";
    let err = parse_env_file(Path::new("/tmp/e.env"), text, &lookup).unwrap_err().to_string();
    assert!(err.contains("/tmp/e.env") && err.contains("line 6"), "{err}");
    let ok = parse_env_file(Path::new("/e"), "A=1\n  B=two words\nHOSTVAR\n", &lookup).unwrap();
    assert_eq!(ok.len(), 3);
    assert_eq!(ok[1], ("B".into(), "two words".into()));
}

#[test]
fn ulimits_caps_hostnames_names() {
    assert_eq!(
        parse_ulimit("nofile=1024:4096").unwrap(),
        Ulimit { name: "RLIMIT_NOFILE".into(), soft: 1024, hard: 4096 }
    );
    assert_eq!(parse_ulimit("core=unlimited").unwrap().hard, u64::MAX);
    assert!(parse_ulimit("nofile=10:5").is_err());
    assert!(parse_ulimit("bogus=1").is_err());
    assert_eq!(parse_capability("--cap-add", "net_admin").unwrap(), "CAP_NET_ADMIN");
    assert_eq!(parse_capability("--cap-drop", "all").unwrap(), "ALL");
    assert!(parse_capability("--cap-add", "CAP_FLY").is_err());
    assert!(parse_hostname("lab-1.example").is_ok());
    assert!(parse_hostname("-bad").is_err());
    assert!(parse_hostname(&"a".repeat(65)).is_err());
    assert!(parse_name("exp_1.a-b").is_ok());
    assert!(parse_name("-x").is_err());
    assert!(parse_name("a/b").is_err());
    let long = "a".repeat(MAX_NAME + 1);
    let e = parse_name(&long).unwrap_err().to_string();
    assert!(e.contains("129 characters long; a name has at most 128"), "{e}");
    assert!(parse_name(&"a".repeat(MAX_NAME)).is_ok());
}
