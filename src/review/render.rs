//! The human rendering of a plan, in the spirit of `terraform plan`.
//!
//! One block per agent with a symbol and a reason (`+` publish a missing
//! profile, `~` update one, `<` backfill the record's avatar), a field-level
//! diff of the kind:0 content made with `similar`, the skipped agents grouped
//! by reason, and a last line that counts everything. The renderer writes to a
//! `String`; colour is a choice of the caller (terminal, `NO_COLOR`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;

use similar::{ChangeTag, TextDiff};

use crate::core::content::ProfileContent;
use crate::core::model::AvatarField;
use crate::core::plan::{Action, BackfillAvatar, RepublishProfile, RepublishReason, SkipReason};
use crate::core::rules::{escape_controls, short_pubkey};
use crate::store::planfile::{rfc3339, PlanDocument, PlanKind};

/// How to render.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours (additions green, removals red).
    pub color: bool,
}

#[derive(Clone, Copy)]
enum Paint {
    Add,
    Remove,
    Change,
    Backfill,
    Dim,
    Bold,
    Warn,
}

impl Style {
    fn paint(self, paint: Paint, text: &str) -> String {
        if !self.color {
            return text.to_string();
        }
        let code = match paint {
            Paint::Add => "32",
            Paint::Remove => "31",
            Paint::Change => "33",
            Paint::Backfill => "36",
            Paint::Dim => "2",
            Paint::Bold => "1",
            Paint::Warn => "1;33",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

/// Renders a whole plan.
pub fn render(doc: &PlanDocument, style: Style) -> String {
    let doc = &*terminal_safe(doc);
    let mut out = String::new();
    let plan = &doc.plan;
    let _ = writeln!(
        out,
        "reprofile {} for {} agents in {} ({})",
        doc.kind.title(),
        plan.agents,
        doc.store.path,
        rfc3339(doc.created_at)
    );

    if !plan.actions.is_empty() {
        // The legend names only what this kind of plan can hold: a
        // migration only backfills.
        let legend = if doc.kind == PlanKind::Migrate {
            format!("{} backfill", style.paint(Paint::Backfill, "<"))
        } else {
            format!(
                "{} backfill, {} republish, {} update",
                style.paint(Paint::Backfill, "<"),
                style.paint(Paint::Add, "+"),
                style.paint(Paint::Change, "~"),
            )
        };
        let _ = writeln!(
            out,
            "\nreprofile will perform the following actions ({legend}):"
        );
    }
    // People look for names: agents by name (case-insensitive), then
    // pubkey; an agent's actions in plan order (its backfill first). The
    // plan itself stays ordered by pubkey (rule E4).
    let mut in_order: Vec<&Action> = plan.actions.iter().collect();
    in_order.sort_by_cached_key(|a| (a.name().to_lowercase(), a.agent().to_owned()));
    let mut current_agent: Option<&str> = None;
    for action in in_order {
        if current_agent != Some(action.agent()) {
            current_agent = Some(action.agent());
            let name = action.name();
            let _ = writeln!(
                out,
                "\n  {}",
                style.paint(
                    Paint::Bold,
                    &format!("# {name} ({})", short_pubkey(action.agent()))
                )
            );
        }
        match action {
            Action::BackfillAvatar(b) => render_backfill(&mut out, b, style),
            Action::RepublishProfile(r) => render_republish(&mut out, r, style),
        }
    }

    render_skipped(&mut out, doc, style);
    render_agent_managed(&mut out, doc, style);

    if let Some(why) = plan.incomplete_because(str::to_string) {
        let _ = writeln!(
            out,
            "\n{} {why}: the agents concerned are skipped and this plan is incomplete.",
            style.paint(Paint::Warn, "Warning:"),
        );
    }

    let _ = writeln!(out, "\n{}", summary_line(doc));
    out
}

/// A plan with more actions than this is large: `plan` prints its summary
/// (and where the full rendering is) unless `--full` is given, and the HTML
/// review starts with its sections folded.
pub const LARGE_PLAN_ACTIONS: usize = 200;

/// The last line: counts, or `No changes.`.
pub fn summary_line(doc: &PlanDocument) -> String {
    let s = doc.plan.summary();
    let managed = doc.plan.agent_managed.len();
    let unchanged = if managed == 0 {
        format!("{} unchanged", s.unchanged)
    } else {
        format!("{} unchanged ({managed} agent-managed)", s.unchanged)
    };
    if s.republish + s.backfill == 0 {
        if !doc.plan.complete && s.unchanged == 0 {
            // Every agent was skipped, some for want of a relay or key:
            // nothing was checked, so there is no "no changes" to report.
            return format!(
                "Nothing was checked: {} skipped (listed above); the plan is incomplete.",
                s.skipped
            );
        }
        if s.skipped == 0 && managed == 0 {
            "No changes. Every agent profile matches its record.".to_string()
        } else if s.skipped == 0 {
            format!("No changes. {unchanged}, listed above.")
        } else {
            format!(
                "No changes. {unchanged}, {} skipped (listed above).",
                s.skipped
            )
        }
    } else if doc.kind == PlanKind::Migrate {
        format!(
            "Migration: {} to backfill, {unchanged}, {} skipped.",
            s.backfill, s.skipped
        )
    } else {
        format!(
            "Plan: {} to republish, {} to backfill, {unchanged}, {} skipped.",
            s.republish, s.backfill, s.skipped
        )
    }
}

/// Rule C6's agents whose own profile differs from their record: shown as
/// unchanged (agent-managed), with what the plan leaves as the agent set it.
fn render_agent_managed(out: &mut String, doc: &PlanDocument, style: Style) {
    let managed = &doc.plan.agent_managed;
    if managed.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nUnchanged (agent-managed) ({}): each agent owns its profile ([profile] owner = \"agent\"), which differs from its record and is left as it is:",
        managed.len()
    );
    for agent in managed {
        let differences: Vec<&str> = agent.differences.iter().map(|d| d.as_str()).collect();
        let _ = writeln!(
            out,
            "  {} {} ({}) on {}: {}",
            style.paint(Paint::Dim, "="),
            escape_controls(&agent.name, false),
            short_pubkey(&agent.agent),
            escape_controls(&agent.relay, false),
            differences.join(", ")
        );
    }
}

/// `data:` URLs longer than this are shown short.
const DATA_URL_SHOWN_WHOLE: usize = 100;

/// How an avatar or picture URL is shown to people (the one helper every
/// human rendering uses): a long `data:` URL as its header, size and digest,
/// `data:image/png;base64,… (52 KB, sha256 1a2b3c4d…)`, since 52 KB of
/// base64 helps no reviewer; anything else as it is. The digest (SHA-256 of
/// the whole URL) tells two such avatars apart. Plan files keep the full
/// value.
pub fn shown_url(url: &str) -> Cow<'_, str> {
    if !url.starts_with("data:") || url.len() <= DATA_URL_SHOWN_WHOLE {
        return Cow::Borrowed(url);
    }
    // The header (media type and encoding) up to the comma, cut when odd.
    let header = match url.find(',') {
        Some(comma) if comma < 64 => &url[..=comma],
        _ => url
            .char_indices()
            .nth(32)
            .map_or(url, |(cut, _)| &url[..cut]),
    };
    let bytes = url.len();
    let size = if bytes < 1000 {
        format!("{bytes} bytes")
    } else {
        format!("{} KB", (bytes + 500) / 1000)
    };
    let digest = crate::store::agents::sha256_hex(url.as_bytes());
    Cow::Owned(format!("{header}… ({size}, sha256 {}…)", &digest[..8]))
}

/// A URL as a quoted value in a rendering: `"https://…"`, or a long `data:`
/// URL in its short form, unquoted (it is not the literal value).
pub fn shown_url_value(url: &str) -> String {
    match shown_url(url) {
        Cow::Borrowed(whole) => format!("{whole:?}"),
        Cow::Owned(short) => short,
    }
}

/// What a record's `avatar_url` was, as the app wrote it: `null` (what the
/// app writes for "no stored avatar"), `absent` (a legacy record without the
/// field), or the blank text.
fn shown_avatar_field(field: &AvatarField) -> String {
    match field {
        AvatarField::Absent => "absent".to_string(),
        AvatarField::Null => "null".to_string(),
        AvatarField::Text(text) => shown_url_value(text),
    }
}

fn render_backfill(out: &mut String, b: &BackfillAvatar, style: Style) {
    let _ = writeln!(
        out,
        "  {} backfill_avatar from {} (record #{}, avatar_url was {})",
        style.paint(Paint::Backfill, "<"),
        b.source.as_str(),
        b.index,
        shown_avatar_field(&b.before)
    );
    let _ = writeln!(
        out,
        "      {}",
        style.paint(
            Paint::Add,
            &format!("+ \"avatar_url\": {}", shown_url_value(&b.avatar_url))
        )
    );
}

/// The content's field lines for the diff (`"key": raw value`), and how each
/// is shown: a string value that is a long `data:` URL in its short form.
fn field_lines_shown(content: &ProfileContent, shown: &mut HashMap<String, String>) -> Vec<String> {
    content
        .entries()
        .map(|(key, raw)| {
            let key = serde_json::to_string(key).expect("a string always serializes");
            let line = format!("{key}: {raw}");
            if !shown.contains_key(&line) {
                // Only a long data: URL is shown otherwise; the rest as written.
                let short = raw
                    .starts_with("\"data:")
                    .then(|| serde_json::from_str::<String>(raw).ok())
                    .flatten()
                    .and_then(|text| match shown_url(&text) {
                        Cow::Owned(short) => Some(short),
                        Cow::Borrowed(_) => None,
                    });
                let value = short.unwrap_or_else(|| raw.to_string());
                shown.insert(line.clone(), format!("{key}: {value}"));
            }
            line
        })
        .collect()
}

/// How a line of a kind:0 diff changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineChange {
    /// Only in the relay's current content.
    Removed,
    /// Only in the content to publish.
    Added,
    /// In both.
    Kept,
}

/// One line of a kind:0 diff, as people see it: `"key": value` with a long
/// `data:` URL in its short form (see [`shown_url`]), not clipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffLine {
    /// Removed, added or kept.
    pub change: LineChange,
    /// The line's text.
    pub text: String,
}

/// The field-level diff of a republish's kind:0 content (the relay's newest
/// against the one to publish), one line per key; a before that is not a
/// JSON object is one removed line that says so. Every human rendering of
/// a plan shows this diff.
pub fn content_diff(r: &RepublishProfile) -> Vec<DiffLine> {
    let mut lines = Vec::new();
    let mut shown: HashMap<String, String> = HashMap::new();
    let after_lines = ProfileContent::parse(&r.after.content)
        .map(|c| field_lines_shown(&c, &mut shown))
        .unwrap_or_else(|| vec![r.after.content.clone()]);
    let before_lines = match &r.before {
        None => Vec::new(),
        Some(before) => match ProfileContent::parse(&before.content) {
            Some(content) => field_lines_shown(&content, &mut shown),
            None => {
                lines.push(DiffLine {
                    change: LineChange::Removed,
                    text: format!(
                        "(content is not a JSON object: {})",
                        clip(&before.content, 60)
                    ),
                });
                Vec::new()
            }
        },
    };
    let before_refs: Vec<&str> = before_lines.iter().map(String::as_str).collect();
    let after_refs: Vec<&str> = after_lines.iter().map(String::as_str).collect();
    let diff = TextDiff::from_slices(&before_refs, &after_refs);
    for change in diff.iter_all_changes() {
        let full = change.value();
        lines.push(DiffLine {
            change: match change.tag() {
                ChangeTag::Delete => LineChange::Removed,
                ChangeTag::Insert => LineChange::Added,
                ChangeTag::Equal => LineChange::Kept,
            },
            text: shown.get(full).map_or(full, String::as_str).to_string(),
        });
    }
    lines
}

fn render_republish(out: &mut String, r: &RepublishProfile, style: Style) {
    let symbol = if r.reasons.contains(&RepublishReason::Missing) {
        style.paint(Paint::Add, "+")
    } else {
        style.paint(Paint::Change, "~")
    };
    let reasons: Vec<&str> = r.reasons.iter().map(|x| x.as_str()).collect();
    let _ = writeln!(
        out,
        "  {symbol} republish_profile on {} ({})",
        r.relay,
        reasons.join(", ")
    );
    for line in content_diff(r) {
        let text = clip(&line.text, 160);
        match line.change {
            LineChange::Removed => {
                let _ = writeln!(
                    out,
                    "      {}",
                    style.paint(Paint::Remove, &format!("- {text}"))
                );
            }
            LineChange::Added => {
                let _ = writeln!(
                    out,
                    "      {}",
                    style.paint(Paint::Add, &format!("+ {text}"))
                );
            }
            LineChange::Kept => {
                let _ = writeln!(out, "        {}", style.paint(Paint::Dim, &text));
            }
        }
    }
    for tag in &r.after.tags {
        let shown: Vec<String> = tag
            .iter()
            .map(|part| format!("{:?}", clip(part, 20)))
            .collect();
        let _ = writeln!(
            out,
            "        tag [{}] (from {})",
            shown.join(", "),
            r.auth_tag_source.as_str()
        );
    }
    if let Some(before) = &r.before {
        let _ = writeln!(
            out,
            "        {}",
            style.paint(
                Paint::Dim,
                &format!(
                    "replaces event {} (dated {})",
                    short_pubkey(&before.id),
                    crate::core::rules::utc(before.created_at)
                )
            )
        );
    }
}

fn render_skipped(out: &mut String, doc: &PlanDocument, style: Style) {
    let skipped = &doc.plan.skipped;
    if skipped.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nSkipped agents ({}), left for a person to look at:",
        skipped.len()
    );
    for reason in SkipReason::ALL {
        let mut group: Vec<_> = skipped.iter().filter(|s| s.reason == reason).collect();
        if group.is_empty() {
            continue;
        }
        group.sort_by_cached_key(|s| (s.name.to_lowercase(), s.agent.clone(), s.index));
        let _ = writeln!(
            out,
            "  {} ({})",
            style.paint(Paint::Warn, reason.as_str()),
            group.len()
        );
        for skip in group {
            let who = if skip.name.trim().is_empty() {
                short_pubkey(&skip.agent)
            } else {
                format!("{} ({})", skip.name, short_pubkey(&skip.agent))
            };
            let _ = writeln!(out, "    - {who}: {}", skip.detail);
        }
    }
}

/// Cuts a long value for display, on a character boundary.
pub(crate) fn clip(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max_chars).collect();
        format!("{cut}…")
    }
}

/// Renders what an apply did: a count line, every action that was not
/// applied (with why), the plan's skipped agents, and where the journal is.
pub fn render_report(report: &crate::core::apply::ApplyReport, style: Style) -> String {
    use crate::core::apply::Outcome;
    let mut out = String::new();
    // By name, then pubkey, as the plan shows them; an agent's results in
    // plan order (its backfill first).
    let mut in_order: Vec<&crate::core::apply::ActionResult> = report.results.iter().collect();
    in_order.sort_by_cached_key(|r| (r.name.to_lowercase(), r.agent.clone()));
    for result in in_order {
        let (paint, label) = match result.outcome {
            Outcome::Applied => (Paint::Add, "applied"),
            Outcome::AlreadyApplied => (Paint::Dim, "already applied"),
            Outcome::Stale => (Paint::Warn, "stale"),
            Outcome::Failed => (Paint::Remove, "failed"),
        };
        let who = format!(
            "{} ({})",
            escape_controls(&result.name, false),
            short_pubkey(&result.agent)
        );
        let _ = write!(
            out,
            "  {} {} {who}",
            style.paint(paint, &format!("{label:<15}")),
            result.kind
        );
        if let Some(relay) = &result.relay {
            let _ = write!(out, " on {}", escape_controls(relay, false));
        }
        match &result.reason {
            Some(reason) => {
                let reason = escape_controls(reason, false);
                let _ = writeln!(out, ": {reason}");
            }
            None => out.push('\n'),
        }
    }
    if !report.skipped.is_empty() {
        let mut reasons: Vec<(SkipReason, usize)> = SkipReason::ALL
            .into_iter()
            .map(|r| (r, report.skipped.iter().filter(|s| s.reason == r).count()))
            .filter(|(_, n)| *n > 0)
            .collect();
        reasons.sort();
        let list: Vec<String> = reasons
            .iter()
            .map(|(r, n)| format!("{n} {}", r.as_str()))
            .collect();
        let _ = writeln!(
            out,
            "\nSkipped by the plan (not changed): {}.",
            list.join(", ")
        );
    }
    let _ = writeln!(out, "\nJournal: {}", report.journal.display());
    if let Some(backup) = &report.backup {
        let _ = writeln!(
            out,
            "Store backup (before this apply): {}",
            backup.display()
        );
    }
    let counts = format!(
        "{} applied, {} already applied, {} stale, {} failed",
        report.count(Outcome::Applied),
        report.count(Outcome::AlreadyApplied),
        report.count(Outcome::Stale),
        report.count(Outcome::Failed),
    );
    let done = report.count(Outcome::Applied) + report.count(Outcome::AlreadyApplied);
    let line = if report.not_begun > 0 {
        format!(
            "Apply stopped: {counts}, {} not begun (left for the next run).",
            report.not_begun
        )
    } else if report.succeeded() {
        format!("Apply complete: {counts}.")
    } else if done == 0 {
        format!("Apply failed: nothing was applied; {counts}.")
    } else {
        format!("Apply finished with problems: {counts}.")
    };
    let paint = if report.succeeded() {
        Paint::Bold
    } else {
        Paint::Warn
    };
    let _ = writeln!(out, "\n{}", style.paint(paint, &line));
    out
}

/// A plan's actions counted by name, for the overviews (`plan --summary`,
/// the HTML review): republishes by reason and by relay, backfills by the
/// source of their avatar. Sorted by name.
pub(crate) struct ActionTally<'a> {
    /// Republishes by reason (one republish may count under several).
    pub reasons: std::collections::BTreeMap<&'a str, usize>,
    /// Backfills by the source of the avatar they write.
    pub sources: std::collections::BTreeMap<&'a str, usize>,
    /// Republishes by relay.
    pub relays: std::collections::BTreeMap<&'a str, usize>,
}

impl<'a> ActionTally<'a> {
    /// Counts the actions of `plan`.
    pub(crate) fn of(plan: &'a crate::core::plan::Plan) -> Self {
        let mut tally = ActionTally {
            reasons: Default::default(),
            sources: Default::default(),
            relays: Default::default(),
        };
        for action in &plan.actions {
            match action {
                Action::BackfillAvatar(b) => {
                    *tally.sources.entry(b.source.as_str()).or_default() += 1
                }
                Action::RepublishProfile(r) => {
                    *tally.relays.entry(r.relay.as_str()).or_default() += 1;
                    for reason in &r.reasons {
                        *tally.reasons.entry(reason.as_str()).or_default() += 1;
                    }
                }
            }
        }
        tally
    }
}

/// `name n, name n`: a count map on one line.
pub(crate) fn counts_list(map: &std::collections::BTreeMap<&str, usize>) -> String {
    map.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A one-screen overview of a (large) plan: counts by reason, source, relay
/// and skip reason, then the summary line.
pub fn render_summary(doc: &PlanDocument, style: Style) -> String {
    use std::collections::BTreeMap;
    let doc = &*terminal_safe(doc);
    let plan = &doc.plan;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "reprofile {} made {} from {} ({} records)",
        doc.kind.title(),
        rfc3339(doc.created_at),
        doc.store.path,
        doc.store.records
    );
    let tally = ActionTally::of(plan);
    let s = plan.summary();
    let _ = writeln!(
        out,
        "  complete:  {}",
        match plan.incomplete_because(str::to_string) {
            None => "yes".to_string(),
            Some(why) => style.paint(Paint::Warn, &format!("no ({why})")),
        }
    );
    let _ = writeln!(
        out,
        "  republish: {:<6} {}",
        s.republish,
        counts_list(&tally.reasons)
    );
    let _ = writeln!(
        out,
        "  backfill:  {:<6} {}",
        s.backfill,
        counts_list(&tally.sources)
    );
    let _ = writeln!(out, "  unchanged: {}", s.unchanged);
    if plan.agent_owned > 0 {
        let _ = writeln!(
            out,
            "  owners:    record {}, agent {} ({} agent-managed profile{} differ{} from the record)",
            plan.agents.saturating_sub(plan.agent_owned),
            plan.agent_owned,
            plan.agent_managed.len(),
            if plan.agent_managed.len() == 1 { "" } else { "s" },
            if plan.agent_managed.len() == 1 { "s" } else { "" },
        );
    }
    let mut skips: BTreeMap<&str, usize> = BTreeMap::new();
    for skip in &plan.skipped {
        *skips.entry(skip.reason.as_str()).or_default() += 1;
    }
    let _ = writeln!(out, "  skipped:   {:<6} {}", s.skipped, counts_list(&skips));
    for (relay, n) in &tally.relays {
        let _ = writeln!(out, "  relay {relay}: {n} to republish");
    }
    let _ = writeln!(out, "{}", summary_line(doc));
    out
}

/// The plan with every control character of its text escaped (`\u{1b}`),
/// except the line breaks and tabs a kind:0's JSON may hold between tokens: a
/// plan file's text comes from stores and relays (and a plan file can be
/// crafted), and must not reach a terminal as an escape sequence. Borrowed
/// as it is when there is nothing to escape (the common case).
fn terminal_safe(doc: &PlanDocument) -> std::borrow::Cow<'_, PlanDocument> {
    use crate::core::plan::Action;
    fn unsafe_text(text: &str) -> bool {
        matches!(escape_controls(text, true), Cow::Owned(_))
    }
    fn escape(text: &mut String, keep_layout: bool) {
        if let Cow::Owned(escaped) = escape_controls(text, keep_layout) {
            *text = escaped;
        }
    }
    let mut texts: Vec<&str> = vec![&doc.store.path, &doc.store.sha256];
    for action in &doc.plan.actions {
        match action {
            Action::BackfillAvatar(b) => {
                texts.extend([&*b.agent, &b.name, &b.avatar_url]);
                if let crate::core::model::AvatarField::Text(before) = &b.before {
                    texts.push(before);
                }
            }
            Action::RepublishProfile(r) => {
                texts.extend([&*r.agent, &r.name, &r.picture, &r.relay, &r.after.content]);
                texts.extend(r.before.iter().flat_map(|b| [&*b.id, &b.content]));
                texts.extend(r.after.tags.iter().flatten().map(String::as_str));
            }
        }
    }
    for skip in &doc.plan.skipped {
        texts.extend([&*skip.agent, &skip.name, &skip.detail]);
        texts.extend(skip.relay.as_deref());
    }
    texts.extend(doc.plan.unchanged.iter().map(String::as_str));
    if !texts.into_iter().any(unsafe_text) {
        return std::borrow::Cow::Borrowed(doc);
    }
    let mut safe = doc.clone();
    escape(&mut safe.store.path, false);
    escape(&mut safe.store.sha256, false);
    for action in &mut safe.plan.actions {
        match action {
            Action::BackfillAvatar(b) => {
                for text in [&mut b.agent, &mut b.name, &mut b.avatar_url] {
                    escape(text, false);
                }
                if let crate::core::model::AvatarField::Text(before) = &mut b.before {
                    escape(before, false);
                }
            }
            Action::RepublishProfile(r) => {
                for text in [&mut r.agent, &mut r.name, &mut r.picture, &mut r.relay] {
                    escape(text, false);
                }
                escape(&mut r.after.content, true);
                if let Some(before) = &mut r.before {
                    escape(&mut before.id, false);
                    escape(&mut before.content, true);
                }
                for text in r.after.tags.iter_mut().flatten() {
                    escape(text, false);
                }
            }
        }
    }
    for skip in &mut safe.plan.skipped {
        for text in [&mut skip.agent, &mut skip.name, &mut skip.detail] {
            escape(text, false);
        }
        if let Some(relay) = &mut skip.relay {
            escape(relay, false);
        }
    }
    for text in &mut safe.plan.unchanged {
        escape(text, false);
    }
    std::borrow::Cow::Owned(safe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::{
        AuthTagSource, AvatarSource, EventAfter, EventBefore, RepublishReason,
    };

    #[test]
    fn a_migration_plans_legend_names_only_backfills() {
        let mut doc = crate::store::planfile::test_document(vec![Action::BackfillAvatar(
            crate::core::plan::BackfillAvatar {
                agent: "a".repeat(64),
                name: "Ada".into(),
                index: 0,
                source: AvatarSource::Persona,
                avatar_url: "https://p/1.png".into(),
                before: crate::core::model::AvatarField::Null,
            },
        )]);
        doc.kind = PlanKind::Migrate;
        let text = render(&doc, Style::default());
        assert!(text.contains("actions (< backfill):"), "{text}");
        assert!(!text.contains("republish"), "{text}");
    }

    #[test]
    fn a_stopped_apply_says_how_many_actions_were_not_begun() {
        use crate::core::apply::Outcome;
        use crate::core::apply::{ActionResult, ApplyReport};
        let mut report = ApplyReport {
            results: vec![ActionResult {
                id: format!("republish_profile:{}@wss://r.example", "a".repeat(64)),
                kind: "republish_profile",
                agent: "a".repeat(64),
                name: "Ada".into(),
                relay: Some("wss://r.example".into()),
                outcome: Outcome::Applied,
                reason: None,
                event_id: None,
            }],
            skipped: Vec::new(),
            journal: "plans/p.journal.jsonl".into(),
            backup: None,
            not_begun: 3,
            records_from_plan: false,
            signatures_vouched: 0,
        };
        let text = render_report(&report, Style::default());
        assert!(
            text.contains("republish_profile Ada (aaaaaaaa…aaaaaaaa) on wss://r.example\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "Apply stopped: 1 applied, 0 already applied, 0 stale, 0 failed, 3 not begun (left for the next run).\n"
            ),
            "{text}"
        );
        assert!(!report.succeeded(), "a stopped apply is not a success");

        report.not_begun = 0;
        assert!(render_report(&report, Style::default())
            .ends_with("Apply complete: 1 applied, 0 already applied, 0 stale, 0 failed.\n"));
        assert!(report.succeeded());

        // Nothing applied and every action failed: not "complete".
        report.results[0].outcome = Outcome::Failed;
        let text = render_report(&report, Style::default());
        assert!(
            text.ends_with("Apply failed: nothing was applied; 0 applied, 0 already applied, 0 stale, 1 failed.\n"),
            "{text}"
        );
        report.results.push(ActionResult {
            outcome: Outcome::Applied,
            ..report.results[0].clone()
        });
        let text = render_report(&report, Style::default());
        assert!(
            text.ends_with(
                "Apply finished with problems: 1 applied, 0 already applied, 0 stale, 1 failed.\n"
            ),
            "{text}"
        );
    }

    /// The report lists agents by name, then pubkey, as the plan does, an
    /// agent's backfill before its republish (before: in plan order, by
    /// pubkey: `generated-00001` above `generated-00000`).
    #[test]
    fn the_apply_report_lists_agents_by_name_then_pubkey() {
        use crate::core::apply::{ActionResult, ApplyReport, Outcome};
        let result = |kind: &'static str, agent: char, name: &str| ActionResult {
            id: format!("{kind}:{}", agent.to_string().repeat(64)),
            kind,
            agent: agent.to_string().repeat(64),
            name: name.into(),
            relay: None,
            outcome: Outcome::Applied,
            reason: None,
            event_id: None,
        };
        let report = ApplyReport {
            results: vec![
                result("backfill_avatar", 'a', "zed"),
                result("backfill_avatar", 'b', "Ada"),
                result("republish_profile", 'b', "Ada"),
                result("republish_profile", 'c', "ada"),
            ],
            skipped: Vec::new(),
            journal: "plans/p.journal.jsonl".into(),
            backup: None,
            not_begun: 0,
            records_from_plan: false,
            signatures_vouched: 0,
        };
        let text = render_report(&report, Style::default());
        // Each line: `  applied  <kind> <name> (<pubkey>)`.
        let lines: Vec<String> = text
            .lines()
            .take(4)
            .map(|line| {
                line.split_whitespace()
                    .skip(1)
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(
            lines,
            [
                "backfill_avatar Ada",
                "republish_profile Ada",
                "republish_profile ada",
                "backfill_avatar zed",
            ],
            "{text}"
        );
    }

    /// A `data:` URL of `len` bytes.
    fn data_url(len: usize, fill: char) -> String {
        let header = "data:image/png;base64,";
        format!("{header}{}", fill.to_string().repeat(len - header.len()))
    }

    #[test]
    fn a_long_data_url_is_shown_as_header_size_and_digest() {
        let url = data_url(52_356, 'A');
        let digest = crate::store::agents::sha256_hex(url.as_bytes());
        assert_eq!(
            shown_url(&url),
            format!("data:image/png;base64,… (52 KB, sha256 {}…)", &digest[..8])
        );
        assert_eq!(
            shown_url(&data_url(640, 'B')).split(" (").nth(1).unwrap()[..9].to_string(),
            "640 bytes"
        );
        // Short data: URLs and ordinary URLs are shown whole.
        assert_eq!(shown_url("data:,hi"), "data:,hi");
        assert_eq!(shown_url("https://a/x.png"), "https://a/x.png");
        assert_eq!(shown_url_value("https://a/x.png"), "\"https://a/x.png\"");
        // A data: URL with no comma early on is cut on a character boundary.
        let odd = format!("data:{}", "é".repeat(200));
        assert!(
            shown_url(&odd).starts_with("data:ééé"),
            "{}",
            shown_url(&odd)
        );
    }

    #[test]
    fn the_rendering_shows_data_avatars_short_and_says_null() {
        let fizz = data_url(52_356, 'F');
        let old = data_url(30_000, 'O');
        let agent = "a".repeat(64);
        let before_content =
            format!(r#"{{"display_name":"Nectar","picture":"{old}","about":"bee"}}"#);
        let after_content = format!(
            r#"{{"display_name":"Nectar","picture":"{fizz}","about":"bee","name":"Nectar"}}"#
        );
        let doc = crate::store::planfile::test_document(vec![
            Action::BackfillAvatar(BackfillAvatar {
                agent: agent.clone(),
                name: "Nectar".into(),
                index: 3,
                source: AvatarSource::Persona,
                avatar_url: fizz.clone(),
                before: AvatarField::Null,
            }),
            Action::RepublishProfile(RepublishProfile {
                agent: agent.clone(),
                name: "Nectar".into(),
                picture: fizz.clone(),
                relay: "ws://r".into(),
                reasons: vec![RepublishReason::PictureChanged],
                before: Some(EventBefore {
                    id: "e".repeat(64),
                    created_at: 5,
                    content: before_content,
                }),
                after: EventAfter {
                    content: after_content,
                    tags: vec![],
                    created_at_must_exceed: 5,
                },
                auth_tag_source: AuthTagSource::None,
            }),
        ]);
        let text = render(&doc, Style::default());
        let short_fizz = shown_url(&fizz).into_owned();
        let short_old = shown_url(&old).into_owned();
        assert!(
            text.contains("< backfill_avatar from persona (record #3, avatar_url was null)"),
            "{text}"
        );
        assert!(
            text.contains(&format!("+ \"avatar_url\": {short_fizz}")),
            "{text}"
        );
        assert!(
            text.contains(&format!("- \"picture\": {short_old}")),
            "{text}"
        );
        assert!(
            text.contains(&format!("+ \"picture\": {short_fizz}")),
            "{text}"
        );
        assert!(text.contains("  \"about\": \"bee\""), "{text}");
        assert!(text.lines().all(|l| l.len() < 200), "{text}");
        assert!(!text.contains("FFFFFFFF"), "no base64 in the rendering");

        // Absent and blank are told apart from null.
        for (before, shown) in [
            (AvatarField::Absent, "avatar_url was absent"),
            (AvatarField::Text("  ".into()), "avatar_url was \"  \""),
        ] {
            let doc = crate::store::planfile::test_document(vec![Action::BackfillAvatar(
                BackfillAvatar {
                    agent: agent.clone(),
                    name: "Nectar".into(),
                    index: 3,
                    source: AvatarSource::Command,
                    avatar_url: "https://c/goose.png".into(),
                    before,
                },
            )]);
            assert!(render(&doc, Style::default()).contains(shown));
        }
    }
}
