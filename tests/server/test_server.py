"""`ember serve` through the official openai client and raw HTTP."""

import concurrent.futures
import json
import subprocess
import time

import openai
import pytest
import requests

from conftest import ember_bin, model_path

MSGS = [{"role": "user", "content": "What is the capital of France?"}]


def client(server, key="none"):
    return openai.OpenAI(base_url=server.base, api_key=key, max_retries=0, timeout=120)


def test_health_and_models(server, model_id):
    h = requests.get(server.url + "/health", timeout=5).json()
    assert h["status"] == "ok"
    models = client(server).models.list()
    assert [m.id for m in models.data] == [model_id]
    assert model_id == "SmolLM2-135M-Instruct.Q4_1"


def test_chat_non_stream(server, model_id):
    r = client(server).chat.completions.create(model=model_id, messages=MSGS, max_tokens=12, temperature=0)
    assert r.object == "chat.completion"
    c = r.choices[0]
    assert c.message.role == "assistant"
    assert c.message.content
    assert c.finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 12
    assert r.usage.prompt_tokens > 10
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_stream_equals_non_stream(server, model_id):
    c = client(server)
    full = c.chat.completions.create(model=model_id, messages=MSGS, max_tokens=12, temperature=0)
    stream = c.chat.completions.create(model=model_id, messages=MSGS, max_tokens=12, temperature=0, stream=True,
                                       stream_options={"include_usage": True})
    parts, finish, usage, roles = [], None, None, []
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            if ch.delta.role:
                roles.append(ch.delta.role)
            if ch.delta.content:
                parts.append(ch.delta.content)
            if ch.finish_reason:
                finish = ch.finish_reason
    assert roles == ["assistant"]
    assert "".join(parts) == full.choices[0].message.content
    assert finish == full.choices[0].finish_reason
    assert usage.completion_tokens == full.usage.completion_tokens


def test_completions_stream_and_not(server, model_id):
    c = client(server)
    r = c.completions.create(model=model_id, prompt="The capital of France is", max_tokens=8, temperature=0)
    assert r.object == "text_completion"
    assert r.choices[0].text
    assert r.usage.completion_tokens <= 8
    text = "".join(ch.choices[0].text for ch in
                   c.completions.create(model=model_id, prompt="The capital of France is", max_tokens=8,
                                        temperature=0, stream=True) if ch.choices)
    assert text == r.choices[0].text


def test_stop_and_sampling_params(server, model_id):
    c = client(server)
    r = c.chat.completions.create(model=model_id, messages=MSGS, max_tokens=1, temperature=0.7, top_p=0.9,
                                  seed=42, presence_penalty=0.5, frequency_penalty=0.5)
    assert r.choices[0].finish_reason == "length"
    base = c.chat.completions.create(model=model_id, messages=MSGS, max_tokens=12, temperature=0).choices[0].message.content
    words = base.split()
    assert len(words) >= 2
    stopped = c.chat.completions.create(model=model_id, messages=MSGS, max_tokens=12, temperature=0, stop=[words[1]])
    assert stopped.choices[0].finish_reason == "stop"
    assert words[1] not in stopped.choices[0].message.content
    assert base.startswith(stopped.choices[0].message.content)
    # the same seed gives the same sample
    a, b = (c.chat.completions.create(model=model_id, messages=MSGS, max_tokens=8, temperature=1.0, seed=7)
            .choices[0].message.content for _ in range(2))
    assert a == b


def test_greedy_chat_equals_ember_run(server, model_id):
    """The acceptance check: temperature 0 through the openai client == `ember run --temp 0` on the rendered prompt."""
    msgs = [{"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "Name three colors."}]
    r = client(server).chat.completions.create(model=model_id, messages=msgs, max_tokens=24, temperature=0)
    prompt = subprocess.run([ember_bin(), "chat-template", "-m", model_path(), "--messages", json.dumps(msgs)],
                            check=True, capture_output=True, text=True).stdout
    assert prompt.endswith("<|im_start|>assistant\n")
    out = subprocess.run([ember_bin(), "run", "-m", model_path(), "-t", "2", "--temp", "0", "-n", "24", "-p", prompt],
                         check=True, capture_output=True, text=True).stdout
    assert out.endswith("\n")
    assert r.choices[0].message.content == out[:-1]


def test_concurrent_clients(server, model_id):
    """8 clients x 10 requests against --parallel 2: every response completes, the server stays up."""
    def worker(i):
        c = client(server)
        done = 0
        for j in range(10):
            if j % 2:
                r = c.chat.completions.create(model=model_id, max_tokens=4, temperature=0.8, seed=i * 100 + j,
                                              messages=[{"role": "user", "content": f"Say a number {i} {j}"}])
                assert r.choices[0].finish_reason in ("stop", "length")
            else:
                chunks = list(c.completions.create(model=model_id, prompt=f"Count: {i}, {j},", max_tokens=4,
                                                   temperature=0.8, seed=j, stream=True))
                assert chunks[-1].choices[0].finish_reason in ("stop", "length")
            done += 1
        return done

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        assert sum(ex.map(worker, range(8))) == 80
    assert server.alive()


def wait_idle(server, seconds=15):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if requests.get(server.url + "/health", timeout=5).json()["busy"] == 0:
            return True
        time.sleep(0.1)
    return False


LONG = [{"role": "user", "content": "Write a very long story about a dragon and a knight."}]


def test_client_disconnect_cancels(server, model_id):
    # A stream closed after its first event: the generation (256 tokens) stops early.
    s = requests.post(server.base + "/chat/completions", stream=True, timeout=30,
                      json={"model": model_id, "messages": LONG, "max_tokens": 256, "stream": True, "temperature": 0})
    it = s.iter_lines()
    assert next(it).startswith(b"data: ")
    t0 = time.time()
    s.close()
    assert wait_idle(server), "the slot is freed when the client goes away"
    # A non-streaming client that gives up (timeout) cancels too.
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(server.base + "/chat/completions", timeout=1,
                      json={"model": model_id, "messages": LONG, "max_tokens": 256, "temperature": 0})
    assert wait_idle(server)
    # The server is still up and serves the next request.
    r = client(server).chat.completions.create(model=model_id, messages=MSGS, max_tokens=2, temperature=0)
    assert r.choices[0].message.content is not None
    assert server.alive()


def test_disconnect_during_a_long_prompt_frees_the_slot_at_once(server, model_id):
    # ~900 prompt tokens: seconds of evaluation on a 2-core machine. A client that gives up
    # after 0.3 s must free its slot long before the prompt would have been evaluated
    # (the prompt's passes check the request's cancel flag before every product).
    def body(text):
        return {"model": model_id, "prompt": text * 90, "max_tokens": 1, "temperature": 0}
    assert wait_idle(server)
    t = time.time()
    requests.post(server.base + "/completions", timeout=120, json=body("A quick red fox runs past the sleepy cat. "))
    full = time.time() - t
    if full < 1.0:
        pytest.skip(f"the whole prompt takes {full:.2f} s here: too fast to see a cancel inside it")
    t = time.time()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(server.base + "/completions", timeout=0.3, json=body("The quick brown fox jumps over the lazy dog. "))
    assert wait_idle(server, seconds=60)
    freed = time.time() - t
    assert freed < 0.6 + full / 2, f"slot freed after {freed:.2f} s; the whole prompt takes {full:.2f} s"
    assert server.alive()


def err(r, status):
    assert r.status_code == status, r.text
    e = r.json()["error"]
    assert set(e) >= {"message", "type", "param", "code"}
    assert e["message"]
    return e


def test_malformed_json(server):
    r = requests.post(server.base + "/chat/completions", data=b'{"messages": [', timeout=10,
                      headers={"Content-Type": "application/json"})
    assert err(r, 400)["type"] == "invalid_request_error"
    r = requests.post(server.base + "/chat/completions", json={"model": "x"}, timeout=10)
    assert "messages" in err(r, 400)["message"]
    r = requests.post(server.base + "/chat/completions", json={"messages": MSGS, "temperature": "hot"}, timeout=10)
    err(r, 400)
    with pytest.raises(openai.BadRequestError):
        client(server).chat.completions.create(model="SmolLM2-135M-Instruct.Q4_1", messages=MSGS, max_tokens=0)
    r = requests.post(server.base + "/completions", json={"prompt": "x", "max_tokens": 100000}, timeout=10)
    assert err(r, 400)["param"] == "max_tokens"
    err(requests.get(server.base + "/nope", timeout=10), 404)


def test_unknown_model(server):
    with pytest.raises(openai.NotFoundError) as e:
        client(server).chat.completions.create(model="gpt-9", messages=MSGS, max_tokens=2)
    assert e.value.status_code == 404
    r = requests.post(server.base + "/completions", json={"model": "gpt-9", "prompt": "x"}, timeout=10)
    assert err(r, 404)["code"] == "model_not_found"


def test_oversized_input(server, model_id):
    # over --max-body-bytes (64 KiB): 413
    big = "word " * 20000
    r = requests.post(server.base + "/chat/completions", timeout=30,
                      json={"model": model_id, "messages": [{"role": "user", "content": big}]})
    err(r, 413)
    # under the body limit but over the context (1024 tokens): 400 context_length_exceeded
    long = "hello " * 3000
    r = requests.post(server.base + "/completions", json={"model": model_id, "prompt": long, "max_tokens": 4}, timeout=30)
    assert err(r, 400)["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client(server).completions.create(model=model_id, prompt=long, max_tokens=4)
    assert server.alive()


def test_api_key(keyed_server):
    assert requests.get(keyed_server.url + "/health", timeout=5).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        client(keyed_server, "wrong").models.list()
    r = requests.post(keyed_server.base + "/chat/completions", json={"messages": MSGS, "max_tokens": 1}, timeout=10)
    assert err(r, 401)["type"] == "authentication_error"
    r = client(keyed_server, "sekret").chat.completions.create(model="SmolLM2-135M-Instruct.Q4_1", messages=MSGS, max_tokens=2)
    assert r.choices[0].message.content is not None
