"""The add-session form: URL, token (hidden), label. It saves nothing until the session
answers ``/v1/status`` with this token; every problem is shown in the form, in words.

The URL may also be a mailbox: a folder synced from Drive (``~/GoogleDrive/.../RUN``) or
``gdrive://FOLDER_ID/...`` through the Drive API, or ``colab://ENDPOINT`` on a Colab runtime's
disk; those need no token, and are added once the folder is there, even before the runtime has
written its first status. Signed in to Colab (``colabtui colab login``), the form lists the
account's runtimes to pick from.

A URL already saved updates that session: its token (a notebook that printed a new one), and
its label when one is given."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from colabtui.client import SessionError
from colabtui.config import (
    ConfigError,
    SessionConfig,
    mailbox_url,
    needs_token,
    validate_token,
    validate_url,
)
from colabtui.mailbox_client import MailboxClient
from colabtui.screens.dialog import DialogScreen
from colabtui.transport import make_client

CHECK_TIMEOUT_S = 5.0
"""How long the form waits for the session to answer, seconds per request phase."""


class AddSessionScreen(DialogScreen[SessionConfig | None]):
    """Dismisses with the checked :class:`SessionConfig`, or ``None`` when cancelled
    (Cancel, escape, or ``q`` while no text field has the focus).

    Args:
        known: the sessions already saved. One of their URLs updates that session once it
            answers with the token given (the label stays unless a new one is given).
    """

    BINDINGS = [Binding("escape,q", "cancel", "Cancel", show=True)]

    def __init__(self, known: Iterable[SessionConfig] = ()) -> None:
        super().__init__()
        self._known = {s.url: s for s in known}

    def compose(self) -> ComposeResult:
        with Vertical(id="add-box", classes="dialog"):
            yield Static("Add a session (or a new token for a saved one)", classes="dialog-title")
            yield Label("URL (mon.serve()), mailbox folder, gdrive:// or colab://")
            yield Input(placeholder="http://127.0.0.1:8765", id="url")
            yield Label("Your Colab runtimes (enter picks one):", id="colab-title")
            yield OptionList(id="colab-runtimes")
            yield Label("Token (not for a mailbox)")
            yield Input(placeholder="the --token value", password=True, id="token")
            yield Label("Label (optional)")
            yield Input(placeholder="e.g. resnet on T4", id="label")
            yield Static("", id="form-error")
            with Horizontal(classes="buttons"):
                yield Button("Check and add", id="add", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#colab-title").display = False
        self.query_one("#colab-runtimes").display = False
        self.query_one("#url", Input).focus()
        self._list_colab_runtimes()

    @work(thread=True, exclusive=True, group="colab-runtimes", exit_on_error=False)
    def _list_colab_runtimes(self) -> None:
        """With the Colab CLI installed and signed in: the account's runtimes to pick from
        (a worker thread; nothing is shown, and nothing asked, otherwise)."""
        try:
            from colabtui.colab.account import Account, token_path

            if not Path(token_path()).exists():
                return
            runtimes = Account().runtimes()
        except (OSError, ImportError):
            return
        if runtimes:
            self.app.call_from_thread(self._show_colab_runtimes, runtimes)

    def _show_colab_runtimes(self, runtimes: list) -> None:
        from colabtui.colab.url import colab_url

        options = self.query_one("#colab-runtimes", OptionList)
        options.clear_options()
        for rt in runtimes:
            gpu = "CPU" if rt.accelerator == "NONE" else rt.accelerator
            options.add_option(Option(Text(f"{rt.endpoint} · {gpu}"), id=colab_url(rt.endpoint)))
        self.query_one("#colab-title").display = True
        options.display = True

    @on(OptionList.OptionSelected, "#colab-runtimes")
    def _colab_picked(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#url", Input).value = event.option.id or ""
        self.query_one("#label", Input).focus()

    def show_error(self, message: str) -> None:
        """Show ``message`` literally (it may hold text from the session)."""
        self.query_one("#form-error", Static).update(Text(message, style="bold red"))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        order = ["url", "token", "label"]
        i = order.index(event.input.id) if event.input.id in order else 2
        if i < 2:
            self.query_one(f"#{order[i + 1]}", Input).focus()
        else:
            self._try_add()

    @on(Button.Pressed, "#add")
    def _add_pressed(self) -> None:
        self._try_add()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    def close(self) -> None:
        self.dismiss(None)

    def _try_add(self) -> None:
        text = self.query_one("#url", Input).value.strip()
        try:
            if text.startswith(("/", "~", ".")):  # a mailbox folder synced to this machine
                folder = Path(text).expanduser()
                if not folder.is_dir():
                    raise ConfigError(f"{text!r} is not a folder here (a run's mailbox as "
                                      "synced by Google Drive for desktop)")
                url = mailbox_url(folder)
            else:
                url = validate_url(text)
            token = "" if not needs_token(url) else \
                validate_token(self.query_one("#token", Input).value.strip())
        except ConfigError as exc:
            self.show_error(str(exc))
            return
        label = self.query_one("#label", Input).value.strip()
        saved = self._known.get(url)
        if saved is not None and not label:
            label = saved.label
        self.query_one("#add", Button).disabled = True
        update = f" (saved as {saved.display_label}: its token is updated)" if saved else ""
        self.query_one("#form-error", Static).update(Text(f"asking {url} …{update}",
                                                          style="dim"))
        self._check(SessionConfig(url=url, token=token, label=label))

    @work(exclusive=True, group="add-check", exit_on_error=False)
    async def _check(self, session: SessionConfig) -> None:
        client = make_client(session, timeout_s=CHECK_TIMEOUT_S)
        try:
            status = await client.status()
        except SessionError as exc:
            if exc.kind == "unreachable" and isinstance(client, MailboxClient):
                try:  # the mailbox is there, the runtime has not written yet: add it
                    await asyncio.to_thread(client.storage.check)
                    inner = await asyncio.to_thread(client.run_folder_mailbox)
                    if inner is None:
                        self.dismiss(session)
                        return
                    exc = SessionError("bad_response",
                                       f"this is a run folder; its mailbox is {inner}")
                except (OSError, ImportError) as why:
                    exc = SessionError("unreachable", str(why))
            self.query_one("#add", Button).disabled = False
            title = {"unreachable": "does not answer", "token_refused": "token refused",
                     "protocol": "protocol mismatch", "bad_response": "bad response"}
            self.show_error(f"{title.get(exc.kind, exc.kind)}: {exc.message}")
            return
        finally:
            await client.aclose()
        if not session.label and status.label:
            session = SessionConfig(url=session.url, token=session.token, label=status.label)
        self.dismiss(session)
