//! What `schedule status` says about the last tick, from the metrics file
//! the daemon writes after each tick ([`crate::engine::schedule::metrics_text`]) or,
//! without one, from the newest plan and its journal.
//!
//! Pure: the metrics text, the plan and the journal's entries come in, a
//! [`LastTick`] goes out. It reads no file and asks no service manager
//! ([`super::host`] does), and it judges a tick as the daemon does: a
//! success only when the plan was complete and every action it applied was
//! applied or already applied.

use crate::config::ScheduleMode;
use crate::core::apply::Outcome;
use crate::store::journal::Entry;
use crate::store::planfile::{rfc3339, PlanDocument};

/// The last tick, as `status` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastTick {
    /// When it ended (the metrics) or planned (the plan), Unix seconds.
    pub at: u64,
    /// Whether it was a success (see the module).
    pub success: bool,
    /// What happened, in a few words.
    pub detail: String,
}

impl LastTick {
    /// `2026-11-26T06:00:00Z, success: …` or `…, not a success: …`.
    pub fn line(&self) -> String {
        format!(
            "{}, {}: {}",
            rfc3339(self.at),
            if self.success {
                "success"
            } else {
                "not a success"
            },
            self.detail
        )
    }
}

/// The samples of a Prometheus text file without labels: `name value`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (metric, value) = line.split_once(' ')?;
            (metric == name).then(|| value.trim().parse().ok())?
        })
}

/// The last tick as the metrics file tells it; `None` when the text is not
/// a metrics file reprofile wrote.
pub fn from_metrics(text: &str) -> Option<LastTick> {
    let at = sample(text, "reprofile_last_tick_end_timestamp_seconds")? as u64;
    let success = sample(text, "reprofile_last_tick_success")? == 1.0;
    let complete = sample(text, "reprofile_plan_complete")? == 1.0;
    let ticks = sample(text, "reprofile_ticks_total").unwrap_or(0.0) as u64;
    let failed = sample(text, "reprofile_ticks_failed_total").unwrap_or(0.0) as u64;
    let last_success =
        sample(text, "reprofile_last_success_timestamp_seconds").unwrap_or(0.0) as u64;
    let counts = format!(
        "{ticks} tick{} since the daemon started, {failed} not a success",
        plural(ticks)
    );
    let detail = if success {
        counts
    } else {
        let why = if complete {
            "the tick failed, or an action failed, was stale or was not begun (the logs say which)"
        } else {
            "its plan is incomplete: a relay or the OS keyring could not be read, or no plan was made (the logs say which)"
        };
        let last = if last_success == 0 {
            "no success since the daemon started".to_string()
        } else {
            format!("last success {}", rfc3339(last_success))
        };
        format!("{why}; {last}; {counts}")
    };
    Some(LastTick {
        at,
        success,
        detail,
    })
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The last tick as the newest plan and its journal tell it. In plan mode
/// (or with nothing to do) the plan is the whole tick; in apply mode each
/// action counts by its last journal line, and an action with none was not
/// done.
pub fn from_plan(doc: &PlanDocument, journal: &[Entry], mode: ScheduleMode) -> LastTick {
    let plan = &doc.plan;
    let mut parts = Vec::new();
    for unread in plan.unread_relays() {
        parts.push(format!(
            "relay {} could not be read ({}; {} agent{} not checked)",
            unread.relay,
            unread.reason,
            unread.agents,
            plural(unread.agents as u64)
        ));
    }
    let mut success = plan.complete;
    parts.push(crate::review::render::summary_line(doc));
    if mode == ScheduleMode::Apply && !plan.is_empty() {
        let mut counts = [0usize; 4];
        let mut not_done = 0;
        for action in &plan.actions {
            let id = action.id();
            let last = journal.iter().rev().find(|e| e.action == id);
            match last.and_then(|e| Outcome::ALL.iter().position(|o| o.as_str() == e.outcome)) {
                Some(i) => counts[i] += 1,
                None => not_done += 1,
            }
        }
        let mut applied: Vec<String> = Outcome::ALL
            .iter()
            .zip(counts)
            .map(|(outcome, n)| format!("{n} {}", outcome.as_str().replace('_', " ")))
            .collect();
        if not_done > 0 {
            applied.push(format!("{not_done} not done"));
        }
        parts.push(format!("journal: {}", applied.join(", ")));
        success &= not_done == 0 && counts[2] == 0 && counts[3] == 0;
    } else if mode == ScheduleMode::Plan && !plan.is_empty() {
        parts.push("plan mode: nothing applied".to_string());
    }
    LastTick {
        at: doc.created_at,
        success,
        detail: parts.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::core::plan::{Action, BackfillAvatar, Plan, Skip, SkipReason};
    use crate::engine::orchestrate::TickReport;
    use crate::engine::schedule::{metrics_text, Counters};
    use crate::store::planfile::{PlanKind, StoreIdentity};

    fn report(complete: bool) -> TickReport {
        TickReport {
            started: 1_795_672_790,
            finished: 1_795_672_800,
            duration: Duration::from_secs(10),
            plan: Some(doc(complete, 0)),
            ..TickReport::default()
        }
    }

    fn doc(complete: bool, actions: usize) -> PlanDocument {
        let backfill = |i: usize| {
            Action::BackfillAvatar(BackfillAvatar {
                agent: format!("{i:064x}"),
                name: format!("agent {i}"),
                index: i,
                source: crate::core::plan::AvatarSource::Persona,
                avatar_url: "https://example.com/a.png".into(),
                before: crate::core::model::AvatarField::Null,
            })
        };
        PlanDocument {
            created_at: 1_795_672_800,
            kind: PlanKind::Reconcile,
            store: StoreIdentity {
                path: "/s.json".into(),
                sha256: String::new(),
                records: actions,
            },
            plan: Plan {
                agents: actions + 1,
                actions: (0..actions).map(backfill).collect(),
                skipped: vec![Skip {
                    agent: "f".repeat(64),
                    name: "Down".into(),
                    index: actions,
                    reason: SkipReason::RelayUnreachable,
                    detail: String::new(),
                    relay: Some("ws://127.0.0.1:9".into()),
                }]
                .into_iter()
                .filter(|_| !complete)
                .collect(),
                complete,
                ..Plan::default()
            },
        }
    }

    #[test]
    fn the_metrics_the_daemon_writes_read_back_as_the_last_tick() {
        let counters = Counters {
            ticks: 3,
            failed: 1,
            skipped: 0,
            last_success: Some(1_795_672_000),
        };
        let ok = from_metrics(&metrics_text(&report(true), &counters)).unwrap();
        assert_eq!(ok.at, 1_795_672_800);
        assert!(ok.success);
        assert_eq!(
            ok.line(),
            "2026-11-26T06:00:00Z, success: 3 ticks since the daemon started, 1 not a success"
        );
        let bad = from_metrics(&metrics_text(&report(false), &counters)).unwrap();
        assert!(!bad.success);
        assert!(
            bad.detail.starts_with("its plan is incomplete"),
            "{}",
            bad.detail
        );
        assert!(
            bad.detail.contains("last success 2026-11-26T05:46:40Z"),
            "{}",
            bad.detail
        );
        assert_eq!(from_metrics("# nothing\nfoo 1\n"), None);
    }

    fn entry(action: &str, outcome: Outcome) -> Entry {
        Entry {
            at: String::new(),
            action: action.to_string(),
            kind: "backfill_avatar".into(),
            agent: String::new(),
            outcome: outcome.as_str().into(),
            reason: None,
            event_id: None,
        }
    }

    #[test]
    fn from_a_plan_each_action_counts_by_its_last_journal_line() {
        let doc = doc(true, 3);
        let ids: Vec<String> = doc.plan.actions.iter().map(Action::id).collect();
        let all_done = [
            entry(&ids[0], Outcome::Applied),
            entry(&ids[1], Outcome::AlreadyApplied),
            entry(&ids[2], Outcome::Applied),
        ];
        let tick = from_plan(&doc, &all_done, ScheduleMode::Apply);
        assert!(tick.success, "{}", tick.detail);
        assert!(
            tick.detail
                .ends_with("journal: 2 applied, 1 already applied, 0 stale, 0 failed"),
            "{}",
            tick.detail
        );

        // Applied, then found rewritten by the app: stale counts, not applied.
        let rewritten = [
            entry(&ids[0], Outcome::Applied),
            entry(&ids[0], Outcome::Stale),
            entry(&ids[1], Outcome::Applied),
        ];
        let tick = from_plan(&doc, &rewritten, ScheduleMode::Apply);
        assert!(!tick.success);
        assert!(
            tick.detail
                .ends_with("journal: 1 applied, 0 already applied, 1 stale, 0 failed, 1 not done"),
            "{}",
            tick.detail
        );

        let planned = from_plan(&doc, &[], ScheduleMode::Plan);
        assert!(planned.success);
        assert!(planned.detail.ends_with("plan mode: nothing applied"));
    }

    #[test]
    fn from_an_incomplete_plan_the_tick_is_not_a_success_and_names_the_relay() {
        let tick = from_plan(&doc(false, 0), &[], ScheduleMode::Plan);
        assert!(!tick.success);
        assert!(
            tick.detail.starts_with(
                "relay ws://127.0.0.1:9 could not be read (relay_unreachable; 1 agent not checked)"
            ),
            "{}",
            tick.detail
        );
    }
}
