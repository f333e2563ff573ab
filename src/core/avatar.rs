//! Default avatars of the known agent runtimes, and how a command is matched.
//!
//! A command is matched on its normalized identity (RECONCILE.md, Inputs):
//! basename after either slash, lower-case, `_` and space as `-`, `.exe`
//! stripped. The table holds the built-in runtimes (by id, command and alias)
//! and whatever config adds or overrides.

use std::collections::BTreeMap;

const GOOSE_AVATAR_URL: &str = "https://goose-docs.ai/img/logo_dark.png";
const CLAUDE_CODE_AVATAR_URL: &str = "https://anthropic.gallerycdn.vsassets.io/extensions/anthropic/claude-code/2.1.77/1773707456892/Microsoft.VisualStudio.Services.Icons.Default";
const CODEX_AVATAR_URL: &str = "https://openai.gallerycdn.vsassets.io/extensions/openai/chatgpt/26.5313.41514/1773706730621/Microsoft.VisualStudio.Services.Icons.Default";
const BUZZ_AGENT_AVATAR_URL: &str =
    "https://raw.githubusercontent.com/block/buzz/refs/heads/main/crates/buzz-agent/buzz-agent.png";

/// The known runtimes: (id, commands and aliases, avatar).
const BUILTIN_RUNTIMES: &[(&str, &[&str], &str)] = &[
    ("goose", &["goose"], GOOSE_AVATAR_URL),
    (
        "claude",
        &[
            "claude-agent-acp",
            "claude-code-acp",
            "claude-code",
            "claudecode",
        ],
        CLAUDE_CODE_AVATAR_URL,
    ),
    ("codex", &["codex-acp"], CODEX_AVATAR_URL),
    ("buzz-agent", &["buzz-agent"], BUZZ_AGENT_AVATAR_URL),
];

/// The normalized identity of a runtime command.
///
/// `"/usr/local/bin/codex-acp"` and `"C:\\Tools\\Codex_ACP.exe"` both give
/// `"codex-acp"`; `"Claude Code"` gives `"claude-code"`.
pub fn normalize_command(command: &str) -> String {
    let unified = command.trim().replace('\\', "/");
    let basename = unified.rsplit('/').next().unwrap_or_default();
    let lowered: String = basename
        .chars()
        .map(|c| match c {
            ' ' | '_' => '-',
            other => other.to_ascii_lowercase(),
        })
        .collect();
    match lowered.strip_suffix(".exe") {
        Some(stem) => stem.to_string(),
        None => lowered,
    }
}

/// Command identity to default avatar URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandAvatars {
    by_identity: BTreeMap<String, String>,
}

impl CommandAvatars {
    /// The built-in defaults: goose, claude, codex and buzz-agent, reachable
    /// by id, by command and by alias.
    pub fn builtin() -> Self {
        let mut by_identity = BTreeMap::new();
        for (id, names, url) in BUILTIN_RUNTIMES {
            by_identity.insert(normalize_command(id), url.to_string());
            for name in *names {
                by_identity.insert(normalize_command(name), url.to_string());
            }
        }
        Self { by_identity }
    }

    /// An empty table (for tests and for configs that turn the defaults off).
    pub fn empty() -> Self {
        Self {
            by_identity: BTreeMap::new(),
        }
    }

    /// Adds or replaces the avatar for a command (normalized first). A blank
    /// URL removes the command, so config can switch a default off.
    pub fn set(&mut self, command: &str, url: &str) {
        let identity = normalize_command(command);
        if url.trim().is_empty() {
            self.by_identity.remove(&identity);
        } else {
            self.by_identity.insert(identity, url.to_string());
        }
    }

    /// The default avatar for a runtime command, if it is known.
    pub fn lookup(&self, command: &str) -> Option<&str> {
        self.by_identity
            .get(&normalize_command(command))
            .map(String::as_str)
    }

    /// Every URL in the table (to recognize runtime icons in renderings).
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.by_identity.values().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_follows_the_inputs_section() {
        assert_eq!(normalize_command("/usr/local/bin/codex-acp"), "codex-acp");
        assert_eq!(
            normalize_command(r"C:\Tools\claude-agent-acp.exe"),
            "claude-agent-acp"
        );
        assert_eq!(normalize_command("Claude Code"), "claude-code");
        assert_eq!(normalize_command("  Buzz_Agent  "), "buzz-agent");
        assert_eq!(normalize_command("GOOSE.EXE"), "goose");
    }

    #[test]
    fn builtin_table_knows_ids_commands_and_aliases() {
        let table = CommandAvatars::builtin();
        assert_eq!(table.lookup("goose"), Some(GOOSE_AVATAR_URL));
        assert_eq!(table.lookup("claude"), Some(CLAUDE_CODE_AVATAR_URL));
        assert_eq!(table.lookup("claudecode"), Some(CLAUDE_CODE_AVATAR_URL));
        assert_eq!(
            table.lookup("/opt/claude-code-acp"),
            Some(CLAUDE_CODE_AVATAR_URL)
        );
        assert_eq!(table.lookup("codex"), Some(CODEX_AVATAR_URL));
        assert_eq!(table.lookup("buzz-agent"), Some(BUZZ_AGENT_AVATAR_URL));
        assert_eq!(table.lookup("my-own-bot"), None);
    }

    #[test]
    fn config_overrides_and_removes_defaults() {
        let mut table = CommandAvatars::builtin();
        table.set("My_Bot", "https://x/bot.png");
        table.set("goose", "");
        assert_eq!(table.lookup("my-bot"), Some("https://x/bot.png"));
        assert_eq!(table.lookup("goose"), None);
    }
}
