//! Where the Buzz desktop app keeps its agent store, worked out from the OS,
//! the environment and the app's build profile.
//!
//! The app is a Tauri app: its data folder is the OS data folder joined with
//! its identifier (`xyz.block.buzz.app`, or `xyz.block.buzz.app.dev` for the
//! dev build), and the agent store is `agents/managed-agents.json` in it, with
//! `agents/personas.json` beside it. The OS data folder is what the `dirs`
//! crate (which Tauri uses) answers: macOS `~/Library/Application Support`,
//! Linux and the BSDs `$XDG_DATA_HOME` (when absolute) or `~/.local/share`,
//! Windows the roaming `%APPDATA%`.
//!
//! Before the rename, the app was Sprout (`xyz.block.sprout.app`). The app
//! copied that folder to the Buzz one once and left it in place: it is a
//! stale copy the app never reads again, so reprofile never picks it.
//!
//! Everything here is a pure function of (OS, environment variables, profile):
//! it reads no file and no real environment, so tests run it for every OS
//! layout under a fake home. The callers (config, CLI) pass
//! `std::env::consts::OS` and `std::env::var`, and check what exists.

use std::fmt;
use std::path::{Path, PathBuf};

/// The app's Tauri identifier of the release build.
pub const RELEASE_IDENTIFIER: &str = "xyz.block.buzz.app";
/// The app's Tauri identifier of the dev build.
pub const DEV_IDENTIFIER: &str = "xyz.block.buzz.app.dev";
/// The Sprout-era identifier of the release build (a stale copy now).
pub const STALE_RELEASE_IDENTIFIER: &str = "xyz.block.sprout.app";
/// The Sprout-era identifier of the dev build (a stale copy now).
pub const STALE_DEV_IDENTIFIER: &str = "xyz.block.sprout.app.dev";

/// The operating systems whose data-folder layout differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    /// `~/Library/Application Support`.
    MacOs,
    /// The roaming `%APPDATA%`.
    Windows,
    /// XDG: `$XDG_DATA_HOME` or `~/.local/share` (Linux, the BSDs and the rest).
    Xdg,
}

impl Os {
    /// The layout of `std::env::consts::OS`.
    pub fn from_name(name: &str) -> Os {
        match name {
            "macos" => Os::MacOs,
            "windows" => Os::Windows,
            _ => Os::Xdg,
        }
    }

    /// The layout of the OS this binary runs on.
    pub fn current() -> Os {
        Os::from_name(std::env::consts::OS)
    }
}

/// Which build of the app: its data lives in a folder of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppProfile {
    /// The released app, `xyz.block.buzz.app`.
    #[default]
    Release,
    /// The dev build, `xyz.block.buzz.app.dev`.
    Dev,
}

impl AppProfile {
    /// `release` or `dev`, as in `--app-profile` and `[store] app_profile`.
    pub fn as_str(self) -> &'static str {
        match self {
            AppProfile::Release => "release",
            AppProfile::Dev => "dev",
        }
    }

    /// The app's Tauri identifier for this build (its data folder's name).
    pub fn identifier(self) -> &'static str {
        match self {
            AppProfile::Release => RELEASE_IDENTIFIER,
            AppProfile::Dev => DEV_IDENTIFIER,
        }
    }

    /// The Sprout-era folder name of this build (a stale copy).
    pub fn stale_identifier(self) -> &'static str {
        match self {
            AppProfile::Release => STALE_RELEASE_IDENTIFIER,
            AppProfile::Dev => STALE_DEV_IDENTIFIER,
        }
    }

    /// The other build.
    pub fn other(self) -> AppProfile {
        match self {
            AppProfile::Release => AppProfile::Dev,
            AppProfile::Dev => AppProfile::Release,
        }
    }
}

impl fmt::Display for AppProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the app's store could not be located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoverError {
    /// The environment does not say where the home folder is.
    #[error("cannot find the Buzz app's data folder: {missing} is not set; set [store] agents in config.toml to the app's managed-agents.json")]
    NoHome {
        /// The variables that were looked at (`HOME`, `APPDATA or USERPROFILE`).
        missing: &'static str,
    },
    /// The store is not where the app keeps it.
    #[error("no Buzz agent store at {looked_at} (the {profile} app's data){hint}; set [store] agents in config.toml to the app's managed-agents.json")]
    NotFound {
        /// The file looked for.
        looked_at: PathBuf,
        /// The build looked for.
        profile: AppProfile,
        /// More to say: the other build's store exists, or a stale Sprout copy.
        hint: String,
    },
}

/// Where the app keeps its store, for one OS layout, home and profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppStore {
    /// The build.
    pub profile: AppProfile,
    /// The app's data folder (`<OS data folder>/xyz.block.buzz.app`).
    pub app_dir: PathBuf,
    /// `<app_dir>/agents/managed-agents.json`.
    pub agents: PathBuf,
    /// `<app_dir>/agents/personas.json`.
    pub personas: PathBuf,
    /// The stale Sprout-era copy of the app's data folder (it may not exist).
    pub stale_dir: PathBuf,
    /// The other build's agent store (it may not exist), for hints.
    pub other_profile_agents: PathBuf,
}

/// A variable's value, with unset and empty alike treated as unset (as the
/// XDG spec and `dirs` do).
fn non_empty(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

/// The OS data folder (what `dirs::data_dir()` answers), from the environment.
pub fn os_data_dir(os: Os, env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, DiscoverError> {
    match os {
        Os::MacOs => {
            let home = non_empty(env, "HOME").ok_or(DiscoverError::NoHome { missing: "HOME" })?;
            Ok(PathBuf::from(home)
                .join("Library")
                .join("Application Support"))
        }
        Os::Xdg => {
            // `dirs` ignores a relative XDG_DATA_HOME, as the XDG spec says.
            if let Some(xdg) =
                non_empty(env, "XDG_DATA_HOME").filter(|p| Path::new(p).is_absolute())
            {
                return Ok(PathBuf::from(xdg));
            }
            let home = non_empty(env, "HOME").ok_or(DiscoverError::NoHome { missing: "HOME" })?;
            Ok(PathBuf::from(home).join(".local").join("share"))
        }
        Os::Windows => {
            if let Some(appdata) = non_empty(env, "APPDATA") {
                return Ok(PathBuf::from(appdata));
            }
            let profile = non_empty(env, "USERPROFILE").ok_or(DiscoverError::NoHome {
                missing: "APPDATA (or USERPROFILE)",
            })?;
            Ok(PathBuf::from(profile).join("AppData").join("Roaming"))
        }
    }
}

/// reprofile's own per-user folder for plans, when config names none: the
/// XDG state folder on Linux and the BSDs (`$XDG_STATE_HOME`, else
/// `~/.local/state`) joined with `reprofile/plans`; on macOS
/// `~/Library/Application Support/reprofile/plans`; on Windows
/// `%LOCALAPPDATA%\reprofile\plans`. One folder, whatever folder reprofile
/// runs in, so every command finds the plans.
pub fn user_plans_dir(
    os: Os,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, DiscoverError> {
    let base = match os {
        Os::MacOs => os_data_dir(os, env)?,
        Os::Xdg => match non_empty(env, "XDG_STATE_HOME").filter(|p| Path::new(p).is_absolute()) {
            Some(state) => PathBuf::from(state),
            None => {
                let home =
                    non_empty(env, "HOME").ok_or(DiscoverError::NoHome { missing: "HOME" })?;
                PathBuf::from(home).join(".local").join("state")
            }
        },
        Os::Windows => match non_empty(env, "LOCALAPPDATA") {
            Some(local) => PathBuf::from(local),
            None => {
                let profile = non_empty(env, "USERPROFILE").ok_or(DiscoverError::NoHome {
                    missing: "LOCALAPPDATA (or USERPROFILE)",
                })?;
                PathBuf::from(profile).join("AppData").join("Local")
            }
        },
    };
    Ok(base.join("reprofile").join("plans"))
}

/// The app's data folder for a build: the OS data folder joined with the
/// build's Tauri identifier.
pub fn app_data_dir(
    os: Os,
    env: &dyn Fn(&str) -> Option<String>,
    profile: AppProfile,
) -> Result<PathBuf, DiscoverError> {
    Ok(os_data_dir(os, env)?.join(profile.identifier()))
}

/// The persona store that goes with an agent store: `personas.json` beside
/// it, as the app keeps them.
pub fn personas_beside(agents: &Path) -> PathBuf {
    agents.with_file_name("personas.json")
}

/// Where the app keeps its agent store and persona store for a build.
pub fn app_store(
    os: Os,
    env: &dyn Fn(&str) -> Option<String>,
    profile: AppProfile,
) -> Result<AppStore, DiscoverError> {
    let data = os_data_dir(os, env)?;
    let app_dir = data.join(profile.identifier());
    let agents = app_dir.join("agents").join("managed-agents.json");
    Ok(AppStore {
        profile,
        personas: personas_beside(&agents),
        agents,
        stale_dir: data.join(profile.stale_identifier()),
        other_profile_agents: data
            .join(profile.other().identifier())
            .join("agents")
            .join("managed-agents.json"),
        app_dir,
    })
}

impl AppStore {
    /// The error for a store that is not there; `other_exists` and
    /// `stale_exists` say what the caller found instead.
    pub fn not_found(&self, other_exists: bool, stale_exists: bool) -> DiscoverError {
        let mut hint = String::new();
        if other_exists {
            hint.push_str(&format!(
                "; the {} build's store exists at {}: pass --app-profile {} to use it",
                self.profile.other(),
                self.other_profile_agents.display(),
                self.profile.other()
            ));
        }
        if stale_exists {
            hint.push_str(&format!(
                "; {} is the stale Sprout-era copy, which the app never reads (open Buzz once to copy it over)",
                self.stale_dir.display()
            ));
        }
        DiscoverError::NotFound {
            looked_at: self.agents.clone(),
            profile: self.profile,
            hint,
        }
    }

    /// The one warning line about a stale Sprout copy beside the Buzz folder.
    pub fn stale_warning(&self) -> String {
        format!(
            "{}; reprofile does not use it (set [store] agents to a file in it to edit it anyway)",
            stale_warning(&self.stale_dir)
        )
    }
}

/// The warning for a stale Sprout-era folder (or a store inside one).
pub fn stale_warning(stale: &Path) -> String {
    format!(
        "{} is a stale copy of the app's data from before Sprout became Buzz, which the app never reads",
        stale.display()
    )
}

/// The Sprout-era folder a path lies in, when it lies in one: a store given
/// by path there is used (the user asked for it), with a warning.
pub fn stale_folder_of(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .find(|dir| {
            dir.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == STALE_RELEASE_IDENTIFIER || n == STALE_DEV_IDENTIFIER)
        })
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_go_to_one_per_user_folder_on_each_os() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let xdg = env(&[("HOME", "/home/u")]);
        assert_eq!(
            user_plans_dir(Os::Xdg, &xdg).unwrap(),
            PathBuf::from("/home/u/.local/state/reprofile/plans")
        );
        let state = env(&[("HOME", "/home/u"), ("XDG_STATE_HOME", "/s")]);
        assert_eq!(
            user_plans_dir(Os::Xdg, &state).unwrap(),
            PathBuf::from("/s/reprofile/plans")
        );
        let mac = env(&[("HOME", "/Users/u")]);
        assert_eq!(
            user_plans_dir(Os::MacOs, &mac).unwrap(),
            PathBuf::from("/Users/u/Library/Application Support/reprofile/plans")
        );
        let win = env(&[("LOCALAPPDATA", "C:/Users/u/AppData/Local")]);
        assert_eq!(
            user_plans_dir(Os::Windows, &win).unwrap(),
            PathBuf::from("C:/Users/u/AppData/Local/reprofile/plans")
        );
    }
    use std::collections::HashMap;

    /// An environment of exactly these variables.
    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    fn store_of(os: Os, vars: &[(&str, &str)], profile: AppProfile) -> AppStore {
        app_store(os, &env_of(vars), profile).unwrap()
    }

    fn agents_of(os: Os, vars: &[(&str, &str)], profile: AppProfile) -> PathBuf {
        store_of(os, vars, profile).agents
    }

    #[test]
    fn linux_uses_xdg_data_home_else_local_share() {
        assert_eq!(
            agents_of(Os::Xdg, &[("HOME", "/home/u")], AppProfile::Release),
            PathBuf::from("/home/u/.local/share/xyz.block.buzz.app/agents/managed-agents.json")
        );
        assert_eq!(
            agents_of(
                Os::Xdg,
                &[("HOME", "/home/u"), ("XDG_DATA_HOME", "/data/u")],
                AppProfile::Release
            ),
            PathBuf::from("/data/u/xyz.block.buzz.app/agents/managed-agents.json")
        );
        // Empty or relative XDG_DATA_HOME is ignored, as `dirs` does.
        for ignored in ["", "relative/share"] {
            assert_eq!(
                agents_of(
                    Os::Xdg,
                    &[("HOME", "/home/u"), ("XDG_DATA_HOME", ignored)],
                    AppProfile::Release
                ),
                PathBuf::from("/home/u/.local/share/xyz.block.buzz.app/agents/managed-agents.json"),
                "{ignored:?}"
            );
        }
        // XDG_DATA_HOME alone is enough.
        assert_eq!(
            agents_of(Os::Xdg, &[("XDG_DATA_HOME", "/x")], AppProfile::Dev),
            PathBuf::from("/x/xyz.block.buzz.app.dev/agents/managed-agents.json")
        );
    }

    #[test]
    fn macos_uses_application_support() {
        let store = store_of(Os::MacOs, &[("HOME", "/Users/u")], AppProfile::Release);
        assert_eq!(
            store.agents,
            PathBuf::from(
                "/Users/u/Library/Application Support/xyz.block.buzz.app/agents/managed-agents.json"
            )
        );
        assert_eq!(
            store.personas,
            PathBuf::from(
                "/Users/u/Library/Application Support/xyz.block.buzz.app/agents/personas.json"
            )
        );
        assert_eq!(
            store.stale_dir,
            PathBuf::from("/Users/u/Library/Application Support/xyz.block.sprout.app")
        );
        // macOS does not read XDG_DATA_HOME.
        assert_eq!(
            agents_of(
                Os::MacOs,
                &[("HOME", "/Users/u"), ("XDG_DATA_HOME", "/x")],
                AppProfile::Dev
            ),
            PathBuf::from(
                "/Users/u/Library/Application Support/xyz.block.buzz.app.dev/agents/managed-agents.json"
            )
        );
    }

    #[test]
    fn windows_uses_roaming_appdata() {
        let roaming = r"C:\Users\u\AppData\Roaming";
        assert_eq!(
            agents_of(
                Os::Windows,
                &[("APPDATA", roaming), ("HOME", "/ignored")],
                AppProfile::Release
            ),
            PathBuf::from(roaming)
                .join("xyz.block.buzz.app")
                .join("agents")
                .join("managed-agents.json")
        );
        // Without APPDATA: the roaming folder under the user's profile.
        assert_eq!(
            app_data_dir(
                Os::Windows,
                &env_of(&[("USERPROFILE", r"C:\Users\u")]),
                AppProfile::Dev
            )
            .unwrap(),
            PathBuf::from(r"C:\Users\u")
                .join("AppData")
                .join("Roaming")
                .join("xyz.block.buzz.app.dev")
        );
    }

    #[test]
    fn no_home_is_an_error_that_says_to_set_the_store() {
        for os in [Os::Xdg, Os::MacOs, Os::Windows] {
            let err = app_store(os, &env_of(&[]), AppProfile::Release).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("is not set"), "{text}");
            assert!(text.contains("[store] agents"), "{text}");
        }
    }

    #[test]
    fn the_dev_profile_and_the_stale_sprout_folders() {
        let store = store_of(Os::Xdg, &[("HOME", "/home/u")], AppProfile::Dev);
        assert_eq!(
            store.app_dir,
            PathBuf::from("/home/u/.local/share/xyz.block.buzz.app.dev")
        );
        assert_eq!(
            store.stale_dir,
            PathBuf::from("/home/u/.local/share/xyz.block.sprout.app.dev")
        );
        assert_eq!(
            store.other_profile_agents,
            PathBuf::from("/home/u/.local/share/xyz.block.buzz.app/agents/managed-agents.json")
        );
        assert_eq!(
            stale_folder_of(Path::new(
                "/home/u/.local/share/xyz.block.sprout.app/agents/managed-agents.json"
            )),
            Some(PathBuf::from("/home/u/.local/share/xyz.block.sprout.app"))
        );
        assert_eq!(stale_folder_of(&store.agents), None);
    }

    #[test]
    fn not_found_names_the_path_and_what_to_do_on_one_line() {
        let store = store_of(Os::Xdg, &[("HOME", "/home/u")], AppProfile::Release);
        let plain = store.not_found(false, false).to_string();
        assert_eq!(
            plain,
            "no Buzz agent store at /home/u/.local/share/xyz.block.buzz.app/agents/managed-agents.json (the release app's data); set [store] agents in config.toml to the app's managed-agents.json"
        );
        let hinted = store.not_found(true, true).to_string();
        assert!(hinted.contains("pass --app-profile dev"), "{hinted}");
        assert!(
            hinted
                .contains("/home/u/.local/share/xyz.block.sprout.app is the stale Sprout-era copy"),
            "{hinted}"
        );
        assert!(!hinted.contains('\n'));
    }
}
