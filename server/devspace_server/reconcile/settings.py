"""The reconciler's own configuration: only what reconciling needs, and no private key.

`devspace-server reconcile` holds the cluster credentials; it should hold nothing else that
an attacker could use. It reads the database URL, the log level, the cluster settings
(`cluster_config.py`), the SSH CA's *public* keys, which every sidecar must trust, and the
keys that open the sidecars' host keys sealed in the database (`host_key_sealing.py`):

| setting (`DEVSPACE_…`)          | meaning                                                      |
|---------------------------------|--------------------------------------------------------------|
| `SSH_CA_PUBLIC_KEYS`            | the CA public keys, one OpenSSH line each (current first)    |
| `HOST_KEY_ENCRYPTION_KEYS[_FILE]` | the host key encryption keys, one a line (current first)   |

It never reads the secret key, the public URL or `SSH_CA_KEY_FILE`. Given the CA key file but
not the public keys it refuses to start rather than run sidecars that trust nobody, and says
how to get the public keys (`ssh-keygen -y -f KEY`). Without the host key encryption keys it
refuses to start too: it could neither open the sealed host keys nor seal the plain ones.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from devspace_server.ca import parse_trusted_keys
from devspace_server.cluster_config import ClusterConfig, parse_cluster
from devspace_server.config import LOG_LEVELS, PREFIX, Config, load_database_url, setting
from devspace_server.config_secrets import HOST_KEY_ENCRYPTION_UNSET, host_key_sealer, shared_secret
from devspace_server.errors import ConfigError
from devspace_server.host_key_sealing import HostKeySealer

log = logging.getLogger(__name__)
PUBLIC_KEYS = "ssh_ca_public_keys"
PUBLIC_KEYS_VARIABLE = f"{PREFIX}{PUBLIC_KEYS.upper()}"


@dataclass(frozen=True)
class ReconcilerConfig:
    """What the reconciler process is configured with; build it with `load_reconciler_config`
    (or `from_server_config` where a full server configuration is already loaded)."""

    database_url: str = field(repr=False)  # may hold the database's password
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    ca_public_keys: tuple[str, ...] = ()
    """OpenSSH public key lines every sidecar trusts; empty means nobody can log in."""
    log_level: str = "INFO"
    metrics_token: str | None = field(default=None, repr=False)
    """The Bearer token the probes' `/metrics` asks for; None turns `/metrics` off."""
    warnings: tuple[str, ...] = field(default=(), compare=False)
    """What is allowed but unwise, for the process to log once logging is set up."""
    host_key_sealer: HostKeySealer = field(repr=False, compare=False, kw_only=True)
    """Opens the host keys in the database, and seals those still plain (from before
    encryption) or sealed with an older key."""

    @classmethod
    def from_server_config(cls, config: Config) -> ReconcilerConfig:
        """The reconciler's part of a full server configuration (public keys only).

        Raises `ConfigError` if it has no host key encryption key (as `create_app` does).
        """
        if config.host_key_sealer is None:
            raise ConfigError([HOST_KEY_ENCRYPTION_UNSET])
        keys = config.ssh_ca.trusted_public_keys if config.ssh_ca is not None else ()
        return cls(
            config.database_url,
            config.cluster,
            tuple(keys),
            config.log_level,
            config.metrics_token,
            host_key_sealer=config.host_key_sealer,
        )


def load_reconciler_config(environ: Mapping[str, str] | None = None) -> ReconcilerConfig:
    """Read and check the reconciler's settings from `environ` (default `os.environ`) and
    the file named by `DEVSPACE_CONFIG_FILE`.

    Raises `ConfigError` naming every bad setting.
    """
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    database_url = ""
    try:
        database_url = load_database_url(environ)
    except ConfigError as error:
        problems.extend(error.problems)

    source = _Source(environ, problems)
    raw, problem = source.raw, source.problem

    cluster = parse_cluster(raw, problem)
    log_level = (raw("log_level") or "INFO").strip().upper()
    if log_level not in LOG_LEVELS:
        problem("log_level", f"is {log_level!r}: use one of {', '.join(LOG_LEVELS)}")
    keys: tuple[str, ...] = ()
    text = raw(PUBLIC_KEYS)
    if text:
        try:
            keys = tuple(k.openssh("devspace-ca") for k in parse_trusted_keys(text))
        except ValueError as error:
            problem(PUBLIC_KEYS, str(error))
        if not keys and not problems:
            problem(PUBLIC_KEYS, "holds no public key: put one OpenSSH public key per line")
    elif raw("ssh_ca_key_file"):
        problem(
            PUBLIC_KEYS,
            f"is not set, but {PREFIX}SSH_CA_KEY_FILE is: the reconciler reads only the CA's "
            f"public keys; set {PUBLIC_KEYS_VARIABLE} to the output of `ssh-keygen -y -f KEY` "
            "(and the previous keys, one per line, during a rotation) and give the private key "
            "to the API server alone",
        )
    if problems:
        raise ConfigError(problems)
    warnings = []
    if raw("ssh_ca_key_file"):
        warnings.append(
            f"{PREFIX}SSH_CA_KEY_FILE is set but the reconciler does not read it: give the "
            "CA's private key to the API server alone"
        )
    metrics_token = shared_secret(source, "metrics_token", secret_key="")
    sealer = host_key_sealer(source)
    if problems or sealer is None:  # None comes with a problem
        raise ConfigError(problems)
    return ReconcilerConfig(
        database_url,
        cluster,
        keys,
        log_level,
        metrics_token,
        tuple(warnings),
        host_key_sealer=sealer,
    )


class _Source:
    """The reconciler's settings as `config_secrets` reads them."""

    def __init__(self, environ: Mapping[str, str], problems: list[str]) -> None:
        self.environ = environ
        self.problems = problems

    def raw(self, key: str) -> str | None:
        return setting(self.environ, key)

    def name(self, key: str) -> str:
        return f"{PREFIX}{key.upper()}"

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.name(key)} {message}")


def log_warnings(config: ReconcilerConfig) -> None:
    """Log what is unwise about `config` (once logging is configured)."""
    for warning in config.warnings:
        log.warning("%s", warning)
    if not config.ca_public_keys:
        log.warning("no SSH CA public keys: sidecars will trust no certificate, nobody can log in")
