//! The figures a harness reports (kills survived, operations checked, cases): printed, and appended
//! to `target/tmp/reliability-figures.txt`, which `.ci/run` shows at the end of a run.
#![allow(dead_code)]

pub fn report(line: &str) {
    use std::io::Write;
    eprintln!("{line}");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("reliability-figures.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}
