//! `reprofile migrate`: the backfill-only plan, shown (`--dry-run`) or approved and applied.

use std::io::Write;

use crate::core::model::PlanMode;
use crate::engine::apply::ApplyOptions;
use crate::engine::orchestrate::{make_plan, make_plan_to_apply};
use crate::review::render;

use super::apply::{approve_and_apply, require_approval_channel, Approval};
use super::{
    check_lock_free, load_config, runtime, stdout, stdout_style, ConfigArgs, Ending, Stopping,
    Unread,
};

/// `migrate`, as the command line gave it.
pub(super) fn run(args: &ConfigArgs, dry_run: bool, auto_approve: bool) -> anyhow::Result<Ending> {
    let mut config = load_config(args)?;
    if !dry_run {
        require_approval_channel(auto_approve)?;
    }
    config.policy.mode = PlanMode::BackfillOnly;
    if !dry_run {
        check_lock_free(&config)?;
    }
    let rt = runtime()?;
    let stop = Stopping::listen(&rt, &config)?;
    rt.block_on(stop.within_grace(async {
        let (planned, mut opts) = if dry_run {
            let planned = make_plan(&config, &[], None).await?;
            (planned, ApplyOptions::default())
        } else {
            make_plan_to_apply(&config).await?
        };
        if dry_run {
            let mut stdout = stdout();
            stdout.write_all(render::render(&planned.doc, stdout_style()).as_bytes())?;
            writeln!(
                stdout,
                "Saved the migration plan to {}",
                planned.path.display()
            )?;
            writeln!(stdout, "Dry run: nothing was changed.")?;
            return Ok(Ending {
                unread: Unread::of_plan(&planned.doc.plan, &planned.read_errors),
                ..Ending::default()
            });
        }
        opts.stop = Some(stop.flag());
        approve_and_apply(
            &config,
            &planned.doc,
            &planned.path,
            Some(&planned.read_errors),
            Approval {
                auto_approve,
                force: false,
                stop: Some(&stop.stop),
            },
            opts,
        )
        .await
    }))
}
