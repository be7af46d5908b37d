"""The official Python SDK against Carpool: run by tests/real_clients.rs.

Reads ANTHROPIC_BASE_URL (Carpool on 127.0.0.1, over http:// or https://, the CA then in
SSL_CERT_FILE), ANTHROPIC_API_KEY (a Carpool user token) and the expected reply text from
CARPOOL_EXPECT_TEXT. Makes a non-streaming message, a streamed message and a token count,
checks each answer and prints one line per call (`create: ...`, `stream: ...`,
`count_tokens: ...`) for the Rust test to check too. Exits non-zero on the first failure.
"""

import os
import sys

import anthropic

MODEL = "claude-sonnet-4-5"


def main() -> int:
    base_url = os.environ["ANTHROPIC_BASE_URL"]
    expect = os.environ["CARPOOL_EXPECT_TEXT"]
    if not base_url.startswith(("http://127.0.0.1:", "https://127.0.0.1:")):
        print(f"refusing to talk to {base_url}: tests only reach Carpool on loopback", file=sys.stderr)
        return 2
    print(f"anthropic {anthropic.__version__}")

    client = anthropic.Anthropic(
        base_url=base_url,
        api_key=os.environ["ANTHROPIC_API_KEY"],
        max_retries=0,
        timeout=30.0,
    )
    messages = [{"role": "user", "content": "Say hello"}]

    # 1. messages.create, not streaming
    message = client.messages.create(model=MODEL, max_tokens=64, messages=messages)
    text = "".join(block.text for block in message.content if block.type == "text")
    assert text == expect, f"create: got {text!r}"
    assert message.stop_reason == "end_turn", message.stop_reason
    assert message.usage.input_tokens > 0, message.usage
    assert message.usage.output_tokens > 0, message.usage
    print(
        f"create: text={text!r} input_tokens={message.usage.input_tokens} "
        f"output_tokens={message.usage.output_tokens}"
    )

    # 2. messages.stream: SSE, accumulated by the SDK
    with client.messages.stream(model=MODEL, max_tokens=64, messages=messages) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == expect, f"stream: got {streamed!r}"
    assert final.stop_reason == "end_turn", final.stop_reason
    assert final.usage.input_tokens > 0, final.usage
    assert final.usage.output_tokens > 0, final.usage
    print(
        f"stream: text={streamed!r} input_tokens={final.usage.input_tokens} "
        f"output_tokens={final.usage.output_tokens}"
    )

    # 3. messages.count_tokens
    counted = client.messages.count_tokens(model=MODEL, messages=messages)
    assert counted.input_tokens > 0, counted
    print(f"count_tokens: input_tokens={counted.input_tokens}")

    print("all three calls passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
