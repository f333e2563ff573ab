//! The systemd units: the per-user one (Linux) and the system-wide one of
//! docs/operations.md.

use super::{run_arguments, SystemJob, UserService, DESCRIPTION};

/// A word of a systemd command line: `prefix` (a specifier such as `%h/`) is
/// taken as it is, `rest` escaped.
pub(super) fn systemd_word(prefix: &str, rest: &str) -> String {
    let escaped = rest.replace('%', "%%").replace('$', "$$");
    let word = format!("{prefix}{escaped}");
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%$".contains(c));
    if plain {
        word
    } else {
        format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The systemd user unit (`~/.config/systemd/user/<id>.service`): started
/// with the user's session manager and restarted when it fails; its output
/// goes to journald (`journalctl --user -u <id>`).
pub fn systemd_user_unit(service: &UserService) -> String {
    let mut exec = vec![service.executable.systemd()];
    exec.extend(run_arguments(service.config.systemd(), false, false));
    format!(
        "# reprofile's per-user service: `reprofile schedule install` writes it, `reprofile schedule uninstall` removes it.\n\
         [Unit]\n\
         Description={DESCRIPTION}\n\
         \n\
         [Service]\n\
         ExecStart={}\n\
         Restart=on-failure\n\
         RestartSec=30\n\
         KillSignal=SIGTERM\n\
         TimeoutStopSec={}\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        exec.join(" "),
        service.stop_timeout_secs
    )
}

/// The system-wide systemd unit (`/etc/systemd/system/reprofile.service`):
/// the daemon as a service account, JSON logs to journald.
pub fn systemd_system_unit(job: &SystemJob) -> String {
    let mut exec = vec![systemd_word("", &job.executable)];
    exec.extend(run_arguments(systemd_word("", &job.config), true, false));
    format!(
        "# /etc/systemd/system/reprofile.service: the maintenance daemon for the whole machine, as a service account.\n\
         [Unit]\n\
         Description={DESCRIPTION}\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         User={}\n\
         ExecStart={}\n\
         Restart=on-failure\n\
         KillSignal=SIGTERM\n\
         TimeoutStopSec={}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        job.user,
        exec.join(" "),
        job.stop_timeout_secs
    )
}
