"""Sends requests through Carpool with the official Anthropic Python SDK, for the e2e tests.

    python send.py BASE_URL TOKEN N [--model M]... [--stream every|none|all]

Requests take the models given in turn (`--model a --model a --model b`: two of a, then
one of b, again). `--stream every` (the default) streams every other request, starting
with the second. Prints one JSON line: how many were sent and streamed, how many per
model, and the usage the answers reported (summed), so a test can compare it with what the dashboard shows. A refused request ends
the run at once with exit status 1 and `{"error": ..., "status": ...}` on stdout.
"""

import argparse
import json
import sys
import warnings

import anthropic


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("token")
    parser.add_argument("n", type=int)
    parser.add_argument("--model", action="append", dest="models")
    parser.add_argument("--stream", choices=["every", "none", "all"], default="every")
    args = parser.parse_args()
    models = args.models or ["claude-sonnet-4-6"]
    # The SDK warns about retired model names; the mock upstream answers any model.
    warnings.simplefilter("ignore", DeprecationWarning)

    # No retries: a refused token must fail the run at once, not after backoff.
    client = anthropic.Anthropic(base_url=args.base_url, api_key=args.token, max_retries=0, timeout=20)
    summary = {
        "sent": 0,
        "streamed": 0,
        "models": {},
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "ids": [],
    }
    for i in range(args.n):
        stream = args.stream == "all" or (args.stream == "every" and i % 2 == 1)
        request = {
            "model": models[i % len(models)],
            "max_tokens": 64,
            "messages": [{"role": "user", "content": f"e2e request {i}"}],
        }
        try:
            if stream:
                with client.messages.stream(**request) as events:
                    for _ in events.text_stream:
                        pass
                    message = events.get_final_message()
            else:
                message = client.messages.create(**request)
        except anthropic.APIStatusError as error:
            print(json.dumps({"error": str(error), "status": error.status_code, "sent": summary["sent"]}))
            return 1
        except anthropic.APIError as error:
            print(json.dumps({"error": str(error), "status": None, "sent": summary["sent"]}))
            return 1
        summary["sent"] += 1
        summary["streamed"] += int(stream)
        summary["models"][request["model"]] = summary["models"].get(request["model"], 0) + 1
        summary["ids"].append(message.id)
        usage = message.usage
        summary["input_tokens"] += usage.input_tokens
        summary["output_tokens"] += usage.output_tokens
        summary["cache_read_input_tokens"] += usage.cache_read_input_tokens or 0
        summary["cache_creation_input_tokens"] += usage.cache_creation_input_tokens or 0
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
