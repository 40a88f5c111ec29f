"""What ``colabtui launch`` started, kept so that a session whose runtime died can be launched
again on a fresh runtime (the app's ``R`` key, ``colabtui colab relaunch URL``).

One JSON file, ``launches.json`` in colabtui's data folder (:func:`~colabtui.config.data_dir`),
written atomically; one record per session URL (``colab://ENDPOINT/content/colabtui``)::

    {"version": 1, "launches": {"colab://…": {"script": "/abs/train.py", "args": […],
                                            "gpu": "T4", "label": "digits 1"}}}

A relaunch assigns one runtime, starts the same script with the same arguments there (the run
resumes from its checkpoint folder, which must outlive a runtime: a Drive folder), and moves
the session in the config file to the new URL, label and token kept. It refuses while the old
runtime is still assigned: never two runtimes for one session.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from colabtui_remote import schema, wire

from colabtui.colab.account import Account
from colabtui.colab.errors import ColabError
from colabtui.colab.launch import LaunchSpec, Started, launch, release_all
from colabtui.colab.url import parse_colab_url
from colabtui.config import Config, ConfigError, SessionConfig, data_dir, load_config, save_config

FILE_NAME = "launches.json"
MAX_FILE_BYTES = 1 << 20


class LaunchRecordError(ColabError):
    """The launches file cannot be read or written, or has no record of the session."""


@dataclass(frozen=True)
class LaunchRecord:
    """How a session was launched: the script on this laptop, its arguments, the GPU."""

    script: str
    args: tuple[str, ...]
    gpu: str | None
    label: str = ""

    @property
    def spec(self) -> LaunchSpec:
        return LaunchSpec(Path(self.script), self.args, self.gpu)


def launches_path() -> Path:
    """``launches.json`` in colabtui's data folder."""
    return data_dir() / FILE_NAME


def load_launches(path: Path | None = None) -> dict[str, LaunchRecord]:
    """Every record by session URL; ``{}`` when there is no file.

    Raises:
        LaunchRecordError: the file cannot be read, or is not a launches file (it is left as is).
    """
    path = path or launches_path()
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise LaunchRecordError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        doc = wire.loads(raw) if len(raw) <= MAX_FILE_BYTES else None  # depth, digits bounded
        records = {_url(url): _record(r) for url, r in doc["launches"].items()}
    except (schema.SchemaError, ValueError, TypeError, KeyError, AttributeError):
        raise LaunchRecordError(f"{path}: not a launches file colabtui wrote (move it away to "
                                "start afresh)") from None
    return records


def _url(url: Any) -> str:
    parse_colab_url(url)  # ValueError unless a colab:// URL, whole
    return url


def _record(r: Any) -> LaunchRecord:
    """One record, each field of the type colabtui writes (TypeError otherwise); the label
    cleaned as session text is (it is shown)."""
    script, args, gpu, label = r["script"], r["args"], r.get("gpu"), r.get("label", "")
    if not (isinstance(script, str) and isinstance(args, list) and isinstance(label, str)
            and all(isinstance(a, str) for a in args) and (gpu is None or isinstance(gpu, str))):
        raise TypeError("a field of the wrong type")
    return LaunchRecord(script, tuple(args), gpu, wire.clean_text(label, 200))


def save_launches(records: dict[str, LaunchRecord], path: Path | None = None) -> None:
    """Write every record atomically (a temporary file, fsync, rename), mode 0o600.

    Raises:
        LaunchRecordError: the file cannot be written.
    """
    path = path or launches_path()
    doc = {"version": 1, "launches": {url: {"script": r.script, "args": list(r.args),
                                            "gpu": r.gpu, "label": r.label}
                                      for url, r in records.items()}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise LaunchRecordError(f"{path}: cannot be written ({exc.strerror or exc})") from None


def remember(started: list[Started], spec: LaunchSpec, labels: list[str],
             path: Path | None = None) -> None:
    """Add a record for each session just started. Raises :class:`LaunchRecordError`."""
    records = load_launches(path)
    for s, label in zip(started, labels, strict=True):
        records[s.url] = LaunchRecord(str(spec.script.resolve()), s.args, spec.gpu, label)
    save_launches(records, path)


def relaunch(account: Account, url: str, config_path: Path, wheel: Path, version: str, *,
             say: Callable[[str], None] = print, path: Path | None = None) -> Started:
    """Launch the session ``url`` again on a new runtime and move it there in the config.

    Raises:
        LaunchRecordError: no record of ``url`` (it was not started by ``colabtui launch``).
        ColabError: the old runtime is still assigned (release it first, or it is still
            running), or as :func:`~.launch.launch` (one session); a runtime assigned here
            is released before the error is raised.
        ValueError: the script is no longer readable on this laptop, or it names a
            ``gdrive://`` folder and there is no Drive sign-in to send.
        ConfigError: the config file cannot be read or written (the runtime is released).
    """
    record = record_of(url, path)
    endpoint, _ = parse_colab_url(url)
    if any(r.endpoint == endpoint for r in account.runtimes()):
        raise ColabError(f"runtime {endpoint} is still assigned to your account: it is not "
                         "dead (or release it first: `colabtui colab release "
                         f"{endpoint}`); nothing launched")
    load_config(config_path)  # a config that cannot be read is said before any cost
    (started,) = launch(account, record.spec, wheel, version, 1, say=say,
                        what_for=record.label or url)
    try:
        config = load_config(config_path)
        old = config.find(url)
        session = SessionConfig(started.url, old.token if old else "",
                                old.label if old else record.label)
        moved = Config([session if s.url == url else s for s in config.sessions],
                       config.settings) if old is not None else config.with_session(session)
        save_config(moved, config_path)
    except BaseException as exc:
        release_all(account, [started.runtime], exc, say)
        raise
    records = load_launches(path)  # again: another relaunch may have written it meanwhile
    records.pop(url, None)
    records[started.url] = LaunchRecord(record.script, started.args, record.gpu, record.label)
    save_launches(records, path)
    return started


def record_of(url: str, path: Path | None = None) -> LaunchRecord:
    """The launch record of the session ``url``.

    Raises:
        LaunchRecordError: none (it was not started by ``colabtui launch``), or the file
            cannot be read.
    """
    record = load_launches(path).get(url)
    if record is None:
        raise LaunchRecordError(f"{url} was not started by `colabtui launch`: nothing to "
                                "relaunch")
    return record


def remote_wheel(out_dir: str, say: Callable[[str], None] = print) -> Any:
    """colabtui-remote's wheel for a launch, built in ``out_dir``
    (:func:`~colabtui.notebook_wheel.build_remote_wheel`). Raises :class:`~.errors.ColabError`
    with pip's words when it cannot be built."""
    from colabtui.notebook_wheel import WheelError, build_remote_wheel

    say("building colabtui-remote's wheel from this installation…")
    try:
        return build_remote_wheel(out_dir)
    except WheelError as exc:
        raise ColabError(str(exc)) from None


def relaunch_session(account: Account, url: str, config_path: Path, *,
                     say: Callable[[str], None] = print, path: Path | None = None) -> Started:
    """:func:`relaunch` with this installation's colabtui-remote wheel, built in a temporary
    folder (removed after). Raises as :func:`relaunch`."""
    record_of(url, path)  # said before a wheel is built for nothing
    with tempfile.TemporaryDirectory(prefix="colabtui-launch-") as tmp:
        built = remote_wheel(tmp, say)
        return relaunch(account, url, config_path, built.path, built.version, say=say,
                        path=path)


__all__ = ["ConfigError", "LaunchRecord", "LaunchRecordError", "launches_path", "load_launches",
           "record_of", "relaunch", "relaunch_session", "remember", "remote_wheel", "save_launches"]
