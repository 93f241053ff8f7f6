//! `lazyfill run <config.json>`: the fill process of a lazy endpoint
//! (starts the guard, which starts Postgres). `lazyfill guard ...` is the
//! guard itself, started only by `run`. See the library docs.

fn main() {
    lazyfill::init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "lazyfill".to_owned());
    match lazyfill::supervise::main_with_args(&args, &[exe, "guard".to_owned()]) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("lazyfill: {error:#}");
            std::process::exit(2);
        }
    }
}
