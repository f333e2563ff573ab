//! The Task Scheduler task (Windows), and Windows command-line words.

use super::{run_arguments, xml_escape, UserService, DESCRIPTION};

/// A word of a Windows command line (the rules `CommandLineToArgvW` and
/// Rust's own `Command` follow), quoted when needed.
pub fn windows_word(word: &str) -> String {
    if !word.is_empty() && !word.contains([' ', '\t', '"']) {
        return word.to_string();
    }
    windows_quoted(word)
}

/// A word of a Windows command line in quotes, as a path that may hold a
/// space once `%USERPROFILE%` is expanded needs.
fn windows_quoted(word: &str) -> String {
    let mut out = String::from("\"");
    let mut backslashes = 0;
    for c in word.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.push_str(&"\\".repeat(backslashes * 2 + 1));
                out.push('"');
                backslashes = 0;
            }
            _ => {
                out.push_str(&"\\".repeat(backslashes));
                out.push(c);
                backslashes = 0;
            }
        }
    }
    out.push_str(&"\\".repeat(backslashes * 2));
    out.push('"');
    out
}

/// The Task Scheduler task (registered with `schtasks /Create /XML`): started
/// at the user's logon, as that user with least privilege, never stopped for
/// running long (a task `schtasks /SC ONLOGON` makes is stopped after three
/// days), started again a minute after it fails, never twice at once.
pub fn windows_task_xml(service: &UserService) -> String {
    let arguments = run_arguments(windows_quoted(&service.config.windows()), false, false);
    let user = xml_escape(&service.windows_user);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!-- reprofile's per-user service: register it with `schtasks /Create /TN {id} /XML <this file>`; `schtasks /Delete /TN {id} /F` removes it. -->\n\
         <Task version=\"1.2\" xmlns=\"http://schemas.microsoft.com/windows/2004/02/mit/task\">\n\
         \x20 <RegistrationInfo>\n\
         \x20   <Description>{description}</Description>\n\
         \x20 </RegistrationInfo>\n\
         \x20 <Triggers>\n\
         \x20   <LogonTrigger>\n\
         \x20     <Enabled>true</Enabled>\n\
         \x20     <UserId>{user}</UserId>\n\
         \x20   </LogonTrigger>\n\
         \x20 </Triggers>\n\
         \x20 <Principals>\n\
         \x20   <Principal id=\"Author\">\n\
         \x20     <UserId>{user}</UserId>\n\
         \x20     <LogonType>InteractiveToken</LogonType>\n\
         \x20     <RunLevel>LeastPrivilege</RunLevel>\n\
         \x20   </Principal>\n\
         \x20 </Principals>\n\
         \x20 <Settings>\n\
         \x20   <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>\n\
         \x20   <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>\n\
         \x20   <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>\n\
         \x20   <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>\n\
         \x20   <RestartOnFailure>\n\
         \x20     <Interval>PT1M</Interval>\n\
         \x20     <Count>999</Count>\n\
         \x20   </RestartOnFailure>\n\
         \x20 </Settings>\n\
         \x20 <Actions Context=\"Author\">\n\
         \x20   <Exec>\n\
         \x20     <Command>{command}</Command>\n\
         \x20     <Arguments>{arguments}</Arguments>\n\
         \x20   </Exec>\n\
         \x20 </Actions>\n\
         </Task>\n",
        id = xml_escape(&service.id),
        description = xml_escape(&format!("{DESCRIPTION} (reprofile run)")),
        command = xml_escape(&service.executable.windows()),
        arguments = xml_escape(&arguments.join(" ")),
    )
}
