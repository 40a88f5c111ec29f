"""Fitting a saved state dict to the module or optimizer it is restored into, checked before
anything is loaded: the wrapper prefixes of module keys reconciled, then keys, tensor shapes and
optimizer parameter groups compared. torch is not imported here; the caller passes it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .errors import CheckpointError

__all__ = ["PREFIXES", "check_optimizer_state", "fit_module_state"]

PREFIXES = ("_orig_mod.", "module.")
"""State-dict key prefixes reconciled on restore: ``torch.compile`` wraps a module as
``_orig_mod`` (its ``OptimizedModule`` registers the model as that child); ``DataParallel`` and
``DistributedDataParallel`` wrap it as ``module``."""


def fit_module_state(torch: Any, name: str, module: Any, sd: Any, note: Callable[[str], None]
                     ) -> tuple[Any, str | None]:
    """Reconcile the wrapper prefixes of a module state dict, then check its keys and shapes.

    Wrappers prefix every key: ``torch.compile`` with ``_orig_mod.``, DataParallel/DDP with
    ``module.``, nested in either order (``module._orig_mod.w``, ``_orig_mod.module.w``). The
    :data:`PREFIXES` every checkpoint key shares, and those every model key shares, are the
    candidates: the fewest are stripped from each side that make both hold the same keys, and
    the checkpoint's keys get the model's. Only prefixes every key carries count, so a model
    whose own child is called ``module`` (all keys ``module.…``) fits too, with or without
    wrappers, and a mix of prefixed and bare keys is never renamed.

    Args:
        torch: the torch module.
        name: the tracked name, for messages.
        module: the ``torch.nn.Module`` restored into.
        sd: the saved state dict (key → tensor or value).
        note: called with each prefix stripped or added, e.g. ``"model: stripped prefix
            _orig_mod. from 4 keys"``.

    Returns:
        (the state dict with the model's keys, one line saying what was reconciled or None).

    Raises:
        CheckpointError: not a dict, keys that do not match the model (the message lists some
            and says when only part of the keys carry a prefix), or tensor shapes that differ.
    """
    if not isinstance(sd, dict):
        raise CheckpointError(f"{name}: saved state dict is not a dict")
    target = module.state_dict()
    want = set(target)
    summary = None
    fit = _match_prefixes(list(sd), list(target)) if sd and want and set(sd) != want else None
    if fit:
        stripped, added = fit
        for prefix in stripped:
            sd = _rename(sd, lambda k, p=prefix: k[len(p):], strip=prefix)
            note(f"{name}: stripped prefix {prefix} from {len(sd)} keys")
        for prefix in reversed(added):  # innermost first: the outermost ends up in front
            sd = _rename(sd, lambda k, p=prefix: p + k, add=prefix)
        for prefix in added:
            note(f"{name}: added prefix {prefix} to {len(sd)} keys")
        steps = [f"stripped prefix {p}" for p in stripped] + [f"added prefix {p}" for p in added]
        summary = f"{name}: checkpoint keys reconciled ({len(sd)} keys): {', '.join(steps)}"
    missing = sorted(want - set(sd))
    unexpected = sorted(set(sd) - want)
    if missing or unexpected:
        msg = f"{name}: state dict keys do not match the model"
        if missing:
            msg += f"; missing {len(missing)}: {', '.join(missing[:5])}"
        if unexpected:
            msg += f"; unexpected {len(unexpected)}: {', '.join(unexpected[:5])}"
        for prefix in PREFIXES:
            n = sum(k.startswith(prefix) for k in sd)
            if 0 < n < len(sd):
                msg += (f" ({n} of {len(sd)} checkpoint keys start with {prefix!r}; prefixes are "
                        "reconciled only when every key carries them)")
        raise CheckpointError(msg)
    bad = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(target[k].shape)}"
           for k in sd if isinstance(sd[k], torch.Tensor) and isinstance(target[k], torch.Tensor)
           and sd[k].shape != target[k].shape]
    if bad:
        raise CheckpointError(f"{name}: {len(bad)} tensor shape(s) differ: {'; '.join(bad[:5])}")
    return sd, summary


def check_optimizer_state(name: str, optimizer: Any, sd: Any) -> None:
    """Check that a saved optimizer state dict has the optimizer's parameter groups (as many
    groups, as many parameters in each).

    Raises:
        CheckpointError: it has no ``state``/``param_groups``, or the groups differ.
    """
    groups = sd.get("param_groups") if isinstance(sd, dict) else None
    if not isinstance(groups, list) or not isinstance(sd.get("state"), dict):
        raise CheckpointError(f"{name}: saved optimizer state has no 'state'/'param_groups'")
    want = [len(g["params"]) for g in optimizer.param_groups]
    have = [len(g.get("params", ())) if isinstance(g, dict) else -1 for g in groups]
    if want != have:
        raise CheckpointError(f"{name}: parameter groups differ: checkpoint has {have} "
                              f"parameters per group, the optimizer {want}")


def _wrapper_prefixes(keys: list[str]) -> list[str]:
    """The :data:`PREFIXES` every key shares, outermost first (``module._orig_mod.w`` → both)."""
    chain: list[str] = []
    while keys:
        prefix = next((p for p in PREFIXES if all(k.startswith(p) for k in keys)), None)
        if prefix is None:
            return chain
        chain.append(prefix)
        keys = [k[len(prefix):] for k in keys]
    return chain


def _match_prefixes(have: list[str], want: list[str]) -> tuple[list[str], list[str]] | None:
    """(prefixes to strip from ``have``, prefixes ``want`` carries on top of those) that make
    both key sets equal, fewest first; None when no choice does. Any choice that matches renames
    every key the same way: a key set decides the prefixes it shares, and stripping a different
    number of them could not leave equal sets."""
    ours, theirs = _wrapper_prefixes(have), _wrapper_prefixes(want)
    options = sorted(((i, j) for i in range(len(ours) + 1) for j in range(len(theirs) + 1)
                      if i or j), key=sum)
    for i, j in options:
        cut_have, cut_want = len("".join(ours[:i])), len("".join(theirs[:j]))
        if {k[cut_have:] for k in have} == {k[cut_want:] for k in want}:
            return ours[:i], theirs[:j]
    return None


def _rename(sd: dict, fn: Any, strip: str = "", add: str = "") -> OrderedDict:
    """Apply ``fn`` to every key; carry the module version metadata along (its keys are module
    paths: ``""`` is the root, ``"_orig_mod.0"`` a child)."""
    out: OrderedDict = OrderedDict((fn(k), v) for k, v in sd.items())
    meta = getattr(sd, "_metadata", None)
    if isinstance(meta, dict):
        new_meta: OrderedDict = OrderedDict()
        for path, value in meta.items():
            if strip:
                root = strip[:-1]
                if path == root:
                    new_meta[""] = value
                elif path.startswith(strip):
                    new_meta[path[len(strip):]] = value
            else:
                new_meta[add + path if path else add[:-1]] = value
        out._metadata = new_meta  # type: ignore[attr-defined]
    return out
