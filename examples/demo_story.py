"""What the demos share: the CLI's private folders, the project copied from examples/webapp,
the story run without a person (`check`), and signing the CLI in with the device flow as a
person would (`sign_in`). The test bed's demo is demo.py; an existing cluster's is
demo_cluster.py."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import requests

REPOSITORY = Path(__file__).resolve().parents[1]
DEVSPACE = [sys.executable, "-m", "devspace"]
BY_HAND = """
Try it by hand in another terminal, while the pod's shell is open:
  export DEVSPACE_CONFIG_DIR={home}/config DEVSPACE_STATE_DIR={home}/state DEVSPACE_CREDENTIALS=file
  cd {folder}
  curl http://127.0.0.1:{port}/      # the app in the pod, through the forwarded port
  $EDITOR index.html; curl again     # the edit, synced into the pod
  devspace status; devspace exec -- ls /workspace
Leave the pod's shell (exit) to tear everything down.
"""
CODE = re.compile(r"open (\S+)\s+and enter the code: (\S+)")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def say(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)


def cli_environment(home: Path) -> dict[str, str]:
    """The environment for the CLI, with its config and state under `home` (never yours);
    this process's own environment gets the two folders too."""
    env = dict(os.environ)
    env |= {
        "DEVSPACE_CONFIG_DIR": str(home / "config"),
        "DEVSPACE_STATE_DIR": str(home / "state"),
        "DEVSPACE_CREDENTIALS": "file",
    }
    os.environ.update({k: env[k] for k in ("DEVSPACE_CONFIG_DIR", "DEVSPACE_STATE_DIR")})
    return env


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            found: int = probe.getsockname()[1]
            return found
    raise RuntimeError("no free local port")


def project(work: Path, local_port: int, image: str | None) -> Path:
    """examples/webapp copied to `work`, its devspace.yaml set to forward the app to
    `local_port` and, if given, to run `image`."""
    folder = work / "webapp"
    shutil.copytree(REPOSITORY / "examples" / "webapp", folder)
    text = (folder / "devspace.yaml").read_text()
    if image:
        text = text.replace("image: python:3.12-slim", f"image: {image}")
    text = text.replace("ports:\n  - 8080", f"ports:\n  - {{port: 8080, local: {local_port}}}")
    (folder / "devspace.yaml").write_text(text)
    return folder


def eventually(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.2)


def serves(port: int, words: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer:
            return words in answer.read().decode()
    except OSError:
        return False


def check(folder: Path, port: int, env: dict[str, str], timeout: float = 120) -> None:
    """The story without a person. Raises RuntimeError at the first step that fails."""
    say("devspace up -T (no terminal: forwards and syncs until stopped)")
    said = folder.parent / "up.err"  # what `up` tells the person, kept for a failure
    with said.open("w") as stderr:
        up = subprocess.Popen([*DEVSPACE, "up", "-T"], cwd=folder, env=env, stderr=stderr)
    try:
        eventually(lambda: serves(port, "Hello from a dev pod"), "the app answering", timeout)
        say(f"the app answers on 127.0.0.1:{port}")
        page = folder / "index.html"
        page.write_text(page.read_text().replace("Hello from a dev pod", "Edited on the laptop"))
        eventually(lambda: serves(port, "Edited on the laptop"), "the edit being served")
        say("a local edit is served by the pod")
        made = subprocess.run(
            [*DEVSPACE, "exec", "--", "sh", "-c", "echo made in the pod > /workspace/pod.txt"],
            cwd=folder,
            env=env,
            check=False,
        )
        if made.returncode != 0:
            raise RuntimeError(f"devspace exec exited {made.returncode}")
        eventually((folder / "pod.txt").exists, "the pod's file arriving here", 30)
        say("a file made in the pod arrived here")
        if "Secsh channel" in said.read_text():
            raise RuntimeError("paramiko's own messages reached the person's terminal")
    except RuntimeError as error:
        raise RuntimeError(f"{error}; devspace up said:\n{said.read_text()[-2000:]}") from error
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(30)
    if code != 0:
        raise RuntimeError(f"devspace up exited {code} after Ctrl-C")
    down = subprocess.run([*DEVSPACE, "down"], cwd=folder, env=env, check=False)
    if down.returncode != 0:
        raise RuntimeError(f"devspace down exited {down.returncode}")


def sign_in(api_url: str, username: str, password: str, env: dict[str, str]) -> None:
    """`devspace login --device`, with the code approved as a person would in a browser:
    the sign-in form, then the device page. Raises RuntimeError (OSError from HTTP)."""
    login = subprocess.Popen(
        [*DEVSPACE, "login", "--server", api_url, "--device", "--no-browser", "--timeout", "120"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        page, code = _shown_code(login)
        say(f"the CLI shows the code {code}: signing in as {username} at {page} to approve it")
        _approve(api_url, page, code, username, password)
        rest = login.stderr.read() if login.stderr else ""
        if login.wait(60) != 0:
            raise RuntimeError(f"devspace login exited {login.returncode}: {rest.strip()}")
    finally:
        if login.poll() is None:  # failed on our side: it would poll on for minutes
            login.kill()
            login.wait()


def _shown_code(login: subprocess.Popen[str]) -> tuple[str, str]:
    """The verification address and the code that `devspace login --device` shows."""
    said = ""
    while not (found := CODE.search(said)):
        line = login.stderr.readline() if login.stderr else ""
        if not line:
            login.wait(10)
            raise RuntimeError(f"devspace login exited {login.returncode}: {said.strip()}")
        said += line
    page, code = found.groups()
    return page, code


def _approve(api_url: str, page: str, code: str, username: str, password: str) -> None:
    """Sign in on the server's page and allow the device with `code`, as a browser would."""
    browser = requests.Session()

    def form(response: requests.Response, what: str) -> str:
        if not response.ok or not (token := CSRF.search(response.text)):
            raise RuntimeError(f"{what}: HTTP {response.status_code} {response.text[:300]}")
        return token.group(1)

    shown = browser.get(f"{api_url}/login", params={"next": "/device"}, timeout=30)
    fields = {"username": username, "password": password, "next": "/device"}
    fields["csrf_token"] = form(shown, "the sign-in page")
    device = browser.post(f"{api_url}/login", data=fields, timeout=30)
    token = form(device, "signing in")
    confirm = browser.post(page, data={"csrf_token": token, "user_code": code}, timeout=30)
    token = form(confirm, "the device page")
    decide = {"csrf_token": token, "user_code": code, "decision": "allow"}
    done = browser.post(f"{page}/decide", data=decide, timeout=30)
    if "Device connected" not in done.text:
        raise RuntimeError(f"approving the device: HTTP {done.status_code} {done.text[:300]}")
