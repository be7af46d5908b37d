//! OpenAI Chat Completions: the request as clients send it, the answer and stream chunks
//! as they expect them, and the error shape.
//!
//! Only what the translations map is typed; JSON schemas, tool arguments and other opaque
//! parts stay `serde_json::Value` or strings. Fields every target ignores are refused by
//! name (see [`ChatRequest::rest`]).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::sse::{DONE, write_data};

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// An error in OpenAI's shape, `{"error":{"message","type","param","code"}}`, with the
/// HTTP status it goes out with. Made by the translations for a request they cannot
/// express (400 `invalid_request_error`, naming the `param`), and by
/// [`super::upstream_error`] from an upstream's refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatError {
    pub status: u16,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`,
    /// `permission_error`, `not_found_error`, `rate_limit_error`, `server_error`, …
    pub kind: String,
    /// The request field at fault, in OpenAI's notation: `messages.[2].content.[0].type`.
    pub param: Option<String>,
    pub code: Option<String>,
}

impl ChatError {
    /// A 400 `invalid_request_error` about `param`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        ChatError {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error".into(),
            param: Some(param.into()),
            code: None,
        }
    }

    /// A 400 for a field the target protocol cannot express.
    pub fn unsupported(param: impl Into<String>, target: &str) -> Self {
        let param = param.into();
        let mut error = ChatError::invalid(
            param.clone(),
            format!("Unsupported parameter: '{param}' cannot be translated to {target}."),
        );
        error.code = Some("unsupported_parameter".into());
        error
    }

    /// A 502 for an upstream answer this module could not read.
    pub(crate) fn bad_upstream(message: impl Into<String>) -> Self {
        ChatError {
            status: 502,
            message: message.into(),
            kind: "server_error".into(),
            param: None,
            code: Some("bad_upstream_response".into()),
        }
    }

    /// The JSON body: `{"error":{"message","type","param","code"}}`.
    pub fn body(&self) -> Value {
        serde_json::json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl std::fmt::Display for ChatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.kind, self.message)
    }
}

impl std::error::Error for ChatError {}

// ---------------------------------------------------------------------------------------
// The request
// ---------------------------------------------------------------------------------------

/// A Chat Completions request body, as far as the translations read it.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    /// `"auto"`, `"none"`, `"required"` or `{"type":"function","function":{"name"}}`.
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub reasoning_effort: Option<String>,
    #[serde(default)]
    pub response_format: Option<Value>,
    #[serde(default)]
    pub verbosity: Option<String>,
    /// A string or a list of strings.
    #[serde(default)]
    pub stop: Option<Value>,
    #[serde(default)]
    pub store: Option<bool>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub safety_identifier: Option<String>,
    #[serde(default)]
    pub prompt_cache_key: Option<String>,
    #[serde(default)]
    pub prompt_cache_retention: Option<String>,
    #[serde(default)]
    pub service_tier: Option<String>,
    /// Every other field (`n`, `logprobs`, `audio`, `seed`, penalties, …). A translation
    /// refuses each one that is set to something other than its neutral value
    /// ([`ChatRequest::refuse_rest`]): none of them is silently dropped.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// One message. `content` is a string, a list of parts or null; parts are read by
/// [`parts`], which names the part at fault.
#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    #[serde(default)]
    pub content: Option<Value>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
    #[serde(default)]
    pub refusal: Option<String>,
    /// `audio`, `function_call`, …: refused when set.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    /// The deprecated `function` role: refused by name.
    Function,
}

#[derive(Debug, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".into()
}

#[derive(Debug, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// A JSON text, as the model wrote it.
    #[serde(default)]
    pub arguments: String,
}

#[derive(Debug, Deserialize)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub function: Option<FunctionDef>,
}

#[derive(Debug, Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// A JSON schema, passed on as is.
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

/// One content part of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    /// `image_url.url` (an `https:` or `data:` URL) and `image_url.detail`.
    Image {
        url: String,
        detail: Option<String>,
    },
    /// A `file` part's `file` object (`file_id`, `file_data`, `filename`).
    File(Map<String, Value>),
    Refusal(String),
}

/// Reads a message's `content` (`param` names it, e.g. `messages.[3].content`): a
/// string is one text part, null or absent is none.
pub fn parts(content: Option<&Value>, param: &str) -> Result<Vec<Part>, ChatError> {
    let list = match content {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(text)) => return Ok(vec![Part::Text(text.clone())]),
        Some(Value::Array(list)) => list,
        Some(_) => {
            return Err(ChatError::invalid(
                param,
                "content must be a string or a list of parts",
            ));
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, part) in list.iter().enumerate() {
        let at = format!("{param}.[{i}]");
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
        let field = |name: &str| part.get(name);
        out.push(match kind {
            "text" => Part::Text(
                field("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ChatError::invalid(format!("{at}.text"), "text part without text")
                    })?
                    .to_owned(),
            ),
            "image_url" => {
                let image = field("image_url");
                // The old form `image_url: "<url>"` is still accepted by OpenAI.
                let url = image
                    .and_then(|i| i.get("url").or(Some(i)))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ChatError::invalid(format!("{at}.image_url.url"), "image part without url")
                    })?;
                let detail = image.and_then(|i| i.get("detail")).and_then(Value::as_str);
                Part::Image {
                    url: url.to_owned(),
                    detail: detail.map(str::to_owned),
                }
            }
            "file" => match field("file") {
                Some(Value::Object(file)) => Part::File(file.clone()),
                _ => {
                    return Err(ChatError::invalid(
                        format!("{at}.file"),
                        "file part without file",
                    ));
                }
            },
            "refusal" => Part::Refusal(
                field("refusal")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            ),
            _ => {
                return Err(ChatError::invalid(
                    format!("{at}.type"),
                    format!("Unsupported content part type '{kind}'."),
                ));
            }
        });
    }
    Ok(out)
}

/// The text of a tool message or a system message: text parts joined by a newline;
/// anything else is refused (`param` names the content).
pub fn text_only(content: Option<&Value>, param: &str) -> Result<String, ChatError> {
    let mut text = String::new();
    for (i, part) in parts(content, param)?.into_iter().enumerate() {
        match part {
            Part::Text(t) => {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&t);
            }
            _ => {
                return Err(ChatError::invalid(
                    format!("{param}.[{i}].type"),
                    "Only text parts are accepted in this message.",
                ));
            }
        }
    }
    Ok(text)
}

/// Parses a request body; a malformed body is a 400 naming the field at fault.
pub fn parse(body: &[u8]) -> Result<ChatRequest, ChatError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let param = openai_path(e.path());
        let message = e.inner().to_string();
        ChatError::invalid(
            if param.is_empty() {
                "body".into()
            } else {
                param
            },
            message,
        )
    })
}

/// serde_path_to_error's path in OpenAI's notation: `messages.[0].content`.
fn openai_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        let piece = match segment {
            Segment::Seq { index } => format!("[{index}]"),
            Segment::Map { key } => key.clone(),
            Segment::Enum { variant } => variant.clone(),
            Segment::Unknown => break,
        };
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&piece);
    }
    out
}

/// A field set to the value that means "as if absent": refusing it would break clients
/// that send every default (`n: 1`, `logprobs: false`, penalties 0, …).
fn neutral(key: &str, value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(false) => matches!(key, "logprobs"),
        Value::Number(n) => match key {
            "n" => n.as_f64() == Some(1.0),
            "frequency_penalty" | "presence_penalty" | "top_logprobs" => n.as_f64() == Some(0.0),
            _ => false,
        },
        Value::Object(map) => map.is_empty() && key == "logit_bias",
        Value::Array(list) => key == "modalities" && list.iter().all(|m| m == "text"),
        _ => false,
    }
}

impl ChatRequest {
    /// Refuses the first field of [`ChatRequest::rest`] (top level, then each message's)
    /// that is set to something other than its neutral value.
    pub fn refuse_rest(&self, target: &str) -> Result<(), ChatError> {
        if let Some((key, _)) = self.rest.iter().find(|(k, v)| !neutral(k, v)) {
            return Err(ChatError::unsupported(key.clone(), target));
        }
        for (i, message) in self.messages.iter().enumerate() {
            if let Some((key, _)) = message.rest.iter().find(|(_, v)| !v.is_null()) {
                return Err(ChatError::unsupported(
                    format!("messages.[{i}].{key}"),
                    target,
                ));
            }
            if message.role == Role::Function {
                return Err(ChatError::unsupported(
                    format!("messages.[{i}].role"),
                    target,
                ));
            }
        }
        Ok(())
    }

    /// `max_completion_tokens`, else the older `max_tokens`.
    pub fn max_output(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// What the answer must look like for this client.
    pub fn reply(&self) -> Reply {
        Reply {
            model: self.model.clone(),
            stream: self.stream.unwrap_or(false),
            include_usage: self
                .stream_options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
        }
    }
}

/// What the client asked of the answer, for the answer's translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The model the client named; the answer carries the upstream's name when it has one.
    pub model: String,
    /// The client wants Chat Completions chunks (`stream: true`).
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with `choices: []` and the usage.
    pub include_usage: bool,
}

/// A translated request: the upstream body and what the answer must look like.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// The upstream request body (Responses or Anthropic Messages).
    pub body: Value,
    /// The upstream answer is an event stream (`body.stream`): the client's wish, or
    /// forced by the target (ChatGPT mode). A non-streaming client served by a stream
    /// needs the aggregator.
    pub upstream_stream: bool,
    pub reply: Reply,
}

// ---------------------------------------------------------------------------------------
// The answer
// ---------------------------------------------------------------------------------------

/// `usage` of a completion or of the last chunk.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ChatUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: PromptDetails,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct PromptDetails {
    pub cached_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct CompletionDetails {
    pub reasoning_tokens: u64,
}

/// A `chat.completion` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: i64,
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<ChatUsage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    pub logprobs: Option<()>,
    pub finish_reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: Option<String>,
    pub refusal: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallOut>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCallOut {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionOut,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionOut {
    pub name: String,
    pub arguments: String,
}

impl ChatCompletion {
    pub(crate) fn new(
        id: &str,
        created: i64,
        model: String,
        message: AssistantMessage,
        finish_reason: &'static str,
        usage: Option<ChatUsage>,
    ) -> Self {
        ChatCompletion {
            id: chat_id(id),
            object: "chat.completion",
            created,
            model,
            choices: vec![Choice {
                index: 0,
                message,
                logprobs: None,
                finish_reason,
            }],
            usage,
            service_tier: None,
        }
    }
}

/// `chatcmpl-…` from an upstream id (`resp_…`, `msg_…`): its prefix dropped.
pub(crate) fn chat_id(upstream: &str) -> String {
    let bare = upstream
        .strip_prefix("resp_")
        .or_else(|| upstream.strip_prefix("msg_"))
        .unwrap_or(upstream);
    format!("chatcmpl-{bare}")
}

// ---------------------------------------------------------------------------------------
// Stream chunks
// ---------------------------------------------------------------------------------------

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a ChatUsage>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a str>,
}

/// Writes the Chat Completions chunks of one answer: the same `id`, `created` and
/// `model` on each; the role first (sent once, before any other delta); the finish
/// reason; the usage chunk when asked; `[DONE]`. After [`ChunkWriter::done`] or
/// [`ChunkWriter::error`] it writes nothing more.
#[derive(Debug)]
pub(crate) struct ChunkWriter {
    pub id: String,
    pub created: i64,
    pub model: String,
    include_usage: bool,
    role_sent: bool,
    finished: bool,
    pub ended: bool,
}

impl ChunkWriter {
    pub fn new(reply: &Reply, created: i64) -> Self {
        ChunkWriter {
            id: String::new(),
            created,
            model: reply.model.clone(),
            include_usage: reply.include_usage,
            role_sent: false,
            finished: false,
            ended: false,
        }
    }

    fn emit(&self, out: &mut Vec<u8>, delta: Delta<'_>, finish_reason: Option<&str>) {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
            }],
            usage: None,
        };
        write_data(out, &chunk);
    }

    fn write(&mut self, out: &mut Vec<u8>, delta: Delta<'_>, finish_reason: Option<&str>) {
        if self.ended {
            return;
        }
        self.role(out);
        self.emit(out, delta, finish_reason);
    }

    /// The first chunk (`role: assistant`, empty content, as OpenAI sends it), unless it
    /// went already.
    pub fn role(&mut self, out: &mut Vec<u8>) {
        if !self.role_sent && !self.ended {
            self.role_sent = true;
            let first = Delta {
                role: Some("assistant"),
                content: Some(""),
                ..Delta::default()
            };
            self.emit(out, first, None);
        }
    }

    pub fn content(&mut self, out: &mut Vec<u8>, text: &str) {
        if !text.is_empty() {
            self.write(
                out,
                Delta {
                    content: Some(text),
                    ..Delta::default()
                },
                None,
            );
        }
    }

    pub fn refusal(&mut self, out: &mut Vec<u8>, text: &str) {
        if !text.is_empty() {
            self.write(
                out,
                Delta {
                    refusal: Some(text),
                    ..Delta::default()
                },
                None,
            );
        }
    }

    /// A new tool call: its index among the answer's tool calls, id and name.
    pub fn tool_start(&mut self, out: &mut Vec<u8>, index: u32, id: &str, name: &str) {
        let call = ToolCallDelta {
            index,
            id: Some(id),
            kind: Some("function"),
            function: FunctionDelta {
                name: Some(name),
                arguments: Some(""),
            },
        };
        self.write(
            out,
            Delta {
                tool_calls: Some([call]),
                ..Delta::default()
            },
            None,
        );
    }

    pub fn tool_arguments(&mut self, out: &mut Vec<u8>, index: u32, arguments: &str) {
        if arguments.is_empty() {
            return;
        }
        let call = ToolCallDelta {
            index,
            id: None,
            kind: None,
            function: FunctionDelta {
                name: None,
                arguments: Some(arguments),
            },
        };
        self.write(
            out,
            Delta {
                tool_calls: Some([call]),
                ..Delta::default()
            },
            None,
        );
    }

    /// The chunk with the finish reason (once).
    pub fn finish(&mut self, out: &mut Vec<u8>, reason: &str) {
        if !self.finished {
            self.finished = true;
            self.write(out, Delta::default(), Some(reason));
        }
    }

    /// The usage chunk when the client asked for it, then `[DONE]`.
    pub fn done(&mut self, out: &mut Vec<u8>, usage: Option<&ChatUsage>) {
        if self.ended {
            return;
        }
        if self.include_usage {
            let zero = ChatUsage::default();
            let chunk = Chunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: Vec::new(),
                usage: Some(usage.unwrap_or(&zero)),
            };
            write_data(out, &chunk);
        }
        out.extend_from_slice(DONE);
        self.ended = true;
    }

    /// The stream's error event, `data: {"error":{…}}`, then `[DONE]` so the stream
    /// still ends as a Chat Completions stream does. The OpenAI SDKs raise on an event
    /// with an `error` member (openai-python `_streaming.py`), so the client sees the
    /// failure, not a short answer.
    pub fn error(&mut self, out: &mut Vec<u8>, error: &ChatError) {
        if self.ended {
            return;
        }
        write_data(out, &error.body());
        out.extend_from_slice(DONE);
        self.ended = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_bodies_name_the_field() {
        let err =
            parse(br#"{"model":"m","messages":[{"role":"user"},{"role":"robot"}]}"#).unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.param.as_deref(), Some("messages.[1].role"));
        let err = parse(br#"{"messages":[]}"#).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("body"));
        assert!(err.message.contains("model"), "{err}");
        let err = parse(br#"{"model":"m","messages":[],"max_tokens":"ten"}"#).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("max_tokens"));
    }

    #[test]
    fn neutral_values_pass_and_others_are_refused_by_name() {
        let ok = parse(
            br#"{"model":"m","messages":[],"n":1,"logprobs":false,"presence_penalty":0,
                "frequency_penalty":0.0,"logit_bias":{},"modalities":["text"],"seed":null}"#,
        )
        .unwrap();
        ok.refuse_rest("X").unwrap();
        for (field, value) in [
            ("n", "2"),
            ("logprobs", "true"),
            ("seed", "7"),
            ("audio", r#"{"voice":"alloy"}"#),
            ("presence_penalty", "0.5"),
            ("modalities", r#"["text","audio"]"#),
        ] {
            let body = format!(r#"{{"model":"m","messages":[],"{field}":{value}}}"#);
            let err = parse(body.as_bytes())
                .unwrap()
                .refuse_rest("X")
                .unwrap_err();
            assert_eq!(err.param.as_deref(), Some(field));
            assert_eq!(err.code.as_deref(), Some("unsupported_parameter"));
            assert_eq!(err.body()["error"]["type"], "invalid_request_error");
        }
        let body =
            br#"{"model":"m","messages":[{"role":"assistant","content":"x","audio":{"id":"a"}}]}"#;
        let err = parse(body).unwrap().refuse_rest("X").unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages.[0].audio"));
        let body = br#"{"model":"m","messages":[{"role":"function","name":"f","content":"x"}]}"#;
        let err = parse(body).unwrap().refuse_rest("X").unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages.[0].role"));
    }

    #[test]
    fn content_parts_are_read_and_bad_ones_named() {
        let content = serde_json::json!([
            {"type":"text","text":"hi"},
            {"type":"image_url","image_url":{"url":"https://x/a.png","detail":"low"}},
            {"type":"image_url","image_url":"https://x/b.png"},
        ]);
        assert_eq!(
            parts(Some(&content), "messages.[0].content").unwrap(),
            vec![
                Part::Text("hi".into()),
                Part::Image {
                    url: "https://x/a.png".into(),
                    detail: Some("low".into())
                },
                Part::Image {
                    url: "https://x/b.png".into(),
                    detail: None
                },
            ]
        );
        let audio =
            serde_json::json!([{"type":"input_audio","input_audio":{"data":"","format":"wav"}}]);
        let err = parts(Some(&audio), "messages.[2].content").unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages.[2].content.[0].type"));
        let err = text_only(Some(&content), "messages.[1].content").unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages.[1].content.[1].type"));
        assert!(parts(Some(&serde_json::json!(5)), "c").is_err());
    }

    #[test]
    fn chat_ids() {
        assert_eq!(chat_id("resp_abc"), "chatcmpl-abc");
        assert_eq!(chat_id("msg_01X"), "chatcmpl-01X");
        assert_eq!(chat_id("other"), "chatcmpl-other");
    }
}
