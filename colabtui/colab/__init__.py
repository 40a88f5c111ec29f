"""Colab runtimes reached through Google's own Colab CLI (``google-colab-cli``, module
``colab_cli``), used as a library: its sign-in and token file, its client of Colab's tunnel
endpoints (``/tun/m/assignments``, ``assign``, ``unassign``, ``ccu-info``), and each runtime's
Jupyter server behind Google's runtime proxy.

- :mod:`.account`: where the client points and with which credentials; the runtimes assigned.
- :mod:`.url`: ``colab://ENDPOINT[/mailbox/path]`` session URLs.
- :mod:`.proxy`: one runtime's proxy URL and token, refreshed before the token expires.
- :mod:`.contents`: a mailbox folder on the runtime's disk, read and written through the
  Jupyter contents API (the mailbox protocol unchanged).
- :mod:`.client`: the session client the app and the CLI use (transport ``colab``).

Nothing here imports ``colab_cli`` until it is used; without it, each entry point raises
:class:`~.errors.ColabCliMissing` with the line that installs it.
"""
