//! `shard-tune`: sweeps shard-alloc's knobs on representative workloads, picks
//! the best values, writes a profile the allocator loads, and a report.
//!
//! ```text
//! shard-tune sweep [--full] [--out DIR] [--profile PATH | --no-profile] [--large BYTES]
//! shard-tune check PATH          load a profile as the allocator would; exit 1 if bad
//! shard-tune threads [--out CSV] [--threads 1,2,4,8] [--ops N] [--reps R]
//! shard-tune machine             one line about this machine
//! shard-tune warm-hugepages      touch every free 2 MiB huge page once (see work::warm_hugepages)
//! ```
//! Usually run through `tuning/run`, which also draws the plots.

mod machine;
mod profile;
mod sweep;
mod threads;
mod work;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use shard_alloc::Options;

use machine::Machine;
use sweep::{fmt_rate, summary, Mode};

struct Args(Vec<String>);
impl Args {
    fn flag(&mut self, name: &str) -> bool {
        if let Some(i) = self.0.iter().position(|a| a == name) {
            self.0.remove(i);
            true
        } else {
            false
        }
    }
    fn value(&mut self, name: &str) -> Result<Option<String>, String> {
        match self.0.iter().position(|a| a == name) {
            None => Ok(None),
            Some(i) if i + 1 < self.0.len() => {
                let v = self.0.remove(i + 1);
                self.0.remove(i);
                Ok(Some(v))
            }
            Some(_) => Err(format!("{name} needs a value")),
        }
    }
    fn done(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("unexpected arguments: {}", self.0.join(" ")))
        }
    }
}

fn log(s: &str) {
    eprintln!("[shard-tune] {s}");
}

fn main() -> ExitCode {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() {
        argv.push("help".into());
    }
    let cmd = argv.remove(0);
    let mut args = Args(argv);
    let r = match cmd.as_str() {
        "sweep" => cmd_sweep(&mut args),
        "check" => cmd_check(&mut args),
        "threads" => cmd_threads(&mut args),
        "machine" => {
            println!("{}", Machine::probe().line());
            Ok(())
        }
        "warm-hugepages" => {
            let n = work::warm_hugepages();
            println!("touched {n} free 2 MiB huge pages once");
            Ok(())
        }
        _ => {
            eprintln!(
                "usage: shard-tune sweep [--full] [--out DIR] [--profile PATH | --no-profile] [--large BYTES]\n       shard-tune check PATH\n       shard-tune threads [--out CSV] [--threads 1,2,4,8] [--ops N] [--reps R]\n       shard-tune machine\n       shard-tune warm-hugepages"
            );
            if cmd == "help" || cmd == "--help" {
                Ok(())
            } else {
                Err(format!("unknown command {cmd}"))
            }
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shard-tune: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cmd_check(args: &mut Args) -> Result<(), String> {
    let path = args.0.pop().ok_or("check needs a PATH")?;
    args.done()?;
    let o = profile::check(&PathBuf::from(&path))?;
    println!("{path}: valid");
    print!("{}", profile::text(&o, &[]));
    for v in profile::env_overrides() {
        println!("(note: {v} is set and overrides the file)");
    }
    Ok(())
}

fn write_file(path: &PathBuf, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn cmd_sweep(args: &mut Args) -> Result<(), String> {
    let full = args.flag("--full");
    let no_profile = args.flag("--no-profile");
    let out = PathBuf::from(
        args.value("--out")?
            .unwrap_or_else(|| "tuning/report".into()),
    );
    let explicit = args.value("--profile")?;
    let date = args.value("--date")?.unwrap_or_default();
    let command = args
        .value("--command")?
        .unwrap_or_else(|| format!("tuning/run{}", if full { " --full" } else { "" }));
    let large = match args.value("--large")? {
        Some(v) => {
            Some(shard_alloc::options::parse_size("--large", &v).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    args.done()?;
    let mode = if full {
        Mode::full(large)
    } else {
        Mode::quick(large)
    };
    let target = if no_profile {
        None
    } else {
        Some(profile::target_path(explicit.as_deref())?)
    };
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let machine = Machine::probe();
    log(&format!("{} mode on {}", mode.name, machine.line()));
    let need_2m = mode.scale.large_bytes / (2 << 20) + 1;
    if machine.hugepages_2m_free < need_2m && machine.hugepages_1g_free == 0 {
        log(&format!(
            "only {} free 2 MiB huge pages (the large workload needs {need_2m}): huge-page values fall back to smaller pages and are recorded as such; reserve some with `echo {need_2m} > /proc/sys/vm/nr_hugepages` (as root) for a fair test",
            machine.hugepages_2m_free
        ));
    }
    let warmed = work::warm_hugepages();
    if warmed > 0 {
        log(&format!("touched the {warmed} free 2 MiB huge pages once (first touch of never-used memory can be slow in a VM)"));
    }
    let t0 = std::time::Instant::now();
    let mut lg = |s: &str| log(s);
    let (best, rows, verdicts) = sweep::sweep(&mode, Options::default(), &mut lg);
    let curve = sweep::size_curve(
        &mode,
        &[("default", Options::default()), ("tuned", best.clone())],
        &mut lg,
    );
    let elapsed = t0.elapsed().as_secs_f64();

    // Raw data for the plots.
    let mut csv = String::from("pass,knob,value,workload,rep,throughput,unit,page_size,regions,overhead,write_bps,read_bps\n");
    for r in &rows {
        let s = &r.sample;
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{:.6e},{},{},{},{:.4},{:.6e},{:.6e}",
            r.pass,
            r.knob,
            r.value,
            r.workload,
            r.rep,
            s.throughput,
            s.unit,
            s.page_size,
            s.regions,
            s.overhead,
            s.write_bps,
            s.read_bps
        );
    }
    let mut chosen_csv = String::from("pass,knob,before,chosen,margin\n");
    for v in &verdicts {
        let _ = writeln!(
            chosen_csv,
            "{},{},{},{},{:.4}",
            v.pass, v.knob, v.before, v.chosen, v.margin
        );
    }
    let mut sizes_csv = String::from("set,size,count,rep,throughput,page_size,overhead\n");
    for (set, size, count, rep, s) in &curve {
        let _ = writeln!(
            sizes_csv,
            "{set},{size},{count},{rep},{:.6e},{},{:.4}",
            s.throughput, s.page_size, s.overhead
        );
    }
    write_file(&out.join("sweep.csv"), &csv)?;
    write_file(&out.join("chosen.csv"), &chosen_csv)?;
    write_file(&out.join("sizes.csv"), &sizes_csv)?;

    // The profile.
    let header = vec![
        format!("shard tuning profile, written by `{command}` (shard-tune) {date}"),
        format!("machine: {}", machine.line()),
        format!(
            "{} mode, {} repeat(s), margin {:.0}%; the report shows why each value won",
            mode.name,
            mode.reps,
            mode.margin * 100.0
        ),
    ];
    let profile_note = match &target {
        Some(p) => {
            let loaded = profile::write(p, &best, &header)?;
            let ov = profile::env_overrides();
            let mut note = format!("wrote {} and loaded it back: valid", p.display());
            if loaded != best {
                let _ = write!(
                    note,
                    " (SHARD_* variables override part of it here: {})",
                    ov.join(", ")
                );
            }
            note
        }
        None => "no profile written (--no-profile)".into(),
    };

    // The report.
    let mut md = String::new();
    let _ = writeln!(md, "# Tuning report\n");
    let _ = writeln!(
        md,
        "Written by `{command}` {date} in {elapsed:.0} s. Machine: {}.\n",
        machine.line()
    );
    let _ = writeln!(
        md,
        "How to read it: each knob is swept with the others at their best so far \
         (coordinate descent from the defaults, {} pass(es)); every value is timed \
         {} times, repeats interleaved over the values; cells are medians, ±x% is half \
         the min..max spread. The score is the geometric mean over the workloads the \
         knob affects of median(value) / median(current value), all from the same run. \
         The row `X (A/A)` times the current value X again as if it were another value: \
         its score is this run's noise floor. A value replaces the current one only if its \
         score beats 1 by more than the margin, max({:.0}%, twice the A/A deviation), and it \
         won at least 80% of the paired repeats (\"repeats won\"); otherwise the current value \
         stays, so ties keep the default.\n",
        mode.passes,
        mode.reps,
        mode.margin * 100.0
    );
    let _ = writeln!(
        md,
        "Workloads: **small** = {} objects of 16 B..4 KiB (log-uniform) alloc+write+publish, then free all; \
         **medium** = {} objects of 64 KiB..8 MiB, same; **large** = one {} object: alloc + first-touch \
         write + publish, then a reader's first pass over the read-only mapping. \
         `page_size` sets `huge_pages`/`max_huge_page` together (`off`, `2M` = auto up to 2 MiB, `1G` = auto up to 1 GiB); \
         \"pages given\" is what the kernel really gave the medium/large regions.\n",
        mode.scale.small_count,
        mode.scale.medium_count,
        sweep::size_text(mode.scale.large_bytes)
    );
    let _ = writeln!(
        md,
        "## Result\n\n{profile_note}.\n\n```\n{}```\n",
        profile::text(&best, &[])
    );
    let _ = writeln!(
        md,
        "![throughput vs knob values](knobs.png)\n\n![throughput vs object size](sizes.png)\n"
    );
    let _ = writeln!(
        md,
        "## Throughput vs object size, default vs tuned (same run)\n"
    );
    let _ = writeln!(
        md,
        "alloc + write + publish + free of `count` objects of one size.\n"
    );
    let _ = writeln!(
        md,
        "| size | count | default | tuned | tuned / default |\n|---:|---:|---:|---:|---:|"
    );
    let mut sizes: Vec<(u64, usize)> = curve.iter().map(|c| (c.1, c.2)).collect();
    sizes.dedup();
    for (size, count) in sizes {
        let med = |set: &str| {
            let v: Vec<f64> = curve
                .iter()
                .filter(|c| c.0 == set && c.1 == size)
                .map(|c| c.4.throughput)
                .collect();
            summary(&v)
        };
        let (d, ds) = med("default");
        let (t, ts) = med("tuned");
        let _ = writeln!(
            md,
            "| {} | {count} | {} ±{:.0}% | {} ±{:.0}% | {:.2} |",
            sweep::size_text(size),
            fmt_rate(d, "bytes/s"),
            50.0 * ds,
            fmt_rate(t, "bytes/s"),
            50.0 * ts,
            t / d
        );
    }
    let _ = writeln!(md, "\n## Every knob\n{}", sweep::verdict_tables(&verdicts));
    let _ = writeln!(
        md,
        "\nRaw data: `sweep.csv`, `sizes.csv`, `chosen.csv` next to this file. \
         Noise: this is a time-shared machine; a score within the margin is a tie, not a win."
    );
    write_file(&out.join("REPORT.md"), &md)?;
    println!("{profile_note}");
    println!("report: {}", out.join("REPORT.md").display());
    std::io::stdout().flush().ok();
    Ok(())
}

fn cmd_threads(args: &mut Args) -> Result<(), String> {
    let out = args.value("--out")?;
    let list = args.value("--threads")?.unwrap_or_else(|| "1,2,4,8".into());
    let ops: usize = args
        .value("--ops")?
        .map_or(Ok(200_000), |v| v.parse().map_err(|_| "--ops: a number"))?;
    let reps: usize = args
        .value("--reps")?
        .map_or(Ok(5), |v| v.parse().map_err(|_| "--reps: a number"))?;
    args.done()?;
    let counts: Vec<usize> = list
        .split(',')
        .map(|t| {
            t.trim()
                .parse()
                .map_err(|_| format!("--threads: bad count {t}"))
        })
        .collect::<Result<_, _>>()?;
    let machine = Machine::probe();
    log(&format!("threads {list} on {}", machine.line()));
    let mut csv = String::from("threads,impl,rep,ops_per_s\n");
    let mut res: Vec<(usize, &str, Vec<f64>)> = Vec::new();
    for &t in &counts {
        let mut v = [Vec::new(), Vec::new()];
        for rep in 0..reps {
            for (i, which) in ["shard", "system"].iter().enumerate() {
                let r = threads::run(which, t, ops);
                v[i].push(r);
                let _ = writeln!(csv, "{t},{which},{rep},{r:.6e}");
            }
        }
        let [a, b] = v;
        res.push((t, "shard", a));
        res.push((t, "system", b));
    }
    if let Some(p) = out {
        write_file(&PathBuf::from(p), &csv)?;
    }
    println!("machine: {}", machine.line());
    println!(
        "| threads | shard (M ops/s) | system (M ops/s) | shard / system | shard vs 1 thread |"
    );
    println!("|---:|---:|---:|---:|---:|");
    let one = res
        .iter()
        .find(|r| r.1 == "shard")
        .map(|r| summary(&r.2).0)
        .unwrap_or(1.0);
    for t in &counts {
        let (s, ss) = summary(&res.iter().find(|r| r.0 == *t && r.1 == "shard").unwrap().2);
        let (y, ys) = summary(&res.iter().find(|r| r.0 == *t && r.1 == "system").unwrap().2);
        println!(
            "| {t} | {:.2} ±{:.0}% | {:.2} ±{:.0}% | {:.2} | {:.2} |",
            s / 1e6,
            50.0 * ss,
            y / 1e6,
            50.0 * ys,
            s / y,
            s / one
        );
    }
    Ok(())
}
