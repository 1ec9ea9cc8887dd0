//! The calling thread's timer slack (Linux `PR_SET_TIMERSLACK`): how late the kernel may
//! end a sleep to batch timer wake-ups. The harness's only `unsafe`.

/// The open-loop sender's slack. The default, 50 µs, makes every short sleep overshoot by
/// about that much: requests then wait for the sender longer than the engine takes to decide
/// them.
pub const SENDER_SLACK_NS: u64 = 1_000;

/// Set the calling thread's timer slack to `ns` (at least 1 ns); a no-op elsewhere than
/// Linux. Best effort: a refusal leaves the default, which only makes sleeps less punctual.
pub fn set(ns: u64) {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_TIMERSLACK, n) takes an unsigned long by value and touches no
    // memory of ours; it only changes a scheduling property of the calling thread.
    unsafe {
        let _ = libc::prctl(libc::PR_SET_TIMERSLACK, ns.max(1) as libc::c_ulong);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = ns;
}
