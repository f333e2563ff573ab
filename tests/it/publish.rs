//! Publishing tests (being written).
