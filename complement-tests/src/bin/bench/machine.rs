//! The machine facts printed with every run.

use super::*;

/// The facts a figure means nothing without: cores, CPU, memory, disk, commit and settings.
pub(crate) fn print_machine(bin: &Path, synchronous: &str) {
    let bin_text = bin.to_string_lossy();
    let built = command_output("date", &["-u", "-r", &bin_text, "+%Y-%m-%d %H:%M UTC"]);
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
    println!("Plexus benchmark, {date}");
    for (name, value) in machine_facts() {
        println!("  {name:<21} {value}");
    }
    println!(
        "  server binary         {bin_text} (built {})",
        built.unwrap_or_default()
    );
    println!("  database.synchronous  {synchronous}");
    println!("  rate_limits.enabled   false (log.level warn)");
}

/// The machine and the code, as name and value: cores, CPU, memory, the temporary directory's
/// disk, and the commit this bench was built from.
pub(crate) fn machine_facts() -> Vec<(&'static str, String)> {
    let proc_field = |file: &str, key: &str| {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let field = text
            .lines()
            .find_map(|l| Some(l.strip_prefix(key)?.split_once(':')?.1));
        field.map_or("unknown".to_owned(), |value| value.trim().to_owned())
    };
    let memory = proc_field("/proc/meminfo", "MemTotal");
    let memory = memory.trim_end_matches(" kB").parse::<f64>().ok();
    let memory = memory.map_or("unknown".to_owned(), |kb| {
        format!("{:.1} GiB", kb / 1048576.0)
    });
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let temp = std::env::temp_dir();
    let df = command_output(
        "df",
        &["-h", "--output=source,fstype,size", &temp.to_string_lossy()],
    );
    let disk = df
        .as_deref()
        .and_then(|out| out.lines().nth(1))
        .unwrap_or("unknown");
    let disk = disk.split_whitespace().collect::<Vec<_>>().join(" ");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = |args: &[&str]| {
        let mut all = vec!["-C", repo.to_str().unwrap_or(".")];
        all.extend(args);
        command_output("git", &all)
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]);
    let dirty = if dirty.is_some_and(|s| !s.is_empty()) {
        " + uncommitted changes"
    } else {
        ""
    };
    vec![
        ("cores (nproc)", cores.to_string()),
        ("CPU", proc_field("/proc/cpuinfo", "model name")),
        ("memory", memory),
        (
            "data directory disk",
            format!("{} on {disk}", temp.display()),
        ),
        ("commit", format!("{commit}{dirty}")),
    ]
}

pub(crate) fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    out.status.success().then_some(text)
}
