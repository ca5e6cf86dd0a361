//! A panic anywhere ends the process. A shard is a thread that owns its
//! connections and streams; if it died alone, the router would keep handing
//! it sockets and its links would fill, so the server would hang instead of
//! being restarted by its supervisor (systemd `Restart=on-failure`).

use std::sync::OnceLock;

/// Exit status after a panic (the Go reference exits with 2 on one too).
pub const PANIC_EXIT: i32 = 2;

/// Makes every panic log an `[FTL]` line naming the thread and place, then
/// end the process with [`PANIC_EXIT`].
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed").to_string();
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info.payload();
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        tracing::error!(target: "fatal", "panic in thread {name} at {place}: {what}");
        let trace = std::backtrace::Backtrace::capture();
        if trace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!("{trace}");
        }
        std::process::exit(PANIC_EXIT);
    }));
}

/// Subject whose publish panics the shard, for the crash tests only: honoured
/// in debug builds with `BROKER_EDGE_TEST_FAULTS=1` in the environment, never
/// in release builds.
pub const PANIC_SUBJECT: &[u8] = b"$BROKER_EDGE.TEST.PANIC";

/// Whether test faults are switched on (always false in release builds).
pub fn faults_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    cfg!(debug_assertions)
        && *ON.get_or_init(|| std::env::var_os("BROKER_EDGE_TEST_FAULTS").is_some_and(|v| v == "1"))
}
