"""Moving a run between machines: export it to a tar bundle, import one as a new run."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import tempfile
from dataclasses import replace
from pathlib import Path

from runner.control.errors import LifecycleError
from runner.durable import dump_json, read_json, write_json
from runner.model import (
    RunSpec,
    RunState,
    ShapeError,
    Status,
)
from runner.registry import (
    REQUESTS,
    SPEC,
    STATE,
    SUPERVISOR_LOCK,
    Registry,
)
from runner.tickets import (
    CANCELLED,
    TICKET,
    Ticket,
)

_EXPORT_SKIP = {SUPERVISOR_LOCK, REQUESTS, ".reserve", "cgroup"}  # this machine's only


def export_run(registry: Registry, run_id: str, out: Path, *, with_env: bool = False) -> Path:
    """Write the run folder as a portable ``.tar.gz`` bundle (0600, like the run's files).

    The run's environment (tokens and keys included) stays out of the bundle unless
    ``with_env``: its ``spec.json`` is written with an empty ``env``, and a run imported from
    it inherits the importer's environment on resume.
    """
    folder = registry.run_dir(run_id)
    if not (folder / SPEC).is_file():
        raise LifecycleError(f"cannot export run {run_id}: it has no spec.json")
    spec_bytes: bytes | None = None
    if not with_env:
        try:
            raw = read_json(folder / SPEC)
        except ShapeError as exc:
            raise LifecycleError(f"cannot export run {run_id}: spec.json: {exc}") from None
        if isinstance(raw, dict):
            raw["env"] = {}
        spec_bytes = dump_json(raw)

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        if len(parts) > 1 and parts[1] in _EXPORT_SKIP:
            return None
        if spec_bytes is not None and parts[1:] == (SPEC,):
            return None  # added below without the environment
        if not (info.isfile() or info.isdir()):
            return None
        return info

    tmp = out.with_name(f".{out.name}.{os.urandom(3).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as raw_out, tarfile.open(fileobj=raw_out, mode="w:gz") as tar:
        tar.add(folder, arcname=run_id, filter=keep)
        if spec_bytes is not None:
            info = tar.gettarinfo(str(folder / SPEC), arcname=f"{run_id}/{SPEC}")
            info.size = len(spec_bytes)
            tar.addfile(info, io.BytesIO(spec_bytes))
    os.replace(tmp, out)
    return out


def import_run(registry: Registry, bundle: Path) -> str:
    """Add a bundle made by :func:`export_run` as a new run (new id); return the id."""
    registry.ensure()
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=registry.runs_dir))
    try:
        try:
            with tarfile.open(bundle, "r:*") as tar:
                members = tar.getmembers()
                roots = {Path(m.name).parts[0] for m in members if m.name not in ("", ".")}
                if len(roots) != 1:
                    raise LifecycleError(f"{bundle}: not a Backprop run bundle")
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise LifecycleError(f"{bundle}: not a readable bundle ({exc})") from None
        (root,) = roots
        src = staging / root
        try:
            old_spec = RunSpec.from_json(read_json(src / SPEC))
        except (FileNotFoundError, ShapeError) as exc:
            raise LifecycleError(f"{bundle}: bundle has no valid spec.json ({exc})") from None
        new_id = registry.allocate_id()
        # Its dependencies were runs of another registry: their ids mean nothing here.
        write_json(src / SPEC, replace(old_spec, id=new_id, after=()).to_json())
        with contextlib.suppress(FileNotFoundError):
            raw = read_json(src / STATE)
            try:
                st = RunState.from_json(raw)
                if st.status.active:
                    st = replace(st, status=Status.LOST, reason="imported while it was running")
                write_json(src / STATE, replace(st, run_id=new_id).to_json())
            except ShapeError:
                pass  # keep it as it is: the run will list as corrupt, nothing is lost
        _import_ticket(src, new_id)
        (src / REQUESTS).mkdir(exist_ok=True)
        dest = registry.run_dir(new_id)
        os.rmdir(dest)  # allocate_id created it empty; the bundle takes its place
        os.rename(src, dest)
        return new_id
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _import_ticket(src: Path, new_id: str) -> None:
    """Give an imported run's ticket its new id; one still waiting here never will there."""
    path = src / TICKET
    try:
        ticket = Ticket.from_json(read_json(path))
    except FileNotFoundError:
        return
    except ShapeError:
        return  # kept as it is: the run lists as corrupt, nothing is lost
    if ticket.kind != CANCELLED:
        ticket = replace(ticket, kind=CANCELLED, reason="imported while queued")
    write_json(path, replace(ticket, run_id=new_id).to_json())
