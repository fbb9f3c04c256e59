"""Chats longer than a slot's context (context shift): the whole history is sent
each time, as OpenAI clients do; when it outgrows the context the server drops
the oldest turns, keeps the system message, and says so (`dropped_messages`)."""

import openai
import pytest

from conftest import Server

CTX = 256
SYSTEM = {"role": "system", "content": "You are a helpful assistant named Bob."}


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    s = Server("--parallel", "1", tmp=tmp_path_factory.mktemp("serve-shift"), ctx=CTX)
    yield s
    s.stop()


def ask(c, model, msgs, **kw):
    return c.chat.completions.create(model=model, messages=msgs, max_tokens=8, temperature=0, **kw)


def test_a_chat_three_times_the_context_runs_to_the_end(small_server):
    c = openai.OpenAI(base_url=small_server.base, api_key="none", max_retries=0, timeout=120)
    model = c.models.list().data[0].id
    msgs = [SYSTEM]
    first_drop_at = None  # the history's length (messages) when it first outgrew the context
    i = 0
    while first_drop_at is None or len(msgs) < 3 * first_drop_at:
        i += 1
        assert i <= 60, "the conversation never outgrew the context"
        msgs.append({"role": "user", "content": f"Question {i}: name one animal of the sea and one of the desert."})
        r = ask(c, model, msgs)
        assert r.choices[0].finish_reason in ("stop", "length")
        assert r.usage.prompt_tokens + 8 <= CTX
        dropped = (r.model_extra or {}).get("dropped_messages", 0)
        if dropped and first_drop_at is None:
            first_drop_at = len(msgs)
        assert bool(dropped) == (first_drop_at is not None), "once over, always over: the history only grows"
        msgs.append({"role": "assistant", "content": r.choices[0].message.content})
    msgs.pop()

    # The last turn, streamed: the final chunk says what was dropped.
    stream = ask(c, model, msgs, stream=True)
    text, dropped = "", None
    for chunk in stream:
        for ch in chunk.choices:
            text += ch.delta.content or ""
            if ch.finish_reason:
                dropped = (chunk.model_extra or {}).get("dropped_messages")
    assert dropped and dropped % 2 == 0, dropped
    # What was kept is the system message and the newest turns: the same
    # conversation cut by hand gets the same greedy answer, with nothing dropped.
    kept = [SYSTEM] + msgs[1 + dropped:]
    r = ask(c, model, kept)
    assert "dropped_messages" not in (r.model_extra or {})
    assert r.choices[0].message.content == text
    assert small_server.alive()
