"""The local terminal during an interactive session: raw mode, its size and resizes, and the
byte pump between it and a remote PTY.

POSIX (Linux, macOS): termios raw mode, SIGWINCH for resizes, `select` over stdin and the
channel. Windows: the console switched to virtual-terminal mode (VT input and output, so
keys arrive as the escape sequences a remote shell expects and its colours render), the
size polled (consoles have no resize signal), stdin read in a thread (consoles cannot be
`select`ed). Every platform-specific call sits behind a `sys.platform` check.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import paramiko

Resize = Callable[[int, int], None]
"""Called with (columns, rows) when the local terminal's size changes."""

_POLL_SECONDS = 0.25


def is_terminal() -> bool:
    """Whether stdin and stdout are both a terminal (or console), as a PTY session needs."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def size() -> tuple[int, int]:
    """The terminal's (columns, rows); 80x24 when it cannot be told."""
    columns, rows = shutil.get_terminal_size((80, 24))
    return columns, rows


def term_type() -> str:
    """The terminal type to ask the remote PTY for: `$TERM`, or one every console handles."""
    return os.environ.get("TERM") or "xterm-256color"


@contextlib.contextmanager
def raw_mode() -> Iterator[None]:
    """Put the terminal in raw mode (no echo, no line editing, keys such as Ctrl-C passed on
    as bytes) for the duration, and restore it afterwards, whatever happened."""
    if sys.platform == "win32":
        with _windows_vt_mode():
            yield
        return
    import termios  # noqa: PLC0415 - POSIX only
    import tty  # noqa: PLC0415

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSADRAIN)  # as OpenSSH: keep what was typed ahead
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


if sys.platform == "win32":
    import ctypes

    _ENABLE_PROCESSED_INPUT = 0x0001
    _ENABLE_LINE_INPUT = 0x0002
    _ENABLE_ECHO_INPUT = 0x0004
    _ENABLE_VIRTUAL_TERMINAL_INPUT = 0x0200
    _ENABLE_VIRTUAL_TERMINAL_PROCESSING = 0x0004
    _STD_INPUT_HANDLE = -10
    _STD_OUTPUT_HANDLE = -11
    _UTF8 = 65001

    @contextlib.contextmanager
    def _windows_vt_mode() -> Iterator[None]:
        kernel32 = ctypes.windll.kernel32
        handles = (
            kernel32.GetStdHandle(_STD_INPUT_HANDLE),
            kernel32.GetStdHandle(_STD_OUTPUT_HANDLE),
        )
        saved = []
        for handle in handles:
            mode = ctypes.c_uint32()
            if not kernel32.GetConsoleMode(handle, ctypes.byref(mode)):
                raise OSError("not a Windows console")
            saved.append(mode.value)
        given_in = (saved[0] | _ENABLE_VIRTUAL_TERMINAL_INPUT) & ~(
            _ENABLE_PROCESSED_INPUT | _ENABLE_LINE_INPUT | _ENABLE_ECHO_INPUT
        )
        given_out = saved[1] | _ENABLE_VIRTUAL_TERMINAL_PROCESSING
        # The remote PTY speaks UTF-8; the console's own code page may be an ANSI one.
        code_pages = (kernel32.GetConsoleCP(), kernel32.GetConsoleOutputCP())
        kernel32.SetConsoleMode(handles[0], given_in)
        kernel32.SetConsoleMode(handles[1], given_out)
        kernel32.SetConsoleCP(_UTF8)
        kernel32.SetConsoleOutputCP(_UTF8)
        try:
            yield
        finally:
            for handle, mode_value in zip(handles, saved, strict=True):
                kernel32.SetConsoleMode(handle, mode_value)
            kernel32.SetConsoleCP(code_pages[0])
            kernel32.SetConsoleOutputCP(code_pages[1])


def interact(channel: paramiko.Channel, on_resize: Resize) -> None:
    """Copy keystrokes to `channel` and its output to the terminal until the remote side
    closes, calling `on_resize` when the local terminal's size changes. Run it in raw mode."""
    if sys.platform == "win32":
        _interact_by_threads(channel, on_resize)
    else:
        _interact_by_select(channel, on_resize)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


if sys.platform != "win32":  # SIGWINCH and select() on a terminal are POSIX only

    def _interact_by_select(channel: paramiko.Channel, on_resize: Resize) -> None:
        import select  # noqa: PLC0415
        import signal  # noqa: PLC0415

        stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
        # SIGWINCH arrives in the main thread between bytecodes, possibly while paramiko holds a
        # lock; the handler only wakes the loop, which sends the new size itself.
        wake_read, wake_write = os.pipe()

        def resized(_signal: int, _frame: object) -> None:
            with contextlib.suppress(OSError):
                os.write(wake_write, b"\0")

        previous = signal.signal(signal.SIGWINCH, resized)
        watched: list[Any] = [channel, stdin, wake_read]
        try:
            while True:
                readable, _, _ = select.select(watched, [], [])
                if wake_read in readable:
                    os.read(wake_read, 512)
                    on_resize(*size())
                if channel in readable:
                    data = channel.recv(65536)
                    if not data:
                        return
                    _write_all(stdout, data)
                if stdin in readable:
                    keys = os.read(stdin, 4096)
                    if keys:
                        channel.sendall(keys)
                    else:  # stdin ended: tell the shell, keep showing its output
                        channel.shutdown_write()
                        watched.remove(stdin)
        finally:
            signal.signal(signal.SIGWINCH, previous)
            os.close(wake_read)
            os.close(wake_write)


def _interact_by_threads(channel: paramiko.Channel, on_resize: Resize) -> None:
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    done = threading.Event()

    def keys() -> None:
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            while not done.is_set():
                data = os.read(stdin, 4096)
                if not data:
                    channel.shutdown_write()
                    return
                channel.sendall(data)

    def watch_size() -> None:
        last = size()
        while not done.wait(_POLL_SECONDS):
            now = size()
            if now != last:
                last = now
                with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                    on_resize(*now)

    # Daemons: a console read cannot be interrupted, and must not keep the program alive.
    threading.Thread(target=keys, name="terminal-keys", daemon=True).start()
    threading.Thread(target=watch_size, name="terminal-size", daemon=True).start()
    try:
        while data := channel.recv(65536):
            _write_all(stdout, data)
    finally:
        done.set()
