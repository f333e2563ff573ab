//! The `/etc/cron.d` line of docs/operations.md.

use super::{run_arguments, shell_word, SystemJob};

/// The `/etc/cron.d` file: one tick (`run --once`) per cron slot, no daemon;
/// the lock guards against overlap. `%` is special in crontabs (a newline)
/// and is escaped.
pub fn cron_d(job: &SystemJob) -> String {
    let mut words = vec![shell_word(&job.executable)];
    words.extend(run_arguments(shell_word(&job.config), false, true));
    let line = format!(
        "{} {} {} >> {} 2>&1",
        job.every,
        job.user,
        words.join(" "),
        shell_word(&job.log_file)
    );
    format!(
        "# /etc/cron.d/reprofile: one maintenance tick (`run --once`) per slot; no daemon, the lock guards against overlap.\n{}\n",
        line.replace('%', "\\%")
    )
}
