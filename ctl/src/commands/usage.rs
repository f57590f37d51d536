//! `usage`: bytes per channel today and this month (UTC), the budgets and what they hold back.

use super::Ctx;
use crate::output;
use roboku_wire::usage::UsageReport;
use roboku_wire::API_PREFIX;
use serde_json::Value;

pub async fn run(ctx: &Ctx) -> anyhow::Result<()> {
    let v: Value = ctx.client.get(&format!("{API_PREFIX}/usage")).await?;
    let Some(r) = ctx.typed::<UsageReport>(v)? else {
        return Ok(());
    };
    Ok(output::print(&render(&r))?)
}

fn render(r: &UsageReport) -> String {
    let b = output::bytes;
    let mut rows = vec![vec![
        "CHANNEL".to_string(),
        format!("TODAY ({})", r.day),
        format!("MONTH ({})", r.month),
        "BUDGET".into(),
        "FLOW".into(),
    ]];
    let (mut day, mut month) = (0, 0);
    for c in &r.channels {
        day += c.today;
        month += c.month;
        let budget = match (&c.budget, c.budget_bytes, c.period.as_deref()) {
            (Some(text), Some(bytes), Some(period)) => {
                let used = if period == "day" { c.today } else { c.month };
                format!("{text} ({}%)", used.saturating_mul(100) / bytes.max(1))
            }
            _ if c.critical => "always flows".into(),
            _ => "-".into(),
        };
        rows.push(vec![
            c.name.clone(),
            b(c.today),
            b(c.month),
            budget,
            c.flow.clone(),
        ]);
    }
    rows.push(vec![
        "total".into(),
        b(day),
        b(month),
        String::new(),
        String::new(),
    ]);
    let held: Vec<String> = r
        .channels
        .iter()
        .filter(|c| c.flow != "open")
        .map(|c| format!("{} {}", c.name, c.flow))
        .collect();
    let mut out = output::table(&rows);
    if !held.is_empty() {
        out.push_str(&format!(
            "Held back by budgets: {} (until the next UTC day or month; commands and acks flow)\n",
            held.join(", ")
        ));
    }
    if let Some(note) = &r.clock {
        out.push_str(&format!("Clock: {note}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use roboku_wire::usage::{UsageChannel, UsageReport};

    #[test]
    fn shows_budgets_and_what_is_paused() {
        let ch = |name: &str, today, budget: Option<(&str, u64)>, flow: &str| UsageChannel {
            name: name.into(),
            critical: name == "acks",
            today,
            month: today * 3,
            budget: budget.map(|b| b.0.to_string()),
            budget_bytes: budget.map(|b| b.1),
            period: budget.map(|_| "day".to_string()),
            flow: flow.into(),
        };
        let r = UsageReport {
            day: "2026-12-03".into(),
            month: "2026-12".into(),
            now: 0,
            clock: None,
            flush_secs: 5,
            channels: vec![
                ch("acks", 2048, None, "open"),
                ch("telemetry", 1 << 20, Some(("1MB/day", 1 << 20)), "paused"),
            ],
        };
        let text = super::render(&r);
        assert!(text.contains("TODAY (2026-12-03)"), "{text}");
        assert!(text.contains("1MB/day (100%)"), "{text}");
        assert!(text.contains("always flows"), "{text}");
        assert!(
            text.contains("Held back by budgets: telemetry paused"),
            "{text}"
        );
    }
}
