"""The one sanitising parse: every string a peer sends comes out as one line of inert text,
every number in range or named invalid, whatever the document holds."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest
from colabtui_remote import schema, wire
from colabtui_remote.wire import LINE_BREAK, PLACEHOLDER, TAB, clean_text

UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                    "\u2066-\u2069\ud800-\udfff]")
P = PLACEHOLDER


@pytest.mark.parametrize(("raw", "shown"), [
    ("\x1b]0;pwned\x07", f"{P}]0;pwned{P}"),  # OSC 0: the window title
    ("\x1b]52;c;aGVsbG8=\x07", f"{P}]52;c;aGVsbG8={P}"),  # OSC 52: the clipboard
    ("\x1b]8;;http://x\x1b\\link", f"{P}]8;;http://x{P}\\link"),  # OSC 8 hyperlink, ST
    ("a\x1b[2Jb", f"a{P}[2Jb"),  # CSI 2J: clear the screen
    ("\x1b[5mblink", f"{P}[5mblink"),  # SGR 5
    ("bell\x07", f"bell{P}"),
    ("c1\x9b2J", f"c1{P}2J"),  # U+009B: a one-character CSI
    ("\x85\x90\x9d\x9c", P * 4),  # NEL, DCS, OSC, ST as C1
    ("del\x7f", f"del{P}"),
    ("nul\x00\x08\x0b\x0c", f"nul{P * 4}"),
    ("run r\n● connected", f"run r{LINE_BREAK}● connected"),
    ("a\r\nb\rc\u2028d\u2029e", LINE_BREAK.join("abcde")),
    ("a\tb", f"a{TAB}b"),
    ("\u202egnp.exe", f"{P}gnp.exe"),  # RLO: right-to-left override
    ("\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069\u200e\u200f\u061c", P * 11),
    ("lone \ud800 surrogate", f"lone {P} surrogate"),  # no terminal can encode it
])
def test_clean_text_replaces_what_a_terminal_acts_on(raw: str, shown: str) -> None:
    assert clean_text(raw) == shown
    assert clean_text(shown) == shown  # idempotent
    shown.encode("utf-8")  # printable anywhere


def test_clean_text_keeps_ordinary_text_and_markup_and_bounds_length() -> None:
    for text in ("resnet lr=3e-4", "[bold]x[/] [red]", "ü 日本語 🚀 👨‍👩‍👧", ""):
        assert clean_text(text) is text
    assert clean_text("x" * 5000) == "x" * wire.MAX_TEXT
    assert clean_text("x" * 5000, 10) == "x" * 10
    assert clean_text("\x1b" * 5000, None) == P * 5000


# --------------------------------------------------------------------------- documents

HUGE = "1" + "0" * 400  # 10**400: past the float range
DIGITS_5000 = "9" * 5000  # past Python's int() digit limit
ESC = "\x1b]0;pwned\x07\x1b]52;c;aGVsbG8=\x07\x1b[2J\x1b[5m\x07\x9b\x7f\u202e\n\t\ud800"


def hostile_status() -> schema.Status:
    """A status in which every string holds every hostile sequence."""
    ckpt = schema.CheckpointInfo(step=2, path=f"/c{ESC}", bytes=10, sha256=f"s{ESC}",
                                 saved_at=1.7e9)
    return schema.Status(
        protocol=schema.PROTOCOL_VERSION, run=f"run{ESC}", session_id=f"id{ESC}",
        label=f"label{ESC}", state="running", step=3, total_steps=10, epoch=0, steps_per_s=1.0,
        metrics={f"loss{ESC}": 0.5}, metrics_nonfinite={f"acc{ESC}": "nan"}, last_seq=3,
        gpus=[schema.GpuStats(index=0, name=f"T4{ESC}", uuid=f"GPU-{ESC}",
                              memory_used_bytes=1, memory_total_bytes=2,
                              unsupported={f"fan{ESC}": f"NVML{ESC}"}, rank=1,
                              host=f"node{ESC}")],
        gpu_error=f"gpu{ESC}",
        checkpoint=schema.CheckpointStatus(
            dir=f"/d{ESC}", last=ckpt, last_error=f"err{ESC}",
            in_progress=schema.SaveProgress(step=3, phase=f"writing{ESC}", bytes_written=1),
            replica=schema.ReplicaStatus(
                dest=f"gdrive://{ESC}", kind="drive", state="error", last_error=f"r{ESC}",
                verified=schema.ReplicaCopy(step=2, name=f"n{ESC}", bytes=10, md5=f"m{ESC}",
                                            verified_at=1.7e9, file_id=f"f{ESC}"),
                uploading=schema.UploadProgress(step=3, bytes_sent=1, bytes_total=2))),
        host=schema.HostInfo(python=f"3{ESC}", torch=f"2{ESC}", platform=f"l{ESC}",
                             hostname=f"h{ESC}"),
        error=f"failed{ESC}",
        world=schema.WorldStatus(size=2, nodes=1, checkpoint_kind=f"sharded{ESC}", ranks=[
            schema.RankInfo(rank=r, local_rank=r, host=f"h{ESC}", pid=10 + r,
                            gpu_uuid=f"GPU-{ESC}", step=3, lost=f"gone{ESC}" if r else None)
            for r in range(2)]),
        runtime=schema.RuntimeInfo(platform=f"colab{ESC}", age_s=3600.0, max_s=43200.0,
                                   idle_timeout_s=5400.0, limit_note=f"note{ESC}"))


def document(obj: dict, **literals: str) -> bytes:
    """``obj`` as JSON with each string ``"<NAME>"`` replaced by the literal ``literals[NAME]``
    (numbers Python cannot build or write as an int)."""
    text = json.dumps(obj)
    for name, literal in literals.items():
        text = text.replace(f'"<{name}>"', literal)
    return text.encode()


def ascii_json(obj: dict) -> bytes:
    """JSON as a hostile peer may send it: a lone surrogate as its ``\\ud800`` escape."""
    return json.dumps(obj).encode()


def every_string(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if dataclasses.is_dataclass(value):
        return every_string([getattr(value, f.name) for f in dataclasses.fields(value)])
    if isinstance(value, dict):
        return every_string(list(value.keys())) + every_string(list(value.values()))
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in every_string(item)]
    return []


def test_every_string_of_a_status_comes_out_inert() -> None:
    parsed = schema.parse_status(wire.loads(ascii_json(schema.status_to_wire(hostile_status()))))
    strings = every_string(parsed)
    assert len(strings) > 25
    assert [s for s in strings if UNSAFE.search(s)] == []
    assert parsed.run == clean_text(f"run{ESC}") and LINE_BREAK in parsed.run
    assert parsed.metrics == {clean_text(f"loss{ESC}"): 0.5}
    assert parsed.checkpoint.replica.verified.name == clean_text(f"n{ESC}")
    assert parsed.invalid == () and schema.invalid_paths(parsed) == []
    assert parsed.world.ranks[1].lost == clean_text(f"gone{ESC}")
    assert parsed.gpus[0].host == clean_text(f"node{ESC}") and parsed.gpus[0].rank == 1


def test_a_distributed_jobs_numbers_out_of_range_are_invalid_and_its_ranks_bounded() -> None:
    base = schema.status_to_wire(hostile_status())
    base["world"]["size"] = "<HUGE>"
    base["world"]["ranks"][0]["pid"] = "<DIGITS>"
    base["world"]["ranks"][1]["rank"] = -1
    base["gpus"][0]["rank"] = "<HUGE>"
    parsed = schema.parse_status(wire.loads(document(base, HUGE=HUGE, DIGITS=DIGITS_5000)))
    assert parsed.world.size is None and parsed.world.ranks[0].pid is None
    assert parsed.world.ranks[1].rank is None and parsed.gpus[0].rank is None
    assert set(schema.invalid_paths(parsed)) >= {
        "world.size", "world.ranks[0].pid", "world.ranks[1].rank", "gpus[0].rank"}
    many = schema.status_to_wire(hostile_status())
    many["world"]["ranks"] = [{"rank": i} for i in range(5000)]
    assert len(schema.parse_status(wire.loads(ascii_json(many))).world.ranks) == 1024
    for bad in ("a string", [1, 2], {"ranks": "x"}, {"ranks": ["x"]}):
        doc = schema.status_to_wire(hostile_status())
        doc["world"] = bad
        with pytest.raises(wire.SchemaError, match="status.world"):
            schema.parse_status(wire.loads(ascii_json(doc)))


def test_a_runtimes_strings_are_inert_and_short_and_its_durations_bounded() -> None:
    parsed = schema.parse_status(wire.loads(ascii_json(schema.status_to_wire(hostile_status()))))
    assert parsed.runtime.platform == clean_text(f"colab{ESC}")[:16]
    assert parsed.runtime.limit_note == clean_text(f"note{ESC}")
    base = schema.status_to_wire(hostile_status())
    base["runtime"].update(platform="x" * 5000, limit_note=f"{ESC}" * 400, age_s=-1.0,
                           max_s="<HUGE>", idle_timeout_s="<INF>")
    parsed = schema.parse_status(wire.loads(document(base, HUGE=HUGE, INF="-1e400")))
    rt = parsed.runtime
    assert (rt.platform, len(rt.limit_note)) == ("x" * 16, 120) and not UNSAFE.search(rt.limit_note)
    assert (rt.age_s, rt.max_s, rt.idle_timeout_s) == (None, None, None)
    assert schema.invalid_paths(parsed) == ["runtime.age_s", "runtime.max_s",
                                            "runtime.idle_timeout_s"]
    for bad in ("colab", [1], {"age_s": 1.0}, {"platform": 3}, {"platform": "colab", "max_s": "12h"}):
        doc = schema.status_to_wire(hostile_status())
        doc["runtime"] = bad
        with pytest.raises(wire.SchemaError, match="status.runtime"):
            schema.parse_status(wire.loads(ascii_json(doc)))


def test_command_records_checkpoint_lists_and_error_bodies_come_out_inert() -> None:
    ckpt = schema.CheckpointInfo(step=1, path=f"/p{ESC}", bytes=1, sha256="s", saved_at=1.0)
    record = schema.CommandRecord(id=f"id{ESC}", action=f"save{ESC}", state="failed",
                                  created_at=1.0, checkpoint=ckpt, error=f"no{ESC}")
    parsed = schema.parse_command(wire.loads(ascii_json(schema.command_to_wire(record))))
    listing = schema.parse_checkpoint_list(wire.loads(ascii_json(schema.checkpoint_list_to_wire(
        schema.CheckpointList(dir=f"/d{ESC}", checkpoints=[ckpt])))))
    message = schema.parse_error(wire.loads(ascii_json(schema.error_body("x", f"disk{ESC}"))))
    for strings in (every_string(parsed), every_string(listing), [message]):
        assert [s for s in strings if UNSAFE.search(s)] == []
    assert message == clean_text(f"disk{ESC}")


def test_metric_names_come_out_inert_and_names_that_clean_alike_merge_in_seq_order() -> None:
    page = {"protocol": schema.PROTOCOL_VERSION, "after": 0, "next_after": 4, "last_seq": 4,
            "series": {"loss\x1b": [[1, 1, 1.0, 1.0, None], [3, 3, 3.0, 3.0, None]],
                       "loss\x07": [[2, 2, 2.0, 2.0, None], [4, 4, 4.0, None, "nan"]]}}
    parsed = schema.parse_metrics(wire.loads(ascii_json(page)))
    assert list(parsed.series) == [f"loss{P}"]
    assert [p.seq for p in parsed.series[f"loss{P}"]] == [1, 2, 3, 4]
    assert math.isnan(parsed.series[f"loss{P}"][-1].value)


# --------------------------------------------------------------------------- numbers


def status_doc(**changes) -> dict:
    doc = schema.status_to_wire(hostile_status())
    for path, value in changes.items():
        target = doc
        *parents, key = path.split("__")
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[key] = value
    return doc


@pytest.mark.parametrize(("path", "literal", "invalid"), [
    ("step", "1e30", "step"),  # a float: SQLite's INTEGER cannot hold it
    ("step", "1" + "0" * 30, "step"),  # an int past 2**63-1
    ("step", "-1", "step"),
    ("step", "2.5", "step"),
    ("total_steps", HUGE, "total_steps"),  # the OverflowError
    ("total_steps", DIGITS_5000, "total_steps"),  # int() refuses it
    ("epoch", str(2**63), "epoch"),
    ("steps_per_s", "1e400", "steps_per_s"),  # inf
    ("uptime_s", "-1e400", "uptime_s"),
    ("gpus__0__memory_used_bytes", HUGE, "gpus[0].memory_used_bytes"),
    ("gpus__0__memory_total_bytes", "-5", "gpus[0].memory_total_bytes"),
    ("gpus__0__index", DIGITS_5000, "gpus[0].index"),
    ("gpus__0__temperature_c", "1e999", "gpus[0].temperature_c"),
    ("checkpoint__last__bytes", DIGITS_5000, "checkpoint.last.bytes"),
    ("checkpoint__last__step", HUGE, "checkpoint.last.step"),
    ("checkpoint__last__saved_at", "1e400", "checkpoint.last.saved_at"),
    ("checkpoint__in_progress__bytes_written", str(2**63), "checkpoint.in_progress.bytes_written"),
    ("checkpoint__count", HUGE, "checkpoint.count"),
    ("checkpoint__replica__pending", "-1", "checkpoint.replica.pending"),
    ("checkpoint__replica__verified__bytes", HUGE, "checkpoint.replica.verified.bytes"),
    ("checkpoint__replica__uploading__bytes_total", HUGE,
     "checkpoint.replica.uploading.bytes_total"),
])
def test_a_number_out_of_range_is_none_and_named_invalid(path: str, literal: str,
                                                         invalid: str) -> None:
    parsed = schema.parse_status(wire.loads(document(status_doc(**{path: "<X>"}), X=literal)))
    assert schema.invalid_paths(parsed) == [invalid]
    target = parsed
    for part in invalid.replace("[0]", ".0").split("."):
        target = target[int(part)] if part.isdigit() else getattr(target, part)
    assert target is None
    assert parsed.run == clean_text(f"run{ESC}")  # the rest of the status is kept


def test_numbers_at_the_bounds_are_kept() -> None:
    doc = status_doc(step=wire.MAX_INT, total_steps=0, steps_per_s=1e308)
    doc["checkpoint"]["last"]["bytes"] = wire.MAX_INT
    parsed = schema.parse_status(wire.loads(ascii_json(doc)))
    assert (parsed.step, parsed.total_steps, parsed.checkpoint.last.bytes) == (
        wire.MAX_INT, 0, wire.MAX_INT)
    assert schema.invalid_paths(parsed) == []


def test_a_metric_value_past_the_float_range_is_marked_like_a_logged_inf() -> None:
    doc = status_doc(metrics={"loss": "<X>", "acc": "<Y>"})
    parsed = schema.parse_status(wire.loads(document(doc, X="1e400", Y="-" + DIGITS_5000)))
    assert parsed.metrics == {"loss": None, "acc": None}
    assert parsed.metrics_nonfinite == {clean_text(f"acc{ESC}"): "nan", "loss": "inf",
                                        "acc": "-inf"}


def test_a_save_replys_bytes_out_of_range_is_invalid() -> None:
    ckpt = schema.CheckpointInfo(step=1, path="/p", bytes=1, sha256="s", saved_at=1.0)
    doc = schema.command_to_wire(schema.CommandRecord(id="c", action="save", state="done",
                                                      created_at=1.0, checkpoint=ckpt))
    doc["checkpoint"]["bytes"], doc["created_at"] = "<X>", "<Y>"
    parsed = schema.parse_command(wire.loads(document(doc, X=HUGE, Y="1e400")))
    assert parsed.checkpoint.bytes is None and parsed.checkpoint.invalid == ("bytes",)
    assert parsed.created_at is None and schema.invalid_paths(parsed) == [
        "checkpoint.bytes", "created_at"]


@pytest.mark.parametrize("value", ['"three"', "true", "[1]", "{}"])
def test_a_number_of_the_wrong_type_is_still_a_schema_error(value: str) -> None:
    with pytest.raises(wire.SchemaError, match="status.step: expected"):
        schema.parse_status(wire.loads(document(status_doc(step="<X>"), X=value)))


@pytest.mark.parametrize(("route", "field"), [("status", "last_seq"), ("metrics", "next_after"),
                                              ("metrics", "after"), ("metrics", "last_seq")])
def test_a_sequence_number_out_of_range_makes_the_document_a_schema_error(route: str,
                                                                          field: str) -> None:
    if route == "status":
        doc, parse = status_doc(last_seq="<X>"), schema.parse_status
    else:
        doc = {"protocol": schema.PROTOCOL_VERSION, "after": 0, "next_after": 1, "last_seq": 1,
               "series": {}, field: "<X>"}
        parse = schema.parse_metrics
    with pytest.raises(wire.SchemaError, match=f"{route}.{field}: out of range"):
        parse(wire.loads(document(doc, X=HUGE)))


def test_a_point_out_of_range_is_left_out_and_named() -> None:
    points = [[1, 1, 1.0, 1.0, None], ["<SEQ>", 2, 2.0, 2.0, None], [3, "<STEP>", 3.0, 3.0, None],
              [4, 4, "<TIME>", 4.0, None], [5, -7, 5.0, "<VALUE>", None], [6, 6, 6.0, 6.0, None]]
    doc = {"protocol": schema.PROTOCOL_VERSION, "after": 0, "next_after": 6, "last_seq": 6,
           "series": {"loss": points}}
    page = schema.parse_metrics(wire.loads(document(doc, SEQ="1" + "0" * 30, STEP="1e30",
                                                    TIME="1e400", VALUE=DIGITS_5000)))
    assert [(p.seq, p.step) for p in page.series["loss"]] == [(1, 1), (5, -7), (6, 6)]
    assert page.series["loss"][1].value == math.inf  # a value past the range: marked, kept
    assert page.invalid == ("series.loss[1]", "series.loss[2]", "series.loss[3]")


def test_the_invalid_names_never_go_on_the_wire() -> None:
    doc = status_doc(step="<X>")
    parsed = schema.parse_status(wire.loads(document(doc, X=HUGE)))
    assert parsed.invalid == ("step",)
    assert "invalid" not in json.dumps(schema.status_to_wire(parsed))
    record = schema.CommandRecord(id="c", action="save", state="pending", created_at=1.0)
    assert "invalid" not in schema.command_to_wire(record)
    status = dataclasses.replace(hostile_status(), run="r", label="l", session_id="s")
    assert schema.parse_status(wire.loads(ascii_json(schema.status_to_wire(status)))).run == "r"


def test_a_lone_surrogate_in_a_name_goes_on_the_wire_as_valid_utf8() -> None:
    # A run, label or metric name may hold one (a file name decoded with surrogateescape);
    # the status reply must still encode, and the laptop's parse sees a placeholder.
    body = wire.dumps({"run": "r\udcff", "label": "ok"})
    assert body.decode("utf-8") == '{"run":"r?","label":"ok"}'
