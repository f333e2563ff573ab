//! NIP-OA owner attestation: the `auth` tag by which an owner key authorizes
//! an agent key (rule D4 of `RECONCILE.md`, `nip-oa-vectors.md`).
//!
//! This module owns everything about one such tag: parsing its JSON text (the
//! store's `auth_tag` field), checking its structure and its conditions
//! grammar, refusing self-attestation, verifying the owner's BIP-340 Schnorr
//! signature, deciding whether its conditions hold for a given event (kind and
//! `created_at`), and finding the single usable tag among an event's tags.
//! It also signs tags, for tests, examples and benchmarks.
//!
//! It is pure: no I/O, no clock (the event's `created_at` comes in as an
//! argument) and no randomness (signing uses BIP-340 without auxiliary
//! randomness). Deciding what to do with an invalid tag (skip the agent or
//! publish without it) belongs to the rules, not here.

use nostr::secp256k1::schnorr::Signature;
use nostr::secp256k1::{Keypair, Message, XOnlyPublicKey};
use nostr::util::SECP256K1;
use sha2::{Digest, Sha256};

/// The first element of every NIP-OA tag.
const AUTH_TAG_NAME: &str = "auth";

/// The domain-separation prefix of the signed message.
const MESSAGE_PREFIX: &str = "nostr:agent-auth:";

/// How many characters of an offending value an error message quotes, so a
/// huge tag cannot produce a huge plan reason.
const QUOTE_LIMIT: usize = 48;

/// Why a tag is not valid (Display = a short human sentence; never includes a private key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthTagError {
    /// The tag is not a JSON array of strings, has the wrong number of
    /// elements, does not start with `auth`, has bad hex or an invalid owner
    /// key, or its conditions break the grammar; the text says which.
    #[error("malformed auth tag: {0}")]
    Malformed(String),
    /// The owner key is the agent's own key; an agent cannot vouch for itself.
    #[error("auth tag owner is the agent itself (self-attestation)")]
    SelfAttestation,
    /// The owner's signature does not verify over the agent key and conditions.
    #[error("auth tag signature does not verify for this agent and these conditions")]
    BadSignature,
    /// A `kind=<n>` clause names another kind than the event's.
    #[error("auth tag is only valid for kind {required}, not for kind {actual}")]
    WrongKind {
        /// The kind the tag's `kind=` clause allows.
        required: u16,
        /// The kind of the event the tag would be carried on.
        actual: u16,
    },
    /// A `created_at<t` or `created_at>t` clause does not hold; the text says
    /// which clause and the values.
    #[error("auth tag time window excludes the event: {0}")]
    OutsideWindow(String),
    /// The event carries two or more `auth` tags, so none of them counts.
    #[error("event carries more than one auth tag, so none of them is valid")]
    MultipleAuthTags,
}

/// A parsed, structurally valid tag.
///
/// Only [`verify`] and the functions built on it hand these out, so a value
/// of this type has passed every check that does not depend on the event
/// (structure, conditions syntax, no self-attestation, signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthTag {
    /// The owner's x-only public key: 64 lower-case hex.
    pub owner: String,
    /// The conditions, exactly as written in the tag (never normalized).
    pub conditions: String,
    /// The BIP-340 signature: 128 lower-case hex.
    pub sig: String,
}

impl AuthTag {
    /// The tag as an event tag: `["auth", owner, conditions, sig]`.
    pub fn to_tag(&self) -> Vec<String> {
        vec![
            AUTH_TAG_NAME.to_owned(),
            self.owner.clone(),
            self.conditions.clone(),
            self.sig.clone(),
        ]
    }
}

/// One clause of the conditions grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clause {
    /// `kind=<n>`: the event's kind must be n.
    Kind(u16),
    /// `created_at<<t>`: the event's `created_at` must be below t.
    CreatedBefore(u32),
    /// `created_at><t>`: the event's `created_at` must be above t.
    CreatedAfter(u32),
}

/// Parses the JSON text of one tag (the store's `auth_tag` field), e.g. `["auth","<owner>","kind=0","<sig>"]` (whitespace between JSON tokens allowed).
///
/// Only checks that the text is a JSON array of strings; the element count
/// and everything else is [`verify`]'s job, so its errors stay precise.
pub fn parse_tag_json(text: &str) -> Result<Vec<String>, AuthTagError> {
    // Parse to a Value first so the error can say which element is wrong
    // without echoing the input (serde's own messages quote values).
    let value: serde_json::Value = serde_json::from_str(text).map_err(|error| {
        AuthTagError::Malformed(format!(
            "auth_tag is not valid JSON (line {}, column {})",
            error.line(),
            error.column()
        ))
    })?;
    let serde_json::Value::Array(elements) = value else {
        return Err(AuthTagError::Malformed(format!(
            "auth_tag is JSON {}, not an array of strings",
            json_type_name(&value)
        )));
    };
    elements
        .into_iter()
        .enumerate()
        .map(|(index, element)| match element {
            serde_json::Value::String(text) => Ok(text),
            other => Err(AuthTagError::Malformed(format!(
                "element {index} of the tag is JSON {}, not a string",
                json_type_name(&other)
            ))),
        })
        .collect()
}

/// Structure + conditions syntax + self-attestation + BIP-340 signature over sha256("nostr:agent-auth:" + agent_pubkey_hex + ":" + conditions).
///
/// `agent_pubkey_hex` is the author of the event the tag rides on; it must be
/// 64 lower-case hex (otherwise the result is [`AuthTagError::Malformed`]),
/// because the signed message contains it verbatim. Checks run in that order,
/// so the first failure is the one reported.
pub fn verify(tag: &[String], agent_pubkey_hex: &str) -> Result<AuthTag, AuthTagError> {
    let (owner_hex, conditions, sig_hex) = match tag {
        [name, owner, conditions, sig] if name == AUTH_TAG_NAME => (owner, conditions, sig),
        [name, ..] if tag.len() == 4 => {
            return Err(AuthTagError::Malformed(format!(
                "first element is {}, not \"auth\"",
                quote(name)
            )))
        }
        _ => {
            return Err(AuthTagError::Malformed(format!(
                "expected 4 elements [\"auth\", owner, conditions, sig], got {}",
                tag.len()
            )))
        }
    };

    let owner_bytes = decode_lower_hex::<32>(owner_hex).ok_or_else(|| {
        AuthTagError::Malformed("owner pubkey is not 64 lower-case hex characters".to_owned())
    })?;
    let owner_key = XOnlyPublicKey::from_slice(&owner_bytes).map_err(|_| {
        AuthTagError::Malformed("owner pubkey is not a valid secp256k1 x-only key".to_owned())
    })?;
    let sig_bytes = decode_lower_hex::<64>(sig_hex).ok_or_else(|| {
        AuthTagError::Malformed("signature is not 128 lower-case hex characters".to_owned())
    })?;
    let signature = Signature::from_slice(&sig_bytes)
        .map_err(|_| AuthTagError::Malformed("signature is not 64 bytes".to_owned()))?;
    parse_conditions(conditions)?;
    if decode_lower_hex::<32>(agent_pubkey_hex).is_none() {
        return Err(AuthTagError::Malformed(
            "agent pubkey is not 64 lower-case hex characters".to_owned(),
        ));
    }

    if owner_hex == agent_pubkey_hex {
        return Err(AuthTagError::SelfAttestation);
    }

    let message = signed_message(agent_pubkey_hex, conditions);
    SECP256K1
        .verify_schnorr(&signature, &message, &owner_key)
        .map_err(|_| AuthTagError::BadSignature)?;

    Ok(AuthTag {
        owner: owner_hex.clone(),
        conditions: conditions.clone(),
        sig: sig_hex.clone(),
    })
}

/// verify() and every condition clause holds for an event of `kind` at `created_at`.
///
/// Clauses are checked in the order written; the first that fails is reported.
pub fn check_for_event(
    tag: &[String],
    agent_pubkey_hex: &str,
    kind: u16,
    created_at: u64,
) -> Result<AuthTag, AuthTagError> {
    check_clauses(tag, agent_pubkey_hex, Some(kind), created_at, "the event's")
}

/// verify() and every clause of the tag: `kind=` only when `kind` is given;
/// `created_at` bounds against `created_at` (of `whose`, for messages).
fn check_clauses(
    tag: &[String],
    agent_pubkey_hex: &str,
    kind: Option<u16>,
    created_at: u64,
    whose: &str,
) -> Result<AuthTag, AuthTagError> {
    let auth_tag = verify(tag, agent_pubkey_hex)?;
    for clause in parse_conditions(&auth_tag.conditions)? {
        match clause {
            Clause::Kind(required) => match kind {
                Some(actual) if required != actual => {
                    return Err(AuthTagError::WrongKind { required, actual });
                }
                _ => {}
            },
            Clause::CreatedBefore(limit) if created_at >= u64::from(limit) => {
                return Err(AuthTagError::OutsideWindow(format!(
                    "created_at<{limit} does not hold: {whose} created_at is {created_at}"
                )));
            }
            Clause::CreatedAfter(limit) if created_at <= u64::from(limit) => {
                return Err(AuthTagError::OutsideWindow(format!(
                    "created_at>{limit} does not hold: {whose} created_at is {created_at}"
                )));
            }
            _ => {}
        }
    }
    Ok(auth_tag)
}

/// verify() and the tag's `created_at` clauses hold for a NIP-42 AUTH event
/// dated `created_at`: what today's Buzz relay checks when it admits an
/// agent by its tag (strictly, against the AUTH's own `created_at`; a tag
/// outside its window reads as `restricted: not a relay member`). It does
/// not check `kind=` there (buzz-today.md section 4, PR #7004), so neither
/// does this.
pub fn check_for_auth(
    tag: &[String],
    agent_pubkey_hex: &str,
    created_at: u64,
) -> Result<AuthTag, AuthTagError> {
    check_clauses(tag, agent_pubkey_hex, None, created_at, "the AUTH's")
}

/// Among an event's tags: Ok(None) when no `auth` tag, Err(MultipleAuthTags) when two or more, else check_for_event on the one.
///
/// A tag counts as an `auth` tag when its first element is exactly `auth`,
/// whatever its length, so a malformed second copy still disqualifies the first.
pub fn find_valid_in_event(
    tags: &[Vec<String>],
    agent_pubkey_hex: &str,
    kind: u16,
    created_at: u64,
) -> Result<Option<AuthTag>, AuthTagError> {
    let mut auth_tags = tags
        .iter()
        .filter(|tag| tag.first().is_some_and(|name| name == AUTH_TAG_NAME));
    match (auth_tags.next(), auth_tags.next()) {
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err(AuthTagError::MultipleAuthTags),
        (Some(tag), None) => check_for_event(tag, agent_pubkey_hex, kind, created_at).map(Some),
    }
}

/// Signs a tag (for tests, examples and benchmarks): BIP-340 by owner_keys over the message above.
///
/// Returns `["auth", owner_pubkey_hex, conditions, sig_hex]`. The conditions
/// are signed as given, without checking the grammar, so tests can build
/// correctly signed tags that must still be rejected. BIP-340 is used without
/// auxiliary randomness (allowed by BIP-340) to keep this module free of the
/// OS random source; signatures are therefore deterministic, but callers must
/// still compare tags by verifying, never by signature bytes.
pub fn sign(owner_keys: &nostr::Keys, agent_pubkey_hex: &str, conditions: &str) -> Vec<String> {
    let keypair = Keypair::from_secret_key(SECP256K1, owner_keys.secret_key());
    let message = signed_message(agent_pubkey_hex, conditions);
    let signature = SECP256K1.sign_schnorr_no_aux_rand(&message, &keypair);
    vec![
        AUTH_TAG_NAME.to_owned(),
        owner_keys.public_key().to_hex(),
        conditions.to_owned(),
        hex::encode(signature.serialize()),
    ]
}

/// The 32-byte message the owner signs: SHA-256 of
/// `nostr:agent-auth:<agent pubkey hex>:<conditions>`.
fn signed_message(agent_pubkey_hex: &str, conditions: &str) -> Message {
    let mut hasher = Sha256::new();
    hasher.update(MESSAGE_PREFIX.as_bytes());
    hasher.update(agent_pubkey_hex.as_bytes());
    hasher.update(b":");
    hasher.update(conditions.as_bytes());
    Message::from_digest(hasher.finalize().into())
}

/// Parses the conditions string strictly (see the module's grammar); the
/// error names the offending clause.
fn parse_conditions(conditions: &str) -> Result<Vec<Clause>, AuthTagError> {
    if conditions.is_empty() {
        return Ok(Vec::new());
    }
    if conditions.chars().any(char::is_whitespace) {
        return Err(AuthTagError::Malformed(format!(
            "conditions {} contain whitespace",
            quote(conditions)
        )));
    }
    conditions
        .split('&')
        .map(|clause| {
            if clause.is_empty() {
                return Err(AuthTagError::Malformed(format!(
                    "conditions {} have an empty clause (leading, trailing or doubled '&')",
                    quote(conditions)
                )));
            }
            if let Some(number) = clause.strip_prefix("kind=") {
                parse_decimal(number, u16::MAX.into())
                    .map(|n| Clause::Kind(n as u16))
                    .map_err(|problem| clause_error(clause, problem, "0..=65535"))
            } else if let Some(number) = clause.strip_prefix("created_at<") {
                parse_decimal(number, u32::MAX.into())
                    .map(|n| Clause::CreatedBefore(n as u32))
                    .map_err(|problem| clause_error(clause, problem, "0..=4294967295"))
            } else if let Some(number) = clause.strip_prefix("created_at>") {
                parse_decimal(number, u32::MAX.into())
                    .map(|n| Clause::CreatedAfter(n as u32))
                    .map_err(|problem| clause_error(clause, problem, "0..=4294967295"))
            } else {
                Err(AuthTagError::Malformed(format!(
                    "unknown condition clause {} (expected kind=, created_at< or created_at>)",
                    quote(clause)
                )))
            }
        })
        .collect()
}

/// Why a clause's number is not acceptable.
enum NumberProblem {
    NotDecimal,
    LeadingZero,
    OutOfRange,
}

/// Parses a decimal with no sign and no leading zeros (except "0"), at most `max`.
fn parse_decimal(text: &str, max: u64) -> Result<u64, NumberProblem> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(NumberProblem::NotDecimal);
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err(NumberProblem::LeadingZero);
    }
    // Anything with more than 20 digits overflows u64, which is out of range anyway.
    match text.parse::<u64>() {
        Ok(value) if value <= max => Ok(value),
        _ => Err(NumberProblem::OutOfRange),
    }
}

/// The error for a clause with a known name but a bad number.
fn clause_error(clause: &str, problem: NumberProblem, range: &str) -> AuthTagError {
    let what = match problem {
        NumberProblem::NotDecimal => "is not a plain decimal number".to_owned(),
        NumberProblem::LeadingZero => "has a leading zero".to_owned(),
        NumberProblem::OutOfRange => format!("is outside {range}"),
    };
    AuthTagError::Malformed(format!("condition clause {} {what}", quote(clause)))
}

/// Decodes exactly `N` bytes from lower-case hex; upper-case or any other
/// character, or the wrong length, gives `None`.
fn decode_lower_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let is_lower_hex = |byte: u8| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte);
    if text.len() != 2 * N || !text.bytes().all(is_lower_hex) {
        return None;
    }
    let mut bytes = [0u8; N];
    hex::decode_to_slice(text, &mut bytes).ok()?;
    Some(bytes)
}

/// A value quoted for an error message (escaped, so whitespace is visible),
/// cut to [`QUOTE_LIMIT`] characters.
fn quote(text: &str) -> String {
    if text.chars().count() <= QUOTE_LIMIT {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(QUOTE_LIMIT).collect();
        format!("{head:?}...")
    }
}

/// The JSON type of a value, for error messages.
fn json_type_name(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OWNER_SECRET: &str = "0000000000000000000000000000000000000000000000000000000000000001";
    const OWNER_PUBKEY: &str = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
    const AGENT_SECRET: &str = "0000000000000000000000000000000000000000000000000000000000000002";
    const AGENT_PUBKEY: &str = "c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5";
    const VECTOR1_CONDITIONS: &str = "kind=1&created_at<1713957000";
    const VECTOR1_PREIMAGE: &str = "nostr:agent-auth:c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5:kind=1&created_at<1713957000";
    const VECTOR1_DIGEST: &str = "08cdecd55af4c28d3801fd69615dcf5cc04fab3bc134b38a840bf157197069a6";
    const VECTOR1_SIG: &str = "8b7df2575caf0a108374f8471722b233c53f9ff827a8b0f91861966c3b9dd5cb2e189eae9f49d72187674c2f5bd244145e10ff86c9f257ffe65a1ee5f108b369";
    const VECTOR1_JSON: &str = r#"["auth","79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798","kind=1&created_at<1713957000","8b7df2575caf0a108374f8471722b233c53f9ff827a8b0f91861966c3b9dd5cb2e189eae9f49d72187674c2f5bd244145e10ff86c9f257ffe65a1ee5f108b369"]"#;

    // The fixture store's two tagged agents (fixtures/basic/managed-agents.json),
    // as the store's `auth_tag` text, spaces included.
    const FIXTURE_VALID_AGENT: &str =
        "bd3aca7c08157dfc481a83c784b0a99840c2d77d12f1df0645706206e8ff4289";
    const FIXTURE_VALID_TAG_JSON: &str = r#"["auth", "47579000471a7a1e1c06bd17c5916579c65181ac6f5d39400dcbe0c8295931ff", "kind=0", "d1d2c0148a5fbdd8404c2b83d0b156aa31cb7ce5ee1b4c6c2d006d4abb76117490708054552484b2ddd4efcfa1ba4253367ad88c38d8ff2d218284c006223621"]"#;
    const FIXTURE_WRONG_KIND_AGENT: &str =
        "e1d3b0887f8f2a012e9501f6116ce88bd312aa4dfcc34f51fa501bfc7bea3dc6";
    const FIXTURE_WRONG_KIND_TAG_JSON: &str = r#"["auth", "47579000471a7a1e1c06bd17c5916579c65181ac6f5d39400dcbe0c8295931ff", "kind=1", "9254e7574a8b16d46c410a0612e1990c0537da1e7568fcf5783d1c54d5b64a8dcb5bde63528b4f32ee57e6d71c1718756eb8a83dff6e6585fbbfb8506dcf73a9"]"#;
    const FIXTURE_OWNER: &str = "47579000471a7a1e1c06bd17c5916579c65181ac6f5d39400dcbe0c8295931ff";

    fn owner_keys() -> nostr::Keys {
        nostr::Keys::parse(OWNER_SECRET).expect("owner secret key 1 parses")
    }

    fn agent_keys() -> nostr::Keys {
        nostr::Keys::parse(AGENT_SECRET).expect("agent secret key 2 parses")
    }

    fn tag(elements: &[&str]) -> Vec<String> {
        elements.iter().map(|element| element.to_string()).collect()
    }

    fn vector1() -> Vec<String> {
        tag(&["auth", OWNER_PUBKEY, VECTOR1_CONDITIONS, VECTOR1_SIG])
    }

    /// A correctly signed tag with these conditions, so any rejection is
    /// about the conditions and not the signature.
    fn signed(conditions: &str) -> Vec<String> {
        sign(&owner_keys(), AGENT_PUBKEY, conditions)
    }

    /// A tag signed with `conditions` is malformed, and says `needle`.
    fn assert_conditions_malformed(conditions: &str, needle: &str) {
        assert_malformed(verify(&signed(conditions), AGENT_PUBKEY), needle);
    }

    fn assert_malformed(result: Result<AuthTag, AuthTagError>, needle: &str) {
        match result {
            Err(AuthTagError::Malformed(text)) => assert!(
                text.contains(needle),
                "Malformed message {text:?} should mention {needle:?}"
            ),
            other => panic!("expected Malformed mentioning {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn rule_d4_vector1_keys_and_digest_match() {
        assert_eq!(owner_keys().public_key().to_hex(), OWNER_PUBKEY);
        assert_eq!(agent_keys().public_key().to_hex(), AGENT_PUBKEY);
        assert_eq!(
            format!("{MESSAGE_PREFIX}{AGENT_PUBKEY}:{VECTOR1_CONDITIONS}"),
            VECTOR1_PREIMAGE
        );
        let message = signed_message(AGENT_PUBKEY, VECTOR1_CONDITIONS);
        assert_eq!(hex::encode(message.as_ref()), VECTOR1_DIGEST);
    }

    #[test]
    fn rule_d4_vector1_verifies() {
        let verified = verify(&vector1(), AGENT_PUBKEY).expect("vector 1 verifies");
        assert_eq!(
            verified,
            AuthTag {
                owner: OWNER_PUBKEY.to_owned(),
                conditions: VECTOR1_CONDITIONS.to_owned(),
                sig: VECTOR1_SIG.to_owned(),
            }
        );
        assert_eq!(verified.to_tag(), vector1());
    }

    #[test]
    fn rule_d4_vector1_json_parses_and_verifies() {
        let parsed = parse_tag_json(VECTOR1_JSON).expect("vector 1 JSON parses");
        assert_eq!(parsed, vector1());
        assert!(verify(&parsed, AGENT_PUBKEY).is_ok());
    }

    #[test]
    fn rule_d4_vector1_holds_for_kind1_at_1713956400() {
        let verified = check_for_event(&vector1(), AGENT_PUBKEY, 1, 1_713_956_400)
            .expect("a kind 1 event at 1713956400 satisfies vector 1");
        assert_eq!(verified.owner, OWNER_PUBKEY);
    }

    #[test]
    fn rule_d4_vector1_fails_for_kind0_wrong_kind() {
        assert_eq!(
            check_for_event(&vector1(), AGENT_PUBKEY, 0, 1_713_956_400),
            Err(AuthTagError::WrongKind {
                required: 1,
                actual: 0
            })
        );
    }

    #[test]
    fn rule_d4_vector1_window_excludes_1713957000() {
        let result = check_for_event(&vector1(), AGENT_PUBKEY, 1, 1_713_957_000);
        match result {
            Err(AuthTagError::OutsideWindow(text)) => {
                assert!(text.contains("created_at<1713957000"), "{text}");
                assert!(text.contains("is 1713957000"), "{text}");
            }
            other => panic!("expected OutsideWindow, got {other:?}"),
        }
        assert!(matches!(
            check_for_event(&vector1(), AGENT_PUBKEY, 1, 1_713_957_001),
            Err(AuthTagError::OutsideWindow(_))
        ));
        assert!(check_for_event(&vector1(), AGENT_PUBKEY, 1, 1_713_956_999).is_ok());
    }

    #[test]
    fn rule_d4_created_at_after_clause_is_strict() {
        let after = signed("created_at>100");
        assert!(check_for_event(&after, AGENT_PUBKEY, 0, 101).is_ok());
        match check_for_event(&after, AGENT_PUBKEY, 0, 100) {
            Err(AuthTagError::OutsideWindow(text)) => {
                assert!(text.contains("created_at>100"), "{text}");
                assert!(text.contains("is 100"), "{text}");
            }
            other => panic!("expected OutsideWindow, got {other:?}"),
        }
    }

    #[test]
    fn rule_d4_created_at_beyond_u32_is_outside_before_window() {
        let before = signed("created_at<4294967295");
        assert!(check_for_event(&before, AGENT_PUBKEY, 0, 4_294_967_294).is_ok());
        assert!(matches!(
            check_for_event(&before, AGENT_PUBKEY, 0, u64::MAX),
            Err(AuthTagError::OutsideWindow(_))
        ));
        assert!(
            check_for_event(&signed("created_at>4294967295"), AGENT_PUBKEY, 0, u64::MAX).is_ok()
        );
    }

    #[test]
    fn rule_d4_empty_conditions_hold_for_any_event() {
        let unconditional = signed("");
        assert!(verify(&unconditional, AGENT_PUBKEY).is_ok());
        assert!(check_for_event(&unconditional, AGENT_PUBKEY, 0, 0).is_ok());
        assert!(check_for_event(&unconditional, AGENT_PUBKEY, 65_535, u64::MAX).is_ok());
    }

    #[test]
    fn rule_d4_every_clause_must_hold() {
        let window = signed("kind=0&created_at>100&created_at<200");
        assert!(check_for_event(&window, AGENT_PUBKEY, 0, 150).is_ok());
        assert!(matches!(
            check_for_event(&window, AGENT_PUBKEY, 0, 50),
            Err(AuthTagError::OutsideWindow(_))
        ));
        assert!(matches!(
            check_for_event(&window, AGENT_PUBKEY, 0, 250),
            Err(AuthTagError::OutsideWindow(_))
        ));
        assert_eq!(
            check_for_event(&window, AGENT_PUBKEY, 1, 150),
            Err(AuthTagError::WrongKind {
                required: 0,
                actual: 1
            })
        );
    }

    #[test]
    fn rule_d4_rejects_two_auth_tags() {
        let tags = vec![vector1(), tag(&["p", AGENT_PUBKEY]), vector1()];
        assert_eq!(
            find_valid_in_event(&tags, AGENT_PUBKEY, 1, 1_713_956_400),
            Err(AuthTagError::MultipleAuthTags)
        );
        // A malformed second `auth` tag disqualifies a valid first one too.
        let tags = vec![vector1(), tag(&["auth"])];
        assert_eq!(
            find_valid_in_event(&tags, AGENT_PUBKEY, 1, 1_713_956_400),
            Err(AuthTagError::MultipleAuthTags)
        );
    }

    #[test]
    fn rule_d4_find_without_auth_tag_is_none() {
        assert_eq!(find_valid_in_event(&[], AGENT_PUBKEY, 0, 0), Ok(None));
        let tags = vec![tag(&["p", OWNER_PUBKEY]), Vec::new(), tag(&["authx", "y"])];
        assert_eq!(find_valid_in_event(&tags, AGENT_PUBKEY, 0, 0), Ok(None));
    }

    #[test]
    fn rule_d4_find_checks_the_single_auth_tag() {
        let tags = vec![tag(&["p", OWNER_PUBKEY]), vector1()];
        let found = find_valid_in_event(&tags, AGENT_PUBKEY, 1, 1_713_956_400)
            .expect("the one auth tag is valid");
        assert_eq!(found.map(|auth| auth.to_tag()), Some(vector1()));
        assert_eq!(
            find_valid_in_event(&tags, AGENT_PUBKEY, 0, 1_713_956_400),
            Err(AuthTagError::WrongKind {
                required: 1,
                actual: 0
            })
        );
    }

    #[test]
    fn rule_d4_rejects_three_and_five_elements() {
        let three = tag(&["auth", OWNER_PUBKEY, VECTOR1_CONDITIONS]);
        assert_malformed(verify(&three, AGENT_PUBKEY), "got 3");
        let mut five = vector1();
        five.push(String::new());
        assert_malformed(verify(&five, AGENT_PUBKEY), "got 5");
        assert_malformed(verify(&[], AGENT_PUBKEY), "got 0");
    }

    #[test]
    fn rule_d4_rejects_first_element_other_than_auth() {
        let mut renamed = vector1();
        renamed[0] = "Auth".to_owned();
        assert_malformed(verify(&renamed, AGENT_PUBKEY), "not \"auth\"");
    }

    #[test]
    fn rule_d4_rejects_trailing_ampersand() {
        assert_conditions_malformed("kind=1&", "empty clause");
    }

    #[test]
    fn rule_d4_rejects_leading_and_double_ampersand() {
        assert_conditions_malformed("&kind=1", "empty clause");
        assert_conditions_malformed("kind=1&&created_at<5", "empty clause");
        assert_conditions_malformed("&", "empty clause");
    }

    #[test]
    fn rule_d4_rejects_leading_zero() {
        assert_conditions_malformed("kind=01", "leading zero");
        assert_conditions_malformed("created_at<0123", "leading zero");
        // "0" itself is fine.
        assert!(verify(&signed("kind=0&created_at>0"), AGENT_PUBKEY).is_ok());
    }

    #[test]
    fn rule_d4_rejects_space() {
        assert_conditions_malformed("kind=1 ", "whitespace");
        assert_conditions_malformed(" kind=1", "whitespace");
        assert_conditions_malformed("kind=1&\tcreated_at<5", "whitespace");
    }

    #[test]
    fn rule_d4_rejects_unknown_clause() {
        assert_conditions_malformed("size=3", "unknown");
        assert_conditions_malformed("kind=1&size=3", "\"size=3\"");
        assert_conditions_malformed("created_at=5", "unknown");
        assert_conditions_malformed("KIND=1", "unknown");
    }

    #[test]
    fn rule_d4_rejects_bad_numbers() {
        for conditions in [
            "kind=", "kind=+1", "kind=-1", "kind=1.0", "kind=0x1", "kind=１",
        ] {
            assert_conditions_malformed(conditions, "decimal");
        }
        assert_conditions_malformed("kind=65536", "outside");
        assert_conditions_malformed("created_at<4294967296", "outside");
        assert_conditions_malformed("created_at>99999999999999999999999", "outside");
        assert!(verify(&signed("kind=65535&created_at<4294967295"), AGENT_PUBKEY).is_ok());
    }

    #[test]
    fn rule_d4_rejects_self_attestation() {
        let own = sign(&agent_keys(), AGENT_PUBKEY, "kind=0");
        assert_eq!(
            verify(&own, AGENT_PUBKEY),
            Err(AuthTagError::SelfAttestation)
        );
        assert_eq!(
            find_valid_in_event(&[own], AGENT_PUBKEY, 0, 0),
            Err(AuthTagError::SelfAttestation)
        );
    }

    #[test]
    fn rule_d4_rejects_flipped_signature_digit() {
        for position in [0, 63, 64, 127] {
            let mut flipped = vector1();
            let mut digits: Vec<u8> = flipped[3].clone().into_bytes();
            digits[position] = if digits[position] == b'0' { b'1' } else { b'0' };
            flipped[3] = String::from_utf8(digits).expect("hex stays ASCII");
            assert_eq!(
                verify(&flipped, AGENT_PUBKEY),
                Err(AuthTagError::BadSignature),
                "digit {position} flipped"
            );
        }
    }

    #[test]
    fn rule_d4_rejects_signature_for_another_agent() {
        assert_eq!(
            verify(&vector1(), FIXTURE_VALID_AGENT),
            Err(AuthTagError::BadSignature)
        );
    }

    #[test]
    fn rule_d4_conditions_are_verified_as_written() {
        // The same clauses reordered are a different message: never normalized.
        let mut reordered = vector1();
        reordered[2] = "created_at<1713957000&kind=1".to_owned();
        assert_eq!(
            verify(&reordered, AGENT_PUBKEY),
            Err(AuthTagError::BadSignature)
        );
    }

    #[test]
    fn rule_d4_rejects_bad_owner_and_signature_hex() {
        let mut upper_owner = vector1();
        upper_owner[1] = OWNER_PUBKEY.to_uppercase();
        assert_malformed(verify(&upper_owner, AGENT_PUBKEY), "owner pubkey");
        let mut short_owner = vector1();
        short_owner[1].pop();
        assert_malformed(verify(&short_owner, AGENT_PUBKEY), "owner pubkey");
        // Above the field prime: 64 hex digits, but no such x-only key.
        let mut off_curve = vector1();
        off_curve[1] = "f".repeat(64);
        assert_malformed(verify(&off_curve, AGENT_PUBKEY), "x-only");
        let mut upper_sig = vector1();
        upper_sig[3] = VECTOR1_SIG.to_uppercase();
        assert_malformed(verify(&upper_sig, AGENT_PUBKEY), "signature");
        let mut long_sig = vector1();
        long_sig[3].push('0');
        assert_malformed(verify(&long_sig, AGENT_PUBKEY), "signature");
    }

    #[test]
    fn rule_d4_rejects_agent_pubkey_that_is_not_lower_hex() {
        assert_malformed(
            verify(&vector1(), &AGENT_PUBKEY.to_uppercase()),
            "agent pubkey",
        );
    }

    #[test]
    fn rule_d4_sign_then_verify_kind0() {
        let tag = sign(&owner_keys(), AGENT_PUBKEY, "kind=0");
        assert_eq!(tag[0], "auth");
        assert_eq!(tag[1], OWNER_PUBKEY);
        assert_eq!(tag[2], "kind=0");
        let verified = check_for_event(&tag, AGENT_PUBKEY, 0, 1_713_956_400)
            .expect("a freshly signed kind=0 tag holds for kind 0");
        assert_eq!(verified.to_tag(), tag);
        assert_eq!(
            check_for_event(&tag, AGENT_PUBKEY, 1, 1_713_956_400),
            Err(AuthTagError::WrongKind {
                required: 0,
                actual: 1
            })
        );
    }

    #[test]
    fn rule_d4_sign_then_verify_kind0_window() {
        let tag = sign(&owner_keys(), AGENT_PUBKEY, "kind=0&created_at<1713957000");
        assert!(check_for_event(&tag, AGENT_PUBKEY, 0, 1_713_956_400).is_ok());
        assert!(matches!(
            check_for_event(&tag, AGENT_PUBKEY, 0, 1_713_957_000),
            Err(AuthTagError::OutsideWindow(_))
        ));
    }

    #[test]
    fn rule_d4_fixture_tag_verifies_for_kind0() {
        let tag = parse_tag_json(FIXTURE_VALID_TAG_JSON).expect("fixture tag parses");
        let verified = check_for_event(&tag, FIXTURE_VALID_AGENT, 0, 1_713_956_400)
            .expect("fixture auth_valid tag holds for kind 0");
        assert_eq!(verified.owner, FIXTURE_OWNER);
        assert_eq!(verified.conditions, "kind=0");
    }

    #[test]
    fn rule_d4_fixture_kind1_tag_verifies_but_fails_for_kind0() {
        let tag = parse_tag_json(FIXTURE_WRONG_KIND_TAG_JSON).expect("fixture tag parses");
        assert!(verify(&tag, FIXTURE_WRONG_KIND_AGENT).is_ok());
        assert_eq!(
            check_for_event(&tag, FIXTURE_WRONG_KIND_AGENT, 0, 1_713_956_400),
            Err(AuthTagError::WrongKind {
                required: 1,
                actual: 0
            })
        );
    }

    #[test]
    fn rule_d4_parse_tag_json_accepts_whitespace_between_tokens() {
        let spaced = "\n [ \"auth\" ,\t\"a\" , \"\" , \"b\" ] \n";
        assert_eq!(parse_tag_json(spaced), Ok(tag(&["auth", "a", "", "b"])));
    }

    #[test]
    fn rule_d4_parse_tag_json_rejects_non_string_arrays() {
        for (text, needle) in [
            ("", "not valid JSON"),
            ("[\"auth\",", "not valid JSON"),
            ("null", "JSON null"),
            ("{\"auth\":1}", "an object"),
            ("\"auth\"", "a string"),
            ("[\"auth\", 1, \"kind=0\", \"ab\"]", "element 1"),
            ("[\"auth\", [\"x\"]]", "element 1"),
        ] {
            match parse_tag_json(text) {
                Err(AuthTagError::Malformed(message)) => {
                    assert!(message.contains(needle), "{text:?}: {message:?}")
                }
                other => panic!("{text:?}: expected Malformed, got {other:?}"),
            }
        }
    }

    #[test]
    fn rule_d4_error_messages_never_echo_secret_material() {
        // The secret keys are not an input to any check, but make sure a
        // secret-looking value in a tag is not echoed in full either.
        let secret_like = "nsec1".repeat(20);
        let mut bad = vector1();
        bad[2] = secret_like.clone();
        let message = verify(&bad, AGENT_PUBKEY).unwrap_err().to_string();
        assert!(!message.contains(&secret_like), "{message}");
        assert!(message.len() < 200, "{message}");
    }

    #[test]
    fn rule_d4_error_display_is_a_sentence() {
        assert_eq!(
            AuthTagError::WrongKind {
                required: 1,
                actual: 0
            }
            .to_string(),
            "auth tag is only valid for kind 1, not for kind 0"
        );
        assert_eq!(
            AuthTagError::BadSignature.to_string(),
            "auth tag signature does not verify for this agent and these conditions"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn rule_d4_parsing_any_text_never_panics(text in any::<String>()) {
            if let Ok(parsed) = parse_tag_json(&text) {
                let _ = find_valid_in_event(&[parsed], AGENT_PUBKEY, 0, 0);
            }
        }

        #[test]
        fn rule_d4_parsing_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_tag_json(&text);
        }

        #[test]
        fn rule_d4_verifying_any_tag_never_panics(
            elements in proptest::collection::vec(
                prop_oneof![
                    Just("auth".to_owned()),
                    Just(OWNER_PUBKEY.to_owned()),
                    Just(VECTOR1_SIG.to_owned()),
                    "[a-z_<>=&0-9 ]{0,40}",
                    any::<String>(),
                ],
                0..6,
            ),
            agent in prop_oneof![Just(AGENT_PUBKEY.to_owned()), any::<String>()],
            kind in any::<u16>(),
            created_at in any::<u64>(),
        ) {
            let _ = check_for_event(&elements, &agent, kind, created_at);
        }

        #[test]
        fn rule_d4_signed_conditions_roundtrip(
            kind in any::<u16>(),
            before in any::<u32>(),
        ) {
            let conditions = format!("kind={kind}&created_at<{before}");
            let tag = signed(&conditions);
            prop_assert!(verify(&tag, AGENT_PUBKEY).is_ok());
            let in_window = u64::from(before).checked_sub(1);
            if let Some(created_at) = in_window {
                prop_assert!(check_for_event(&tag, AGENT_PUBKEY, kind, created_at).is_ok());
            }
        }
    }
}
