//! The node's wall clock, in the unit every signed object uses (milliseconds since the unix
//! epoch). One function, imported by every room, so no room imports another just for the time.

/// Milliseconds since the unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
