"""Model providers: one protocol, a registry, and the built-in implementations."""

from rxkit.providers.base import GLOBAL_DEFAULTS, BaseProvider, Capabilities, Price, Provider, merge_params
from rxkit.providers.registry import (
    ProviderSpec,
    create_provider,
    load_specs,
    provider_types,
    register_provider,
    spec_from_env,
)

__all__ = [
    "GLOBAL_DEFAULTS",
    "BaseProvider",
    "Capabilities",
    "Price",
    "Provider",
    "ProviderSpec",
    "create_provider",
    "load_specs",
    "merge_params",
    "provider_types",
    "register_provider",
    "spec_from_env",
]
