//! Reviews of a plan for people who judge avatars by looking at them: what
//! the HTML page ([`html`]) and the Markdown comment ([`markdown`]) share.
//!
//! It owns what both show and in which order: the agents of a plan grouped by
//! what happens to them (a replaced relay picture first, the change that once
//! put a runtime icon over people's portraits), sorted by name within a
//! group; each agent's avatar before and after; the skipped agents by reason;
//! and which URLs may become an image or a link. It decides nothing about the
//! plan (that is the core's) and writes nothing. Everything in a plan came
//! from a store or a relay, or from a crafted plan file, and is untrusted:
//! the renderers escape every string they write, and put a URL in `src` or
//! `href` only when [`image_src`] or [`link_href`] allows it.
//!
//! Beside them, the plan as text for a terminal ([`render`]). A face: it may
//! import `core` and the edges it shows (`store`, `engine`); nothing but the
//! faces and the engine (which writes a plan's text beside its file)
//! imports it.

#[cfg(test)]
mod hostile;
pub(crate) mod html;
pub(crate) mod markdown;
pub mod render;

use std::borrow::Cow;
use std::collections::HashMap;

use crate::core::content::ProfileContent;
use crate::core::model::AvatarField;
use crate::core::plan::{
    Action, BackfillAvatar, Plan, RepublishProfile, RepublishReason, Skip, SkipReason,
};

/// What happens to an agent, in the order the review shows the groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    /// A republish that replaces the relay's picture (`picture_changed`).
    PictureReplaced,
    /// A profile published where the relay holds none (`missing`).
    ProfileMissing,
    /// A profile whose content is not a JSON object is replaced (`malformed`).
    ProfileUnreadable,
    /// A republish that keeps the picture (`name_changed`).
    NameChanged,
    /// Only the record's `avatar_url` is filled in; nothing is published.
    RecordBackfilled,
}

impl Group {
    /// Every group, in the order of the review.
    pub const ALL: [Group; 5] = [
        Group::PictureReplaced,
        Group::ProfileMissing,
        Group::ProfileUnreadable,
        Group::NameChanged,
        Group::RecordBackfilled,
    ];

    /// The group's anchor in the HTML page.
    pub fn id(self) -> &'static str {
        match self {
            Group::PictureReplaced => "picture-replaced",
            Group::ProfileMissing => "profile-missing",
            Group::ProfileUnreadable => "profile-unreadable",
            Group::NameChanged => "name-changed",
            Group::RecordBackfilled => "record-backfilled",
        }
    }

    /// The group's heading.
    pub fn title(self) -> &'static str {
        match self {
            Group::PictureReplaced => "Relay pictures replaced",
            Group::ProfileMissing => "Profiles published where the relay has none",
            Group::ProfileUnreadable => "Unreadable profiles replaced",
            Group::NameChanged => "Names changed, picture kept",
            Group::RecordBackfilled => "Record avatars filled in, nothing published",
        }
    }

    fn of(republish: Option<&RepublishProfile>) -> Group {
        match republish {
            None => Group::RecordBackfilled,
            Some(r) if r.reasons.contains(&RepublishReason::PictureChanged) => {
                Group::PictureReplaced
            }
            Some(r) if r.reasons.contains(&RepublishReason::Missing) => Group::ProfileMissing,
            Some(r) if r.reasons.contains(&RepublishReason::Malformed) => Group::ProfileUnreadable,
            Some(_) => Group::NameChanged,
        }
    }
}

/// One agent's actions, as a review shows them.
#[derive(Debug, Clone, Copy)]
pub struct AgentReview<'a> {
    /// The agent's pubkey.
    pub agent: &'a str,
    /// The agent's name (the record's).
    pub name: &'a str,
    /// What happens to it.
    pub group: Group,
    /// The record's avatar backfill, if any.
    pub backfill: Option<&'a BackfillAvatar>,
    /// The profile republish, if any.
    pub republish: Option<&'a RepublishProfile>,
}

/// A picture on one side of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Picture {
    /// A URL (possibly one that must not be loaded: see [`image_src`]).
    Url(String),
    /// No picture, and why, for people: `no profile on the relay`.
    Missing(&'static str),
}

/// Whose avatar a pair shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PictureOf {
    /// The `picture` of the agent's kind:0 on its relay.
    Relay,
    /// The `avatar_url` of the agent's record in the store.
    Record,
}

impl PictureOf {
    /// What the before side is called.
    pub fn before_label(self) -> &'static str {
        match self {
            PictureOf::Relay => "relay now",
            PictureOf::Record => "record now",
        }
    }

    /// What the after side is called.
    pub fn after_label(self) -> &'static str {
        match self {
            PictureOf::Relay => "to publish",
            PictureOf::Record => "to store",
        }
    }
}

/// An avatar before and after the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvatarPair {
    /// Relay picture or record avatar.
    pub of: PictureOf,
    /// As it is now.
    pub before: Picture,
    /// As the plan makes it.
    pub after: Picture,
}

impl AgentReview<'_> {
    /// The avatars side by side: the relay picture before and after for a
    /// republish, the record's avatar (none) and the new one for a backfill.
    /// An agent with both shows the relay pair only when the backfill stores
    /// the picture published (rule E1: always, in a plan the core made).
    pub fn avatars(&self) -> Vec<AvatarPair> {
        let mut pairs = Vec::new();
        if let Some(b) = self.backfill {
            if self.republish.is_none_or(|r| r.picture != b.avatar_url) {
                pairs.push(AvatarPair {
                    of: PictureOf::Record,
                    before: match &b.before {
                        AvatarField::Absent => Picture::Missing("no avatar_url in the record"),
                        AvatarField::Null => Picture::Missing("avatar_url is null"),
                        AvatarField::Text(text) => picture_text(text, "avatar_url is blank"),
                    },
                    after: picture_text(&b.avatar_url, "avatar_url is blank"),
                });
            }
        }
        if let Some(r) = self.republish {
            pairs.push(AvatarPair {
                of: PictureOf::Relay,
                before: relay_picture(r),
                after: picture_text(&r.picture, "the picture is blank"),
            });
        }
        pairs
    }

    /// The `display_name` the relay shows now and the one to publish, when
    /// they differ and the relay holds a readable profile.
    pub fn name_change(&self) -> Option<(Option<String>, &str)> {
        let r = self.republish?;
        let content = ProfileContent::parse(&r.before.as_ref()?.content)?;
        let now = content.get_str("display_name");
        (now.as_deref() != Some(r.name.as_str())).then_some((now, r.name.as_str()))
    }
}

fn picture_text(text: &str, blank: &'static str) -> Picture {
    if text.trim().is_empty() {
        Picture::Missing(blank)
    } else {
        Picture::Url(text.to_string())
    }
}

/// The picture of the relay's kind:0 before a republish.
fn relay_picture(r: &RepublishProfile) -> Picture {
    let Some(before) = &r.before else {
        return Picture::Missing("no profile on the relay");
    };
    let Some(content) = ProfileContent::parse(&before.content) else {
        return Picture::Missing("the profile is not a JSON object");
    };
    match content.get_str("picture") {
        Some(picture) => picture_text(&picture, "the picture is blank"),
        None if content.has("picture") => Picture::Missing("the picture is not text"),
        None => Picture::Missing("no picture in the profile"),
    }
}

/// The plan's actions by agent and relay (an agent on several community
/// relays has one review per republish; its backfill goes with the first),
/// grouped ([`Group`] order) and sorted by name (case-insensitive), pubkey
/// and relay within a group.
pub fn reviews(plan: &Plan) -> Vec<AgentReview<'_>> {
    let mut by_agent: Vec<AgentReview<'_>> = Vec::new();
    // The review of an agent's backfill still waiting for a republish.
    let mut backfilled: HashMap<&str, usize> = HashMap::new();
    for action in &plan.actions {
        let review = AgentReview {
            agent: action.agent(),
            name: action.name(),
            group: Group::RecordBackfilled,
            backfill: None,
            republish: None,
        };
        match action {
            Action::BackfillAvatar(b) => {
                backfilled.insert(action.agent(), by_agent.len());
                by_agent.push(AgentReview {
                    backfill: Some(b),
                    ..review
                });
            }
            Action::RepublishProfile(r) => match backfilled.remove(action.agent()) {
                Some(slot) => by_agent[slot].republish = Some(r),
                None => by_agent.push(AgentReview {
                    republish: Some(r),
                    ..review
                }),
            },
        }
    }
    for review in &mut by_agent {
        review.group = Group::of(review.republish);
    }
    by_agent.sort_by_cached_key(|r| {
        (
            r.group,
            r.name.to_lowercase(),
            r.agent,
            r.republish.map(|r| r.relay.as_str()),
        )
    });
    by_agent
}

/// The skipped agents by reason ([`SkipReason::ALL`] order, empty reasons
/// left out), sorted by name, pubkey and record within a reason.
pub fn skipped_by_reason(plan: &Plan) -> Vec<(SkipReason, Vec<&Skip>)> {
    SkipReason::ALL
        .into_iter()
        .filter_map(|reason| {
            let mut group: Vec<&Skip> =
                plan.skipped.iter().filter(|s| s.reason == reason).collect();
            group.sort_by_cached_key(|s| (s.name.to_lowercase(), s.agent.as_str(), s.index));
            (!group.is_empty()).then_some((reason, group))
        })
        .collect()
}

/// The relays of the plan's republishes with how many each gets, by URL.
pub fn republishes_by_relay(plan: &Plan) -> Vec<(&str, usize)> {
    let mut relays: std::collections::BTreeMap<&str, usize> = Default::default();
    for action in &plan.actions {
        if let Action::RepublishProfile(r) = action {
            *relays.entry(r.relay.as_str()).or_default() += 1;
        }
    }
    relays.into_iter().collect()
}

/// The plan's summary line (as the terminal rendering ends with), for a
/// review that puts it first: the skipped agents are listed below it.
pub fn summary_line(doc: &crate::store::planfile::PlanDocument) -> String {
    crate::review::render::summary_line(doc).replace("(listed above)", "(listed below)")
}

/// The URL, when a review may load it as an image: `https:`, `http:` or
/// `data:image/…` (any case), with no control or invisible characters. Any
/// other URL (`javascript:`, `data:text/html`, `file:`, a relative path) is
/// shown as text only.
pub fn image_src(url: &str) -> Option<&str> {
    (link_href(url).is_some() || has_scheme(url, "data:image/")).then_some(url)
}

/// The URL, when a review may link to it: `https:` or `http:` (any case),
/// with no control or invisible characters.
pub fn link_href(url: &str) -> Option<&str> {
    let allowed = (has_scheme(url, "https://") || has_scheme(url, "http://"))
        && !url.chars().any(is_invisible);
    allowed.then_some(url)
}

fn has_scheme(url: &str, prefix: &str) -> bool {
    url.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
        && !url.chars().any(is_invisible)
}

/// Characters a reader cannot see or that reorder what is seen: control
/// characters, zero-width characters, bidirectional overrides and isolates,
/// the byte-order mark.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
        )
}

/// The text with every invisible character (see above) written as its
/// escape, `\u{202e}`, so a name cannot hide or reorder what a reviewer
/// reads. Borrowed as it is when there is none (the common case).
pub fn visible(text: &str) -> Cow<'_, str> {
    visible_with(text, false)
}

/// Like [`visible`], keeping line breaks and tabs (a kind:0's JSON may hold
/// them between tokens).
pub fn visible_keep_lines(text: &str) -> Cow<'_, str> {
    visible_with(text, true)
}

fn visible_with(text: &str, keep_lines: bool) -> Cow<'_, str> {
    let hidden = |c: char| is_invisible(c) && !(keep_lines && (c == '\n' || c == '\t'));
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if hidden(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `& < > " '` as HTML entities: the text is then safe as HTML text and as
/// a double-quoted attribute value.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::{AuthTagSource, AvatarSource, EventAfter, RepublishReason};

    #[test]
    fn an_agent_on_several_community_relays_gets_a_review_per_relay() {
        let agent = "a".repeat(64);
        let republish = |relay: &str| {
            Action::RepublishProfile(RepublishProfile {
                agent: agent.clone(),
                name: "Ada".into(),
                picture: "https://p/1.png".into(),
                relay: relay.into(),
                reasons: vec![RepublishReason::Missing],
                before: None,
                after: EventAfter {
                    content: "{}".into(),
                    tags: vec![],
                    created_at_must_exceed: 0,
                },
                auth_tag_source: AuthTagSource::None,
            })
        };
        let plan = Plan {
            actions: vec![
                Action::BackfillAvatar(BackfillAvatar {
                    agent: agent.clone(),
                    name: "Ada".into(),
                    index: 0,
                    source: AvatarSource::Persona,
                    avatar_url: "https://p/1.png".into(),
                    before: AvatarField::Null,
                }),
                republish("wss://b.example"),
                republish("wss://a.example"),
            ],
            ..Plan::default()
        };
        let reviews = reviews(&plan);
        let relays: Vec<(Option<&str>, bool)> = reviews
            .iter()
            .map(|r| (r.republish.map(|r| r.relay.as_str()), r.backfill.is_some()))
            .collect();
        // Every republish is reviewed, each with its relay; the one backfill
        // once, with the first.
        assert_eq!(
            relays,
            [
                (Some("wss://a.example"), false),
                (Some("wss://b.example"), true)
            ]
        );
    }

    #[test]
    fn only_https_http_and_data_images_may_be_loaded() {
        for url in [
            "https://a.example/x.png",
            "HTTP://a.example/x.png",
            "data:image/png;base64,AAAA",
            "DATA:image/svg+xml,<svg/>",
        ] {
            assert_eq!(image_src(url), Some(url), "{url}");
        }
        for url in [
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            " https://a.example/x.png",
            "java\tscript:alert(1)",
            "https://a.example/\u{202e}gnp.exe",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox",
            "file:///etc/passwd",
            "//evil.example/x.png",
            "x.png",
            "",
        ] {
            assert_eq!(image_src(url), None, "{url:?}");
            assert_eq!(link_href(url), None, "{url:?}");
        }
        assert_eq!(link_href("data:image/png;base64,AAAA"), None);
    }

    #[test]
    fn invisible_characters_are_shown_as_escapes() {
        assert_eq!(visible("Ada"), "Ada");
        assert_eq!(visible("a\u{202e}b\u{1b}[2J"), "a\\u{202e}b\\u{1b}[2J");
        assert_eq!(visible("a\nb"), "a\\u{a}b");
        assert_eq!(visible_keep_lines("a\nb\u{7}"), "a\nb\\u{7}");
    }
}
