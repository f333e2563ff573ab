//! `reprofile schedule`: install, uninstall or ask about the service that keeps `run` going.

use std::io::Write;

use super::{load_config, stdout, ConfigArgs, Ending, ScheduleAction};

/// `schedule`, as the command line gave it.
pub(super) fn run(
    args: &ConfigArgs,
    action: ScheduleAction,
    os: Option<String>,
) -> anyhow::Result<Ending> {
    use crate::service::{host, ServiceOs};
    let os = os
        .as_deref()
        .and_then(ServiceOs::parse)
        .unwrap_or_else(ServiceOs::current);
    let mut stdout = stdout();
    match action {
        ScheduleAction::Install { dry_run } => {
            host::install(&load_config(args)?, os, dry_run, &mut stdout)?
        }
        ScheduleAction::Uninstall { dry_run } => host::uninstall(os, dry_run, &mut stdout)?,
        ScheduleAction::Status => host::status(&load_config(args)?, os, &mut stdout)?,
    }
    stdout.flush()?;
    Ok(Ending::default())
}
