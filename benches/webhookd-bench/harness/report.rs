//! Results: one row per measured figure; several runs are summarised as median and spread,
//! written as JSON and as a Markdown table.

use std::collections::BTreeMap;

use serde::Serialize;

/// One measured figure of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub case: String,
    pub metric: String,
    pub value: f64,
}

impl Row {
    pub fn new(scenario: &str, case: &str, metric: &str, value: f64) -> Self {
        Self {
            scenario: scenario.into(),
            case: case.into(),
            metric: metric.into(),
            value,
        }
    }
}

/// A figure over all runs.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub case: String,
    pub metric: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: Vec<f64>,
}

pub fn summarise(rows: &[Row]) -> Vec<Summary> {
    let mut groups: BTreeMap<(String, String, String), Vec<f64>> = BTreeMap::new();
    let mut order = vec![];
    for row in rows {
        let key = (row.scenario.clone(), row.case.clone(), row.metric.clone());
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(row.value);
    }
    order
        .into_iter()
        .map(|key| {
            let runs = groups.remove(&key).unwrap_or_default();
            let mut sorted = runs.clone();
            sorted.sort_by(f64::total_cmp);
            let median = if sorted.is_empty() {
                0.0
            } else if sorted.len() % 2 == 1 {
                sorted[sorted.len() / 2]
            } else {
                (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
            };
            Summary {
                scenario: key.0,
                case: key.1,
                metric: key.2,
                median,
                min: sorted.first().copied().unwrap_or(0.0),
                max: sorted.last().copied().unwrap_or(0.0),
                runs,
            }
        })
        .collect()
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

pub fn markdown(summaries: &[Summary]) -> String {
    let mut out = String::from(
        "| scenario | case | metric | median | min – max | runs |\n|---|---|---|---:|---:|---:|\n",
    );
    for s in summaries {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} – {} | {} |\n",
            s.scenario,
            s.case,
            s.metric,
            fmt(s.median),
            fmt(s.min),
            fmt(s.max),
            s.runs.len()
        ));
    }
    out
}
