"""Folders as a framework writes them, and saving one through a Checkpointer: shared by the
folder-checkpoint tests of the notebook side and of the laptop's ``colabtui checkpoints``."""

from __future__ import annotations

import json
import os

from colabtui_remote.checkpoint.writer import Checkpointer


def write_folder(directory, name: str, step: int, *, nested: bool = True) -> str:
    """A folder as a framework writes one: a few files, one in a subfolder."""
    path = os.path.join(directory, name)
    os.makedirs(os.path.join(path, "sub"), exist_ok=True)
    with open(os.path.join(path, "model.safetensors"), "wb") as f:
        f.write(os.urandom(3000) + step.to_bytes(4, "little"))
    with open(os.path.join(path, "trainer_state.json"), "w") as f:
        json.dump({"global_step": step}, f)
    if nested:
        with open(os.path.join(path, "sub", "rng.pth"), "wb") as f:
            f.write(os.urandom(100))
    return path


def save_folder(ckpt: Checkpointer, path: str, step: int) -> tuple:
    got = {}
    assert ckpt.submit_folder(path, step, 0, "transformers",
                              lambda info, error: got.update(info=info, error=error))
    assert ckpt.wait(30)
    return got["info"], got["error"]
