//! `reprofile show`: a saved plan again, as text, JSON, HTML or Markdown.

use std::io::Write;
use std::path::PathBuf;

use crate::review::render;
use crate::store::planfile;

use super::{load_config, say, stdout, stdout_style, ConfigArgs, Ending, ShowFormat};

/// `show`, as the command line gave it.
pub(super) fn run(
    args: &ConfigArgs,
    plan: Option<PathBuf>,
    json: bool,
    summary: bool,
    html: bool,
    format: Option<ShowFormat>,
) -> anyhow::Result<Ending> {
    let plan = match plan {
        Some(plan) => plan,
        None => {
            let newest = planfile::newest(&load_config(args)?.plans_dir)?;
            if !args.quiet {
                say(&format!("plan: {}", newest.display()));
            }
            newest
        }
    };
    let doc = planfile::read(&plan)?;
    let format = match (json, html) {
        (true, _) => ShowFormat::Json,
        (_, true) => ShowFormat::Html,
        _ => format.unwrap_or(ShowFormat::Text),
    };
    let mut stdout = stdout();
    match format {
        ShowFormat::Json => stdout.write_all(planfile::to_json(&doc).as_bytes())?,
        ShowFormat::Html => crate::review::html::write(&doc, &mut stdout)?,
        ShowFormat::Markdown => crate::review::markdown::write(&doc, &mut stdout)?,
        ShowFormat::Text if summary => {
            stdout.write_all(render::render_summary(&doc, stdout_style()).as_bytes())?
        }
        ShowFormat::Text => stdout.write_all(render::render(&doc, stdout_style()).as_bytes())?,
    }
    stdout.flush()?;
    Ok(Ending::default())
}
