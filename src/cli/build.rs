//! `exprun build`: parse the options into [`BuildOptions`] and call [`crate::build::build`].

use std::path::PathBuf;

use clap::{ArgAction, Args};

use super::Globals;
use crate::build::layer::Compression;
use crate::build::BuildOptions;
use crate::error::Result;
use crate::spec::options::{self as o, Network};

/// The options of `exprun build`.
#[derive(Debug, Args)]
#[command(after_help = "Source-to-image, as OpenShift's s2i: the builder image's assemble script \
    (in the directory its label io.openshift.s2i.scripts-url=image:///PATH names, else \
    /usr/libexec/s2i) runs in a recorded container as the builder's user, with a copy of the source \
    at /tmp/src; what it writes becomes one new layer, and the new image runs the builder's run \
    script. /tmp/src itself is not in the image. As with s2i, the source may carry \
    .s2i/environment (variables), .s2i/bin/assemble (its own assemble) and .s2iignore (globs of \
    paths left out of the copy).\n\n\
    The source may be another user's: nothing is read through a symlink. Symlinks in it are copied \
    as symlinks; .s2iignore and .s2i/* must be regular files of the source (a symlink there is \
    refused); a symlink on the --source path is followed only when root owns it.\n\n\
    Reproducible: every timestamp in the layer is SOURCE_DATE_EPOCH, entries are sorted and owners \
    numeric, so the same source, builder and epoch give the same image digest.\n\n\
    Exit status: 0 when the image was built; 125 when it was not (the builder cannot build, the \
    source is missing, assemble failed or was interrupted), with no image and no scratch files left. \
    When assemble ran, the message names its run: `exprun runs show RUN` shows the record, and the \
    output is kept next to it. An interrupt (Ctrl-C) stops the assemble step at once.\n\n\
    Example:\n  exprun build --builder s2i-python:3.12 --source ./app -t myapp:1 && exprun run myapp:1")]
pub struct BuildArgs {
    /// The builder image: NAME[:TAG], NAME@sha256:..., or a digest prefix
    #[arg(long, value_name = "IMAGE")]
    builder: String,
    /// The application source directory (copied, symlinks as symlinks; the copy is
    /// given to assemble)
    #[arg(long, value_name = "DIR")]
    source: PathBuf,
    /// Name of the new image
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    tag: String,
    /// Set an environment variable for assemble (NAME=VALUE, or NAME to pass the
    /// caller's value); it is also set in the new image unless it looks secret
    /// by name (*TOKEN*, *PASSWORD*, *KEY*, ...) or content (a URL's password, ...)
    #[arg(short = 'e', long = "env", value_name = "NAME[=VALUE]", action = ArgAction::Append)]
    env: Vec<String>,
    /// Network of the assemble step: none (loopback only) or host (to download
    /// dependencies; the record lists the network as not pinned)
    #[arg(long, value_name = "MODE", default_value = "none", value_parser = ["none", "host"])]
    network: String,
    /// Timestamp of every file in the new layer and the image's created time, in
    /// seconds since 1970 [default: $SOURCE_DATE_EPOCH, else 0]
    #[arg(long = "source-date-epoch", value_name = "SECONDS")]
    source_date_epoch: Option<String>,
    /// Compression of the new layer: none (its digest depends on the content
    /// alone) or gzip (a quarter to a third of the size for most software, and the
    /// same digest for the same content with the same exprun; another version's
    /// compressor may give other bytes)
    #[arg(long, value_name = "FORMAT", default_value = "none", value_parser = ["none", "gzip"])]
    compress: String,
    /// Memory limit of the assemble step, e.g. 2g
    #[arg(short = 'm', long = "memory", value_name = "SIZE")]
    memory: Option<String>,
    /// CPU limit of the assemble step, as a number of CPUs
    #[arg(long, value_name = "N")]
    cpus: Option<String>,
    /// Process limit of the assemble step
    #[arg(long = "pids-limit", value_name = "N")]
    pids_limit: Option<String>,
    /// Do not show assemble's output (it is kept with the run record); print only
    /// the new image's digest
    #[arg(short = 'q', long)]
    quiet: bool,
}

/// Run `exprun build`.
pub fn run(globals: &Globals, a: BuildArgs) -> Result<i32> {
    let lookup = |n: &str| std::env::var(n).ok();
    let mut env = Vec::new();
    for e in &a.env {
        env.extend(o::parse_env("--env", e, &lookup)?);
    }
    let opts = BuildOptions {
        builder: a.builder,
        source: a.source,
        tag: a.tag,
        env,
        network: if a.network == "host" { Network::Host } else { Network::None },
        source_date_epoch: crate::build::source_date_epoch(
            a.source_date_epoch.as_deref(),
            std::env::var("SOURCE_DATE_EPOCH").ok().as_deref(),
        )?,
        memory: a.memory.map(|m| o::parse_memory(&m)).transpose()?,
        cpus: a.cpus.map(|c| o::parse_cpus(&c, crate::record::host::cpus_online())).transpose()?,
        pids_limit: a.pids_limit.map(|p| o::parse_pids_limit(&p)).transpose()?,
        quiet: a.quiet,
        compression: if a.compress == "gzip" { Compression::Gzip } else { Compression::None },
    };
    let r = crate::build::build(&globals.state(), &opts, std::env::args().collect())?;
    if opts.quiet {
        println!("{}", r.manifest_digest);
    } else {
        let l = &r.layer;
        let blob = match l.compression {
            Compression::None => String::new(),
            Compression::Gzip => format!(", {} bytes gzip'd as {}", l.size, l.digest),
        };
        eprintln!(
            "exprun: assembled in run {}; layer {} ({} entries, {} bytes{blob})",
            r.run_id, l.diff_id, l.entries, l.tar_size
        );
        println!("built {} {}", r.name, r.manifest_digest);
    }
    Ok(0)
}
