//! `exprun pull` and `exprun push`.

use clap::Args;

use super::Globals;
use crate::error::{Error, Result};
use crate::image::{ImageStore, Limits};
use crate::registry::pull::{self, PullOptions};
use crate::registry::{parse_ref, push, ClientOptions, RemoteRef, Transfer};

/// How to reach a registry.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Speak plain HTTP to the registry (the default for localhost and 127.x)
    #[arg(long = "plain-http")]
    pub plain_http: bool,
    /// Check the registry's TLS certificate against the system's trust store
    #[arg(long = "tls-verify", value_name = "BOOL", default_value = "true", action = clap::ArgAction::Set)]
    pub tls_verify: bool,
}

impl RegistryArgs {
    /// As client options.
    pub fn options(&self) -> ClientOptions {
        ClientOptions { plain_http: self.plain_http, insecure_tls: !self.tls_verify }
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
pub struct PushArgs {
    /// The stored image (name[:tag], name@sha256:..., or a digest prefix), or
    /// with --run the run id or name
    pub source: String,
    /// Where to: [REGISTRY/]REPOSITORY[:TAG]
    pub reference: String,
    /// Push a recorded run (record, kept output streams, outputs and inputs) as
    /// an OCI artifact, for `exprun replay oci://REF`
    #[arg(long)]
    pub run: bool,
    /// With --run: leave the inputs out of the artifact
    #[arg(long = "no-inputs", requires = "run")]
    pub no_inputs: bool,
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

/// Pull `image` for `exprun run --pull` if the store lacks it (or always).
pub fn pull_for_run(globals: &Globals, image: &str, policy: &str, registry: &RegistryArgs) -> Result<()> {
    let store = ImageStore::open(&globals.store_dir())?;
    let wanted = match policy {
        "never" => false,
        "always" => true,
        _ => match store.resolve(image) {
            Ok(_) => false,
            Err(crate::image::Error::NotFound { .. }) => true,
            Err(e) => return Err(e.into()),
        },
    };
    if !wanted {
        return Ok(());
    }
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
        let status = pull
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| Error::Usage(format!("cannot start exprun pull for --pull {policy}: {e}")))?;
        return match status.code() {
            Some(0) => Ok(()),
            _ => {
                Err(Error::Usage(format!("--pull {policy}: exprun pull {image} failed (its error is above)")))
            }
        };
    }
    let o = PullOptions { client: registry.options(), ..PullOptions::default() };
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
        let p = crate::registry::artifact::push_run(
            &globals.state(),
            &store,
            &a.source,
            &r,
            &a.registry.options(),
            &transfer,
            !a.no_inputs,
        )?;
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
