"""The Python SDK's remote engine (EngineConfig.remote_url / route) against a real
`ember serve` on loopback (see docs/REMOTE.md): greedy remote == local, the route and
its reason in GenerationStats, local-first by prompt length and with the server down,
typed errors that never hold the API key."""
import os
import socket
import subprocess
import time

import pytest

from ember_ffi import ChatMessage, EmberError, Engine, EngineConfig, GenerateParams

from test_ember_ffi import Collect, greedy, FRANCE
from conftest import ROOT, TARGET

KEY = "sk-python-remote-test-42"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(model_path):
    port = free_port()
    exe = TARGET / "release" / "ember"
    p = subprocess.Popen([str(exe), "serve", "-m", model_path, "--port", str(port), "--backend", "cpu",
                          "-t", "2", "--api-key", KEY], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.time() - t0 < 120 and p.poll() is None, "ember serve did not start"
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    p.kill()
    p.wait()


def test_remote_equals_local_and_reports_its_route(engine, model_path, server):
    local = Collect()
    st = engine.new_session().generate(FRANCE, greedy(16), local)
    assert (st.route, st.route_reason) == ("local", "policy")
    remote_engine = Engine.load(model_path, EngineConfig(threads=2, remote_url=server, remote_api_key=KEY))
    remote = Collect()
    st = remote_engine.new_session().generate(FRANCE, greedy(16), remote)
    assert (st.route, st.route_reason) == ("remote", "policy")
    assert len(remote.pieces) >= 8 and remote.text == local.text
    assert remote.done is not None and remote.done.generated_tokens == 16


def test_local_first_by_length_and_with_the_server_down(model_path, server):
    long = "Once upon a time there was a small robot who loved to read books. " * 8 + FRANCE
    for url, up in [(server, True), (f"http://127.0.0.1:{free_port()}", False)]:
        e = Engine.load(model_path, EngineConfig(threads=2, context_size=64, remote_url=url,
                                                 remote_api_key=KEY, route="local-first"))
        st = e.new_session().generate(FRANCE, greedy(4), Collect())
        assert (st.route, st.route_reason) == ("local", "fits")
        if up:
            st = e.new_session().generate(long, greedy(4), Collect())
            assert (st.route, st.route_reason) == ("remote", "exceeds_context")
        else:
            with pytest.raises(EmberError.RemoteUnavailable):
                e.new_session().generate(long, greedy(4), Collect())


def test_remote_errors_are_typed_and_hold_no_key(model_path, server):
    wrong = "sk-wrong-python-key-77"
    e = Engine.load(model_path, EngineConfig(threads=2, remote_url=server, remote_api_key=wrong))
    with pytest.raises(EmberError.Remote) as info:
        e.new_session().generate(FRANCE, greedy(4), Collect())
    assert "401" in str(info.value) and wrong not in str(info.value) and KEY not in str(info.value)
    with pytest.raises(EmberError.InvalidParams):
        Engine.load(model_path, EngineConfig(remote_url="http://192.0.2.1:8080"))
    with pytest.raises(EmberError.InvalidParams):
        Engine.load(model_path, EngineConfig(route="cloud"))


def test_remote_only_without_a_model_file(engine, server):
    local = Collect()
    engine.new_session().generate(FRANCE, greedy(16), local)
    e = Engine.remote_only(EngineConfig(remote_url=server, remote_api_key=KEY))
    assert e.info().arch == "remote"
    s = e.new_session()
    remote = Collect()
    st = s.generate(FRANCE, greedy(16), remote)
    assert (st.route, st.route_reason) == ("remote", "policy")
    assert remote.text == local.text and st.prompt_tokens > 0  # the server's count
    reply = Collect()
    st = s.chat([ChatMessage(role="user", content="What is 2+2?")], greedy(8), reply)
    assert st.route == "remote" and reply.text
    # Local first needs the local model it would run on; no URL, no engine.
    with pytest.raises(EmberError.InvalidParams):
        Engine.remote_only(EngineConfig(remote_url=server, route="local-first"))
    with pytest.raises(EmberError.InvalidParams):
        Engine.remote_only(EngineConfig())
