"""The Python SDK against the real SmolLM2 model through the real libember_ffi.so."""
import json
import os
import re
import threading
import time

import pytest

from ember_ffi import (
    ChatMessage,
    EmberError,
    Engine,
    EngineConfig,
    GenerateParams,
    GenerationStats,
    TokenSink,
    Tool,
    ToolCall,
)

FRANCE = "The capital of France is"


class Collect(TokenSink):
    """Collects pieces; optionally stops after `stop_after` pieces or calls `hook` per piece."""

    def __init__(self, stop_after=None, hook=None):
        self.pieces = []
        self.done = None
        self.stop_after = stop_after
        self.hook = hook

    def on_token(self, text: str) -> bool:
        self.pieces.append(text)
        if self.hook:
            self.hook(self)
        return self.stop_after is None or len(self.pieces) < self.stop_after

    def on_done(self, stats: GenerationStats) -> None:
        self.done = stats

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def greedy(n=16, **kw):
    return GenerateParams(max_tokens=n, temperature=0.0, **kw)


def test_defaults():
    c = EngineConfig()
    assert c.backend == "auto" and c.threads == 0 and c.context_size == 0 and c.memory_budget_mb == 0
    p = GenerateParams()
    assert p.max_tokens > 0 and p.temperature > 0 and p.top_k == 40 and p.stop == []
    assert 0 < p.top_p <= 1 and 0 <= p.min_p < 1 and p.repeat_penalty == 1.0


def test_load_and_info(engine):
    info = engine.info()
    assert info.arch == "llama"
    assert 100_000_000 < info.params < 200_000_000
    assert info.quant == "Q4_1"
    assert info.context == 8192
    assert info.has_chat_template is True
    assert info.name and "smollm" in info.name.lower()
    # Which backend runs and why (issue 16): the default config is auto.
    assert info.backend in ("cpu", "wgpu")
    assert info.backend_reason
    assert (info.gpu_tiers is None) == (info.backend == "cpu")


def test_streaming_generate_matches_llama_cpp(engine, reference):
    want = reference[FRANCE]["stable_text"]
    assert want.startswith(" Paris.\n\nThe")
    s = engine.new_session()
    sink = Collect()
    stats = s.generate(FRANCE, greedy(16), sink)
    assert sink.text.startswith(want), repr(sink.text)
    assert len(sink.pieces) > 3  # streamed, not one blob
    assert sink.done == stats
    assert stats.prompt_tokens == len(reference[FRANCE]["ids"])
    assert stats.generated_tokens == 16 and stats.stop_reason == "length"
    assert stats.tokens_per_second > 0 and stats.prompt_tokens_per_second > 0


def test_raw_chatml_prompt_matches_llama_cpp(engine, reference):
    prompt = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    sink = Collect()
    engine.new_session().generate(prompt, greedy(8), sink)
    assert sink.text.startswith(reference[prompt]["stable_text"]), repr(sink.text)


def test_chat_and_multi_turn(engine):
    # The GGUF's template (SmolLM2: ChatML) rendered by chat() == the same prompt written by hand.
    system = "You are a helpful assistant."
    msgs = [ChatMessage(role="system", content=system), ChatMessage(role="user", content="What is 2+2?")]
    by_hand = f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    s = engine.new_session()
    sink, ref = Collect(), Collect()
    stats = s.chat(msgs, greedy(24), sink)
    ref_stats = engine.new_session().generate(by_hand, greedy(24), ref)
    assert sink.text == ref.text and sink.text.strip(), repr(sink.text)
    assert stats.prompt_tokens == ref_stats.prompt_tokens
    assert stats.stop_reason in ("eog", "length")
    first_prompt = stats.prompt_tokens
    msgs += [ChatMessage(role="assistant", content=sink.text), ChatMessage(role="user", content="And 3+3?")]
    sink2 = Collect()
    stats2 = s.chat(msgs, greedy(24), sink2)
    assert sink2.text.strip()
    # The previous turns' KV is reused: only the new tail is evaluated.
    assert stats2.prompt_tokens < first_prompt


def test_on_token_false_stops_early(engine):
    sink = Collect(stop_after=3)
    stats = engine.new_session().generate(FRANCE, greedy(64), sink)
    assert len(sink.pieces) == 3
    assert stats.stop_reason == "cancelled"
    assert stats.generated_tokens <= 4


def test_cancel_from_another_thread(engine):
    s = engine.new_session()
    first = threading.Event()
    at_cancel = []

    def hook(sink):
        if len(sink.pieces) == 1:
            first.set()
            time.sleep(0.2)  # let the other thread's cancel() land before the next token

    sink = Collect(hook=hook)

    def canceller():
        assert first.wait(30)
        at_cancel.append(len(sink.pieces))
        s.cancel()  # must not block on the running generation

    t = threading.Thread(target=canceller)
    t.start()
    stats = s.generate("Once upon a time, in a small village,", GenerateParams(max_tokens=200, temperature=0.0), sink)
    t.join()
    assert stats.stop_reason == "cancelled"
    assert len(sink.pieces) <= at_cancel[0] + 1  # within one token
    assert stats.generated_tokens < 200


def test_two_sessions_two_threads(engine, reference):
    want = reference[FRANCE]["stable_text"]
    results, errors = {}, []

    def worker(i):
        try:
            sink = Collect()
            engine.new_session().generate(FRANCE, greedy(12), sink)
            results[i] = sink.text
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results[0] == results[1] and results[0].startswith(want)


def test_reset(engine):
    s = engine.new_session()
    a, b = Collect(), Collect()
    s.generate(FRANCE, greedy(6), a)
    assert s.context_tokens() > 0
    s.reset()
    assert s.context_tokens() == 0
    s.generate(FRANCE, greedy(6), b)
    assert a.text == b.text


def test_save_and_restore_continue_the_conversation(engine, tmp_path):
    msgs = [ChatMessage(role="user", content="What is 2+2?")]
    s, first = engine.new_session(), Collect()
    s.chat(msgs, greedy(8), first)
    path = tmp_path / "chat.session"
    s.save(str(path))
    msgs += [ChatMessage(role="assistant", content=first.text), ChatMessage(role="user", content="And 3+3?")]
    want = Collect()
    s.chat(msgs, greedy(8), want)

    # Restored in another session: the same answer, the saved turns not evaluated again.
    r, got = engine.new_session(), Collect()
    r.restore(str(path))
    assert r.context_tokens() > 0
    stats = r.chat(msgs, greedy(8), got)
    assert got.text == want.text
    fresh = engine.new_session().chat(msgs, greedy(1), Collect())
    assert stats.prompt_tokens < fresh.prompt_tokens

    # Damaged files are typed errors; the session is unchanged.
    n = r.context_tokens()
    truncated = tmp_path / "truncated.session"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(EmberError.InvalidSession) as e:
        r.restore(str(truncated))
    assert "truncated" in str(e.value)
    with pytest.raises(EmberError.Io):
        r.restore(str(tmp_path / "missing.session"))
    assert r.context_tokens() == n


def test_bad_model_path():
    with pytest.raises(EmberError) as e:
        Engine.load("/nonexistent/dir/model.gguf", EngineConfig())
    assert isinstance(e.value, EmberError.Io)
    assert "model.gguf" in str(e.value)


def test_corrupt_file(tmp_path, model_path):
    bad = tmp_path / "garbage.gguf"
    bad.write_bytes(b"this is not a gguf file at all" * 100)
    with pytest.raises(EmberError.InvalidModel) as e:
        Engine.load(str(bad), EngineConfig())
    assert "magic" in str(e.value)
    # A real model truncated in its tensor data.
    trunc = tmp_path / "truncated.gguf"
    with open(model_path, "rb") as f:
        trunc.write_bytes(f.read(2_000_000))
    with pytest.raises(EmberError.InvalidModel) as e:
        Engine.load(str(trunc), EngineConfig())
    assert str(e.value)


def test_invalid_params(engine):
    with pytest.raises(EmberError.InvalidParams):
        engine.new_session().generate(FRANCE, GenerateParams(top_p=2.0), Collect())
    with pytest.raises(EmberError.InvalidParams):
        engine.new_session().generate(FRANCE, GenerateParams(temperature=-1.0), Collect())
    with pytest.raises(EmberError.InvalidParams):
        Engine.load("/x.gguf", EngineConfig(backend="tpu"))


def test_context_full(model_path):
    e = Engine.load(model_path, EngineConfig(context_size=4))
    with pytest.raises(EmberError.ContextFull):
        e.new_session().generate("one two three four five six seven", greedy(4), Collect())


def test_chat_longer_than_the_context_drops_the_oldest_turns(model_path):
    # A 256-token session fed a conversation until it is 3x as long as when it
    # first outgrew the context: the system message and the newest turns are kept.
    e = Engine.load(model_path, EngineConfig(threads=2, context_size=256))
    s = e.new_session()
    system = ChatMessage(role="system", content="You are a helpful assistant named Bob.")
    msgs, first_drop_at = [system], None
    for i in range(1, 61):
        msgs.append(ChatMessage(role="user", content=f"Question {i}: name one animal of the sea and one of the desert."))
        sink = Collect()
        stats = s.chat(msgs, greedy(8), sink)
        assert sink.done.dropped_messages == stats.dropped_messages
        if stats.dropped_messages and first_drop_at is None:
            first_drop_at = len(msgs)
        assert bool(stats.dropped_messages) == (first_drop_at is not None)
        assert s.context_tokens() <= 256
        if first_drop_at and len(msgs) >= 3 * first_drop_at:
            break
        msgs.append(ChatMessage(role="assistant", content=sink.text))
    assert first_drop_at and len(msgs) >= 3 * first_drop_at, "the conversation outgrew the context"
    assert stats.dropped_messages % 2 == 0
    # The kept conversation, cut by hand, in a fresh session: the same answer.
    kept = [system] + msgs[1 + stats.dropped_messages:]
    ref = Collect()
    ref_stats = e.new_session().chat(kept, greedy(8), ref)
    assert ref_stats.dropped_messages == 0
    assert ref.text == sink.text


def test_speculative_decoding_keeps_the_greedy_text(model_path, engine):
    # Prompt lookup, and SmolLM2 drafting for itself: the same greedy text as
    # plain decoding (the target verifies every drafted token).
    prompt = "A list of colours: red, green, blue, yellow. Again: red, green, blue,"
    plain = Collect()
    engine.new_session().generate(prompt, greedy(24), plain)
    for cfg in (EngineConfig(threads=2, lookup=8), EngineConfig(threads=2, draft_model=model_path, draft_max=4)):
        sink = Collect()
        Engine.load(model_path, cfg).new_session().generate(prompt, greedy(24), sink)
        assert sink.text == plain.text, (cfg, sink.text, plain.text)
    with pytest.raises(EmberError.InvalidParams):
        Engine.load(model_path, EngineConfig(draft_model=model_path, lookup=4))


def test_load_from_fd(model_path, reference, tmp_path):
    # The model embedded at an odd offset inside a bigger file (like an Android asset).
    data = open(model_path, "rb").read()
    packed = tmp_path / "packed.bin"
    offset = 12345
    packed.write_bytes(b"\0" * offset + data + b"trailer")
    fd = os.open(packed, os.O_RDONLY)
    try:
        e = Engine.load_from_fd(fd, offset, len(data), EngineConfig())
    finally:
        os.close(fd)  # the engine holds its own mapping
    sink = Collect()
    e.new_session().generate(FRANCE, greedy(8), sink)
    assert sink.text.startswith(reference[FRANCE]["stable_text"])
    with pytest.raises(EmberError):
        Engine.load_from_fd(-1, 0, 0, EngineConfig())


def test_memory_budget(model_path):
    e = Engine.load(model_path, EngineConfig(memory_budget_mb=120))
    info = e.info()
    assert info.session_context < 8192
    assert 0 < info.memory_plan_bytes <= 120 * 1024 * 1024
    assert info.weight_bytes + info.kv_bytes_per_token * info.session_context <= info.memory_plan_bytes
    with pytest.raises(EmberError.InvalidParams):
        Engine.load(model_path, EngineConfig(memory_budget_mb=10))
    # An explicit context over the budget is refused, saying what would fit; `fit` lowers it.
    with pytest.raises(EmberError.InvalidParams, match="would fit"):
        Engine.load(model_path, EngineConfig(context_size=8192, memory_budget_mb=120))
    fitted = Engine.load(model_path, EngineConfig(context_size=8192, memory_budget_mb=120, fit=True)).info()
    assert fitted.session_context < 8192 and fitted.memory_plan_bytes <= 120 * 1024 * 1024


def test_quantized_kv_cache(model_path):
    e = Engine.load(model_path, EngineConfig(backend="cpu", cache_type_k="q8_0", cache_type_v="q8_0", context_size=512))
    info = e.info()
    assert info.kv_cache_type == "q8_0/q8_0"
    # SmolLM2: 30 layers × K and V × 192 values, q8_0 = 34 bytes per 32 values.
    assert info.kv_bytes_per_token == 30 * 2 * 192 // 32 * 34
    with pytest.raises(EmberError.InvalidParams):
        Engine.load(model_path, EngineConfig(cache_type_k="q5_9"))


def test_callback_exception_is_an_error_not_a_crash(engine):
    class Boom(TokenSink):
        def on_token(self, text):
            raise RuntimeError("boom")

        def on_done(self, stats):
            pass

    with pytest.raises(EmberError.Callback) as e:
        engine.new_session().generate(FRANCE, greedy(4), Boom())
    assert "boom" in str(e.value)
    # The engine still works afterwards.
    sink = Collect()
    engine.new_session().generate(FRANCE, greedy(4), sink)
    assert sink.text


def test_async_generate(engine, reference):
    import asyncio

    async def main():
        sink = Collect()
        stats = await engine.new_session().generate_async(FRANCE, greedy(8), sink)
        return sink, stats

    sink, stats = asyncio.run(main())
    assert sink.text.startswith(reference[FRANCE]["stable_text"])
    assert stats.generated_tokens == 8


def test_reentrant_calls_from_a_callback_are_busy_not_a_deadlock(engine):
    s = engine.new_session()
    seen = []

    def reenter(sink):
        for call in (lambda: s.generate("x", greedy(2), Collect()), s.reset, s.context_tokens):
            try:
                call()
                seen.append("returned")
            except EmberError.Busy:
                seen.append("busy")

    stats = s.generate(FRANCE, greedy(4), Collect(stop_after=1, hook=reenter))
    assert seen == ["busy", "busy", "busy"]
    assert stats.stop_reason == "cancelled"
    assert s.context_tokens() > 0, "the session stays usable"


def test_cancel_with_nothing_running_does_not_cancel_the_next_generation(engine):
    s = engine.new_session()
    s.cancel()
    stats = s.generate(FRANCE, greedy(3), Collect())
    assert stats.stop_reason != "cancelled" and stats.generated_tokens > 0


def test_on_done_failing_keeps_the_result(engine):
    class LateBoom(Collect):
        def on_done(self, stats):
            raise RuntimeError("late boom")

    sink = LateBoom()
    stats = engine.new_session().generate(FRANCE, greedy(3), sink)
    assert stats.generated_tokens > 0 and sink.text


# --- Structured output (GenerateParams.json_schema / json_object / regex / grammar) ---

PERSON_SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "role": {"enum": ["admin", "user", "guest"]},
            "active": {"type": "boolean"},
        },
        "required": ["name", "age", "role", "active"],
        "additionalProperties": False,
    }
)
PERSON_PROMPT = "<|im_start|>user\nDescribe a user of a web site as JSON.<|im_end|>\n<|im_start|>assistant\n"


def test_constraint_defaults_are_off():
    p = GenerateParams()
    assert p.json_schema is None and p.json_object is False and p.regex is None and p.grammar is None


def test_json_schema_output_parses_and_keeps_its_bounds(engine):
    sink = Collect()
    stats = engine.new_session().generate(PERSON_PROMPT, greedy(120, json_schema=PERSON_SCHEMA), sink)
    assert stats.stop_reason == "eog", (stats, sink.text)
    obj = json.loads(sink.text)
    assert set(obj) == {"name", "age", "role", "active"}, obj
    assert isinstance(obj["name"], str) and len(obj["name"]) <= 20
    assert isinstance(obj["age"], int) and not isinstance(obj["age"], bool) and 0 <= obj["age"] <= 120
    assert obj["role"] in ("admin", "user", "guest")
    assert isinstance(obj["active"], bool)


def test_json_schema_in_chat_and_async(engine):
    import asyncio

    msgs = [ChatMessage(role="user", content="Describe a user of a web site as JSON.")]
    sink = Collect()
    stats = engine.new_session().chat(msgs, greedy(120, json_schema=PERSON_SCHEMA), sink)
    assert stats.stop_reason == "eog"
    assert json.loads(sink.text)["role"] in ("admin", "user", "guest")

    async def main():
        a = Collect()
        await engine.new_session().chat_async(msgs, greedy(120, json_schema=PERSON_SCHEMA), a)
        return a.text

    assert asyncio.run(main()) == sink.text


def test_json_object(engine):
    sink = Collect()
    msgs = [ChatMessage(role="user", content="Write a JSON object with a name and an age.")]
    stats = engine.new_session().chat(msgs, greedy(100, json_object=True), sink)
    assert stats.stop_reason == "eog", (stats, sink.text)
    assert isinstance(json.loads(sink.text), dict) and sink.text.startswith("{"), sink.text


def test_regex(engine):
    rx = "[A-Z][a-z]{2,8}-[0-9]{2}"
    sink = Collect()
    stats = engine.new_session().generate("Give a product code: ", greedy(32, regex=rx), sink)
    assert stats.stop_reason == "eog", (stats, sink.text)
    assert re.fullmatch(rx, sink.text), sink.text


def test_gbnf_grammar(engine):
    prompt = "<|im_start|>user\nIs Paris in France? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n"
    sink = Collect()
    stats = engine.new_session().generate(prompt, greedy(8, grammar='root ::= "yes" | "no"'), sink)
    assert stats.stop_reason == "eog"
    assert sink.text in ("yes", "no"), sink.text
    lark = Collect()
    engine.new_session().generate(prompt, greedy(8, grammar='start: "yes" | "no"'), lark)
    assert lark.text == sink.text


def test_invalid_constraints_are_typed_errors_before_any_token(engine):
    s = engine.new_session()
    cases = [
        (dict(json_schema="{not json"), "not JSON"),
        (dict(json_schema='{"type": "no-such-type"}'), "json_schema"),
        (dict(regex="(unclosed"), "regex"),
        (dict(grammar="root ::= missing\n"), "missing"),
        (dict(grammar="start: ???"), "lark"),
    ]
    for kw, needle in cases:
        sink = Collect()
        with pytest.raises(EmberError.InvalidConstraint) as e:
            s.generate(FRANCE, greedy(8, **kw), sink)
        assert needle in str(e.value), (kw, str(e.value))
        assert sink.pieces == [] and sink.done is None
        with pytest.raises(EmberError.InvalidConstraint):
            s.chat([ChatMessage(role="user", content="hi")], greedy(8, **kw), sink)
    assert s.context_tokens() == 0, "nothing was evaluated"
    # The session still works afterwards.
    ok = Collect()
    s.generate(FRANCE, greedy(4), ok)
    assert ok.text


def test_two_constraints_at_once_are_invalid_params(engine):
    s = engine.new_session()
    for kw, names in [
        (dict(json_object=True, regex="a+"), ("json_object", "regex")),
        (dict(json_schema=PERSON_SCHEMA, grammar='root ::= "x"'), ("json_schema", "grammar")),
    ]:
        with pytest.raises(EmberError.InvalidParams) as e:
            s.generate(FRANCE, greedy(8, **kw), Collect())
        assert all(n in str(e.value) for n in names), str(e.value)


def test_streaming_with_a_constraint_equals_the_whole_text(engine):
    import asyncio

    # Several pieces through on_token; joined, the same as the blocking call's and the async call's.
    params = greedy(120, json_schema=PERSON_SCHEMA)
    a, b = Collect(), Collect()
    engine.new_session().generate(PERSON_PROMPT, params, a)
    assert len(a.pieces) > 3

    async def main():
        return await engine.new_session().generate_async(PERSON_PROMPT, params, b)

    stats = asyncio.run(main())
    assert b.pieces == a.pieces and stats.stop_reason == "eog"
    json.loads(b.text)


def test_constraint_cut_by_max_tokens_is_length(engine):
    sink = Collect()
    stats = engine.new_session().generate(PERSON_PROMPT, greedy(3, json_schema=PERSON_SCHEMA), sink)
    assert stats.stop_reason == "length" and stats.generated_tokens == 3
    assert sink.text.startswith("{")


# --- Tool calling (GenerateParams.tools / tool_choice, GenerationStats.tool_calls) ---

WEATHER = Tool(
    name="get_weather",
    description="Get the current weather in a city",
    parameters_json=json.dumps(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    ),
)
TIME = Tool(name="get_time", description="Get the current time")
ASK = [ChatMessage(role="user", content="What is the weather like in Paris?")]


def _one_weather_call(stats, sink):
    assert stats.stop_reason == "tool_calls"
    assert len(stats.tool_calls) == 1
    call = stats.tool_calls[0]
    assert call.name == "get_weather" and call.id.startswith("call_")
    assert isinstance(json.loads(call.arguments_json)["city"], str)
    assert "<tool_call>" in sink.text  # the raw text is what streams
    return call


def test_tool_defaults_keep_old_callers_working():
    m = ChatMessage(role="user", content="hi")
    assert m.tool_calls == [] and m.tool_call_id is None and m.name is None
    p = GenerateParams()
    assert p.tools == [] and p.tool_choice is None


def test_required_tool_call(engine):
    sink = Collect()
    stats = engine.new_session().chat(ASK, greedy(60, tools=[WEATHER], tool_choice="required"), sink)
    _one_weather_call(stats, sink)
    assert sink.done.tool_calls == stats.tool_calls


def test_named_tool_call_and_follow_up_turn(engine):
    s = engine.new_session()
    sink = Collect()
    stats = s.chat(ASK, greedy(60, tools=[TIME, WEATHER], tool_choice="get_weather"), sink)
    call = _one_weather_call(stats, sink)
    history = ASK + [
        ChatMessage(role="assistant", content="", tool_calls=[call]),
        ChatMessage(role="tool", content='{"temperature_c": 18, "sky": "clear"}', tool_call_id=call.id, name=call.name),
    ]
    follow = Collect()
    stats2 = s.chat(history, greedy(24, tools=[TIME, WEATHER]), follow)
    assert stats2.stop_reason in ("eog", "length", "tool_calls") and stats2.generated_tokens > 0


def test_tool_choice_none_offers_no_tools(engine):
    stats = engine.new_session().chat(ASK, greedy(8, tools=[WEATHER], tool_choice="none"), Collect())
    assert stats.tool_calls == [] and stats.stop_reason != "tool_calls"


def test_invalid_tools_are_errors_before_any_token(engine):
    s = engine.new_session()
    cases = [
        dict(tools=[Tool(name="f", description=None, parameters_json="{not json")]),
        dict(tools=[Tool(name="f", description=None, parameters_json="[1]")]),
        dict(tools=[Tool(name="bad name", description=None, parameters_json=None)]),
        dict(tools=[WEATHER, WEATHER]),
        dict(tools=[WEATHER], tool_choice="no_such_function"),
        dict(tool_choice="required"),
        dict(tool_choice="get_weather"),
    ]
    for kw in cases:
        sink = Collect()
        with pytest.raises(EmberError.InvalidParams):
            s.chat(ASK, greedy(8, **kw), sink)
        assert sink.pieces == [] and sink.done is None, kw
    with pytest.raises(EmberError.InvalidParams):
        s.generate(FRANCE, greedy(8, tools=[WEATHER]), Collect())
    with pytest.raises(EmberError.InvalidParams):
        s.chat([ChatMessage(role="user", content="x", tool_calls=[ToolCall(id="c", name="f", arguments_json="{}")])], greedy(8), Collect())
    bad_schema = Tool(name="f", description=None, parameters_json='{"type": "no-such-type"}')
    with pytest.raises(EmberError.InvalidConstraint):
        s.chat(ASK, greedy(8, tools=[bad_schema], tool_choice="required"), Collect())
