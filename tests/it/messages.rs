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
        name: "ca_file missing",
        config_extra: "",
        store: None,
        personas: None,
        args: &["--config", "CA_MISSING", "plan"],
        message: "missing-ca.pem cannot be read (No such file or directory",
    },
    Case {
        name: "ca_file without a certificate",
        config_extra: "",
        store: None,
        personas: None,
        args: &["--config", "CA_EMPTY", "plan"],
        message: "personas.json holds no PEM certificate; point ca_file at a PEM file",
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
        // Every case runs with --config: a flag demo would ignore.
        name: "a global flag the subcommand ignores",
        config_extra: "",
        store: None,
        personas: None,
        args: &["demo"],
        message: "--config does not apply to demo (it lays out and uses its own example world); leave it out",
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
        // Variants of the config named by a placeholder in `args`.
        let variants = [
            ("ZERO", "query_timeout_secs = 5", "query_timeout_secs = 0"),
            (
                "CA_MISSING",
                "[relay]\n",
                "[relay]\nca_file = \"missing-ca.pem\"\n",
            ),
            (
                "CA_EMPTY",
                "[relay]\n",
                "[relay]\nca_file = \"personas.json\"\n",
            ),
        ];
        let mut variant_paths = std::collections::HashMap::new();
        for (placeholder, from, to) in variants {
            let path = world
                .dir
                .path()
                .join(format!("{}.toml", placeholder.to_lowercase()));
            std::fs::write(&path, config.replace(from, to)).unwrap();
            variant_paths.insert(placeholder, path);
        }
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
            .map(|a| match variant_paths.get(a) {
                Some(path) => path.display().to_string(),
                None => a.to_string(),
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

/// Record problems the planner turns into skips; `validate` reports each as
/// one `error:` line naming the record (never its key) and what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_names_each_bad_record_on_one_line() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("wrong-typed field", "\"name\": \"agent-00000-ok\"", "\"name\": 42", "error: record #0 (ee96457d…284450fd): invalid_record: field `name` must be a string, not a number"),
        ("duplicate pubkey", "\"pubkey\": \"f68e0a6978e1b2ffb4beb3f10df6d0dacf1e4f5535ab6ea1780bdf0ff024ccfc\"", "\"pubkey\": \"ee96457d1818b32114c49e2544fc1f4d5e1b0022d2983d9326714922284450fd\"", "duplicate_record: pubkey appears 2 times in the store (records #0, #1); keep one"),
        ("invalid nsec", "nsec1gnhhd4j7d8f57qsv2eu9cqv4rx7gwsr6v43p580uzzh4wtqzs7hqxp5262", "nsec1notakey", "error: record #0 (agent-00000-ok, ee96457d…284450fd): invalid_key: private_key_nsec does not parse as a bech32 nsec key"),
        ("key of another agent", "nsec1gnhhd4j7d8f57qsv2eu9cqv4rx7gwsr6v43p580uzzh4wtqzs7hqxp5262", "nsec1cazfqasdc8m7jf2jm9umwf38u8xqt7clldk0fyq3ah0aejgn4ctq8sc4zx", "error: record #0 (agent-00000-ok, ee96457d…284450fd): key_mismatch: private_key_nsec is the key of f68e0a69…f024ccfc"),
        ("bad relay URL", "\"relay_url\": \"ws://127.0.0.1:7777\"", "\"relay_url\": \"https://relay.example\"", "relay_url is not a ws:// or wss:// URL"),
    ];
    let world = World::start().await;
    let good = std::fs::read_to_string(world.store_path()).unwrap();
    for (name, from, to, message) in cases {
        assert!(
            good.contains(from),
            "{name}: the fixture has the text to break"
        );
        std::fs::write(world.store_path(), good.replacen(from, to, 1)).unwrap();
        let output = world.cli(&["validate"]).await;
        assert_eq!(output.status.code(), Some(1), "{name}");
        let out = crate::world::stdout(&output);
        let line = out.lines().find(|l| l.contains(message));
        assert!(line.is_some(), "{name}: {out}");
        assert!(line.unwrap().starts_with("error: record #"), "{name}");
        assert!(!out.contains("nsec1"), "{name}: no key in the output");
    }
}
