//! `payauth compare A B`: two `report.json` side by side, with B/A ratios for the rates and
//! every percentile, and notes on what differs between the runs (settings, dataset, build,
//! machine) and on a sender that fell behind.

use std::fmt;

use serde_json::Value;

use crate::report::{Percentiles, Report};

/// One compared number.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// What it is (`throughput/s`, `latency p99 ms`, ...).
    pub name: String,
    /// A's value.
    pub a: Option<f64>,
    /// B's value.
    pub b: Option<f64>,
}

impl Row {
    /// B / A, when both are known and A is not zero.
    pub fn ratio(&self) -> Option<f64> {
        match (self.a, self.b) {
            (Some(a), Some(b)) if a != 0.0 => Some(b / a),
            _ => None,
        }
    }
}

/// The comparison of two reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// How A is named in the output.
    pub a_label: String,
    /// How B is named.
    pub b_label: String,
    /// Rates, then latency and service-time percentiles (ms).
    pub rows: Vec<Row>,
    /// What differs between the runs, and warnings.
    pub notes: Vec<String>,
}

impl Comparison {
    /// The row named `name`.
    pub fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }
}

/// Compare report `b` against report `a`.
pub fn compare(a_label: &str, a: &Report, b_label: &str, b: &Report) -> Comparison {
    let mut rows = vec![
        Row {
            name: "throughput/s".into(),
            a: a.run.throughput_per_sec,
            b: b.run.throughput_per_sec,
        },
        Row {
            name: "offered/s".into(),
            a: a.run.offered_rate_per_sec,
            b: b.run.offered_rate_per_sec,
        },
        Row {
            name: "target/s".into(),
            a: a.run.target_rate_per_sec,
            b: b.run.target_rate_per_sec,
        },
    ];
    let mut percentiles = |what: &str, pa: &Percentiles, pb: &Percentiles| {
        for ((label, va), (_, vb)) in pa.shown().into_iter().zip(pb.shown()) {
            rows.push(Row {
                name: format!("{what} {label} ms"),
                a: Some(va as f64 / 1e6),
                b: Some(vb as f64 / 1e6),
            });
        }
    };
    percentiles("latency", &a.latency_ns, &b.latency_ns);
    percentiles("service", &a.service_ns, &b.service_ns);

    let mut notes = Vec::new();
    for (label, r) in [(a_label, a), (b_label, b)] {
        if r.run.schedule_kept == Some(false) {
            notes.push(format!(
                "{label}: the sender fell behind its schedule; compare offered rates, not targets"
            ));
        }
    }
    let (sa, sb) = (
        serde_json::to_value(&a.settings).unwrap_or(Value::Null),
        serde_json::to_value(&b.settings).unwrap_or(Value::Null),
    );
    let mut differ = Vec::new();
    diff("", &sa, &sb, &mut differ);
    if !differ.is_empty() {
        notes.push(format!("settings that differ: {}", differ.join(", ")));
    }
    if a.dataset.digest.as_ref().map(|d| &d.combined)
        != b.dataset.digest.as_ref().map(|d| &d.combined)
    {
        notes.push(format!(
            "the datasets differ: {} vs {}",
            describe_dataset(a),
            describe_dataset(b)
        ));
    }
    if a.build != b.build {
        notes.push(format!(
            "builds differ: {} {} vs {} {}",
            a.build.profile, a.build.git_revision, b.build.profile, b.build.git_revision
        ));
    }
    if a.machine.cpu_model != b.machine.cpu_model || a.machine.cores != b.machine.cores {
        notes.push(format!(
            "machines differ: {} x {} vs {} x {}",
            a.machine.cores, a.machine.cpu_model, b.machine.cores, b.machine.cpu_model
        ));
    }
    Comparison {
        a_label: a_label.into(),
        b_label: b_label.into(),
        rows,
        notes,
    }
}

fn describe_dataset(r: &Report) -> String {
    let digest = r
        .dataset
        .digest
        .as_ref()
        .map_or("no digest", |d| d.combined.as_str());
    format!("{} (crc32c {digest})", r.dataset.path)
}

/// Paths of the leaves that differ between two JSON values, with both values.
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => {
            let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff(
                    &p,
                    ma.get(k).unwrap_or(&Value::Null),
                    mb.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ if a != b => out.push(format!("{path} {a} -> {b}")),
        _ => {}
    }
}

fn cell(v: Option<f64>) -> String {
    match v {
        None => "n/a".into(),
        Some(x) if x.abs() >= 1000.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.3}"),
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "A = {}", self.a_label)?;
        writeln!(f, "B = {}", self.b_label)?;
        writeln!(f, "{:<22}{:>14}{:>14}{:>10}", "", "A", "B", "B/A")?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<22}{:>14}{:>14}{:>10}",
                r.name,
                cell(r.a),
                cell(r.b),
                r.ratio()
                    .map_or_else(|| "n/a".into(), |x| format!("{x:.3}"))
            )?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_diff_names_the_leaves() {
        let a = json!({"mode": "rate", "engine": {"shards": 2, "batch_max": 64}});
        let b = json!({"mode": "rate", "engine": {"shards": 4, "batch_max": 64}});
        let mut out = Vec::new();
        diff("", &a, &b, &mut out);
        assert_eq!(out, ["engine.shards 2 -> 4"]);
    }

    #[test]
    fn ratio_needs_both_and_a_nonzero_a() {
        let r = |a, b| Row {
            name: String::new(),
            a,
            b,
        };
        assert_eq!(r(Some(2.0), Some(3.0)).ratio(), Some(1.5));
        assert_eq!(r(Some(0.0), Some(3.0)).ratio(), None);
        assert_eq!(r(None, Some(3.0)).ratio(), None);
    }
}
