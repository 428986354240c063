"""`load.generator`: which engine sends HTTP, what it refuses, and building the native engine."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness.errors import RunError, UserError
from harness.load import native_build
from harness.load.drivers import http_driver
from harness.load.locust_driver import LocustDriver
from harness.load.native_driver import NativeDriver, http_requests
from harness.run.baseline import variant_config_ids
from harness.scenario.load_spec import LoadSpec
from harness.scenario.loader import load_scenario
from harness.serving.base import EncodedRequests, HttpEndpoint
from tests.conftest import load_error, scenario_dict


def _native(**load: Any) -> dict[str, Any]:
    data = scenario_dict()
    data["serving"]["target"] = "torchserve"
    data["load"].update(generator="native", **load)
    return data


def test_locust_is_the_default_and_each_generator_gets_its_driver():
    assert LoadSpec().generator == "locust"
    assert type(http_driver(LoadSpec())) is LocustDriver
    assert type(http_driver(LoadSpec(generator="native"))) is NativeDriver


@pytest.mark.parametrize(
    ("load", "says"),
    [
        ({"workers": 1}, "generator 'native' is one process: workers and remote_workers"),
        ({"remote_workers": 1}, "generator 'native' is one process: workers and remote_workers"),
        ({"client": "fasthttp"}, "client 'fasthttp' is a Locust user's HTTP client"),
    ],
)
def test_what_only_locust_has_is_refused_with_the_native_engine(write_scenario, load, says):
    assert says in load_error(write_scenario(_native(**load)))


def test_the_in_process_target_refuses_the_native_engine_naming_the_key(write_scenario):
    data = _native()
    data["serving"]["target"] = "inprocess"
    message = load_error(write_scenario(data))
    assert "load.generator: the in-process target is called from the harness's own threads" in message


def test_no_compiler_and_no_built_engine_is_refused_before_any_work(write_scenario, monkeypatch):
    monkeypatch.setattr("harness.scenario.checks.compiler", lambda: None)
    monkeypatch.setattr("harness.scenario.checks.native_built", lambda: False)
    assert "load.generator: native builds its engine from C source once" in load_error(
        write_scenario(_native())
    )


def test_the_default_generator_keeps_stored_configuration_ids_and_native_is_a_new_one(write_scenario):
    plain = scenario_dict()
    explicit = scenario_dict()
    explicit["load"]["generator"] = "locust"
    native = scenario_dict()
    native["load"]["generator"] = "native"
    for data in (plain, explicit, native):
        data["serving"]["target"] = "torchserve"
    a = variant_config_ids(load_scenario(write_scenario(plain, name="a.yaml")))
    b = variant_config_ids(load_scenario(write_scenario(explicit, name="b.yaml")))
    c = variant_config_ids(load_scenario(write_scenario(native, name="c.yaml")))
    assert a == b
    assert all(c[name] != a[name] for name in a)


def test_requests_are_whole_http_posts_with_the_endpoints_headers():
    endpoint = HttpEndpoint("http://localhost:8080/", "predictions/m", {"Authorization": "Bearer t"})
    requests = EncodedRequests("application/json", (b'{"a": 1}', b"\x00\x01"), 1, "json", None)
    host, port, prepared = http_requests(endpoint, requests)
    assert (host, port) in (("127.0.0.1", 8080), ("::1", 8080))
    assert prepared[0] == (
        b"POST /predictions/m HTTP/1.1\r\nHost: localhost:8080\r\nAuthorization: Bearer t\r\n"
        b"Content-Type: application/json\r\nContent-Length: 8\r\n\r\n" + b'{"a": 1}'
    )
    assert prepared[1].endswith(b"Content-Length: 2\r\n\r\n\x00\x01")


def test_an_https_endpoint_is_refused_naming_the_generator():
    endpoint = HttpEndpoint("https://example.com", "/p")
    requests = EncodedRequests("application/json", (b"{}",), 1, "json", None)
    with pytest.raises(UserError, match=r"load\.generator: native speaks plain HTTP"):
        http_requests(endpoint, requests)


# ---- building the engine -------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_the_engine_is_built_once_then_found_in_the_cache_by_its_source_hash(cache, monkeypatch):
    monkeypatch.setattr(native_build, "source_bytes", lambda: b"int main(void) { return 0; }\n")
    binary = native_build.native_binary()
    assert binary.parent == cache / "native"
    assert subprocess.run([str(binary)], check=False).returncode == 0

    def no_compiler(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("built again although the cached engine matches its source")

    monkeypatch.setattr(native_build.subprocess, "run", no_compiler)
    assert native_build.native_binary() == binary
    monkeypatch.setattr(native_build, "source_bytes", lambda: b"int main(void) { return 1; }\n")
    assert native_build.binary_path() != binary, "another source is another engine"


def test_a_damaged_cached_engine_is_rebuilt_not_run(cache, monkeypatch):
    monkeypatch.setattr(native_build, "source_bytes", lambda: b"int main(void) { return 0; }\n")
    binary = native_build.native_binary()
    good = binary.read_bytes()
    binary.write_bytes(good[:100])
    assert native_build.native_binary() == binary
    assert binary.read_bytes() != good[:100]
    assert subprocess.run([str(binary)], check=False).returncode == 0


def test_a_failing_build_is_a_run_error_with_the_compilers_words(cache, monkeypatch):
    monkeypatch.setattr(native_build, "source_bytes", lambda: b"int main(void) { return nope; }\n")
    with pytest.raises(RunError, match="building the native load engine failed") as err:
        native_build.native_binary()
    assert "nope" in err.value.log_tail
    assert not native_build.binary_path().exists()


def test_no_compiler_is_a_user_error_that_names_the_way_out(cache, monkeypatch):
    monkeypatch.setattr(native_build, "compiler", lambda: None)
    with pytest.raises(UserError, match=r"found no C compiler .* or use generator: locust"):
        native_build.native_binary()
