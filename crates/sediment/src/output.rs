//! Printing results: plain text for people, or one JSON document with `--json`.

use serde_json::Value;

/// Where results go.
pub struct Output {
    /// Print JSON instead of text.
    pub json: bool,
}

impl Output {
    /// Prints `text` normally, or `value` as JSON with `--json`.
    pub fn print(&self, text: &str, value: &Value) {
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
