//! The plan reviews through the binary: `show --html`, `show --format
//! markdown` and `plan --html` on the fixture world (insta snapshots), `show`
//! without a plan file, and `plan --summary` / `--full` with the summary a
//! large plan prints by itself.

use crate::world::{stderr, stdout, World};

/// The world's snapshot filters, and for the reviews: the time as Markdown
/// escapes it, the style sheet.
fn settings(world: &World) -> insta::Settings {
    let mut settings = world.snapshot_settings();
    settings.add_filter(r"\d{4}\\-\d\d\\-\d\dT\d\d:\d\d:\d\dZ", "[TIME]");
    // The style sheet is the same for every plan (its hash is in the policy).
    settings.add_filter(r"(?s)<style>.*</style>", "<style>[STYLE]</style>");
    settings.add_filter(r"sha256-[A-Za-z0-9+/=]{44}", "sha256-[STYLE HASH]");
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_html_and_markdown_of_the_fixture_plan() {
    let world = World::start().await;
    let page = world.dir.path().join("review/plan.html");
    let planned = world.cli(&["plan", "--html", page.to_str().unwrap()]).await;
    // The fixture world has a relay that is down on purpose: exit 1.
    crate::world::assert_incomplete_for_the_down_relay(&planned);
    assert!(
        stdout(&planned).contains(&format!("Saved the HTML review to {}", page.display())),
        "{}",
        stdout(&planned)
    );
    let plan_path = world.plan_files().pop().unwrap();
    let plan_arg = plan_path.to_str().unwrap();

    let html = world.cli(&["show", plan_arg, "--html"]).await;
    assert!(html.status.success(), "{}", stderr(&html));
    let html = stdout(&html);
    // `plan --html` wrote the same page as `show --html` of its plan.
    assert_eq!(std::fs::read_to_string(&page).unwrap(), html);
    assert_eq!(
        stdout(&world.cli(&["show", plan_arg, "--format", "html"]).await),
        html
    );

    let markdown = world.cli(&["show", plan_arg, "--format", "markdown"]).await;
    assert!(markdown.status.success(), "{}", stderr(&markdown));
    let markdown = stdout(&markdown);

    // Every agent with an action has its before and after avatars in the
    // page: the relay picture that is replaced and the one that replaces it.
    for url in [
        "https://img.example/old.png",
        "https://img.example/3.png",
        "https://goose-docs.ai/img/logo_dark.png",
        "https://persona.example/4.png",
    ] {
        assert!(html.contains(&format!("<img src=\"{url}\"")), "{url}");
        assert!(markdown.contains(&format!("]({url})")), "{url}");
    }

    settings(&world).bind(|| {
        insta::assert_snapshot!("fixture_review_html", html);
        insta::assert_snapshot!("fixture_review_markdown", markdown);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_without_a_plan_file_shows_the_newest_plan_in_the_plans_folder() {
    let world = World::start().await;
    let none = world.cli(&["show"]).await;
    assert_eq!(none.status.code(), Some(1));
    let error = stderr(&none);
    assert!(
        error.starts_with(&format!(
            "error: no plan file in {}; make one with `reprofile plan`",
            world.plans_dir().display()
        )) && error.lines().count() == 1,
        "{error}"
    );

    let ok_agent = "ee96457d1818b32114c49e2544fc1f4d5e1b0022d2983d9326714922284450fd";
    // Two plans of one second sort by when they were written, not by name.
    for args in [
        &["plan", "--agent", ok_agent][..],
        &["plan"][..],
        &["plan", "--agent", ok_agent][..],
    ] {
        let planned = world.cli(args).await;
        if args.len() == 1 {
            // The fixture world has a relay that is down on purpose: exit 1.
            crate::world::assert_incomplete_for_the_down_relay(&planned);
        } else {
            assert!(planned.status.success(), "{}", stderr(&planned));
        }
        let newest = stdout(&planned)
            .lines()
            .find_map(|l| l.strip_prefix("Saved the plan to ").map(str::to_string))
            .unwrap();
        let shown = world.cli(&["show"]).await;
        assert!(shown.status.success(), "{}", stderr(&shown));
        assert_eq!(
            stdout(&shown),
            std::fs::read_to_string(std::path::Path::new(&newest).with_extension("txt")).unwrap(),
            "after {args:?}"
        );
        assert_eq!(stderr(&shown), format!("plan: {newest}\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_summary_prints_the_summary_and_where_the_full_rendering_is() {
    let world = World::start().await;
    let output = world.cli(&["plan", "--summary"]).await;
    crate::world::assert_incomplete_for_the_down_relay(&output);
    let text = stdout(&output);
    let plan_path = world.plan_files().pop().unwrap();
    assert!(
        text.contains("  republish: 7 ") && text.contains("  skipped:   4 "),
        "{text}"
    );
    assert!(!text.contains("republish_profile on"), "{text}");
    assert!(text.contains(&format!(
        "The full rendering is in {} (`reprofile show` prints it).",
        plan_path.with_extension("txt").display()
    )));
    let full = std::fs::read_to_string(plan_path.with_extension("txt")).unwrap();
    assert!(full.contains("republish_profile on"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_of_more_than_200_actions_prints_its_summary_unless_full() {
    // 101 legacy agents without profiles: a backfill and a republish each.
    let world = World::generated(101).await;
    let output = world.cli(&["plan"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let plan_path = world.plan_files().pop().unwrap();
    assert!(text.contains("  republish: 101 "), "{text}");
    assert!(
        text.contains(&format!(
            "The full rendering of this large plan is in {} (`reprofile show` prints it; `plan --full` prints it here).",
            plan_path.with_extension("txt").display()
        )),
        "{text}"
    );
    assert!(!text.contains("# generated-00000"), "{text}");

    let full = world.cli(&["plan", "--full"]).await;
    assert!(full.status.success(), "{}", stderr(&full));
    let full = stdout(&full);
    assert!(full.contains("# generated-00000") && full.contains("# generated-00100"));
    assert!(full.contains("Plan: 101 to republish, 101 to backfill, 0 unchanged, 0 skipped."));

    // At 200 actions or fewer, the whole rendering as before.
    let small = World::generated(100).await;
    let text = stdout(&small.cli(&["plan"]).await);
    assert!(text.contains("# generated-00099"), "{text}");
}
