//! The plan as one self-contained HTML page (`show --html`, `plan --html`).
//!
//! It owns the page: the summary line and a summary table first, then per
//! group (see [`super::Group`]) one card per agent with its name, short
//! pubkey, the avatars before and after side by side as images, the name
//! change, what is done and the kind:0 diff; then the skipped agents with
//! their reasons and the unchanged ones. Sections fold with `<details>`,
//! folded from the start when the plan is large, so a plan of thousands of
//! actions stays usable.
//!
//! What it must not do: run or load anything but the avatar images. The page
//! has no script and loads no style sheet, font or frame; its
//! Content-Security-Policy allows no script at all, images only from
//! `https:`, `http:` and `data:`, and only its own style element (by hash).
//! Every string from the plan is escaped (and its invisible characters shown
//! as escapes), and a URL goes into `src` or `href` only when
//! [`super::image_src`] or [`super::link_href`] allows it. An image that does
//! not load still shows its URL, written under it.

use std::fmt::Write as _;
use std::io;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::{
    escape_html, image_src, link_href, republishes_by_relay, reviews, skipped_by_reason,
    summary_line, visible, visible_keep_lines, AgentReview, AvatarPair, Group, Picture,
};
use crate::core::plan::RepublishReason;
use crate::core::rules::short_pubkey;
use crate::review::render::{
    clip, content_diff, counts_list, shown_url, ActionTally, LineChange, LARGE_PLAN_ACTIONS,
};
use crate::store::planfile::{rfc3339, PlanDocument, PlanKind};

/// The page's only style; the Content-Security-Policy admits it by its hash.
const STYLE: &str = "\
:root{color-scheme:light}
body{margin:0;padding:20px 28px 40px;font:14px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,\"Liberation Sans\",sans-serif;color:#1f2328;background:#fff}
h1{font-size:21px;margin:0 0 2px}
h2{font-size:17px;margin:0;display:inline}
h3{font-size:15px;margin:0 0 6px;grid-column:1/-1;overflow-wrap:anywhere}
code,pre{font:12px/1.5 ui-monospace,SFMono-Regular,Menlo,\"Liberation Mono\",monospace}
.line{font-size:16px;font-weight:600;margin:6px 0}
.meta{color:#59636e;margin:2px 0;overflow-wrap:anywhere}
.warn{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:6px 10px;margin:8px 0}
section{margin-top:18px}
.tables{display:flex;flex-wrap:wrap;gap:4px 28px;align-items:flex-start}
table{border-collapse:collapse;margin:6px 0}
th,td{border:1px solid #d1d9e0;padding:3px 10px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
thead th{background:#f6f8fa}
td.n{text-align:right;font-variant-numeric:tabular-nums}
details.group{margin:14px 0 4px}
details.group>summary{cursor:pointer;padding:4px 0}
.agent{display:grid;grid-template-columns:344px minmax(0,1fr);gap:2px 24px;border:1px solid #d1d9e0;border-radius:8px;padding:10px 14px;margin:8px 0}
.key{color:#59636e;font-weight:400}
.pair{display:flex;align-items:flex-start;gap:8px;margin-bottom:6px}
figure{margin:0;width:150px}
figure img,.none{display:block;box-sizing:border-box;width:96px;height:96px;object-fit:cover;border:1px solid #d1d9e0;border-radius:6px;background:#f6f8fa}
.none{padding:6px;font-size:11px;line-height:1.3;color:#59636e;overflow:hidden}
.unsafe{background:#ffebe9;color:#82071e}
figcaption{font-size:11px;line-height:1.35;color:#59636e;margin-top:3px;overflow-wrap:anywhere}
figcaption b{display:block;color:#1f2328}
.arrow{font-size:22px;color:#59636e;padding-top:30px}
ul.facts{margin:0 0 6px;padding-left:18px}
details.diff>summary{cursor:pointer;color:#59636e}
pre{margin:2px 0 0;white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f8fa;border-radius:6px;padding:6px 8px}
.del{color:#82071e;background:#ffebe9}
.add{color:#116329;background:#dafbe1}
.same{color:#59636e}
ul.keys{columns:3 36em;padding-left:18px}
footer{margin-top:24px;color:#59636e;font-size:12px}
";

/// The Content-Security-Policy of the page: nothing but images from
/// `https:`, `http:` and `data:`, and its own style element.
pub fn content_security_policy() -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE));
    format!(
        "default-src 'none'; img-src https: http: data:; style-src 'sha256-{hash}'; \
         base-uri 'none'; form-action 'none'"
    )
}

/// Writes the page to `out`.
pub fn write(doc: &PlanDocument, out: &mut dyn io::Write) -> io::Result<()> {
    out.write_all(render(doc).as_bytes())
}

/// Writes the page to the file `path` atomically (see
/// [`crate::store::planfile::write_atomic`]), creating its folder when needed.
pub fn save(doc: &PlanDocument, path: &std::path::Path) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    crate::store::planfile::write_atomic_with(path, |out| write(doc, out))
}

/// The page.
pub fn render(doc: &PlanDocument) -> String {
    let plan = &doc.plan;
    let large = plan.actions.len() > LARGE_PLAN_ACTIONS;
    let reviews = reviews(plan);
    let mut out = String::with_capacity(8_192 + plan.actions.len() * 2_048);
    let what = match doc.kind {
        PlanKind::Reconcile => "plan",
        PlanKind::Migrate => "migration plan",
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{}\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>reprofile {what} {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&content_security_policy()),
        esc(&rfc3339(doc.created_at)),
    );
    let _ = writeln!(
        out,
        "<header>\n<h1>reprofile {what}</h1>\n<p class=\"line\">{}</p>",
        esc(&summary_line(doc))
    );
    let _ = writeln!(
        out,
        "<p class=\"meta\">For {} agents in <code>{}</code>, made {} (store sha256 {}…).</p>",
        plan.agents,
        esc(&doc.store.path),
        esc(&rfc3339(doc.created_at)),
        esc(&doc.store.sha256.chars().take(12).collect::<String>()),
    );
    if let Some(why) = plan.incomplete_because(esc) {
        let _ = writeln!(
            out,
            "<p class=\"warn\"><b>Incomplete:</b> {why}: the agents concerned are skipped.</p>"
        );
    }
    out.push_str("</header>\n");

    overview(&mut out, doc, &reviews);

    for group in Group::ALL {
        let members: Vec<&AgentReview<'_>> = reviews.iter().filter(|r| r.group == group).collect();
        if members.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "<details class=\"group\" id=\"{}\"{}>\n<summary><h2>{} ({})</h2></summary>",
            group.id(),
            if large { "" } else { " open" },
            group.title(),
            members.len()
        );
        for review in members {
            agent_card(&mut out, review, large);
        }
        out.push_str("</details>\n");
    }

    skipped(&mut out, doc, large);

    if !plan.unchanged.is_empty() {
        let _ = writeln!(
            out,
            "<details class=\"group\" id=\"unchanged\">\n<summary><h2>Unchanged agents ({})</h2></summary>\n<ul class=\"keys\">",
            plan.unchanged.len()
        );
        for agent in &plan.unchanged {
            let _ = writeln!(out, "<li><code>{}</code></li>", esc(agent));
        }
        out.push_str("</ul>\n</details>\n");
    }

    let _ = writeln!(
        out,
        "<footer>Made by reprofile {} from a plan file; the plan file is what apply acts on. \
         This page runs no script; it loads only the avatar images, from the URLs written under them.</footer>\n</body>\n</html>",
        env!("CARGO_PKG_VERSION")
    );
    out
}

/// The summary table: each group and skip reason with its count (linked to
/// its section), the unchanged agents, and the relays written to.
fn overview(out: &mut String, doc: &PlanDocument, reviews: &[AgentReview<'_>]) {
    let plan = &doc.plan;
    out.push_str(
        "<section id=\"summary\">\n<h2>Summary</h2>\n<div class=\"tables\">\n<table class=\"overview\">\n<thead><tr><th>what</th><th>agents</th></tr></thead>\n<tbody>\n",
    );
    for group in Group::ALL {
        let n = reviews.iter().filter(|r| r.group == group).count();
        if n > 0 {
            let _ = writeln!(
                out,
                "<tr><td><a href=\"#{}\">{}</a></td><td class=\"n\">{n}</td></tr>",
                group.id(),
                group.title()
            );
        }
    }
    for (reason, skips) in skipped_by_reason(plan) {
        let _ = writeln!(
            out,
            "<tr><td><a href=\"#skip-{0}\">Skipped: {0}</a></td><td class=\"n\">{1}</td></tr>",
            reason.as_str(),
            skips.len()
        );
    }
    if !plan.unchanged.is_empty() {
        let _ = writeln!(
            out,
            "<tr><td><a href=\"#unchanged\">Unchanged</a></td><td class=\"n\">{}</td></tr>",
            plan.unchanged.len()
        );
    }
    out.push_str("</tbody>\n</table>\n");
    let relays = republishes_by_relay(plan);
    if !relays.is_empty() {
        out.push_str(
            "<table class=\"relays\">\n<thead><tr><th>relay</th><th>to republish</th></tr></thead>\n<tbody>\n",
        );
        for (relay, n) in relays {
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td class=\"n\">{n}</td></tr>",
                esc(relay)
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</div>\n");
    let ActionTally {
        reasons, sources, ..
    } = ActionTally::of(plan);
    let s = plan.summary();
    let _ = writeln!(
        out,
        "<p class=\"meta\">Republish {}{}; backfill {}{}.</p>",
        s.republish,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", counts_list(&reasons))
        },
        s.backfill,
        if sources.is_empty() {
            String::new()
        } else {
            format!(" (from {})", counts_list(&sources))
        },
    );
    out.push_str("</section>\n");
}

fn agent_card(out: &mut String, review: &AgentReview<'_>, large: bool) {
    let _ = writeln!(
        out,
        "<article class=\"agent\">\n<h3>{} <code class=\"key\" title=\"{}\">{}</code></h3>\n<div class=\"pictures\">",
        if review.name.trim().is_empty() {
            "(no name)".to_string()
        } else {
            esc(review.name)
        },
        esc(review.agent),
        esc(&short_pubkey(review.agent)),
    );
    for pair in review.avatars() {
        avatar_pair(out, &pair, large);
    }
    out.push_str("</div>\n<div class=\"changes\">\n<ul class=\"facts\">\n");
    if let Some(r) = review.republish {
        let reasons: Vec<&str> = r.reasons.iter().map(|x| x.as_str()).collect();
        let verb = if r.reasons.contains(&RepublishReason::Missing) {
            "publish"
        } else {
            "republish"
        };
        let _ = writeln!(
            out,
            "<li>{verb} the profile on <code>{}</code> ({})</li>",
            esc(&r.relay),
            esc(&reasons.join(", "))
        );
    }
    if let Some((now, new)) = review.name_change() {
        let _ = writeln!(
            out,
            "<li>display_name {} → “{}”</li>",
            now.map_or_else(|| "(none)".to_string(), |n| format!("“{}”", esc(&n))),
            esc(new)
        );
    }
    if let Some(b) = review.backfill {
        let _ = writeln!(
            out,
            "<li>store avatar_url in record #{} (was {}), from {}: {}</li>",
            b.index,
            match &b.before {
                crate::core::model::AvatarField::Absent => "absent".to_string(),
                crate::core::model::AvatarField::Null => "null".to_string(),
                crate::core::model::AvatarField::Text(text) => format!("“{}”", esc(text)),
            },
            b.source.as_str(),
            url_text(&b.avatar_url),
        );
    }
    if let Some(r) = review.republish {
        if let Some(before) = &r.before {
            let _ = writeln!(
                out,
                "<li>replaces event <code>{}</code> (dated {})</li>",
                esc(&short_pubkey(&before.id)),
                crate::core::rules::utc(before.created_at)
            );
        }
        for tag in &r.after.tags {
            let parts: Vec<String> = tag.iter().map(|p| esc(&clip(p, 20))).collect();
            let _ = writeln!(
                out,
                "<li>tag <code>[{}]</code> (from {})</li>",
                parts.join(", "),
                r.auth_tag_source.as_str()
            );
        }
    }
    out.push_str("</ul>\n");
    if let Some(r) = review.republish {
        let _ = write!(
            out,
            "<details class=\"diff\"{}><summary>kind:0 diff</summary><pre>",
            if large { "" } else { " open" }
        );
        for line in content_diff(r) {
            let (class, mark) = match line.change {
                LineChange::Removed => ("del", "- "),
                LineChange::Added => ("add", "+ "),
                LineChange::Kept => ("same", "  "),
            };
            for part in clip(&line.text, 1_000).split('\n') {
                let _ = writeln!(
                    out,
                    "<span class=\"{class}\">{mark}{}</span>",
                    esc_lines(part)
                );
            }
        }
        out.push_str("</pre></details>\n");
    }
    out.push_str("</div>\n</article>\n");
}

fn avatar_pair(out: &mut String, pair: &AvatarPair, large: bool) {
    out.push_str("<div class=\"pair\">");
    figure(out, &pair.before, pair.of.before_label(), large);
    out.push_str("<span class=\"arrow\">→</span>");
    figure(out, &pair.after, pair.of.after_label(), large);
    out.push_str("</div>\n");
}

/// One side of a pair: the image (or why there is none) and, under it, what
/// it is and its URL, so a picture that does not load still says what it is.
fn figure(out: &mut String, picture: &Picture, label: &str, large: bool) {
    out.push_str("<figure>");
    match picture {
        Picture::Url(url) => match image_src(url) {
            Some(src) => {
                let _ = write!(
                    out,
                    "<img src=\"{}\" alt=\"{}\" width=\"96\" height=\"96\" referrerpolicy=\"no-referrer\"{}>",
                    esc(src),
                    esc(&clip(&shown_url(url), 200)),
                    if large { " loading=\"lazy\"" } else { "" }
                );
            }
            None => out.push_str(
                "<div class=\"none unsafe\">not loaded: not an https:, http: or data:image/ URL</div>",
            ),
        },
        Picture::Missing(why) => {
            let _ = write!(out, "<div class=\"none\">{}</div>", esc(why));
        }
    }
    let _ = write!(out, "<figcaption><b>{label}</b>");
    if let Picture::Url(url) = picture {
        out.push_str(&url_text(url));
    }
    out.push_str("</figcaption></figure>");
}

/// A URL as text: a link when it may be one, a long `data:` URL short; never
/// more than 300 characters.
fn url_text(url: &str) -> String {
    let shown = esc(&clip(&shown_url(url), 300));
    match link_href(url) {
        Some(href) => format!("<a href=\"{}\" rel=\"noreferrer\">{shown}</a>", esc(href)),
        None => format!("<code>{shown}</code>"),
    }
}

fn skipped(out: &mut String, doc: &PlanDocument, large: bool) {
    let groups = skipped_by_reason(&doc.plan);
    if groups.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<section id=\"skipped\">\n<h2>Skipped agents ({}), left for a person to look at</h2>",
        doc.plan.skipped.len()
    );
    for (reason, skips) in groups {
        let _ = writeln!(
            out,
            "<details class=\"group\" id=\"skip-{0}\"{1}>\n<summary><b>{0}</b> ({2})</summary>\n\
             <table>\n<thead><tr><th>agent</th><th>record</th><th>relay</th><th>why</th></tr></thead>\n<tbody>",
            reason.as_str(),
            if large { "" } else { " open" },
            skips.len()
        );
        for skip in skips {
            let _ = writeln!(
                out,
                "<tr><td>{} <code class=\"key\" title=\"{}\">{}</code></td><td class=\"n\">#{}</td><td>{}</td><td>{}</td></tr>",
                esc(&skip.name),
                esc(&skip.agent),
                esc(&short_pubkey(&skip.agent)),
                skip.index,
                skip.relay
                    .as_deref()
                    .map_or_else(String::new, |relay| format!("<code>{}</code>", esc(relay))),
                esc(&skip.detail),
            );
        }
        out.push_str("</tbody>\n</table>\n</details>\n");
    }
    out.push_str("</section>\n");
}

/// Text for HTML text or a double-quoted attribute: invisible characters as
/// escapes (see [`super::visible`]), then `& < > " '` as entities.
fn esc(text: &str) -> String {
    escape_html(&visible(text))
}

/// [`esc`] keeping line breaks and tabs (inside `<pre>`).
fn esc_lines(text: &str) -> String {
    escape_html(&visible_keep_lines(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::AvatarField;
    use crate::core::plan::{
        Action, AuthTagSource, AvatarSource, BackfillAvatar, EventAfter, Plan, RepublishProfile,
    };
    use crate::store::planfile::StoreIdentity;

    /// A plan of `agents` legacy agents without profiles: a backfill and a
    /// republish each.
    fn plan_of(agents: usize) -> PlanDocument {
        let mut actions = Vec::new();
        for i in 0..agents {
            let agent = format!("{i:064x}");
            let name = format!("agent-{:05}", agents - i);
            let picture = format!("https://img.example/{i}.png");
            actions.push(Action::BackfillAvatar(BackfillAvatar {
                agent: agent.clone(),
                name: name.clone(),
                index: i,
                source: AvatarSource::Command,
                avatar_url: picture.clone(),
                before: AvatarField::Null,
            }));
            actions.push(Action::RepublishProfile(RepublishProfile {
                agent,
                name: name.clone(),
                picture: picture.clone(),
                relay: "wss://relay.example".to_string(),
                reasons: vec![RepublishReason::Missing],
                before: None,
                after: EventAfter {
                    content: crate::core::content::merge_content(None, &name, &picture),
                    tags: Vec::new(),
                    created_at_must_exceed: 0,
                },
                auth_tag_source: AuthTagSource::None,
            }));
        }
        PlanDocument {
            created_at: 1_800_000_000,
            kind: PlanKind::Reconcile,
            store: StoreIdentity {
                path: "/s.json".to_string(),
                sha256: "0".repeat(64),
                records: agents,
            },
            plan: Plan {
                actions,
                skipped: Vec::new(),
                unchanged: Vec::new(),
                complete: true,
                agents,
                agent_managed: Vec::new(),
                agent_owned: 0,
            },
        }
    }

    #[test]
    fn a_plan_of_2000_actions_starts_with_its_summary_folded_and_loads_images_lazily() {
        let html = render(&plan_of(1_000));
        let summary = html.find("<section id=\"summary\">").unwrap();
        let first_group = html.find("<details class=\"group\"").unwrap();
        assert!(summary < first_group);
        assert!(html.contains(
            "<tr><td><a href=\"#profile-missing\">Profiles published where the relay has none</a></td><td class=\"n\">1000</td></tr>"
        ));
        assert!(
            !html.contains(" open>"),
            "sections of a large plan start folded"
        );
        assert_eq!(html.matches("<img ").count(), 1_000);
        assert_eq!(html.matches(" loading=\"lazy\">").count(), 1_000);
        // Sorted by name within the group, not by pubkey.
        let first = html.find("agent-00001").unwrap();
        assert!(first < html.find("agent-00002").unwrap());
        assert!(html.find("agent-01000").unwrap() > first);
    }

    #[test]
    fn a_small_plan_starts_open_and_loads_images_at_once() {
        let html = render(&plan_of(100));
        assert_eq!(
            html.matches("<details class=\"group\" id=\"profile-missing\" open>")
                .count(),
            1
        );
        assert_eq!(html.matches("<details class=\"diff\" open>").count(), 100);
        assert!(!html.contains("loading="));
    }

    #[test]
    fn the_policy_admits_exactly_the_page_style() {
        let html = render(&plan_of(1));
        let style = &html[html.find("<style>").unwrap() + 7..html.find("</style>").unwrap()];
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(style));
        assert!(content_security_policy().contains(&format!("style-src 'sha256-{hash}'")));
        assert_eq!(html.matches("<style>").count(), 1);
        assert!(!html.contains(" style="));
    }
}
