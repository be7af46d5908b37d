//! Properties of the usage tap, on generated bodies and arbitrary bytes.
//!
//! Kept next to the tap (not in `tests/`) because they look at its private state: the
//! bytes it buffers. Each property runs a bounded number of cases so that the whole set
//! takes a few seconds in `cargo test`; `PROPTEST_CASES=100000 cargo test --lib
//! extract::proptests` runs them longer.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

use crate::proptest_cases::cases as config;

/// A small deterministic generator (splitmix64) for layout choices: line endings, where
/// chunks end. Its seed comes from proptest, so a failure is reproduced from the seed.
struct Layout(u64);

impl Layout {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Cuts `body` at random places (sometimes into single bytes, sometimes not at all).
    fn chunks<'a>(&mut self, body: &'a [u8]) -> Vec<&'a [u8]> {
        let max = [1, 2, 7, 64, body.len().max(1)][self.below(5)];
        let mut out = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at((1 + self.below(max)).min(rest.len()));
            out.push(chunk);
            rest = tail;
        }
        out
    }
}

/// Feeds `chunks` to a new tap, asking for the usage now and then, and checking that an
/// SSE tap never buffers more than an event's worth.
fn feed<'a>(kind: BodyKind, chunks: impl IntoIterator<Item = &'a [u8]>) -> Usage {
    let mut tap = UsageTap::new(kind);
    for (i, chunk) in chunks.into_iter().enumerate() {
        tap.feed(&Bytes::copy_from_slice(chunk));
        if let Body::Sse(sse) = &tap.body {
            assert!(sse.partial.len() + sse.data.len() <= MAX_EVENT);
        }
        if i % 5 == 0 {
            tap.usage();
        }
    }
    tap.usage()
}

// ---------------------------------------------------------------------------------------
// Generated messages.

/// One message's usage as the generator reports it in its events.
#[derive(Debug, Clone)]
struct Message {
    model: String,
    input: u64,
    /// The input count `message_delta` repeats (Anthropic sends a larger one after a
    /// server-tool loop); `None`: the delta leaves it out.
    delta_input: Option<u64>,
    output_start: u64,
    output_end: u64,
    cache_read: u64,
    /// `(5m, 1h)` cache writes with a `cache_creation` split; else all 5-minute ones.
    split: Option<(u64, u64)>,
    cache_write: u64,
    web_search: u64,
    tier: Option<String>,
    /// Text of the content block deltas.
    texts: Vec<String>,
    /// The delta repeats `cache_read_input_tokens` as 0 (`Some(false)`) or null.
    delta_zeroes: Option<bool>,
}

fn count() -> impl Strategy<Value = u64> {
    prop_oneof![0..100u64, 0..10_000_000u64, Just(u64::from(u32::MAX))]
}

/// Text a content block may carry: anything, including what looks like an event.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z \n\r:]{0,40}",
        Just(r#"{"type":"message_start","message":{"usage":{"input_tokens":999}}}"#.into()),
        Just("\n\ndata: {\"type\":\"message_delta\"}\n\n".into()),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        "[a-z0-9.-]{1,30}",
        (count(), prop::option::of(count()), count(), count()),
        (
            count(),
            prop::option::of((count(), count())),
            count(),
            0..5u64,
        ),
        prop::option::of(prop_oneof![
            Just("standard"),
            Just("priority"),
            Just("batch")
        ]),
        prop::collection::vec(text(), 0..4),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(
                model,
                (input, delta_input, output_start, output_end),
                (cache_read, split, cache_write, web_search),
                tier,
                texts,
                delta_zeroes,
            )| Message {
                model,
                input,
                delta_input,
                output_start,
                output_end,
                cache_read,
                split,
                cache_write,
                web_search,
                tier: tier.map(str::to_owned),
                texts,
                delta_zeroes,
            },
        )
}

impl Message {
    fn tokens(&self) -> Tokens {
        let (cache_write_5m, cache_write_1h) = self.split.unwrap_or((self.cache_write, 0));
        Tokens {
            input: self.input.max(self.delta_input.unwrap_or(0)),
            output: self.output_start.max(self.output_end),
            cache_read: self.cache_read,
            cache_write_5m,
            cache_write_1h,
            web_search_requests: self.web_search,
            web_fetch_requests: 0,
            reasoning: 0,
        }
    }

    fn start_usage(&self) -> Value {
        let mut usage = json!({
            "input_tokens": self.input,
            "output_tokens": self.output_start,
            "cache_read_input_tokens": self.cache_read,
        });
        match self.split {
            Some((five, hour)) => {
                usage["cache_creation_input_tokens"] = json!(five + hour);
                usage["cache_creation"] = json!({
                    "ephemeral_5m_input_tokens": five,
                    "ephemeral_1h_input_tokens": hour,
                });
            }
            None => usage["cache_creation_input_tokens"] = json!(self.cache_write),
        }
        if let Some(tier) = &self.tier {
            usage["service_tier"] = json!(tier);
        }
        usage
    }

    fn delta_usage(&self) -> Value {
        let mut usage = json!({ "output_tokens": self.output_end });
        if let Some(input) = self.delta_input {
            usage["input_tokens"] = json!(input);
        }
        match self.delta_zeroes {
            Some(true) => usage["cache_read_input_tokens"] = Value::Null,
            Some(false) => usage["cache_read_input_tokens"] = json!(0),
            None => {}
        }
        if self.web_search > 0 {
            usage["server_tool_use"] = json!({ "web_search_requests": self.web_search });
        }
        usage
    }

    /// The message's events as (name, data), in stream order.
    fn events(&self, stop: bool) -> Vec<(&'static str, Value)> {
        let mut events = vec![
            (
                "message_start",
                json!({"type": "message_start", "message": {
                    "id": "msg_01", "type": "message", "role": "assistant", "content": [],
                    "model": self.model, "stop_reason": null, "usage": self.start_usage(),
                }}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "text", "text": ""}}),
            ),
            ("ping", json!({"type": "ping"})),
        ];
        for text in &self.texts {
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": text}}),
            ));
        }
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        events.push((
            "message_delta",
            json!({"type": "message_delta",
                   "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                   "usage": self.delta_usage()}),
        ));
        if stop {
            events.push(("message_stop", json!({"type": "message_stop"})));
        }
        events
    }
}

/// Adds fields the tap does not know, at random depths, to every object of `value`.
fn add_unknown_fields(value: &mut Value, layout: &mut Layout) {
    match value {
        Value::Object(map) => {
            for v in map.values_mut() {
                add_unknown_fields(v, layout);
            }
            if layout.below(2) == 0 {
                let extra = match layout.below(4) {
                    0 => json!(null),
                    1 => json!([1, {"usage": {"input_tokens": 5}}, "message_start"]),
                    2 => json!({"nested": {"deeper": [[[]]], "type": "error"}}),
                    _ => json!(layout.next()),
                };
                map.insert(format!("x_unknown_{}", layout.below(100)), extra);
            }
        }
        Value::Array(items) => {
            for v in items {
                add_unknown_fields(v, layout);
            }
        }
        _ => {}
    }
}

/// What an SSE writer may do: its line ending, named events or not, compact or pretty
/// JSON (pretty JSON spans several `data:` lines), comments and unknown fields.
fn write_sse(events: &[(&str, Value)], layout: &mut Layout) -> Vec<u8> {
    let named = layout.below(3) != 0;
    let mut lines: Vec<String> = Vec::new();
    if layout.below(4) == 0 {
        lines.push(": stream start".into());
        lines.push(String::new());
    }
    for (name, data) in events {
        let mut data = data.clone();
        add_unknown_fields(&mut data, layout);
        if layout.below(5) == 0 {
            lines.push(format!(": comment {}", layout.next()));
        }
        if named {
            lines.push(format!("event: {name}"));
        }
        if layout.below(6) == 0 {
            lines.push(format!("id: {}", layout.next()));
        }
        let text = if layout.below(4) == 0 {
            serde_json::to_string_pretty(&data).unwrap()
        } else {
            data.to_string()
        };
        let space = if layout.below(3) == 0 { "" } else { " " };
        for line in text.split('\n') {
            lines.push(format!("data:{space}{line}"));
        }
        if layout.below(8) == 0 {
            lines.push("retry: 3000".into());
        }
        lines.push(String::new());
    }
    let mut out = Vec::new();
    if layout.below(5) == 0 {
        out.extend_from_slice(BOM);
    }
    let mut after_cr = false;
    for line in lines {
        out.extend_from_slice(line.as_bytes());
        // A blank line after a bare `\r` must not start with `\n`: the two would read as
        // one `\r\n`.
        let ending: &[u8] = match layout.below(3) {
            0 if !(after_cr && line.is_empty()) => b"\n",
            1 => b"\r",
            _ => b"\r\n",
        };
        after_cr = ending == b"\r";
        out.extend_from_slice(ending);
    }
    out
}

/// The usage a stream of these messages reports.
fn expected(messages: &[Message], complete: bool) -> Usage {
    let mut tokens = Tokens::default();
    for m in messages {
        tokens = sum(tokens, m.tokens());
    }
    Usage {
        model: messages.last().map(|m| m.model.clone()),
        tokens,
        billing: Billing {
            service_tier: messages.iter().rev().find_map(|m| m.tier.clone()),
            ..Billing::default()
        },
        complete,
    }
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn generated_streams_report_their_usage_however_cut(
        messages in prop::collection::vec(message(), 1..3),
        stop in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut layout = Layout(seed);
        let last = messages.len() - 1;
        let events: Vec<_> = messages
            .iter()
            .enumerate()
            .flat_map(|(i, m)| m.events(stop || i < last))
            .collect();
        let body = write_sse(&events, &mut layout);
        let want = expected(&messages, stop);
        prop_assert_eq!(&feed(BodyKind::Sse, [body.as_slice()]), &want);
        prop_assert_eq!(&feed(BodyKind::Sse, layout.chunks(&body)), &want);
    }

    #[test]
    fn comments_and_unknown_fields_between_events_change_nothing(
        message in message(),
        junk in prop::collection::vec(
            (prop_oneof![Just(":"), Just(": "), Just("x-unknown:"), Just("id:"), Just("retry:")],
             prop::collection::vec(any::<u8>().prop_filter("not a line end", |b| *b != b'\n' && *b != b'\r'), 0..40)),
            0..8,
        ),
        seed in any::<u64>(),
    ) {
        let mut layout = Layout(seed);
        let clean = write_sse(&message.events(true), &mut Layout(seed));
        // The same stream with junk lines put at random line starts.
        let text = clean.clone();
        let mut with_junk = Vec::new();
        let mut junk = junk.into_iter();
        for (i, line) in text.split_inclusive(|&b| b == b'\n').enumerate() {
            if i > 0 && layout.below(3) == 0
                && let Some((field, bytes)) = junk.next() {
                    with_junk.extend_from_slice(field.as_bytes());
                    with_junk.extend_from_slice(&bytes);
                    with_junk.push(b'\n');
                }
            with_junk.extend_from_slice(line);
        }
        let want = feed(BodyKind::Sse, [clean.as_slice()]);
        prop_assert_eq!(&want, &expected(std::slice::from_ref(&message), true));
        prop_assert_eq!(feed(BodyKind::Sse, layout.chunks(&with_junk)), want);
    }

    #[test]
    fn any_bytes_read_the_same_however_cut(
        body in prop::collection::vec(
            prop_oneof![
                any::<u8>(),
                prop::sample::select(b"\r\n:{}\"data event".to_vec()),
            ],
            0..600,
        ),
        seed in any::<u64>(),
    ) {
        let mut layout = Layout(seed);
        for kind in [BodyKind::Sse, BodyKind::Json] {
            let whole = feed(kind, [body.as_slice()]);
            prop_assert_eq!(feed(kind, layout.chunks(&body)), whole);
        }
    }

    #[test]
    fn garbage_around_valid_events_never_panics(
        message in message(),
        before in prop::collection::vec(any::<u8>(), 0..200),
        after in prop::collection::vec(any::<u8>(), 0..200),
        seed in any::<u64>(),
    ) {
        let mut layout = Layout(seed);
        let mut body = before;
        body.extend(write_sse(&message.events(true), &mut layout));
        body.extend(after);
        let whole = feed(BodyKind::Sse, [body.as_slice()]);
        prop_assert_eq!(feed(BodyKind::Sse, layout.chunks(&body)), whole);
    }

    #[test]
    fn generated_json_bodies_report_their_usage(
        message in message(),
        pretty in any::<bool>(),
        padding in "[ \t\r\n]{0,4}",
        seed in any::<u64>(),
    ) {
        let mut layout = Layout(seed);
        let mut start = message.start_usage();
        // A whole Message reports its final counts once.
        let tokens = message.tokens();
        start["input_tokens"] = json!(tokens.input);
        start["output_tokens"] = json!(tokens.output);
        if message.web_search > 0 {
            start["server_tool_use"] = json!({"web_search_requests": message.web_search});
        }
        let mut body = json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": message.model,
            "content": message.texts.iter().map(|t| json!({"type": "text", "text": t})).collect::<Vec<_>>(),
            "stop_reason": "end_turn", "stop_sequence": null, "usage": start,
        });
        add_unknown_fields(&mut body, &mut layout);
        let text = if pretty { serde_json::to_string_pretty(&body).unwrap() } else { body.to_string() };
        let bytes = format!("{padding}{text}{padding}").into_bytes();
        let want = Usage { complete: true, ..expected(std::slice::from_ref(&message), true) };
        prop_assert_eq!(&feed(BodyKind::Json, [bytes.as_slice()]), &want);
        prop_assert_eq!(&feed(BodyKind::Json, layout.chunks(&bytes)), &want);
    }
}

proptest! {
    // Each case feeds about a megabyte.
    #![proptest_config(config(24))]

    /// An event whose data is about [`MAX_EVENT`] long is kept or dropped the same
    /// whether its line arrives whole or cut.
    #[test]
    fn events_near_the_size_limit_do_not_depend_on_chunking(
        extra in -12i64..12,
        named in any::<bool>(),
        space in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut layout = Layout(seed);
        let start = r#"{"type":"message_start","message":{"model":"m","usage":{"input_tokens":7},"x":""#;
        let end = r#""}}"#;
        let fill = (MAX_EVENT as i64 + extra) as usize - start.len() - end.len();
        let data = format!("{start}{}{end}", "y".repeat(fill));
        let name = if named { "event: message_start\n" } else { "" };
        let space = if space { " " } else { "" };
        let body = format!("{name}data:{space}{data}\n\n").into_bytes();
        let whole = feed(BodyKind::Sse, [body.as_slice()]);
        // Kept exactly when the line, field name included, fits.
        let line = "data:".len() + space.len() + data.len();
        prop_assert_eq!(whole.tokens.input == 7, line <= MAX_EVENT);
        let cut = 1 + layout.below(body.len() - 1);
        let (head, tail) = body.split_at(cut);
        prop_assert_eq!(feed(BodyKind::Sse, [head, tail]), whole, "cut at {}", cut);
    }
}

/// A very long `event:` line (no such event name exists) must not drop the event that
/// its later lines name. When the line arrived in pieces it was counted against the event
/// size limit and dropped the event; whole, it was not.
#[test]
fn a_huge_event_name_line_does_not_depend_on_chunking() {
    let body = format!(
        "event: {}\nevent: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"usage\":{{\"input_tokens\":7}}}}}}\n\n",
        "z".repeat(MAX_EVENT + 10)
    );
    let whole = feed(BodyKind::Sse, [body.as_bytes()]);
    assert_eq!(whole.tokens.input, 7);
    let (head, tail) = body.as_bytes().split_at(100);
    assert_eq!(feed(BodyKind::Sse, [head, tail]), whole);
}

// ---------------------------------------------------------------------------------------
// OpenAI dialects.

/// One OpenAI answer's usage: (input, cached, output, reasoning), cached ≤ input and
/// reasoning ≤ output as OpenAI reports them.
fn openai_counts() -> impl Strategy<Value = (u64, u64, u64, u64)> {
    (count(), count())
        .prop_flat_map(|(input, output)| (Just(input), 0..=input, Just(output), 0..=output))
}

fn openai_tier() -> impl Strategy<Value = Option<String>> {
    prop::option::of(
        prop_oneof![
            Just("default"),
            Just("auto"),
            Just("flex"),
            Just("priority")
        ]
        .prop_map(str::to_owned),
    )
}

/// Feeds `chunks` to a new tap of `dialect`, asking for the usage now and then.
fn feed_dialect<'a>(
    dialect: Dialect,
    kind: BodyKind,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Usage {
    let mut tap = UsageTap::for_dialect(dialect, kind);
    for (i, chunk) in chunks.into_iter().enumerate() {
        tap.feed(&Bytes::copy_from_slice(chunk));
        if i % 5 == 0 {
            tap.usage();
        }
    }
    tap.usage()
}

fn openai_expected(
    model: &str,
    tier: &Option<String>,
    (input, cached, output, reasoning): (u64, u64, u64, u64),
    complete: bool,
) -> Usage {
    Usage {
        model: Some(model.to_owned()),
        tokens: Tokens {
            input: input - cached,
            cache_read: cached,
            output,
            reasoning,
            ..Tokens::default()
        },
        billing: Billing {
            service_tier: tier.clone(),
            ..Billing::default()
        },
        complete,
    }
}

proptest! {
    #![proptest_config(config(96))]

    /// A generated Responses stream reads the same however it is cut and laid out.
    #[test]
    fn generated_responses_streams_report_their_usage_however_cut(
        model in "[a-z0-9.-]{1,30}",
        counts in openai_counts(),
        tier in openai_tier(),
        texts in prop::collection::vec(text(), 0..4),
        completed in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let (input, cached, output, reasoning) = counts;
        let mut response = json!({"id": "resp_1", "status": "in_progress", "model": model, "usage": null});
        let mut events = vec![("response.created", json!({"type": "response.created", "response": response.clone()}))];
        for text in &texts {
            events.push(("response.output_text.delta", json!({"type": "response.output_text.delta", "delta": text})));
        }
        let last = if completed { "response.completed" } else { "response.incomplete" };
        response["usage"] = json!({
            "input_tokens": input,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": reasoning},
        });
        response["output"] = json!([{"type": "message", "content": [{"type": "output_text", "text": texts.concat()}]}]);
        if let Some(tier) = &tier {
            response["service_tier"] = json!(tier);
        }
        events.push((last, json!({"type": last, "response": response})));
        let mut layout = Layout(seed);
        let body = write_sse(&events, &mut layout);
        let expected = openai_expected(&model, &tier, counts, completed);
        prop_assert_eq!(feed_dialect(Dialect::Responses, BodyKind::Sse, [body.as_slice()]), expected.clone());
        prop_assert_eq!(feed_dialect(Dialect::Responses, BodyKind::Sse, layout.chunks(&body)), expected);
    }

    /// A generated Chat Completions stream (with its include_usage chunk) reads the same
    /// however it is cut.
    #[test]
    fn generated_chat_streams_report_their_usage_however_cut(
        model in "[a-z0-9.-]{1,30}",
        counts in openai_counts(),
        tier in openai_tier(),
        texts in prop::collection::vec(text(), 0..4),
        done in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let (input, cached, output, reasoning) = counts;
        let chunk = |delta: Value, usage: Value| {
            let mut chunk = json!({"object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": delta}], "usage": usage});
            if let Some(tier) = &tier {
                chunk["service_tier"] = json!(tier);
            }
            chunk
        };
        // Chat streams never name their events: `event: message` is the same as none.
        let mut events = vec![("message", chunk(json!({"role": "assistant"}), Value::Null))];
        for text in &texts {
            events.push(("message", chunk(json!({"content": text}), Value::Null)));
        }
        events.push(("message", chunk(json!({}), json!({
            "prompt_tokens": input,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens": output,
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }))));
        let mut layout = Layout(seed);
        let mut body = write_sse(&events, &mut layout);
        if done {
            body.extend_from_slice(b"data: [DONE]\n\n");
        }
        let expected = openai_expected(&model, &tier, counts, done);
        prop_assert_eq!(feed_dialect(Dialect::ChatCompletions, BodyKind::Sse, [body.as_slice()]), expected.clone());
        prop_assert_eq!(feed_dialect(Dialect::ChatCompletions, BodyKind::Sse, layout.chunks(&body)), expected);
    }

    /// Arbitrary bytes read the same however cut, in every dialect, and never panic.
    #[test]
    fn openai_taps_read_any_bytes_the_same_however_cut(
        body in prop::collection::vec(any::<u8>(), 0..600),
        seed in any::<u64>(),
    ) {
        for dialect in [Dialect::Responses, Dialect::ChatCompletions] {
            for kind in [BodyKind::Sse, BodyKind::Json] {
                let whole = feed_dialect(dialect, kind, [body.as_slice()]);
                let mut layout = Layout(seed);
                prop_assert_eq!(feed_dialect(dialect, kind, layout.chunks(&body)), whole);
            }
        }
    }
}
