"""TF Serving options, config files, argv and availability checks; no tensorflow_model_server needed.

Config files are parsed back with protobuf's text format into TF Serving's own messages:
ModelServerConfig from tensorflow-serving-api, and BatchingParameters / MonitoringConfig (which
that package does not ship) from descriptors transcribed field by field from
tensorflow_serving/servables/tensorflow/session_bundle_config.proto and
tensorflow_serving/config/monitoring_config.proto (tag 2.19.1).
"""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from harness.artifacts import ServedArtifact
from harness.data.tensors import OutputSpec, Signature, TensorSpec
from harness.errors import RunError, UserError
from harness.scenario.schema import ServingSpec
from harness.serving.tfserving import TfServingTarget
from harness.serving.tfserving_config import (
    DEFAULT_IMAGE,
    PROMETHEUS_PATH,
    TfServingOptions,
    batching_parameters,
    batching_parameters_text,
    binary_argv,
    container_name,
    default_rest_api_num_threads,
    docker_run_argv,
    log_env,
    model_config_text,
    model_state,
    monitoring_config_text,
    parse_version_text,
    server_flags,
)
from harness.serving.tfserving_launch import TfServingProcess, layout_model

# Every flag tensorflow_model_server defines (tensorflow_serving/model_servers/main.cc, 2.19.1).
DOCUMENTED_FLAGS = {
    "port", "grpc_socket_path", "rest_api_port", "rest_api_num_threads", "rest_api_timeout_in_ms",
    "rest_api_enable_cors_support", "enable_batching", "allow_version_labels_for_unavailable_models",
    "batching_parameters_file", "enable_per_model_batching_parameters", "model_config_file",
    "model_config_file_poll_wait_seconds", "model_name", "model_base_path", "num_load_threads",
    "num_unload_threads", "max_num_load_retries", "load_retry_interval_micros",
    "file_system_poll_wait_seconds", "flush_filesystem_caches", "tensorflow_session_parallelism",
    "tensorflow_session_config_file", "tensorflow_intra_op_parallelism",
    "tensorflow_inter_op_parallelism", "use_alts_credentials", "ssl_config_file", "platform_config_file",
    "per_process_gpu_memory_fraction", "saved_model_tags", "grpc_channel_arguments", "grpc_max_threads",
    "enable_model_warmup", "num_request_iterations_for_warmup", "version", "monitoring_config_file",
    "remove_unused_fields_from_bundle_metagraph", "prefer_tflite_model", "num_tflite_pools",
    "num_tflite_interpreters_per_pool", "enable_signature_method_name_check",
    "xla_cpu_compilation_enabled", "xla_gpu_compilation_enabled", "enable_profiler",
    "thread_pool_factory_config_file", "mixed_precision", "skip_initialize_tpu",
    "enable_grpc_healthcheck_service", "enable_serialization_as_tensor_content",
}  # fmt: skip


# ---- TF Serving's messages, for parsing our files back ----------------------------------------


def _message_classes():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    fd = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)

    batching = descriptor_pb2.FileDescriptorProto(
        name="session_bundle_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    msg = batching.message_type.add(name="BatchingParameters")
    int64_fields = [("max_batch_size", 1), ("batch_timeout_micros", 2), ("max_enqueued_batches", 3)]
    int64_fields += [("num_batch_threads", 4), ("max_execution_batch_size", 9)]
    for name, number in int64_fields:
        msg.field.add(
            name=name, number=number, label=fd.LABEL_OPTIONAL, type=fd.TYPE_MESSAGE,
            type_name=".google.protobuf.Int64Value",
        )  # fmt: skip
    msg.field.add(
        name="thread_pool_name", number=5, label=fd.LABEL_OPTIONAL, type=fd.TYPE_MESSAGE,
        type_name=".google.protobuf.StringValue",
    )  # fmt: skip
    msg.field.add(name="allowed_batch_sizes", number=6, label=fd.LABEL_REPEATED, type=fd.TYPE_INT64)
    msg.field.add(name="pad_variable_length_inputs", number=7, label=fd.LABEL_OPTIONAL, type=fd.TYPE_BOOL)
    pool.Add(batching)

    monitoring = descriptor_pb2.FileDescriptorProto(
        name="monitoring_config.proto", package="tensorflow.serving", syntax="proto3"
    )
    prom = monitoring.message_type.add(name="PrometheusConfig")
    prom.field.add(name="enable", number=1, label=fd.LABEL_OPTIONAL, type=fd.TYPE_BOOL)
    prom.field.add(name="path", number=2, label=fd.LABEL_OPTIONAL, type=fd.TYPE_STRING)
    mon = monitoring.message_type.add(name="MonitoringConfig")
    mon.field.add(
        name="prometheus_config", number=1, label=fd.LABEL_OPTIONAL, type=fd.TYPE_MESSAGE,
        type_name=".tensorflow.serving.PrometheusConfig",
    )  # fmt: skip
    pool.Add(monitoring)

    def get(name: str):
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))

    return get("BatchingParameters"), get("MonitoringConfig")


def _parse(text: str, message_class):
    from google.protobuf import text_format

    return text_format.Parse(text, message_class())


def _flags(argv: Sequence[str]) -> dict[str, str]:
    out = {}
    for arg in argv:
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            out[name] = value
    return out


def _flags_kwargs(**overrides):
    kwargs = dict(
        model_config_file="/r/config/models.config",
        monitoring_config_file="/r/config/monitoring.config",
        batching_parameters_file=None,
        prefer_tflite=False,
        rest_api_num_threads=8,
        rest_api_timeout_ms=30000,
    )
    kwargs.update(overrides)
    return kwargs


# ---- options ---------------------------------------------------------------------------------


def test_options_default_to_the_binary_a_pinned_image_rest_and_model_name_model():
    options = TfServingOptions.from_options({})
    assert (options.mode, options.model_name, options.protocol) == ("binary", "model", "rest")
    assert re.fullmatch(r"tensorflow/serving:\d+\.\d+\.\d+", DEFAULT_IMAGE)
    assert options.image == DEFAULT_IMAGE


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"mdoe": "docker"}, r"mdoe: Extra inputs are not permitted"),
        ({"mode": "k8s"}, r"mode: "),
        ({"extra_flags": ["--tensorflow_intra_op_parallelism 2"]}, r"not written --name=value"),
        ({"extra_flags": ["tensorflow_intra_op_parallelism=2"]}, r"not written --name=value"),
        ({"extra_flags": ["--rest_api_port=1"]}, r"--rest_api_port is set by the target"),
        ({"mode": "remote"}, r"url is required with mode: remote"),
        ({"url": "http://h:8501"}, r"only used with mode: remote"),
        ({"mode": "remote", "url": "http://h:8501/v1"}, r"url: String should match pattern"),
        ({"mode": "remote", "url": "http://h:8501", "protocol": "grpc"}, r"remote_grpc .* is required"),
        ({"mode": "docker", "binary": "/opt/tfs"}, r"binary is only used with mode: binary"),
        ({"model_name": "my model"}, r"model_name: String should match pattern"),
    ],
)
def test_bad_options_are_one_line_user_errors_naming_the_problem(options, expected):
    with pytest.raises(UserError, match=expected) as info:
        TfServingOptions.from_options(options)
    assert str(info.value).startswith("invalid serving.options for tfserving: ")
    assert "\n" not in str(info.value)


def test_extra_flags_written_name_equals_value_are_accepted_and_appended_last():
    options = TfServingOptions.from_options({"extra_flags": ["--tensorflow_intra_op_parallelism=2"]})
    flags = server_flags(**_flags_kwargs(extra_flags=options.extra_flags))
    assert flags[-1] == "--tensorflow_intra_op_parallelism=2"


# ---- config files ----------------------------------------------------------------------------


def test_model_config_parses_as_a_model_server_config_serving_only_version_1():
    model_server_config_pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")
    text = model_config_text(model_name="digits", base_path='/runs/a "b"\\c/models/digits')
    config = _parse(text, model_server_config_pb2.ModelServerConfig)
    (model,) = config.model_config_list.config
    assert model.name == "digits"
    assert model.base_path == '/runs/a "b"\\c/models/digits'
    assert model.model_platform == "tensorflow"
    assert list(model.model_version_policy.specific.versions) == [1]


def test_batching_parameters_parse_and_carry_the_scenario_batch_size_and_delay():
    batching_class, _ = _message_classes()
    params = batching_parameters(
        batch_size=8, max_batch_delay_ms=7, num_batch_threads=2, max_enqueued_batches=99
    )
    parsed = _parse(batching_parameters_text(params), batching_class)
    assert parsed.max_batch_size.value == 8
    assert parsed.batch_timeout_micros.value == 7000
    assert parsed.num_batch_threads.value == 2
    assert parsed.max_enqueued_batches.value == 99


def test_monitoring_config_enables_prometheus_at_the_documented_path():
    _, monitoring_class = _message_classes()
    parsed = _parse(monitoring_config_text(), monitoring_class)
    assert parsed.prometheus_config.enable is True
    assert parsed.prometheus_config.path == PROMETHEUS_PATH == "/monitoring/prometheus/metrics"


def test_rest_threads_default_to_four_per_cpu_but_enough_to_fill_batches():
    assert default_rest_api_num_threads(2, batch_size=1, num_batch_threads=1) == 8
    assert default_rest_api_num_threads(2, batch_size=16, num_batch_threads=2) == 64
    assert default_rest_api_num_threads(None, batch_size=1, num_batch_threads=1) == 4


# ---- command lines ---------------------------------------------------------------------------


def test_binary_argv_uses_only_documented_flags_and_keeps_grpc_on_a_unix_socket():
    flags = server_flags(**_flags_kwargs())
    argv = binary_argv(
        "/usr/bin/tensorflow_model_server", rest_port=41001, grpc_socket=Path("/r/g.sock"), flags=flags
    )
    assert argv[0] == "/usr/bin/tensorflow_model_server"
    assert all(a.startswith("--") and "=" in a for a in argv[1:])
    parsed = _flags(argv)
    assert set(parsed) <= DOCUMENTED_FLAGS
    assert parsed == {
        "port": "0",
        "grpc_socket_path": "/r/g.sock",
        "rest_api_port": "41001",
        "rest_api_num_threads": "8",
        "rest_api_timeout_in_ms": "30000",
        "model_config_file": "/r/config/models.config",
        "monitoring_config_file": "/r/config/monitoring.config",
        "max_num_load_retries": "0",
    }


def test_batching_and_tflite_add_their_flags_only_when_asked():
    flags = server_flags(
        **_flags_kwargs(batching_parameters_file="/r/config/batching.config", prefer_tflite=True)
    )
    assert "--enable_batching" in flags
    assert "--batching_parameters_file=/r/config/batching.config" in flags
    assert "--prefer_tflite_model=true" in flags
    assert {name for name in _flags(flags)} <= DOCUMENTED_FLAGS
    plain = server_flags(**_flags_kwargs())
    assert not [f for f in plain if "batching" in f or "tflite" in f]


def _docker_argv(**overrides):
    kwargs = {
        "image": "tensorflow/serving:2.19.1",
        "container_name": "harness-tfs-x",
        "rest_port": 41001,
        "grpc_port": 41002,
        "models_dir": Path("/r/models"),
        "config_dir": Path("/r/config"),
        "label": "/r",
        **overrides,
    }
    return docker_run_argv("docker", **kwargs)


def test_docker_argv_publishes_both_ports_on_loopback_and_mounts_read_only():
    flags = server_flags(**_flags_kwargs(model_config_file="/config/models.config"))
    argv = _docker_argv(flags=flags)
    assert argv[:4] == ["docker", "run", "--rm", "--pull=never"]
    assert argv[argv.index("--name") + 1] == "harness-tfs-x"
    published = [argv[i + 1] for i, a in enumerate(argv) if a == "-p"]
    assert published == ["127.0.0.1:41001:8501", "127.0.0.1:41002:8500"]
    volumes = [argv[i + 1] for i, a in enumerate(argv) if a == "-v"]
    assert volumes == ["/r/models:/models:ro", "/r/config:/config:ro"]
    image_at = argv.index("tensorflow/serving:2.19.1")
    assert argv[image_at + 1 :] == flags  # arguments after the image go to the entrypoint's server
    assert "port" not in _flags(
        flags
    )  # the image's entrypoint already passes --port=8500 --rest_api_port=8501


def test_container_names_are_valid_for_docker_and_differ_per_run_folder(tmp_path):
    a = container_name(tmp_path / "reports" / "2024-01-01T00-00-00" / "variants" / "pruned" / "serving")
    b = container_name(tmp_path / "reports" / "2024-01-01T00-00-01" / "variants" / "pruned" / "serving")
    assert a != b
    assert a == container_name(
        tmp_path / "reports" / "2024-01-01T00-00-00" / "variants" / "pruned" / "serving"
    )
    for name in (a, b, container_name(Path("/"))):
        assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", name), name
        assert name.startswith("harness-tfs-")


# ---- responses -------------------------------------------------------------------------------


def test_model_state_reads_the_status_api_and_reports_a_failed_load():
    ok = {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    assert model_state({"model_version_status": [ok]}) == ("AVAILABLE", "")
    loading = {"version": "1", "state": "LOADING", "status": {"error_code": "OK"}}
    assert model_state({"model_version_status": [loading]}) == ("LOADING", "")
    failed = {"version": "1", "state": "END", "status": {"error_code": "NOT_FOUND", "error_message": "no pb"}}
    assert model_state({"model_version_status": [failed]}) == ("END", "NOT_FOUND: no pb")
    assert model_state({}) == ("UNKNOWN", "")


def test_rest_format_defaults_to_row_and_columnar_is_accepted():
    assert TfServingOptions().rest_format == "row"
    assert TfServingOptions.from_options({"rest_format": "columnar"}).rest_format == "columnar"
    with pytest.raises(UserError, match="rest_format"):
        TfServingOptions.from_options({"rest_format": "binary"})


def test_version_output_is_parsed_into_server_and_library_versions():
    text = "TensorFlow ModelServer: 2.19.1-rc0+dev.sha.abc\nTensorFlow Library: 2.19.1\n"
    assert parse_version_text(text) == {"model_server": "2.19.1-rc0+dev.sha.abc", "tensorflow": "2.19.1"}
    assert parse_version_text("garbage") == {}


@pytest.mark.parametrize(
    "dtype", ["float32", "float64", "float16", "int64", "int32", "int8", "uint8", "bool"]
)
def test_grpc_tensors_of_every_input_dtype_read_back_the_same_in_tensorflow(dtype):
    from harness.compression.tensorflow.tf_import import import_tf

    tf, _ = import_tf()
    from tensorflow.core.framework import tensor_pb2

    from harness.serving.tfserving_grpc import fill_tensor, tensor_to_array

    array = (np.random.default_rng(0).normal(size=(3, 4, 2)) * 50).astype(dtype)
    tensor = tensor_pb2.TensorProto()
    fill_tensor(tensor, array)
    assert [d.size for d in tensor.tensor_shape.dim] == [3, 4, 2]
    from_tf = tf.make_ndarray(tensor)  # what TF Serving makes of our bytes
    assert from_tf.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(from_tf, array)
    np.testing.assert_array_equal(tensor_to_array(tensor), array)
    # and what TensorFlow writes (typed value lists for small tensors) reads back in ours
    np.testing.assert_array_equal(tensor_to_array(tf.make_tensor_proto(array[:1, :1, :1])), array[:1, :1, :1])


def test_grpc_value_lists_and_output_choice():
    from harness.compression.tensorflow.tf_import import import_tf

    import_tf()
    from tensorflow.core.framework import tensor_pb2

    from harness.serving.tfserving_grpc import pick_output, tensor_to_array

    unpacked = tensor_pb2.TensorProto(dtype=9, int64_val=[4, 5])  # DT_INT64 as value list
    unpacked.tensor_shape.dim.add(size=2)
    np.testing.assert_array_equal(tensor_to_array(unpacked), [4, 5])
    assert pick_output({"scores": 1}, None) == 1
    assert pick_output({"scores": 1, "label": 2}, "label") == 2
    with pytest.raises(RunError, match=r"outputs \['label', 'scores'\]; expected exactly one output"):
        pick_output({"scores": 1, "label": 2}, None)


# ---- model layout ----------------------------------------------------------------------------


SIGNATURE = Signature(
    inputs=(TensorSpec("inputs", (64,), "float32"),), output=OutputSpec("logits", 10), task="classification"
)


def _artifact(path: Path, fmt: str, **extra) -> ServedArtifact:
    return ServedArtifact(path=path, framework="tensorflow", format=fmt, signature=SIGNATURE, extra=extra)


def test_savedmodel_is_copied_into_a_numbered_version_folder(tmp_path):
    saved = tmp_path / "export"
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"pb")
    (saved / "variables" / "variables.index").write_bytes(b"ix")
    version_dir = layout_model(_artifact(saved, "savedmodel"), tmp_path / "models", "digits")
    assert version_dir == tmp_path / "models" / "digits" / "1"
    assert (version_dir / "saved_model.pb").read_bytes() == b"pb"
    assert (version_dir / "variables" / "variables.index").read_bytes() == b"ix"


def test_tflite_file_becomes_model_tflite_in_the_version_folder(tmp_path):
    source = tmp_path / "ptq_dynamic.tflite"
    source.write_bytes(b"TFL3")
    version_dir = layout_model(_artifact(source, "tflite"), tmp_path / "models", "model")
    assert sorted(p.name for p in version_dir.iterdir()) == ["model.tflite"]
    assert (version_dir / "model.tflite").read_bytes() == b"TFL3"


def test_a_folder_without_saved_model_pb_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match=r"no saved_model\.pb"):
        layout_model(_artifact(tmp_path / "empty", "savedmodel"), tmp_path / "models", "model")


# ---- availability and teardown ---------------------------------------------------------------


class FakeRunner:
    """Records short docker/binary commands and answers them from a table of (argv prefix, code)."""

    def __init__(self, codes: dict[tuple[str, ...], int] | None = None, stdout: str = "") -> None:
        self.calls: list[list[str]] = []
        self.codes = codes or {}
        self.stdout = stdout

    def __call__(self, argv: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append(argv)
        code = next((c for prefix, c in self.codes.items() if tuple(argv[1 : 1 + len(prefix)]) == prefix), 0)
        return subprocess.CompletedProcess(
            argv, code, self.stdout, "Cannot connect to the Docker daemon" if code else ""
        )


def _spec(**options) -> ServingSpec:
    return ServingSpec(target="tfserving", startup_timeout_s=20, options=options)


def test_missing_binary_gives_a_one_line_reason_and_start_raises_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    reason = TfServingTarget.unavailable_reason(_spec())
    assert reason is not None
    assert reason.startswith("tfserving: tensorflow_model_server not found on PATH; install it from")
    assert "mode: docker|remote" in reason
    assert "\n" not in reason
    saved = tmp_path / "export"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"pb")
    target = TfServingTarget(_spec(), tmp_path / "run")
    with pytest.raises(UserError) as info:
        target.start(_artifact(saved, "savedmodel"))
    assert str(info.value) == reason


def test_a_configured_binary_that_is_not_executable_is_named(tmp_path):
    reason = TfServingTarget.unavailable_reason(_spec(binary=str(tmp_path / "nope")))
    assert reason == f"tfserving: serving.options.binary {tmp_path / 'nope'} is not an executable file"


def _fake_docker(tmp_path: Path, monkeypatch) -> Path:
    """A `docker` on PATH whose `run` fails like a daemon refusing the container."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(
        "#!/bin/sh\necho 'docker: Error response from daemon: driver failed programming' >&2\nexit 125\n"
    )
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return docker


def test_docker_mode_reports_an_unreachable_daemon_and_a_missing_image(tmp_path, monkeypatch):
    _fake_docker(tmp_path, monkeypatch)
    no_daemon = TfServingTarget.unavailable_reason(_spec(mode="docker"), runner=FakeRunner({("info",): 1}))
    assert no_daemon == "tfserving: the docker daemon is not reachable (Cannot connect to the Docker daemon)"
    no_image = TfServingTarget.unavailable_reason(_spec(mode="docker"), runner=FakeRunner({("image",): 1}))
    assert (
        no_image == f"tfserving: docker image {DEFAULT_IMAGE} is not here; run `docker pull {DEFAULT_IMAGE}`"
    )
    assert TfServingTarget.unavailable_reason(_spec(mode="docker"), runner=FakeRunner()) is None


def test_a_failed_docker_start_still_removes_the_container(tmp_path, monkeypatch):
    docker = _fake_docker(tmp_path, monkeypatch)
    saved = tmp_path / "export"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"pb")
    runner = FakeRunner()
    target = TfServingTarget(_spec(mode="docker"), tmp_path / "run" / "serving", runner=runner)
    with pytest.raises(RunError) as err:
        target.start(_artifact(saved, "savedmodel"))
    assert "\n" not in str(err.value), "one line; docker's own words are in the log tail for the report"
    assert "Error response from daemon" in f"{err.value}\n{err.value.log_tail}"
    name = container_name(tmp_path / "run" / "serving")
    removals = [call for call in runner.calls if call == [str(docker), "rm", "-f", name]]
    assert len(removals) == 2  # a leftover before the run, and the failed container after it
    assert runner.calls[-1] == [str(docker), "rm", "-f", name]
    assert target.endpoint is None
    target.stop()  # safe after a failed start
    assert target.describe()["container"] == name


def test_binary_launch_writes_its_files_keeps_a_deep_socket_path_short_and_cleans_up(tmp_path):
    binary = tmp_path / "tensorflow_model_server"
    binary.write_text("#!/bin/sh\nexec sleep 30\n")  # not a server: a process to launch and stop
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    runner = FakeRunner(stdout="TensorFlow ModelServer: 2.19.1\nTensorFlow Library: 2.19.1\n")
    work_dir = tmp_path / ("deep" * 30) / "tfserving"
    spec = ServingSpec(target="tfserving", batch_size=4, max_batch_delay_ms=2)
    server = TfServingProcess(TfServingOptions(binary=str(binary)), spec, work_dir, runner)
    server.launch(prefer_tflite=True, remaining_s=lambda: 10.0)
    try:
        assert server.process is not None
        assert server.process.is_alive()
        assert runner.calls == [[str(binary), "--version"]]
        assert server.versions == {"model_server": "2.19.1", "tensorflow": "2.19.1"}
        socket_path = server.grpc_socket
        assert socket_path is not None
        assert len(str(socket_path)) <= 107
        assert work_dir not in socket_path.parents
        command = _flags((work_dir / "config" / "command.txt").read_text().split())
        assert command["grpc_socket_path"] == str(socket_path)
        assert command["batching_parameters_file"] == str(work_dir / "config" / "batching.config")
        assert command["prefer_tflite_model"] == "true"
        assert "enable_batching" in command
        assert (work_dir / "config" / "batching.config").is_file()
        assert server.pid() == server.process.pid
    finally:
        server.stop()
    assert server.process is None
    assert not socket_path.parent.exists()  # the private temp dir is gone


def test_a_remote_server_that_never_answers_fails_at_the_deadline_saying_what_it_saw(tmp_path):
    from harness.processes import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    spec = ServingSpec(target="tfserving", startup_timeout_s=0.5, options={"mode": "remote", "url": url})
    target = TfServingTarget(spec, tmp_path)
    saved = tmp_path / "export"
    saved.mkdir()
    with pytest.raises(
        RunError, match=r"has no AVAILABLE version of model 'model' after 0s; last: ConnectionError"
    ):
        target.start(_artifact(saved, "savedmodel"))
    assert target.endpoint is None
    assert target.server_metrics_url is None
    assert target.server_pid is None


def test_a_tflite_whose_input_dtype_contradicts_the_signature_is_refused_before_anything_starts(tmp_path):
    source = tmp_path / "int8.tflite"
    source.write_bytes(b"TFL3")
    target = TfServingTarget(_spec(), tmp_path / "run", runner=FakeRunner())
    with pytest.raises(UserError, match="takes int8 input but its signature says inputs: float32"):
        target.start(_artifact(source, "tflite", input_dtype="int8"))
    with pytest.raises(UserError, match=r"not 'torch\.export'"):
        target.start(_artifact(source, "torch.export"))


def test_describe_before_start_states_bindings_batching_and_the_load_protocol(tmp_path):
    spec = ServingSpec(target="tfserving", workers=2, batch_size=8, max_batch_delay_ms=3, options={})
    facts = TfServingTarget(spec, tmp_path).describe()
    assert facts["bind_address"]["rest"].startswith("all interfaces")
    assert facts["bind_address"]["grpc"].startswith("unix socket")
    assert facts["batching"] == {
        "enabled": True,
        "max_batch_size": 8,
        "batch_timeout_micros": 3000,
        "num_batch_threads": 2,
        "max_enqueued_batches": 1000,
    }
    assert facts["protocol"]["load"].startswith("rest")
    assert facts["prometheus_path"] == PROMETHEUS_PATH
    remote = TfServingTarget(_spec(mode="remote", url="http://10.0.0.5:8501"), tmp_path).describe()
    assert remote["rest_url"] == "http://10.0.0.5:8501"
    assert remote["prometheus_path"] is None


def test_the_target_imports_neither_tensorflow_nor_grpc_and_its_options_not_even_numpy():
    code = (
        "import sys, harness.serving.tfserving_config; print('numpy' in sys.modules); "
        "import harness.serving.tfserving; print('tensorflow' in sys.modules, 'grpc' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


# ---- defect 9 and 19: option values, listeners, log level ------------------------------------


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"binary": "/opt/tfs\n--port=8500"}, "binary"),
        ({"mode": "docker", "image": "tensorflow/serving\r:latest"}, "image"),
        ({"mode": "remote", "url": "http://10.0.0.5:8501\n"}, "url"),
        ({"extra_flags": ["--tensorflow_intra_op_parallelism=1\n--port=8500"]}, "extra_flags.0"),
        ({"extra_flags": ["--file_system_poll_wait_seconds=1\x00"]}, "extra_flags.0"),
    ],
)
def test_option_values_with_control_characters_are_refused_naming_the_key(options, key):
    with pytest.raises(UserError) as info:
        TfServingOptions.from_options(options)
    message = str(info.value)
    assert f"{key}: " in message
    assert "control characters" in message
    assert "\n" not in message


def test_launch_refuses_a_control_character_in_the_server_argv_even_past_the_options_model(tmp_path):
    sneaked = TfServingOptions.model_construct(
        **{**TfServingOptions().model_dump(), "extra_flags": ["--x=1\n--port=8500"]}
    )
    binary = tmp_path / "tensorflow_model_server"
    binary.write_text("#!/bin/sh\nexec sleep 30\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    sneaked = sneaked.model_copy(update={"binary": str(binary)})
    server = TfServingProcess(sneaked, ServingSpec(target="tfserving"), tmp_path / "tfs", FakeRunner())
    with pytest.raises(UserError, match="tensorflow_model_server argument: refusing to write a control"):
        server.launch(prefer_tflite=False, remaining_s=lambda: 10.0)
    assert server.process is None


# A stand-in server: REST on all interfaces like TF Serving, optionally one more TCP listener on
# 0.0.0.0, and it records the log environment it was given.
FAKE_SERVER = """#!{python}
import os, socket, sys, time
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
rest = socket.socket(socket.AF_INET6)
rest.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
rest.bind(("::", int(args["rest_api_port"])))
rest.listen()
extra = None
if os.environ.get("FAKE_EXTRA_LISTENER"):
    extra = socket.socket()
    extra.bind(("0.0.0.0", 0))
    extra.listen()
with open(os.environ["FAKE_ENV_OUT"], "w") as f:
    f.write(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "unset"))
time.sleep(60)
"""


def _fake_server(tmp_path: Path, monkeypatch, *, extra_listener: bool) -> tuple[Path, Path]:
    binary = tmp_path / "tensorflow_model_server"
    binary.write_text(FAKE_SERVER.format(python=sys.executable))
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    env_out = tmp_path / "env.txt"
    monkeypatch.setenv("FAKE_ENV_OUT", str(env_out))
    if extra_listener:
        monkeypatch.setenv("FAKE_EXTRA_LISTENER", "1")
    return binary, env_out


@pytest.mark.parametrize(("level", "tf_level"), [("WARN", "1"), ("INFO", "0"), ("ERROR", "2")])
def test_binary_server_runs_at_the_scenario_log_level_and_may_listen_on_all_interfaces_for_rest(
    tmp_path, monkeypatch, level, tf_level
):
    binary, env_out = _fake_server(tmp_path, monkeypatch, extra_listener=False)
    spec = ServingSpec(target="tfserving", log_level=level)
    server = TfServingProcess(TfServingOptions(binary=str(binary)), spec, tmp_path / "tfs", FakeRunner())
    server.launch(prefer_tflite=False, remaining_s=lambda: 10.0)
    try:
        assert server.process is not None
        server.process.wait_until(env_out.exists, timeout_s=20, poll_s=0.05)  # runs the listener check
        assert env_out.read_text() == tf_level
        assert server.facts()["log_level"] == level
        assert isinstance(server.facts()["log_bytes"], int)
    finally:
        server.stop()


def test_binary_server_with_another_listener_on_all_interfaces_fails_the_start_naming_it(
    tmp_path, monkeypatch
):
    binary, env_out = _fake_server(tmp_path, monkeypatch, extra_listener=True)
    server = TfServingProcess(
        TfServingOptions(binary=str(binary)), ServingSpec(target="tfserving"), tmp_path / "tfs", FakeRunner()
    )
    server.launch(prefer_tflite=False, remaining_s=lambda: 10.0)
    try:
        assert server.process is not None
        with pytest.raises(
            RunError,
            match=r"tensorflow_model_server listens where it was not told to: 0\.0\.0\.0:\d+ \(pid \d+",
        ):
            server.process.wait_until(env_out.exists, timeout_s=20, poll_s=0.05)
    finally:
        server.stop()


def test_docker_argv_passes_the_log_environment_to_the_container():
    argv = _docker_argv(flags=["--x=1"], env=log_env("WARN"))
    image_at = argv.index("tensorflow/serving:2.19.1")
    passed = [argv[i + 1] for i, a in enumerate(argv[:image_at]) if a == "-e"]
    assert passed == ["TF_CPP_MAX_VLOG_LEVEL=0", "TF_CPP_MIN_LOG_LEVEL=1"]
    assert log_env("DEBUG") == {"TF_CPP_MAX_VLOG_LEVEL": "1", "TF_CPP_MIN_LOG_LEVEL": "0"}
