//! The wall clock, read in one place.
//!
//! The pure core never reads it (time is an argument there); the edges that
//! date what they write (plans, journals, AUTH events) call [`now_secs`].

use std::time::{SystemTime, UNIX_EPOCH};

/// The wall clock in Unix seconds (0 before 1970).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
