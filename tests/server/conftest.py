"""Fixtures for the server tests: the real `ember serve` binary on a free loopback port.

EMBER_BIN names the binary (default: target/release/ember of this checkout);
EMBER_TEST_MODEL the model (default: SmolLM2-135M-Instruct Q4_1 from the cache).
"""

import os
import pathlib
import re
import subprocess
import time

import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]


def ember_bin():
    if os.environ.get("EMBER_BIN"):
        return os.environ["EMBER_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR") or str(ROOT / "target")
    return str(pathlib.Path(target) / "release" / "ember")


def model_path():
    if os.environ.get("EMBER_TEST_MODEL"):
        return os.environ["EMBER_TEST_MODEL"]
    home = os.environ.get("EMBER_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ember")
    p = os.path.join(home, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert os.path.exists(p), f"{p} is missing: run scripts/fetch-models.sh first"
    return p


class Server:
    def __init__(self, *extra, tmp, ctx=1024):
        self.log_path = tmp / f"serve-{os.getpid()}-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "w+")
        args = [ember_bin(), "serve", "-m", model_path(), "--port", "0", "-t", "2", "--ctx", str(ctx), *extra]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.url = None
        deadline = time.time() + 60
        while time.time() < deadline:
            assert self.proc.poll() is None, f"ember serve exited: {self.log_path.read_text()}"
            m = re.search(r"on (http://127\.0\.0\.1:\d+)", self.log_path.read_text())
            if m:
                self.url = m.group(1)
                try:
                    if requests.get(self.url + "/health", timeout=2).status_code == 200:
                        return
                except requests.ConnectionError:
                    pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"ember serve did not become healthy: {self.log_path.read_text()}")

    @property
    def pid(self):
        return self.proc.pid

    @property
    def base(self):
        return self.url + "/v1"

    def alive(self):
        return self.proc.poll() is None and requests.get(self.url + "/health", timeout=5).status_code == 200

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    s = Server("--parallel", "2", "--max-tokens", "256", "--max-body-bytes", "65536",
               tmp=tmp_path_factory.mktemp("serve"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def keyed_server(tmp_path_factory):
    s = Server("--api-key", "sekret", tmp=tmp_path_factory.mktemp("serve-key"))
    yield s
    s.stop()


# The idle-timeout tests' server: connections with no request in flight are closed after this long.
IDLE_TIMEOUT = 2


@pytest.fixture(scope="session")
def idle_server(tmp_path_factory):
    s = Server("--idle-timeout", str(IDLE_TIMEOUT), "--max-tokens", "256", tmp=tmp_path_factory.mktemp("serve-idle"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def model_id(server):
    return requests.get(server.base + "/models", timeout=10).json()["data"][0]["id"]
