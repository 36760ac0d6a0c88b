"""The tar stream that carries uploads into the pod, and the step that puts its files in place.

Headers are built here rather than by `tarfile`: a `TarInfo` costs more per small file than
reading the file does, and an initial sync sends tens of thousands of them. The archive is
GNU format, as `tarfile.GNU_FORMAT` writes it, and `tarfile` still writes the rare header this
fast path does not cover (a name over 100 bytes, an mtime before 1970).

Every member is a `.devspace-tmp-…` name beside its target, or lies in a new folder extracted
under such a name (`newtrees`). New files and folders (nothing at the target when the plan was
made) are then put in place by the same command that extracted them: the last member is a
list of temporary and final names, and a short Perl script (perl-base is part of every Debian
image) checks that each target's parents are still directories and links the file to its
target, or renames the folder. Both refuse an existing target atomically, as the SFTP rename
that OpenSSH's server makes of a file does, so one round trip replaces a rename request per
file. Files that replace something need their target compared with the plan first; `podwrite`
renames those over SFTP, after a fresh look at the pod.
"""

from __future__ import annotations

import shlex
import tarfile
from collections.abc import Iterable, Sequence

_BLOCK = 512
END = b"\0" * (2 * _BLOCK)  # two zero blocks end an archive
_MAGIC = b"ustar  \x00"  # GNU's, with its version
# What the checksum counts for the header fields that never vary: its own field as spaces,
# the type "0" (a regular file) and the magic.
_FIXED_SUM = 8 * ord(" ") + ord("0") + sum(_MAGIC)
NO_PERL = b"devspace-no-perl\n"

# Runs in the sync root with the list's name as its argument. For each pair of NUL-terminated
# names (temporary, target) it prints a NUL-terminated answer: "0" placed, "P" a parent of the
# target is not a directory (a link, say: never write through it), "X" the target exists,
# "E<error>" not placed for another reason. A temporary that was not placed is removed. A
# file is placed by a hard link, which refuses an existing target; a volume without hard
# links falls back to a rename after checking the target is absent, as OpenSSH's sftp-server
# does. A folder (see `newtrees`) is renamed with RENAME_NOREPLACE, which refuses an existing
# target too; where the kernel or volume lacks it, after the same check as a file.
_PLACE = r"""
use strict;
use Config;
use File::Path qw(remove_tree);
my %renameat2 = (x86_64 => 316, aarch64 => 276);
my ($arch) = $Config{archname} =~ /^([^-]+)/;
my $noreplace = $renameat2{$arch};
my $list = shift;
open(my $in, "<", $list) or die "$list: $!\n";
unlink $list;
local $/ = "\0";
sub place_folder {
    my ($tmp, $to) = @_;
    if (defined $noreplace) {
        return 1 if syscall($noreplace, -100, $tmp, -100, $to, 1) == 0;
        return 0 unless $!{ENOSYS} || $!{EINVAL};
    }
    return !lstat($to) && rename($tmp, $to);
}
while (defined(my $tmp = <$in>)) {
    chop $tmp;
    my $to = <$in>;
    defined $to or die "the list of files to put in place is cut short\n";
    chop $to;
    my $folder = lstat($tmp) && -d _;
    my $why = "";
    my $up = $to;
    while ($up =~ s{/[^/]*\z}{}s) {
        if (!lstat($up) || !-d _) { $why = "P"; last }
    }
    if ($why eq "" && $folder) {
        if (place_folder($tmp, $to)) { print "0\0"; next }
        my ($error, $exists) = ("$!", $!{EEXIST} || $!{ENOTEMPTY});
        $why = $exists || lstat($to) ? "X" : "E$error";
    } elsif ($why eq "") {
        if (link($tmp, $to)) { unlink $tmp; print "0\0"; next }
        my ($error, $exists) = ("$!", $!{EEXIST});
        if (!$exists && !lstat($to) && rename($tmp, $to)) { print "0\0"; next }
        $why = $exists || lstat($to) ? "X" : "E$error";
    }
    if ($folder) { remove_tree($tmp) } else { unlink $tmp }
    print "$why\0";
}
"""


def extract_command(root: str, place_list: str | None, cleanup: Sequence[str] = ()) -> str:
    """The shell command that extracts a stream into `root`, then places the listed files.

    `place_list` is the name (relative to `root`) of the member made by `place_list`; None
    extracts only. Without Perl in the pod the command prints `NO_PERL` and leaves the list
    there: rename those files over SFTP instead. If tar fails (the stream was cut: a dropped
    connection ends its input), the temporary names `cleanup` are removed in the pod, so no
    large partial file or new folder outlives the pass.
    """
    lines = [
        f"cd -- {shlex.quote(root)} || exit",
        "tar -x -f - --no-same-owner --same-permissions --keep-old-files || {",
        "  status=$?",
        *([f"  rm -rf -- {' '.join(shlex.quote(name) for name in cleanup)}"] if cleanup else []),
        "  exit $status",
        "}",
    ]
    if place_list is not None:
        lines += [
            "if command -v perl >/dev/null 2>&1; then",
            f"  exec perl -e {shlex.quote(_PLACE)} -- {shlex.quote(place_list)}",
            "fi",
            f"echo {NO_PERL.decode().strip()}",
        ]
    return "\n".join(lines)


def place_list(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The list member's content: each (temporary, target) pair as two NUL-terminated names."""
    return b"".join(temporary + b"\0" + target + b"\0" for temporary, target in pairs)


def placed(output: bytes, count: int) -> list[str | None]:
    """The placing script's answers for `count` pairs: None placed, or the reason it was not.

    A reason is "P" (a parent is not a directory), "X" (the target exists), or "E" followed
    by the pod's error text. Raises ValueError if the answers are not `count` in number.
    """
    answers = output.split(b"\0")
    if answers[-1] != b"" or len(answers) - 1 != count:
        raise ValueError(f"the pod answered {len(answers) - 1} of {count} files")
    return [None if a == b"0" else a.decode("utf-8", "replace") for a in answers[:-1]]


def header(name: bytes, size: int, mode: int, mtime: int) -> bytes:
    """The GNU tar header (with any long-name block before it) of a regular file."""
    if len(name) > 100 or not 0 <= mtime < 8**11 or size >= 8**11:
        info = tarfile.TarInfo(name.decode("utf-8", "surrogateescape"))
        info.size, info.mode, info.mtime = size, mode, mtime
        return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    ids = b"%07o\x00%07o\x00%07o\x00" % (mode, 0, 0)
    times = b"%011o\x00%011o\x00" % (size, mtime)
    # The checksum adds up every byte of the block: only these fields vary (a third of the
    # time of summing all 512, for each of tens of thousands of files).
    checksum = sum(name) + sum(ids) + sum(times) + _FIXED_SUM
    fields = (name, bytes(100 - len(name)), ids, times, b"%06o\x00 " % checksum, b"0")
    return b"".join((*fields, bytes(100), _MAGIC, bytes(_BLOCK - 265)))


def folder_member(name: bytes, mtime: int) -> bytes:
    """A folder's header (mode 0755): one per new folder, so the fast path is not needed."""
    info = tarfile.TarInfo(name.decode("utf-8", "surrogateescape"))
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def padding(size: int) -> bytes:
    """The zero bytes that fill a member of `size` bytes to a whole block."""
    return b"\0" * (-size % _BLOCK)


def member(name: bytes, data: bytes, mode: int, mtime: int) -> bytes:
    """A whole member: header, content and padding."""
    return header(name, len(data), mode, mtime) + data + padding(len(data))
