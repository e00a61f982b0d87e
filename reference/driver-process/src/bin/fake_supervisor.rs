//! A stand-in supervisor for the process driver's tests: prints `pid=<pid>`, `ppid=<ppid>` and
//! one `env <KEY>=<VALUE>` line per environment variable (sorted), `fds=<open descriptors>`
//! (one of them the listing's own), then execs its arguments the
//! way the real supervisor runs its main process (argv[1..]); with no arguments it exits 0.

use std::os::unix::process::CommandExt;

fn main() {
    println!("pid={}", std::process::id());
    println!("ppid={}", std::os::unix::process::parent_id());
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.sort();
    for (key, value) in vars {
        println!("env {key}={value}");
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let mut fds: Vec<String> = fds
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        fds.sort();
        // One of them is the descriptor of the listing itself.
        println!("fds={}", fds.join(","));
    }
    let mut args = std::env::args_os().skip(1);
    let Some(program) = args.next() else {
        return;
    };
    let error = std::process::Command::new(&program).args(args).exec();
    eprintln!(
        "fake supervisor: cannot exec {}: {error}",
        program.to_string_lossy()
    );
    std::process::exit(127);
}
