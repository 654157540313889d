//! Keeps the SDK's own activity out of the traces it records.
//!
//! With [`crate::ClewLayer`] installed, every `tracing` span and event becomes clew
//! data. The export thread runs HTTP and gRPC clients that log through `tracing`; if
//! those logs were recorded they would be exported, which would log, and so on. So the
//! export thread (and the threads of its runtime) are marked, and the layer ignores
//! anything that happens on a marked thread or while the SDK logs about itself.

use std::cell::Cell;
use std::fmt;

thread_local! {
    static SDK_THREAD: Cell<bool> = const { Cell::new(false) };
    static LOGGING: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as one of the SDK's own.
pub(crate) fn mark_sdk_thread() {
    SDK_THREAD.with(|flag| flag.set(true));
}

/// Whether telemetry produced on this thread right now comes from the SDK itself.
pub(crate) fn is_suppressed() -> bool {
    SDK_THREAD.try_with(Cell::get).unwrap_or(true) || LOGGING.try_with(Cell::get).unwrap_or(true)
}

/// Logs a warning about the SDK itself, invisible to the clew layer.
pub(crate) fn warn(message: fmt::Arguments<'_>) {
    let was = LOGGING.with(|flag| flag.replace(true));
    tracing::warn!(target: "clew_sdk", "{message}");
    LOGGING.with(|flag| flag.set(was));
}
