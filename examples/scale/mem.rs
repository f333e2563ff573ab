//! Peak memory, from `/proc/self/status` (`VmHWM`, the resident set's high
//! water mark). Writing `5` to `/proc/self/clear_refs` resets the mark
//! (Linux 4.0+), so a stage's peak can be read on its own.

#![allow(dead_code)]

/// Resets the peak resident set to the current one; false when the kernel
/// does not allow it (the next peak then covers the whole process so far).
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|line| line.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The peak resident set (`VmHWM`), in KiB.
pub fn peak_kb() -> Option<u64> {
    status_kb("VmHWM:")
}

/// The current resident set (`VmRSS`), in KiB.
pub fn rss_kb() -> Option<u64> {
    status_kb("VmRSS:")
}

/// CPU time this process has used so far (user + system, all threads), in
/// clock ticks of 10 ms (`/proc/self/stat`).
pub fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command's closing parenthesis; utime and stime are the
    // 14th and 15th fields of the line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}
