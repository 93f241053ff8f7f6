//! Printing results: plain text for people, or one JSON document with
//! `--json`; and progress on stderr for waits, shown only on a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

/// Where results go.
pub struct Output {
    /// Print JSON instead of text.
    pub json: bool,
}

impl Output {
    /// Prints `text` normally, or `value` as JSON with `--json`.
    pub fn print(&self, text: &str, value: &Value) {
        self.print_as(text, value);
    }

    /// Prints `text` normally, or any serialisable `value` as JSON.
    pub fn print_as<T: Serialize + ?Sized>(&self, text: &str, value: &T) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else if !text.is_empty() {
            println!("{text}");
        }
    }
}

/// A spinner with a message on stderr while something is awaited; hidden
/// (a no-op) when stderr is not a terminal, so scripts and tests see
/// nothing. Cleared when dropped.
pub struct Progress {
    bar: indicatif::ProgressBar,
}

impl Progress {
    /// Starts a spinner saying `message`.
    pub fn spinner(message: impl Into<String>) -> Progress {
        let bar = if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_message(message.into());
        Progress { bar }
    }

    /// Replaces the message (for example with how far a wait got).
    pub fn set_message(&self, message: impl Into<String>) {
        self.bar.set_message(message.into());
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Bytes in human units (KiB, MiB, ...), or `-` when unknown.
pub fn human_size(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "-".to_owned(), crate::history::human_bytes)
}
