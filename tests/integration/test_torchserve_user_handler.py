"""Real TorchServe with the user's own serving code: a handler file archived with the variant's
export, and a whole .mar, each spoken to through a request template and read back through an
output path. Paths are relative to the scenario folder, as a scenario names them."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.artifacts import ServedArtifact
from harness.data.tensors import OutputSpec, Signature, TensorSpec
from harness.load.locust_driver import LocustDriver
from harness.scenario.load_spec import LoadSpec
from harness.serving.torchserve import TorchServeTarget
from harness.serving.torchserve_config import archiver_argv
from tests.integration.torchserve_helpers import TORCHSERVE_MARKS, export_batched, torchserve_serving

pytestmark = TORCHSERVE_MARKS

SIGNATURE = Signature(
    inputs=(TensorSpec("features", (8,), "float32"),),
    output=OutputSpec("probabilities", 4),
    task="classification",
)

# What both users' handlers do: load the archived torch.export program and answer each request
# with the softmax of the model's outputs. The module-level `rows` and `answer` that each appends
# are the user's own request and answer shapes. One class a file: TorchServe loads the only one.
HANDLER = textwrap.dedent(
    """
    import json
    import os

    import torch


    class SoftmaxHandler:
        def initialize(self, context):
            model_dir = context.system_properties["model_dir"]
            serialized = context.manifest["model"]["serializedFile"]
            self.model = torch.export.load(os.path.join(model_dir, serialized)).module()
            self.initialized = True

        def handle(self, data, context):
            answers = []
            for request in data:
                body = request.get("body") or request.get("data")
                if isinstance(body, (bytes, bytearray)):
                    body = body.decode()
                with torch.no_grad():
                    probs = torch.softmax(self.model(rows(body)), dim=1)
                answers.append(answer(probs.tolist()))
            return answers
    """
)

# A user's handler file: its own request shape ({"data": {"x": rows}}), its own answer (per
# example an object with the probabilities under "probs"). It never reads harness_model.json.
TEMPLATE_HANDLER = HANDLER + textwrap.dedent(
    """

    def rows(body):
        body = json.loads(body) if isinstance(body, str) else body
        return torch.tensor(body["data"]["x"], dtype=torch.float32)


    def answer(probs):
        return {"outputs": [{"probs": row} for row in probs]}
    """
)

# The handler inside a user's .mar: a plain-text body holding a JSON list of rows, scores back
# under "scores".
ARCHIVE_HANDLER = HANDLER + textwrap.dedent(
    """

    def rows(body):
        return torch.tensor(json.loads(body), dtype=torch.float32)


    def answer(probs):
        return {"scores": probs}
    """
)


def _model() -> torch.nn.Module:
    torch.manual_seed(7)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()


def _rows(n: int) -> dict[str, np.ndarray]:
    return {"features": np.random.default_rng(3).normal(size=(n, 8)).astype(np.float32)}


def _expected(model: torch.nn.Module, batch: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(batch["features"])), dim=1).numpy()


def _serving(
    artifact: ServedArtifact, tmp_path: Path, scenario_dir: Path, **options: Any
) -> contextlib.AbstractContextManager[TorchServeTarget]:
    """One worker under tmp_path/run; `options` name the user's serving code relative to scenario_dir."""
    return torchserve_serving(
        artifact, tmp_path / "run", scenario_dir=scenario_dir, workers=1, options=options
    )


def test_a_user_handler_file_is_spoken_to_through_its_template_and_read_at_its_output_path(tmp_path):
    scenario_dir = tmp_path / "scenario"
    (scenario_dir / "serving").mkdir(parents=True)
    (scenario_dir / "serving" / "probability_handler.py").write_text(TEMPLATE_HANDLER)
    model = _model()
    artifact = export_batched(model, SIGNATURE, tmp_path / "variant.pt2")
    batch = _rows(12)
    with _serving(
        artifact,
        tmp_path,
        scenario_dir,
        handler="serving/probability_handler.py",
        request_template='{"data": {"x": {{inputs.features}}}}',
        output_path="outputs.0.probs",
        rows_per_request=1,  # the output path reads the first example of each answer
    ) as target:
        got = target.predict(batch)
        facts = target.describe()
        encoded = target.encode_requests(batch, 1)
        load = LoadSpec(users=2, warmup_s=0.5, measure_s=1.0, request_batch_size=1)
        result = LocustDriver().run(target.endpoint, load, encoded, tmp_path / "load")
    np.testing.assert_allclose(got, _expected(model, batch), rtol=1e-5, atol=1e-6)
    assert facts["handler"] == str(scenario_dir / "serving" / "probability_handler.py")
    assert (facts["request_encoding"], facts["output_path"]) == ("template", "outputs.0.probs")
    assert (encoded.encoding, encoded.output_path, encoded.output_width) == ("template", "outputs.0.probs", 4)
    # the load reads the user's answers too: each has its one row at the output path
    assert result.failure_count == 0, result.failure_examples
    assert result.ok_count > 10


def test_a_user_archive_is_served_as_it_is_under_the_targets_model_name(tmp_path):
    model = _model()
    build = tmp_path / "build"
    build.mkdir()
    (build / "text_rows_handler.py").write_text(ARCHIVE_HANDLER)
    serialized = export_batched(model, SIGNATURE, build / "theirs.pt2").path
    scenario_dir = tmp_path / "scenario"
    (scenario_dir / "archives").mkdir(parents=True)
    # the user's own archive, named "theirs": the target registers it as "model" all the same
    argv = archiver_argv(
        sys.executable,
        model_name="theirs",
        serialized_file=serialized,
        handler=build / "text_rows_handler.py",
        extra_files=[],
        export_path=scenario_dir / "archives",
    )
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    # the variant's own export is not in play: only its signature is used, to build requests
    signature_only = ServedArtifact(
        path=tmp_path / "not-served.pt2", framework="torch", format="torch.export", signature=SIGNATURE
    )
    batch = _rows(12)
    with _serving(
        signature_only,
        tmp_path,
        scenario_dir,
        archive="archives/theirs.mar",
        request_template="{{inputs.features}}",
        content_type="text/plain",
        output_path="scores",
        rows_per_request=5,
    ) as target:
        got = target.predict(batch)  # requests of 5, 5 and 2 examples
        facts = target.describe()
    np.testing.assert_allclose(got, _expected(model, batch), rtol=1e-5, atol=1e-6)
    assert facts["archive"] == str(scenario_dir / "archives" / "theirs.mar")
    assert facts["request_content_type"] == "text/plain"
    assert facts["server_reported"]["batchSize"] == 1
    assert (tmp_path / "run" / "torchserve" / "model-store" / "model.mar").is_file()
