//! `reprofile plan`: snapshot, plan, write the plan file, print it.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use crate::core::rules;
use crate::engine::orchestrate::make_plan;
use crate::review::render;

use super::{load_config, runtime, stdout, stdout_style, tell_store, ConfigArgs, Ending, Unread};

/// `plan`, as the command line gave it.
pub(super) fn run(
    args: &ConfigArgs,
    out: Option<PathBuf>,
    detailed_exitcode: bool,
    agents: Vec<String>,
    summary: bool,
    full: bool,
    html: Option<PathBuf>,
) -> anyhow::Result<Ending> {
    let config = load_config(args)?;
    let only = agents
        .iter()
        .map(|a| parse_agent_arg(a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let planned = runtime()?.block_on(make_plan(&config, &only, out.as_deref()))?;
    tell_store(&config, args.quiet);
    if let Some(html) = &html {
        crate::review::html::save(&planned.doc, html)
            .with_context(|| format!("cannot write the HTML review {}", html.display()))?;
    }
    let mut stdout = stdout();
    let large = planned.doc.plan.actions.len() > render::LARGE_PLAN_ACTIONS;
    if summary || (large && !full) {
        stdout.write_all(render::render_summary(&planned.doc, stdout_style()).as_bytes())?;
        writeln!(
            stdout,
            "The full rendering{} is in {} (`reprofile show` prints it{}).",
            if summary { "" } else { " of this large plan" },
            planned.path.with_extension("txt").display(),
            if summary {
                ""
            } else {
                "; `plan --full` prints it here"
            },
        )?;
    } else {
        stdout.write_all(render::render(&planned.doc, stdout_style()).as_bytes())?;
    }
    writeln!(stdout, "Saved the plan to {}", planned.path.display())?;
    if let Some(html) = &html {
        writeln!(stdout, "Saved the HTML review to {}", html.display())?;
    }
    stdout.flush()?;
    Ok(Ending {
        changes: detailed_exitcode && !planned.doc.plan.is_empty(),
        unread: Unread::of_plan(&planned.doc.plan, &planned.read_errors),
        ..Ending::default()
    })
}

/// Accepts a pubkey as 64 hex digits or as an npub.
fn parse_agent_arg(text: &str) -> anyhow::Result<String> {
    let text = text.trim();
    if rules::is_pubkey_hex(text) {
        return Ok(text.to_string());
    }
    nostr::PublicKey::parse(text)
        .map(|pk| pk.to_hex())
        .map_err(|_| {
            anyhow::anyhow!(
                "--agent {text:?} is not a pubkey; give 64 lower-case hex digits or an npub"
            )
        })
}
