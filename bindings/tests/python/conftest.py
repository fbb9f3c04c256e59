"""Pytest setup: import the generated `ember_ffi` module (Python bindings generated
from the release libember_ffi.so by scripts/gen-bindings.sh, which this runs when
they are missing) and find the real SmolLM2 model."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
GENERATED = TARGET / "bindings" / "python"

if not (GENERATED / "ember_ffi.py").exists() or os.environ.get("EMBER_REGEN_BINDINGS"):
    subprocess.run([str(ROOT / "scripts" / "gen-bindings.sh")], check=True)
sys.path.insert(0, str(GENERATED))

MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def ember_home() -> Path:
    return Path(os.environ.get("EMBER_HOME", Path.home() / ".cache" / "ember"))


@pytest.fixture(scope="session")
def model_path() -> str:
    p = ember_home() / "models" / MODEL_NAME
    if not p.exists():
        pytest.fail(f"{p} is missing: run scripts/fetch-models.sh")
    return str(p)


@pytest.fixture(scope="session")
def reference():
    """llama.cpp's greedy continuations (tests/fixtures/smollm2/logits.jsonl)."""
    rows = [json.loads(l) for l in open(ROOT / "tests" / "fixtures" / "smollm2" / "logits.jsonl")]
    return {r["prompt"]: r for r in rows}


@pytest.fixture(scope="session")
def engine(model_path):
    from ember_ffi import Engine, EngineConfig

    return Engine.load(model_path, EngineConfig(threads=2))
