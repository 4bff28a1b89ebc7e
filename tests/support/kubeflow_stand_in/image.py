"""The container image, as far as this machine can see it without Docker: what ``kubeflow/Dockerfile`` declares
(its environment, working folder, copies and installs), and a local stand-in that holds the same things.

``image_stand_in`` makes a folder that contains what the image contains, for ``local_launcher`` to run the
compiled spec's container commands in:

* a fresh virtualenv with this project installed **non-editable** from a copy of the sources, as the
  Dockerfile's ``pip install ./src`` does (so the tasks import the installed package, never this checkout);
* the pinned stack of the set-up virtualenv (installed by ``setup.sh`` from the same ``constraints.txt`` the
  Dockerfile installs from) made visible to it by a ``.pth`` line: installing the stack again would take minutes
  of a CI run and would give the same pinned versions (``test_kubeflow.py`` checks both install lines);
* the Dockerfile's ``COPY`` destinations under ``<stand-in>/fs`` (the image's ``/opt/ondevice-rec/src``
  becomes ``<stand-in>/fs/opt/ondevice-rec/src``: ``path_map`` says so, and the launcher rewrites the spec's
  image paths through it, the one thing a container does differently from a subprocess);
* the Dockerfile's ``ENV`` as the whole environment of every task (plus PATH, HOME and the temp folder).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from typing import Dict, List, Sequence, Tuple

# the repository (the build context): tests/support/kubeflow_stand_in/ -> three folders up
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
DOCKERFILE = os.path.join(PROJECT_DIR, "kubeflow", "Dockerfile")
STACK_PTH = "ondevice-rec-stack.pth"


@dataclasses.dataclass
class Dockerfile:
    """The instructions of a Dockerfile that this project uses, in order (continuation lines joined)."""

    base: str
    env: Dict[str, str]
    workdir: str
    # (source in the build context, destination in the image): absolute, ending in "/" when it is a folder
    copies: List[Tuple[str, str]]
    runs: List[str]

    def pip_installs(self) -> List[List[str]]:
        """The arguments of every ``pip install`` in the RUN lines (each RUN split at ``&&``)."""
        installs = []
        for run in self.runs:
            for command in run.split("&&"):
                words = shlex.split(command)
                if words[:2] == ["pip", "install"]:
                    installs.append(words[2:])
        return installs


def read_dockerfile(path: str = DOCKERFILE) -> Dockerfile:
    with open(path, encoding="utf-8") as f:
        lines, current = [], ""
        for raw in f:
            line = raw.rstrip("\n")
            if not current and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.endswith("\\"):
                current += line[:-1] + " "
                continue
            lines.append(current + line)
            current = ""
    base, env, workdir, copies, runs = "", {}, "/", [], []
    for line in lines:
        instruction, _, rest = line.strip().partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            base = rest.strip()
        elif instruction == "ENV":
            for word in shlex.split(rest):
                key, sep, value = word.partition("=")
                if not sep:
                    raise ValueError(f"{path}: ENV {word!r} is not KEY=VALUE (the only form read here)")
                env[key] = value
        elif instruction == "WORKDIR":
            workdir = os.path.join(workdir, rest.strip())
        elif instruction == "COPY":
            *sources, destination = shlex.split(rest)
            # Docker: a destination ending in "/" (or ".") is a folder the sources go into.
            into = destination.endswith(("/", "/.")) or destination == "." or len(sources) > 1
            destination = os.path.normpath(os.path.join(workdir, destination))
            copies.extend((source, destination + "/" if into else destination) for source in sources)
        elif instruction == "RUN":
            runs.append(rest.strip())
    return Dockerfile(base, env, workdir, copies, runs)


@dataclasses.dataclass
class ImageStandIn:
    """Where the launcher runs the spec's commands: ``bin_dir`` first on PATH (``python`` resolves there), the
    image's environment, its working folder and the image paths mapped to local folders."""

    root: str
    bin_dir: str
    env: Dict[str, str]
    workdir: str
    path_map: Dict[str, str]

    def local_path(self, text: str) -> str:
        for image_path, local in self.path_map.items():
            text = text.replace(image_path, local)
        return text

    def environment(self) -> Dict[str, str]:
        tmp = os.path.join(self.root, "tmp")
        os.makedirs(tmp, exist_ok=True)
        return {**self.env, "PATH": f"{self.bin_dir}{os.pathsep}/usr/local/bin:/usr/bin:/bin", "HOME": self.root,
                "TMPDIR": tmp}

    def python(self) -> str:
        return os.path.join(self.bin_dir, "python")


def _source_files(project_dir: str) -> List[str]:
    """The build context's files: what git tracks (the repository has no .dockerignore; untracked local outputs
    would not be in a clean checkout's image either)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=project_dir, check=True,
                                capture_output=True, text=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):  # an sdist or a copy without git: everything but outputs
        listed = []
        for folder, dirs, files in os.walk(project_dir):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("node_modules", "__pycache__")]
            listed += [os.path.relpath(os.path.join(folder, f), project_dir) for f in files]
    return [f for f in listed if f and not f.startswith("demo/node_modules/") and
            os.path.isfile(os.path.join(project_dir, f))]


def image_stand_in(root: str, dockerfile: str = DOCKERFILE, project_dir: str = PROJECT_DIR,
                   stack_site_packages: str = "", report=print) -> ImageStandIn:
    """Builds the stand-in under ``root`` (see the module docstring); ``stack_site_packages``: the pinned stack
    (default: this interpreter's site-packages, the set-up virtualenv)."""
    image = read_dockerfile(dockerfile)
    fs = os.path.join(root, "fs")
    files = _source_files(project_dir)
    for source, destination in image.copies:
        target = fs + destination
        if source == ".":  # the build context's contents into the destination folder
            for name in files:
                os.makedirs(os.path.dirname(os.path.join(target, name)), exist_ok=True)
                shutil.copy2(os.path.join(project_dir, name), os.path.join(target, name))
        else:
            if destination.endswith("/"):
                target = os.path.join(target, os.path.basename(source))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(os.path.join(project_dir, source), target)
    venv = os.path.join(root, "venv")
    report(f"  image stand-in: virtualenv {venv}")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = os.path.join(venv, "bin", "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True,
                          capture_output=True, text=True).stdout.strip()
    with open(os.path.join(site, STACK_PTH), "w") as f:
        f.write((stack_site_packages or sysconfig.get_paths()["purelib"]) + "\n")
    # The project as the Dockerfile installs it: a regular install of the copied sources (no editable hook).
    source_dir = fs + os.path.join(image.workdir, "src")
    report("  image stand-in: installing the project non-editable from the copied sources")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--no-build-isolation", "--ignore-requires-python", source_dir], check=True,
                   env={**os.environ, "PIP_NO_INDEX": "1"})
    return ImageStandIn(root=root, bin_dir=os.path.join(venv, "bin"), env=dict(image.env), workdir=fs + image.workdir,
                        path_map={image.workdir: fs + image.workdir})


def installed_project(stand_in: ImageStandIn) -> str:
    """Where the stand-in's ``python`` imports ondevice_rec from (a test asserts: its virtualenv, not here)."""
    return subprocess.run([stand_in.python(), "-c", "import ondevice_rec; print(ondevice_rec.__file__)"], check=True,
                          capture_output=True, text=True, env=stand_in.environment(), cwd=stand_in.workdir
                          ).stdout.strip()


def requirements_pinned(constraints_file: str, requirements: Sequence[str]) -> List[str]:
    """The requirements (``name[extra]...`` specifiers) whose package has no ``==`` pin in ``constraints_file``."""
    import re
    pinned = set()
    with open(constraints_file) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if "==" in line:
                pinned.add(re.sub(r"[-_.]+", "-", line.split("==")[0].strip().lower()))
    missing = []
    for requirement in requirements:
        name = re.split(r"[\[<>=!~; ]", requirement.strip(), maxsplit=1)[0]
        if re.sub(r"[-_.]+", "-", name.lower()) not in pinned:
            missing.append(requirement)
    return missing
