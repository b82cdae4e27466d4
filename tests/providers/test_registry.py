"""The provider registry: specs from code, YAML, TOML, JSON and the environment; parameter precedence; errors."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from reactivex import operators as ops

from rxkit.errors import ConfigError, UnknownProviderError
from rxkit.providers import GLOBAL_DEFAULTS, Price, ProviderSpec, create_provider, load_specs, spec_from_env
from rxkit.providers.anthropic import AnthropicProvider
from rxkit.providers.openai import OpenAIProvider
from rxkit.telemetry.events import EventBus
from rxkit.types import ChatRequest, Message
from tests.providers.openai_server import API_KEY, OpenAIServer, Reply, chunk, sse_body

YAML = """\
fast:
  type: openai
  model: gpt-4.1-mini
  base_url: https://example.invalid/v1
  api_key_env: MY_OPENAI_KEY
  defaults: {temperature: 0.2, max_tokens: 300}
  extra:
    max_retries: 5
    ttft_timeout: 9.5
    compatible: false
    prices: {gpt-4.1-mini: {input: 1.0, output: 2.0}}
careful:
  type: anthropic
  defaults: {temperature: 0.0}
"""

TOML = """\
[providers.fast]
type = "openai"
model = "gpt-4.1-mini"
base_url = "https://example.invalid/v1"
api_key_env = "MY_OPENAI_KEY"
defaults = { temperature = 0.2, max_tokens = 300 }

[providers.fast.extra]
max_retries = 5
ttft_timeout = 9.5
compatible = false
prices = { "gpt-4.1-mini" = { input = 1.0, output = 2.0 } }

[providers.careful]
type = "anthropic"
defaults = { temperature = 0.0 }
"""


@pytest.fixture
def config_files(tmp_path: Path) -> dict[str, Path]:
    import yaml

    files = {"yaml": tmp_path / "providers.yaml", "toml": tmp_path / "providers.toml", "json": tmp_path / "p.json"}
    files["yaml"].write_text(YAML)
    files["toml"].write_text(TOML)
    files["json"].write_text(json.dumps(yaml.safe_load(YAML)))
    return files


@pytest.mark.parametrize("kind", ["yaml", "toml", "json"])
def test_the_same_providers_from_yaml_toml_and_json(
    kind: str, config_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_OPENAI_KEY", "key-from-the-environment-0001")
    specs = load_specs(config_files[kind])
    assert set(specs) == {"fast", "careful"}
    fast = create_provider(specs["fast"])
    assert isinstance(fast, OpenAIProvider)
    assert (fast.name, fast.model, fast.base_url) == ("fast", "gpt-4.1-mini", "https://example.invalid/v1")
    assert fast.api_key == "key-from-the-environment-0001"  # read from the variable the spec names
    assert fast.defaults == {"temperature": 0.2, "max_tokens": 300}
    assert (fast.options.max_retries, fast.options.ttft_timeout, fast.compatible) == (5, 9.5, False)
    assert fast.pricing["gpt-4.1-mini"] == Price(1.0, 2.0)  # the user's price replaces the table's
    careful = create_provider(specs["careful"])
    assert isinstance(careful, AnthropicProvider) and careful.defaults == {"temperature": 0.0}
    assert careful.model == "claude-haiku-4-5"  # none named: the provider's default


def test_specs_from_the_environment() -> None:
    assert spec_from_env({}) is None
    spec = spec_from_env({"RXKIT_PROVIDER": "openai", "RXKIT_MODEL": "gpt-5-mini", "RXKIT_BASE_URL": "http://h/v1"})
    assert spec == ProviderSpec(type="openai", model="gpt-5-mini", base_url="http://h/v1")
    assert create_provider(spec).base_url == "http://h/v1"


def test_specs_from_code_strings_and_overrides() -> None:
    assert create_provider("mock").name == "mock"
    provider = create_provider({"type": "openai", "api_key": API_KEY}, model="gpt-5-mini", name="mine")
    assert (provider.name, provider.model) == ("mine", "gpt-5-mini")
    spec = ProviderSpec(type="anthropic", api_key="sk-ant-test-0000000000")
    assert create_provider(spec, model="claude-sonnet-4-6").model == "claude-sonnet-4-6"


async def test_request_over_provider_defaults_over_global_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GLOBAL_DEFAULTS, "temperature", 0.9)
    monkeypatch.setitem(GLOBAL_DEFAULTS, "top_p", 0.3)
    monkeypatch.setitem(GLOBAL_DEFAULTS, "seed", 11)
    async with OpenAIServer() as server:
        server.push(Reply(stream=sse_body([chunk({"content": "ok"}, "stop")])))
        spec = {"type": "openai", "base_url": server.url, "api_key": API_KEY, "defaults": {"temperature": 0.2}}
        provider = create_provider(spec, extra={"compatible": False, "bus": EventBus()})
        request = ChatRequest(messages=[Message.user("hi")], top_p=0.1)
        try:
            await provider.stream(request).pipe(ops.to_list())
        finally:
            await provider.aclose()
    body = server.requests[0].body
    assert body["top_p"] == 0.1  # the request's
    assert body["temperature"] == 0.2  # the provider's default over the global one
    assert body["seed"] == 11  # only the global default sets it


def test_a_misspelt_field_is_named_without_showing_its_value(tmp_path: Path) -> None:
    secret = "correct-horse-battery-staple"  # not key-shaped: only leaving it out keeps it out
    path = tmp_path / "p.yaml"
    path.write_text(f"fast:\n  type: openai\n  apikey: {secret}\n")
    with pytest.raises(ConfigError) as bad:
        load_specs(path)
    message = str(bad.value)
    assert "'fast'" in message and "apikey: extra inputs are not permitted" in message
    assert "known fields: type, name, model, base_url, api_key, api_key_env" in message
    assert secret not in message
    with pytest.raises(ConfigError) as typed:
        create_provider({"type": "openai", "api_key": 987654321987654321})
    assert "api_key: input should be a valid string" in str(typed.value)
    assert "987654321987654321" not in str(typed.value)


def test_a_spec_built_in_code_with_a_bad_field_is_a_config_error_without_the_value() -> None:
    """ProviderSpec(...) raised pydantic's ValidationError, which quotes the value given (here a key)."""
    secret = "correct-horse-battery-staple"
    with pytest.raises(ConfigError) as misspelt:
        ProviderSpec(type="openai", apikey=secret)
    assert not isinstance(misspelt.value, ValueError)  # not pydantic's ValidationError
    message = str(misspelt.value)
    assert message.startswith("invalid provider spec: apikey: extra inputs are not permitted (known fields: type,")
    assert secret not in message
    with pytest.raises(ConfigError, match=r"^invalid provider spec: model: input should be a valid string$") as typed:
        ProviderSpec(type="openai", model=[secret])
    assert secret not in str(typed.value)
    with pytest.raises(ConfigError, match=r"type: field required"):
        ProviderSpec(model="m")


@pytest.mark.parametrize(
    ("text", "suffix", "expected"),
    [
        ("fast: [unclosed\n", ".yaml", "cannot parse provider config"),
        ("[providers\n", ".toml", "cannot parse provider config"),
        ("- a\n- b\n", ".yaml", "must map names to specs"),
        ("fast: 3\n", ".yaml", "provider 'fast' in"),
        ("fast: {model: x}\n", ".yaml", "type: field required"),
    ],
)
def test_bad_config_files_are_config_errors(tmp_path: Path, text: str, suffix: str, expected: str) -> None:
    path = tmp_path / f"providers{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_specs(path)


def test_missing_file_unknown_type_and_unknown_option() -> None:
    with pytest.raises(ConfigError, match=re.escape("cannot read provider config /nonexistent/p.yaml")):
        load_specs("/nonexistent/p.yaml")
    with pytest.raises(UnknownProviderError, match="unknown provider 'openia'; known providers: anthropic, "):
        create_provider("openia")
    with pytest.raises(ConfigError, match=r"unknown option.*max_retry\b.*known: backoff_base"):
        create_provider({"type": "openai", "api_key": API_KEY, "extra": {"max_retry": 3}})


def test_member_keys_inside_a_spec_are_secrets_too() -> None:
    """A fallback / balancing spec holds its members' specs, keys included, in ``extra``."""
    member_key = "member-key-of-no-known-shape-3141"
    gateway_key = "gateway-key-of-no-known-shape-2718"
    spec = ProviderSpec(
        type="fallback",
        extra={
            "providers": [{"type": "openai", "model": "m", "api_key": member_key}, {"type": "mock"}],
            "headers": {"x-portkey-api-key": gateway_key, "x-trace-id": "trace-visible-1"},
            "api_key_env": "MY_OWN_VARIABLE",  # a variable's name, not a secret
        },
    )
    shown = repr(spec) + str(spec)
    assert member_key not in shown and gateway_key not in shown
    assert "trace-visible-1" in shown and "MY_OWN_VARIABLE" in shown
    message = str(ConfigError(f"member failed with {member_key} behind {gateway_key}; set MY_OWN_VARIABLE"))
    assert member_key not in message and gateway_key not in message and "MY_OWN_VARIABLE" in message


@pytest.mark.parametrize(
    ("spec", "capabilities"),
    [
        ({"type": "openai", "api_key": API_KEY}, {"tools", "vision", "audio", "json_mode"}),
        ({"type": "anthropic", "api_key": "sk-ant-test-0000000000"}, {"tools", "vision"}),
        ({"type": "gemini", "api_key": "AIza-test-key-000000000000000000"}, {"tools", "vision", "audio", "json_mode"}),
        ({"type": "local"}, {"tools", "json_mode"}),
        ({"type": "mock"}, {"tools", "vision", "json_mode"}),
        (
            {"type": "fallback", "extra": {"providers": [{"type": "openai", "api_key": API_KEY}, "mock"]}},
            {"tools", "vision", "json_mode"},
        ),
    ],
)
async def test_every_provider_type_speaks_the_one_protocol(spec: dict[str, Any], capabilities: set[str]) -> None:
    """Identity, capabilities, streaming and blocking chat, cost and close, whatever the type (nothing is
    called here: building a provider opens no connection and starts no process)."""
    from rxkit.providers import Provider
    from rxkit.types import Usage

    provider = create_provider(spec)
    try:
        assert isinstance(provider, Provider)
        assert provider.name and isinstance(provider.model, str)
        flags = {
            name
            for name in ("tools", "vision", "audio", "streaming_input", "json_mode")
            if getattr(provider.capabilities, name)
        }
        assert flags == capabilities
        assert callable(provider.stream) and asyncio.iscoroutinefunction(provider.chat)
        cost = provider.cost(Usage(input_tokens=1000, output_tokens=100))
        assert cost.total >= 0.0
    finally:
        await provider.aclose()
