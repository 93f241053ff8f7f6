//! Phase timings of `endpoint start`: with `SEDIMENT_START_TIMINGS=1` in
//! the environment each phase prints one line to stderr as it ends (so the
//! start time can be profiled from outside, e.g. by the lazy-start bench).

use std::time::Instant;

/// The environment variable that turns the timings on.
pub const ENV: &str = "SEDIMENT_START_TIMINGS";

/// Wall-clock marks since the start of the command.
pub struct Phases {
    on: bool,
    begun: Instant,
    last: Instant,
}

impl Phases {
    pub fn new() -> Phases {
        let now = Instant::now();
        Phases {
            on: std::env::var_os(ENV).is_some_and(|v| !v.is_empty() && v != "0"),
            begun: now,
            last: now,
        }
    }

    /// Ends the phase `name`: prints how long it took and the total so far.
    pub fn mark(&mut self, name: &str) {
        let now = Instant::now();
        if self.on {
            eprintln!(
                "start phase {name}: {:.1} ms (total {:.1} ms)",
                (now - self.last).as_secs_f64() * 1e3,
                (now - self.begun).as_secs_f64() * 1e3
            );
        }
        self.last = now;
    }
}
