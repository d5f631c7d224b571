//! The deterministic profile of `exprun run`: the settings exprun fixes so that a
//! run's result depends on its inputs and not on the host or the moment ("pins"),
//! and the sources of nondeterminism it cannot fix, both recorded.
//!
//! [`resolve`] decides every pin from the options, the image and the host once;
//! the record keeps the decisions ([`Determinism`]), and a replay reuses them
//! rather than deciding again on another host (a thread count taken from the
//! host's CPUs stays what it was).

use serde::{Deserialize, Serialize};

use super::options::{Network, RunOptions};
use super::Error;

/// The pins `--unpin` can remove (`all` removes every one of them).
pub const UNPINNABLE: &[&str] = &["tz", "locale", "source-date-epoch", "threads", "pythonhashseed", "cublas"];

/// The variables that set a numeric library's thread count.
pub const THREAD_VARS: &[&str] = &["OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"];

/// Where a pin's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinSource {
    /// exprun's deterministic profile.
    Default,
    /// The image's config (its Env), which is part of the image's digest.
    Image,
    /// The command line (`-e`, `--hostname`, `--umask`, ...).
    User,
}

/// One setting fixed for the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The pin's name: `env`, `hostname`, `tz`, `locale`, `umask`, `network`,
    /// `home`, `source-date-epoch`, `threads`, `pythonhashseed`, `cublas`, `aslr`,
    /// `cpuset`.
    pub name: String,
    /// What it is set to, e.g. `TZ=UTC`, `022`, `none`.
    pub value: String,
    /// Who chose the value.
    pub source: PinSource,
}

/// A source of nondeterminism the run is still exposed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unpinned {
    /// Short name, e.g. `wall-clock`, `network`, `volume:/data`.
    pub source: String,
    /// What it means and, where there is one, how to pin it.
    pub detail: String,
}

/// The deterministic profile as applied to one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Determinism {
    /// Every pin applied.
    pub pins: Vec<Pin>,
    /// Every source of nondeterminism left.
    pub unpinned: Vec<Unpinned>,
}

impl Determinism {
    /// The value of the pin `name`, if applied.
    pub fn get(&self, name: &str) -> Option<&Pin> {
        self.pins.iter().find(|p| p.name == name)
    }

    /// The environment variables the pins set, `NAME=VALUE`, in pin order.
    pub fn env(&self) -> Vec<(String, String)> {
        self.pins
            .iter()
            .filter(|p| p.source == PinSource::Default && ENV_PINS.contains(&p.name.as_str()))
            .flat_map(|p| p.value.split(' ').filter_map(|kv| kv.split_once('=')))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The umask the pins set.
    pub fn umask(&self) -> u32 {
        self.get("umask").and_then(|p| u32::from_str_radix(&p.value, 8).ok()).unwrap_or(0o022)
    }

    /// Whether address-space randomisation stays on.
    pub fn aslr(&self) -> bool {
        self.get("aslr").is_none_or(|p| p.value == "on")
    }

    /// The CPUs the command is bound to (empty: any).
    pub fn cpuset(&self) -> Vec<usize> {
        self.get("cpuset").and_then(|p| super::options::parse_cpuset(&p.value).ok()).unwrap_or_default()
    }
}

/// The pins that are environment variables, set beneath the image's Env.
const ENV_PINS: &[&str] = &["tz", "locale", "source-date-epoch", "threads", "pythonhashseed", "cublas"];

/// What the pins depend on besides the options.
pub struct PinContext<'a> {
    /// The image's Env (a pinned variable it sets is left as the image says).
    pub image_env: &'a [String],
    /// The image config's `created` time.
    pub image_created: Option<&'a str>,
    /// CPUs exprun may run on.
    pub host_cpus: usize,
    /// The container user's home directory.
    pub home: &'a str,
    /// The hostname the container gets.
    pub hostname: &'a str,
}

/// Decide the deterministic profile for `opts`.
pub fn resolve(opts: &RunOptions, ctx: &PinContext<'_>) -> Result<Determinism, Error> {
    for u in &opts.unpin {
        if u != "all" && !UNPINNABLE.contains(&u.as_str()) {
            return Err(Error::Option {
                option: "--unpin",
                value: u.clone(),
                why: format!("not a pin that can be removed; one of: all, {}", UNPINNABLE.join(", ")),
            });
        }
    }
    let unpinned_by_user = |name: &str| opts.unpin.iter().any(|u| u == name || u == "all");
    let user_env = |name: &str| opts.env.iter().any(|(k, _)| k == name);
    let image_env =
        |name: &str| ctx.image_env.iter().any(|e| e.split_once('=').is_some_and(|(k, _)| k == name));

    let mut d = Determinism::default();
    let mut unpin =
        |source: &str, detail: String| d.unpinned.push(Unpinned { source: source.into(), detail });
    let mut pins: Vec<Pin> = Vec::new();

    let passed: Vec<&str> =
        opts.env.iter().filter(|(k, _)| opts.passed_env.contains(k)).map(|(k, _)| k.as_str()).collect();
    pins.push(Pin {
        name: "env".into(),
        value: if passed.is_empty() {
            "clean (image Env, pins and -e only)".into()
        } else {
            format!("clean, passed from the caller: {}", passed.join(","))
        },
        source: if passed.is_empty() { PinSource::Default } else { PinSource::User },
    });
    pins.push(Pin {
        name: "hostname".into(),
        value: ctx.hostname.into(),
        source: if opts.hostname.is_some() { PinSource::User } else { PinSource::Default },
    });
    pins.push(Pin {
        name: "umask".into(),
        value: format!("{:03o}", opts.umask.unwrap_or(0o022)),
        source: if opts.umask.is_some() { PinSource::User } else { PinSource::Default },
    });
    match opts.network {
        Network::None => {
            pins.push(Pin { name: "network".into(), value: "none".into(), source: PinSource::Default })
        }
        Network::Host => unpin(
            "network",
            "--network host: the command can reach the host's network, whose answers are not recorded".into(),
        ),
    }
    pins.push(Pin { name: "home".into(), value: format!("HOME={}", ctx.home), source: PinSource::Default });

    // Environment pins: beneath the image's Env and -e, each removable.
    let threads = if !opts.cpuset.is_empty() {
        opts.cpuset.len()
    } else if let Some(c) = opts.cpus {
        (c.ceil() as usize).max(1)
    } else {
        ctx.host_cpus.max(1)
    };
    let epoch = ctx
        .image_created
        .and_then(|c| humantime::parse_rfc3339_weak(c.trim_end_matches('Z')).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let gpu = opts.devices.gpu();
    let mut env_pin = |name: &str, vars: Vec<(&str, String)>| {
        if unpinned_by_user(name) {
            unpin(name, "removed with --unpin".into());
            return;
        }
        let (source, vars): (PinSource, Vec<(&str, String)>) = if vars.iter().any(|(k, _)| user_env(k)) {
            (PinSource::User, vars)
        } else if vars.iter().any(|(k, _)| image_env(k)) {
            (PinSource::Image, vars)
        } else {
            (PinSource::Default, vars)
        };
        let value = vars.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
        pins.push(Pin { name: name.into(), value, source });
    };
    env_pin("tz", vec![("TZ", "UTC".into())]);
    env_pin("locale", vec![("LANG", "C.UTF-8".into())]);
    env_pin("source-date-epoch", vec![("SOURCE_DATE_EPOCH", epoch.to_string())]);
    env_pin("threads", THREAD_VARS.iter().map(|v| (*v, threads.to_string())).collect());
    env_pin("pythonhashseed", vec![("PYTHONHASHSEED", "0".into())]);
    if gpu {
        env_pin("cublas", vec![("CUBLAS_WORKSPACE_CONFIG", ":4096:8".into())]);
    }

    pins.push(Pin {
        name: "aslr".into(),
        value: if opts.aslr { "on" } else { "off" }.into(),
        source: if opts.aslr { PinSource::Default } else { PinSource::User },
    });
    if !opts.cpuset.is_empty() {
        pins.push(Pin {
            name: "cpuset".into(),
            value: super::options::format_cpuset(&opts.cpuset),
            source: PinSource::User,
        });
    }

    // What stays free.
    unpin(
        "wall-clock",
        "the clock is the host's; a result that prints or depends on the time will differ".into(),
    );
    unpin(
        "randomness",
        "the kernel's random numbers (/dev/urandom, getrandom) differ on every run; seed your generators"
            .into(),
    );
    unpin("scheduling", "thread and process interleaving is up to the kernel".into());
    if opts.aslr {
        unpin(
            "aslr",
            "addresses are randomised; --aslr off fixes them (hash orders keyed by address)".into(),
        );
    }
    if opts.cpuset.is_empty() {
        unpin("cpu-placement", "the command may run on any CPU; --cpuset-cpus binds it".into());
    }
    for v in &opts.volumes {
        unpin(
            &format!("volume:{}", v.destination.display()),
            format!(
                "{} is bind-mounted without a digest; use --input to have it digested",
                v.source.display()
            ),
        );
    }
    if gpu {
        unpin(
            "gpu",
            "GPU kernels may choose nondeterministic algorithms; set your framework's deterministic mode"
                .into(),
        );
    }
    unpin("host", "kernel, CPU model and flags are recorded under host, not fixed".into());
    d.pins = pins;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::options::HostMount;

    fn options() -> RunOptions {
        serde_json::from_value(serde_json::json!({
            "image": "img", "command": [], "entrypoint": null, "env": [], "workdir": null, "user": null,
            "hostname": null, "volumes": [], "inputs": [], "outputs": [], "tmpfs": [], "memory": null,
            "cpus": null, "pids_limit": null, "network": "none", "name": null, "keep": false,
            "read_only": false, "tty": false, "interactive": false, "cap_add": [], "cap_drop": [],
            "ulimits": [], "cgroup_parent": null
        }))
        .unwrap()
    }

    fn ctx<'a>(image_env: &'a [String]) -> PinContext<'a> {
        PinContext {
            image_env,
            image_created: Some("2024-01-01T00:00:00Z"),
            host_cpus: 8,
            home: "/root",
            hostname: "exprun",
        }
    }

    #[test]
    fn the_default_profile_pins_everything_it_can_and_lists_the_rest() {
        let o = options();
        assert!(o.aslr, "ASLR stays on unless asked");
        let d = resolve(&o, &ctx(&[])).unwrap();
        let env = d.env();
        for want in [
            "TZ=UTC",
            "LANG=C.UTF-8",
            "SOURCE_DATE_EPOCH=1704067200",
            "OMP_NUM_THREADS=8",
            "PYTHONHASHSEED=0",
        ] {
            assert!(env.iter().any(|(k, v)| format!("{k}={v}") == want), "{want} in {env:?}");
        }
        assert_eq!(d.umask(), 0o022);
        assert_eq!(d.get("network").map(|p| p.value.as_str()), Some("none"));
        let unpinned: Vec<&str> = d.unpinned.iter().map(|u| u.source.as_str()).collect();
        assert_eq!(unpinned, ["wall-clock", "randomness", "scheduling", "aslr", "cpu-placement", "host"]);
        assert!(d.get("cublas").is_none(), "no GPU, no cuBLAS pin");
    }

    #[test]
    fn pins_yield_to_the_image_and_the_command_line_and_can_be_removed() {
        let mut o = options();
        o.env = vec![("TZ".into(), "Europe/Paris".into())];
        o.cpus = Some(1.5);
        o.unpin = vec!["pythonhashseed".into()];
        o.network = Network::Host;
        o.volumes = vec![HostMount {
            source: "/data".into(),
            destination: "/d".into(),
            readonly: true,
            keep: Default::default(),
        }];
        let d = resolve(&o, &ctx(&["LANG=de_DE.UTF-8".into()])).unwrap();
        assert_eq!(d.get("tz").map(|p| p.source), Some(PinSource::User));
        assert_eq!(d.get("locale").map(|p| p.source), Some(PinSource::Image));
        assert!(d.env().iter().all(|(k, _)| k != "TZ" && k != "LANG" && k != "PYTHONHASHSEED"));
        assert!(d.env().contains(&("OMP_NUM_THREADS".into(), "2".into())), "ceil(--cpus)");
        let unpinned: Vec<&str> = d.unpinned.iter().map(|u| u.source.as_str()).collect();
        for want in ["pythonhashseed", "network", "volume:/d"] {
            assert!(unpinned.contains(&want), "{want} in {unpinned:?}");
        }
        o.unpin = vec!["hostname".into()];
        let e = resolve(&o, &ctx(&[])).unwrap_err().to_string();
        assert!(e.contains("--unpin") && e.contains("tz, locale"), "{e}");
    }

    #[test]
    fn a_cpuset_sets_the_thread_count_and_a_gpu_the_cublas_pin() {
        let mut o = options();
        o.cpuset = vec![2, 3, 5];
        o.aslr = false;
        o.volumes = vec![HostMount {
            source: "/dev/nvidia0".into(),
            destination: "/dev/nvidia0".into(),
            readonly: false,
            keep: Default::default(),
        }];
        assert!(resolve(&o, &ctx(&[])).unwrap().get("cublas").is_none(), "-v is nodev: no GPU that way");
        o.devices.nodes = vec![crate::spec::devices::DeviceRequest {
            host: "/dev/nvidia0".into(),
            container: "/dev/nvidia0".into(),
            perms: "rwm".into(),
            kind: 'c',
            major: 195,
            minor: 0,
            mode: 0o666,
            uid: 0,
            gid: 0,
        }];
        let d = resolve(&o, &ctx(&[])).unwrap();
        assert!(d.env().contains(&("MKL_NUM_THREADS".into(), "3".into())));
        assert_eq!(d.cpuset(), [2, 3, 5]);
        assert!(!d.aslr());
        assert!(d.env().contains(&("CUBLAS_WORKSPACE_CONFIG".into(), ":4096:8".into())));
        assert!(d.unpinned.iter().any(|u| u.source == "gpu"));
    }
}
