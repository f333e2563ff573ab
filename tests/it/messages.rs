//! Every error message, in one table: what was wrong, and the one line the
//! user gets. Each case breaks one thing in a fresh fixture world, runs the
//! binary, and checks: exit code 1, one line on stderr that starts with
//! `error:` and says what is wrong, and nothing written.

use crate::world::{stderr, World};

/// One row: a name, how to break the world, the command, and a piece of the
/// message.
struct Case {
    name: &'static str,
    config_extra: &'static str,
    store: Option<&'static str>,
    personas: Option<&'static str>,
    args: &'static [&'static str],
    message: &'static str,
}

/// Cases whose refusal comes after planning, so the plan stays as a record.
const WRITES_A_PLAN: &[&str] = &["safety threshold"];

const CASES: &[Case] = &[
    Case {
        name: "config unreadable",
        config_extra: "",
        store: None,
        personas: None,
        args: &["--config", "/nonexistent/config.toml", "plan"],
        message: "cannot read the config file /nonexistent/config.toml",
    },
    Case {
        name: "config syntax",
        config_extra: "[relay\n",
        store: None,
        personas: None,
        args: &["plan"],
        message: "config.toml:",
    },
    Case {
        name: "unknown key",
        config_extra: "[profile]\nfuture_tolerance = 1\n",
        store: None,
        personas: None,
        args: &["plan"],
        message: "unknown field `future_tolerance`",
    },
    Case {
        name: "negative timeout",
        config_extra: "[profile]\nfuture_tolerance_secs = -5\n",
        store: None,
        personas: None,
        args: &["plan"],
        message: "invalid value: integer `-5`",
    },
    Case {
        name: "zero timeout",
        config_extra: "",
        store: None,
        personas: None,
        args: &["--config", "ZERO", "plan"],
        message: "query_timeout_secs = 0 is out of range",
    },
    Case {
        name: "bad avatar URL",
        config_extra: "[avatars]\nbot = \"ftp://x\"\n",
        store: None,
        personas: None,
        args: &["plan"],
        message: "is not an http(s) URL",
    },
    Case {
        name: "bad cron",
        config_extra: "[schedule]\ncron = \"every minute\"\n",
        store: None,
        personas: None,
        args: &["run"],
        message: "is not a valid cron expression",
    },
    Case {
        name: "bad timezone",
        config_extra: "[schedule]\ntimezone = \"Nowhere/Land\"\n",
        store: None,
        personas: None,
        args: &["run", "--once"],
        message: "is not a known IANA timezone",
    },
    Case {
        name: "keep_plans zero",
        config_extra: "[schedule]\nkeep_plans = 0\n",
        store: None,
        personas: None,
        args: &["run", "--once"],
        message: "keep_plans must be at least 1",
    },
    Case {
        name: "fraction out of range",
        config_extra: "[safety]\nmax_republish_fraction = 3\n",
        store: None,
        personas: None,
        args: &["apply"],
        message: "max_republish_fraction = 3 is out of range",
    },
    Case {
        name: "truncated store",
        config_extra: "",
        store: Some("[\n  {\"pubkey\": \"ab\","),
        personas: None,
        args: &["plan"],
        message: "managed-agents.json:2:",
    },
    Case {
        name: "store not an array",
        config_extra: "",
        store: Some("{\"agents\": []}"),
        personas: None,
        args: &["plan"],
        message: "the agent store must be a JSON array",
    },
    Case {
        name: "record not an object",
        config_extra: "",
        store: Some("[1]"),
        personas: None,
        args: &["migrate", "--dry-run"],
        message: "record #0 is not a JSON object",
    },
    Case {
        name: "store not UTF-8",
        config_extra: "",
        store: Some("[\"\u{0}\"]"),
        personas: None,
        args: &["plan"],
        message: "managed-agents.json:1:",
    },
    Case {
        name: "persona store malformed",
        config_extra: "",
        store: None,
        personas: Some("[{\"avatar_url\": \"x\"}]"),
        args: &["plan"],
        message: "persona #0 has no string `id`",
    },
    Case {
        name: "persona store not JSON",
        config_extra: "",
        store: None,
        personas: Some("nope"),
        args: &["plan"],
        message: "personas.json:1:2: the persona store is not valid JSON",
    },
    Case {
        name: "agent not a pubkey",
        config_extra: "",
        store: None,
        personas: None,
        args: &["plan", "--agent", "bob"],
        message: "--agent \"bob\" is not a pubkey",
    },
    Case {
        name: "agent not in store",
        config_extra: "",
        store: None,
        personas: None,
        args: &[
            "plan",
            "--agent",
            "0000000000000000000000000000000000000000000000000000000000000001",
        ],
        message: "is not in the agent store",
    },
    Case {
        name: "plan file missing",
        config_extra: "",
        store: None,
        personas: None,
        args: &["show", "nope.json"],
        message: "nope.json: No such file",
    },
    Case {
        name: "apply needs approval",
        config_extra: "[safety]\nmax_republish_fraction = 1.0\n",
        store: None,
        personas: None,
        args: &["apply"],
        message: "refusing to apply without --auto-approve",
    },
    Case {
        name: "safety threshold",
        config_extra: "",
        store: None,
        personas: None,
        args: &["apply", "--auto-approve"],
        message: "pass --force to apply it anyway",
    },
    Case {
        name: "run without cron",
        config_extra: "",
        store: None,
        personas: None,
        args: &["run"],
        message: "[schedule] cron is not set",
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_message_is_one_line_that_says_what_to_fix() {
    let mut failures = Vec::new();
    for case in CASES {
        let world = World::start().await;
        let config = std::fs::read_to_string(&world.config_path).unwrap();
        std::fs::write(
            &world.config_path,
            format!("{config}\n{}", case.config_extra),
        )
        .unwrap();
        let zero = world.dir.path().join("zero.toml");
        std::fs::write(
            &zero,
            config.replace("query_timeout_secs = 5", "query_timeout_secs = 0"),
        )
        .unwrap();
        if let Some(store) = case.store {
            std::fs::write(world.store_path(), store).unwrap();
        }
        if let Some(personas) = case.personas {
            std::fs::write(world.dir.path().join("personas.json"), personas).unwrap();
        }
        let store_before = std::fs::read(world.store_path()).unwrap();
        let args: Vec<String> = case
            .args
            .iter()
            .map(|a| {
                if *a == "ZERO" {
                    zero.display().to_string()
                } else {
                    a.to_string()
                }
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = if args.first() == Some(&"--config") {
            crate::world::run_binary(
                args.iter().map(|a| a.to_string()).collect(),
                world.dir.path().into(),
            )
            .await
        } else {
            world.cli(&args).await
        };
        // Log lines (a relay found unreadable while planning) may come first;
        // the error itself is one line, the last.
        let all = stderr(&output);
        let errors: Vec<&str> = all
            .lines()
            .filter(|l| !l.contains(" WARN ") && !l.contains(" INFO "))
            .collect();
        let err = errors.join("\n");
        let problems = [
            (output.status.code() != Some(1), "exit code is not 1"),
            (errors.len() != 1, "not one line"),
            (!err.starts_with("error: "), "no error: prefix"),
            (
                !all.ends_with(&format!("{err}\n")),
                "the error is not the last line",
            ),
            (!err.contains(case.message), "message missing"),
            (
                std::fs::read(world.store_path()).unwrap() != store_before,
                "the store changed",
            ),
            (
                world.plan_files().is_empty() == WRITES_A_PLAN.contains(&case.name),
                "plan written (or not) unexpectedly",
            ),
        ];
        for (failed, what) in problems {
            if failed {
                failures.push(format!("{}: {what}: {err:?}", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
