"""TorchServe config text, argv and environment builders, and the Java check; no Java needed."""

from __future__ import annotations

import itertools
import json
import stat
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.artifacts import ServedArtifact
from harness.data.tensors import OutputSpec, Signature, TensorSpec
from harness.errors import RunError, UserError
from harness.scenario.schema import ServingSpec
from harness.serving.listeners import ListeningSocket, unexpected_listeners
from harness.serving.torchserve import TorchServeTarget, find_java
from harness.serving.torchserve_config import (
    JAVA_HINT,
    TorchServeOptions,
    TorchServePorts,
    archiver_argv,
    config_properties,
    default_torch_threads,
    handler_metadata,
    log4j2_config,
    parse_java_major,
    server_env,
    socket_dir_fits,
    torchserve_argv,
)

SIGNATURE = Signature(
    inputs=(TensorSpec("inputs", (64,), "float32"),), output=OutputSpec("logits", 10), task="classification"
)
PORTS = TorchServePorts(
    inference=41001, management=41002, metrics=41003, grpc_inference=41004, grpc_management=41005
)


def _properties(text: str) -> dict[str, str]:
    props = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            props[key] = value
    return props


def _config(**overrides) -> dict[str, str]:
    kwargs = dict(
        ports=PORTS,
        model_store=Path("/runs/r1/torchserve/model-store"),
        model_name="model",
        mar_name="model.mar",
        workers=2,
        batch_size=8,
        max_batch_delay_ms=7,
        options=TorchServeOptions(),
    )
    kwargs.update(overrides)
    return _properties(config_properties(**kwargs))


def test_config_binds_all_five_listeners_to_loopback_on_the_picked_ports():
    props = _config()
    assert props["inference_address"] == "http://127.0.0.1:41001"
    assert props["management_address"] == "http://127.0.0.1:41002"
    assert props["metrics_address"] == "http://127.0.0.1:41003"
    assert (props["grpc_inference_address"], props["grpc_inference_port"]) == ("127.0.0.1", "41004")
    assert (props["grpc_management_address"], props["grpc_management_port"]) == ("127.0.0.1", "41005")
    assert "0.0.0.0" not in config_properties(
        ports=PORTS,
        model_store=Path("/s"),
        model_name="m",
        mar_name="m.mar",
        workers=1,
        batch_size=1,
        max_batch_delay_ms=0,
        options=TorchServeOptions(),
    )


def test_config_disables_token_auth_model_api_and_per_model_pip_installs():
    props = _config()
    assert props["disable_token_authorization"] == "true"
    assert props["enable_model_api"] == "false"
    assert props["install_py_dep_per_model"] == "false"
    assert props["enable_envvars_config"] == "false"


def test_config_registers_the_model_with_the_spec_batching_and_workers():
    props = _config(workers=3, batch_size=16, max_batch_delay_ms=25)
    # name=file: registered under our name whatever name a user's archive gives itself
    assert props["load_models"] == "model=model.mar"
    assert props["default_workers_per_model"] == "3"
    assert props["model_store"] == "/runs/r1/torchserve/model-store"
    registered = json.loads(props["models"])["model"]["1.0"]
    assert registered["marName"] == "model.mar"
    assert registered["batchSize"] == 16
    assert registered["maxBatchDelay"] == 25
    assert registered["minWorkers"] == registered["maxWorkers"] == 3
    assert registered["defaultVersion"] is True


def test_config_models_json_stays_on_one_properties_line():
    text = config_properties(
        ports=PORTS,
        model_store=Path("/s"),
        model_name="m",
        mar_name="m.mar",
        workers=1,
        batch_size=2,
        max_batch_delay_ms=3,
        options=TorchServeOptions(),
    )
    (models_line,) = [line for line in text.splitlines() if line.startswith("models=")]
    assert json.loads(models_line.removeprefix("models="))["m"]["1.0"]["batchSize"] == 2


def test_zero_batch_delay_is_sent_as_one_ms_because_torchserve_reads_zero_as_its_100ms_default():
    assert json.loads(_config(max_batch_delay_ms=0)["models"])["model"]["1.0"]["maxBatchDelay"] == 1
    assert json.loads(_config(max_batch_delay_ms=9)["models"])["model"]["1.0"]["maxBatchDelay"] == 9


def test_config_carries_options_and_adds_vmargs_only_when_given():
    props = _config(options=TorchServeOptions(response_timeout_s=30, job_queue_size=50))
    assert props["default_response_timeout"] == "30"
    assert json.loads(props["models"])["model"]["1.0"]["responseTimeout"] == 30
    assert props["job_queue_size"] == "50"
    assert props["max_request_size"] == props["max_response_size"] == str(100 * 1024 * 1024)
    assert _config(options=TorchServeOptions(max_request_mb=7))["max_request_size"] == str(7 * 1024 * 1024)
    assert "vmargs" not in props
    assert _config(options=TorchServeOptions(vmargs="-Xmx1g"))["vmargs"] == "-Xmx1g"


def test_config_escapes_backslashes_in_paths_for_java_properties():
    assert _config(model_store=Path("/odd\\dir"))["model_store"] == "/odd\\\\dir"


def test_ports_pick_five_distinct_ports_even_when_free_port_repeats():
    answers = iter([5000, 5000, 5001, 5001, 5002, 5003, 5004])
    ports = TorchServePorts.pick(lambda: next(answers))
    assert sorted(ports.as_dict().values()) == [5000, 5001, 5002, 5003, 5004]


def test_torchserve_argv_runs_the_launcher_in_the_foreground_with_our_python_and_no_snapshots():
    argv = torchserve_argv(
        "/venv/bin/python",
        config_path=Path("/r/config.properties"),
        model_store=Path("/r/ms"),
        log_config=Path("/r/log4j2.xml"),
    )
    assert argv[:3] == ["/venv/bin/python", "-m", "ts.model_server"]
    assert "--start" in argv
    assert "--foreground" in argv
    assert argv[argv.index("--ts-config") + 1] == "/r/config.properties"
    assert argv[argv.index("--model-store") + 1] == "/r/ms"
    assert "--ncs" in argv
    assert "--disable-token-auth" in argv
    assert argv[argv.index("--log-config") + 1] == "/r/log4j2.xml"


def test_archiver_argv_uses_the_same_interpreter_and_ships_handler_and_metadata():
    argv = archiver_argv(
        "/venv/bin/python",
        model_name="model",
        serialized_file=Path("/a/m.pt2"),
        handler=Path("/h/torchserve_handler.py"),
        extra_files=[Path("/b/harness_model.json"), Path("/b/other.txt")],
        export_path=Path("/r/ms"),
    )
    assert argv[0] == "/venv/bin/python"
    assert "model_archiver.model_packaging" in argv[2]
    flags = dict(itertools.pairwise(argv))  # each flag -> the word after it
    assert flags["--model-name"] == "model"
    assert flags["--serialized-file"] == "/a/m.pt2"
    assert flags["--handler"] == "/h/torchserve_handler.py"
    assert flags["--extra-files"] == "/b/harness_model.json,/b/other.txt"
    assert flags["--export-path"] == "/r/ms"
    assert "--force" in argv


def test_server_env_puts_the_venv_first_keeps_temp_and_logs_private_and_drops_ts_overrides():
    base = {"PATH": "/usr/bin:/bin", "TS_CONFIG_FILE": "/elsewhere.properties", "HOME": "/home/u"}
    env = server_env(base, python="/venv/bin/python", tmp_dir=Path("/r/tmp"), log_dir=Path("/r/logs"))
    assert env["PATH"].split(":")[0] == "/venv/bin"
    assert env["PATH"].endswith("/usr/bin:/bin")
    assert env["TMPDIR"] == env["TEMP"] == "/r/tmp"
    assert env["LOG_LOCATION"] == env["METRICS_LOCATION"] == "/r/logs"
    assert "TS_CONFIG_FILE" not in env
    assert env["HOME"] == "/home/u"
    assert base["PATH"] == "/usr/bin:/bin", "the caller's mapping is not modified"


@pytest.mark.parametrize(
    ("text", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ('openjdk version "11.0.2" 2019-01-15', 11),
        ("command not found", None),
    ],
)
def test_parse_java_major_reads_old_and_new_version_schemes(text, major):
    assert parse_java_major(text) == major


def test_socket_dir_fits_rejects_paths_past_the_unix_socket_limit():
    assert socket_dir_fits(Path("/tmp/run/torchserve/tmp"))
    assert not socket_dir_fits(Path("/" + "d" * 100))


def test_default_torch_threads_split_cpus_between_workers():
    assert default_torch_threads(1, 8) == 8
    assert default_torch_threads(2, 8) == 4
    assert default_torch_threads(4, 2) == 1
    assert default_torch_threads(1, None) == 1


def test_unknown_or_bad_option_is_a_one_line_user_error():
    with pytest.raises(UserError, match="batch_sise"):
        TorchServeOptions.from_options({"batch_sise": 4})
    with pytest.raises(UserError, match="rows_per_request"):
        TorchServeTarget(ServingSpec(target="torchserve", options={"rows_per_request": 0}), Path("/tmp/x"))


def _fake_java(tmp_path: Path, version_line: str) -> Path:
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    return home


def test_java_older_than_17_is_a_run_error_with_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(_fake_java(tmp_path, 'openjdk version "11.0.2" 2019-01-15')))
    with pytest.raises(RunError) as info:
        find_java()
    assert JAVA_HINT in str(info.value)
    assert "Java 11" in str(info.value)


def test_missing_java_is_a_run_error_with_the_install_hint(monkeypatch, tmp_path):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RunError, match="Java 17"):
        find_java()


def test_java_17_is_accepted_and_its_version_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(_fake_java(tmp_path, 'openjdk version "17.0.9" 2023-10-17')))
    java, version = find_java()
    assert java.endswith("/jdk/bin/java")
    assert version == "17.0.9"


def test_start_with_old_java_fails_before_launching_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(_fake_java(tmp_path, 'java version "1.8.0_392"')))
    model = tmp_path / "m.pt2"
    model.write_bytes(b"not used")
    art = ServedArtifact(path=model, framework="torch", format="torch.export", signature=SIGNATURE)
    target = TorchServeTarget(ServingSpec(target="torchserve"), tmp_path / "run")
    with pytest.raises(RunError, match="Java 17"), target:
        target.start(art)
    assert not (tmp_path / "run" / "torchserve" / "logs" / "torchserve-console.log").exists()


def test_start_rejects_formats_torchserve_cannot_serve(tmp_path):
    art = ServedArtifact(
        path=tmp_path / "m.tflite", framework="tensorflow", format="tflite", signature=SIGNATURE
    )
    with pytest.raises(UserError, match="tflite"):
        TorchServeTarget(ServingSpec(target="torchserve"), tmp_path).start(art)


def test_describe_before_start_reports_settings_and_disabled_token_auth(tmp_path):
    spec = ServingSpec(target="torchserve", workers=2, batch_size=8, max_batch_delay_ms=3)
    target = TorchServeTarget(spec, tmp_path)
    facts = target.describe()
    assert facts["target"] == "torchserve"
    assert (facts["workers"], facts["batch_size"], facts["max_batch_delay_ms"]) == (2, 8, 3)
    zero_delay = TorchServeTarget(ServingSpec(target="torchserve", max_batch_delay_ms=0), tmp_path).describe()
    assert (zero_delay["max_batch_delay_ms"], zero_delay["max_batch_delay_ms_requested"]) == (1, 0)
    assert facts["token_auth"] == "disabled (bound to 127.0.0.1)"
    assert facts["python"] == sys.executable
    assert target.endpoint is None
    target.stop()
    target.stop()  # idempotent, and safe before start


def test_deep_run_folder_gets_a_short_private_temp_dir_that_stop_removes(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    target = TorchServeTarget(ServingSpec(target="torchserve"), deep)
    tmp_dir = target._prepare_dirs()
    assert socket_dir_fits(tmp_dir)
    assert not str(tmp_dir).startswith(str(deep))
    assert tmp_dir.is_dir()
    target.stop()
    assert not tmp_dir.exists()


def test_shallow_run_folder_keeps_the_temp_dir_inside_it(tmp_path):
    target = TorchServeTarget(ServingSpec(target="torchserve"), tmp_path / "run")
    assert target._prepare_dirs() == tmp_path / "run" / "torchserve" / "tmp"
    target.stop()
    assert (tmp_path / "run" / "torchserve" / "tmp").is_dir(), "run-folder files are kept for the report"


def test_relative_run_folder_is_made_absolute_because_torchserve_runs_in_its_work_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = TorchServeTarget(ServingSpec(target="torchserve"), Path("reports/run1"))
    assert target.work_dir == tmp_path / "reports" / "run1" / "torchserve"
    assert Path(target.describe()["config_path"]).is_absolute()


# ---- defect 9: no key injection through option values, listeners checked ----------------------

INJECTION = "-Xmx1g\nmetrics_address=http://0.0.0.0:8082"


@pytest.mark.parametrize("bad", [INJECTION, "-Xmx1g\r-Xms1g", "-Xmx1g\x00", "-Xmx1g\u2028x", "-Xmx1g\x85"])
def test_vmargs_with_a_control_character_is_a_one_line_user_error_naming_the_key(bad):
    with pytest.raises(UserError) as info:
        TorchServeOptions.from_options({"vmargs": bad})
    message = str(info.value)
    assert "vmargs" in message
    assert "control character" in message
    assert "\n" not in message


def test_harness_validate_refuses_a_vmargs_line_break_naming_the_key(tmp_path):
    from harness.scenario.loader import load_scenario
    from tests.conftest import scenario_dict

    path = tmp_path / "injected.yaml"
    data = scenario_dict(serving={"target": "torchserve", "options": {"vmargs": INJECTION}})
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as info:
        load_scenario(path)  # what `harness validate` runs
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert "serving.options.vmargs" in message
    assert "control characters" in message


def test_config_writer_refuses_a_control_character_even_past_the_options_model():
    sneaked = TorchServeOptions.model_construct(vmargs=INJECTION, response_timeout_s=120, job_queue_size=10)
    with pytest.raises(UserError, match=r"config.properties vmargs: refusing to write a control character"):
        _config(options=sneaked)
    with pytest.raises(UserError, match="model_store"):
        _config(model_store=Path("/runs/evil\nmetrics_address=http:/0.0.0.0:1"))


def test_plain_vmargs_still_reach_the_config():
    assert _config(options=TorchServeOptions(vmargs="-Xmx1g -XX:+UseG1GC"))["vmargs"] == "-Xmx1g -XX:+UseG1GC"


def _sock(ip: str, port: int, pid: int = 10, name: str = "java") -> ListeningSocket:
    return ListeningSocket(pid=pid, process=name, ip=ip, port=port)


def test_listener_check_accepts_loopback_on_the_chosen_ports_in_either_socket_family():
    sockets = [_sock("127.0.0.1", 41001), _sock("::ffff:127.0.0.1", 41002)]
    assert unexpected_listeners(sockets, address="127.0.0.1", ports=[41001, 41002, 41003]) == []


def test_listener_check_names_every_socket_on_another_address_or_port_with_its_process():
    sockets = [
        _sock("127.0.0.1", 41001),
        _sock("0.0.0.0", 41003, pid=77, name="java"),
        _sock("::", 41004, pid=78, name="java"),
        _sock("127.0.0.1", 5005, pid=79, name="python3"),
    ]
    assert unexpected_listeners(sockets, address="127.0.0.1", ports=[41001, 41003, 41004]) == [
        "0.0.0.0:41003 (pid 77, java)",
        "127.0.0.1:5005 (pid 79, python3)",
        "[::]:41004 (pid 78, java)",
    ]


def test_listener_check_allows_a_port_on_any_address_only_when_told():
    sockets = [_sock("::", 8501, name="tensorflow_model_server"), _sock("0.0.0.0", 8500)]
    wrong = unexpected_listeners(sockets, address="127.0.0.1", ports=(), any_address_ports=[8501])
    assert wrong == ["0.0.0.0:8500 (pid 10, java)"]


def test_check_listeners_raises_a_run_error_naming_the_address_and_process(monkeypatch):
    from harness.serving import listeners

    monkeypatch.setattr(listeners, "listening_sockets", lambda pid: [_sock("0.0.0.0", 41003, pid=pid)])
    with pytest.raises(
        RunError, match=r"torchserve listens where it was not told to: 0\.0\.0\.0:41003 \(pid 5, java\)"
    ):
        listeners.check_listeners("torchserve", 5, address="127.0.0.1", ports=[41003])


# ---- defect 19: server log level --------------------------------------------------------------


def _levels(xml_text: str) -> dict[str, str]:
    root = ET.fromstring(xml_text)
    levels = {logger.get("name"): logger.get("level") for logger in root.iter("Logger")}
    levels["root"] = root.find("Loggers/Root").get("level")
    return levels


def test_log4j2_config_is_warn_by_default_and_turns_the_access_log_off():
    spec = ServingSpec(target="torchserve")
    assert spec.log_level == "WARN"
    levels = _levels(log4j2_config(spec.log_level, Path("/r/logs")))
    assert levels["ACCESS_LOG"] == "warn"  # access lines are INFO only: none is written
    assert levels["org.pytorch.serve"] == levels["MODEL_LOG"] == levels["root"] == "warn"
    assert levels["TS_METRICS"] == levels["MODEL_METRICS"] == "warn"


@pytest.mark.parametrize(("level", "frontend"), [("DEBUG", "debug"), ("INFO", "info"), ("ERROR", "error")])
def test_log4j2_config_follows_the_scenario_level(level, frontend):
    levels = _levels(log4j2_config(level, Path("/r/logs")))
    assert levels["org.pytorch.serve"] == frontend
    assert levels["ACCESS_LOG"] == ("error" if level == "ERROR" else "info")


def test_log4j2_config_writes_every_file_into_the_run_folder_and_escapes_the_path():
    text = log4j2_config("INFO", Path('/r/a"b&c/logs'))
    root = ET.fromstring(text)
    files = {a.get("name"): a.get("fileName") for a in root.iter("File")}
    assert files["access_log"] == '/r/a"b&c/logs/access_log.log'
    assert set(files) == {"access_log", "model_log", "model_metrics", "ts_log", "ts_metrics"}


def test_unknown_log_level_is_refused_by_the_schema():
    with pytest.raises(ValueError, match="log_level"):
        ServingSpec(target="torchserve", log_level="VERBOSE")


def test_handler_metadata_carries_the_log_level_and_the_signature():
    meta = handler_metadata(
        artifact_format="torch.export", signature=SIGNATURE.as_dict(), torch_threads=1, log_level="INFO"
    )
    assert meta["log_level"] == "INFO"
    assert meta["signature"]["inputs"] == [{"name": "inputs", "shape": [64], "dtype": "float32"}]
    assert Signature.from_dict(json.loads(json.dumps(meta))["signature"]) == SIGNATURE


# ---- request formats and users' own handlers -----------------------------------------------------


def test_request_options_default_to_auto_encoding_and_the_harness_handlers_predictions():
    options = TorchServeOptions()
    assert options.encoding == "auto"
    assert (options.handler, options.archive, options.request_template) == (None, None, None)
    assert options.output_path == "predictions"
    assert options.content_type == "application/json"
    assert "1,000 numbers" in TorchServeOptions.model_fields["encoding"].description


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"handler": "h.py", "archive": "m.mar"}, "handler and archive exclude each other"),
        ({"handler": "h.txt"}, "handler must be a .py file"),
        ({"archive": "m.zip"}, "archive must be a .mar file"),
        ({"request_template": '{"data": 1}'}, "request_template: it has no placeholder"),
        ({"request_template": "{{rows}}"}, "unknown placeholder {{rows}}"),
        (
            {"request_template": "{{instances}}", "encoding": "binary"},
            "encoding and request_template exclude",
        ),
        ({"content_type": "text/plain"}, "content_type is only used with request_template"),
        ({"handler": "h.py", "inject_delay_ms": 5}, "inject_delay_ms is a feature of the harness handler"),
        ({"output_path": "outputs..probs"}, "output_path"),
        ({"encoding": "protobuf"}, "encoding"),
    ],
)
def test_bad_request_options_are_one_line_user_errors(options, message):
    with pytest.raises(UserError) as info:
        TorchServeOptions.from_options(options)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_user_files_are_relative_to_the_scenario_folder_and_must_exist(tmp_path, monkeypatch):
    scenario_dir = tmp_path / "scenarios"
    (scenario_dir / "serve").mkdir(parents=True)
    (scenario_dir / "serve" / "handler.py").write_text("")
    options = TorchServeOptions.from_options({"handler": "serve/handler.py"})
    assert options.user_file(scenario_dir) == scenario_dir / "serve" / "handler.py"
    options.check_paths(scenario_dir)
    monkeypatch.chdir(scenario_dir)
    assert options.user_file(None) == scenario_dir / "serve" / "handler.py"  # no scenario: the cwd
    assert TorchServeOptions().user_file(scenario_dir) is None
    missing = TorchServeOptions.from_options({"archive": "gone.mar"})
    with pytest.raises(UserError, match=r"serving.options.archive: .*gone.mar is not a file"):
        missing.check_paths(scenario_dir)


def test_start_with_a_missing_user_handler_fails_before_launching_anything(tmp_path):
    model = tmp_path / "m.pt2"
    model.write_bytes(b"not used")
    art = ServedArtifact(path=model, framework="torch", format="torch.export", signature=SIGNATURE)
    spec = ServingSpec(target="torchserve", options={"handler": "mine.py"})
    target = TorchServeTarget(spec, tmp_path / "run", scenario_dir=tmp_path)
    with pytest.raises(UserError, match=r"serving\.options\.handler"), target:
        target.start(art)
    assert not (tmp_path / "run" / "torchserve" / "logs").exists()


def test_a_template_naming_an_input_the_model_lacks_fails_start_naming_it(tmp_path):
    model = tmp_path / "m.pt2"
    model.write_bytes(b"not used")
    art = ServedArtifact(path=model, framework="torch", format="torch.export", signature=SIGNATURE)
    spec = ServingSpec(target="torchserve", options={"request_template": '{"x": {{inputs.pixels}}}'})
    with pytest.raises(
        UserError, match=r"\{\{inputs.pixels\}\} names no input; the model takes inputs: float32\[64\]"
    ):
        TorchServeTarget(spec, tmp_path / "run").start(art)


def test_encode_requests_before_start_is_a_run_error(tmp_path):
    target = TorchServeTarget(ServingSpec(target="torchserve"), tmp_path)
    with pytest.raises(RunError, match="not started"):
        target.encode_requests({"inputs": np.zeros((2, 64), np.float32)}, 1)


def test_describe_reports_log_bytes_of_the_server_log_files(tmp_path):
    target = TorchServeTarget(ServingSpec(target="torchserve"), tmp_path / "run")
    assert target.describe()["log_bytes"] == 0
    target.log_dir.mkdir(parents=True)
    (target.log_dir / "torchserve-console.log").write_bytes(b"x" * 10)
    (target.log_dir / "torchserve-console.1.log").write_bytes(b"x" * 5)
    (target.log_dir / "access_log.log").write_bytes(b"x" * 100)
    (target.log_dir / "unrelated.txt").write_bytes(b"x" * 1000)
    assert target.describe()["log_bytes"] == 115
    assert target.describe()["log_level"] == "WARN"
