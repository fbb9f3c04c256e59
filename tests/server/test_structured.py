"""Structured output and tool calling through the official openai client against `ember serve`.

response_format (json_schema, json_object), invalid schemas, forced tool calls (tool_choice
"required" and a named function, streamed and not) and a follow-up turn with the tool's result,
on SmolLM2-135M (the default test model) and Gemma-3-270M; `auto` on Qwen2.5-Coder-0.5B when its
file is in the cache. One server per model for the module. Greedy decoding throughout.
"""

import json
import os

import jsonschema
import openai
import pytest

from conftest import Server

MODEL_FILES = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma": "gemma-3-270m-q4_k_m.gguf",
    "qwen": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
}


def cached_model(key):
    home = os.environ.get("EMBER_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ember")
    return os.path.join(home, "models", MODEL_FILES[key])


def start(key, tmp_path_factory):
    path = cached_model(key)
    if key == "smollm2" and os.environ.get("EMBER_TEST_MODEL"):
        path = os.environ["EMBER_TEST_MODEL"]
    if not os.path.exists(path):
        if key == "qwen":
            pytest.skip(f"{path} is not in the cache")
        raise AssertionError(f"{path} is missing: run scripts/fetch-models.sh first")
    # conftest's Server serves model_path(), which EMBER_TEST_MODEL names.
    saved = os.environ.get("EMBER_TEST_MODEL")
    os.environ["EMBER_TEST_MODEL"] = path
    try:
        return Server("--max-tokens", "512", tmp=tmp_path_factory.mktemp(f"serve-{key}"))
    finally:
        if saved is None:
            del os.environ["EMBER_TEST_MODEL"]
        else:
            os.environ["EMBER_TEST_MODEL"] = saved


@pytest.fixture(scope="module", params=["smollm2", "gemma"])
def srv(request, tmp_path_factory):
    s = start(request.param, tmp_path_factory)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    s = start("qwen", tmp_path_factory)
    yield s
    s.stop()


def client(server):
    return openai.OpenAI(base_url=server.base, api_key="none", max_retries=0, timeout=300)


def obj(props, required=None, **extra):
    return {"type": "object", "properties": props, "required": list(props) if required is None else required,
            "additionalProperties": False, **extra}


NAME = {"type": "string", "maxLength": 24}

# (id, prompt, schema, max_tokens)
SCHEMAS = [
    ("person", "Describe a person: their name and age.",
     obj({"name": NAME, "age": {"type": "integer", "minimum": 0, "maximum": 120}}), 40),
    ("nested_address", "Give a name and a postal address in France.",
     obj({"name": NAME, "address": obj({"street": {"type": "string", "maxLength": 40}, "city": NAME,
                                         "zip": {"type": "string", "pattern": "^[0-9]{5}$"}})}), 80),
    ("string_array", "List a few fruits.",
     obj({"fruits": {"type": "array", "items": {"type": "string", "maxLength": 16}, "minItems": 2, "maxItems": 4}}),
     60),
    ("enums", "Pick a color and a shade.",
     obj({"color": {"enum": ["red", "green", "blue"]}, "shade": {"enum": ["light", "dark"]}}), 30),
    ("booleans", "Is Paris a capital? Is it on the coast?",
     obj({"is_capital": {"type": "boolean"}, "on_coast": {"type": "boolean"}}), 30),
    # A float without multipleOf may take any number of decimals, and greedy Gemma-3-270M writes
    # "37.000…" until max_tokens; multipleOf bounds the decimals (0.5: exact in binary for jsonschema).
    ("bounded_number", "What is the temperature in Paris in Celsius?",
     obj({"celsius": {"type": "number", "minimum": -50, "maximum": 60, "multipleOf": 0.5}}), 40),
    ("rating", "Rate the movie Inception from 1 to 5.",
     obj({"rating": {"type": "integer", "minimum": 1, "maximum": 5}}), 20),
    ("optional_fields", "Describe a book.",
     obj({"title": {"type": "string", "maxLength": 40}, "year": {"type": "integer", "minimum": 1000, "maximum": 2100},
          "subtitle": {"type": "string", "maxLength": 40}}, required=["title"]), 80),
    ("any_of", "Give me a value: a number or a short word.",
     obj({"value": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 1000}, {"type": "string", "maxLength": 10}]}}),
     30),
    ("object_array", "A shopping list with quantities.",
     obj({"items": {"type": "array", "minItems": 1, "maxItems": 3,
                    "items": obj({"name": {"type": "string", "maxLength": 20},
                                  "qty": {"type": "integer", "minimum": 1, "maximum": 10}})}}), 100),
    ("top_level_array", "Give three to five numbers between 0 and 100.",
     {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 100}, "minItems": 3, "maxItems": 5}, 40),
    ("pattern", "Give a product code like ABC-123.",
     obj({"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"}}), 30),
    ("const_and_enum", "Report the status.",
     obj({"version": {"const": 1}, "status": {"enum": ["ok", "error"]}}), 30),
    ("matrix", "A 2 by 2 matrix of digits.",
     obj({"matrix": {"type": "array", "minItems": 2, "maxItems": 2,
                     "items": {"type": "array", "minItems": 2, "maxItems": 2,
                               "items": {"type": "integer", "minimum": 0, "maximum": 9}}}}), 40),
    ("nullable", "Give a first name and a middle name, if any.",
     obj({"first_name": NAME, "middle_name": {"type": ["string", "null"], "maxLength": 24}}), 50),
    ("refs", "A line segment from one point to another.",
     {"$defs": {"point": obj({"x": {"type": "integer", "minimum": -100, "maximum": 100},
                              "y": {"type": "integer", "minimum": -100, "maximum": 100}})},
      **obj({"start": {"$ref": "#/$defs/point"}, "end": {"$ref": "#/$defs/point"}})}, 60),
    ("string_lengths", "Give one lowercase word.",
     obj({"word": {"type": "string", "minLength": 3, "maxLength": 8, "pattern": "^[a-z]+$"}}), 30),
    ("deep_nesting", "Describe a company and its CEO.",
     obj({"company": obj({"name": NAME, "ceo": obj({"name": NAME, "age": {"type": "integer", "minimum": 18,
                                                                        "maximum": 99}})})}), 80),
    ("integer_enum", "Priority of fixing a typo: 1, 2 or 3, and its label.",
     obj({"priority": {"enum": [1, 2, 3]}, "label": {"enum": ["low", "mid", "high"]}}), 30),
    ("one_of_union", "Describe a shape: a circle or a square.",
     obj({"shape": {"oneOf": [obj({"kind": {"const": "circle"}, "radius": {"type": "integer", "minimum": 1, "maximum": 100}}),
                              obj({"kind": {"const": "square"}, "side": {"type": "integer", "minimum": 1, "maximum": 100}})]}}),
     50),
]


@pytest.mark.parametrize("case", SCHEMAS, ids=[c[0] for c in SCHEMAS])
def test_json_schema_output_validates(srv, case):
    name, prompt, schema, max_tokens = case
    r = client(srv).chat.completions.create(
        model="", messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=max_tokens,
        response_format={"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}})
    c = r.choices[0]
    assert c.finish_reason == "stop", f"{name}: {c.finish_reason} after {r.usage.completion_tokens} tokens: {c.message.content!r}"
    jsonschema.validate(json.loads(c.message.content), schema)


def test_json_object_and_llama_cpp_fields(srv):
    c = client(srv)
    r = c.chat.completions.create(model="", messages=[{"role": "user", "content": "Describe Paris as JSON."}],
                                  temperature=0, max_tokens=120, response_format={"type": "json_object"})
    assert isinstance(json.loads(r.choices[0].message.content), dict), r.choices[0].message.content
    # llama.cpp's extensions: a GBNF grammar and a top-level json_schema, on text completions too.
    r = c.chat.completions.create(model="", messages=[{"role": "user", "content": "Is the sky blue?"}], temperature=0,
                                  max_tokens=5, extra_body={"grammar": 'root ::= "yes" | "no"'})
    assert r.choices[0].message.content in ("yes", "no")
    assert r.choices[0].finish_reason == "stop"
    schema = obj({"ok": {"type": "boolean"}})
    r = c.completions.create(model="", prompt="The answer as JSON:", temperature=0, max_tokens=20,
                             extra_body={"json_schema": schema})
    jsonschema.validate(json.loads(r.choices[0].text), schema)


def test_a_constraint_that_cannot_finish_ends_with_length(srv):
    r = client(srv).chat.completions.create(
        model="", messages=[{"role": "user", "content": "Count."}], temperature=0, max_tokens=5,
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": obj(
            {"numbers": {"type": "array", "items": {"type": "integer"}, "minItems": 50}})}})
    assert r.choices[0].finish_reason == "length"


@pytest.mark.parametrize("fmt,param", [
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}, "response_format"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/$defs/missing"}}}, "response_format"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": "not a schema"}}, "response_format.json_schema.schema"),
    ({"type": "yaml"}, "response_format"),
])
def test_invalid_response_format_is_a_400(srv, fmt, param):
    with pytest.raises(openai.BadRequestError) as e:
        client(srv).chat.completions.create(model="", messages=[{"role": "user", "content": "hi"}], max_tokens=5,
                                            response_format=fmt)
    assert e.value.status_code == 400
    assert e.value.type == "invalid_request_error"
    assert e.value.param == param
    assert e.value.message


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                                    "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Get the local time in a time zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 40}}, "required": ["zone"]}}}
ASK = [{"role": "user", "content": "What is the weather like in Paris right now?"}]


def collect(stream):
    """Assembles streamed deltas: (content, [{id, name, arguments}], finish_reason)."""
    content, calls, finish = [], {}, None
    for chunk in stream:
        for ch in chunk.choices:
            d = ch.delta
            if d.content:
                content.append(d.content)
            for tc in d.tool_calls or []:
                c = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                if tc.id:
                    c["id"] = tc.id
                if tc.function and tc.function.name:
                    c["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    c["arguments"] += tc.function.arguments
            if ch.finish_reason:
                finish = ch.finish_reason
    return "".join(content), [calls[i] for i in sorted(calls)], finish


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}],
                         ids=["required", "named"])
def test_forced_tool_call_streamed_and_not(srv, choice):
    c = client(srv)
    kw = dict(model="", messages=ASK, tools=[WEATHER, TIME], tool_choice=choice, temperature=0, max_tokens=80)
    r = c.chat.completions.create(**kw)
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls", ch
    assert ch.message.content is None
    assert len(ch.message.tool_calls) == 1
    call = ch.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    if isinstance(choice, dict):
        assert call.function.name == "get_weather"
    tool = {"get_weather": WEATHER, "get_time": TIME}[call.function.name]
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, tool["function"]["parameters"])

    content, calls, finish = collect(c.chat.completions.create(stream=True, **kw))
    assert finish == "tool_calls"
    assert content == ""
    assert len(calls) == 1 and calls[0]["id"].startswith("call_")
    assert (calls[0]["name"], json.loads(calls[0]["arguments"])) == (call.function.name, args)


def test_follow_up_turn_with_the_tool_result(srv):
    msgs = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_abc", "type": "function", "function": {
            "name": "get_weather", "arguments": json.dumps({"city": "Paris", "unit": "celsius"})}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": json.dumps({"temperature": 21, "sky": "sunny"})},
    ]
    r = client(srv).chat.completions.create(model="", messages=msgs, tools=[WEATHER, TIME], temperature=0,
                                            max_tokens=40)
    ch = r.choices[0]
    assert ch.finish_reason in ("stop", "length", "tool_calls")
    assert ch.message.content or ch.message.tool_calls
    # Without tools in the request the history still renders.
    r = client(srv).chat.completions.create(model="", messages=msgs, temperature=0, max_tokens=20)
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.choices[0].message.tool_calls is None


def test_tool_choice_none_offers_nothing(srv):
    r = client(srv).chat.completions.create(model="", messages=ASK, tools=[WEATHER], tool_choice="none",
                                            temperature=0, max_tokens=20)
    assert r.choices[0].message.tool_calls is None
    assert r.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize("kw,param", [
    (dict(tools=[WEATHER], tool_choice="sometimes"), "tool_choice"),
    (dict(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "launch_rocket"}}), "tool_choice"),
    (dict(tool_choice="required"), "tool_choice"),
    (dict(tools=[{"type": "function", "function": {"description": "no name"}}]), "tools[0].function.name"),
    (dict(tools=[{"type": "code_interpreter"}]), "tools[0]"),
    (dict(tools=[WEATHER], tool_choice="required", extra_body={"tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "nonsense"}}}}}]}), "tools"),
])
def test_invalid_tools_are_400s(srv, kw, param):
    with pytest.raises(openai.BadRequestError) as e:
        client(srv).chat.completions.create(model="", messages=ASK, max_tokens=5, **kw)
    assert e.value.param == param, e.value
    assert e.value.code == "invalid_value"


def test_qwen_auto_tool_call_and_answer(qwen):
    c = client(qwen)
    kw = dict(model="", messages=ASK, tools=[WEATHER, TIME], temperature=0, max_tokens=80)
    r = c.chat.completions.create(**kw)
    ch = r.choices[0]
    assert ch.finish_reason in ("tool_calls", "stop", "length")
    content, calls, finish = collect(c.chat.completions.create(stream=True, **kw))
    assert finish == ch.finish_reason
    if ch.message.tool_calls:
        # The model chose to call: the streamed call is the same call.
        assert ch.finish_reason == "tool_calls"
        got = [(t.function.name, json.loads(t.function.arguments)) for t in ch.message.tool_calls]
        assert [(x["name"], json.loads(x["arguments"])) for x in calls] == got
        assert got[0][0] in ("get_weather", "get_time")
    else:
        assert content == ch.message.content
    # The tool's result, then an answer.
    msgs = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 21, \"sky\": \"sunny\"}"},
    ]
    r = c.chat.completions.create(model="", messages=msgs, tools=[WEATHER, TIME], temperature=0, max_tokens=60)
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")
    assert r.choices[0].message.content or r.choices[0].message.tool_calls
    # A forced call on the model that knows the format.
    r = c.chat.completions.create(model="", messages=ASK, tools=[WEATHER, TIME], tool_choice="required", temperature=0,
                                  max_tokens=80)
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    jsonschema.validate(json.loads(call.function.arguments),
                        {"get_weather": WEATHER, "get_time": TIME}[call.function.name]["function"]["parameters"])
