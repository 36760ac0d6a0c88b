"""The remote commands' pure parts: port specs, `[SPACE] -- CMD`, the OpenSSH files' text."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from devspace.commands.execute import DashDashCommand, split_command
from devspace.commands.proxy import _pin
from devspace.commands.sshconfig import include, known_hosts_line, render, taken_elsewhere
from devspace.errors import UsageError
from devspace.tunnels import PortPair, parse


@pytest.mark.parametrize(
    ("spec", "reverse", "pair"),
    [
        ("8080", False, PortPair(8080, 8080)),
        ("8080:80", False, PortPair(8080, 80)),
        ("0:5432", False, PortPair(0, 5432)),
        ("9000", True, PortPair(9000, 9000)),
        ("9000:3000", True, PortPair(local=3000, remote=9000)),
    ],
)
def test_port_specs(spec: str, reverse: bool, pair: PortPair) -> None:
    assert parse(spec, reverse=reverse) == pair


@pytest.mark.parametrize("spec", ["", "http", "80:", ":80", "70000", "80:0", "1:2:3", "-1"])
def test_bad_port_specs_are_usage_errors(spec: str) -> None:
    with pytest.raises(UsageError, match="not a port forward"):
        parse(spec)


def test_a_reverse_forward_needs_a_remote_port() -> None:
    with pytest.raises(UsageError, match="name the port"):
        parse("0:3000", reverse=True)


def _split(*args: str) -> tuple[str | None, list[str]]:
    @click.command(
        cls=DashDashCommand,
        context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    )
    @click.argument("words", nargs=-1)
    @click.pass_context
    def command(ctx: click.Context, words: tuple[str, ...]) -> tuple[str | None, list[str]]:
        return split_command(ctx, words)

    result: tuple[str | None, list[str]] = command.main(list(args), standalone_mode=False)
    return result


def test_space_and_command_split_at_the_first_double_dash() -> None:
    assert _split("web", "--", "ls", "-la", "--", "x") == ("web", ["ls", "-la", "--", "x"])
    assert _split("--", "make", "-j4") == (None, ["make", "-j4"])
    assert _split("ls", "-la") == (None, ["ls", "-la"])
    with pytest.raises(UsageError, match="one space"):
        _split("a", "b", "--", "true")


def test_the_include_goes_first_once_and_keeps_the_rest(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Host *\n  User me\n")
    assert include(config, tmp_path / "devspace" / "*.conf")
    assert not include(config, tmp_path / "devspace" / "*.conf")
    lines = config.read_text().splitlines()
    assert lines[1] == f"Include {tmp_path}/devspace/*.conf"
    assert lines[-2:] == ["Host *", "  User me"]


def test_paths_with_blanks_and_percent_signs_are_quoted(tmp_path: Path) -> None:
    text = render("https://ds.example", [{"name": "web"}], tmp_path / "my hosts%1")
    assert f'UserKnownHostsFile "{tmp_path}/my hosts%%1"' in text


def test_the_proxy_updates_only_its_own_pin(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    other = known_hosts_line("api", "ssh-ed25519 AAAAother")
    known_hosts.write_text(other + known_hosts_line("web", "ssh-ed25519 AAAAold"))
    _pin(known_hosts, "web", "ssh-ed25519 AAAAnew devspace")
    assert known_hosts.read_text() == other + "devspace-web ssh-ed25519 AAAAnew\n"
    _pin(tmp_path / "absent", "web", "ssh-ed25519 AAAAnew")  # no ssh-config: nothing to do
    assert not (tmp_path / "absent").exists()


def test_a_name_another_server_has_is_qualified_by_this_servers_host(tmp_path: Path) -> None:
    directory = tmp_path / "devspace"
    directory.mkdir()
    (directory / "other.conf").write_text("Host devspace-web\n  HostName web\nhost a b\n")
    (directory / "ours.conf").write_text("Host devspace-api\n")  # our own earlier file
    taken = taken_elsewhere(directory / "ours.conf")
    assert taken == {"devspace-web", "a", "b"}

    text = render(
        "https://ds.example:8443", [{"name": "web"}, {"name": "api"}], tmp_path / "kh", None, taken
    )
    lines = text.splitlines()
    assert "Host devspace-web.ds.example-8443" in lines
    assert "Host devspace-api" in lines
    # The key alias stays short: each server has a known_hosts file of its own.
    assert "  HostKeyAlias devspace-web" in lines
    assert any(
        line.startswith("Match originalhost devspace-web.ds.example-8443,devspace-api ")
        for line in lines
    )
