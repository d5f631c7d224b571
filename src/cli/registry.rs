//! `exprun pull`, `exprun push`, `exprun login` and `exprun logout`.

use std::path::PathBuf;

use clap::Args;

use super::Globals;
use crate::error::{Error, Result};
use crate::image::reference::RemoteRef;
use crate::image::{ImageStore, Limits};
use crate::registry::auth::{self, Credentials};
use crate::registry::http::{Timeouts, DEFAULT_TIMEOUT};
use crate::registry::pull::{self, PullOptions};
use crate::registry::{parse_ref, push, Client, ClientOptions, Transfer};

/// How to reach a registry.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Speak plain HTTP to the registry (the default for localhost and 127.x)
    #[arg(long = "plain-http")]
    pub plain_http: bool,
    /// Check the registry's TLS certificate against the system's trust store
    #[arg(long = "tls-verify", value_name = "BOOL", default_value = "true", action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// The auth file to read credentials from (to write them to, for login)
    /// [default: $REGISTRY_AUTH_FILE, podman's, then docker's]
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Seconds a registry request may take to connect, and then to answer;
    /// a manifest or token must arrive whole within them, and no transfer may
    /// go that long without a byte
    #[arg(
        long = "registry-timeout",
        value_name = "SECONDS",
        env = "EXPRUN_REGISTRY_TIMEOUT",
        default_value_t = DEFAULT_TIMEOUT.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..=86400)
    )]
    pub registry_timeout: u64,
    /// Once --registry-timeout has passed, a layer or blob transfer must have
    /// moved at least this many bytes a second on average (k, m suffixes;
    /// 0: no minimum)
    #[arg(
        long = "registry-min-rate",
        value_name = "BYTES",
        env = "EXPRUN_REGISTRY_MIN_RATE",
        default_value = "16k",
        value_parser = parse_min_rate
    )]
    pub registry_min_rate: u64,
}

/// `--registry-min-rate`: a size, or 0.
fn parse_min_rate(s: &str) -> std::result::Result<u64, String> {
    match s.trim() {
        "0" => Ok(0),
        s => crate::spec::options::parse_size("--registry-min-rate", s).map_err(|e| e.to_string()),
    }
}

impl RegistryArgs {
    /// As client options.
    pub fn options(&self) -> ClientOptions {
        ClientOptions {
            plain_http: self.plain_http,
            insecure_tls: !self.tls_verify,
            auth_file: self.authfile.clone(),
            timeouts: Timeouts {
                timeout: std::time::Duration::from_secs(self.registry_timeout),
                min_rate: self.registry_min_rate,
            },
            ..ClientOptions::default()
        }
    }
}

/// `exprun pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// [REGISTRY/]REPOSITORY[:TAG][@DIGEST]; Docker Hub when no registry is named
    pub reference: String,
    /// Pick this OS/ARCH[/VARIANT] from a multi-platform image [default: the host's]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Print only the manifest digest, and no progress bars
    #[arg(long, short)]
    pub quiet: bool,
    /// Layers to download at once
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub jobs: u16,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `exprun push`.
#[derive(Debug, Args)]
#[command(after_help = "With --run, the artifact holds the run's record, its kept stdout and stderr, \
    and its outputs exactly as recorded (a file added, changed or removed since the run refuses the \
    push, naming it); the inputs only with --include-inputs. Before anything is sent, exprun lists on \
    stderr every layer and file with its size, and each file that holds secrets, by its name (.env, \
    .git/config, *.pem, id_rsa, credentials, ...) or by its content (passwords in URLs, tokens, \
    private keys); a push that would upload secrets is refused unless --allow-secrets. The shared \
    record has the host's paths (inputs, outputs, volumes, the state root, the home directory), \
    exprun's path and the cgroup's directories replaced by /exprun-withheld/... placeholders unless \
    --keep-host-details; the environment and the command stay as the command saw them.")]
pub struct PushArgs {
    /// The stored image (name[:tag], name@sha256:..., or a digest prefix), or
    /// with --run the run id or name
    pub source: String,
    /// Where to: [REGISTRY/]REPOSITORY[:TAG]
    pub reference: String,
    /// Push a recorded run (record, kept output streams, outputs) as an OCI
    /// artifact, for `exprun replay oci://REF`
    #[arg(long)]
    pub run: bool,
    /// With --run: upload the inputs too (checked against the record)
    #[arg(long = "include-inputs", requires = "run")]
    pub include_inputs: bool,
    /// With --run: upload files that hold secrets instead of refusing
    #[arg(long = "allow-secrets", requires = "run")]
    pub allow_secrets: bool,
    /// With --run: share the record with the host's paths, exprun's path and
    /// the cgroup's directories as they are
    #[arg(long = "keep-host-details", requires = "run")]
    pub keep_host_details: bool,
    /// With --run: list what would be uploaded, and upload nothing
    #[arg(long = "dry-run", requires = "run")]
    pub dry_run: bool,
    /// Print only the manifest digest, and no progress bars
    #[arg(long, short)]
    pub quiet: bool,
    /// Blobs to upload at once
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub jobs: u16,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Run `exprun pull`.
pub fn pull(globals: &Globals, a: PullArgs) -> Result<i32> {
    let r = parse_ref(&a.reference)?;
    let store = ImageStore::open(&globals.store_dir())?;
    let o = PullOptions {
        platform: a.platform,
        jobs: a.jobs.into(),
        progress: !a.quiet,
        limits: Limits::default(),
        client: a.registry.options(),
    };
    let p = pull::pull(&store, &r, &o)?;
    if a.quiet {
        println!("{}", p.summary.manifest_digest);
    } else {
        println!(
            "pulled {} {} ({} layers fetched, {} already stored)",
            p.summary.name.as_deref().unwrap_or(&p.origin.reference),
            p.summary.manifest_digest,
            p.layers_fetched,
            p.layers_reused
        );
    }
    Ok(0)
}

/// Pull `image` for `exprun run --pull POLICY`; step 2 of the run decides when
/// (`crate::run::Pull`).
pub fn pull_for_run(globals: &Globals, image: &str, policy: &str, registry: &RegistryArgs) -> Result<()> {
    let r: RemoteRef = parse_ref(image)?;
    // A rootless caller with subordinate ids pulls as `exprun pull` does, in a
    // user namespace that maps them (so the layers keep their owners): that is
    // a process of its own.
    if !nix::unistd::geteuid().is_root() && crate::userns::caller_maps().is_some() {
        let mut pull = std::process::Command::new("/proc/self/exe");
        pull.arg("--root").arg(&globals.root).args(["pull", "-q", image]);
        pull.args(["--tls-verify", if registry.tls_verify { "true" } else { "false" }]);
        if registry.plain_http {
            pull.arg("--plain-http");
        }
        if let Some(f) = &registry.authfile {
            pull.arg("--authfile").arg(f);
        }
        pull.arg("--registry-timeout").arg(registry.registry_timeout.to_string());
        pull.arg("--registry-min-rate").arg(registry.registry_min_rate.to_string());
        let status = pull.stdout(std::process::Stdio::null()).status().map_err(|source| Error::Io {
            op: format!("cannot start exprun pull for --pull {policy}"),
            source,
        })?;
        return match status.code() {
            Some(0) => Ok(()),
            _ => Err(Error::Io {
                op: format!("--pull {policy}: exprun pull {image}"),
                source: std::io::Error::other(format!("it failed ({status}); its error is above")),
            }),
        };
    }
    let o = PullOptions { client: registry.options(), ..PullOptions::default() };
    let store = ImageStore::open(&globals.store_dir())?;
    let p = pull::pull(&store, &r, &o)?;
    eprintln!("exprun: pulled {} {}", p.origin.reference, p.summary.manifest_digest);
    Ok(())
}

/// Run `exprun push`.
pub fn push(globals: &Globals, a: PushArgs) -> Result<i32> {
    let r = parse_ref(&a.reference)?;
    let store = ImageStore::open(&globals.store_dir())?;
    let transfer = Transfer { jobs: a.jobs.into(), progress: !a.quiet };
    if a.run {
        use crate::registry::artifact::{plan_push, upload, PushOptions};
        let opts = PushOptions { include_inputs: a.include_inputs, keep_host_details: a.keep_host_details };
        let plan = plan_push(&globals.state(), &store, &a.source, &opts)?;
        eprint!("exprun: {}", plan.listing());
        if let Some(refused) = plan.refusal().filter(|_| !a.allow_secrets) {
            return Err(refused.into());
        }
        if a.dry_run {
            eprintln!("exprun: --dry-run: nothing was uploaded to {r}");
            return Ok(0);
        }
        let p = upload(&plan, &store, &r, &a.registry.options(), &transfer)?;
        let at = RemoteRef { tag: Some(p.tag.clone()), digest: None, ..r };
        if a.quiet {
            println!("{}", p.digest);
        } else {
            println!(
                "pushed run {} to {at} {} ({} blobs uploaded); replay it with: exprun replay oci://{at}",
                &p.run_id[..12],
                p.digest,
                p.uploaded
            );
        }
        return Ok(0);
    }
    let p = push::push_image(&store, &a.source, &r, &a.registry.options(), &transfer)?;
    if a.quiet {
        println!("{}", p.digest);
    } else {
        println!("pushed {r} {} ({})", p.digest, p.blobs);
    }
    Ok(0)
}

/// `exprun login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry, HOST[:PORT] (or HOST/NAMESPACE for credentials of one
    /// namespace); Docker Hub when not given
    pub registry: Option<String>,
    /// The user name [default: asked on the terminal]
    #[arg(short, long)]
    pub username: Option<String>,
    /// The password or token; it shows in the process list, so prefer
    /// --password-stdin [default: asked on the terminal]
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password or token from standard input (up to its first newline)
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    #[command(flatten)]
    pub registry_args: RegistryArgs,
}

/// `exprun logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry (or HOST/NAMESPACE) to forget; Docker Hub when not given
    #[arg(conflicts_with = "all")]
    pub registry: Option<String>,
    /// Forget every registry in the auth file
    #[arg(short, long)]
    pub all: bool,
    /// The auth file [default: as for login]
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

/// The auth file key for `registry` (Docker Hub when `None`), checked.
fn auth_key(registry: Option<&str>) -> Result<String> {
    let key = auth::normalise_key(registry.unwrap_or(crate::image::reference::DOCKER_HUB));
    let host = key.split('/').next().unwrap_or_default();
    // A registry is a reference's first part: parse one to check it.
    parse_ref(&format!("{host}/x"))
        .ok()
        .filter(|r| r.registry == host)
        .ok_or_else(|| Error::Usage(format!("{key:?} is not a registry: give HOST[:PORT], e.g. ghcr.io")))?;
    Ok(key)
}

fn auth_path(given: Option<PathBuf>) -> Result<PathBuf> {
    given.or_else(auth::write_path).ok_or_else(|| {
        Error::Usage(
            "no auth file to use: set $XDG_RUNTIME_DIR or $REGISTRY_AUTH_FILE, or give --authfile".into(),
        )
    })
}

/// Run `exprun login`: check the credentials with the registry, then store them.
pub fn login(a: LoginArgs) -> Result<i32> {
    let key = auth_key(a.registry.as_deref())?;
    let host = key.split('/').next().unwrap_or_default().to_string();
    let path = auth_path(a.registry_args.authfile.clone())?;
    let username = match a.username {
        Some(u) => u,
        None => ask(&format!("Username for {host}: "), true)?,
    };
    let secret = match (a.password, a.password_stdin) {
        (Some(p), _) => p,
        (None, true) => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map_err(|source| Error::Io {
                op: "--password-stdin: cannot read standard input".into(),
                source,
            })?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
        (None, false) => ask("Password: ", false)?,
    };
    if username.is_empty() || secret.is_empty() {
        return Err(Error::Usage("login: the user name and the password must not be empty".into()));
    }
    let creds = Credentials { username, secret };
    let o = ClientOptions { credentials: Some(creds.clone()), auth_file: None, ..a.registry_args.options() };
    let checked = Client::check_login(&host, &o)?;
    auth::store(&path, &key, &creds)?;
    if !checked {
        eprintln!("exprun: {host} asks for no credentials at /v2/, so they were stored without a check");
    }
    println!("Login Succeeded! ({key} in {})", path.display());
    Ok(0)
}

/// Run `exprun logout`.
pub fn logout(a: LogoutArgs) -> Result<i32> {
    let key = if a.all { None } else { Some(auth_key(a.registry.as_deref())?) };
    let path = auth_path(a.authfile)?;
    if !auth::remove(&path, key.as_deref())? {
        let what = key.map_or("any registry".to_string(), |k| k);
        return Err(Error::Usage(format!(
            "not logged in to {what} in {}; credentials from docker login are removed with docker logout",
            path.display()
        )));
    }
    println!(
        "Removed login credentials for {} from {}",
        key.as_deref().unwrap_or("every registry"),
        path.display()
    );
    Ok(0)
}

/// Ask on the terminal; the answer is not echoed unless `echo`.
fn ask(prompt: &str, echo: bool) -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::{IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::Usage(format!(
            "login: standard input is not a terminal, so {} cannot be asked for; give -u USER and --password-stdin",
            if echo { "the user name" } else { "the password" }
        )));
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let saved = if echo { None } else { tcgetattr(&stdin).ok() };
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
    }
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    if let Some(t) = &saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, t);
        eprintln!();
    }
    read.map_err(|source| Error::Io { op: "login: cannot read the terminal".into(), source })?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
