//! Reads token usage out of a response body while the relay forwards it.
//!
//! The relay hands every chunk it sends to the client to [`UsageTap::feed`] and asks
//! [`UsageTap::usage`] once the body has ended, well or not. `feed` never holds up a
//! chunk and never copies the body; its cost is one pass over each chunk:
//!
//! - **JSON** (a non-streaming Message): `feed` scans each chunk once, tracking only
//!   where it is in the top-level object (depth, in a string or not, the current key),
//!   and skips string contents a whole run at a time. It keeps the raw JSON of three
//!   top-level values, `type`, `model` and `usage`, at most 64 KiB each (a longer one is
//!   dropped), and nothing else: what it holds does not grow with the body, so a 1 GB
//!   Message is read with a few hundred bytes. `usage` deserializes those values once
//!   the body has ended; a body that is not one whole JSON object (cut short, HTML)
//!   reports nothing, and an error body reports nothing either. The scan checks the
//!   structure (braces, brackets, strings, separators), not every literal: the upstream's
//!   JSON is trusted for what it does not matter to the ledger.
//! - **SSE** (a streamed Message): `feed` scans each chunk once for line ends. Complete
//!   lines are read in place. Only the unfinished last line of a chunk is carried over,
//!   and only while it may matter: as soon as its field name shows a comment, an unknown
//!   field or data of an event the tap ignores, the rest of the line is skipped unread.
//!   The data of `message_start` and `message_delta` (a few hundred bytes) is buffered
//!   and parsed when its event ends; `ping` and `content_block_*` data is neither
//!   buffered nor parsed when the stream names its events with `event:` lines. In a
//!   stream without them each event's data is buffered, and parsed only when a substring
//!   check finds `"message_` or `"error"` in it. No event buffers more than 1 MiB: a
//!   larger one is dropped.
//!
//! The SSE parser follows the WHATWG event-stream rules: lines end with `\n`, `\r\n` or
//! `\r` (also when a chunk ends between `\r` and `\n`), `data:` lines are joined with
//! `\n`, a blank line dispatches the event, and a leading byte-order mark is skipped.
//! Chunks may split the stream anywhere, inside a line or inside a UTF-8 character:
//! bytes are only decoded when a whole event's data is parsed.
//!
//! Within one message, usage is cumulative: each count is folded by maximum, so a
//! `message_delta` that repeats a count as 0 or null never erases what `message_start`
//! said, and string fields keep their latest non-null value. A stream of several
//! messages (some gateways join them) reports their sum. It is `complete` when its last
//! message reached `message_stop` and no `error` event came after; cut short, it still
//! reports every token seen. Cache writes are split by TTL as Claude Code does (see
//! `Counts::tokens`).
//!
//! # OpenAI dialects
//!
//! [`UsageTap::for_dialect`] reads OpenAI's answers with the same guarantees (one pass,
//! bounded buffers, chunks split anywhere); docs/protocol.md §7.6 has the fields.
//!
//! - **Responses**, JSON: the Response object's top-level `model`, `service_tier`,
//!   `usage` and `error` (an error body, `{"error": {…}}`, is whole and used nothing).
//!   SSE: `response.created` / `response.in_progress` give the model early;
//!   `response.completed`, `response.incomplete` and `response.failed` carry the final
//!   Response with its usage; the stream is `complete` only at `response.completed` with
//!   no `error` event after it. Their data holds the whole Response, output included, so
//!   one of these events may buffer up to 16 MiB (a larger one is dropped); content
//!   deltas are skipped unread as Anthropic's are. A Responses answer without a
//!   `Content-Type` is a stream ([`BodyKind::for_dialect`]).
//! - **Chat Completions**, JSON: the completion's `model`, `service_tier`, `usage`. SSE:
//!   unnamed chunks; the first is parsed for the model, then only a chunk containing
//!   `"prompt_tokens"` (the `stream_options.include_usage` chunk) or an `"error"`; the
//!   stream is `complete` at `data: [DONE]`.
//! - Tokens: OpenAI counts cached input inside `input_tokens` / `prompt_tokens` and
//!   reasoning inside `output_tokens` / `completion_tokens`; the ledger's `input` is the
//!   fresh part (input − cached), `cache_read` the cached part, `output` all output, and
//!   `reasoning` the reasoning part of it (for reports; priced as output).

use bytes::Bytes;
use serde::Deserialize;

use super::{Billing, Tokens, Usage};

/// An SSE event whose data would grow beyond this is dropped.
const MAX_EVENT: usize = 1 << 20;
/// A Responses stream event whose data would grow beyond this is dropped (its terminal
/// event holds the whole Response, output text and tool calls included).
const MAX_RESPONSE_EVENT: usize = 16 << 20;
/// The most of an unfinished `event:` line kept: longer than any name the tap knows.
const EVENT_LINE: usize = 32;
/// Buffers that grew for a large event are shrunk back to this once it is done.
const KEEP_CAPACITY: usize = 64 << 10;
/// Bytes that may start an event stream and are not part of it.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Which API's answers the tap reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Anthropic Messages (docs/protocol.md §6.1).
    Anthropic,
    /// OpenAI Responses, `/v1/responses` (docs/protocol.md §7.6).
    Responses,
    /// OpenAI Chat Completions, `/v1/chat/completions` (docs/protocol.md §7.6).
    ChatCompletions,
}

/// What kind of body the tap reads, from the response's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `text/event-stream`: a streamed Message.
    Sse,
    /// `application/json`: a Message, or an error.
    Json,
    /// Anything else: the tap ignores the body.
    Other,
}

impl BodyKind {
    /// The kind of a body of `dialect`: as [`BodyKind::of`], except that a Responses
    /// answer without a `Content-Type` is an event stream (docs/protocol.md §7.6).
    pub fn for_dialect(dialect: Dialect, content_type: Option<&str>) -> BodyKind {
        match (dialect, content_type) {
            (Dialect::Responses, None) => BodyKind::Sse,
            _ => BodyKind::of(content_type),
        }
    }

    pub fn of(content_type: Option<&str>) -> BodyKind {
        let Some(content_type) = content_type else {
            return BodyKind::Other;
        };
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("text/event-stream") {
            BodyKind::Sse
        } else if essence.eq_ignore_ascii_case("application/json") {
            BodyKind::Json
        } else {
            BodyKind::Other
        }
    }
}

/// Watches one response body go by and says what usage it reported.
#[derive(Debug)]
pub struct UsageTap {
    body: Body,
}

#[derive(Debug)]
enum Body {
    Sse(Box<SseTap>),
    Json(JsonTap),
    Other,
}

impl UsageTap {
    /// A tap for an Anthropic Messages answer.
    pub fn new(kind: BodyKind) -> UsageTap {
        UsageTap::for_dialect(Dialect::Anthropic, kind)
    }

    /// A tap for an answer of `dialect`.
    pub fn for_dialect(dialect: Dialect, kind: BodyKind) -> UsageTap {
        let body = match kind {
            BodyKind::Sse => Body::Sse(Box::new(SseTap {
                dialect,
                ..SseTap::default()
            })),
            BodyKind::Json => Body::Json(JsonTap {
                dialect,
                ..JsonTap::default()
            }),
            BodyKind::Other => Body::Other,
        };
        UsageTap { body }
    }

    /// Called for every chunk as it is forwarded to the client. Must be cheap: one scan of
    /// the chunk; no copy of the whole body (only the unfinished last line of an SSE chunk
    /// is carried over).
    pub fn feed(&mut self, chunk: &Bytes) {
        match &mut self.body {
            Body::Sse(sse) => sse.feed(chunk),
            Body::Json(json) => json.feed(chunk),
            Body::Other => {}
        }
    }

    /// What was seen so far. Callable at any time, also when the stream was cut short
    /// (client gone, upstream died, timeout): then `complete` is false but every token
    /// seen is kept.
    pub fn usage(&mut self) -> Usage {
        match &self.body {
            Body::Sse(sse) => sse.usage(),
            Body::Json(json) => json.usage(),
            Body::Other => Usage::default(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The wire shapes, reduced to what the ledger reads. Every field may be missing or null.

/// The `"type"` of an SSE event's data, for streams that do not name their events.
#[derive(Deserialize)]
struct WireKind {
    #[serde(rename = "type")]
    kind: String,
}

/// The data of a `message_start` or `message_delta` event.
#[derive(Deserialize)]
struct WireEvent {
    /// `message_start`'s message.
    message: Option<WireMessage>,
    /// `message_delta`'s usage.
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireMessage {
    model: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_creation: Option<WireCacheCreation>,
    server_tool_use: Option<WireServerToolUse>,
    service_tier: Option<String>,
    speed: Option<String>,
    inference_geo: Option<String>,
}

#[derive(Deserialize)]
struct WireCacheCreation {
    ephemeral_5m_input_tokens: Option<u64>,
    ephemeral_1h_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WireServerToolUse {
    web_search_requests: Option<u64>,
    web_fetch_requests: Option<u64>,
}

/// An OpenAI `usage` object: Responses names (`input_tokens`, …) or Chat Completions
/// names (`prompt_tokens`, …); each answer uses one set.
#[derive(Deserialize)]
struct WireOpenAiUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    input_tokens_details: Option<WireDetails>,
    output_tokens_details: Option<WireDetails>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<WireDetails>,
    completion_tokens_details: Option<WireDetails>,
}

#[derive(Deserialize)]
struct WireDetails {
    cached_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
}

/// A Responses `Response` object, or a Chat Completions completion or chunk, reduced to
/// what the ledger reads.
#[derive(Deserialize)]
struct WireOpenAiObject {
    model: Option<String>,
    service_tier: Option<String>,
    usage: Option<WireOpenAiUsage>,
}

/// The data of a Responses stream event (`response.created`, `response.completed`, …).
#[derive(Deserialize)]
struct WireResponseEvent {
    response: Option<WireOpenAiObject>,
}

/// The data of a Chat Completions chunk: only whether it is an error.
#[derive(Deserialize)]
struct WireChatError {
    error: Option<serde::de::IgnoredAny>,
}

/// OpenAI counts as reported so far, each the largest value seen. Cached input is part
/// of `input`, reasoning part of `output` (docs/protocol.md §7.6).
#[derive(Debug, Default, Clone, Copy)]
struct OpenAiCounts {
    input: u64,
    cached: u64,
    output: u64,
    reasoning: u64,
}

impl OpenAiCounts {
    fn fold(&mut self, usage: &WireOpenAiUsage) {
        fn max(count: &mut u64, value: Option<u64>) {
            *count = (*count).max(value.unwrap_or(0));
        }
        let details = |d: &Option<WireDetails>, cached: bool| {
            d.as_ref().and_then(|d| {
                if cached {
                    d.cached_tokens
                } else {
                    d.reasoning_tokens
                }
            })
        };
        max(&mut self.input, usage.input_tokens.or(usage.prompt_tokens));
        max(
            &mut self.output,
            usage.output_tokens.or(usage.completion_tokens),
        );
        let cached = details(&usage.input_tokens_details, true)
            .or(details(&usage.prompt_tokens_details, true));
        max(&mut self.cached, cached);
        let reasoning = details(&usage.output_tokens_details, false)
            .or(details(&usage.completion_tokens_details, false));
        max(&mut self.reasoning, reasoning);
    }

    /// As ledger tokens: fresh input = input − cached, cache read = cached.
    fn tokens(&self) -> Tokens {
        Tokens {
            input: self.input.saturating_sub(self.cached),
            cache_read: self.cached,
            output: self.output,
            reasoning: self.reasoning,
            ..Tokens::default()
        }
    }
}

/// The counts of one message, as reported so far (each the largest value seen).
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_creation: u64,
    cache_5m: u64,
    cache_1h: u64,
    /// A `cache_creation` object (the 5m/1h split) was present.
    split: bool,
    web_search: u64,
    web_fetch: u64,
}

impl Counts {
    fn fold(&mut self, usage: &WireUsage) {
        fn max(count: &mut u64, value: Option<u64>) {
            *count = (*count).max(value.unwrap_or(0));
        }
        max(&mut self.input, usage.input_tokens);
        max(&mut self.output, usage.output_tokens);
        max(&mut self.cache_read, usage.cache_read_input_tokens);
        max(&mut self.cache_creation, usage.cache_creation_input_tokens);
        if let Some(split) = &usage.cache_creation {
            self.split = true;
            max(&mut self.cache_5m, split.ephemeral_5m_input_tokens);
            max(&mut self.cache_1h, split.ephemeral_1h_input_tokens);
        }
        if let Some(tools) = &usage.server_tool_use {
            max(&mut self.web_search, tools.web_search_requests);
            max(&mut self.web_fetch, tools.web_fetch_requests);
        }
    }

    /// The counts as ledger tokens, cache writes split by TTL the way Claude Code does:
    /// without a split every write is a 5-minute one; with one, the total is the larger
    /// of `cache_creation_input_tokens` and 5m + 1h, and what is not 1h is 5m.
    fn tokens(&self) -> Tokens {
        let (cache_write_5m, cache_write_1h) = if self.split {
            let total = self
                .cache_creation
                .max(self.cache_5m.saturating_add(self.cache_1h));
            let one_hour = self.cache_1h.min(total);
            (total - one_hour, one_hour)
        } else {
            (self.cache_creation, 0)
        };
        Tokens {
            input: self.input,
            output: self.output,
            cache_read: self.cache_read,
            cache_write_5m,
            cache_write_1h,
            web_search_requests: self.web_search,
            web_fetch_requests: self.web_fetch,
            reasoning: 0,
        }
    }
}

/// Keeps the latest non-null value of a string field.
fn latest(slot: &mut Option<String>, value: Option<String>) {
    if value.is_some() {
        *slot = value;
    }
}

fn fold_billing(billing: &mut Billing, usage: WireUsage) {
    latest(&mut billing.speed, usage.speed);
    latest(&mut billing.service_tier, usage.service_tier);
    latest(&mut billing.inference_geo, usage.inference_geo);
}

fn sum(a: Tokens, b: Tokens) -> Tokens {
    Tokens {
        input: a.input.saturating_add(b.input),
        output: a.output.saturating_add(b.output),
        cache_read: a.cache_read.saturating_add(b.cache_read),
        cache_write_5m: a.cache_write_5m.saturating_add(b.cache_write_5m),
        cache_write_1h: a.cache_write_1h.saturating_add(b.cache_write_1h),
        web_search_requests: a.web_search_requests.saturating_add(b.web_search_requests),
        web_fetch_requests: a.web_fetch_requests.saturating_add(b.web_fetch_requests),
        reasoning: a.reasoning.saturating_add(b.reasoning),
    }
}

// ---------------------------------------------------------------------------------------
// Non-streaming bodies.

/// The top-level fields of a Message the JSON tap reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Type,
    Model,
    Usage,
    /// OpenAI's `service_tier`.
    ServiceTier,
    /// OpenAI's `error` (an error body, or `null` on a Response).
    Error,
}

impl Field {
    fn of(dialect: Dialect, key: &[u8]) -> Option<Field> {
        match dialect {
            Dialect::Anthropic => match key {
                b"type" => Some(Field::Type),
                b"model" => Some(Field::Model),
                b"usage" => Some(Field::Usage),
                _ => None,
            },
            Dialect::Responses | Dialect::ChatCompletions => match key {
                b"model" => Some(Field::Model),
                b"usage" => Some(Field::Usage),
                b"service_tier" => Some(Field::ServiceTier),
                b"error" => Some(Field::Error),
                _ => None,
            },
        }
    }

    /// Longest top-level key worth reading: the wanted ones are no longer.
    fn max_key(dialect: Dialect) -> usize {
        match dialect {
            Dialect::Anthropic => "usage".len(),
            Dialect::Responses | Dialect::ChatCompletions => "service_tier".len(),
        }
    }

    /// Room for the raw JSON of a usual value of this field.
    fn usual_size(self) -> usize {
        match self {
            Field::Type | Field::ServiceTier | Field::Error => 16,
            Field::Model => 64,
            Field::Usage => 384,
        }
    }
}

/// Where the JSON tap is in the top-level object, outside strings.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Before the opening `{`.
    #[default]
    Start,
    /// Expecting a key (after `{` or `,`).
    Key,
    /// After a key, expecting `:`.
    Colon,
    /// After `:`, expecting a value.
    Value,
    /// Inside a top-level value that is a string, an object or an array.
    Nested,
    /// Inside a top-level value that is a number, `true`, `false` or `null`.
    Scalar,
    /// After a value, expecting `,` or `}`.
    Comma,
    /// After the closing `}`.
    End,
}

/// Scans a non-streaming body once, as it passes, keeping only the raw JSON of the
/// top-level `type`, `model` and `usage` values (at most [`MAX_JSON_VALUE`] bytes each).
/// What it holds does not grow with the body: a 1 GB Message costs a few hundred bytes.
#[derive(Debug)]
struct JsonTap {
    dialect: Dialect,
    at: At,
    /// Container depth: 1 inside the top-level object.
    depth: u32,
    in_string: bool,
    /// The last byte was a `\` inside a string.
    escape: bool,
    /// The top-level key being read (only its first bytes: longer keys are not wanted).
    key: Vec<u8>,
    /// The field whose value is being read, if wanted.
    field: Option<Field>,
    /// The raw JSON of the value being read.
    value: Vec<u8>,
    /// The value grew beyond [`MAX_JSON_VALUE`]: it is not kept.
    value_too_long: bool,
    /// The raw JSON of each wanted field, as last seen.
    kind: Option<Vec<u8>>,
    model: Option<Vec<u8>>,
    usage: Option<Vec<u8>>,
    service_tier: Option<Vec<u8>>,
    error: Option<Vec<u8>>,
    /// Not one JSON object: nothing is reported.
    invalid: bool,
}

impl Default for JsonTap {
    fn default() -> JsonTap {
        JsonTap {
            dialect: Dialect::Anthropic,
            at: At::default(),
            depth: 0,
            in_string: false,
            escape: false,
            key: Vec::new(),
            field: None,
            value: Vec::new(),
            value_too_long: false,
            kind: None,
            model: None,
            usage: None,
            service_tier: None,
            error: None,
            invalid: false,
        }
    }
}

/// Longest top-level value kept (Anthropic's `usage` object is a few hundred bytes).
const MAX_JSON_VALUE: usize = 64 << 10;

impl JsonTap {
    fn feed(&mut self, chunk: &[u8]) {
        let mut i = 0;
        while i < chunk.len() && !self.invalid {
            if self.in_string {
                // The body of a string: skip to the next quote or backslash at once.
                if self.escape {
                    self.escape = false;
                    self.keep(&chunk[i..=i]);
                    i += 1;
                    continue;
                }
                let rest = &chunk[i..];
                let n = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
                self.keep(&rest[..n]);
                i += n;
                if let Some(&b) = chunk.get(i) {
                    self.keep(&chunk[i..=i]);
                    i += 1;
                    if b == b'\\' {
                        self.escape = true;
                    } else {
                        self.in_string = false;
                        self.string_ended();
                    }
                }
                continue;
            }
            if self.at == At::Nested {
                // Inside an object or array only quotes and brackets change the state:
                // the bytes up to the next one are skipped (a value nobody wants, such as
                // `content`) or kept (`usage`) as one run, not one at a time.
                let rest = &chunk[i..];
                let n = rest
                    .iter()
                    .position(|&b| matches!(b, b'"' | b'{' | b'[' | b'}' | b']'))
                    .unwrap_or(rest.len());
                self.keep(&rest[..n]);
                i += n;
                if i == chunk.len() {
                    break;
                }
            }
            let b = chunk[i];
            self.byte(b, &chunk[i..=i]);
            i += 1;
        }
    }

    /// One byte outside strings.
    fn byte(&mut self, b: u8, bytes: &[u8]) {
        let space = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        if self.at == At::Scalar && (space || matches!(b, b',' | b'}' | b']')) {
            self.value_ended();
        }
        if space {
            return;
        }
        match (self.at, b) {
            (At::Start, b'{') => {
                self.depth = 1;
                self.at = At::Key;
            }
            (At::Key, b'"') => {
                self.in_string = true;
                self.key.clear();
            }
            (At::Key | At::Comma, b'}') if self.depth == 1 => {
                // `{}`, or the end of the object.
                self.depth = 0;
                self.at = At::End;
            }
            (At::Colon, b':') => self.at = At::Value,
            (At::Comma, b',') => self.at = At::Key,
            (At::Value, _) => {
                self.field = Field::of(self.dialect, &self.key);
                self.value.clear();
                if let Some(field) = self.field {
                    // One allocation for a usual value rather than a doubling series
                    // (the buffer of the last value moved out with it).
                    self.value.reserve(field.usual_size());
                }
                self.value_too_long = false;
                self.keep(bytes);
                match b {
                    b'"' => {
                        self.in_string = true;
                        self.at = At::Nested;
                    }
                    b'{' | b'[' => {
                        self.depth += 1;
                        self.at = At::Nested;
                    }
                    b'}' | b']' | b',' | b':' => self.invalid = true,
                    _ => self.at = At::Scalar,
                }
            }
            (At::Scalar, _) => self.keep(bytes),
            (At::Nested, _) => {
                self.keep(bytes);
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth = self.depth.saturating_add(1),
                    b'}' | b']' => {
                        self.depth -= 1;
                        if self.depth == 1 {
                            self.value_ended();
                        }
                    }
                    _ => {}
                }
            }
            _ => self.invalid = true,
        }
    }

    /// A string ended (its closing quote was kept).
    fn string_ended(&mut self) {
        match self.at {
            At::Key => self.at = At::Colon,
            At::Nested if self.depth == 1 => self.value_ended(),
            _ => {}
        }
    }

    /// The current top-level value ended.
    fn value_ended(&mut self) {
        self.at = At::Comma;
        let value = std::mem::take(&mut self.value);
        let slot = match self.field.take() {
            Some(Field::Type) => &mut self.kind,
            Some(Field::Model) => &mut self.model,
            Some(Field::Usage) => &mut self.usage,
            Some(Field::ServiceTier) => &mut self.service_tier,
            Some(Field::Error) => &mut self.error,
            None => return,
        };
        *slot = if self.value_too_long {
            tracing::debug!(
                limit = MAX_JSON_VALUE,
                "usage tap: a JSON field is too long, not read"
            );
            None
        } else {
            Some(value)
        };
    }

    /// Bytes of the key or the wanted value being read.
    fn keep(&mut self, bytes: &[u8]) {
        if self.at == At::Key {
            // The closing quote is not part of the key.
            let text = bytes.strip_suffix(b"\"").unwrap_or(bytes);
            if self.key.len() + text.len() > Field::max_key(self.dialect) {
                // Longer than any wanted key: a NUL first means "unwanted" for good.
                self.key.clear();
                self.key.push(0);
            } else {
                self.key.extend_from_slice(text);
            }
            return;
        }
        if self.field.is_none() || self.value_too_long {
            return;
        }
        if self.value.len() + bytes.len() > MAX_JSON_VALUE {
            self.value_too_long = true;
            self.value = Vec::new();
            return;
        }
        self.value.extend_from_slice(bytes);
    }

    fn usage(&self) -> Usage {
        if self.invalid || self.at != At::End {
            tracing::debug!("usage tap: JSON body not whole, not read");
            return Usage::default();
        }
        if self.dialect != Dialect::Anthropic {
            return self.openai_usage();
        }
        let (Ok(kind), Ok(model), Ok(usage)) = (
            parse_field::<String>(&self.kind),
            parse_field::<String>(&self.model),
            parse_field::<WireUsage>(&self.usage),
        ) else {
            return Usage::default();
        };
        // A whole error body is a complete response that used nothing.
        if kind.as_deref() == Some("error") {
            return Usage {
                complete: true,
                ..Usage::default()
            };
        }
        let mut counts = Counts::default();
        let mut billing = Billing::default();
        if let Some(usage) = usage {
            counts.fold(&usage);
            fold_billing(&mut billing, usage);
        }
        Usage {
            model,
            tokens: counts.tokens(),
            billing,
            complete: true,
        }
    }

    /// A whole Responses `Response` or Chat Completions completion (or an OpenAI error
    /// body, `{"error": {…}}`: complete, nothing used).
    fn openai_usage(&self) -> Usage {
        let error = match &self.error {
            None => false,
            Some(raw) => raw.as_slice() != b"null",
        };
        if error {
            return Usage {
                complete: true,
                ..Usage::default()
            };
        }
        let (Ok(model), Ok(usage), Ok(service_tier)) = (
            parse_field::<String>(&self.model),
            parse_field::<WireOpenAiUsage>(&self.usage),
            parse_field::<String>(&self.service_tier),
        ) else {
            return Usage::default();
        };
        let mut counts = OpenAiCounts::default();
        if let Some(usage) = &usage {
            counts.fold(usage);
        }
        Usage {
            model,
            tokens: counts.tokens(),
            billing: Billing {
                service_tier,
                ..Billing::default()
            },
            complete: true,
        }
    }
}

/// Reads one kept top-level value; `Err` (logged) when it is not of the expected shape.
fn parse_field<'a, T: Deserialize<'a>>(raw: &'a Option<Vec<u8>>) -> Result<Option<T>, ()> {
    match raw {
        None => Ok(None),
        Some(raw) => serde_json::from_slice::<Option<T>>(raw).map_err(|error| {
            tracing::debug!(%error, "usage tap: JSON field not read");
        }),
    }
}

// ---------------------------------------------------------------------------------------
// Event streams.

/// The name an event's `event:` line gave it, as far as the tap cares.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Name {
    /// No `event:` line (yet), or `event: message`: the data's `"type"` decides.
    #[default]
    Unnamed,
    MessageStart,
    MessageDelta,
    MessageStop,
    Error,
    /// Responses: `response.created` or `response.in_progress` (the model, no usage yet).
    ResponseStarted,
    /// Responses: `response.completed`.
    ResponseCompleted,
    /// Responses: `response.incomplete` or `response.failed` (usage, not complete).
    ResponseEnded,
    /// `ping`, `content_block_*`, `response.output_text.delta` and anything else.
    Other,
}

impl Name {
    fn of(dialect: Dialect, value: &[u8]) -> Name {
        match dialect {
            Dialect::Anthropic => Name::anthropic(value),
            Dialect::Responses | Dialect::ChatCompletions => Name::openai(dialect, value),
        }
    }

    fn anthropic(value: &[u8]) -> Name {
        match value {
            // `message` is the type of an event without a name.
            b"" | b"message" => Name::Unnamed,
            b"message_start" => Name::MessageStart,
            b"message_delta" => Name::MessageDelta,
            b"message_stop" => Name::MessageStop,
            b"error" => Name::Error,
            _ => Name::Other,
        }
    }

    fn openai(dialect: Dialect, value: &[u8]) -> Name {
        match (dialect, value) {
            (_, b"" | b"message") => Name::Unnamed,
            (_, b"error") => Name::Error,
            (Dialect::Responses, b"response.created" | b"response.in_progress") => {
                Name::ResponseStarted
            }
            (Dialect::Responses, b"response.completed") => Name::ResponseCompleted,
            (Dialect::Responses, b"response.incomplete" | b"response.failed") => {
                Name::ResponseEnded
            }
            _ => Name::Other,
        }
    }

    /// Whether the tap needs this event's data.
    fn wants_data(self) -> bool {
        matches!(
            self,
            Name::Unnamed
                | Name::MessageStart
                | Name::MessageDelta
                | Name::ResponseStarted
                | Name::ResponseCompleted
                | Name::ResponseEnded
        )
    }
}

/// What to do with a line, judged from its first bytes.
enum LineUse {
    Keep,
    Skip,
    /// The field name is not complete yet.
    Undecided,
}

#[derive(Debug)]
struct SseTap {
    dialect: Dialect,

    // Splitting lines.
    /// How many bytes at the start of the stream were checked for a byte-order mark.
    bom_checked: usize,
    /// The last chunk ended with `\r`: a `\n` starting the next one ends no other line.
    after_cr: bool,
    /// The kept part of the current unfinished line.
    partial: Vec<u8>,
    /// The current unfinished line is needed (its field name was judged).
    keep_line: bool,
    /// The rest of the current unfinished line is not needed.
    skip_line: bool,

    // The event being read.
    name: Name,
    /// The event's data lines, each followed by `\n` (only when `name.wants_data()`).
    data: Vec<u8>,
    /// The event had a `data:` line, buffered or not: it is dispatched.
    has_data: bool,
    /// The event grew beyond [`MAX_EVENT`]: it is dropped.
    dropped: bool,

    // What the events said.
    /// Tokens of the messages before the current one.
    earlier: Tokens,
    /// The current message.
    current: Counts,
    model: Option<String>,
    billing: Billing,
    /// The last message reached `message_stop` (a Responses stream `response.completed`,
    /// a Chat Completions stream `[DONE]`), and no `error` came after it.
    stopped: bool,
    /// What an OpenAI stream reported.
    openai: OpenAiCounts,
}

impl Default for SseTap {
    fn default() -> SseTap {
        SseTap {
            dialect: Dialect::Anthropic,
            bom_checked: 0,
            after_cr: false,
            partial: Vec::new(),
            keep_line: false,
            skip_line: false,
            name: Name::default(),
            data: Vec::new(),
            has_data: false,
            dropped: false,
            earlier: Tokens::default(),
            current: Counts::default(),
            model: None,
            billing: Billing::default(),
            stopped: false,
            openai: OpenAiCounts::default(),
        }
    }
}

impl SseTap {
    fn feed(&mut self, chunk: &[u8]) {
        let mut rest = self.skip_bom(chunk);
        if rest.is_empty() {
            return;
        }
        if self.after_cr {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(end) = memchr::memchr2(b'\n', b'\r', rest) {
            if self.partial.is_empty() && !self.skip_line {
                self.line(&rest[..end]);
            } else {
                self.carry(&rest[..end]);
                if !self.skip_line {
                    let line = std::mem::take(&mut self.partial);
                    self.line(&line);
                    self.partial = line;
                }
                reuse(&mut self.partial);
                self.keep_line = false;
                self.skip_line = false;
            }
            let mut next = end + 1;
            if rest[end] == b'\r' {
                match rest.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            rest = &rest[next..];
        }
        self.carry(rest);
    }

    /// Skips a byte-order mark at the very start of the stream, even one split across
    /// chunks.
    fn skip_bom<'a>(&mut self, mut chunk: &'a [u8]) -> &'a [u8] {
        while self.bom_checked < BOM.len() {
            match chunk.first() {
                Some(&byte) if byte == BOM[self.bom_checked] => {
                    self.bom_checked += 1;
                    chunk = &chunk[1..];
                }
                Some(_) => self.bom_checked = BOM.len(),
                None => break,
            }
        }
        chunk
    }

    /// Keeps the start of a line whose end is in a later chunk, if the line may matter.
    fn carry(&mut self, mut part: &[u8]) {
        if part.is_empty() || self.skip_line {
            return;
        }
        if !self.keep_line {
            // Only the field name decides: look at no more than its longest useful length
            // and a colon, so that a skipped line is never copied.
            let wanted = "event:".len() - self.partial.len();
            let head = part.len().min(wanted);
            self.partial.extend_from_slice(&part[..head]);
            part = &part[head..];
            match self.line_use() {
                LineUse::Keep => self.keep_line = true,
                LineUse::Undecided => return,
                LineUse::Skip => {
                    self.partial.clear();
                    self.skip_line = true;
                    return;
                }
            }
        }
        if self.partial.starts_with(b"event:") {
            // A name longer than any the tap knows is just another name: keeping its
            // start is enough to tell (and to read the same as a line that came whole).
            let room = EVENT_LINE.saturating_sub(self.partial.len());
            self.partial
                .extend_from_slice(&part[..part.len().min(room)]);
            return;
        }
        self.partial.extend_from_slice(part);
        // The limit `line` applies to a whole line, checked as the line grows.
        if self.partial.len() + self.data.len() > self.max_event() {
            self.drop_event();
            reuse(&mut self.partial);
            self.skip_line = true;
        }
    }

    /// Judges the current line from its first bytes (at most `event:`) in `partial`.
    fn line_use(&mut self) -> LineUse {
        let start = self.partial.as_slice();
        match start.iter().position(|&b| b == b':') {
            Some(colon) => match &start[..colon] {
                b"event" => LineUse::Keep,
                b"data" if self.name.wants_data() && !self.dropped => LineUse::Keep,
                b"data" => {
                    // Unread, but the event still has data and is dispatched.
                    self.has_data = true;
                    LineUse::Skip
                }
                _ => LineUse::Skip,
            },
            // A line may also be a bare field name ("data" is an empty data line).
            None => {
                if b"event".starts_with(start) || b"data".starts_with(start) {
                    LineUse::Undecided
                } else {
                    LineUse::Skip
                }
            }
        }
    }

    fn line(&mut self, line: &[u8]) {
        if line.is_empty() {
            self.dispatch();
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => {
                self.name = Name::of(self.dialect, value);
                if !self.name.wants_data() {
                    self.data.clear();
                }
            }
            b"data" => {
                self.has_data = true;
                if !self.name.wants_data() || self.dropped {
                    return;
                }
                // Counted with the field name, as `carry` counts a line that comes in
                // pieces, so that where chunks end never decides.
                if self.data.len() + line.len() > self.max_event() {
                    self.drop_event();
                    return;
                }
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            // Comments, `id:`, `retry:` and unknown fields.
            _ => {}
        }
    }

    /// The most one event may buffer. A Responses `response.completed` carries the whole
    /// Response, output included, so it is allowed more than Anthropic's small events.
    fn max_event(&self) -> usize {
        match self.dialect {
            Dialect::Responses => MAX_RESPONSE_EVENT,
            Dialect::Anthropic | Dialect::ChatCompletions => MAX_EVENT,
        }
    }

    fn drop_event(&mut self) {
        if !self.dropped {
            tracing::debug!(
                limit = self.max_event(),
                event = ?self.name,
                "usage tap: SSE event too large, dropped"
            );
        }
        self.dropped = true;
        self.data = Vec::new();
    }

    /// A blank line: the event is complete.
    fn dispatch(&mut self) {
        let name = std::mem::take(&mut self.name);
        let has_data = std::mem::take(&mut self.has_data);
        let dropped = std::mem::take(&mut self.dropped);
        let mut data = std::mem::take(&mut self.data);
        if has_data && !dropped {
            let payload = data.strip_suffix(b"\n").unwrap_or(&data);
            self.event(name, payload);
        }
        reuse(&mut data);
        self.data = data;
    }

    fn event(&mut self, name: Name, data: &[u8]) {
        // Most events (content deltas, pings) say nothing the tap reads, in any dialect.
        if name == Name::Other {
            return;
        }
        match self.dialect {
            Dialect::Anthropic => self.anthropic_event(name, data),
            Dialect::Responses => self.responses_event(name, data),
            Dialect::ChatCompletions => self.chat_event(name, data),
        }
    }

    /// An event of a Responses stream (docs/protocol.md §7.6).
    fn responses_event(&mut self, name: Name, data: &[u8]) {
        match name {
            Name::ResponseStarted | Name::ResponseCompleted | Name::ResponseEnded => {
                let event = match serde_json::from_slice::<WireResponseEvent>(data) {
                    Ok(event) => event,
                    Err(error) => {
                        tracing::debug!(%error, "usage tap: SSE event data not read");
                        return;
                    }
                };
                if let Some(response) = event.response {
                    self.fold_openai(response);
                }
                self.stopped = name == Name::ResponseCompleted;
            }
            Name::Error => self.stopped = false,
            Name::Unnamed => {
                // A stream without `event:` lines: the data's type names the event.
                if !contains(data, b"\"response.") && !contains(data, b"\"error\"") {
                    return;
                }
                let kind = match serde_json::from_slice::<WireKind>(data) {
                    Ok(WireKind { kind }) => kind,
                    Err(error) => {
                        tracing::debug!(%error, "usage tap: SSE event data not read");
                        return;
                    }
                };
                match Name::of(self.dialect, kind.as_bytes()) {
                    Name::Unnamed => {}
                    name => self.responses_event(name, data),
                }
            }
            _ => {}
        }
    }

    /// A chunk of a Chat Completions stream: the model from the first, the usage from
    /// the one that carries it (`stream_options.include_usage`), complete at `[DONE]`.
    fn chat_event(&mut self, name: Name, data: &[u8]) {
        if name != Name::Unnamed {
            return;
        }
        if data == b"[DONE]" {
            self.stopped = true;
            return;
        }
        if contains(data, b"\"error\"")
            && let Ok(WireChatError { error: Some(_) }) = serde_json::from_slice(data)
        {
            self.stopped = false;
            return;
        }
        // Only the first chunk (for the model) and the usage chunk are parsed: the usage
        // of the others is `null`, and `prompt_tokens` appears only in a real one.
        if self.model.is_some() && !contains(data, b"\"prompt_tokens\"") {
            return;
        }
        match serde_json::from_slice::<WireOpenAiObject>(data) {
            Ok(chunk) => self.fold_openai(chunk),
            Err(error) => tracing::debug!(%error, "usage tap: SSE event data not read"),
        }
    }

    fn fold_openai(&mut self, object: WireOpenAiObject) {
        latest(&mut self.model, object.model);
        latest(&mut self.billing.service_tier, object.service_tier);
        if let Some(usage) = &object.usage {
            self.openai.fold(usage);
        }
    }

    fn anthropic_event(&mut self, name: Name, data: &[u8]) {
        match name {
            Name::MessageStart => self.message_start(parse(data)),
            Name::MessageDelta => self.message_delta(parse(data)),
            Name::MessageStop => self.stopped = true,
            Name::Error => self.stopped = false,
            Name::Other | Name::ResponseStarted | Name::ResponseCompleted | Name::ResponseEnded => {
            }
            Name::Unnamed => {
                // Only the events that matter are parsed; `[DONE]`, pings and content
                // deltas (almost) never contain these.
                if !contains(data, b"\"message_") && !contains(data, b"\"error\"") {
                    return;
                }
                // The type alone first: an error's other fields may have any shape.
                let kind = match serde_json::from_slice::<WireKind>(data) {
                    Ok(WireKind { kind }) => kind,
                    Err(error) => {
                        tracing::debug!(%error, "usage tap: SSE event data not read");
                        return;
                    }
                };
                match Name::of(self.dialect, kind.as_bytes()) {
                    Name::Unnamed => {}
                    name => self.anthropic_event(name, data),
                }
            }
        }
    }

    /// A new message: the previous one's tokens are final. An unreadable `message_start`
    /// still starts a message.
    fn message_start(&mut self, event: Option<WireEvent>) {
        self.earlier = sum(self.earlier, self.current.tokens());
        self.current = Counts::default();
        self.stopped = false;
        let Some(message) = event.and_then(|event| event.message) else {
            return;
        };
        latest(&mut self.model, message.model);
        if let Some(usage) = message.usage {
            self.fold(usage);
        }
    }

    fn message_delta(&mut self, event: Option<WireEvent>) {
        if let Some(usage) = event.and_then(|event| event.usage) {
            self.fold(usage);
        }
    }

    fn fold(&mut self, usage: WireUsage) {
        self.current.fold(&usage);
        fold_billing(&mut self.billing, usage);
    }

    fn usage(&self) -> Usage {
        let tokens = match self.dialect {
            Dialect::Anthropic => sum(self.earlier, self.current.tokens()),
            Dialect::Responses | Dialect::ChatCompletions => self.openai.tokens(),
        };
        Usage {
            model: self.model.clone(),
            tokens,
            billing: self.billing.clone(),
            complete: self.stopped,
        }
    }
}

fn parse(data: &[u8]) -> Option<WireEvent> {
    match serde_json::from_slice(data) {
        Ok(event) => Some(event),
        Err(error) => {
            tracing::debug!(%error, "usage tap: SSE event data not read");
            None
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// Empties a buffer for the next line or event, giving back memory a large one took.
fn reuse(buf: &mut Vec<u8>) {
    buf.clear();
    buf.shrink_to(KEEP_CAPACITY);
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{LONG_CONTEXT, context_window};

    const MESSAGE: &str = include_str!("testdata/message.json");
    const MESSAGE_TOOL_USE: &str = include_str!("testdata/message_tool_use.json");
    const ERROR: &str = include_str!("testdata/error.json");
    const STREAM_TEXT: &str = include_str!("testdata/stream_text.sse");
    const STREAM_THINKING: &str = include_str!("testdata/stream_thinking.sse");
    const STREAM_TOOL_USE: &str = include_str!("testdata/stream_tool_use.sse");
    const STREAM_CACHE_SPLIT: &str = include_str!("testdata/stream_cache_split.sse");
    const STREAM_CACHE_OLD: &str = include_str!("testdata/stream_cache_old.sse");
    const STREAM_CACHE_READ: &str = include_str!("testdata/stream_cache_read.sse");
    const STREAM_WEB_SEARCH: &str = include_str!("testdata/stream_web_search.sse");
    const STREAM_LONG_CONTEXT: &str = include_str!("testdata/stream_long_context.sse");
    const STREAM_FAST_GEO: &str = include_str!("testdata/stream_fast_geo.sse");
    const STREAM_TWO_MESSAGES: &str = include_str!("testdata/stream_two_messages.sse");
    const STREAM_CUT: &str = include_str!("testdata/stream_cut.sse");
    const STREAM_ERROR: &str = include_str!("testdata/stream_error.sse");
    const STREAM_DATA_ONLY: &str = include_str!("testdata/stream_data_only.sse");
    const STREAM_DELTA_ZERO: &str = include_str!("testdata/stream_delta_zero.sse");

    const JSON_FIXTURES: &[&str] = &[MESSAGE, MESSAGE_TOOL_USE, ERROR];
    const SSE_FIXTURES: &[&str] = &[
        STREAM_TEXT,
        STREAM_THINKING,
        STREAM_TOOL_USE,
        STREAM_CACHE_SPLIT,
        STREAM_CACHE_OLD,
        STREAM_CACHE_READ,
        STREAM_WEB_SEARCH,
        STREAM_LONG_CONTEXT,
        STREAM_FAST_GEO,
        STREAM_TWO_MESSAGES,
        STREAM_CUT,
        STREAM_ERROR,
        STREAM_DATA_ONLY,
        STREAM_DELTA_ZERO,
    ];

    /// Feeds the chunks to a new tap; also checks that no SSE event ever buffers more
    /// than the limit.
    fn feed_all<'a>(kind: BodyKind, chunks: impl IntoIterator<Item = &'a [u8]>) -> Usage {
        let mut tap = UsageTap::new(kind);
        for chunk in chunks {
            tap.feed(&Bytes::copy_from_slice(chunk));
            assert!(buffered(&tap) <= MAX_EVENT, "SSE buffers over the limit");
        }
        tap.usage()
    }

    /// Bytes an SSE tap holds for the current line and event.
    fn buffered(tap: &UsageTap) -> usize {
        match &tap.body {
            Body::Sse(sse) => sse.partial.len() + sse.data.len(),
            _ => 0,
        }
    }

    /// The usage of a body fed whole, after checking that feeding it one byte at a time
    /// gives the same.
    fn read(kind: BodyKind, body: &[u8]) -> Usage {
        let whole = feed_all(kind, [body]);
        assert_eq!(feed_all(kind, body.chunks(1)), whole, "fed byte by byte");
        whole
    }

    fn sse(body: &str) -> Usage {
        read(BodyKind::Sse, body.as_bytes())
    }

    fn json(body: &str) -> Usage {
        read(BodyKind::Json, body.as_bytes())
    }

    /// A whole response on the standard service tier.
    fn standard(model: &str, tokens: Tokens) -> Usage {
        Usage {
            model: Some(model.into()),
            tokens,
            billing: Billing {
                service_tier: Some("standard".into()),
                ..Billing::default()
            },
            complete: true,
        }
    }

    /// A small deterministic generator (xorshift64), for chunk sizes and garbage.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Cuts a body into chunks of random sizes from 1 to `max`.
    fn random_chunks<'a>(rng: &mut Rng, body: &'a [u8], max: usize) -> Vec<&'a [u8]> {
        let mut chunks = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at((1 + rng.below(max)).min(rest.len()));
            chunks.push(chunk);
            rest = tail;
        }
        chunks
    }

    #[test]
    fn body_kind_from_content_type() {
        assert_eq!(BodyKind::of(Some("text/event-stream")), BodyKind::Sse);
        assert_eq!(
            BodyKind::of(Some("text/event-stream; charset=utf-8")),
            BodyKind::Sse
        );
        assert_eq!(BodyKind::of(Some("application/json")), BodyKind::Json);
        assert_eq!(
            BodyKind::of(Some("Application/JSON ; charset=UTF-8")),
            BodyKind::Json
        );
        assert_eq!(BodyKind::of(Some("text/plain")), BodyKind::Other);
        assert_eq!(BodyKind::of(Some("application/jsonl")), BodyKind::Other);
        assert_eq!(BodyKind::of(Some("")), BodyKind::Other);
        assert_eq!(BodyKind::of(None), BodyKind::Other);
    }

    #[test]
    fn other_bodies_are_ignored() {
        assert_eq!(
            feed_all(BodyKind::Other, [MESSAGE.as_bytes()]),
            Usage::default()
        );
        assert_eq!(
            feed_all(BodyKind::Other, [STREAM_TEXT.as_bytes()]),
            Usage::default()
        );
    }

    #[test]
    fn message() {
        let tokens = Tokens {
            input: 14,
            output: 33,
            ..Tokens::default()
        };
        assert_eq!(
            json(MESSAGE),
            standard("claude-sonnet-4-5-20250929", tokens)
        );
    }

    #[test]
    fn message_with_tool_use() {
        let tokens = Tokens {
            input: 412,
            output: 96,
            cache_read: 2048,
            ..Tokens::default()
        };
        assert_eq!(
            json(MESSAGE_TOOL_USE),
            standard("claude-opus-4-1-20250805", tokens)
        );
    }

    #[test]
    fn error_body_has_no_usage() {
        let usage = json(ERROR);
        assert_eq!(usage.model, None);
        assert_eq!(usage.tokens, Tokens::default());
        assert_eq!(usage.billing, Billing::default());
        // The error arrived whole.
        assert!(usage.complete);
    }

    #[test]
    fn cut_json_body_reads_nothing() {
        for end in [0, 1, MESSAGE.len() / 2, MESSAGE.len() - 1] {
            assert_eq!(json(&MESSAGE[..end]), Usage::default(), "cut at {end}");
        }
        assert_eq!(json("<html>502 Bad Gateway</html>"), Usage::default());
    }

    #[test]
    fn large_json_body_is_read_across_chunks() {
        let text = "All work and no play makes Jack a dull boy. ".repeat(100_000);
        let body = MESSAGE.replace("The capital of France is Paris.", &text);
        assert!(body.len() > 4 << 20);
        let expected = json(MESSAGE);
        let mut rng = Rng(7);
        let chunks = random_chunks(&mut rng, body.as_bytes(), 64 << 10);
        assert_eq!(feed_all(BodyKind::Json, chunks), expected);
    }

    /// Bytes a JSON tap holds (capacity of everything it keeps).
    fn json_held(tap: &UsageTap) -> usize {
        match &tap.body {
            Body::Json(json) => {
                json.key.capacity()
                    + json.value.capacity()
                    + [&json.kind, &json.model, &json.usage]
                        .iter()
                        .map(|v| v.as_ref().map_or(0, Vec::capacity))
                        .sum::<usize>()
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_huge_json_body_is_read_holding_almost_nothing() {
        let mut tap = UsageTap::new(BodyKind::Json);
        tap.feed(&Bytes::from_static(
            br#"{"model":"claude-sonnet-4-5","content":[{"type":"text","text":""#,
        ));
        // 64 MiB of text, with escapes and quotes, in 1 MiB chunks.
        let filler = Bytes::from(br#"a"b\c{[}] "#.repeat((1 << 20) / 12));
        for _ in 0..64 {
            tap.feed(&filler);
            assert!(json_held(&tap) < 1024, "{}", json_held(&tap));
        }
        tap.feed(&Bytes::from_static(
            br#""}],"usage":{"input_tokens":5,"output_tokens":6}}"#,
        ));
        assert!(json_held(&tap) < 1024);
        let usage = tap.usage();
        assert_eq!(usage.model.as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!((usage.tokens.input, usage.tokens.output), (5, 6));
        assert!(usage.complete);
    }

    #[test]
    fn only_top_level_fields_count() {
        // `usage` and `model` keys inside the content, and their names inside strings,
        // are not the Message's.
        let body = r#"{"type":"message","content":[{"type":"tool_use","name":"x","input":{"model":"fake","usage":{"input_tokens":999,"output_tokens":999}}},{"type":"text","text":""usage":{"input_tokens":777}, "model":"fake""}],"model" : "claude-haiku-4-5" ,"usage":{"input_tokens":3,"output_tokens":4},"stop_reason":null}"#;
        let usage = json(body);
        assert_eq!(usage.model.as_deref(), Some("claude-haiku-4-5"));
        assert_eq!((usage.tokens.input, usage.tokens.output), (3, 4));
        assert!(usage.complete);
        // Keys that start like a wanted one are other keys.
        let usage =
            json(r#"{"model_x":"no","usage_extra":{"input_tokens":9},"usage":{"input_tokens":2}}"#);
        assert_eq!(usage.model, None);
        assert_eq!(usage.tokens.input, 2);
    }

    #[test]
    fn an_oversized_usage_value_is_dropped_not_kept() {
        let huge = format!(
            r#"{{"model":"m","usage":{{"input_tokens":1,"padding":"{}"}}}}"#,
            "x".repeat(MAX_JSON_VALUE)
        );
        let mut tap = UsageTap::new(BodyKind::Json);
        tap.feed(&Bytes::from(huge));
        assert!(json_held(&tap) < MAX_JSON_VALUE);
        let usage = tap.usage();
        assert_eq!(usage.tokens, Tokens::default());
        assert_eq!(usage.model.as_deref(), Some("m"));
    }

    #[test]
    fn not_one_json_object_reads_nothing() {
        for body in [
            "[1,2]",
            r#"{"model":"m"} trailing"#,
            r#"{"model":"m"}{"model":"n"}"#,
            r#"{"model" "m"}"#,
            r#"{"model":"m",]"#,
            r#"{"usage":{"input_tokens":"many"}}"#,
            "",
        ] {
            assert_eq!(json(body), Usage::default(), "{body}");
        }
        assert!(json("{}").complete);
        assert!(json(" {\n\t\"model\" : null } \n").complete);
    }

    #[test]
    fn streaming_text() {
        let tokens = Tokens {
            input: 21,
            output: 58,
            ..Tokens::default()
        };
        assert_eq!(
            sse(STREAM_TEXT),
            standard("claude-haiku-4-5-20251001", tokens)
        );
    }

    #[test]
    fn streaming_thinking() {
        let tokens = Tokens {
            input: 48,
            output: 612,
            ..Tokens::default()
        };
        assert_eq!(
            sse(STREAM_THINKING),
            standard("claude-sonnet-4-5-20250929", tokens)
        );
    }

    #[test]
    fn streaming_tool_use_with_event_text_in_its_input() {
        assert!(STREAM_TOOL_USE.contains(r#"\\\"message_start\\\""#));
        let tokens = Tokens {
            input: 1187,
            output: 143,
            ..Tokens::default()
        };
        assert_eq!(
            sse(STREAM_TOOL_USE),
            standard("claude-opus-4-1-20250805", tokens)
        );
    }

    #[test]
    fn cache_writes_split_by_ttl() {
        let tokens = Tokens {
            input: 4,
            output: 321,
            cache_read: 15_000,
            cache_write_5m: 500,
            cache_write_1h: 2000,
            ..Tokens::default()
        };
        assert_eq!(
            sse(STREAM_CACHE_SPLIT),
            standard("claude-sonnet-4-5-20250929", tokens)
        );
    }

    #[test]
    fn cache_writes_without_split_are_5_minute_ones() {
        let usage = sse(STREAM_CACHE_OLD);
        let tokens = Tokens {
            input: 9,
            output: 77,
            cache_write_5m: 1843,
            ..Tokens::default()
        };
        assert_eq!(
            usage,
            Usage {
                model: Some("claude-3-7-sonnet-20250219".into()),
                tokens,
                billing: Billing::default(),
                complete: true,
            }
        );
    }

    #[test]
    fn cache_split_normalization() {
        let split = |c, a, b| {
            let counts = Counts {
                cache_creation: c,
                cache_5m: a,
                cache_1h: b,
                split: true,
                ..Counts::default()
            };
            let tokens = counts.tokens();
            (tokens.cache_write_5m, tokens.cache_write_1h)
        };
        assert_eq!(split(2500, 500, 2000), (500, 2000));
        // More created than the split says: the rest is 5-minute writes.
        assert_eq!(split(3000, 500, 2000), (1000, 2000));
        // Only the split says anything.
        assert_eq!(split(0, 0, 700), (0, 700));
        assert_eq!(split(0, 300, 700), (300, 700));
        assert_eq!(split(1843, 0, 0), (1843, 0));
        assert_eq!(split(0, u64::MAX, u64::MAX), (0, u64::MAX));
        let unsplit = Counts {
            cache_creation: 1843,
            cache_1h: 5,
            ..Counts::default()
        };
        let tokens = unsplit.tokens();
        assert_eq!((tokens.cache_write_5m, tokens.cache_write_1h), (1843, 0));
    }

    #[test]
    fn cache_reads() {
        let tokens = Tokens {
            input: 6,
            output: 205,
            cache_read: 48_213,
            ..Tokens::default()
        };
        assert_eq!(
            sse(STREAM_CACHE_READ),
            standard("claude-sonnet-4-5-20250929", tokens)
        );
    }

    #[test]
    fn web_search_and_fetch_counts_from_message_delta() {
        // The final delta also carries the input of the tool loop, larger than the start's.
        let tokens = Tokens {
            input: 10_682,
            output: 510,
            web_search_requests: 2,
            web_fetch_requests: 1,
            ..Tokens::default()
        };
        assert_eq!(
            sse(STREAM_WEB_SEARCH),
            standard("claude-sonnet-4-5-20250929", tokens)
        );
    }

    #[test]
    fn long_context() {
        let usage = sse(STREAM_LONG_CONTEXT);
        let tokens = Tokens {
            input: 250_000,
            output: 1200,
            ..Tokens::default()
        };
        assert_eq!(usage, standard("claude-sonnet-4-5-20250929", tokens));
        assert_eq!(context_window(&usage.tokens), LONG_CONTEXT);
    }

    #[test]
    fn fast_mode_and_inference_geo() {
        let usage = sse(STREAM_FAST_GEO);
        let tokens = Tokens {
            input: 3200,
            output: 480,
            ..Tokens::default()
        };
        assert_eq!(
            usage,
            Usage {
                model: Some("claude-opus-4-6".into()),
                tokens,
                billing: Billing {
                    speed: Some("fast".into()),
                    service_tier: Some("standard".into()),
                    inference_geo: Some("us".into()),
                },
                complete: true,
            }
        );
        assert!(usage.billing.is_fast());
    }

    #[test]
    fn two_messages_in_one_stream_are_summed() {
        let tokens = Tokens {
            input: 220,
            output: 120,
            cache_read: 1000,
            cache_write_5m: 200,
            ..Tokens::default()
        };
        // The model is the last message's.
        assert_eq!(
            sse(STREAM_TWO_MESSAGES),
            standard("claude-sonnet-4-5-20250929", tokens)
        );
    }

    #[test]
    fn cut_stream_keeps_what_message_start_said() {
        let tokens = Tokens {
            input: 2480,
            output: 1,
            cache_read: 30_120,
            ..Tokens::default()
        };
        let expected = Usage {
            complete: false,
            ..standard("claude-sonnet-4-5-20250929", tokens)
        };
        assert_eq!(sse(STREAM_CUT), expected);
        // Cut anywhere after message_start: the same.
        let start_end = STREAM_CUT.find("\n\n").unwrap() + 2;
        for end in start_end..STREAM_CUT.len() {
            let usage = feed_all(BodyKind::Sse, [&STREAM_CUT.as_bytes()[..end]]);
            assert_eq!(usage, expected, "cut at {end}");
        }
    }

    #[test]
    fn usage_can_be_asked_at_any_time() {
        let mut tap = UsageTap::new(BodyKind::Sse);
        assert_eq!(tap.usage(), Usage::default());
        let (start, rest) = STREAM_TEXT.split_at(STREAM_TEXT.find("\n\n").unwrap() + 2);
        tap.feed(&Bytes::copy_from_slice(start.as_bytes()));
        let early = tap.usage();
        assert_eq!((early.tokens.input, early.tokens.output), (21, 1));
        assert!(!early.complete);
        tap.feed(&Bytes::copy_from_slice(rest.as_bytes()));
        assert_eq!(tap.usage(), sse(STREAM_TEXT));
        assert_eq!(tap.usage(), sse(STREAM_TEXT));
    }

    #[test]
    fn error_event_ends_incomplete() {
        let tokens = Tokens {
            input: 873,
            output: 1,
            ..Tokens::default()
        };
        let expected = Usage {
            complete: false,
            ..standard("claude-opus-4-1-20250805", tokens)
        };
        assert_eq!(sse(STREAM_ERROR), expected);
        // An error after message_stop still marks the stream broken, tokens kept.
        let error = &STREAM_ERROR[STREAM_ERROR.find("event: error").unwrap()..];
        let usage = sse(&format!("{STREAM_TEXT}{error}"));
        assert_eq!(usage.tokens, sse(STREAM_TEXT).tokens);
        assert!(!usage.complete);
    }

    #[test]
    fn data_only_stream() {
        assert!(!STREAM_DATA_ONLY.contains("event:"));
        let tokens = Tokens {
            input: 310,
            output: 95,
            ..Tokens::default()
        };
        assert_eq!(
            sse(STREAM_DATA_ONLY),
            standard("claude-sonnet-4-5-20250929", tokens)
        );
    }

    #[test]
    fn zero_or_null_in_message_delta_erases_nothing() {
        let tokens = Tokens {
            input: 1500,
            output: 42,
            cache_read: 20_000,
            cache_write_5m: 300,
            ..Tokens::default()
        };
        let usage = sse(STREAM_DELTA_ZERO);
        assert_eq!(usage.tokens, tokens);
        assert!(usage.complete);
    }

    #[test]
    fn every_line_ending_reads_the_same() {
        for fixture in SSE_FIXTURES {
            let expected = sse(fixture);
            assert_eq!(sse(&fixture.replace('\n', "\r\n")), expected, "CRLF");
            assert_eq!(sse(&fixture.replace('\n', "\r")), expected, "CR");
        }
    }

    #[test]
    fn streams_without_event_lines_read_the_same() {
        for fixture in SSE_FIXTURES {
            let data_only: String = fixture
                .split_inclusive('\n')
                .filter(|line| !line.starts_with("event:"))
                .collect();
            assert_eq!(sse(&data_only), sse(fixture));
        }
    }

    #[test]
    fn every_split_point_reads_the_same() {
        let crlf = STREAM_TEXT.replace('\n', "\r\n");
        let cases = [
            (BodyKind::Sse, STREAM_TEXT),
            (BodyKind::Sse, STREAM_TOOL_USE),
            (BodyKind::Sse, crlf.as_str()),
            (BodyKind::Json, MESSAGE),
        ];
        for (kind, body) in cases {
            let body = body.as_bytes();
            let expected = feed_all(kind, [body]);
            assert!(expected.complete);
            for at in 0..=body.len() {
                let (head, tail) = body.split_at(at);
                assert_eq!(feed_all(kind, [head, tail]), expected, "split at {at}");
            }
        }
    }

    #[test]
    fn random_chunkings_read_the_same() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for (kind, fixtures) in [
            (BodyKind::Sse, SSE_FIXTURES),
            (BodyKind::Json, JSON_FIXTURES),
        ] {
            for fixture in fixtures {
                let expected = feed_all(kind, [fixture.as_bytes()]);
                for max in [2, 3, 7, 64, 300] {
                    let chunks = random_chunks(&mut rng, fixture.as_bytes(), max);
                    assert_eq!(feed_all(kind, chunks), expected);
                }
            }
        }
    }

    #[test]
    fn sse_details_of_the_spec() {
        // Events named `message` are unnamed ones.
        let named_message = STREAM_DATA_ONLY.replace("data: ", "event: message\ndata: ");
        assert_eq!(sse(&named_message), sse(STREAM_DATA_ONLY));
        // Comments, id/retry fields, "data:" without a space, a leading byte-order mark and
        // a message_start whose JSON spans two data lines.
        let start = STREAM_TEXT.lines().nth(1).unwrap();
        let (first, second) = start.split_at(start.find(",\"role\"").unwrap());
        let body = STREAM_TEXT.replacen(start, &format!("{first}\ndata:{second}"), 1);
        let body = format!("\u{FEFF}: keep-alive\nretry: 3000\nid: 1\n\n{body}");
        assert_eq!(sse(&body), sse(STREAM_TEXT));
        // An event without data lines is not dispatched.
        let body = STREAM_TEXT.replace(
            "event: message_stop\ndata: {\"type\":\"message_stop\"}",
            "event: message_stop",
        );
        assert!(!sse(&body).complete);
        // A second byte-order mark is not skipped: it spoils the first line's field name.
        let usage = sse(&format!("\u{FEFF}\u{FEFF}{STREAM_DATA_ONLY}"));
        assert_eq!(usage.model, None);
        assert_eq!(usage.tokens.output, 95);
    }

    /// The first event named `name` in a fixture, with its blank line.
    fn event<'a>(stream: &'a str, name: &str) -> &'a str {
        let start = stream.find(&format!("event: {name}\n")).unwrap();
        let end = start + stream[start..].find("\n\n").unwrap() + 2;
        &stream[start..end]
    }

    /// The same event without its `event:` line.
    fn unnamed(event: &str) -> &str {
        event.split_once('\n').unwrap().1
    }

    #[test]
    fn oversized_events_are_dropped() {
        let huge = "x".repeat(MAX_EVENT);
        // A named message_start too large to keep (its model and speed must not show).
        let named = event(STREAM_FAST_GEO, "message_start").replace(
            r#""content":[]"#,
            &format!(r#""content":[{{"type":"text","text":"{huge}"}}]"#),
        );
        // An unnamed message_delta of one line.
        let one_line = unnamed(event(STREAM_TEXT, "message_delta")).replace(
            r#""stop_sequence":null"#,
            &format!(r#""stop_sequence":"{huge}""#),
        );
        // An unnamed event made of many small data lines.
        let many_lines = "data: 0123456789abcdef0123456789abcdef\n".repeat(MAX_EVENT / 32) + "\n";
        let expected = sse(STREAM_TEXT);
        for big in [&named, &one_line, &many_lines] {
            assert!(big.len() > MAX_EVENT);
            let body = format!("{big}{STREAM_TEXT}");
            assert_eq!(sse(&body), expected);
            let mut rng = Rng(3);
            let chunks = random_chunks(&mut rng, body.as_bytes(), 5000);
            assert_eq!(feed_all(BodyKind::Sse, chunks), expected);
        }
    }

    #[test]
    fn data_of_ignored_events_is_not_buffered() {
        let delta = event(STREAM_TEXT, "content_block_delta");
        let text = "y".repeat(512 << 10);
        let big = delta.replace("Rust's ownership model", &text);
        let body = STREAM_TEXT.replacen(delta, &big, 1);
        let mut tap = UsageTap::new(BodyKind::Sse);
        let mut most = 0;
        for chunk in body.as_bytes().chunks(1000) {
            tap.feed(&Bytes::copy_from_slice(chunk));
            most = most.max(buffered(&tap));
        }
        // Never more than a message_start line.
        assert!(most < 1000, "buffered {most} bytes");
        assert_eq!(tap.usage(), sse(STREAM_TEXT));
    }

    #[test]
    fn huge_counts_saturate() {
        let max = u64::MAX.to_string();
        let start = event(STREAM_CACHE_SPLIT, "message_start")
            .replace(r#""input_tokens":4"#, &format!(r#""input_tokens":{max}"#))
            .replace("2000", &max);
        let usage = sse(&start.repeat(2));
        assert_eq!(usage.tokens.input, u64::MAX);
        assert_eq!(usage.tokens.cache_write_1h, u64::MAX);
        assert_eq!(usage.tokens.cache_write_5m, 0);
    }

    const RESPONSES_STREAM: &str = include_str!("testdata/responses_stream.sse");
    const RESPONSES_INCOMPLETE: &str = include_str!("testdata/responses_incomplete.sse");
    const RESPONSES_JSON: &str = include_str!("testdata/responses.json");
    const CHAT_JSON: &str = include_str!("testdata/chat_completion.json");
    const CHAT_STREAM: &str = include_str!("testdata/chat_stream.sse");
    const OPENAI_ERROR: &str = include_str!("testdata/openai_error.json");

    const OPENAI_FIXTURES: &[(Dialect, BodyKind, &str)] = &[
        (Dialect::Responses, BodyKind::Sse, RESPONSES_STREAM),
        (Dialect::Responses, BodyKind::Sse, RESPONSES_INCOMPLETE),
        (Dialect::Responses, BodyKind::Json, RESPONSES_JSON),
        (Dialect::Responses, BodyKind::Json, OPENAI_ERROR),
        (Dialect::ChatCompletions, BodyKind::Json, CHAT_JSON),
        (Dialect::ChatCompletions, BodyKind::Sse, CHAT_STREAM),
        (Dialect::ChatCompletions, BodyKind::Json, OPENAI_ERROR),
    ];

    /// Feeds an OpenAI body whole and byte by byte (which must agree).
    fn openai(dialect: Dialect, kind: BodyKind, body: &str) -> Usage {
        let feed = |chunks: Vec<&[u8]>| {
            let mut tap = UsageTap::for_dialect(dialect, kind);
            for chunk in chunks {
                tap.feed(&Bytes::copy_from_slice(chunk));
            }
            tap.usage()
        };
        let whole = feed(vec![body.as_bytes()]);
        assert_eq!(feed(body.as_bytes().chunks(1).collect()), whole);
        whole
    }

    fn tier(model: &str, tier: &str, tokens: Tokens, complete: bool) -> Usage {
        Usage {
            model: Some(model.into()),
            tokens,
            billing: Billing {
                service_tier: Some(tier.into()),
                ..Billing::default()
            },
            complete,
        }
    }

    #[test]
    fn responses_stream_reads_response_completed() {
        // 5210 input of which 4096 cached; 812 output of which 640 reasoning.
        let tokens = Tokens {
            input: 1114,
            cache_read: 4096,
            output: 812,
            reasoning: 640,
            ..Tokens::default()
        };
        assert_eq!(
            openai(Dialect::Responses, BodyKind::Sse, RESPONSES_STREAM),
            tier("gpt-5.4", "default", tokens, true)
        );
        // The same stream without `event:` lines.
        let data_only: String = RESPONSES_STREAM
            .split_inclusive('\n')
            .filter(|line| !line.starts_with("event:"))
            .collect();
        assert_eq!(
            openai(Dialect::Responses, BodyKind::Sse, &data_only),
            tier("gpt-5.4", "default", tokens, true)
        );
    }

    #[test]
    fn responses_stream_cut_before_completed_keeps_the_model_only() {
        let end = RESPONSES_STREAM.find("event: response.completed").unwrap();
        let usage = openai(Dialect::Responses, BodyKind::Sse, &RESPONSES_STREAM[..end]);
        assert_eq!(usage.model.as_deref(), Some("gpt-5.4"));
        assert_eq!(usage.billing.service_tier.as_deref(), Some("auto"));
        assert_eq!(usage.tokens, Tokens::default());
        assert!(!usage.complete);
        // An error event after response.completed marks the stream broken.
        let error = "event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\"}\n\n";
        let usage = openai(
            Dialect::Responses,
            BodyKind::Sse,
            &format!("{RESPONSES_STREAM}{error}"),
        );
        assert_eq!(usage.tokens.output, 812);
        assert!(!usage.complete);
    }

    #[test]
    fn responses_incomplete_has_usage_but_is_not_complete() {
        let tokens = Tokens {
            input: 300,
            output: 64,
            reasoning: 64,
            ..Tokens::default()
        };
        assert_eq!(
            openai(Dialect::Responses, BodyKind::Sse, RESPONSES_INCOMPLETE),
            tier("gpt-5.3-codex", "priority", tokens, false)
        );
        let failed = RESPONSES_INCOMPLETE.replace("response.incomplete", "response.failed");
        assert_eq!(
            openai(Dialect::Responses, BodyKind::Sse, &failed),
            tier("gpt-5.3-codex", "priority", tokens, false)
        );
    }

    #[test]
    fn responses_json_reads_the_response_object() {
        let tokens = Tokens {
            input: 200_000,
            cache_read: 100_000,
            output: 2000,
            reasoning: 1500,
            ..Tokens::default()
        };
        assert_eq!(
            openai(Dialect::Responses, BodyKind::Json, RESPONSES_JSON),
            tier("gpt-5.4-2026-03-05", "flex", tokens, true)
        );
    }

    #[test]
    fn a_responses_answer_without_content_type_is_a_stream() {
        assert_eq!(
            BodyKind::for_dialect(Dialect::Responses, None),
            BodyKind::Sse
        );
        assert_eq!(
            BodyKind::for_dialect(Dialect::ChatCompletions, None),
            BodyKind::Other
        );
        assert_eq!(
            BodyKind::for_dialect(Dialect::Anthropic, None),
            BodyKind::Other
        );
        assert_eq!(
            BodyKind::for_dialect(Dialect::Responses, Some("application/json")),
            BodyKind::Json
        );
    }

    #[test]
    fn chat_completion_json() {
        let tokens = Tokens {
            input: 476,
            cache_read: 1024,
            output: 12,
            ..Tokens::default()
        };
        assert_eq!(
            openai(Dialect::ChatCompletions, BodyKind::Json, CHAT_JSON),
            tier("gpt-4.1-mini-2025-04-14", "default", tokens, true)
        );
    }

    #[test]
    fn chat_stream_reads_the_usage_chunk_and_ends_at_done() {
        let tokens = Tokens {
            input: 42,
            output: 230,
            reasoning: 192,
            ..Tokens::default()
        };
        assert_eq!(
            openai(Dialect::ChatCompletions, BodyKind::Sse, CHAT_STREAM),
            tier("o4-mini-2025-04-16", "default", tokens, true)
        );
        // Without include_usage: the model, no tokens, still complete.
        let no_usage: String = CHAT_STREAM
            .split_inclusive("\n\n")
            .filter(|event| !event.contains("\"usage\":{"))
            .collect();
        let usage = openai(Dialect::ChatCompletions, BodyKind::Sse, &no_usage);
        assert_eq!(usage.tokens, Tokens::default());
        assert_eq!(usage.model.as_deref(), Some("o4-mini-2025-04-16"));
        assert!(usage.complete);
        // Cut before [DONE]: the usage is kept, not complete.
        let cut = &CHAT_STREAM[..CHAT_STREAM.find("data: [DONE]").unwrap()];
        let usage = openai(Dialect::ChatCompletions, BodyKind::Sse, cut);
        assert_eq!(usage.tokens, tokens);
        assert!(!usage.complete);
        // An error chunk after the content.
        let error = "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n";
        let usage = openai(
            Dialect::ChatCompletions,
            BodyKind::Sse,
            &format!("{cut}{error}"),
        );
        assert!(!usage.complete);
    }

    #[test]
    fn openai_error_bodies_report_nothing_but_are_whole() {
        for dialect in [Dialect::Responses, Dialect::ChatCompletions] {
            let usage = openai(dialect, BodyKind::Json, OPENAI_ERROR);
            assert_eq!(
                usage,
                Usage {
                    complete: true,
                    ..Usage::default()
                }
            );
            // Cut short: nothing, not complete.
            let cut = &OPENAI_ERROR[..OPENAI_ERROR.len() / 2];
            assert_eq!(openai(dialect, BodyKind::Json, cut), Usage::default());
        }
        // An Anthropic tap ignores OpenAI's fields and keys.
        let usage = json(CHAT_JSON);
        assert_eq!(usage.billing.service_tier, None);
        assert_eq!(usage.tokens.input, 0);
    }

    #[test]
    fn openai_bodies_read_the_same_however_cut() {
        let mut rng = Rng(0x5EED);
        for &(dialect, kind, body) in OPENAI_FIXTURES {
            let bytes = body.as_bytes();
            let expected = openai(dialect, kind, body);
            for at in 0..=bytes.len() {
                let mut tap = UsageTap::for_dialect(dialect, kind);
                let (head, tail) = bytes.split_at(at);
                tap.feed(&Bytes::copy_from_slice(head));
                tap.feed(&Bytes::copy_from_slice(tail));
                assert_eq!(tap.usage(), expected, "split at {at}");
            }
            for max in [2, 7, 64] {
                let mut tap = UsageTap::for_dialect(dialect, kind);
                for chunk in random_chunks(&mut rng, bytes, max) {
                    tap.feed(&Bytes::copy_from_slice(chunk));
                }
                assert_eq!(tap.usage(), expected);
            }
        }
    }

    #[test]
    fn a_large_response_completed_is_read_and_an_oversized_one_dropped() {
        let text = "x".repeat(4 << 20);
        let big = RESPONSES_STREAM.replace(
            r#""text":"Here is \"response.completed\" as text""#,
            &format!(r#""text":"{text}""#),
        );
        assert!(big.len() > MAX_EVENT);
        let usage = openai(Dialect::Responses, BodyKind::Sse, &big);
        assert_eq!(usage.tokens.output, 812);
        assert!(usage.complete);
        let huge = "x".repeat(MAX_RESPONSE_EVENT);
        let too_big = RESPONSES_STREAM.replace(
            r#""text":"Here is \"response.completed\" as text""#,
            &format!(r#""text":"{huge}""#),
        );
        let mut tap = UsageTap::for_dialect(Dialect::Responses, BodyKind::Sse);
        for chunk in too_big.as_bytes().chunks(1 << 20) {
            tap.feed(&Bytes::copy_from_slice(chunk));
            assert!(buffered(&tap) <= MAX_RESPONSE_EVENT);
        }
        let usage = tap.usage();
        assert_eq!(usage.tokens, Tokens::default());
        assert!(!usage.complete);
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(42);
        // Bytes that mean something to the parsers, and some that do not.
        let alphabet = b"\r\n\n:: data event message_start\"{}[]0123456789\xEF\xBB\xBF\xFF\x00";
        for round in 0..300 {
            let len = rng.below(2000);
            let mut body: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            if round % 3 == 0 {
                // A fixture with a few bytes overwritten.
                let fixture = SSE_FIXTURES[rng.below(SSE_FIXTURES.len())].as_bytes();
                body = fixture.to_vec();
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(body.len());
                    body[at] = alphabet[rng.below(alphabet.len())];
                }
            }
            for kind in [BodyKind::Sse, BodyKind::Json] {
                let mut tap = UsageTap::new(kind);
                for chunk in random_chunks(&mut rng, &body, 50) {
                    tap.feed(&Bytes::copy_from_slice(chunk));
                    if rng.below(10) == 0 {
                        tap.usage();
                    }
                }
                tap.usage();
            }
        }
    }
}
