"""Running a few lines of Python on a Colab runtime: a kernel of its own, started through the
runtime proxy with the Colab CLI's ``colab_cli.runtime.ColabRuntime`` (jupyter-kernel-client
over the kernel websocket), the code run, the kernel shut down.

A kernel runs one execute at a time, so a user's cell still running keeps its own kernel busy;
this kernel is a second one beside it and never waits on it. Anything long (training) must not
run here: :mod:`.launch` starts it as a process of its own and returns at once.
"""

from __future__ import annotations

from typing import Any

from colabtui.colab.account import Runtime
from colabtui.colab.errors import ColabCliMissing, ColabError

MAX_OUTPUT_CHARS = 1 << 20
"""The most stdout kept from one run, characters (the runtime is not trusted to be brief)."""


def run_in_kernel(runtime: Runtime, code: str, *, timeout_s: float) -> str:
    """Run ``code`` in a new kernel on ``runtime``; its stdout, at most
    :data:`MAX_OUTPUT_CHARS`. The kernel is shut down after, whatever happened.

    Raises:
        ColabError: the kernel could not be started or reached, did not finish within
            ``timeout_s`` seconds, or the code raised (its exception's name and message).
        ColabCliMissing: the Colab CLI is not installed.
    """
    try:
        from colab_cli.runtime import ColabRuntime
    except ImportError:
        raise ColabCliMissing() from None
    if not runtime.proxy_url:
        raise ColabError(f"Colab listed no usable proxy URL for runtime {runtime.endpoint}")
    kernel = ColabRuntime(runtime.proxy_url, runtime.proxy_token)
    try:
        outputs = kernel.execute_code(code, timeout=timeout_s)
    except TimeoutError:
        raise ColabError(f"runtime {runtime.endpoint}: the kernel did not finish in "
                         f"{timeout_s:g} s") from None
    except Exception as exc:  # noqa: BLE001 — requests, websocket and jupyter errors alike
        raise ColabError(f"runtime {runtime.endpoint}: cannot run code in a kernel "
                         f"({type(exc).__name__}: {str(exc)[:200]})") from None
    finally:
        _shut_down(kernel)
    return _stdout(runtime, outputs)


def _stdout(runtime: Runtime, outputs: Any) -> str:
    text: list[str] = []
    size = 0
    for out in outputs if isinstance(outputs, list) else []:
        if not isinstance(out, dict):
            continue
        if out.get("output_type") == "error":
            raise ColabError(f"runtime {runtime.endpoint}: {str(out.get('ename'))[:100]}: "
                             f"{str(out.get('evalue'))[:500]}")
        piece = out.get("text")
        if out.get("output_type") == "stream" and out.get("name") == "stdout" and \
                isinstance(piece, str) and size < MAX_OUTPUT_CHARS:
            text.append(piece[:MAX_OUTPUT_CHARS - size])
            size += len(text[-1])
    return "".join(text)


def _shut_down(kernel: Any) -> None:
    try:
        kernel.stop(shutdown_kernel=True)  # logs its own failure; never raises
    except Exception:  # noqa: BLE001, S110 — a kernel that cannot be stopped dies with the runtime
        pass
