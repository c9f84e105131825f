"""The model bundle: one directory with everything needed to rebuild a detector.

``manifest.json`` holds the schema version, creation time, configuration, key vocabulary
with template texts, thresholds, the parser state and how raw input was read, plus the
SHA-256 of every weight file and of the manifest's own content. Weights are safetensors
(plain tensors, no code). Loading refuses an unknown schema, a manifest that was edited,
or a weight file whose checksum does not match, each with a one-line error.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from logwarden.errors import BundleError

SCHEMA = "logwarden.bundle/1"
MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _canonical(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def umask_mode() -> int:
    """The mode a new file gets from ``open`` under this process's umask (0o644 under the
    usual 022). Writers that create files another way (safetensors: 0o600, mkstemp:
    0o600) set it, so that one bundle or one output does not mix modes."""
    return 0o666 & ~_umask()


def save_bundle(
    path: str | Path,
    manifest: dict[str, Any],
    weights: dict[str, dict[str, np.ndarray]],
    *,
    replace: bool = True,
) -> None:
    """Write ``weights`` (file stem -> tensors) and the manifest into directory ``path``.

    ``replace=False``: ``path`` must not exist or be an empty directory, checked as the
    bundle appears: it is written beside it and renamed into place (one step), so that
    of two writers to one path, the second fails (BundleError) instead of replacing the
    first one's bundle."""
    if not replace:
        _save_new(Path(path), manifest, weights)
        return
    _write(Path(path), manifest, weights)


def _save_new(
    root: Path, manifest: dict[str, Any], weights: dict[str, dict[str, np.ndarray]]
) -> None:
    import shutil
    import tempfile

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700: the mode mkdir would have given
        _write(tmp, manifest, weights)
        try:
            os.rename(tmp, root)  # replaces an empty directory only
        except OSError as exc:
            if root.exists():
                raise BundleError(
                    f"{root} is not empty (another model was written there meanwhile?): "
                    "nothing replaced"
                ) from None
            raise exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write(root: Path, manifest: dict[str, Any], weights: dict[str, dict[str, np.ndarray]]) -> None:
    from safetensors.numpy import save_file

    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    for stem, tensors in weights.items():
        name = f"{stem}.safetensors"
        target = root / name
        tmp = root / f".{name}.tmp"
        save_file(
            {k: np.ascontiguousarray(v) for k, v in tensors.items()},
            str(tmp),
            metadata={"schema": SCHEMA},
        )
        os.chmod(tmp, umask_mode())
        os.replace(tmp, target)
        files[name] = {"sha256": _sha256(target), "bytes": target.stat().st_size}
    full = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **manifest,
        "files": files,
    }
    full["manifest_sha256"] = hashlib.sha256(_canonical(full)).hexdigest()
    tmp = root / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(full, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, root / MANIFEST)


def load_bundle(path: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Read and verify a bundle: (manifest, weights by file stem)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    root = Path(path)
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{root}: not a logwarden model bundle (no {MANIFEST})")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{mpath}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{mpath}: not a logwarden manifest")
    schema = manifest.get("schema")
    if schema != SCHEMA:
        raise BundleError(
            f"{root}: bundle schema {schema!r} is not supported (this logwarden reads {SCHEMA})"
        )
    if manifest.get("manifest_sha256") != hashlib.sha256(_canonical(manifest)).hexdigest():
        raise BundleError(f"{mpath}: checksum mismatch, the manifest was modified")
    weights: dict[str, dict[str, np.ndarray]] = {}
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"{mpath}: no file list")
    for name, info in files.items():
        fpath = root / name
        if Path(name).name != name or not name.endswith(".safetensors"):
            raise BundleError(f"{mpath}: unexpected file entry {name!r}")
        if not fpath.is_file():
            raise BundleError(f"{root}: missing weight file {name}")
        if _sha256(fpath) != info.get("sha256"):
            raise BundleError(f"{fpath}: checksum mismatch, the weights were modified")
        try:
            weights[name[: -len(".safetensors")]] = load_file(str(fpath))
        except (SafetensorError, OSError, ValueError) as exc:
            raise BundleError(f"{fpath}: unreadable weights ({exc})") from None
    return manifest, weights


def split_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """``{"part/name": array}`` -> ``{"part": {"name": array}}``: one weight file per part."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, value in arrays.items():
        part, sep, rest = name.partition("/")
        if not sep or not rest:
            raise ValueError(f"array name {name!r} is not PART/NAME")
        out.setdefault(part, {})[rest] = value
    return out


def join_arrays(weights: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The inverse of ``split_arrays``."""
    return {f"{part}/{name}": v for part, d in weights.items() for name, v in d.items()}
