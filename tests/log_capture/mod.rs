//! Captures every log line of the test process (level, target, text), for
//! tests that check what the store and the adapters log. Installed once per
//! test binary; tests filter by the ids they made, so parallel tests do not
//! see each other's lines.
#![allow(dead_code)]

use std::sync::{Mutex, OnceLock};
use std::thread::ThreadId;

struct Capture;

/// (thread, level, target, text) of every line.
type Lines = Mutex<Vec<(ThreadId, log::Level, String, String)>>;

static LINES: OnceLock<Lines> = OnceLock::new();

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        LINES.get_or_init(Default::default).lock().unwrap().push((
            std::thread::current().id(),
            record.level(),
            record.target().to_owned(),
            record.args().to_string(),
        ));
    }
    fn flush(&self) {}
}

/// Installs the capture (first call only), at trace level.
pub fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        static LOGGER: Capture = Capture;
        log::set_logger(&LOGGER).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// Every line captured so far: (level, target, text).
pub fn lines() -> Vec<(log::Level, String, String)> {
    lines_where(|_| true)
}

/// The lines logged on `thread` so far: (level, target, text).
pub fn lines_on(thread: ThreadId) -> Vec<(log::Level, String, String)> {
    lines_where(|t| t == thread)
}

fn lines_where(on: impl Fn(ThreadId) -> bool) -> Vec<(log::Level, String, String)> {
    LINES
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .iter()
        .filter(|(thread, ..)| on(*thread))
        .map(|(_, level, target, text)| (*level, target.clone(), text.clone()))
        .collect()
}
