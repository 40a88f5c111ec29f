"""Config file: round trip, mode 600, atomic writes, bad TOML named by line, tokens masked."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from colabtui import config as cfg
from colabtui.config import (
    Config,
    ConfigError,
    SessionConfig,
    Settings,
    load_config,
    mask_token,
    save_config,
    validate_url,
)

TOKEN = "Zq3kV9xY2mN8pR4tL6wB1cD7"


def _config() -> Config:
    return Config(
        sessions=[SessionConfig("http://127.0.0.1:8765", TOKEN, "resnet lr=3e-4"),
                  SessionConfig("https://abc.trycloudflare.com", "t" * 32)],
        settings=Settings(poll_interval_s=2.5, risk_warning_min=45, log_scale=True),
    )


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "config.toml"
    save_config(_config(), path)
    assert load_config(path) == _config()


def test_file_and_new_folder_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "config.toml"
    save_config(_config(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_rewrite_tightens_a_loose_mode(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("")
    path.chmod(0o644)
    save_config(_config(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_is_atomic_and_leaves_no_temp_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "config.toml"
    save_config(_config(), path)
    before = path.read_bytes()

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cfg.os, "replace", boom)
    with pytest.raises(ConfigError, match="No space left"):
        save_config(Config(), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_missing_file_is_empty_config(tmp_path: Path) -> None:
    assert load_config(tmp_path / "nope.toml") == Config()


def test_bad_toml_names_the_line_and_is_untouched(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    text = ('[settings]\npoll_interval_s = 1.0\n\n[[sessions]]\nurl = "http://127.0.0.1:1"\n'
            'token = "abc\n')
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == 6
    assert "line 6" in str(info.value) and str(path) in str(info.value)
    assert path.read_text() == text


@pytest.mark.parametrize(("body", "line", "words"), [
    ('[[sessions]]\nurl = "ftp://x"\ntoken = "abcdefgh"\n', 1, "not an http"),
    ('[[sessions]]\nurl = "http://"\ntoken = "abcdefgh"\n', 1, "no host"),
    ('[[sessions]]\nurl = "http://a:1"\ntoken = ""\n', 1, "token is empty"),
    ('[[sessions]]\nurl = "http://a:1"\n', 1, "token is missing"),
    ('[[sessions]]\nurl="http://a:1"\ntoken="x"\n\n[[sessions]]\nurl="http://a:1/"\ntoken="y"\n',
     5, "same url as session 1"),
    ('[settings]\npoll_interval_s = -1\n', 2, "above 0"),
    ('[settings]\nlog_scale = "yes"\n', 2, "true or false"),
])
def test_bad_values_name_the_line(tmp_path: Path, body: str, line: int, words: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=words) as info:
        load_config(path)
    assert info.value.line == line
    assert path.read_text() == body


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[settings]\n# caf\xe9\n')
    with pytest.raises(ConfigError, match="UTF-8") as info:
        load_config(path)
    assert info.value.line == 2


def test_an_error_never_shows_the_token(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[[sessions]]\nurl = "gopher://x"\ntoken = "{TOKEN}"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert TOKEN not in str(info.value)
    bad = 'secret with spaces in it'
    with pytest.raises(ConfigError) as info:
        save_config(Config([SessionConfig("http://a:1", bad)]), tmp_path / "c2.toml")
    assert bad not in str(info.value)
    assert not (tmp_path / "c2.toml").exists()


def test_mask_token() -> None:
    assert mask_token(TOKEN) == "Zq3k…D7"
    assert mask_token("short") == "…"
    assert mask_token("") == ""
    session = SessionConfig("http://127.0.0.1:8765", TOKEN)
    assert TOKEN not in repr(session) and TOKEN not in repr(_config())
    assert session.masked_token == "Zq3k…D7"


def test_validate_url() -> None:
    assert validate_url("  http://127.0.0.1:8765/ ") == "http://127.0.0.1:8765"
    assert validate_url("https://abc.trycloudflare.com") == "https://abc.trycloudflare.com"
    for bad, words in [("", "empty"), ("127.0.0.1:8765", "not an http"),
                       ("http://host:99999", "not a valid URL"), ("http://h:1/?a=b", "query"),
                       ("https:///path", "no host")]:
        with pytest.raises(ConfigError, match=words):
            validate_url(bad)


def test_key_and_display_label() -> None:
    a = SessionConfig("http://127.0.0.1:8765", TOKEN)
    b = SessionConfig("http://127.0.0.1:8766", TOKEN, "mine")
    assert a.key.startswith("s-") and len(a.key) == 12
    assert a.key.replace("-", "").isalnum() and a.key != b.key
    assert a.key == SessionConfig("http://127.0.0.1:8765", "other").key
    assert a.display_label == "127.0.0.1:8765"
    assert b.display_label == "mine"
    assert SessionConfig("https://abc.example.com", TOKEN).display_label == "abc.example.com"


def test_with_session_replaces_same_url_and_without_removes() -> None:
    c = _config()
    new = SessionConfig("http://127.0.0.1:8765", "n" * 20, "renamed")
    c2 = c.with_session(new)
    assert [s.label for s in c2.sessions] == ["renamed", ""]
    assert c.sessions[0].label == "resnet lr=3e-4"  # the original is unchanged
    assert c2.without(new.key).sessions == [c.sessions[1]]
    assert c2.find("https://abc.trycloudflare.com") is c.sessions[1]


def test_paths_follow_env_overrides(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLABTUI_CONFIG_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("COLABTUI_DATA_DIR", str(tmp_path / "d"))
    assert cfg.default_config_path() == tmp_path / "c" / "config.toml"
    assert cfg.default_ledger_path() == tmp_path / "d" / "ledger.sqlite3"
    monkeypatch.delenv("COLABTUI_CONFIG_DIR")
    assert "colabtui" in str(cfg.config_dir())
    assert os.path.isabs(cfg.config_dir())


def test_drive_mailbox_urls_need_no_token_and_bad_ids_are_refused(tmp_path: Path) -> None:
    assert validate_url(" gdrive://1AbCdEfGhIjKlMn/runs/resnet/ ") == \
        "gdrive://1AbCdEfGhIjKlMn/runs/resnet"
    with pytest.raises(ConfigError, match="not a Drive folder id"):
        validate_url("gdrive://short/runs")
    with pytest.raises(ConfigError, match=r"bad path part '\.\.'"):
        validate_url("gdrive://1AbCdEfGhIjKlMn/../x")
    path = tmp_path / "config.toml"
    path.write_text('[[sessions]]\nurl = "gdrive://1AbCdEfGhIjKlMn/resnet/mailbox"\n')
    config = load_config(path)
    session = config.sessions[0]
    assert session.token == "" and session.display_label == "resnet"
    save_config(config, path)  # round-trips without a token
    assert load_config(path).sessions == config.sessions
    path.write_text('[[sessions]]\nurl = "gdrive://nope"\n')
    with pytest.raises(ConfigError, match="line 2.*not a Drive folder id|not a Drive folder id"):
        load_config(path)
