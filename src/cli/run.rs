//! `reprofile run`: the maintenance daemon, or one tick of it (`--once`).

use std::path::PathBuf;

use crate::engine::orchestrate::TickReport;

use super::apply::apply_errors;
use super::{load_config, runtime, ConfigArgs, Ending, Stopping, Unread};

/// `run`, as the command line gave it.
pub(super) fn run(args: &ConfigArgs, once: bool) -> anyhow::Result<Ending> {
    let config = load_config(args)?;
    let rt = runtime()?;
    if once {
        let stop = Stopping::listen(&rt, &config)?;
        let stop_flag = stop.stop.clone();
        rt.block_on(stop.within_grace(async {
            tick_ending(crate::engine::schedule::run_once(&config, &stop_flag).await)
        }))
    } else {
        rt.block_on(crate::engine::schedule::run_daemon(config))?;
        Ok(Ending::default())
    }
}

/// `run --once`: a failed tick is its error; otherwise problems when an
/// action failed, was stale or was left undone, and the unread relays.
fn tick_ending(mut report: TickReport) -> anyhow::Result<Ending> {
    if let Some(error) = report.error.take() {
        return Err(error);
    }
    // The plan beside its journal: `<plan>.journal.jsonl` of `<plan>.json`.
    let errors = report.apply.as_ref().map_or_else(Vec::new, |apply| {
        let journal = apply.journal.to_string_lossy();
        let plan = PathBuf::from(format!(
            "{}.json",
            journal.trim_end_matches(".journal.jsonl")
        ));
        apply_errors(apply, &plan)
    });
    Ok(Ending {
        errors,
        problems: report.apply.as_ref().is_some_and(|a| !a.succeeded()),
        unread: report
            .plan
            .as_ref()
            .map(|d| Unread::of_plan(&d.plan, &report.read_errors))
            .unwrap_or_default(),
        ..Ending::default()
    })
}
