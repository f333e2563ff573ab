//! The launchd LaunchAgent (macOS).

use std::fmt::Write as _;

use super::{run_arguments, xml_escape, UserService};

/// The launchd LaunchAgent (`~/Library/LaunchAgents/<id>.plist`): runs at
/// load and is kept alive (started again whenever it exits), at background
/// priority, its output appended to the log file.
pub fn launchd_plist(service: &UserService) -> String {
    let mut arguments = vec![service.executable.tilde()];
    arguments.extend(run_arguments(service.config.tilde(), false, false));
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str("<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n");
    out.push_str("<!-- reprofile's per-user service: `reprofile schedule install` writes it, `reprofile schedule uninstall` removes it. -->\n");
    out.push_str("<plist version=\"1.0\">\n<dict>\n");
    let _ = writeln!(
        out,
        "\t<key>Label</key>\n\t<string>{}</string>",
        xml_escape(&service.id)
    );
    out.push_str("\t<key>ProgramArguments</key>\n\t<array>\n");
    for argument in &arguments {
        let _ = writeln!(out, "\t\t<string>{}</string>", xml_escape(argument));
    }
    out.push_str("\t</array>\n");
    out.push_str("\t<key>RunAtLoad</key>\n\t<true/>\n");
    out.push_str("\t<key>KeepAlive</key>\n\t<true/>\n");
    out.push_str("\t<key>ProcessType</key>\n\t<string>Background</string>\n");
    let _ = writeln!(
        out,
        "\t<key>ExitTimeOut</key>\n\t<integer>{}</integer>",
        service.stop_timeout_secs
    );
    if let Some(log) = &service.log_file {
        let log = xml_escape(&log.tilde());
        for key in ["StandardOutPath", "StandardErrorPath"] {
            let _ = writeln!(out, "\t<key>{key}</key>\n\t<string>{log}</string>");
        }
    }
    out.push_str("</dict>\n</plist>\n");
    out
}
