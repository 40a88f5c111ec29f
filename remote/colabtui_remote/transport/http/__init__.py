"""Wire protocol v1 over HTTP: :mod:`.api` (routes, never raises), :mod:`.server` (the stdlib
socket server on daemon threads), :mod:`.serve` (starting one for a run, the token, the connect
line), :mod:`.tunnel` (the opt-in Cloudflare quick tunnel)."""

from .server import PortInUse

__all__ = ["PortInUse"]
