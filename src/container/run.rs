//! `exprun run --bundle`: a bundle created, started and supervised in the
//! foreground, as runc's `run`.

use std::time::SystemTime;

use super::create::{check_preserved_fds, plan_bundle, write_state, CreateOptions};
use super::{hook_state, load};
use crate::cgroups::CgroupHost;
use crate::error::Result;
use crate::plan;
use crate::spawn;
use crate::state::Root;

/// `exprun run --bundle` in the foreground (runc's `run`): create, start and
/// supervise the container to its end, forwarding signals and copying its
/// output, then remove it and record the run with its exit status. While it
/// runs, `state`, `exec`, `kill`, `ps` and `delete --force` see it.
pub fn run(root: &Root, o: &CreateOptions<'_>) -> Result<crate::run::RunResult> {
    if o.console_socket.is_some() {
        return Err(crate::Error::Usage(
            "--console-socket needs --detach; in the foreground exprun itself holds the terminal".into(),
        ));
    }
    check_preserved_fds(o.preserve_fds)?;
    let started = SystemTime::now();
    let cgroups = CgroupHost::detect().map_err(plan::Error::from)?;
    let plan = plan_bundle(root, o, &cgroups, true)?;
    let on_created = |created: &spawn::Created| write_state(o, &plan, created, true);
    let on_exec = || {
        if let Ok(c) = load(root, o.id) {
            // A failing poststart hook is reported, not fatal (runtime spec).
            if let Err(e) =
                crate::hooks::run_all("poststart", &c.plan.hooks.poststart, &hook_state(&c, "running"))
            {
                eprintln!("exprun: warning: {e}");
            }
        }
    };
    let result = crate::run::run_planned(
        root,
        &plan,
        crate::run::Planned {
            created: started,
            cgroups: &cgroups,
            inputs: Vec::new(),
            output_dirs: Vec::new(),
            store_lock: None,
            on_created: Some(&on_created),
            on_exec: Some(&on_exec),
            quiet: false,
            keep_upper_at: None,
            stop_on_signal: false,
            preserve_fds: o.preserve_fds,
        },
    )?;
    let state = crate::hooks::state_json(
        o.id,
        "stopped",
        0,
        &o.bundle.display().to_string(),
        &serde_json::to_value(plan.spec.annotations()).unwrap_or_default(),
    );
    if let Err(e) = crate::hooks::run_all("poststop", &plan.hooks.poststop, &state) {
        eprintln!("exprun: warning: {e}");
    }
    Ok(result)
}
