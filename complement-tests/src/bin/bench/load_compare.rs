//! `bench load-compare SYNAPSE.json PLEXUS.json`: two runs of `bench load` side by side, the
//! ratio Plexus/Synapse of every figure, and the targets of the comparison with PASS or FAIL.

use super::*;

/// What a target asks of Plexus's figure: a bound on the figure itself, or on its ratio to
/// Synapse's.
#[derive(Clone, Copy)]
enum Goal {
    AtMost(f64),
    AtLeast(f64),
    RatioAtMost(f64),
    RatioAtLeast(f64),
}

/// The targets, by figure key, from the issue that asked for the comparison (one run on a
/// 2-core machine, tool defaults).
const TARGETS: &[(&str, Goal, &str)] = &[
    (
        "send.events_per_s",
        Goal::RatioAtLeast(100.0),
        ">= 100x Synapse",
    ),
    ("send.p99_ms", Goal::AtMost(20.0), "<= 20 ms"),
    (
        "send.cpu_ms_per_event",
        Goal::RatioAtMost(1.0 / 50.0),
        "<= 1/50 of Synapse",
    ),
    ("fan_out.p99_ms", Goal::AtMost(10.0), "<= 10 ms"),
    ("fan_out.lost", Goal::AtMost(0.0), "0"),
    (
        "initial_sync.lazy_ms",
        Goal::RatioAtMost(0.1),
        "<= 1/10 of Synapse",
    ),
    (
        "initial_sync.full_ms",
        Goal::RatioAtMost(0.1),
        "<= 1/10 of Synapse",
    ),
    ("rooms.sequential_per_s", Goal::AtLeast(200.0), ">= 200/s"),
    ("big_room.joins_per_s", Goal::AtLeast(500.0), ">= 500/s"),
    ("server.idle_rss_mb", Goal::AtMost(25.0), "<= 25 MB"),
    ("server.peak_rss_mb", Goal::AtMost(60.0), "<= 60 MB"),
];

/// A run's figures by key, in the order it recorded them.
struct Run {
    label: String,
    figures: Vec<(String, String, f64, String)>,
}

impl Run {
    fn read(path: &str) -> Result<Run, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
        let file: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
        let text_of = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let figures = file["figures"]
            .as_array()
            .ok_or(format!("{path} has no figures"))?;
        let figures = figures.iter().map(|f| {
            let value = f["value"].as_f64().unwrap_or(f64::NAN);
            (
                text_of(&f["key"]),
                text_of(&f["label"]),
                value,
                text_of(&f["unit"]),
            )
        });
        Ok(Run {
            label: text_of(&file["label"]),
            figures: figures.collect(),
        })
    }

    fn value(&self, key: &str) -> Option<f64> {
        self.figures.iter().find(|f| f.0 == key).map(|f| f.2)
    }
}

pub(crate) fn compare(args: &[String]) -> Result<(), String> {
    let [synapse, plexus] = args else {
        return Err("load-compare takes two files".to_owned());
    };
    let (synapse, plexus) = (Run::read(synapse)?, Run::read(plexus)?);
    let mut rows = Vec::new();
    let mut verdicts = (0, 0);
    for (key, label, value, unit) in &plexus.figures {
        let theirs = synapse.value(key);
        let ratio = theirs.filter(|t| *t != 0.0).map(|t| value / t);
        let (target, result) = match TARGETS.iter().find(|(k, _, _)| k == key) {
            Some((_, goal, text)) => {
                let passed = meets(*goal, *value, ratio);
                if passed {
                    verdicts.0 += 1;
                } else {
                    verdicts.1 += 1;
                }
                (
                    text.to_string(),
                    if passed { "PASS" } else { "FAIL" }.to_owned(),
                )
            }
            None => (String::new(), String::new()),
        };
        rows.push(vec![
            key.split('.').next().unwrap_or_default().to_owned(),
            label.clone(),
            theirs.map_or("-".to_owned(), |t| format_value(t, unit)),
            format_value(*value, unit),
            ratio.map_or("-".to_owned(), format_ratio),
            target,
            result,
        ]);
    }
    println!(
        "{} (left) and {} (right), Plexus/Synapse ratios",
        synapse.label, plexus.label
    );
    let header = [
        "scenario",
        "figure",
        "Synapse",
        "Plexus",
        "Plexus/Synapse",
        "target",
        "result",
    ];
    print_markdown_table(&header, &rows);
    println!("\ntargets: {} PASS, {} FAIL", verdicts.0, verdicts.1);
    Ok(())
}

fn meets(goal: Goal, value: f64, ratio: Option<f64>) -> bool {
    match goal {
        Goal::AtMost(bound) => value <= bound,
        Goal::AtLeast(bound) => value >= bound,
        Goal::RatioAtMost(bound) => ratio.is_some_and(|r| r <= bound),
        Goal::RatioAtLeast(bound) => ratio.is_some_and(|r| r >= bound),
    }
}

fn format_value(value: f64, unit: &str) -> String {
    if unit.is_empty() {
        format!("{value:.0}")
    } else if value.abs() >= 100.0 {
        format!("{value:.0} {unit}")
    } else {
        format!("{value:.2} {unit}")
    }
}

/// Ratios far from 1 read better as a multiple or a fraction.
fn format_ratio(ratio: f64) -> String {
    if ratio >= 10.0 {
        format!("{ratio:.0}x")
    } else if ratio > 0.0 && ratio < 0.1 {
        format!("1/{:.0}", 1.0 / ratio)
    } else {
        format!("{ratio:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_bound_the_figure_or_its_ratio() {
        assert!(meets(Goal::RatioAtLeast(100.0), 5000.0, Some(100.0)));
        assert!(!meets(Goal::RatioAtLeast(100.0), 5000.0, None));
        assert!(meets(Goal::RatioAtMost(0.1), 50.0, Some(0.05)));
        assert!(meets(Goal::AtMost(0.0), 0.0, None));
        assert!(!meets(Goal::AtLeast(500.0), 499.0, Some(50.0)));
        assert_eq!(format_ratio(0.02), "1/50");
        assert_eq!(format_ratio(120.4), "120x");
    }
}
