//! Chat Completions ⇄ Anthropic Messages (Claude models; docs/protocol.md §13).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::chat::{
    self, AssistantMessage, ChatCompletion, ChatError, ChatUsage, ChunkWriter, FunctionOut, Part,
    PromptDetails, Reply, Role, ToolCallOut, Translated,
};
use super::sse::{SseEvent, SseParser};
use super::upstream_error;

/// `max_tokens` when the client gives none: Anthropic requires it. 4096 is the largest
/// output every Claude model accepts (Claude 3 Haiku's limit) and LiteLLM's default for
/// the same translation.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// What the Messages translation needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessagesOptions {
    /// `max_tokens` when the client sends neither `max_tokens` nor
    /// `max_completion_tokens`.
    pub default_max_tokens: u64,
}

impl Default for MessagesOptions {
    fn default() -> Self {
        MessagesOptions {
            default_max_tokens: DEFAULT_MAX_TOKENS,
        }
    }
}

const TARGET: &str = "Anthropic Messages";

/// One turn being built; consecutive turns of one role are merged (Anthropic requires
/// alternating user and assistant turns).
fn push_blocks(
    turns: &mut Vec<(&'static str, Vec<Value>)>,
    role: &'static str,
    blocks: Vec<Value>,
) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((last, content)) if *last == role => content.extend(blocks),
        _ => turns.push((role, blocks)),
    }
}

fn text_block(text: String) -> Option<Value> {
    // Anthropic refuses empty text blocks.
    (!text.is_empty()).then(|| json!({"type": "text", "text": text}))
}

/// `data:<media type>;base64,<data>` → (media type, data).
fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (head, data) = rest.split_once(',')?;
    let media = head.strip_suffix(";base64")?;
    Some((media, data))
}

/// A Chat Completions request body → an Anthropic Messages request body.
///
/// - system and developer messages → `system` text blocks, in order (Anthropic has no
///   system turn);
/// - user and assistant turns in order, consecutive turns of one role merged; empty text
///   dropped (Anthropic refuses empty text blocks);
/// - images: a `data:` URL → a `base64` source, an `http(s)` URL → a `url` source;
///   a `file` part with a `data:` URL → a `document` block;
/// - assistant `tool_calls` → `tool_use` blocks, the arguments parsed (invalid JSON or not
///   an object: a 400 naming `messages.[i].tool_calls.[j].function.arguments`);
/// - `tool` messages → `tool_result` blocks in a user turn;
/// - tools → `{name, description, input_schema}`; `tool_choice` auto → auto, none →
///   none, required → any, a named function → `{type: tool, name}`;
///   `parallel_tool_calls: false` → `disable_parallel_tool_use: true`;
/// - `stop` → `stop_sequences`; `max_completion_tokens` (else `max_tokens`, else
///   [`MessagesOptions::default_max_tokens`]) → `max_tokens`; `temperature`, `top_p`,
///   `stream` as is; `user` → `metadata.user_id`.
///
/// `prompt_cache_key`, `prompt_cache_retention` and `safety_identifier` are hints with no
/// Anthropic counterpart and are not forwarded. Refused with a 400 naming the param:
/// everything [`super::chat_to_responses`] refuses except `stop`, and also
/// `reasoning_effort`, `response_format` other than text, `verbosity`, non-empty
/// `metadata`, `store: true`, `service_tier`.
pub fn chat_to_messages(body: &[u8], options: &MessagesOptions) -> Result<Translated, ChatError> {
    let request = chat::parse(body)?;
    request.refuse_rest(TARGET)?;
    if request.reasoning_effort.is_some() {
        return Err(ChatError::unsupported("reasoning_effort", TARGET));
    }
    if let Some(format) = &request.response_format
        && format.get("type").and_then(Value::as_str) != Some("text")
    {
        return Err(ChatError::unsupported("response_format", TARGET));
    }
    if request.verbosity.is_some() {
        return Err(ChatError::unsupported("verbosity", TARGET));
    }
    if request.metadata.as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(ChatError::unsupported("metadata", TARGET));
    }
    if request.store == Some(true) {
        return Err(ChatError::unsupported("store", TARGET));
    }
    if request.service_tier.is_some() {
        return Err(ChatError::unsupported("service_tier", TARGET));
    }

    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
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
                system.extend(text_block(text));
            }
            Role::User => {
                let mut blocks = Vec::new();
                for (j, part) in chat::parts(content, &format!("{at}.content"))?
                    .into_iter()
                    .enumerate()
                {
                    let param = format!("{at}.content.[{j}]");
                    match part {
                        Part::Text(text) => blocks.extend(text_block(text)),
                        Part::Image { url, .. } => blocks.push(image_block(&url, &param)?),
                        Part::File(file) => blocks.push(document_block(&file, &param)?),
                        Part::Refusal(_) => {
                            return Err(ChatError::invalid(
                                format!("{param}.type"),
                                "A refusal part belongs to an assistant message.",
                            ));
                        }
                    }
                }
                push_blocks(&mut turns, "user", blocks);
            }
            Role::Assistant => {
                let mut blocks = Vec::new();
                for (j, part) in chat::parts(content, &format!("{at}.content"))?
                    .into_iter()
                    .enumerate()
                {
                    match part {
                        Part::Text(text) | Part::Refusal(text) => blocks.extend(text_block(text)),
                        _ => {
                            return Err(ChatError::invalid(
                                format!("{at}.content.[{j}].type"),
                                "An assistant message holds only text and refusal parts.",
                            ));
                        }
                    }
                }
                if let Some(refusal) = &message.refusal {
                    blocks.extend(text_block(refusal.clone()));
                }
                for (j, call) in message.tool_calls.iter().flatten().enumerate() {
                    let param = format!("{at}.tool_calls.[{j}]");
                    if call.kind != "function" {
                        return Err(ChatError::unsupported(format!("{param}.type"), TARGET));
                    }
                    let arguments = call.function.arguments.trim();
                    let input: Value = if arguments.is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(arguments).map_err(|e| {
                            ChatError::invalid(
                                format!("{param}.function.arguments"),
                                format!("The tool call's arguments are not valid JSON: {e}"),
                            )
                        })?
                    };
                    if !input.is_object() {
                        return Err(ChatError::invalid(
                            format!("{param}.function.arguments"),
                            "The tool call's arguments must be a JSON object.",
                        ));
                    }
                    blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.function.name, "input": input}));
                }
                push_blocks(&mut turns, "assistant", blocks);
            }
            Role::Tool => {
                let call_id = message.tool_call_id.as_ref().ok_or_else(|| {
                    ChatError::invalid(
                        format!("{at}.tool_call_id"),
                        "A tool message needs its tool_call_id.",
                    )
                })?;
                let output = chat::text_only(content, &format!("{at}.content"))?;
                push_blocks(
                    &mut turns,
                    "user",
                    vec![json!({"type": "tool_result", "tool_use_id": call_id, "content": output})],
                );
            }
            Role::Function => return Err(ChatError::unsupported(format!("{at}.role"), TARGET)),
        }
    }

    let reply = request.reply();
    let mut body = Map::new();
    body.insert("model".into(), request.model.clone().into());
    body.insert(
        "max_tokens".into(),
        request
            .max_output()
            .unwrap_or(options.default_max_tokens)
            .into(),
    );
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    let messages = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    body.insert("messages".into(), Value::Array(messages));
    if let Some(stop) = &request.stop {
        let sequences = match stop {
            Value::Null => None,
            Value::String(s) => Some(vec![Value::String(s.clone())]),
            Value::Array(list) if list.iter().all(Value::is_string) => Some(list.clone()),
            _ => {
                return Err(ChatError::invalid(
                    "stop",
                    "stop must be a string or a list of strings.",
                ));
            }
        };
        if let Some(sequences) = sequences {
            body.insert("stop_sequences".into(), Value::Array(sequences));
        }
    }
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), t.into());
    }
    if let Some(p) = request.top_p {
        body.insert("top_p".into(), p.into());
    }
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
            item.insert("name".into(), function.name.clone().into());
            if let Some(description) = &function.description {
                item.insert("description".into(), description.clone().into());
            }
            item.insert(
                "input_schema".into(),
                function
                    .parameters
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            );
            out.push(Value::Object(item));
        }
        body.insert("tools".into(), Value::Array(out));
    }
    let mut choice = match &request.tool_choice {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "none" => json!({"type": "none"}),
            "required" => json!({"type": "any"}),
            _ => {
                return Err(ChatError::invalid(
                    "tool_choice",
                    format!("Unknown tool_choice '{s}'."),
                ));
            }
        }),
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("function") => {
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
            Some(json!({"type": "tool", "name": name}))
        }
        Some(_) => return Err(ChatError::unsupported("tool_choice", TARGET)),
    };
    if request.parallel_tool_calls == Some(false)
        && request.tools.as_ref().is_some_and(|t| !t.is_empty())
    {
        let choice = choice.get_or_insert_with(|| json!({"type": "auto"}));
        // `none` takes no such flag: no tool is called at all.
        if choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = true.into();
        }
    }
    if let Some(choice) = choice {
        body.insert("tool_choice".into(), choice);
    }
    if let Some(user) = &request.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    body.insert("stream".into(), reply.stream.into());
    Ok(Translated {
        body: Value::Object(body),
        upstream_stream: reply.stream,
        reply,
    })
}

fn image_block(url: &str, param: &str) -> Result<Value, ChatError> {
    if let Some((media_type, data)) = data_url(url) {
        return Ok(
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}),
        );
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    Err(ChatError::invalid(
        format!("{param}.image_url.url"),
        "An image URL must be an http(s) URL or a base64 data: URL.",
    ))
}

fn document_block(file: &Map<String, Value>, param: &str) -> Result<Value, ChatError> {
    let data = file
        .get("file_data")
        .and_then(Value::as_str)
        .and_then(data_url);
    let Some((media_type, data)) = data else {
        return Err(ChatError::unsupported(format!("{param}.file"), TARGET));
    };
    Ok(
        json!({"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}),
    )
}

// ---------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Vec<Block>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum Block {
    #[serde(rename = "text")]
    Text { text: String },
    #[serde(rename = "tool_use")]
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// Thinking, redacted thinking, server tool blocks: not part of a Chat answer.
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct Usage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl Usage {
    /// Later figures (a `message_delta`'s) replace earlier ones where present.
    fn update(&mut self, later: &Usage) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = later
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = later
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }

    /// Anthropic's `input_tokens` leaves out cache reads and writes (§6.1); Chat's
    /// `prompt_tokens` counts every input token, with the cached ones in
    /// `cached_tokens`.
    fn to_chat(self) -> ChatUsage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let prompt =
            self.input_tokens.unwrap_or(0) + read + self.cache_creation_input_tokens.unwrap_or(0);
        let completion = self.output_tokens.unwrap_or(0);
        ChatUsage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: PromptDetails {
                cached_tokens: read,
            },
            completion_tokens_details: None,
        }
    }
}

/// `stop_reason` → `finish_reason`.
fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn
        _ => "stop",
    }
}

/// An Anthropic Message (the non-streaming answer) → a `chat.completion`: text blocks
/// joined, `tool_use` blocks → `tool_calls` with the input as a JSON string, thinking
/// left out; `stop_reason` end_turn/stop_sequence → `stop`, max_tokens → `length`,
/// tool_use → `tool_calls`, refusal → `content_filter`. `created` is `now` (a Message
/// has no time).
pub fn message_to_chat(
    message: &Value,
    reply: &Reply,
    now: i64,
) -> Result<ChatCompletion, ChatError> {
    let message = Message::deserialize(message)
        .map_err(|e| ChatError::bad_upstream(format!("Unreadable upstream message: {e}")))?;
    let mut content: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in &message.content {
        match block {
            Block::Text { text } => content.get_or_insert_default().push_str(text),
            Block::ToolUse { id, name, input } => tool_calls.push(ToolCallOut {
                id: id.clone(),
                kind: "function",
                function: FunctionOut {
                    name: name.clone(),
                    arguments: input.to_string(),
                },
            }),
            Block::Other => {}
        }
    }
    let reason = finish_reason(message.stop_reason.as_deref());
    Ok(ChatCompletion::new(
        &message.id,
        now,
        message.model.unwrap_or_else(|| reply.model.clone()),
        AssistantMessage {
            role: "assistant",
            content,
            refusal: None,
            tool_calls,
        },
        reason,
        message.usage.map(Usage::to_chat),
    ))
}

/// Anthropic Messages SSE bytes → Chat Completions SSE bytes.
///
/// `message_start` → the role chunk (id `chatcmpl-…` from the message id, its model,
/// its usage); `text_delta` → content; a `tool_use` block's start → a tool call delta
/// with its own index (0, 1, … among the tool calls), id and name; its
/// `input_json_delta`s → the arguments; `message_delta` → the finish chunk from its
/// `stop_reason` (and the final usage); `message_stop` → the usage chunk when asked,
/// `[DONE]`; an `error` event → a stream error and `[DONE]`. Thinking and `ping` are
/// left out.
pub struct MessagesToChat {
    parser: SseParser,
    writer: ChunkWriter,
    /// (content block index, tool call index) of each tool_use block.
    tools: Vec<(u64, u32)>,
    usage: Usage,
    final_usage: Option<ChatUsage>,
}

impl MessagesToChat {
    /// `now` (Unix seconds) is every chunk's `created`.
    pub fn new(reply: &Reply, now: i64) -> Self {
        let mut writer = ChunkWriter::new(reply, now);
        writer.id = "chatcmpl-carpool".into();
        MessagesToChat {
            parser: SseParser::default(),
            writer,
            tools: Vec::new(),
            usage: Usage::default(),
            final_usage: None,
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

    /// The upstream stream ended: if `message_stop` never came, a stream error and
    /// `[DONE]`.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.writer.ended {
            let error = ChatError::bad_upstream(
                "The upstream stream ended before the message was complete.",
            );
            self.writer.error(&mut out, &error);
        }
        out
    }

    /// `[DONE]` was written: the rest of the upstream stream does not matter.
    pub fn is_done(&self) -> bool {
        self.writer.ended
    }

    /// The usage of a finished message.
    pub fn usage(&self) -> Option<&ChatUsage> {
        self.final_usage.as_ref()
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
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(&event.event);
        match kind {
            "message_start" => {
                let message = data.get("message");
                let field = |k: &str| message.and_then(|m| m.get(k));
                if let Some(id) = field("id").and_then(Value::as_str) {
                    self.writer.id = chat::chat_id(id);
                }
                if let Some(model) = field("model").and_then(Value::as_str) {
                    self.writer.model = model.to_owned();
                }
                if let Some(Ok(usage)) = field("usage").map(Usage::deserialize) {
                    self.usage.update(&usage);
                }
                self.writer.role(out);
            }
            "content_block_start" => {
                let block = data.get("content_block");
                let field = |k: &str| block.and_then(|b| b.get(k));
                match field("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let index = self.tools.len() as u32;
                        let block_index = data
                            .get("index")
                            .and_then(Value::as_u64)
                            .unwrap_or(u64::MAX);
                        self.tools.push((block_index, index));
                        let text = |k: &str| field(k).and_then(Value::as_str).unwrap_or("");
                        self.writer.tool_start(out, index, text("id"), text("name"));
                        // The input arrives as input_json_delta; a non-empty one here is whole.
                        if let Some(input @ Value::Object(map)) = field("input")
                            && !map.is_empty()
                        {
                            self.writer.tool_arguments(out, index, &input.to_string());
                        }
                    }
                    Some("text") => {
                        let text = field("text").and_then(Value::as_str).unwrap_or("");
                        self.writer.content(out, text);
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = data.get("delta");
                let field = |k: &str| delta.and_then(|d| d.get(k)).and_then(Value::as_str);
                match field("type") {
                    Some("text_delta") => self.writer.content(out, field("text").unwrap_or("")),
                    Some("input_json_delta") => {
                        let block_index = data.get("index").and_then(Value::as_u64);
                        if let Some(&(_, index)) =
                            self.tools.iter().find(|(b, _)| Some(*b) == block_index)
                        {
                            self.writer.tool_arguments(
                                out,
                                index,
                                field("partial_json").unwrap_or(""),
                            );
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(Ok(usage)) = data.get("usage").map(Usage::deserialize) {
                    self.usage.update(&usage);
                }
                let stop = data
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str);
                if stop.is_some() {
                    self.writer.finish(out, finish_reason(stop));
                }
            }
            "message_stop" => {
                self.writer.finish(out, "stop");
                self.final_usage = Some(self.usage.to_chat());
                self.writer.done(out, self.final_usage.as_ref());
            }
            "error" => {
                let error = upstream_error(500, event.data.as_bytes());
                self.writer.error(out, &error);
            }
            _ => {}
        }
    }
}
