//! `reprofile apply`: a saved plan or a fresh one, approved, then applied; and the approval and report both `apply` and `migrate` use.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::Config;
use crate::engine::apply::{self, ApplyOptions};
use crate::engine::orchestrate::{apply_plan, make_plan_to_apply, Stop};
use crate::review::render;
use crate::store::planfile::{self, PlanDocument};

use super::{
    check_lock_free, load_config, runtime, stdout, stdout_style, ConfigArgs, Ending, Stopping,
    Unread,
};

/// `apply`, as the command line gave it.
pub(super) fn run(
    args: &ConfigArgs,
    plan: Option<PathBuf>,
    auto_approve: bool,
    force: bool,
) -> anyhow::Result<Ending> {
    let config = load_config(args)?;
    require_approval_channel(auto_approve)?;
    check_lock_free(&config)?;
    let rt = runtime()?;
    let stop = Stopping::listen(&rt, &config)?;
    rt.block_on(stop.within_grace(async {
        let (doc, path, fresh, mut opts) = match plan {
            Some(path) => (planfile::read(&path)?, path, None, ApplyOptions::default()),
            None => {
                let (planned, opts) = make_plan_to_apply(&config).await?;
                (planned.doc, planned.path, Some(planned.read_errors), opts)
            }
        };
        opts.stop = Some(stop.flag());
        approve_and_apply(
            &config,
            &doc,
            &path,
            fresh.as_ref(),
            Approval {
                auto_approve,
                force,
                stop: Some(&stop.stop),
            },
            opts,
        )
        .await
    }))
}

/// Refuses up front, before anything is planned or written, when approval
/// would be needed and there is no terminal to ask on.
pub(super) fn require_approval_channel(auto_approve: bool) -> anyhow::Result<()> {
    if !auto_approve && !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "refusing to apply without --auto-approve: there is no terminal to ask for approval on (a batch job never waits on a prompt)"
        );
    }
    Ok(())
}

/// How an apply is approved (`apply`, `migrate`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Approval<'a> {
    /// Apply without asking.
    pub(super) auto_approve: bool,
    /// Apply even above the safety threshold.
    pub(super) force: bool,
    /// The command's stop (SIGINT, SIGTERM): a prompt under way is cancelled.
    pub(super) stop: Option<&'a Stop>,
}

/// Shows the plan, asks for approval unless `auto_approve`, applies it and
/// prints the report. `fresh` is `Some` (why each unread relay was not read)
/// for a plan this run just made and wrote, `None` for a saved plan, whose
/// incompleteness is repeated as warnings. Problems when an action failed or
/// was stale, or the apply was cancelled.
pub(super) async fn approve_and_apply(
    config: &Config,
    doc: &PlanDocument,
    path: &Path,
    fresh: Option<&std::collections::BTreeMap<String, String>>,
    approval: Approval<'_>,
    opts: ApplyOptions,
) -> anyhow::Result<Ending> {
    let Approval {
        auto_approve,
        force,
        stop,
    } = approval;
    let mut ending = match fresh {
        Some(read_errors) => Ending {
            unread: Unread::of_plan(&doc.plan, read_errors),
            ..Ending::default()
        },
        None => Ending {
            warnings: Unread::of_plan(&doc.plan, &Default::default())
                .iter()
                .map(Unread::warning_line)
                .collect(),
            ..Ending::default()
        },
    };
    let style = stdout_style();
    let mut stdout = stdout();
    stdout.write_all(render::render(doc, style).as_bytes())?;
    if fresh.is_some() {
        writeln!(stdout, "Saved the plan to {}", path.display())?;
    }
    if doc.plan.is_empty() {
        return Ok(ending);
    }
    apply::check_plan(config, doc, force, opts.planned_records.as_ref())?;
    if !auto_approve {
        require_approval_channel(auto_approve)?;
        // Stopped while planning: no question asked.
        let answer = if stop.is_some_and(Stop::requested) {
            None
        } else {
            write!(
                stdout,
                "\nDo you want to perform these actions?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
            )?;
            stdout.flush()?;
            read_answer(stop).await?
        };
        if answer.as_deref().map(str::trim) != Some("yes") {
            writeln!(stdout, "\nApply cancelled: nothing was changed.")?;
            ending.problems = true;
            return Ok(ending);
        }
    }
    writeln!(stdout)?;
    let report = apply_plan(config, doc, path, &ApplyOptions { force, ..opts }).await?;
    stdout.write_all(render::render_report(&report, style).as_bytes())?;
    stdout.flush()?;
    ending.problems = !report.succeeded();
    ending.errors.extend(apply_errors(&report, path));
    Ok(ending)
}

/// The answer typed at the approval prompt, or `None` once `stop` is
/// requested: Ctrl-C at the prompt cancels at once (the command's
/// [`Stopping`](super::Stopping) requests the stop and makes the signal the
/// exit code). The line is read on a thread of its own, left blocked on a
/// cancelled read until the process ends.
async fn read_answer(stop: Option<&Stop>) -> anyhow::Result<Option<String>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("approval".into())
        .spawn(move || {
            let mut answer = String::new();
            let read = std::io::stdin().read_line(&mut answer).map(|_| answer);
            let _ = tx.send(read);
        })
        .context("cannot start reading the answer")?;
    let stopped = async {
        match stop {
            Some(stop) => stop.until_requested().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        read = rx => Ok(Some(read.context("the answer's reader ended")??)),
        () = stopped => Ok(None),
    }
}

/// What an apply that did not succeed says on stderr, once: what failed
/// and how to go on.
pub(super) fn apply_errors(report: &crate::engine::apply::ApplyReport, plan: &Path) -> Vec<String> {
    use crate::core::apply::Outcome;
    let mut errors = Vec::new();
    let (failed, stale) = (report.count(Outcome::Failed), report.count(Outcome::Stale));
    if failed > 0 {
        errors.push(format!(
            "{failed} action{} failed (reasons above and in the journal {}); `reprofile apply {}` tries them again once the cause is fixed",
            if failed == 1 { "" } else { "s" },
            report.journal.display(),
            plan.display()
        ));
    }
    if stale > 0 {
        errors.push(format!(
            "{stale} action{} stale: the store or a relay changed since the plan was made; make a new plan (`reprofile plan`) and review it",
            if stale == 1 { " is" } else { "s are" }
        ));
    }
    if report.not_begun > 0 {
        errors.push(format!(
            "stopped with {} action{} not begun; `reprofile apply {}` finishes them (what was done reports already_applied)",
            report.not_begun,
            if report.not_begun == 1 { "" } else { "s" },
            plan.display()
        ));
    }
    errors
}
