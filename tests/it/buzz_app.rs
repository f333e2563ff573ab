//! The Buzz app's own files: an agent store and a persona store written
//! exactly as the desktop app writes them, and reprofile working on them.
//!
//! `tests/fixtures/buzz-app/` is generated here, from mirrors of the app's
//! types (block/sprout `desktop/src-tauri/src/managed_agents/types.rs` at
//! 9ee5aeeb, Apache-2.0: every field of `ManagedAgentRecord` and
//! `PersonaRecord` in the app's order with the app's serde attributes), sorted
//! as the app sorts them and serialized with `serde_json::to_vec_pretty`, as
//! `storage.rs` and `personas.rs` do. A test checks the committed files are
//! what the generator makes (regenerate with `REPROFILE_WRITE_FIXTURES=1
//! cargo test --test it buzz_app`), and, independently of the generator, that
//! they read into the app's types and write back byte for byte.
//!
//! The persona store holds the built-in persona Fizz with a ~52 KB
//! `data:image/png;base64,...` avatar, as the app's does: here a valid PNG
//! made deterministically (not the app's picture). Every key in these files is
//! a throwaway key derived from a label for this fixture; they guard nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nostr::nips::nip19::ToBech32;
use nostr::{Event, Keys, SecretKey};
use reprofile::core::apply::Outcome;
use reprofile::core::avatar::CommandAvatars;
use reprofile::core::model::RelayObservation;
use reprofile::core::nip_oa;
use reprofile::core::plan::{Action, AvatarSource, RepublishReason};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::support::{publish_events, signed_profile, start_local_relay};

/// The relay the fixture's records name. `.invalid` never resolves; tests
/// rewrite it to a relay on 127.0.0.1.
pub const FIXTURE_RELAY: &str = "wss://relay.buzz.invalid";

// ---- mirrors of the app's types (field order and serde attributes as in the app) ----

fn default_agent_parallelism() -> u32 {
    24
}
fn default_start_on_app_launch() -> bool {
    true
}
fn default_record_active() -> bool {
    true
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BackendKind {
    #[default]
    Local,
    Provider {
        id: String,
        config: serde_json::Value,
    },
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum RespondTo {
    #[default]
    OwnerOnly,
    Allowlist,
    Anyone,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct RelayMeshConfig {
    #[serde(alias = "modelRef")]
    model_ref: String,
}

/// The app's `ManagedAgentRecord` (`deny_unknown_fields` added here: the
/// fixture holds the app's fields and nothing else).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManagedAgentRecord {
    pubkey: String,
    name: String,
    #[serde(default)]
    persona_id: Option<String>,
    private_key_nsec: String,
    #[serde(default)]
    auth_tag: Option<String>,
    relay_url: String,
    #[serde(default)]
    avatar_url: Option<String>,
    acp_command: String,
    agent_command: String,
    agent_args: Vec<String>,
    mcp_command: String,
    turn_timeout_seconds: u64,
    #[serde(default)]
    idle_timeout_seconds: Option<u64>,
    #[serde(default)]
    max_turn_duration_seconds: Option<u64>,
    #[serde(default = "default_agent_parallelism")]
    parallelism: u32,
    system_prompt: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    mcp_toolsets: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    env_vars: BTreeMap<String, String>,
    #[serde(default = "default_start_on_app_launch")]
    start_on_app_launch: bool,
    #[serde(default)]
    runtime_pid: Option<u32>,
    #[serde(default)]
    backend: BackendKind,
    #[serde(default)]
    backend_agent_id: Option<String>,
    #[serde(default)]
    provider_binary_path: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "persona_pack_path"
    )]
    persona_team_dir: Option<PathBuf>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "persona_name_in_pack"
    )]
    persona_name_in_team: Option<String>,
    created_at: String,
    updated_at: String,
    last_started_at: Option<String>,
    last_stopped_at: Option<String>,
    last_exit_code: Option<i32>,
    last_error: Option<String>,
    #[serde(default)]
    respond_to: RespondTo,
    #[serde(default)]
    respond_to_allowlist: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    relay_mesh: Option<RelayMeshConfig>,
}

/// The app's `PersonaRecord`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonaRecord {
    id: String,
    display_name: String,
    avatar_url: Option<String>,
    system_prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    runtime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    name_pool: Vec<String>,
    #[serde(default)]
    is_builtin: bool,
    #[serde(default = "default_record_active")]
    is_active: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "source_pack"
    )]
    source_team: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "source_pack_persona_slug"
    )]
    source_team_persona_slug: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    env_vars: BTreeMap<String, String>,
    created_at: String,
    updated_at: String,
}

/// `storage.rs` `save_managed_agents`: lower-case name, then pubkey.
fn sort_agents(records: &mut [ManagedAgentRecord]) {
    records.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then_with(|| a.pubkey.cmp(&b.pubkey))
    });
}

/// `personas.rs` `sort_personas`: built-ins first (Fizz is the only one),
/// then display name lower-case, then id.
fn sort_personas(records: &mut [PersonaRecord]) {
    records.sort_by(|a, b| {
        (!a.is_builtin)
            .cmp(&!b.is_builtin)
            .then_with(|| {
                a.display_name
                    .to_lowercase()
                    .cmp(&b.display_name.to_lowercase())
            })
            .then_with(|| a.id.cmp(&b.id))
    });
}

// ---- the generator ----

/// A throwaway key for this fixture, derived from a label.
pub fn fixture_keys(label: &str) -> Keys {
    let digest = Sha256::digest(format!("reprofile buzz-app fixture: {label}").as_bytes());
    Keys::new(SecretKey::from_slice(&digest).expect("a SHA-256 digest is a valid secret key"))
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in bytes {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A valid 8-bit RGB PNG, its pixel rows in stored (uncompressed) deflate
/// blocks, so its size is known in advance.
fn png_rgb(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let mut raw = Vec::with_capacity((height * (1 + 3 * width)) as usize);
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.extend_from_slice(&pixel(x, y));
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut png, b"IHDR", &header);
    png_chunk(&mut png, b"IDAT", &zlib);
    png_chunk(&mut png, b"IEND", &[]);
    png
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| BASE64.iter().position(|b| *b == c).expect("base64") as u32;
    let mut out = Vec::new();
    for quad in text.as_bytes().chunks(4) {
        let data: Vec<u8> = quad.iter().copied().filter(|c| *c != b'=').collect();
        let n = data
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, c)| n | value(*c) << (18 - 6 * i));
        for i in 0..data.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// Fizz's avatar for this fixture: a 114×114 honeycomb-coloured PNG with
/// some noise, as a `data:` URL of about 52 KB (the app's is 52,356 bytes).
pub fn fizz_avatar() -> String {
    let png = png_rgb(114, 114, |x, y| {
        let mut state = u64::from(x).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ u64::from(y).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        state ^= state >> 29;
        state = state.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let noise = (state >> 59) as u8;
        let cell = ((x / 14) + (y / 12) + (y / 12 % 2) * 7) % 3;
        let [r, g, b] = match cell {
            0 => [246u8, 186, 36],
            1 => [255, 232, 160],
            _ => [92, 58, 14],
        };
        [
            r.saturating_sub(noise),
            g.saturating_sub(noise),
            b.saturating_add(noise),
        ]
    });
    format!("data:image/png;base64,{}", base64_encode(&png))
}

/// The NIP-OA tag the app stores for an agent (conditions `""`), as the
/// app's compact JSON text.
fn auth_tag_for(agent: &Keys) -> String {
    let owner = fixture_keys("owner");
    serde_json::to_string(&nip_oa::sign(&owner, &agent.public_key().to_hex(), ""))
        .expect("a tag serializes")
}

fn record(label: &str, name: &str, created: &str) -> ManagedAgentRecord {
    let keys = fixture_keys(label);
    ManagedAgentRecord {
        pubkey: keys.public_key().to_hex(),
        name: name.to_string(),
        persona_id: None,
        private_key_nsec: keys.secret_key().to_bech32().expect("nsec"),
        auth_tag: Some(auth_tag_for(&keys)),
        relay_url: FIXTURE_RELAY.to_string(),
        avatar_url: None,
        acp_command: "buzz-acp".to_string(),
        agent_command: "goose".to_string(),
        agent_args: vec!["acp".to_string()],
        mcp_command: "buzz-dev-mcp".to_string(),
        turn_timeout_seconds: 320,
        idle_timeout_seconds: None,
        max_turn_duration_seconds: None,
        parallelism: 24,
        system_prompt: None,
        model: None,
        mcp_toolsets: None,
        env_vars: BTreeMap::from([("GOOSE_MODE".to_string(), "auto".to_string())]),
        start_on_app_launch: true,
        runtime_pid: None,
        backend: BackendKind::Local,
        backend_agent_id: None,
        provider_binary_path: None,
        persona_team_dir: None,
        persona_name_in_team: None,
        created_at: created.to_string(),
        updated_at: created.to_string(),
        last_started_at: None,
        last_stopped_at: None,
        last_exit_code: None,
        last_error: None,
        respond_to: RespondTo::OwnerOnly,
        respond_to_allowlist: Vec::new(),
        relay_mesh: None,
    }
}

/// The fixture's agent store and persona store, as the app writes them.
pub fn generate() -> (String, String) {
    let fizz = fizz_avatar();
    // A Fizz agent made before the app stored avatar_url: null (the app's
    // serde default, written as null), its relay picture the runtime icon.
    let mut bramble = record("bramble", "Bramble", "2026-03-02T09:14:07.512093118+00:00");
    bramble.persona_id = Some("builtin:fizz".to_string());
    bramble.last_started_at = Some("2026-06-10T07:01:44.102938475+00:00".to_string());
    bramble.last_stopped_at = Some("2026-06-10T18:22:03.664410902+00:00".to_string());
    bramble.last_exit_code = Some(0);
    // A Fizz agent made since: the persona's data: avatar stored on the record.
    let mut comet = record("comet", "Comet", "2026-06-01T12:00:41.991201377+00:00");
    comet.persona_id = Some("builtin:fizz".to_string());
    comet.avatar_url = Some(fizz.clone());
    comet.runtime_pid = Some(48_211);
    comet.last_started_at = Some("2026-06-14T08:30:12.000184003+00:00".to_string());
    // A custom command with no default avatar: null from creation on.
    let mut nightly = record(
        "nightly",
        "Nightly Bot",
        "2026-05-20T22:10:00.404040404+00:00",
    );
    nightly.agent_command = "/opt/bots/nightly-bot".to_string();
    nightly.agent_args = vec!["--acp".to_string(), "--quiet".to_string()];
    nightly.env_vars = BTreeMap::new();
    nightly.auth_tag = None;
    nightly.start_on_app_launch = false;
    nightly.last_exit_code = Some(1);
    nightly.last_error = Some("process exited with status 1".to_string());
    // A retired built-in persona (no avatar) on a provider backend.
    let mut pollen = record("pollen", "Pollen", "2026-02-11T16:45:30.250000000+00:00");
    pollen.persona_id = Some("builtin:kit".to_string());
    pollen.agent_command = "codex-acp".to_string();
    pollen.agent_args = Vec::new();
    pollen.env_vars = BTreeMap::new();
    pollen.model = Some("gpt-5.1-codex".to_string());
    pollen.idle_timeout_seconds = Some(600);
    pollen.max_turn_duration_seconds = Some(3600);
    pollen.backend = BackendKind::Provider {
        id: "blox".to_string(),
        config: serde_json::json!({"region": "us-east-1"}),
    };
    pollen.backend_agent_id = Some("blox-agent-7f3a".to_string());
    pollen.provider_binary_path = Some("/usr/local/bin/blox-provider".to_string());
    // A team persona's agent, allowlist mode, a stored https avatar.
    let mut researcher = record(
        "researcher",
        "researcher",
        "2026-04-08T10:00:00.000000001+00:00",
    );
    researcher.persona_id = Some("research-crew:researcher".to_string());
    researcher.avatar_url = Some("https://avatars.example/researcher.png".to_string());
    researcher.agent_command = "claude-agent-acp".to_string();
    researcher.agent_args = Vec::new();
    researcher.env_vars = BTreeMap::new();
    researcher.system_prompt = Some("Find sources; cite them.".to_string());
    researcher.mcp_toolsets = Some("default,search".to_string());
    researcher.persona_team_dir = Some(PathBuf::from(
        "/home/u/.local/share/xyz.block.buzz.app/agents/teams/research-crew",
    ));
    researcher.persona_name_in_team = Some("researcher".to_string());
    researcher.respond_to = RespondTo::Allowlist;
    researcher.respond_to_allowlist = vec![
        fixture_keys("owner").public_key().to_hex(),
        fixture_keys("teammate").public_key().to_hex(),
    ];
    // In sync on its relay.
    let mut waxwing = record("waxwing", "Waxwing", "2026-05-05T05:05:05.050505050+00:00");
    waxwing.avatar_url = Some("https://avatars.example/waxwing.png".to_string());
    waxwing.respond_to = RespondTo::Anyone;

    let mut agents = vec![waxwing, researcher, pollen, nightly, comet, bramble];
    sort_agents(&mut agents);

    let persona = |id: &str, name: &str, avatar: Option<&str>, prompt: &str| PersonaRecord {
        id: id.to_string(),
        display_name: name.to_string(),
        avatar_url: avatar.map(str::to_string),
        system_prompt: prompt.to_string(),
        runtime: None,
        model: None,
        provider: None,
        name_pool: Vec::new(),
        is_builtin: false,
        is_active: false,
        source_team: None,
        source_team_persona_slug: None,
        env_vars: BTreeMap::new(),
        created_at: "2026-01-15T09:00:00.000000000+00:00".to_string(),
        updated_at: "2026-06-01T11:59:59.000000000+00:00".to_string(),
    };
    let mut fizz_persona = persona(
        "builtin:fizz",
        "Fizz",
        Some(&fizz),
        "You are Fizz. You are a careful, direct engineering agent with a subtle bee theme.",
    );
    fizz_persona.is_builtin = true;
    fizz_persona.is_active = true;
    fizz_persona.name_pool = [
        "Nectar", "Comet", "Bramble", "Clover", "Pollen", "Amber", "Daisy", "Mason", "Bumble",
        "Thistle", "Honey", "Waxwing", "Hive", "Meadow", "Juniper", "Aster", "Sage", "Willow",
        "Orchard", "Buzz",
    ]
    .iter()
    .map(|n| n.to_string())
    .collect();
    let kit = persona("builtin:kit", "Kit (retired)", None, "");
    let scout = persona("builtin:scout", "Scout (retired)", None, "");
    let mut researcher_persona = persona(
        "research-crew:researcher",
        "Researcher",
        Some("https://avatars.example/researcher.png"),
        "Find sources; cite them.",
    );
    researcher_persona.is_active = true;
    researcher_persona.runtime = Some("claude".to_string());
    researcher_persona.model = Some("claude-opus-4-7".to_string());
    researcher_persona.source_team = Some("research-crew".to_string());
    researcher_persona.source_team_persona_slug = Some("researcher".to_string());
    researcher_persona.env_vars = BTreeMap::from([("RESEARCH_DEPTH".to_string(), "2".to_string())]);
    let mut personas = vec![scout, researcher_persona, kit, fizz_persona];
    sort_personas(&mut personas);

    let agents = serde_json::to_vec_pretty(&agents).expect("records serialize");
    let personas = serde_json::to_vec_pretty(&personas).expect("personas serialize");
    (
        String::from_utf8(agents).expect("UTF-8"),
        String::from_utf8(personas).expect("UTF-8"),
    )
}

/// The fixture's folder.
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/buzz-app")
}

/// The relay's state for the fixture: Bramble shows the goose runtime icon
/// (the old bug's overwrite), Comet its Fizz avatar, Nightly Bot a picture of
/// its own, researcher an old name, Waxwing is in sync, Pollen has none.
pub fn seed_events() -> Vec<Event> {
    let goose = CommandAvatars::builtin()
        .lookup("goose")
        .expect("goose has a default avatar")
        .to_string();
    let profile = |label: &str, content: serde_json::Value| {
        signed_profile(&fixture_keys(label), 1_780_000_000, &content.to_string())
    };
    vec![
        profile(
            "bramble",
            serde_json::json!({"name": "Bramble", "display_name": "Bramble", "picture": goose}),
        ),
        profile(
            "comet",
            serde_json::json!({"display_name": "Comet", "picture": fizz_avatar()}),
        ),
        profile(
            "nightly",
            serde_json::json!({"display_name": "Nightly Bot", "picture": "https://img.example/nightly.png", "about": "runs at night"}),
        ),
        profile(
            "researcher",
            serde_json::json!({"display_name": "Researcher (old)", "picture": "https://avatars.example/researcher.png", "lud16": "r@example.com"}),
        ),
        profile(
            "waxwing",
            serde_json::json!({"display_name": "Waxwing", "picture": "https://avatars.example/waxwing.png"}),
        ),
    ]
}

/// The fixture's agent store with its records naming `relay_url` instead.
pub fn store_text_for(relay_url: &str) -> String {
    std::fs::read_to_string(fixture_dir().join("managed-agents.json"))
        .expect("read the buzz-app fixture")
        .replace(FIXTURE_RELAY, relay_url)
}

/// Checks a PNG's structure: signature, chunk CRCs, IHDR, and the zlib
/// stream (stored blocks) against its Adler-32 and the image size.
fn check_png(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let mut at = 8;
    let mut size = (0, 0);
    let mut idat = Vec::new();
    let mut kinds = Vec::new();
    while at < png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let kind = &png[at + 4..at + 8];
        let data = &png[at + 8..at + 8 + len];
        let crc = u32::from_be_bytes(png[at + 8 + len..at + 12 + len].try_into().unwrap());
        assert_eq!(crc32(&png[at + 4..at + 8 + len]), crc, "chunk CRC");
        match kind {
            b"IHDR" => {
                size = (
                    u32::from_be_bytes(data[..4].try_into().unwrap()),
                    u32::from_be_bytes(data[4..8].try_into().unwrap()),
                );
                assert_eq!(&data[8..], &[8, 2, 0, 0, 0]);
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        kinds.push(String::from_utf8_lossy(kind).into_owned());
        at += 12 + len;
    }
    assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
    assert_eq!(&idat[..2], &[0x78, 0x01]);
    let mut raw = Vec::new();
    let mut pos = 2;
    loop {
        let last = idat[pos] & 1 == 1;
        assert_eq!(idat[pos] >> 1, 0, "stored blocks");
        let len = u16::from_le_bytes([idat[pos + 1], idat[pos + 2]]);
        let nlen = u16::from_le_bytes([idat[pos + 3], idat[pos + 4]]);
        assert_eq!(len, !nlen);
        raw.extend_from_slice(&idat[pos + 5..pos + 5 + usize::from(len)]);
        pos += 5 + usize::from(len);
        if last {
            break;
        }
    }
    assert_eq!(
        u32::from_be_bytes(idat[pos..pos + 4].try_into().unwrap()),
        adler32(&raw)
    );
    assert_eq!(raw.len(), (size.1 * (1 + 3 * size.0)) as usize);
    size
}

#[test]
fn the_buzz_app_fixture_is_written_exactly_as_the_app_writes_it() {
    let (agents, personas) = generate();
    let dir = fixture_dir();
    if std::env::var_os("REPROFILE_WRITE_FIXTURES").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("managed-agents.json"), &agents).unwrap();
        std::fs::write(dir.join("personas.json"), &personas).unwrap();
    }
    let agents_file = std::fs::read_to_string(dir.join("managed-agents.json")).unwrap();
    let personas_file = std::fs::read_to_string(dir.join("personas.json")).unwrap();
    assert!(
        agents_file == agents && personas_file == personas,
        "tests/fixtures/buzz-app/ is not what the generator makes; regenerate with \
         REPROFILE_WRITE_FIXTURES=1 cargo test --test it buzz_app"
    );

    // Independently of the generator: the files read into the app's types and
    // write back byte for byte (pretty, 2 spaces, no trailing newline), in the
    // app's sort order.
    let records: Vec<ManagedAgentRecord> = serde_json::from_str(&agents_file).unwrap();
    assert_eq!(serde_json::to_string_pretty(&records).unwrap(), agents_file);
    let mut sorted = records.clone();
    sort_agents(&mut sorted);
    assert_eq!(
        sorted.iter().map(|r| &r.pubkey).collect::<Vec<_>>(),
        records.iter().map(|r| &r.pubkey).collect::<Vec<_>>()
    );
    let persona_records: Vec<PersonaRecord> = serde_json::from_str(&personas_file).unwrap();
    assert_eq!(
        serde_json::to_string_pretty(&persona_records).unwrap(),
        personas_file
    );
    // Every field the app always writes is there, nulls as null.
    let values: Vec<serde_json::Value> = serde_json::from_str(&agents_file).unwrap();
    for value in &values {
        for key in [
            "pubkey",
            "name",
            "persona_id",
            "private_key_nsec",
            "auth_tag",
            "relay_url",
            "avatar_url",
            "acp_command",
            "agent_command",
            "agent_args",
            "mcp_command",
            "turn_timeout_seconds",
            "idle_timeout_seconds",
            "max_turn_duration_seconds",
            "parallelism",
            "system_prompt",
            "model",
            "mcp_toolsets",
            "start_on_app_launch",
            "runtime_pid",
            "backend",
            "backend_agent_id",
            "provider_binary_path",
            "created_at",
            "updated_at",
            "last_started_at",
            "last_stopped_at",
            "last_exit_code",
            "last_error",
            "respond_to",
            "respond_to_allowlist",
        ] {
            assert!(value.get(key).is_some(), "{key} in {}", value["name"]);
        }
    }
    assert!(agents_file.contains("\"avatar_url\": null,"));
    assert!(agents_file.contains("\"respond_to\": \"owner-only\""));
    assert!(agents_file.contains("\"respond_to\": \"allowlist\""));

    // Fizz's avatar: a valid PNG data URL of about 52 KB.
    let fizz = persona_records[0].avatar_url.clone().unwrap();
    assert_eq!(persona_records[0].id, "builtin:fizz");
    assert!((51_000..53_000).contains(&fizz.len()), "{}", fizz.len());
    let png = base64_decode(fizz.strip_prefix("data:image/png;base64,").unwrap());
    assert_eq!(base64_encode(&png), fizz["data:image/png;base64,".len()..]);
    assert_eq!(check_png(&png), (114, 114));
}

/// A temp folder with the fixture (its relay rewritten to `relay_url`) and a
/// config.toml that names the agent store only: personas are found beside it.
fn lay_out(relay_url: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture_dir().join("managed-agents.json"),
        dir.path().join("managed-agents.json"),
    )
    .unwrap();
    std::fs::copy(
        fixture_dir().join("personas.json"),
        dir.path().join("personas.json"),
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nagents = \"managed-agents.json\"\n\n\
             [relay]\nconnect_timeout_secs = 2\nquery_timeout_secs = 5\npublish_timeout_secs = 5\n\n\
             [relay.rewrite]\n\"{FIXTURE_RELAY}\" = \"{relay_url}\"\n"
        ),
    )
    .unwrap();
    (dir, config)
}

fn name_of<'a>(records: &'a [serde_json::Value], pubkey: &str) -> &'a str {
    records
        .iter()
        .find(|r| r["pubkey"] == pubkey)
        .and_then(|r| r["name"].as_str())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_buzz_app_store_plans_and_applies_with_fizz_carried_intact() {
    let relay = start_local_relay().await;
    let relay_url = relay.url().await.to_string();
    publish_events(&relay_url, &seed_events()).await;
    let (dir, config_path) = lay_out(&relay_url);
    let config = reprofile::config::load(&config_path).unwrap();
    let store_path = dir.path().join("managed-agents.json");
    let original = std::fs::read_to_string(&store_path).unwrap();
    let records: Vec<serde_json::Value> = serde_json::from_str(&original).unwrap();
    let fizz = fizz_avatar();

    let reprofile::engine::orchestrate::Planned {
        doc,
        path: plan_path,
        ..
    } = reprofile::engine::orchestrate::make_plan(&config, &[], None)
        .await
        .unwrap();
    let mut planned: Vec<(String, String)> = doc
        .plan
        .actions
        .iter()
        .map(|action| {
            let what = match action {
                Action::BackfillAvatar(b) => format!("backfill from {}", b.source.as_str()),
                Action::RepublishProfile(r) => format!(
                    "republish {}",
                    r.reasons
                        .iter()
                        .map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            };
            (name_of(&records, action.agent()).to_string(), what)
        })
        .collect();
    planned.sort();
    assert_eq!(
        planned,
        [
            ("Bramble", "backfill from persona"),
            ("Bramble", "republish picture_changed"),
            ("Nightly Bot", "backfill from relay"),
            ("Pollen", "backfill from command"),
            ("Pollen", "republish missing"),
            ("researcher", "republish name_changed"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(doc.plan.unchanged.len(), 2, "Comet and Waxwing");
    assert!(doc.plan.skipped.is_empty(), "{:#?}", doc.plan.skipped);
    let bramble = fixture_keys("bramble").public_key().to_hex();
    for action in &doc.plan.actions {
        match action {
            Action::BackfillAvatar(b) if b.agent == bramble => {
                assert_eq!(b.source, AvatarSource::Persona);
                assert_eq!(b.avatar_url, fizz, "the whole data: URL");
            }
            Action::RepublishProfile(r) if r.agent == bramble => {
                assert_eq!(r.reasons, [RepublishReason::PictureChanged]);
                assert_eq!(r.picture, fizz);
            }
            _ => {}
        }
    }

    // The rendering shows the data: avatar short; the plan file keeps it whole.
    let rendering =
        reprofile::review::render::render(&doc, reprofile::review::render::Style::default());
    let short = format!(
        "data:image/png;base64,… (52 KB, sha256 {}…)",
        &reprofile::store::agents::sha256_hex(fizz.as_bytes())[..8]
    );
    assert!(
        rendering.contains(&format!("+ \"avatar_url\": {short}")),
        "{rendering}"
    );
    assert!(
        rendering.contains(&format!("+ \"picture\": {short}")),
        "{rendering}"
    );
    assert!(rendering.contains("avatar_url was null"), "{rendering}");
    assert!(
        rendering.lines().all(|l| l.chars().count() < 240),
        "{rendering}"
    );
    let plan_file = std::fs::read_to_string(&plan_path).unwrap();
    assert!(plan_file.contains(&fizz));

    let report = reprofile::engine::apply::apply(
        &config,
        &doc,
        &plan_path,
        &crate::world::forced(),
        &reprofile::engine::orchestrate::now_secs,
    )
    .await
    .unwrap();
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(report.count(Outcome::Applied), 6);

    // The store differs from the app's file only in the three null avatar_url
    // values, now the backfilled ones: every other byte is the app's.
    let parsed =
        reprofile::store::agents::parse_agent_store(Path::new("s.json"), original.clone()).unwrap();
    let mut expected = original.clone();
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    for stored in &parsed.records {
        let new = doc.plan.actions.iter().find_map(|a| match a {
            Action::BackfillAvatar(b) if b.agent == stored.record.pubkey => {
                Some(b.avatar_url.clone())
            }
            _ => None,
        });
        if let Some(new) = new {
            let span = stored.span.clone();
            let at = span.start + original[span].find("\"avatar_url\": null").unwrap();
            let null = at + "\"avatar_url\": ".len();
            edits.push((null..null + 4, serde_json::to_string(&new).unwrap()));
        }
    }
    edits.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    for (range, text) in edits {
        expected.replace_range(range, &text);
    }
    assert_eq!(std::fs::read_to_string(&store_path).unwrap(), expected);

    // Fizz's avatar is on the relay, intact.
    let read = reprofile::net::relay::read_profiles(
        BTreeMap::from([(
            relay_url.clone(),
            vec![nostr::PublicKey::from_hex(&bramble).unwrap()],
        )]),
        &reprofile::engine::snapshot::read_options(&config),
    )
    .await;
    match &read[&relay_url][&bramble] {
        RelayObservation::Newest(event) => {
            let content: serde_json::Value = serde_json::from_str(&event.content).unwrap();
            assert_eq!(content["picture"], fizz);
            assert_eq!(content["display_name"], "Bramble");
            // The EVENT frame (content escaped once more, plus ~450 bytes of
            // id, pubkey, sig and tags) stays under the Buzz relay's 64 KiB.
            let escaped = serde_json::to_string(&event.content).unwrap();
            assert!(escaped.len() + 1_000 < 65_536, "{}", escaped.len());
        }
        other => panic!("{other:?}"),
    }

    let reprofile::engine::orchestrate::Planned { doc: again, .. } =
        reprofile::engine::orchestrate::make_plan(&config, &[], None)
            .await
            .unwrap();
    assert!(again.plan.actions.is_empty(), "{:#?}", again.plan.actions);
}
