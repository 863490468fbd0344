"""The config file: its shape (``schema``) and the loader that builds and checks it (``load``)."""

from runner.config.load import load_config
from runner.config.schema import (
    DEFAULT_BASE_URL,
    SIMULATOR,
    ApiConfig,
    BatchConfig,
    Config,
    CostConfig,
    JobConfig,
    LimitsConfig,
    LocalFilesConfig,
    OutputSpec,
    PriceConfig,
    RetryConfig,
    RunConfig,
    Secret,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "SIMULATOR",
    "ApiConfig",
    "BatchConfig",
    "Config",
    "CostConfig",
    "JobConfig",
    "LimitsConfig",
    "LocalFilesConfig",
    "OutputSpec",
    "PriceConfig",
    "RetryConfig",
    "RunConfig",
    "Secret",
    "load_config",
]
