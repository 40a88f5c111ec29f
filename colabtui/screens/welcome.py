"""The screen shown while no session is saved: the notebook cell to paste and how to add one."""

from __future__ import annotations

from rich.console import Group
from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

NOTEBOOK_CELL = '''\
# first the cell `colabtui notebook` prints (it installs this version), then:
from colabtui_remote import Monitor

mon = Monitor(run="my-run",
              checkpoint_dir="/content/drive/MyDrive/colabtui/my-run",
              autosave_every=600)                  # seconds
mon.track(model=model, optimizer=opt)             # what a checkpoint holds
mon.serve()                     # prints: colabtui connect URL --token T
for step in mon.steps(total_steps):  # resumes after the newest checkpoint
    loss = train_step()
    mon.log(loss=loss)
mon.close()'''
"""The cell shown to the user; it follows the Monitor API of colabtui_remote."""


def welcome_text() -> Group:
    """The welcome message as a renderable (title, the cell, the ways to add a session)."""
    intro = Text()
    intro.append("No sessions yet.\n\n", style="bold")
    intro.append("1. Here, run ")
    intro.append("colabtui notebook --drive gdrive://root/colabtui", style="bold")
    intro.append(" and paste the cell it\n   prints into your notebook (Colab, Kaggle, a VM); "
                 "then start the Monitor:\n")
    cell = Syntax(NOTEBOOK_CELL, "python", theme="ansi_dark", background_color="default",
                  padding=(1, 2))
    add = Text()
    add.append("\n2. Add the session it prints: press ")
    add.append(" a ", style="bold reverse")
    add.append(" here, or run\n\n   ")
    add.append("colabtui connect URL --token T --label NAME", style="bold")
    add.append("\n   (on Colab: ")
    add.append("colabtui colab list", style="bold")
    add.append(", then ")
    add.append("colabtui connect colab://ENDPOINT", style="bold")
    add.append(")\n\n   in another terminal: the session shows up here. ")
    add.append("?", style="bold")
    add.append(" shows every key; ")
    add.append("q", style="bold")
    add.append(" quits.")
    return Group(intro, cell, add)


class WelcomeScreen(Screen):
    """Shown while the config holds no session; the app pops it when one is added."""

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="welcome-scroll"):
            yield Static(welcome_text(), id="welcome")
        yield Footer()
