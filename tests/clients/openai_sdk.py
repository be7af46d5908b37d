"""The official OpenAI Python SDK against Carpool: run by tests/openai_clients.rs.

Usage: openai_sdk.py responses | chat

Reads OPENAI_BASE_URL (Carpool's /v1 on 127.0.0.1), OPENAI_API_KEY (a Carpool user token)
and what the answers must hold from CARPOOL_EXPECT_* variables. Prints one line per call
for the Rust test to check too, and exits non-zero on the first failure.

- `responses`: `responses.create` without and with `stream=True` on a GPT model (an
  OpenAI account answers), checking the text, the usage (cached and reasoning tokens
  included) and that the stream ends with `response.completed`.
- `chat`: `chat.completions.create` without and with streaming
  (`stream_options={"include_usage": True}`) on a GPT model (translated to Responses)
  and on a Claude model (translated to Anthropic Messages), checking the text, the finish
  reason and the usage (the final usage chunk of a stream).
"""

import os
import sys

import openai

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello"},
]


def env_int(name: str) -> int:
    return int(os.environ[name])


def check_responses(client: openai.OpenAI) -> None:
    model = os.environ["CARPOOL_GPT_MODEL"]
    expect = os.environ["CARPOOL_EXPECT_GPT_TEXT"]
    usage_want = (
        env_int("CARPOOL_EXPECT_GPT_INPUT"),
        env_int("CARPOOL_EXPECT_GPT_CACHED"),
        env_int("CARPOOL_EXPECT_GPT_OUTPUT"),
        env_int("CARPOOL_EXPECT_GPT_REASONING"),
    )

    def usage_of(usage) -> tuple:
        return (
            usage.input_tokens,
            usage.input_tokens_details.cached_tokens,
            usage.output_tokens,
            usage.output_tokens_details.reasoning_tokens,
        )

    # 1. responses.create, not streaming
    response = client.responses.create(model=model, input="Say hello", instructions="You are terse.")
    assert response.status == "completed", response.status
    assert response.output_text == expect, f"create: got {response.output_text!r}"
    assert usage_of(response.usage) == usage_want, response.usage
    print(
        "responses.create: text=%r input=%d cached=%d output=%d reasoning=%d"
        % ((response.output_text,) + usage_of(response.usage))
    )

    # 2. responses.create(stream=True): typed events, text from the deltas
    stream = client.responses.create(model=model, input="Say hello", stream=True)
    deltas, types, completed = [], [], None
    for event in stream:
        types.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        elif event.type == "response.completed":
            completed = event.response
    text = "".join(deltas)
    assert types[0] == "response.created", types
    assert types[-1] == "response.completed", types
    assert completed is not None and completed.output_text == expect, completed
    assert text == expect, f"stream: got {text!r}"
    assert usage_of(completed.usage) == usage_want, completed.usage
    print(
        "responses.stream: text=%r events=%d input=%d cached=%d output=%d reasoning=%d"
        % ((text, len(types)) + usage_of(completed.usage))
    )

    # 3. the SDK's stream helper (accumulates the final response itself)
    with client.responses.stream(model=model, input="Say hello") as helper:
        final = helper.get_final_response()
    assert final.output_text == expect, final.output_text
    print(f"responses.stream helper: text={final.output_text!r}")


def check_chat(client: openai.OpenAI) -> None:
    cases = [
        (
            "gpt",
            os.environ["CARPOOL_GPT_MODEL"],
            os.environ["CARPOOL_EXPECT_GPT_TEXT"],
            env_int("CARPOOL_EXPECT_GPT_INPUT"),
            env_int("CARPOOL_EXPECT_GPT_CACHED"),
            env_int("CARPOOL_EXPECT_GPT_OUTPUT"),
        ),
        (
            "claude",
            os.environ["CARPOOL_CLAUDE_MODEL"],
            os.environ["CARPOOL_EXPECT_CLAUDE_TEXT"],
            env_int("CARPOOL_EXPECT_CLAUDE_INPUT"),
            0,
            env_int("CARPOOL_EXPECT_CLAUDE_OUTPUT"),
        ),
    ]
    for name, model, expect, prompt, cached, completion in cases:
        # 1. chat.completions.create, not streaming
        done = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=64)
        assert done.object == "chat.completion", done.object
        assert len(done.choices) == 1, done.choices
        choice = done.choices[0]
        assert choice.message.role == "assistant", choice.message
        assert choice.message.content == expect, f"{name} create: got {choice.message.content!r}"
        assert choice.finish_reason == "stop", choice.finish_reason
        usage = done.usage
        assert (usage.prompt_tokens, usage.completion_tokens) == (prompt, completion), usage
        assert usage.total_tokens == prompt + completion, usage
        got_cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
        assert (got_cached or 0) == cached, usage
        print(
            f"chat.create {name}: text={choice.message.content!r} finish={choice.finish_reason} "
            f"prompt={usage.prompt_tokens} cached={got_cached or 0} completion={usage.completion_tokens}"
        )

        # 2. streaming with the final usage chunk
        stream = client.chat.completions.create(
            model=model,
            messages=MESSAGES,
            max_tokens=64,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        assert chunks, "no chunks"
        assert all(c.object == "chat.completion.chunk" for c in chunks), chunks
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        last = chunks[-1]
        assert text == expect, f"{name} stream: got {text!r}"
        assert finishes == ["stop"], finishes
        assert last.choices == [] and last.usage is not None, last
        assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (prompt, completion), last.usage
        assert all(c.usage is None for c in chunks[:-1]), "usage only on the last chunk"
        print(
            f"chat.stream {name}: text={text!r} chunks={len(chunks)} finish={finishes[0]} "
            f"prompt={last.usage.prompt_tokens} completion={last.usage.completion_tokens}"
        )


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in ("responses", "chat"):
        print("usage: openai_sdk.py responses | chat", file=sys.stderr)
        return 2
    base_url = os.environ["OPENAI_BASE_URL"]
    if not base_url.startswith(("http://127.0.0.1:", "https://127.0.0.1:")):
        print(f"refusing to talk to {base_url}: tests only reach Carpool on loopback", file=sys.stderr)
        return 2
    print(f"openai {openai.__version__}")
    client = openai.OpenAI(
        base_url=base_url,
        api_key=os.environ["OPENAI_API_KEY"],
        max_retries=0,
        timeout=30.0,
    )
    if sys.argv[1] == "responses":
        check_responses(client)
    else:
        check_chat(client)
    print(f"all {sys.argv[1]} calls passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
