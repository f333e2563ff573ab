//! Hostile plans: every string a store, a relay or a crafted plan file can
//! put in a plan holds markup, and must come out of both reviews as text.
//! The HTML is read by a WHATWG tokenizer (as a browser reads it) and the
//! Markdown by a CommonMark parser with GitHub's extensions.

use std::collections::BTreeMap;

use super::{html, markdown};
use crate::core::content::merge_content;
use crate::core::model::AvatarField;
use crate::core::plan::{
    Action, AuthTagSource, AvatarSource, BackfillAvatar, EventAfter, EventBefore, Plan,
    RepublishProfile, RepublishReason, Skip, SkipReason,
};
use crate::store::planfile::{PlanDocument, PlanKind, StoreIdentity};

/// What hostile text looks like in the plan, and must look like to a reader.
const NAME_SCRIPT: &str = "<script>alert(\"name\")</script>";
const NAME_BREAKOUT: &str = "\"><img src=x onerror=alert('name2')> a|b *c* `d` ~~e~~ $f$";
const DISPLAY_NAME: &str = "<img src=x onerror=alert('dn')>";
const ABOUT: &str = "</pre></details><script>alert('about')</script>\n```\n| x |";
const BEFORE_PICTURE: &str = "javascript:alert('before')";
const AFTER_PICTURE: &str = "JaVaScRiPt:alert('after')";
const BACKFILL_URL: &str = "data:text/html,<script>alert('data')</script>";
const QUOTED_HTTPS: &str = "https://ok.example/a.png?q=\"><script>alert('q')</script>&x=(1)|[2]";
const SVG_DATA: &str = "data:image/svg+xml,<svg onload=alert('svg')>";
const RELAY: &str = "ws://relay.example/\"><script>alert('relay')</script>";
const SKIP_NAME: &str = "<iframe src=javascript:alert('skip')>";
const SKIP_DETAIL: &str = "\"><svg onload=alert('detail')> [x](javascript:alert('md'))";
const SKIP_RELAY: &str = "javascript:alert('skiprelay')";
const STORE: &str = "/tmp/<script>alert('store')</script>.json";
const UNCHANGED: &str = "<script>alert('unchanged')</script>";
const TAG: &str = "<b>tag</b>";
/// The hostile strings both reviews show as text, whole (the HTML page shows
/// a few more).
const SHOWN_IN_BOTH: [&str; 11] = [
    NAME_SCRIPT,
    NAME_BREAKOUT,
    BEFORE_PICTURE,
    AFTER_PICTURE,
    BACKFILL_URL,
    QUOTED_HTTPS,
    RELAY,
    SKIP_NAME,
    SKIP_DETAIL,
    STORE,
    "evil\\u{202e}gnp.exe\\u{1b}[31m",
];

fn hostile_plan() -> PlanDocument {
    let before_content = serde_json::json!({
        "display_name": DISPLAY_NAME,
        "picture": BEFORE_PICTURE,
        "about": ABOUT,
    })
    .to_string();
    let existing = crate::core::content::ProfileContent::parse(&before_content).unwrap();
    let actions = vec![
        Action::RepublishProfile(RepublishProfile {
            agent: "a".repeat(64),
            name: NAME_SCRIPT.to_string(),
            picture: AFTER_PICTURE.to_string(),
            relay: RELAY.to_string(),
            reasons: vec![
                RepublishReason::NameChanged,
                RepublishReason::PictureChanged,
            ],
            before: Some(EventBefore {
                id: "<script>alert('id')</script>".to_string(),
                created_at: 1,
                content: before_content.clone(),
            }),
            after: EventAfter {
                content: merge_content(Some(&existing), NAME_SCRIPT, AFTER_PICTURE),
                tags: vec![vec!["auth".to_string(), TAG.to_string()]],
                created_at_must_exceed: 1,
            },
            auth_tag_source: AuthTagSource::Record,
        }),
        Action::BackfillAvatar(BackfillAvatar {
            agent: "b".repeat(64),
            name: NAME_BREAKOUT.to_string(),
            index: 1,
            source: AvatarSource::Relay,
            avatar_url: BACKFILL_URL.to_string(),
            before: AvatarField::Text("<u>blank</u>".to_string()),
        }),
        Action::BackfillAvatar(BackfillAvatar {
            agent: "c".repeat(64),
            name: "evil\u{202e}gnp.exe\u{1b}[31m".to_string(),
            index: 2,
            source: AvatarSource::Persona,
            avatar_url: QUOTED_HTTPS.to_string(),
            before: AvatarField::Null,
        }),
        Action::RepublishProfile(RepublishProfile {
            agent: "c".repeat(64),
            name: "evil\u{202e}gnp.exe\u{1b}[31m".to_string(),
            picture: QUOTED_HTTPS.to_string(),
            relay: RELAY.to_string(),
            reasons: vec![RepublishReason::Missing],
            before: None,
            after: EventAfter {
                content: merge_content(None, "evil", QUOTED_HTTPS),
                tags: Vec::new(),
                created_at_must_exceed: 0,
            },
            auth_tag_source: AuthTagSource::None,
        }),
        Action::RepublishProfile(RepublishProfile {
            agent: "d".repeat(64),
            name: "svg".to_string(),
            picture: SVG_DATA.to_string(),
            relay: RELAY.to_string(),
            reasons: vec![RepublishReason::Malformed],
            before: Some(EventBefore {
                id: "e".repeat(64),
                created_at: 1,
                content: "<script>alert('malformed')</script>".to_string(),
            }),
            after: EventAfter {
                content: merge_content(None, "svg", SVG_DATA),
                tags: Vec::new(),
                created_at_must_exceed: 1,
            },
            auth_tag_source: AuthTagSource::None,
        }),
    ];
    PlanDocument {
        created_at: 1_800_000_000,
        kind: PlanKind::Reconcile,
        store: StoreIdentity {
            path: STORE.to_string(),
            sha256: "<i>".to_string(),
            records: 6,
        },
        plan: Plan {
            actions,
            skipped: vec![Skip {
                agent: "record #5 <script>alert('agent')</script>".to_string(),
                name: SKIP_NAME.to_string(),
                index: 5,
                reason: SkipReason::RelayUnreachable,
                detail: SKIP_DETAIL.to_string(),
                relay: Some(SKIP_RELAY.to_string()),
            }],
            unchanged: vec![UNCHANGED.to_string()],
            complete: false,
            agents: 6,
            agent_managed: vec![],
            agent_owned: 0,
        },
    }
}

/// The tags and attributes the page may have; nothing from the plan adds one.
const HTML_TAGS: [&str; 33] = [
    "footer",
    "html",
    "head",
    "meta",
    "title",
    "style",
    "body",
    "header",
    "h1",
    "h2",
    "h3",
    "p",
    "b",
    "code",
    "section",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "a",
    "details",
    "summary",
    "article",
    "div",
    "ul",
    "li",
    "figure",
    "img",
    "figcaption",
    "span",
    "pre",
];
const HTML_ATTRIBUTES: [&str; 17] = [
    "lang",
    "charset",
    "http-equiv",
    "content",
    "name",
    "class",
    "id",
    "open",
    "href",
    "src",
    "alt",
    "width",
    "height",
    "referrerpolicy",
    "loading",
    "rel",
    "title",
];

struct Page {
    /// Every start tag: name and attributes (decoded).
    tags: Vec<(String, BTreeMap<String, String>)>,
    /// The text a reader sees (decoded), tags removed.
    text: String,
}

fn tokenize(html: &str) -> Page {
    use html5gum::{DefaultEmitter, Token, Tokenizer};
    let mut emitter = DefaultEmitter::<()>::default();
    // As a browser does: <style> and <title> switch the tokenizer's state.
    emitter.naively_switch_states(true);
    let mut page = Page {
        tags: Vec::new(),
        text: String::new(),
    };
    let lossy = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    for token in Tokenizer::new_with_emitter(html, emitter) {
        match token.expect("infallible") {
            Token::StartTag(tag) => page.tags.push((
                lossy(&tag.name),
                tag.attributes
                    .iter()
                    .map(|(k, v)| (lossy(k), lossy(&v.value)))
                    .collect(),
            )),
            Token::String(text) => page.text.push_str(&lossy(&text.value)),
            Token::Comment(_) => panic!("the page has no comments"),
            Token::Error(err) => panic!("the page does not tokenize cleanly: {err:?}"),
            Token::EndTag(_) | Token::Doctype(_) => {}
        }
    }
    page
}

#[test]
fn hostile_plan_renders_as_text_in_html_never_as_tag_attribute_or_url() {
    let html = html::render(&hostile_plan());
    let page = tokenize(&html);

    for (name, attributes) in &page.tags {
        assert!(
            HTML_TAGS.contains(&name.as_str()),
            "tag <{name}> in:\n{html}"
        );
        for (attribute, value) in attributes {
            assert!(
                HTML_ATTRIBUTES.contains(&attribute.as_str()),
                "attribute {attribute}={value:?} on <{name}>"
            );
            match attribute.as_str() {
                "src" => assert!(
                    [QUOTED_HTTPS, SVG_DATA].contains(&value.as_str()),
                    "src {value:?}"
                ),
                "href" => assert!(
                    value.starts_with('#') || value == QUOTED_HTTPS,
                    "href {value:?}"
                ),
                _ => {}
            }
        }
    }
    // The two loadable pictures are images, with their exact URLs; the
    // javascript: and data:text/html ones are not.
    let srcs: Vec<&str> = page
        .tags
        .iter()
        .filter_map(|(_, a)| a.get("src").map(String::as_str))
        .collect();
    assert!(
        srcs.contains(&QUOTED_HTTPS) && srcs.contains(&SVG_DATA),
        "{srcs:?}"
    );

    // The Content-Security-Policy comes first and allows no script.
    let metas: Vec<&BTreeMap<String, String>> = page
        .tags
        .iter()
        .filter(|(name, _)| name == "meta")
        .map(|(_, a)| a)
        .collect();
    let csp = metas[1];
    assert_eq!(csp["http-equiv"], "Content-Security-Policy");
    assert!(csp["content"].starts_with("default-src 'none'; img-src https: http: data:;"));
    assert!(!csp["content"].contains("script"));

    // Each hostile string is there for the reader, as the text it is.
    let only_in_the_page = [
        DISPLAY_NAME,
        SKIP_RELAY,
        UNCHANGED,
        TAG,
        "<u>blank</u>",
        "<script>alert('malformed')</script>",
        "</pre></details><script>alert('about')</script>",
    ];
    for hostile in SHOWN_IN_BOTH.into_iter().chain(only_in_the_page) {
        assert!(page.text.contains(hostile), "{hostile:?} not shown as text");
    }
    assert!(!page.text.contains('\u{202e}') && !page.text.contains('\u{1b}'));
}

#[test]
fn hostile_plan_renders_as_text_in_markdown_never_as_markup_or_link() {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
    let md = markdown::render(&hostile_plan());
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_MATH
        | Options::ENABLE_GFM;
    let mut text = String::new();
    let mut code = String::new();
    let mut raw_html = String::new();
    let mut in_code = false;
    let mut strong = 0;
    for event in Parser::new_ext(&md, options) {
        match event {
            // The one https: URL, percent-encoded where it would end the link.
            Event::Start(Tag::Link { dest_url, .. }) => assert_eq!(
                &*dest_url,
                "https://ok.example/a.png?q=%22%3E%3Cscript%3Ealert%28'q'%29%3C/script%3E&x=%281%29%7C%5B2%5D"
            ),
            Event::Start(Tag::Image { dest_url, .. }) => panic!("an image of {dest_url:?}"),
            Event::Start(Tag::Emphasis | Tag::Strikethrough) => panic!("markup from text:\n{md}"),
            Event::Start(Tag::Strong) => strong += 1,
            Event::Start(Tag::CodeBlock(_)) => in_code = true,
            Event::End(TagEnd::CodeBlock) => in_code = false,
            Event::Text(t) if in_code => code.push_str(&t),
            Event::Text(t) => text.push_str(&t),
            Event::Html(h) | Event::InlineHtml(h) => raw_html.push_str(&h),
            Event::Code(c) | Event::InlineMath(c) | Event::DisplayMath(c) => {
                panic!("code or math from text: {c:?}")
            }
            _ => {}
        }
    }
    // Ours: the summary line and "Incomplete:".
    assert_eq!(strong, 2, "{md}");
    // The only raw HTML is the <details> blocks, and their summaries are text.
    let raw = tokenize(&raw_html);
    for (name, attributes) in &raw.tags {
        assert!(
            (name == "details" || name == "summary") && attributes.is_empty(),
            "raw HTML <{name} {attributes:?}> in:\n{md}"
        );
    }
    assert!(raw.text.contains(NAME_SCRIPT), "{}", raw.text);
    // The diffs hold the hostile content whole (no fence closed early).
    assert!(code.contains(ABOUT.split('\n').next().unwrap()), "{code}");
    assert!(code.contains("```") && code.contains("| x |"), "{code}");
    assert!(code.contains("\"picture\": \"JaVaScRiPt:alert('after')\""));
    // Every cell's hostile text is whole: a `|` in it did not end the cell.
    for hostile in SHOWN_IN_BOTH {
        assert!(
            text.contains(hostile),
            "{hostile:?} not shown as text in:\n{md}"
        );
    }
}
