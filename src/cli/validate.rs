//! `reprofile validate`: every problem of config and stores, without the network.

use std::io::Write;
use std::path::Path;

use crate::engine::orchestrate::{now_secs, one_line};

use super::{load_config, stdout, tell_store, ConfigArgs, Ending, DEFAULT_CONFIG};

/// `validate`: every problem of config and stores, without the network.
pub(super) fn run(args: &ConfigArgs) -> anyhow::Result<Ending> {
    use crate::core::validate::{validate_records, Severity};
    use crate::store::agents::{read_agent_store, read_persona_store};
    let mut out = stdout();
    let config = match load_config(args) {
        Ok(config) => config,
        Err(err) => {
            writeln!(out, "error: {}", one_line(&err))?;
            writeln!(
                out,
                "The config has a problem; the stores were not checked."
            )?;
            return Ok(Ending {
                problems: true,
                ..Ending::default()
            });
        }
    };
    match &config.source {
        Some(path) => writeln!(out, "ok: config {}", path.display())?,
        None => writeln!(
            out,
            "ok: no config file ({DEFAULT_CONFIG} not found): built-in defaults"
        )?,
    }
    tell_store(&config, args.quiet);
    writeln!(out, "ok: plans folder {}", config.plans_dir.display())?;
    let mut errors = 0usize;
    let mut warnings = 0usize;
    if let Some(metrics) = &config.schedule.metrics_file {
        let folder = metrics.parent().unwrap_or(Path::new("."));
        // The nearest folder that exists: the one run would create the rest in.
        let existing = folder.ancestors().find(|a| a.is_dir());
        let writable = existing
            .is_some_and(|a| std::fs::metadata(a).is_ok_and(|m| !m.permissions().readonly()));
        if folder.as_os_str().is_empty() || folder.is_dir() {
            writeln!(out, "ok: metrics file {}", metrics.display())?;
        } else if writable {
            warnings += 1;
            writeln!(
                out,
                "warning: [schedule] metrics_file {}: its folder {} does not exist yet; run and run --once create it at start",
                metrics.display(),
                folder.display()
            )?;
        } else {
            errors += 1;
            writeln!(
                out,
                "error: [schedule] metrics_file {}: its folder {} does not exist and cannot be created; create it, or point metrics_file elsewhere",
                metrics.display(),
                folder.display()
            )?;
        }
    }
    let store = crate::engine::read_prep::check_app_store(&config)
        .map_err(anyhow::Error::from)
        .and_then(|()| Ok(read_agent_store(&config.agents)?));
    let personas_there = config.personas_configured || config.personas.exists();
    let definitions = store.as_ref().map_or(0, |s| s.definitions.len());
    let personas = match &store {
        Ok(store) => read_persona_store(&config.personas, config.personas_configured, store),
        // No agent store: a persona store is worth a line only when it is
        // set or there (the store's own error says what is wrong).
        Err(_) if !personas_there => Ok(Default::default()),
        Err(_) => crate::store::agents::read_personas(&config.personas),
    };
    let personas = match personas {
        Ok(personas) if !personas_there && definitions > 0 => {
            writeln!(
                out,
                "ok: personas from the agent store's {definitions} definition record{} (no persona store at {}; none is needed)",
                if definitions == 1 { "" } else { "s" },
                config.personas.display()
            )?;
            Some(personas)
        }
        Ok(personas) if !personas_there => {
            writeln!(
                out,
                "ok: no persona store at {} (no record names a persona)",
                config.personas.display()
            )?;
            Some(personas)
        }
        Ok(personas) => {
            writeln!(
                out,
                "ok: persona store {} ({} persona{})",
                config.personas.display(),
                personas.len(),
                if personas.len() == 1 { "" } else { "s" }
            )?;
            Some(personas)
        }
        Err(err) => {
            errors += 1;
            writeln!(out, "error: {err}")?;
            None
        }
    };
    match store {
        Err(err) => {
            errors += 1;
            writeln!(out, "error: {}", one_line(&err))?;
        }
        Ok(store) => {
            writeln!(
                out,
                "ok: agent store {} ({} agent record{}{})",
                store.path.display(),
                store.records.len(),
                if store.records.len() == 1 { "" } else { "s" },
                match store.definitions.len() {
                    0 => String::new(),
                    1 => ", 1 definition".to_string(),
                    n => format!(", {n} definitions"),
                }
            )?;
            let mut records: Vec<_> = store.records.iter().map(|r| r.record.clone()).collect();
            config
                .keys
                .attach(&mut records, crate::core::model::PlanMode::Full);
            writeln!(out, "{}", key_line(&config.keys, &records))?;
            let agent_owned = records
                .iter()
                .filter(|r| {
                    config.policy.owner_of(&r.pubkey) == crate::core::model::ProfileOwner::Agent
                })
                .count();
            writeln!(
                out,
                "ok: profile owners: record {}, agent {agent_owned} ([profile] owner = \"{}\"{})",
                records.len() - agent_owned,
                config.policy.owner.as_str(),
                match config.policy.owners.len() {
                    0 => String::new(),
                    n => format!(", {n} in [profile.agents]"),
                }
            )?;
            if !config.communities.is_empty() {
                writeln!(
                    out,
                    "ok: [buzz] communities: {} (each agent is reconciled on each; records' relay_url is not used)",
                    config.communities.join(", ")
                )?;
            }
            // Each record once: on the first community, when there are any
            // (a record's problems are the same on each).
            let first_community = &config.communities[..config.communities.len().min(1)];
            let records = crate::core::model::on_communities(records, first_community);
            let personas = personas.clone().unwrap_or_default();
            for finding in validate_records(&records, &personas, &config.policy, now_secs()) {
                let label = match finding.severity {
                    Severity::Error => {
                        errors += 1;
                        "error"
                    }
                    Severity::Warning => {
                        warnings += 1;
                        "warning"
                    }
                };
                writeln!(out, "{label}: {}: {}", finding.subject, finding.message)?;
            }
        }
    }
    writeln!(
        out,
        "{} error{}, {} warning{}.",
        errors,
        if errors == 1 { "" } else { "s" },
        warnings,
        if warnings == 1 { "" } else { "s" }
    )?;
    Ok(Ending {
        problems: errors > 0,
        ..Ending::default()
    })
}

/// `validate`'s line on where the agents' keys were found.
fn key_line(
    keys: &crate::store::keystore::KeySource,
    records: &[crate::core::model::AgentRecord],
) -> String {
    use crate::core::keys::KeyringRead;
    let counts = crate::core::keys::count_origins(records);
    let keyring = match (keys.entry_name(), keys.last_read()) {
        (None, _) => " (the keyring is off: [buzz] keyring = false)".to_string(),
        (Some(_), None | Some(KeyringRead::NotRead)) => {
            " (every record keeps its key inline: the keyring was not read)".to_string()
        }
        (Some(entry), Some(KeyringRead::Read { .. })) => format!(" (keyring entry {entry})"),
        (Some(_), Some(KeyringRead::Unreadable { entry, error })) => {
            format!(" (the keyring entry {entry} could not be read: {error})")
        }
    };
    format!(
        "keys: keyring {}, inline {}, missing {}{keyring}",
        counts.keyring, counts.inline, counts.missing
    )
}
