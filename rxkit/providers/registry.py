"""Build providers from specs: a name, a model, a base URL, defaults, extra config.

>>> spec = ProviderSpec(type="mock", model="m")
>>> create_provider(spec).name
'mock'

Specs load from code, a YAML/TOML/JSON file, or the environment
(``RXKIT_PROVIDER``, ``RXKIT_MODEL``, ``RXKIT_BASE_URL``). Factories are
registered by type name with :func:`register_provider`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rxkit.config import read_config_file
from rxkit.errors import ConfigError, UnknownProviderError, describe_validation, names_a_secret, register_secret
from rxkit.providers.base import Provider

__all__ = ["ProviderSpec", "create_provider", "load_specs", "provider_types", "register_provider", "spec_from_env"]


class ProviderSpec(BaseModel):
    """How to build one provider. ``api_key`` may be given, else read from ``api_key_env``.

    A field that is misspelt or has the wrong type is a
    :class:`~rxkit.errors.ConfigError` naming the field and the problem,
    never the value given (it may be a key)::

        ProviderSpec(type="openai", apikey="sk-...")
        # ConfigError: invalid provider spec: apikey: extra inputs are not permitted (known fields: type, ...)
    """

    model_config = ConfigDict(extra="forbid")

    type: str
    name: str | None = None
    model: str = ""
    base_url: str | None = None
    api_key: str | None = Field(default=None, repr=False, exclude=True)
    api_key_env: str | None = None
    defaults: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)

    def __init__(self, **data: Any) -> None:
        # pydantic's ValidationError quotes each bad input: a ConfigError names the field and the problem only.
        # (Only here: a model with a ProviderSpec field, a union say, still gets pydantic's own error.)
        try:
            super().__init__(**data)
        except ValidationError as exc:
            problems = describe_validation(exc, type(self).model_fields)
            raise ConfigError(f"invalid provider spec: {problems}", problems=problems) from None

    @model_validator(mode="after")
    def _register_keys(self) -> ProviderSpec:
        # Keys of member specs (fallback, balancing) sit in ``extra``: they are secrets too.
        register_secret(self.api_key)
        for value in _nested_secrets(self.extra):
            register_secret(value)
        return self

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (_masked(value) if name == "extra" else value)


# Fields of a spec's ``extra`` that hold a credential: member specs' keys, and headers named like one.
_SECRET_FIELDS = frozenset({"api_key", "apikey", "key", "token", "access_token", "password", "secret"})


def _is_secret_field(key: Any, in_headers: bool) -> bool:
    name = str(key)
    return name.lower() in _SECRET_FIELDS or (in_headers and names_a_secret(name))


def _nested_secrets(value: Any, in_headers: bool = False) -> Iterator[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, str) and _is_secret_field(key, in_headers):
                yield item
            else:
                yield from _nested_secrets(item, key == "headers")
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _nested_secrets(item)


def _masked(value: Any, in_headers: bool = False) -> Any:
    if isinstance(value, Mapping):
        return {
            k: "***" if isinstance(v, str) and _is_secret_field(k, in_headers) else _masked(v, k == "headers")
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_masked(item) for item in value]
    return value


Factory = Callable[[ProviderSpec], Provider]
_factories: dict[str, Factory] = {}
_builtin_modules = {
    "mock": "rxkit.providers.mock",
    "replay": "rxkit.providers.replay",
    "openai": "rxkit.providers.openai",
    "openai-compatible": "rxkit.providers.openai",
    "openai-responses": "rxkit.providers.openai_responses",
    "anthropic": "rxkit.providers.anthropic",
    "gemini": "rxkit.providers.gemini",
    "local": "rxkit.providers.local",
    "fallback": "rxkit.providers.balancing",
    "round-robin": "rxkit.providers.balancing",
    "weighted": "rxkit.providers.balancing",
}


def register_provider(type_name: str, factory: Factory) -> None:
    """Register ``factory`` to build providers whose spec has ``type=type_name``."""
    _factories[type_name] = factory


def provider_types() -> list[str]:
    """Every type name that can be built."""
    return sorted(set(_factories) | set(_builtin_modules))


def create_provider(spec: ProviderSpec | Mapping[str, Any] | str, **overrides: Any) -> Provider:
    """Build a provider from a spec, a dict, or a bare type name."""
    if isinstance(spec, str):
        spec = {"type": spec}
    if isinstance(spec, Mapping):
        spec = ProviderSpec(**{**spec, **overrides})  # a ConfigError naming the fields that are wrong
    elif overrides:
        spec = spec.model_copy(update=overrides)
    factory = _factories.get(spec.type)
    if factory is None and spec.type in _builtin_modules:
        import importlib

        try:
            importlib.import_module(_builtin_modules[spec.type])  # registers itself on import
        except ImportError as exc:
            raise ConfigError(f"provider {spec.type!r} is not available: {exc}") from exc
        factory = _factories.get(spec.type)
    if factory is None:
        raise UnknownProviderError(f"unknown provider {spec.type!r}; known providers: {', '.join(provider_types())}")
    return factory(spec)


def load_specs(path: str | os.PathLike[str]) -> dict[str, ProviderSpec]:
    """Read named specs from a YAML, TOML or JSON file: ``{name: {type: ..., model: ...}}``."""
    p = Path(path)
    data = read_config_file(p, "provider config")
    section = data.get("providers", data) if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise ConfigError(f"provider config {p} must map names to specs")
    specs = {}
    for name, body in section.items():
        if not isinstance(body, dict):
            raise ConfigError(f"provider {name!r} in {p} must be a mapping")
        try:
            specs[name] = ProviderSpec(name=name, **body)
        except ConfigError as exc:
            problems = getattr(exc, "problems", exc.message)
            raise ConfigError(f"invalid spec for provider {name!r} in {p}: {problems}") from None
    return specs


def spec_from_env(env: Mapping[str, str] | None = None) -> ProviderSpec | None:
    """A spec from ``RXKIT_PROVIDER`` / ``RXKIT_MODEL`` / ``RXKIT_BASE_URL``, if set."""
    env = os.environ if env is None else env
    kind = env.get("RXKIT_PROVIDER")
    if not kind:
        return None
    return ProviderSpec(type=kind, model=env.get("RXKIT_MODEL", ""), base_url=env.get("RXKIT_BASE_URL"))
