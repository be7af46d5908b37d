//! Table tests on fixtures in the upstreams' wire formats (`fixtures/`): requests,
//! answers, streams fed whole and one byte at a time, errors.

use serde_json::{Value, json};

use super::*;

const NOW: i64 = 1_700_000_000;

fn reply(model: &str, stream: bool, include_usage: bool) -> Reply {
    Reply {
        model: model.into(),
        stream,
        include_usage,
    }
}

fn request(model: &str) -> Vec<u8> {
    include_str!("fixtures/chat_request.json")
        .replace("MODEL", model)
        .into_bytes()
}

/// A Chat SSE output as its `data:` payloads (JSON, or the `[DONE]` marker as a string),
/// checking the framing on the way.
fn events(out: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(out).unwrap();
    assert!(text.ends_with("\n\n"), "{text}");
    text.split_terminator("\n\n")
        .map(|event| {
            let data = event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data line: {event}"));
            assert!(!data.contains('\n'));
            if data == "[DONE]" {
                Value::String(data.into())
            } else {
                serde_json::from_str(data).unwrap()
            }
        })
        .collect()
}

trait Stream {
    fn push(&mut self, input: &[u8]) -> Vec<u8>;
    fn finish(&mut self) -> Vec<u8>;
}
impl Stream for ResponsesToChat {
    fn push(&mut self, input: &[u8]) -> Vec<u8> {
        ResponsesToChat::push(self, input)
    }
    fn finish(&mut self) -> Vec<u8> {
        ResponsesToChat::finish(self)
    }
}
impl Stream for MessagesToChat {
    fn push(&mut self, input: &[u8]) -> Vec<u8> {
        MessagesToChat::push(self, input)
    }
    fn finish(&mut self) -> Vec<u8> {
        MessagesToChat::finish(self)
    }
}

/// Runs a transformer over the input whole, one byte at a time, and with `\r\n` line
/// ends; all three must give the same bytes.
fn run<S: Stream>(new: impl Fn() -> S, input: &str) -> Vec<Value> {
    let mut whole = new();
    let mut out = whole.push(input.as_bytes());
    out.extend(whole.finish());
    let mut bytewise = new();
    let mut out_bytes = Vec::new();
    for byte in input.as_bytes() {
        out_bytes.extend(bytewise.push(std::slice::from_ref(byte)));
    }
    out_bytes.extend(bytewise.finish());
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&out_bytes),
        "byte at a time"
    );
    let crlf = input.replace('\n', "\r\n");
    let mut split = new();
    let mut out_crlf = Vec::new();
    for piece in crlf.as_bytes().chunks(7) {
        out_crlf.extend(split.push(piece));
    }
    out_crlf.extend(split.finish());
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&out_crlf),
        "CRLF in pieces of 7"
    );
    events(&out)
}

fn deltas(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter_map(|e| e.get("choices")?.get(0)?.get("delta"))
        .collect()
}

fn content(events: &[Value]) -> String {
    deltas(events)
        .iter()
        .filter_map(|d| d.get("content")?.as_str())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

#[test]
fn chat_to_responses_maps_every_part() {
    let t = chat_to_responses(&request("gpt-5"), &ResponsesOptions::API).unwrap();
    assert_eq!(t.reply, reply("gpt-5", true, true));
    assert!(t.upstream_stream);
    let want = json!({
        "model": "gpt-5",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are terse."}]},
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Use metric units."}]},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "What is in this picture, and the weather there?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"},
                {"type": "input_image", "image_url": "https://example.com/paris.jpg", "detail": "auto"}
            ]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Paris. Checking."}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": ""},
            {"type": "function_call_output", "call_id": "call_1", "output": "18 C, sunny"},
            {"type": "function_call_output", "call_id": "call_2", "output": "14:05"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Thanks. Summarize."}]}
        ],
        "stream": true,
        "store": false,
        "tools": [
            {"type": "function", "name": "get_weather", "description": "Weather for a city",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
             "strict": false},
            {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}, "strict": true}
        ],
        "tool_choice": "required",
        "parallel_tool_calls": false,
        "max_output_tokens": 500,
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "user-7"
    });
    assert_eq!(t.body, want);
}

#[test]
fn chatgpt_mode_streams_does_not_store_and_drops_limits_and_sampling() {
    let body = br#"{"model":"gpt-5-codex","messages":[{"role":"user","content":"hi"}],
        "max_tokens":10,"temperature":1,"top_p":0.5,"reasoning_effort":"high",
        "response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{"type":"object"},"strict":true}},
        "verbosity":"low","tool_choice":{"type":"function","function":{"name":"f"}},"service_tier":"priority"}"#;
    let t = chat_to_responses(body, &ResponsesOptions::CHATGPT).unwrap();
    assert!(t.upstream_stream && !t.reply.stream);
    let b = &t.body;
    assert_eq!(b["stream"], true);
    assert_eq!(b["store"], false);
    for dropped in ["max_output_tokens", "temperature", "top_p"] {
        assert!(b.get(dropped).is_none(), "{dropped}");
    }
    assert_eq!(b["reasoning"], json!({"effort": "high"}));
    assert_eq!(
        b["text"],
        json!({"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}, "strict": true}, "verbosity": "low"})
    );
    assert_eq!(b["tool_choice"], json!({"type": "function", "name": "f"}));
    assert_eq!(b["service_tier"], "priority");
    // Without ChatGPT's limits the same fields go through, and store stays the client's.
    let api = chat_to_responses(body, &ResponsesOptions::API).unwrap();
    assert_eq!(api.body["stream"], false);
    assert_eq!(api.body["max_output_tokens"], 10);
    let stored = br#"{"model":"m","messages":[],"store":true}"#;
    assert_eq!(
        chat_to_responses(stored, &ResponsesOptions::API)
            .unwrap()
            .body["store"],
        true
    );
    let err = chat_to_responses(stored, &ResponsesOptions::CHATGPT).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("store"));
    let refuse = ResponsesOptions {
        sampling: FieldPolicy::Refuse,
        ..ResponsesOptions::API
    };
    let err = chat_to_responses(body, &refuse).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("temperature"));
}

#[test]
fn what_responses_cannot_express_is_refused_by_name() {
    let cases: &[(&str, &str)] = &[
        (r#""stop":["\n"]"#, "stop"),
        (r#""n":3"#, "n"),
        (r#""logprobs":true"#, "logprobs"),
        (r#""audio":{"voice":"alloy","format":"wav"}"#, "audio"),
        (
            r#""tools":[{"type":"custom","custom":{"name":"x"}}]"#,
            "tools.[0].type",
        ),
        (
            r#""response_format":{"type":"xml"}"#,
            "response_format.type",
        ),
        (r#""tool_choice":{"type":"allowed_tools"}"#, "tool_choice"),
    ];
    for (field, param) in cases {
        let body =
            format!(r#"{{"model":"gpt-5","messages":[{{"role":"user","content":"x"}}],{field}}}"#);
        let err = chat_to_responses(body.as_bytes(), &ResponsesOptions::API).unwrap_err();
        assert_eq!(
            (err.status, err.param.as_deref()),
            (400, Some(*param)),
            "{field}"
        );
        assert_eq!(err.body()["error"]["type"], "invalid_request_error");
    }
    let named = br#"{"model":"gpt-5","messages":[{"role":"user","name":"bob","content":"x"}]}"#;
    let err = chat_to_responses(named, &ResponsesOptions::API).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("messages.[0].name"));
    let named_tool = br#"{"model":"gpt-5","messages":[{"role":"tool","name":"f","tool_call_id":"c","content":"x"}]}"#;
    assert!(chat_to_responses(named_tool, &ResponsesOptions::API).is_ok());
    assert!(chat_to_messages(named_tool, &MessagesOptions::default()).is_ok());
    let err = chat_to_messages(named, &MessagesOptions::default()).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("messages.[0].name"));
    let tool = br#"{"model":"gpt-5","messages":[{"role":"tool","content":"x"}]}"#;
    let err = chat_to_responses(tool, &ResponsesOptions::API).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("messages.[0].tool_call_id"));
    let image = br#"{"model":"gpt-5","messages":[{"role":"assistant","content":[{"type":"image_url","image_url":{"url":"https://x"}}]}]}"#;
    let err = chat_to_responses(image, &ResponsesOptions::API).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("messages.[0].content.[0].type"));
}

#[test]
fn chat_to_messages_maps_every_part() {
    let t = chat_to_messages(&request("claude-sonnet-4-5"), &MessagesOptions::default()).unwrap();
    assert!(t.upstream_stream);
    let want = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 500,
        "system": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Use metric units."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this picture, and the weather there?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/paris.jpg"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Paris. Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}
            ]},
            // Two tool results and the next user message: one user turn.
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18 C, sunny"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "14:05"},
                {"type": "text", "text": "Thanks. Summarize."}
            ]}
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "tools": [
            {"name": "get_weather", "description": "Weather for a city",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "metadata": {"user_id": "user-7"},
        "stream": true
    });
    assert_eq!(t.body, want);
}

#[test]
fn messages_defaults_choices_stops_and_merges() {
    let body = br#"{"model":"claude","messages":[
        {"role":"user","content":"a"},{"role":"user","content":""},{"role":"user","content":"b"},
        {"role":"assistant","content":""},{"role":"assistant","content":"c"}],
        "stop":"END","tool_choice":{"type":"function","function":{"name":"f"}},
        "tools":[{"type":"function","function":{"name":"f"}}],"prompt_cache_key":"k"}"#;
    let t = chat_to_messages(body, &MessagesOptions::default()).unwrap();
    assert_eq!(t.body["max_tokens"], DEFAULT_MAX_TOKENS);
    assert_eq!(t.body["stop_sequences"], json!(["END"]));
    assert_eq!(t.body["tool_choice"], json!({"type": "tool", "name": "f"}));
    assert_eq!(t.body["stream"], false);
    assert!(t.body.get("prompt_cache_key").is_none() && t.body.get("system").is_none());
    assert_eq!(
        t.body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "c"}]}
        ])
    );
    for (choice, want) in [
        ("auto", json!({"type": "auto"})),
        ("none", json!({"type": "none"})),
    ] {
        let body = format!(
            r#"{{"model":"c","messages":[],"tool_choice":"{choice}","stop":["x","y"],"max_tokens":7}}"#
        );
        let t = chat_to_messages(
            body.as_bytes(),
            &MessagesOptions {
                default_max_tokens: 9,
            },
        )
        .unwrap();
        assert_eq!(t.body["tool_choice"], want);
        assert_eq!(t.body["stop_sequences"], json!(["x", "y"]));
        assert_eq!(t.body["max_tokens"], 7);
    }
}

#[test]
fn what_messages_cannot_express_is_refused_by_name() {
    let cases: &[(&str, &str)] = &[
        (r#""n":2"#, "n"),
        (r#""reasoning_effort":"high""#, "reasoning_effort"),
        (
            r#""response_format":{"type":"json_object"}"#,
            "response_format",
        ),
        (r#""logprobs":true"#, "logprobs"),
        (r#""stop":5"#, "stop"),
        (r#""tool_choice":"sometimes""#, "tool_choice"),
        (
            r#""messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{oops"}}]}]"#,
            "messages.[0].tool_calls.[0].function.arguments",
        ),
        (
            r#""messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"[1]"}}]}]"#,
            "messages.[0].tool_calls.[0].function.arguments",
        ),
        (
            r#""messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x/a.png"}}]}]"#,
            "messages.[0].content.[0].image_url.url",
        ),
    ];
    for (field, param) in cases {
        let body = if field.starts_with(r#""messages""#) {
            format!(r#"{{"model":"claude",{field}}}"#)
        } else {
            format!(r#"{{"model":"claude","messages":[{{"role":"user","content":"x"}}],{field}}}"#)
        };
        let err = chat_to_messages(body.as_bytes(), &MessagesOptions::default()).unwrap_err();
        assert_eq!(
            (err.status, err.param.as_deref()),
            (400, Some(*param)),
            "{field}: {err}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Answers, not streamed
// ---------------------------------------------------------------------------------------

#[test]
fn response_to_chat_incomplete_is_length_with_usage() {
    let response: Value =
        serde_json::from_str(include_str!("fixtures/responses_incomplete.json")).unwrap();
    let c = response_to_chat(&response, &reply("gpt-5-mini", false, false), NOW).unwrap();
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        json!({
            "id": "chatcmpl-inc9", "object": "chat.completion", "created": 1765150300, "model": "gpt-5-mini",
            "choices": [{"index": 0, "message": {"role": "assistant",
                "content": "The first three primes are 2, 3,", "refusal": null},
                "logprobs": null, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 16, "total_tokens": 36,
                "prompt_tokens_details": {"cached_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 8}},
            "service_tier": "default"
        })
    );
}

#[test]
fn response_finish_reasons_and_failures() {
    let base = |status: &str, extra: Value| {
        let mut r = json!({"id": "resp_1", "created_at": 5, "model": "gpt-5", "status": status,
            "output": [{"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]}]});
        r.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        r
    };
    let r = reply("gpt-5", false, false);
    let c = response_to_chat(&base("completed", json!({})), &r, NOW).unwrap();
    assert_eq!(c.choices[0].finish_reason, "stop");
    assert_eq!(c.choices[0].message.refusal.as_deref(), Some("No."));
    assert_eq!(c.choices[0].message.content, None);
    assert!(c.usage.is_none());
    let filtered = base(
        "incomplete",
        json!({"incomplete_details": {"reason": "content_filter"}}),
    );
    assert_eq!(
        response_to_chat(&filtered, &r, NOW).unwrap().choices[0].finish_reason,
        "content_filter"
    );
    let failed = base(
        "failed",
        json!({"error": {"code": "server_error", "message": "boom"}}),
    );
    let err = response_to_chat(&failed, &r, NOW).unwrap_err();
    assert_eq!(
        (err.status, err.message.as_str(), err.code.as_deref()),
        (500, "boom", Some("server_error"))
    );
    let err = response_to_chat(&json!({"output": 5}), &r, NOW).unwrap_err();
    assert_eq!(err.status, 502);
}

#[test]
fn aggregated_tool_stream_gives_tool_calls() {
    let mut agg = ResponsesAggregator::new();
    for piece in include_str!("fixtures/responses_tool.sse")
        .as_bytes()
        .chunks(3)
    {
        agg.push(piece);
    }
    assert!(agg.is_done());
    let response = agg.finish().unwrap();
    let c = response_to_chat(&response, &reply("gpt-5", false, false), NOW).unwrap();
    assert_eq!(c.id, "chatcmpl-tool42");
    assert_eq!(c.created, 1765150100);
    assert_eq!(c.choices[0].finish_reason, "tool_calls");
    assert_eq!(c.choices[0].message.content, None);
    let calls = serde_json::to_value(&c.choices[0].message.tool_calls).unwrap();
    assert_eq!(
        calls,
        json!([
            {"id": "call_weather1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_time2", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\":\"CET\"}"}}
        ])
    );
}

#[test]
fn aggregator_fills_an_empty_output_from_the_items_and_reports_failures() {
    // ChatGPT's backend may send response.completed with `output: []`.
    let mut agg = ResponsesAggregator::new();
    agg.push(include_str!("fixtures/responses_text.sse").as_bytes());
    let response = agg.finish().unwrap();
    assert_eq!(response["output"].as_array().unwrap().len(), 2);
    let c = response_to_chat(&response, &reply("x", false, false), NOW).unwrap();
    assert_eq!(
        c.choices[0].message.content.as_deref(),
        Some("Hello, wörld ✓")
    );
    assert_eq!(
        c.usage
            .as_ref()
            .unwrap()
            .prompt_tokens_details
            .cached_tokens,
        1024
    );

    let mut agg = ResponsesAggregator::new();
    agg.push(include_str!("fixtures/responses_failed.sse").as_bytes());
    assert_eq!(
        agg.finish().unwrap_err().message,
        "The model failed to generate a response."
    );
    let mut agg = ResponsesAggregator::new();
    agg.push(include_str!("fixtures/responses_error.sse").as_bytes());
    let err = agg.finish().unwrap_err();
    assert_eq!((err.status, err.kind.as_str()), (429, "rate_limit_error"));
    let mut agg = ResponsesAggregator::new();
    let text = include_str!("fixtures/responses_text.sse");
    agg.push(&text.as_bytes()[..text.find("event: response.completed").unwrap()]);
    assert!(!agg.is_done());
    assert_eq!(agg.finish().unwrap_err().status, 502);
}

#[test]
fn message_to_chat_with_tools_thinking_and_cache() {
    let message: Value =
        serde_json::from_str(include_str!("fixtures/anthropic_tool.json")).unwrap();
    let c = message_to_chat(&message, &reply("claude-sonnet-4-5", false, false), NOW).unwrap();
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        json!({
            "id": "chatcmpl-01Aq9w938a90dw8q", "object": "chat.completion", "created": NOW,
            "model": "claude-sonnet-4-5-20250929",
            "choices": [{"index": 0, "message": {"role": "assistant",
                "content": "I'll check the weather.", "refusal": null,
                "tool_calls": [{"id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"location\":\"San Francisco, CA\",\"unit\":\"celsius\"}"}}]},
                "logprobs": null, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 3595, "completion_tokens": 503, "total_tokens": 4098,
                "prompt_tokens_details": {"cached_tokens": 1500}}
        })
    );
    for (stop, want) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ] {
        let m =
            json!({"id": "msg_1", "content": [{"type": "text", "text": "x"}], "stop_reason": stop});
        assert_eq!(
            message_to_chat(&m, &reply("c", false, false), NOW)
                .unwrap()
                .choices[0]
                .finish_reason,
            want
        );
    }
}

// ---------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------

#[test]
fn responses_text_stream_with_usage_chunk() {
    let r = reply("gpt-5-codex", true, true);
    let out = run(
        || ResponsesToChat::new(&r, NOW),
        include_str!("fixtures/responses_text.sse"),
    );
    let head = json!({"id": "chatcmpl-68a1b2c3d4", "object": "chat.completion.chunk", "created": 1765150000, "model": "gpt-5-codex"});
    let chunk = |delta: Value, finish: Value| {
        let mut c = head.clone();
        c["choices"] =
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
        c
    };
    let mut usage = head.clone();
    usage["choices"] = json!([]);
    usage["usage"] = json!({"prompt_tokens": 1200, "completion_tokens": 85, "total_tokens": 1285,
        "prompt_tokens_details": {"cached_tokens": 1024}, "completion_tokens_details": {"reasoning_tokens": 64}});
    assert_eq!(
        out,
        vec![
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": "Hello"}), Value::Null),
            chunk(json!({"content": ", wörld ✓"}), Value::Null),
            chunk(json!({}), json!("stop")),
            usage,
            json!("[DONE]"),
        ]
    );
}

#[test]
fn responses_tool_stream_without_usage_chunk() {
    let r = reply("gpt-5", true, false);
    let out = run(
        || ResponsesToChat::new(&r, NOW),
        include_str!("fixtures/responses_tool.sse"),
    );
    let calls: Vec<&Value> = deltas(&out)
        .into_iter()
        .filter_map(|d| d.get("tool_calls"))
        .collect();
    assert_eq!(
        calls,
        vec![
            &json!([{"index": 0, "id": "call_weather1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]),
            &json!([{"index": 0, "function": {"arguments": "{\"city\":"}}]),
            &json!([{"index": 0, "function": {"arguments": "\"Paris\"}"}}]),
            &json!([{"index": 1, "id": "call_time2", "type": "function", "function": {"name": "get_time", "arguments": ""}}]),
            // No delta carried get_time's arguments: they come from its output_item.done.
            &json!([{"index": 1, "function": {"arguments": "{\"tz\":\"CET\"}"}}]),
        ]
    );
    let finish = &out[out.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(out.last().unwrap(), "[DONE]");
    assert!(out.iter().all(|e| e.get("usage").is_none()));
}

#[test]
fn responses_failures_end_as_chat_stream_errors() {
    let r = reply("gpt-5", true, true);
    let out = run(
        || ResponsesToChat::new(&r, NOW),
        include_str!("fixtures/responses_failed.sse"),
    );
    assert_eq!(content(&out), "Part");
    assert_eq!(
        out[out.len() - 2],
        json!({"error": {"message": "The model failed to generate a response.", "type": "server_error", "param": null, "code": "server_error"}})
    );
    assert_eq!(out.last().unwrap(), "[DONE]");

    let out = run(
        || ResponsesToChat::new(&r, NOW),
        include_str!("fixtures/responses_error.sse"),
    );
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["error"]["code"], "rate_limit_exceeded");
    assert_eq!(out[0]["error"]["type"], "rate_limit_error");

    // Cut before response.completed: the end is an error, not a short answer.
    let text = include_str!("fixtures/responses_text.sse");
    let cut = &text[..text.find("event: response.completed").unwrap()];
    let out = run(|| ResponsesToChat::new(&r, NOW), cut);
    assert_eq!(content(&out), "Hello, wörld ✓");
    assert_eq!(out[out.len() - 2]["error"]["code"], "bad_upstream_response");
    assert!(out.iter().all(|e| {
        e.pointer("/choices/0/finish_reason")
            .is_none_or(Value::is_null)
    }));

    // Nothing after [DONE].
    let mut s = ResponsesToChat::new(&r, NOW);
    s.push(include_str!("fixtures/responses_error.sse").as_bytes());
    assert!(s.is_done());
    assert!(s.push(text.as_bytes()).is_empty() && s.finish().is_empty());
}

#[test]
fn anthropic_text_stream_with_usage_chunk() {
    let r = reply("claude-sonnet-4-5", true, true);
    let out = run(
        || MessagesToChat::new(&r, NOW),
        include_str!("fixtures/anthropic_text.sse"),
    );
    let head = json!({"id": "chatcmpl-01XFDUDYJgAACzvnptvVoYEL", "object": "chat.completion.chunk",
        "created": NOW, "model": "claude-sonnet-4-5-20250929"});
    let chunk = |delta: Value, finish: Value| {
        let mut c = head.clone();
        c["choices"] =
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
        c
    };
    let mut usage = head.clone();
    usage["choices"] = json!([]);
    usage["usage"] = json!({"prompt_tokens": 2125, "completion_tokens": 15, "total_tokens": 2140,
        "prompt_tokens_details": {"cached_tokens": 2000}});
    assert_eq!(
        out,
        vec![
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": "Hello"}), Value::Null),
            chunk(json!({"content": "!\r\nBye ✓"}), Value::Null),
            chunk(json!({}), json!("stop")),
            usage,
            json!("[DONE]"),
        ]
    );
}

#[test]
fn anthropic_tool_stream_skips_thinking_and_indexes_tools() {
    let r = reply("claude-opus-4-1", true, false);
    let mut stream = MessagesToChat::new(&r, NOW);
    let out = events(&stream.push(include_str!("fixtures/anthropic_tool.sse").as_bytes()));
    assert!(stream.is_done());
    assert_eq!(stream.usage().unwrap().completion_tokens, 89);
    assert_eq!(content(&out), "Checking.");
    let calls: Vec<&Value> = deltas(&out)
        .into_iter()
        .filter_map(|d| d.get("tool_calls"))
        .collect();
    assert_eq!(
        calls,
        vec![
            &json!([{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]),
            &json!([{"index": 0, "function": {"arguments": "{\"location\": \"San Fra"}}]),
            &json!([{"index": 0, "function": {"arguments": "ncisco, CA\"}"}}]),
            &json!([{"index": 1, "id": "toolu_02B", "type": "function", "function": {"name": "get_time", "arguments": ""}}]),
            &json!([{"index": 1, "function": {"arguments": "{}"}}]),
        ]
    );
    assert_eq!(
        out[out.len() - 2]["choices"][0]["finish_reason"],
        "tool_calls"
    );
    assert_eq!(out.last().unwrap(), "[DONE]");
    assert!(!String::from_utf8_lossy(&serde_json::to_vec(&out).unwrap()).contains("user wants"));
}

#[test]
fn anthropic_error_and_cut_streams_end_well_formed() {
    let r = reply("claude", true, true);
    let out = run(
        || MessagesToChat::new(&r, NOW),
        include_str!("fixtures/anthropic_error.sse"),
    );
    assert_eq!(content(&out), "Par");
    assert_eq!(
        out[out.len() - 2],
        json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded"}})
    );
    assert_eq!(out.last().unwrap(), "[DONE]");
    let text = include_str!("fixtures/anthropic_text.sse");
    let cut = &text[..text.find("event: message_stop").unwrap()];
    let out = run(|| MessagesToChat::new(&r, NOW), cut);
    // The finish chunk came with message_delta; the missing message_stop is still an error.
    assert_eq!(out[out.len() - 2]["error"]["code"], "bad_upstream_response");
    assert!(out.iter().all(|e| e.get("usage").is_none()));
}

// ---------------------------------------------------------------------------------------
// Upstream errors
// ---------------------------------------------------------------------------------------

#[test]
fn upstream_errors_in_openai_shape() {
    let anthropic = |kind: &str| {
        format!(
            r#"{{"type":"error","error":{{"type":"{kind}","message":"m"}},"request_id":"req_1"}}"#
        )
    };
    let cases = [
        (
            400,
            anthropic("invalid_request_error"),
            400,
            "invalid_request_error",
            None,
        ),
        (
            401,
            anthropic("authentication_error"),
            401,
            "authentication_error",
            None,
        ),
        (
            403,
            anthropic("permission_error"),
            403,
            "permission_error",
            None,
        ),
        (
            404,
            anthropic("not_found_error"),
            404,
            "not_found_error",
            None,
        ),
        (
            413,
            anthropic("request_too_large"),
            413,
            "invalid_request_error",
            Some("request_too_large"),
        ),
        (
            429,
            anthropic("rate_limit_error"),
            429,
            "rate_limit_error",
            Some("rate_limit_exceeded"),
        ),
        (500, anthropic("api_error"), 500, "server_error", None),
        (
            529,
            anthropic("overloaded_error"),
            503,
            "server_error",
            Some("overloaded"),
        ),
    ];
    for (status, body, want_status, kind, code) in cases {
        let e = upstream_error(status, body.as_bytes());
        assert_eq!(
            (
                e.status,
                e.kind.as_str(),
                e.code.as_deref(),
                e.message.as_str()
            ),
            (want_status, kind, code, "m"),
            "{body}"
        );
        assert_eq!(e.body()["error"]["param"], Value::Null);
    }
    let openai = br#"{"error":{"message":"Unsupported parameter: 'max_output_tokens'","type":"invalid_request_error","param":"max_output_tokens","code":null}}"#;
    let e = upstream_error(400, openai);
    assert_eq!(
        (e.param.as_deref(), e.kind.as_str()),
        (Some("max_output_tokens"), "invalid_request_error")
    );
    let e = upstream_error(400, br#"{"detail":"Unsupported model"}"#);
    assert_eq!((e.status, e.message.as_str()), (400, "Unsupported model"));
    // A body that is not JSON is not echoed.
    let e = upstream_error(502, b"<html>secret-ish gateway page</html>");
    assert_eq!((e.status, e.kind.as_str()), (502, "server_error"));
    assert!(!e.message.contains("html"));
}
