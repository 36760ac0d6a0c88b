"""The build steps behind testbed.rootfs.build(): each stage of a Dockerfile, in a directory.

Each stage starts as a copy of its base tree (testbed.rootfs.base_rootfs) and applies its
instructions in order; the last stage becomes `rootfs/`, the others are deleted. The image
config that comes out is what `docker inspect` would show of it, in a small JSON object.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from testbed import dockerfile, rootfs
from testbed.dockerfile import Instruction, Stage, UnsupportedInstruction


class _StageBuild:
    def __init__(self, stage: Stage, directory: Path, context: Path, done: dict[str, Path]):
        self.stage = stage
        self.root = directory
        self.context = context
        self.done = done
        kind = rootfs.base_kind(stage.base, stage.line)
        base = rootfs.BASES[kind]
        self.kind = kind
        self.env = dict(base.env)
        self.user = ""
        self.workdir = "/"
        self.entrypoint: list[str] = []
        self.cmd = list(base.cmd)
        self.exposed: list[str] = []
        self.ignore = dockerfile.Ignore(context)
        source = rootfs.base_rootfs(kind)
        # cp -a keeps owners, modes, links and device nodes; --reflink shares blocks if it can.
        rootfs.run_checked(["cp", "-a", "--reflink=auto", str(source), str(directory)], "copy base")

    def path(self, inside: str) -> Path:
        """`inside` (absolute, or relative to WORKDIR) as a path under the stage's root."""
        absolute = inside if inside.startswith("/") else f"{self.workdir.rstrip('/')}/{inside}"
        return self.root / absolute.lstrip("/")

    def apply(self, step: Instruction) -> None:
        print(f" {step.keyword} {step.arguments[:80]}", file=sys.stderr, flush=True)
        if step.keyword == "RUN":
            if self.user not in ("", "0", "root", "0:0"):
                raise UnsupportedInstruction(f"line {step.line}: RUN after USER {self.user}")
            rootfs.chroot_sh(self.root, step.arguments, self.env, self.workdir)
        elif step.keyword == "ENV":
            self.env.update(dockerfile.env_pairs(step, self.env))
        elif step.keyword == "WORKDIR":
            self.workdir = dockerfile.expand(step.arguments, self.env)
            if not self.workdir.startswith("/"):
                raise UnsupportedInstruction(f"line {step.line}: a relative WORKDIR")
            self.path(self.workdir).mkdir(parents=True, exist_ok=True)
        elif step.keyword == "USER":
            self.user = step.arguments
        elif step.keyword == "EXPOSE":
            self.exposed += step.arguments.split()
        elif step.keyword == "ENTRYPOINT":
            self.entrypoint = dockerfile.exec_form(step)
            self.cmd = []  # Docker resets an inherited CMD when ENTRYPOINT is set
        elif step.keyword == "CMD":
            self.cmd = dockerfile.exec_form(step)
        elif step.keyword == "COPY":
            self.copy(step)
        else:  # parse() lets nothing else through
            raise UnsupportedInstruction(f"line {step.line}: {step.keyword}")

    def copy(self, step: Instruction) -> None:
        sources, destination = dockerfile.copy_arguments(step)
        stage_from = step.flags.get("from")
        mode = int(step.flags["chmod"], 8) if "chmod" in step.flags else None
        target = self.path(destination)
        into_directory = destination.endswith("/") or target.is_dir()
        for source in sources:
            if stage_from is not None:
                if stage_from not in self.done:
                    raise UnsupportedInstruction(f"line {step.line}: no stage {stage_from}")
                origin = self.done[stage_from] / source.lstrip("/")
                # From a stage: owners and modes as they are there (cp -a).
                self._copy_tree(origin, target, into_directory, step.line)
            else:
                files = rootfs.context_files(self.context, source, self.ignore)
                origin = files[0]
                dest = target / origin.name if into_directory and origin.is_file() else target
                for file in files:
                    relative = file.relative_to(origin)
                    placed = dest / relative if relative.parts else dest
                    if file.is_dir():
                        placed.mkdir(parents=True, exist_ok=True)
                    else:
                        placed.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(file, placed)
                    # The context's files arrive as root:root with their own modes.
                    placed.chmod(mode if mode is not None else file.stat().st_mode & 0o7777)
                    shutil.chown(placed, 0, 0)

    @staticmethod
    def _copy_tree(origin: Path, target: Path, into: bool, line: int) -> None:
        if not origin.exists():
            raise rootfs.BuildError(f"line {line}: COPY --from: {origin} does not exist")
        dest = target / origin.name if into and origin.is_file() else target
        dest.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            dest.mkdir(exist_ok=True)
            rootfs.run_checked(["cp", "-a", f"{origin}/.", str(dest)], f"COPY --from {origin}")
        else:
            rootfs.run_checked(["cp", "-a", str(origin), str(dest)], f"COPY --from {origin}")

    def config(self) -> dict[str, object]:
        return {
            "env": self.env,
            "user": self.user,
            "workdir": self.workdir,
            "entrypoint": self.entrypoint,
            "cmd": self.cmd,
            "exposed": self.exposed,
            "from": self.stage.base,
            "stand_in": STAND_INS[self.kind],
        }


STAND_INS = {
    "debian": "debootstrap --variant=minbase bookworm from Debian's mirror, upgraded",
    "python": "debootstrap bookworm + Debian's python3 (3.11.2), not the python image's build",
}


def build_stages(path: Path, out: Path) -> dict[str, object]:
    """Build every stage of Dockerfile `path` under `out`; the last becomes `out/rootfs`.

    Returns the final stage's config. Raises UnsupportedInstruction, rootfs.BuildError.
    """
    stages = dockerfile.parse(path.read_text())
    done: dict[str, Path] = {}
    last: _StageBuild | None = None
    for index, stage in enumerate(stages):
        print(f"stage {index} FROM {stage.base}", file=sys.stderr, flush=True)
        last = _StageBuild(stage, out / f"stage{index}", path.parent.resolve(), done)
        for step in stage.instructions:
            last.apply(step)
        done[stage.name or str(index)] = last.root
    assert last is not None  # parse() refuses a file without FROM
    for directory in done.values():
        if directory != last.root:
            shutil.rmtree(directory)
    last.root.rename(out / "rootfs")
    config = last.config()
    config["debian_version"] = (out / "rootfs/etc/debian_version").read_text().strip()
    python = out / "rootfs/usr/bin/python3"
    if python.exists():
        config["python"] = subprocess.run(
            ["chroot", str(out / "rootfs"), "/usr/bin/python3", "--version"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    return config
