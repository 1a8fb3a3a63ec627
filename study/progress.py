"""The study's own files beside Ray Tune's state, in ``<storage>/<study name>/``, read and written
through pyarrow's filesystems (a local folder, ``s3://``, ...), each written atomically:

- :data:`META` (``uwm-study.json``): the spec, the tracking URI and the parent run, written when
  the study starts, so ``uwm-study resume NAME`` and ``uwm-study status NAME`` need only the name;
- :data:`PROGRESS` (``uwm-progress.json``): the searcher's progress, written beside the searcher's
  state whenever Tune saves it, and synced with it to the storage: spec hash, stage (search,
  confirm or done), points by status, packs suggested and running, and whether the study is
  complete. Completion, resume and status read it, never Tune's own files.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from uwm_model import layout

META = "uwm-study.json"
PROGRESS = "uwm-progress.json"


def filesystem(path: str):
    """pyarrow's filesystem of ``path`` and the path within it."""
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(path if layout.is_remote(path) else Path(path).resolve().as_uri())


def read_json(folder: str, name: str) -> dict | None:
    """The JSON file ``name`` in ``folder``, or None when there is none."""
    import pyarrow.fs

    fs, root = filesystem(folder)
    for attempt in range(5):
        if fs.get_file_info(f"{root}/{name}").type == pyarrow.fs.FileType.NotFound:
            return None
        with fs.open_input_stream(f"{root}/{name}") as f:
            text = f.readall()
        try:
            return json.loads(text)
        except ValueError:   # caught while Tune's sync copies a new version over it
            if attempt == 4:
                raise
            time.sleep(0.2)


def write_json(folder: str, name: str, data: dict) -> None:
    """Write ``data`` as ``folder/name`` atomically: a reader sees the old file or the new one, never a part.
    (Locally through a temporary file renamed over it; an object store publishes an object when it is closed.)"""
    text = json.dumps(data, indent=1).encode()
    if not layout.is_remote(folder):
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{name}.", delete=False) as f:
            f.write(text)
        os.chmod(f.name, 0o644)
        os.replace(f.name, os.path.join(folder, name))
        return
    fs, root = filesystem(folder)
    fs.create_dir(root, recursive=True)
    with fs.open_output_stream(f"{root}/{name}") as f:
        f.write(text)
