"""The reconciler's own configuration: public keys only, never the CA's private key."""

from __future__ import annotations

from pathlib import Path

import pytest
from host_key_encryption import fresh_host_key_encryption

from devspace_server.errors import ConfigError
from devspace_server.reconcile.settings import load_reconciler_config


def test_it_needs_no_secret_key_public_url_or_private_key(tmp_path: Path, ssh_ca: Path) -> None:
    public = ssh_ca.with_suffix(".pub").read_text()
    config = load_reconciler_config(
        {
            "DEVSPACE_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "DEVSPACE_SSH_CA_PUBLIC_KEYS": public,
            "DEVSPACE_NAMESPACE_PREFIX": "team-",
            **fresh_host_key_encryption(),
        }
    )
    assert [line.split()[:2] for line in config.ca_public_keys] == [public.split()[:2]]
    assert config.cluster.settings.namespace_prefix == "team-"


def test_the_key_file_alone_is_refused_with_what_to_do(tmp_path: Path, ssh_ca: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_reconciler_config(
            {
                "DEVSPACE_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
                "DEVSPACE_SSH_CA_KEY_FILE": str(ssh_ca),
            }
        )
    assert "DEVSPACE_SSH_CA_PUBLIC_KEYS is not set" in str(raised.value)
    assert "ssh-keygen -y -f KEY" in str(raised.value)


def test_a_private_key_given_as_public_is_refused(tmp_path: Path, ssh_ca: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_reconciler_config(
            {
                "DEVSPACE_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
                "DEVSPACE_SSH_CA_PUBLIC_KEYS": ssh_ca.read_text(),
            }
        )
    assert "DEVSPACE_SSH_CA_PUBLIC_KEYS" in str(raised.value)
