//! `fleet deploy --plan`: ask each robot of the address what deploying the artifact would do
//! there. A signed `plan` command (key, address, expiry and replay checked like every fleet
//! command; a read, so it carries no version and never touches the desired state) goes to the
//! device or group; each robot fetches the artifact, plans it with the code of the local
//! `deploy --plan`, and answers on its final ack (`details.plan`). One block per robot, in the
//! format of `roboku deploy --plan`, or one JSON document with `--json`.

use super::send::Common;
use super::session::Session;
use super::track::Tracker;
use super::{new_id, seal_bytes};
use crate::commands::deploy::render_plan;
use crate::output::{now_ms, outln};
use roboku_wire::fleet::topic;
use roboku_wire::fleet::{payload_ref, Ack, AckStatus, Action, Artifact, Envelope};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

pub async fn run(json: bool, c: &Common, artifact: Artifact) -> anyhow::Result<i32> {
    let key = c.key.load()?;
    let addr = c.target.address()?;
    let short = artifact.sha256[..12.min(artifact.sha256.len())].to_string();
    let env = Envelope::new(
        new_id(),
        now_ms(),
        c.ttl * 1000,
        addr.as_path(),
        &c.app,
        &Action::Plan(artifact),
    );
    let payload = seal_bytes(&serde_json::to_vec(&env)?, key.as_ref());
    let reference = payload_ref(&payload);
    let mut s = Session::connect(&c.broker.broker, &c.broker.tls()).await?;
    s.subscribe(&[
        format!("{}/d/+/status", topic::ROOT),
        format!("{}/d/+/ack", topic::ROOT),
    ])
    .await?;
    let roster = s.roster(Duration::from_secs(3)).await;
    let members = roster.members(&addr);
    let (online, offline): (Vec<String>, Vec<String>) = members
        .into_iter()
        .partition(|d| roster.is_online(d) || !roster.robots.contains_key(d));
    let mut tracker = Tracker::default();
    tracker.watch(&env.id, &reference, &online);
    s.publish(&addr.cmd(), false, payload).await?;
    let mut answers: BTreeMap<String, Ack> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(c.wait);
    while !tracker.done() {
        let Some(m) = s.next(deadline).await else {
            break;
        };
        let Ok(ack) = serde_json::from_slice::<Ack>(&m.payload) else {
            continue;
        };
        if tracker.add(&ack) && ack.status.is_final() {
            answers.insert(ack.device.clone(), ack);
        }
    }
    s.close().await;
    let missing = tracker.missing();
    if json {
        let robots: Vec<serde_json::Value> = answers.values().map(answer_json).collect();
        let v = serde_json::json!({
            "app": c.app, "artifact": env.body["sha256"], "robots": robots,
            "no_answer": missing, "offline": offline,
        });
        outln!("{v}")?;
    } else {
        for ack in answers.values() {
            outln!("{}", render_answer(ack, &short))?;
        }
        for d in &missing {
            outln!("=== {d}: no answer within {} s\n", c.wait)?;
        }
        if !offline.is_empty() {
            outln!("offline (not asked): {}", offline.join(", "))?;
        }
    }
    let all_ok = missing.is_empty()
        && answers
            .values()
            .all(|a| a.status == AckStatus::Succeeded && a.details.plan.is_some());
    Ok(if all_ok { 0 } else { 1 })
}

/// One robot's block: its plan as `roboku deploy --plan` prints it, or why it has none.
fn render_answer(ack: &Ack, artifact: &str) -> String {
    match (&ack.details.plan, ack.status) {
        (Some(plan), AckStatus::Succeeded) => {
            let text = render_plan(plan, &format!("artifact {artifact}"));
            let text = text.strip_prefix("=== ").unwrap_or(&text);
            format!("=== {}: {text}", ack.device)
        }
        _ => format!(
            "=== {}: {}: {}\n",
            ack.device,
            ack.status.as_str(),
            ack.details.reason.as_deref().unwrap_or("no reason given")
        ),
    }
}

fn answer_json(ack: &Ack) -> serde_json::Value {
    serde_json::json!({
        "device": ack.device,
        "status": ack.status.as_str(),
        "plan": ack.details.plan,
        "reason": ack.details.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use roboku_wire::fleet::AckDetails;
    use roboku_wire::{DeployPlan, PlannedDyno};

    fn ack(device: &str, status: AckStatus, plan: Option<DeployPlan>, reason: &str) -> Ack {
        Ack {
            id: Some("c1".into()),
            reference: "r".into(),
            device: device.into(),
            ts: 0,
            seq: 0,
            status,
            details: AckDetails {
                plan: plan.map(Box::new),
                reason: (!reason.is_empty()).then(|| reason.to_string()),
                ..AckDetails::default()
            },
        }
    }

    #[test]
    fn a_block_per_robot_names_it_and_reads_like_the_local_plan() {
        let plan = DeployPlan {
            app: "nav".into(),
            current: Some(2),
            next_version: 3,
            slug: "ab12cd34ef56aa".into(),
            code_changed: true,
            types_added: vec![],
            types_removed: vec![],
            types_changed: vec!["web".into()],
            release_command: None,
            dynos: vec![PlannedDyno {
                name: "web.1".into(),
                action: "restart".into(),
                strategy: Some("preboot".into()),
                after: vec![],
            }],
            disk_bytes: 2048,
            probation_secs: 0,
            current_slug: None,
            files: Some(roboku_wire::FilesDiff {
                added: 1,
                removed: 0,
                changed: 2,
                sample: vec![
                    "+ nav/new.py".into(),
                    "~ Procfile".into(),
                    "~ nav/main.py".into(),
                ],
            }),
        };
        let text = render_answer(
            &ack("r1", AckStatus::Succeeded, Some(plan), ""),
            "0123456789ab",
        );
        assert!(
            text.starts_with("=== r1: Plan: deploy artifact 0123456789ab to nav (v3 after v2)"),
            "{text}"
        );
        assert!(
            text.contains("Dyno:       web.1 restart (preboot)"),
            "{text}"
        );
        let text = render_answer(
            &ack("r2", AckStatus::Rejected, None, "unsigned payload refused"),
            "x",
        );
        assert_eq!(text, "=== r2: REJECTED: unsigned payload refused\n");
        let v = answer_json(&ack("r2", AckStatus::Failed, None, "no app"));
        assert_eq!(v["status"], "FAILED");
        assert!(v["plan"].is_null());
    }
}
