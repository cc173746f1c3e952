//! The knob sweep: coordinate descent from the defaults, one knob at a time, each
//! value timed on the workloads that knob affects, repeats interleaved
//! (round-robin over the values) so slow drifts of a shared machine hit every
//! value alike. A value replaces the current one only when the geometric mean of
//! its per-workload median ratios beats it by more than the margin (at least the
//! mode's, and twice the deviation of an A/A control: the current value timed
//! again as if it were another value) and it won 80% of the paired repeats.

use std::fmt::Write as _;

use shard_alloc::Options;

use crate::work::{self, Sample, Scale, Workload};

/// Quick or full.
#[derive(Debug, Clone)]
pub struct Mode {
    pub name: &'static str,
    pub reps: usize,
    pub passes: usize,
    pub margin: f64,
    pub scale: Scale,
    /// Bytes written per point of the size curve.
    pub size_budget: u64,
}

impl Mode {
    pub fn quick(large: Option<u64>) -> Mode {
        Mode {
            name: "quick",
            reps: 5,
            passes: 1,
            margin: 0.05,
            scale: Scale {
                small_count: 20_000,
                medium_count: 64,
                large_bytes: large.unwrap_or(256 << 20),
            },
            size_budget: 64 << 20,
        }
    }
    pub fn full(large: Option<u64>) -> Mode {
        Mode {
            name: "full",
            reps: 9,
            passes: 2,
            margin: 0.03,
            scale: Scale {
                small_count: 100_000,
                medium_count: 256,
                large_bytes: large.unwrap_or(1 << 30),
            },
            size_budget: 256 << 20,
        }
    }
}

/// One knob to sweep, with the values tried and the workloads it affects.
#[derive(Debug, Clone)]
pub struct Knob {
    pub name: &'static str,
    pub values: Vec<&'static str>,
    pub affects: Vec<Workload>,
}

/// The sweep, in order of expected effect. `page_size` sets `huge_pages` and
/// `max_huge_page` together: `off`, `2M` (auto, 2 MiB at most), `1G` (auto).
pub fn knobs(full: bool) -> Vec<Knob> {
    use Workload::*;
    let k = |name, quick: &[&'static str], more: &[&'static str], affects: &[Workload]| {
        let mut values = quick.to_vec();
        if full {
            values.extend_from_slice(more);
        }
        Knob {
            name,
            values,
            affects: affects.to_vec(),
        }
    };
    vec![
        k("page_size", &["off", "2M", "1G"], &[], &[Medium, Large]),
        k("prefault", &["false", "true"], &[], &[Small, Medium, Large]),
        k(
            "huge_threshold",
            &["2M", "8M", "32M", "128M"],
            &["512K"],
            &[Medium, Large],
        ),
        k(
            "region_size",
            &["16M", "64M", "256M"],
            &["4M", "1G"],
            &[Small, Medium],
        ),
        k(
            "large_threshold",
            &["64K", "256K", "1M"],
            &["128K", "512K", "2M"],
            &[Medium],
        ),
        k(
            "own_region_threshold",
            &["4M", "16M", "64M"],
            &["1M", "256M"],
            &[Medium],
        ),
        k("classes_per_doubling", &["1", "2", "4", "8"], &[], &[Small]),
        k(
            "placement",
            &["default", "local", "interleave"],
            &[],
            &[Medium, Large],
        ),
    ]
}

/// Sets one swept knob (including the composite `page_size`).
pub fn apply(o: &mut Options, knob: &str, value: &str) -> Result<(), String> {
    if knob == "page_size" {
        let (hp, max) = match value {
            "off" => ("off", None),
            "2M" => ("auto", Some("2M")),
            "1G" => ("auto", Some("1G")),
            _ => return Err(format!("page_size: unknown value {value}")),
        };
        o.set("huge_pages", hp).map_err(|e| e.to_string())?;
        if let Some(m) = max {
            o.set("max_huge_page", m).map_err(|e| e.to_string())?;
        }
        return Ok(());
    }
    o.set(knob, value).map_err(|e| e.to_string())
}

/// The current value of a swept knob, in the same spelling as `knobs()`.
pub fn current(o: &Options, knob: &str) -> String {
    use shard_alloc::HugePages;
    match knob {
        "page_size" => match o.huge_pages {
            HugePages::Off => "off".into(),
            HugePages::Auto => size_text(o.max_huge_page),
        },
        "prefault" => o.populate_new_regions.to_string(),
        "huge_threshold" => size_text(o.huge_threshold),
        "region_size" => size_text(o.region_size),
        "large_threshold" => size_text(o.large_threshold),
        "own_region_threshold" => size_text(o.own_region_threshold),
        "classes_per_doubling" => o.classes_per_doubling.to_string(),
        "placement" => o.placement.to_string(),
        _ => String::new(),
    }
}

/// `67108864` -> `64M`; exact multiples only.
pub fn size_text(n: u64) -> String {
    for (s, u) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if n >= 1 << s && n % (1 << s) == 0 {
            return format!("{}{u}", n >> s);
        }
    }
    n.to_string()
}

/// One measured point.
#[derive(Debug, Clone)]
pub struct Row {
    pub pass: usize,
    pub knob: String,
    pub value: String,
    pub workload: &'static str,
    pub rep: usize,
    pub sample: Sample,
}

/// One value's line: (value, per affected workload (median, spread), score vs current,
/// and repeats in which it beat the current value.
pub type Line = (String, Vec<(f64, f64)>, Option<f64>, usize);

/// The verdict on one knob in one pass.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub pass: usize,
    pub knob: &'static str,
    pub before: String,
    pub chosen: String,
    /// (value, per affected workload: (median, spread), score vs `before`)
    pub lines: Vec<Line>,
    pub affects: Vec<Workload>,
    pub units: Vec<&'static str>,
    pub invalid: Vec<(String, String)>,
    pub pages: Vec<String>,
    pub reps: usize,
    /// The margin a value had to beat: max(mode margin, 2 x |ln A/A score|).
    pub margin: f64,
}

pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// (median, (max - min) / median).
pub fn summary(v: &[f64]) -> (f64, f64) {
    let mut w = v.to_vec();
    let m = median(&mut w);
    let lo = w.first().copied().unwrap_or(f64::NAN);
    let hi = w.last().copied().unwrap_or(f64::NAN);
    (m, (hi - lo) / m)
}

/// Runs the sweep; returns the chosen options, every row, and the verdicts.
pub fn sweep(
    mode: &Mode,
    start: Options,
    log: &mut dyn FnMut(&str),
) -> (Options, Vec<Row>, Vec<Verdict>) {
    let mut best = start;
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    for pass in 1..=mode.passes {
        for knob in knobs(mode.name == "full") {
            let before = current(&best, knob.name);
            let mut values: Vec<String> = knob.values.iter().map(|s| s.to_string()).collect();
            if !values.contains(&before) {
                values.insert(0, before.clone());
            }
            // Candidate options; invalid combinations are reported, not timed.
            let mut cands = Vec::new();
            let mut invalid = Vec::new();
            for v in &values {
                let mut o = best.clone();
                match apply(&mut o, knob.name, v)
                    .and_then(|_| o.validate().map_err(|e| e.to_string()))
                {
                    Ok(()) => cands.push((v.clone(), o)),
                    Err(e) => invalid.push((v.clone(), e)),
                }
            }
            // An A/A control: the current value timed again as if it were another
            // value. How far its score lands from 1 is this run's noise floor.
            let aa_label = format!("{before} (A/A)");
            if let Some(c) = cands.iter().find(|c| c.0 == before).cloned() {
                cands.push((aa_label.clone(), c.1));
            }
            log(&format!(
                "pass {pass}: {} in {{{}}} on {}",
                knob.name,
                cands
                    .iter()
                    .map(|c| c.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                knob.affects
                    .iter()
                    .map(|w| w.name())
                    .collect::<Vec<_>>()
                    .join("+")
            ));
            // samples[cand][workload] = throughputs
            let mut samples: Vec<Vec<Vec<f64>>> =
                vec![vec![Vec::new(); knob.affects.len()]; cands.len()];
            let mut units = vec![""; knob.affects.len()];
            let mut pages: Vec<String> = vec![String::new(); cands.len()];
            for rep in 0..mode.reps {
                for (ci, (v, o)) in cands.iter().enumerate() {
                    for (wi, &w) in knob.affects.iter().enumerate() {
                        match work::run(w, o, &mode.scale, 42 + rep as u64) {
                            Ok(s) => {
                                samples[ci][wi].push(s.throughput);
                                units[wi] = s.unit;
                                if w != Workload::Small {
                                    for p in s.page_size.split('/') {
                                        if !pages[ci].split('/').any(|q| q == p) {
                                            if !pages[ci].is_empty() {
                                                pages[ci].push('/');
                                            }
                                            pages[ci].push_str(p);
                                        }
                                    }
                                }
                                rows.push(Row {
                                    pass,
                                    knob: knob.name.to_string(),
                                    value: v.clone(),
                                    workload: w.name(),
                                    rep,
                                    sample: s,
                                });
                            }
                            Err(e) => log(&format!("  {}={v} {}: error: {e}", knob.name, w.name())),
                        }
                    }
                }
            }
            let meds: Vec<Vec<(f64, f64)>> = samples
                .iter()
                .map(|per_w| per_w.iter().map(|s| summary(s)).collect())
                .collect();
            let base = cands.iter().position(|c| c.0 == before);
            let score = |ci: usize| -> Option<f64> {
                let b = base?;
                let mut logsum = 0.0;
                for (mw, bw) in meds[ci].iter().zip(&meds[b]) {
                    let (m, bm) = (mw.0, bw.0);
                    if !(m > 0.0 && bm > 0.0) {
                        return None;
                    }
                    logsum += (m / bm).ln();
                }
                Some((logsum / knob.affects.len() as f64).exp())
            };
            // Paired by repeat (the values of one repeat ran back to back): the
            // share of repeats in which a value beat the current one.
            let wins = |ci: usize| -> usize {
                let Some(b) = base else { return 0 };
                (0..mode.reps)
                    .filter(|&r| {
                        let mut l = 0.0;
                        for (cw, bw) in samples[ci].iter().zip(&samples[b]) {
                            match (cw.get(r), bw.get(r)) {
                                (Some(c), Some(b)) => l += (c / b).ln(),
                                _ => return false,
                            }
                        }
                        l > 0.0
                    })
                    .count()
            };
            let need = (mode.reps * 4).div_ceil(5);
            let aa = cands.iter().position(|c| c.0 == aa_label).and_then(score);
            let margin = aa.map_or(mode.margin, |a| mode.margin.max(2.0 * a.ln().abs()));
            let mut chosen = before.clone();
            let mut top = 1.0 + margin;
            for (ci, c) in cands.iter().enumerate() {
                if c.0 == aa_label {
                    continue;
                }
                if let Some(s) = score(ci) {
                    if s > top && wins(ci) >= need {
                        top = s;
                        chosen = c.0.clone();
                    }
                }
            }
            if base.is_none() {
                // The current value could not be timed: take the best by median.
                if let Some(ci) =
                    (0..cands.len())
                        .filter(|&c| cands[c].0 != aa_label)
                        .max_by(|&a, &b| {
                            let g =
                                |c: usize| meds[c].iter().map(|m| m.0.max(1e-9).ln()).sum::<f64>();
                            g(a).partial_cmp(&g(b)).unwrap()
                        })
                {
                    chosen = cands[ci].0.clone();
                }
            }
            if let Some((_, o)) = cands.iter().find(|c| c.0 == chosen) {
                best = o.clone();
            }
            log(&format!(
                "  -> {} = {chosen} (was {before}; A/A score {}, margin {:.0}%)",
                knob.name,
                aa.map_or("n/a".into(), |a| format!("{a:.3}")),
                margin * 100.0
            ));
            verdicts.push(Verdict {
                pass,
                knob: knob.name,
                before,
                chosen,
                lines: cands
                    .iter()
                    .enumerate()
                    .map(|(ci, c)| (c.0.clone(), meds[ci].clone(), score(ci), wins(ci)))
                    .collect(),
                affects: knob.affects.clone(),
                units,
                invalid,
                pages,
                reps: mode.reps,
                margin,
            });
        }
    }
    (best, rows, verdicts)
}

/// Throughput vs object size for one set of options: (size, count, rep, sample).
pub fn size_curve(
    mode: &Mode,
    sets: &[(&str, Options)],
    log: &mut dyn FnMut(&str),
) -> Vec<(String, u64, usize, usize, Sample)> {
    let mut sizes: Vec<u64> = vec![64, 1 << 10, 16 << 10, 256 << 10, 4 << 20, 64 << 20];
    if mode.scale.large_bytes > 64 << 20 {
        sizes.push(mode.scale.large_bytes);
    }
    let mut out = Vec::new();
    for &size in &sizes {
        let count = (mode.size_budget / size).clamp(1, 20_000) as usize;
        log(&format!("size curve: {} x {count}", size_text(size)));
        for rep in 0..mode.reps {
            for (name, o) in sets {
                match work::fixed_size(o, size, count) {
                    Ok(s) => out.push((name.to_string(), size, count, rep, s)),
                    Err(e) => log(&format!("  {name} {size}: error: {e}")),
                }
            }
        }
    }
    out
}

/// Human units for a throughput.
pub fn fmt_rate(v: f64, unit: &str) -> String {
    if unit == "objects/s" {
        format!("{:.2} M obj/s", v / 1e6)
    } else {
        format!("{:.2} GB/s", v / 1e9)
    }
}

/// The Markdown tables of the verdicts.
pub fn verdict_tables(verdicts: &[Verdict]) -> String {
    let mut s = String::new();
    for v in verdicts {
        let _ = writeln!(
            s,
            "\n### {} (pass {}): {} -> **{}** (margin {:.0}%)\n",
            v.knob,
            v.pass,
            v.before,
            v.chosen,
            v.margin * 100.0
        );
        let mut head = String::from("| value |");
        let mut sep = String::from("|---|");
        for (w, u) in v.affects.iter().zip(&v.units) {
            let _ = write!(head, " {} ({}) |", w.name(), u);
            sep.push_str("---:|");
        }
        head.push_str(" score vs current | repeats won | pages given | |");
        sep.push_str("---:|---:|---|---|");
        let _ = writeln!(s, "{head}\n{sep}");
        for (i, (val, meds, score, wins)) in v.lines.iter().enumerate() {
            let mut line = format!("| {val} |");
            for ((m, spread), u) in meds.iter().zip(&v.units) {
                let _ = write!(line, " {} ±{:.0}% |", fmt_rate(*m, u), 50.0 * spread);
            }
            let _ = write!(
                line,
                " {} | {} | {} | {} |",
                score.map_or("n/a".into(), |x| format!("{x:.3}")),
                if *val == v.before {
                    "-".to_string()
                } else {
                    format!("{wins}/{}", v.reps)
                },
                v.pages.get(i).map_or("", |p| p.as_str()),
                if *val == v.chosen { "chosen" } else { "" }
            );
            let _ = writeln!(s, "{line}");
        }
        for (val, why) in &v.invalid {
            let _ = writeln!(s, "| {val} | not valid here: {why} | | | | |");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_swept_value_parses_and_round_trips() {
        for k in knobs(true) {
            for v in &k.values {
                let mut o = Options::default();
                apply(&mut o, k.name, v).unwrap();
                assert_eq!(current(&o, k.name), *v, "{}", k.name);
            }
        }
        assert!(apply(&mut Options::default(), "page_size", "3M").is_err());
    }

    #[test]
    fn defaults_are_among_the_swept_values() {
        let o = Options::default();
        for k in knobs(false) {
            assert!(
                k.values.contains(&current(&o, k.name).as_str()),
                "{}",
                k.name
            );
        }
    }

    #[test]
    fn sizes_print_in_profile_units() {
        assert_eq!(size_text(64 << 20), "64M");
        assert_eq!(size_text(1 << 30), "1G");
        assert_eq!(size_text(4097), "4097");
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        let (m, spread) = summary(&[1.0, 2.0, 3.0]);
        assert_eq!((m, spread), (2.0, 1.0));
    }
}
