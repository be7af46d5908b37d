//! Chat Completions ⇄ OpenAI Responses (GPT/Codex models; docs/protocol.md §7, §12, §13).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::chat::{
    self, AssistantMessage, ChatCompletion, ChatError, ChatUsage, ChunkWriter, CompletionDetails,
    FunctionOut, Part, PromptDetails, Reply, Role, ToolCallOut, Translated,
};
use super::error_from_responses;
use super::sse::{SseEvent, SseParser};

/// What to do with a Chat field the target does not accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldPolicy {
    /// Translate it.
    Send,
    /// Leave it out: for fields that bound or tune an answer without changing what it
    /// is (a token limit, sampling).
    Drop,
    /// Refuse the request with a 400 naming the field.
    Refuse,
}

/// What the Responses upstream accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsesOptions {
    /// The upstream answers only as an event stream: send `stream: true` even for a
    /// non-streaming client (the caller aggregates with [`ResponsesAggregator`]).
    pub stream_only: bool,
    /// The upstream keeps nothing: send `store: false` and refuse a client's
    /// `store: true`. Otherwise `store` is the client's, `false` by default (Chat
    /// Completions' default; Responses would store by default).
    pub no_store: bool,
    /// `max_tokens` / `max_completion_tokens` → `max_output_tokens`.
    pub max_output_tokens: FieldPolicy,
    /// `temperature` and `top_p`.
    pub sampling: FieldPolicy,
}

impl ResponsesOptions {
    /// `https://api.openai.com/v1/responses` with an API key: everything is sent.
    pub const API: Self = ResponsesOptions {
        stream_only: false,
        no_store: false,
        max_output_tokens: FieldPolicy::Send,
        sampling: FieldPolicy::Send,
    };

    /// ChatGPT's Codex backend (`chatgpt.com/backend-api/codex/responses`, a Codex
    /// login): streams only, `store: false` (what Codex sends, §12 item 11; CRS forces
    /// it, §7.5), and it refuses `max_output_tokens`, `temperature` and `top_p`
    /// (CLIProxyAPI's Codex translator leaves all three out for that reason), so they are
    /// dropped.
    pub const CHATGPT: Self = ResponsesOptions {
        stream_only: true,
        no_store: true,
        max_output_tokens: FieldPolicy::Drop,
        sampling: FieldPolicy::Drop,
    };
}

const TARGET: &str = "the Responses API";

fn apply(
    policy: FieldPolicy,
    field: &str,
    value: Option<Value>,
    body: &mut Map<String, Value>,
    as_name: &str,
) -> Result<(), ChatError> {
    let Some(value) = value else { return Ok(()) };
    match policy {
        FieldPolicy::Send => {
            body.insert(as_name.into(), value);
            Ok(())
        }
        FieldPolicy::Drop => Ok(()),
        FieldPolicy::Refuse => Err(ChatError::unsupported(field, "this upstream")),
    }
}

/// A Chat Completions request body → a Responses request body.
///
/// - system and developer messages → `developer` message items, where they stood (how
///   Codex sends its own prompt: no `instructions`, §12 item 11);
/// - user parts: text → `input_text`, `image_url` → `input_image` (`detail` kept, `auto`
///   when absent), `file` → `input_file`;
/// - assistant text → a `message` item with `output_text` parts (refusals → `refusal`
///   parts); its `tool_calls` → `function_call` items (`call_id`, `name`, `arguments`);
/// - `tool` messages → `function_call_output` items;
/// - function tools flattened to `{type, name, description, parameters, strict}`, with
///   `strict` sent explicitly (`false` when absent: Chat's default holds whatever
///   Responses' own default is); `tool_choice` auto/none/required as is, a named function →
///   `{type: function, name}`; `parallel_tool_calls` as is;
/// - `max_completion_tokens` (else `max_tokens`) → `max_output_tokens`, `temperature`,
///   `top_p` (each per [`ResponsesOptions`]); `reasoning_effort` → `reasoning.effort`;
///   `response_format` → `text.format`; `verbosity` → `text.verbosity`;
/// - `metadata`, `user`, `safety_identifier`, `prompt_cache_key`,
///   `prompt_cache_retention`, `service_tier` as is.
///
/// Refused with a 400 naming the param: `stop`, `n` > 1, `logprobs`, `top_logprobs`,
/// `audio`, `modalities` beyond text, `seed`, penalties, `logit_bias`, `prediction`,
/// `web_search_options`, `functions`/`function_call`, a `name` on a message other than a
/// tool result, audio parts, images outside user messages, non-function tools.
pub fn chat_to_responses(body: &[u8], options: &ResponsesOptions) -> Result<Translated, ChatError> {
    let request = chat::parse(body)?;
    if request.stop.as_ref().is_some_and(|s| !s.is_null()) {
        return Err(ChatError::unsupported("stop", TARGET));
    }
    request.refuse_rest(TARGET)?;

    let mut input = Vec::with_capacity(request.messages.len());
    for (i, message) in request.messages.iter().enumerate() {
        let at = format!("messages.[{i}]");
        // A tool message's `name` repeats its call's (LangChain sends it): nothing is lost.
        if message.name.is_some() && message.role != Role::Tool {
            return Err(ChatError::unsupported(format!("{at}.name"), TARGET));
        }
        let content = message.content.as_ref();
        match message.role {
            Role::System | Role::Developer => {
                let text = chat::text_only(content, &format!("{at}.content"))?;
                input.push(json!({"type": "message", "role": "developer",
                    "content": [{"type": "input_text", "text": text}]}));
            }
            Role::User => {
                let mut parts = Vec::new();
                for (j, part) in chat::parts(content, &format!("{at}.content"))?
                    .into_iter()
                    .enumerate()
                {
                    parts.push(match part {
                        Part::Text(text) => json!({"type": "input_text", "text": text}),
                        Part::Image { url, detail } => json!({"type": "input_image",
                            "image_url": url, "detail": detail.unwrap_or_else(|| "auto".into())}),
                        Part::File(file) => {
                            let mut item = file;
                            item.insert("type".into(), "input_file".into());
                            Value::Object(item)
                        }
                        Part::Refusal(_) => {
                            return Err(ChatError::invalid(
                                format!("{at}.content.[{j}].type"),
                                "A refusal part belongs to an assistant message.",
                            ));
                        }
                    });
                }
                input.push(json!({"type": "message", "role": "user", "content": parts}));
            }
            Role::Assistant => {
                let mut parts = Vec::new();
                for (j, part) in chat::parts(content, &format!("{at}.content"))?
                    .into_iter()
                    .enumerate()
                {
                    parts.push(match part {
                        Part::Text(text) => json!({"type": "output_text", "text": text}),
                        Part::Refusal(refusal) => json!({"type": "refusal", "refusal": refusal}),
                        _ => {
                            return Err(ChatError::invalid(
                                format!("{at}.content.[{j}].type"),
                                "An assistant message holds only text and refusal parts.",
                            ));
                        }
                    });
                }
                if let Some(refusal) = &message.refusal {
                    parts.push(json!({"type": "refusal", "refusal": refusal}));
                }
                if !parts.is_empty() {
                    input.push(json!({"type": "message", "role": "assistant", "content": parts}));
                }
                for (j, call) in message.tool_calls.iter().flatten().enumerate() {
                    if call.kind != "function" {
                        return Err(ChatError::unsupported(
                            format!("{at}.tool_calls.[{j}].type"),
                            TARGET,
                        ));
                    }
                    input.push(json!({"type": "function_call", "call_id": call.id,
                        "name": call.function.name, "arguments": call.function.arguments}));
                }
            }
            Role::Tool => {
                let call_id = message.tool_call_id.as_ref().ok_or_else(|| {
                    ChatError::invalid(
                        format!("{at}.tool_call_id"),
                        "A tool message needs its tool_call_id.",
                    )
                })?;
                let output = chat::text_only(content, &format!("{at}.content"))?;
                input.push(
                    json!({"type": "function_call_output", "call_id": call_id, "output": output}),
                );
            }
            // Refused by refuse_rest.
            Role::Function => return Err(ChatError::unsupported(format!("{at}.role"), TARGET)),
        }
    }

    let reply = request.reply();
    let upstream_stream = reply.stream || options.stream_only;
    let mut body = Map::new();
    body.insert("model".into(), request.model.clone().into());
    body.insert("input".into(), Value::Array(input));
    body.insert("stream".into(), upstream_stream.into());
    if options.no_store && request.store == Some(true) {
        return Err(ChatError::unsupported("store", "this upstream"));
    }
    body.insert(
        "store".into(),
        (request.store.unwrap_or(false) && !options.no_store).into(),
    );

    if let Some(tools) = &request.tools {
        let mut out = Vec::with_capacity(tools.len());
        for (i, tool) in tools.iter().enumerate() {
            let function = match (tool.kind.as_str(), &tool.function) {
                ("function", Some(f)) => f,
                ("function", None) => {
                    return Err(ChatError::invalid(
                        format!("tools.[{i}].function"),
                        "A function tool needs its function.",
                    ));
                }
                _ => return Err(ChatError::unsupported(format!("tools.[{i}].type"), TARGET)),
            };
            let mut item = Map::new();
            item.insert("type".into(), "function".into());
            item.insert("name".into(), function.name.clone().into());
            if let Some(description) = &function.description {
                item.insert("description".into(), description.clone().into());
            }
            item.insert(
                "parameters".into(),
                function
                    .parameters
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            );
            item.insert("strict".into(), function.strict.unwrap_or(false).into());
            out.push(Value::Object(item));
        }
        body.insert("tools".into(), Value::Array(out));
    }
    if let Some(choice) = &request.tool_choice {
        body.insert("tool_choice".into(), tool_choice(choice)?);
    }
    if let Some(parallel) = request.parallel_tool_calls {
        body.insert("parallel_tool_calls".into(), parallel.into());
    }
    apply(
        options.max_output_tokens,
        "max_tokens",
        request.max_output().map(Value::from),
        &mut body,
        "max_output_tokens",
    )?;
    apply(
        options.sampling,
        "temperature",
        request.temperature.map(Value::from),
        &mut body,
        "temperature",
    )?;
    apply(
        options.sampling,
        "top_p",
        request.top_p.map(Value::from),
        &mut body,
        "top_p",
    )?;
    if let Some(effort) = &request.reasoning_effort {
        body.insert("reasoning".into(), json!({"effort": effort}));
    }
    let mut text = Map::new();
    if let Some(format) = &request.response_format {
        text.insert("format".into(), text_format(format)?);
    }
    if let Some(verbosity) = &request.verbosity {
        text.insert("verbosity".into(), verbosity.clone().into());
    }
    if !text.is_empty() {
        body.insert("text".into(), Value::Object(text));
    }
    if let Some(metadata) = &request.metadata {
        body.insert("metadata".into(), Value::Object(metadata.clone()));
    }
    for (name, value) in [
        ("user", &request.user),
        ("safety_identifier", &request.safety_identifier),
        ("prompt_cache_key", &request.prompt_cache_key),
        ("prompt_cache_retention", &request.prompt_cache_retention),
        ("service_tier", &request.service_tier),
    ] {
        if let Some(value) = value {
            body.insert(name.into(), value.clone().into());
        }
    }
    Ok(Translated {
        body: Value::Object(body),
        upstream_stream,
        reply,
    })
}

fn tool_choice(choice: &Value) -> Result<Value, ChatError> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => {
            Ok(choice.clone())
        }
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ChatError::invalid(
                        "tool_choice.function.name",
                        "A named tool choice needs a name.",
                    )
                })?;
            Ok(json!({"type": "function", "name": name}))
        }
        _ => Err(ChatError::unsupported("tool_choice", TARGET)),
    }
}

fn text_format(format: &Value) -> Result<Value, ChatError> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(json!({"type": "text"})),
        Some("json_object") => Ok(json!({"type": "json_object"})),
        Some("json_schema") => {
            let Some(Value::Object(schema)) = format.get("json_schema") else {
                return Err(ChatError::invalid(
                    "response_format.json_schema",
                    "json_schema is missing.",
                ));
            };
            // Responses flattens Chat's `json_schema` object: {type, name, schema, strict, description}.
            let mut out = Map::new();
            out.insert("type".into(), "json_schema".into());
            for key in ["name", "description", "schema", "strict"] {
                if let Some(v) = schema.get(key) {
                    out.insert(key.into(), v.clone());
                }
            }
            Ok(Value::Object(out))
        }
        _ => Err(ChatError::unsupported("response_format.type", TARGET)),
    }
}

// ---------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    id: String,
    #[serde(default)]
    created_at: Option<Value>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    incomplete_details: Option<Incomplete>,
    #[serde(default)]
    output: Vec<Item>,
    #[serde(default)]
    usage: Option<ResponsesUsage>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    service_tier: Option<String>,
}

#[derive(Deserialize)]
struct Incomplete {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum Item {
    #[serde(rename = "message")]
    Message {
        #[serde(default)]
        content: Vec<ContentPart>,
    },
    #[serde(rename = "function_call")]
    FunctionCall {
        call_id: String,
        name: String,
        #[serde(default)]
        arguments: String,
    },
    /// Reasoning, web search calls, …: nothing a Chat answer can carry.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum ContentPart {
    #[serde(rename = "output_text")]
    Text { text: String },
    #[serde(rename = "refusal")]
    Refusal { refusal: String },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct ResponsesUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
    #[serde(default)]
    total_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize)]
struct OutputDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}

impl ResponsesUsage {
    /// §7.6: cached tokens are part of the input, reasoning tokens part of the output, as
    /// in Chat Completions' usage.
    fn to_chat(&self) -> ChatUsage {
        ChatUsage {
            prompt_tokens: self.input_tokens,
            completion_tokens: self.output_tokens,
            total_tokens: self
                .total_tokens
                .unwrap_or(self.input_tokens + self.output_tokens),
            prompt_tokens_details: PromptDetails {
                cached_tokens: self
                    .input_tokens_details
                    .as_ref()
                    .map_or(0, |d| d.cached_tokens),
            },
            completion_tokens_details: Some(CompletionDetails {
                reasoning_tokens: self
                    .output_tokens_details
                    .as_ref()
                    .map_or(0, |d| d.reasoning_tokens),
            }),
        }
    }
}

fn parse_response(value: &Value) -> Result<Response, ChatError> {
    Response::deserialize(value)
        .map_err(|e| ChatError::bad_upstream(format!("Unreadable upstream response: {e}")))
}

fn created(value: Option<&Value>) -> Option<i64> {
    value.and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

/// The finish reason for a finished response, or its failure.
fn finish_reason(response: &Response, tool_calls: bool) -> Result<&'static str, ChatError> {
    match response.status.as_deref() {
        Some("failed") | Some("cancelled") => Err(error_from_responses(response.error.as_ref())),
        Some("incomplete") => Ok(
            match response
                .incomplete_details
                .as_ref()
                .and_then(|d| d.reason.as_deref())
            {
                Some("max_output_tokens") => "length",
                Some("content_filter") => "content_filter",
                _ if tool_calls => "tool_calls",
                _ => "stop",
            },
        ),
        _ if tool_calls => Ok("tool_calls"),
        _ => Ok("stop"),
    }
}

/// A Response object (the non-streaming answer, or [`ResponsesAggregator`]'s result) →
/// a `chat.completion`.
///
/// Text parts join into `content`, refusals into `refusal`, `function_call` items become
/// `tool_calls`; reasoning and other items are left out. `finish_reason`: `completed` →
/// `stop`, or `tool_calls` when there are any; `incomplete` for `max_output_tokens` →
/// `length`, for `content_filter` → `content_filter`. A `failed` response is its error.
/// `created` is the response's `created_at`, else `now`.
pub fn response_to_chat(
    response: &Value,
    reply: &Reply,
    now: i64,
) -> Result<ChatCompletion, ChatError> {
    let response = parse_response(response)?;
    let mut content: Option<String> = None;
    let mut refusal: Option<String> = None;
    let mut tool_calls = Vec::new();
    for item in &response.output {
        match item {
            Item::Message { content: parts } => {
                for part in parts {
                    match part {
                        ContentPart::Text { text } => {
                            content.get_or_insert_default().push_str(text)
                        }
                        ContentPart::Refusal { refusal: r } => {
                            refusal.get_or_insert_default().push_str(r)
                        }
                        ContentPart::Other => {}
                    }
                }
            }
            Item::FunctionCall {
                call_id,
                name,
                arguments,
            } => tool_calls.push(ToolCallOut {
                id: call_id.clone(),
                kind: "function",
                function: FunctionOut {
                    name: name.clone(),
                    arguments: arguments.clone(),
                },
            }),
            Item::Other => {}
        }
    }
    let reason = finish_reason(&response, !tool_calls.is_empty())?;
    let message = AssistantMessage {
        role: "assistant",
        content,
        refusal,
        tool_calls,
    };
    let mut completion = ChatCompletion::new(
        &response.id,
        created(response.created_at.as_ref()).unwrap_or(now),
        response
            .model
            .clone()
            .unwrap_or_else(|| reply.model.clone()),
        message,
        reason,
        response.usage.as_ref().map(ResponsesUsage::to_chat),
    );
    completion.service_tier = response.service_tier;
    Ok(completion)
}

/// The event's own `type` (both upstreams repeat it in the data), else its `event:` name.
fn event_type<'a>(event: &'a SseEvent, data: &'a Value) -> &'a str {
    data.get("type")
        .and_then(Value::as_str)
        .unwrap_or(&event.event)
}

/// A tool call seen in the stream: its output index and item id upstream; its position
/// in the list is its Chat index.
struct StreamTool {
    output_index: Option<u64>,
    item_id: Option<String>,
    arguments_sent: bool,
}

/// Responses SSE bytes → Chat Completions SSE bytes (see the module's use).
///
/// `response.created` → the role chunk (id `chatcmpl-…` from the response id, its
/// `created_at` and model); `response.output_text.delta` → content;
/// `response.refusal.delta` → refusal; `response.output_item.added` of a
/// `function_call` → a tool call delta with its index, `call_id` and name;
/// `response.function_call_arguments.delta` → its arguments (and the `.done` event or
/// the item's `output_item.done` when no delta carried them);
/// `response.completed` / `response.incomplete` → the finish chunk, the usage chunk when
/// asked, `[DONE]`; `response.failed` and `error` → a stream error and `[DONE]`.
pub struct ResponsesToChat {
    parser: SseParser,
    writer: ChunkWriter,
    tools: Vec<StreamTool>,
    usage: Option<ChatUsage>,
}

impl ResponsesToChat {
    /// `now` (Unix seconds) stands in for `created` until the response gives its own.
    pub fn new(reply: &Reply, now: i64) -> Self {
        let mut writer = ChunkWriter::new(reply, now);
        writer.id = "chatcmpl-carpool".into();
        ResponsesToChat {
            parser: SseParser::default(),
            writer,
            tools: Vec::new(),
            usage: None,
        }
    }

    /// Translates a piece of the upstream stream; returns the chunks it completes.
    pub fn push(&mut self, input: &[u8]) -> Vec<u8> {
        let mut events = Vec::new();
        self.parser.push(input, |e| events.push(e));
        let mut out = Vec::new();
        for event in events {
            self.handle(&event, &mut out);
        }
        out
    }

    /// The upstream stream ended: if its last event never came, a stream error and
    /// `[DONE]`.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.writer.ended {
            let error = ChatError::bad_upstream(
                "The upstream stream ended before the response was complete.",
            );
            self.writer.error(&mut out, &error);
        }
        out
    }

    /// `[DONE]` was written: the rest of the upstream stream does not matter.
    pub fn is_done(&self) -> bool {
        self.writer.ended
    }

    /// The usage of a completed response.
    pub fn usage(&self) -> Option<&ChatUsage> {
        self.usage.as_ref()
    }

    fn tool(&mut self, data: &Value) -> Option<(u32, &mut StreamTool)> {
        let index = data.get("output_index").and_then(Value::as_u64);
        let item_id = data.get("item_id").and_then(Value::as_str);
        self.tools
            .iter_mut()
            .enumerate()
            .find(|(_, t)| {
                (index.is_some() && t.output_index == index)
                    || (item_id.is_some() && t.item_id.as_deref() == item_id)
            })
            .map(|(i, t)| (i as u32, t))
    }

    fn handle(&mut self, event: &SseEvent, out: &mut Vec<u8>) {
        if self.writer.ended {
            return;
        }
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
            let error = ChatError::bad_upstream("The upstream sent an event that is not JSON.");
            self.writer.error(out, &error);
            return;
        };
        match event_type(event, &data) {
            "response.created" | "response.in_progress" => {
                if let Some(response) = data.get("response") {
                    if let Some(id) = response.get("id").and_then(Value::as_str) {
                        self.writer.id = chat::chat_id(id);
                    }
                    if let Some(model) = response.get("model").and_then(Value::as_str) {
                        self.writer.model = model.to_owned();
                    }
                    if let Some(created) = created(response.get("created_at")) {
                        self.writer.created = created;
                    }
                }
                self.writer.role(out);
            }
            "response.output_item.added" => {
                let item = data.get("item");
                if item.and_then(|i| i.get("type")).and_then(Value::as_str) != Some("function_call")
                {
                    return;
                }
                let field = |k: &str| {
                    item.and_then(|i| i.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                };
                let index = self.tools.len() as u32;
                self.writer
                    .tool_start(out, index, field("call_id"), field("name"));
                let arguments = field("arguments");
                self.writer.tool_arguments(out, index, arguments);
                self.tools.push(StreamTool {
                    output_index: data.get("output_index").and_then(Value::as_u64),
                    item_id: item
                        .and_then(|i| i.get("id"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    arguments_sent: !arguments.is_empty(),
                });
            }
            "response.function_call_arguments.delta" => {
                let delta = data.get("delta").and_then(Value::as_str).unwrap_or("");
                if let Some((index, tool)) = self.tool(&data) {
                    tool.arguments_sent |= !delta.is_empty();
                    self.writer.tool_arguments(out, index, delta);
                }
            }
            kind @ ("response.function_call_arguments.done" | "response.output_item.done") => {
                let arguments = if kind == "response.output_item.done" {
                    data.get("item").and_then(|i| i.get("arguments"))
                } else {
                    data.get("arguments")
                };
                let arguments = arguments.and_then(Value::as_str).unwrap_or("").to_owned();
                if let Some((index, tool)) = self.tool(&data)
                    && !tool.arguments_sent
                {
                    tool.arguments_sent = !arguments.is_empty();
                    self.writer.tool_arguments(out, index, &arguments);
                }
            }
            "response.output_text.delta" => {
                self.writer
                    .content(out, data.get("delta").and_then(Value::as_str).unwrap_or(""));
            }
            "response.refusal.delta" => {
                self.writer
                    .refusal(out, data.get("delta").and_then(Value::as_str).unwrap_or(""));
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                let response = match data.get("response").map(parse_response) {
                    Some(Ok(response)) => response,
                    Some(Err(error)) => return self.writer.error(out, &error),
                    None => {
                        return self.writer.error(
                            out,
                            &ChatError::bad_upstream("A final event without its response."),
                        );
                    }
                };
                match finish_reason(&response, !self.tools.is_empty()) {
                    Ok(reason) => {
                        self.usage = response.usage.as_ref().map(ResponsesUsage::to_chat);
                        self.writer.finish(out, reason);
                        self.writer.done(out, self.usage.as_ref());
                    }
                    Err(error) => self.writer.error(out, &error),
                }
            }
            "error" => {
                // `{"type":"error","code","message","param"}`, or the same under `error`.
                let error = data.get("error").filter(|e| e.is_object()).unwrap_or(&data);
                self.writer.error(out, &error_from_responses(Some(error)));
            }
            _ => {}
        }
    }
}

/// Responses SSE → the final Response object, for a non-streaming Chat client served
/// by a streaming-only upstream (ChatGPT mode). Keeps the finished output items
/// (`response.output_item.done`): a `response.completed` whose `output` is empty gets
/// them, in their `output_index` order.
#[derive(Default)]
pub struct ResponsesAggregator {
    parser: SseParser,
    items: Vec<(u64, Value)>,
    result: Option<Result<Value, ChatError>>,
}

impl ResponsesAggregator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a piece of the upstream stream.
    pub fn push(&mut self, input: &[u8]) {
        let mut events = Vec::new();
        self.parser.push(input, |e| events.push(e));
        for event in events {
            if self.result.is_some() {
                return;
            }
            self.handle(&event);
        }
    }

    /// The final event came (or a failure): the rest does not matter.
    pub fn is_done(&self) -> bool {
        self.result.is_some()
    }

    /// The Response (from `response.completed` or `response.incomplete`), for
    /// [`response_to_chat`]; a failed response, an `error` event or a stream that ended
    /// before its final event is the error to answer with.
    pub fn finish(self) -> Result<Value, ChatError> {
        self.result.unwrap_or_else(|| {
            Err(ChatError::bad_upstream(
                "The upstream stream ended before the response was complete.",
            ))
        })
    }

    fn handle(&mut self, event: &SseEvent) {
        let Ok(mut data) = serde_json::from_str::<Value>(&event.data) else {
            self.result = Some(Err(ChatError::bad_upstream(
                "The upstream sent an event that is not JSON.",
            )));
            return;
        };
        match event_type(event, &data) {
            "response.output_item.done" => {
                let index = data
                    .get("output_index")
                    .and_then(Value::as_u64)
                    .unwrap_or(self.items.len() as u64);
                if let Some(item) = data.get_mut("item").map(Value::take) {
                    self.items.push((index, item));
                }
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                let Some(mut response) = data.get_mut("response").map(Value::take) else {
                    self.result = Some(Err(ChatError::bad_upstream(
                        "A final event without its response.",
                    )));
                    return;
                };
                if response.get("status").and_then(Value::as_str) == Some("failed") {
                    self.result = Some(Err(error_from_responses(response.get("error"))));
                    return;
                }
                let empty = response
                    .get("output")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty);
                if empty && !self.items.is_empty() {
                    let mut items = std::mem::take(&mut self.items);
                    items.sort_by_key(|(i, _)| *i);
                    response["output"] =
                        Value::Array(items.into_iter().map(|(_, item)| item).collect());
                }
                self.items.clear();
                self.result = Some(Ok(response));
            }
            "error" => {
                let error = data.get("error").filter(|e| e.is_object()).unwrap_or(&data);
                self.result = Some(Err(error_from_responses(Some(error))));
            }
            _ => {}
        }
    }
}
