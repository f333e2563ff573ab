//! The plan as Markdown for a ticket or a pull-request comment
//! (`show --format markdown`).
//!
//! It owns that text: the summary, one table of actions (agent, action,
//! reasons, the picture before → after as links), the skipped agents, and
//! each kind:0 diff folded in a `<details>` block. Rows are in the order of
//! [`super::reviews`] (grouped, then by name).
//!
//! What it must not do: let a string from the plan become Markdown or HTML.
//! Every such string is escaped for where it goes (table cell text, a link's
//! destination, the raw HTML of a `<summary>`, a fenced code block longer
//! than any run of backticks in it), invisible characters are shown as
//! escapes, and only `https:` and `http:` URLs become links.

use std::fmt::Write as _;
use std::io;

use super::{
    escape_html, link_href, reviews, skipped_by_reason, summary_line, visible, visible_keep_lines,
    AgentReview, Group, Picture,
};
use crate::core::model::AvatarField;
use crate::core::plan::{BackfillAvatar, RepublishProfile};
use crate::core::rules::short_pubkey;
use crate::review::render::{clip, content_diff, shown_url, LineChange};
use crate::store::planfile::{rfc3339, PlanDocument, PlanKind};

/// Writes the Markdown to `out`.
pub fn write(doc: &PlanDocument, out: &mut dyn io::Write) -> io::Result<()> {
    out.write_all(render(doc).as_bytes())
}

/// The Markdown.
pub fn render(doc: &PlanDocument) -> String {
    let plan = &doc.plan;
    let reviews = reviews(plan);
    let mut out = String::new();
    let what = match doc.kind {
        PlanKind::Reconcile => "plan",
        PlanKind::Migrate => "migration plan",
    };
    let _ = writeln!(out, "## reprofile {what}\n");
    let _ = writeln!(out, "**{}**\n", text(&summary_line(doc)));
    let _ = writeln!(
        out,
        "For {} agents in {}, made {}.\n",
        plan.agents,
        text(&doc.store.path),
        text(&rfc3339(doc.created_at))
    );
    if let Some(why) = plan.incomplete_because(text) {
        let _ = writeln!(
            out,
            "> **Incomplete:** {why}: the agents concerned are skipped.\n"
        );
    }

    let skipped = skipped_by_reason(plan);
    out.push_str("| | agents |\n|---|---:|\n");
    for group in Group::ALL {
        let n = reviews.iter().filter(|r| r.group == group).count();
        if n > 0 {
            let _ = writeln!(out, "| {} | {n} |", group.title());
        }
    }
    for (reason, skips) in &skipped {
        let _ = writeln!(
            out,
            "| Skipped: {} | {} |",
            text(reason.as_str()),
            skips.len()
        );
    }
    if !plan.unchanged.is_empty() {
        let _ = writeln!(out, "| Unchanged | {} |", plan.unchanged.len());
    }

    if !plan.actions.is_empty() {
        let _ = writeln!(
            out,
            "\n### Actions ({})\n\n| Agent | Action | Reasons | Picture before → after |\n|---|---|---|---|",
            plan.actions.len()
        );
        for review in &reviews {
            if let Some(b) = review.backfill {
                backfill_row(&mut out, review, b);
            }
            if let Some(r) = review.republish {
                republish_row(&mut out, review, r);
            }
        }
    }

    if !skipped.is_empty() {
        let _ = writeln!(
            out,
            "\n### Skipped agents ({}), left for a person\n\n| Agent | Reason | Detail |\n|---|---|---|",
            plan.skipped.len()
        );
        for (reason, skips) in &skipped {
            for skip in skips {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} |",
                    who(&skip.name, &skip.agent),
                    text(reason.as_str()),
                    text(&skip.detail)
                );
            }
        }
    }

    let republishes: Vec<(&AgentReview<'_>, &RepublishProfile)> = reviews
        .iter()
        .filter_map(|review| review.republish.map(|r| (review, r)))
        .collect();
    if !republishes.is_empty() {
        out.push_str("\n### kind:0 diffs\n");
        for (review, r) in republishes {
            diff_block(&mut out, review, r);
        }
    }
    out
}

fn backfill_row(out: &mut String, review: &AgentReview<'_>, b: &BackfillAvatar) {
    let before = match &b.before {
        AvatarField::Absent => Picture::Missing("no avatar_url in the record"),
        AvatarField::Null => Picture::Missing("avatar_url is null"),
        AvatarField::Text(t) if t.trim().is_empty() => Picture::Missing("avatar_url is blank"),
        AvatarField::Text(t) => Picture::Url(t.clone()),
    };
    let _ = writeln!(
        out,
        "| {} | backfill avatar\\_url from {} | record {} | {} → {} |",
        who(review.name, review.agent),
        text(b.source.as_str()),
        b.index,
        picture(&before),
        picture(&Picture::Url(b.avatar_url.clone())),
    );
}

fn republish_row(out: &mut String, review: &AgentReview<'_>, r: &RepublishProfile) {
    let reasons: Vec<&str> = r.reasons.iter().map(|x| x.as_str()).collect();
    let pair = review
        .avatars()
        .into_iter()
        .find(|p| p.of == super::PictureOf::Relay)
        .expect("a republish has a relay pair");
    let _ = writeln!(
        out,
        "| {} | republish on {} | {} | {} → {} |",
        who(review.name, review.agent),
        text(&r.relay),
        text(&reasons.join(", ")),
        picture(&pair.before),
        picture(&pair.after),
    );
}

fn diff_block(out: &mut String, review: &AgentReview<'_>, r: &RepublishProfile) {
    let reasons: Vec<&str> = r.reasons.iter().map(|x| x.as_str()).collect();
    let mut body = String::new();
    for line in content_diff(r) {
        let mark = match line.change {
            LineChange::Removed => "- ",
            LineChange::Added => "+ ",
            LineChange::Kept => "  ",
        };
        for part in visible_keep_lines(&clip(&line.text, 1_000)).split('\n') {
            let _ = writeln!(body, "{mark}{part}");
        }
    }
    let fence = "`".repeat(3.max(longest_backtick_run(&body) + 1));
    let name = if review.name.trim().is_empty() {
        short_pubkey(review.agent)
    } else {
        format!("{} ({})", review.name, short_pubkey(review.agent))
    };
    let _ = write!(
        out,
        "\n<details>\n<summary>{}: {}</summary>\n\n{fence}diff\n{body}{fence}\n\n</details>\n",
        escape_html(&visible(&name)),
        escape_html(&visible(&reasons.join(", "))),
    );
}

fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// An agent as table text: its name and short pubkey.
fn who(name: &str, agent: &str) -> String {
    if name.trim().is_empty() {
        text(&short_pubkey(agent))
    } else {
        format!("{} ({})", text(name), text(&short_pubkey(agent)))
    }
}

/// A picture as table text: a link when it may be one (its text the URL, a
/// long `data:` URL short), else the text; or why there is none.
fn picture(picture: &Picture) -> String {
    match picture {
        Picture::Missing(why) => format!("none ({})", text(why)),
        Picture::Url(url) => {
            let shown = text(&clip(&shown_url(url), 100));
            match link_href(url) {
                Some(href) => format!("[{shown}]({})", destination(href)),
                None => shown,
            }
        }
    }
}

/// Text for a Markdown table cell or paragraph: invisible characters (line
/// breaks too) as escapes, `& < >` as entities, and the characters of inline
/// Markdown (`` \ ` * _ [ ] | ~ $ ``) backslash-escaped, so no emphasis,
/// link, image, code span, raw HTML, math or cell break can come from it.
/// (Inline text never starts a line, so block markers need nothing.)
fn text(raw: &str) -> String {
    let shown = visible(raw);
    let mut out = String::with_capacity(shown.len() + 8);
    for c in shown.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' | '$' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A URL as a link destination: every byte outside the URL characters that
/// need no quoting (and `( ) | \ < >` and spaces) percent-encoded, `&` as an
/// entity, so the destination cannot end early or break the table.
fn destination(url: &str) -> String {
    let mut out = String::with_capacity(url.len() + 8);
    for byte in url.bytes() {
        match byte {
            b'&' => out.push_str("&amp;"),
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b':'
            | b'/'
            | b'?'
            | b'#'
            | b'@'
            | b'!'
            | b'$'
            | b'\''
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
            | b'%' => out.push(byte as char),
            other => {
                let _ = write!(out, "%{other:02X}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_text_cannot_become_markdown_or_html() {
        assert_eq!(
            text("a|b <img onerror=x> *c* [d](e) `f` ~g~ $h$ _i_ \\"),
            "a\\|b &lt;img onerror=x&gt; \\*c\\* \\[d\\](e) \\`f\\` \\~g\\~ \\$h\\$ \\_i\\_ \\\\"
        );
        assert_eq!(text("line\nbreak"), "line\\\\u{a}break");
    }

    #[test]
    fn link_destinations_cannot_end_early() {
        assert_eq!(
            destination("https://a.example/x (1)|y z<>\"\\é&lt;"),
            "https://a.example/x%20%281%29%7Cy%20z%3C%3E%22%5C%C3%A9&amp;lt;"
        );
    }

    #[test]
    fn a_fence_is_longer_than_any_backtick_run_inside() {
        assert_eq!(longest_backtick_run("a ``` b ````` c"), 5);
        assert_eq!(longest_backtick_run("none"), 0);
    }
}
