"""The pure figures (:mod:`colabtui.figures`): ages, throughput, ETA, work at risk, and that the
panel's checkpoint block shows the same work-at-risk figure."""

from __future__ import annotations

import math

import pytest
from colabtui_remote.schema import (
    PROTOCOL_VERSION,
    CheckpointInfo,
    CheckpointStatus,
    ReplicaCopy,
    ReplicaStatus,
    Status,
)

from colabtui.figures import (
    ENDED_STATES,
    LIVE_STATES,
    WorkAtRisk,
    age_s,
    at_risk_since,
    clock_offset_s,
    eta_s,
    fraction_done,
    throughput,
    until_s,
    work_at_risk,
)
from colabtui.formatting import fmt_minutes
from colabtui.widgets.checkpoint_view import checkpoint_lines

NOW = 1_760_000_000.0
WARN_S = 30 * 60.0
NAN = math.nan


def _ckpt(saved_at: float, step: int = 1200) -> CheckpointInfo:
    return CheckpointInfo(step=step, path=f"/ckpt/ckpt-{step:09d}.pt", bytes=180_000_000,
                          sha256="0" * 64, saved_at=saved_at)


def _status(state: str = "running", *, started_at: float | None = NOW - 3600,
            last: CheckpointInfo | None = None, replica: ReplicaStatus | None = None,
            last_error_at: float | None = None) -> Status:
    return Status(protocol=PROTOCOL_VERSION, run="resnet", session_id="s1", label="", state=state,
                  step=1300, started_at=started_at, server_time=NOW,
                  checkpoint=CheckpointStatus(
                      last=last, replica=replica, last_error_at=last_error_at,
                      last_error=None if last_error_at is None else "disk full"))


def _replica(verified: ReplicaCopy | None, kind: str = "drive") -> ReplicaStatus:
    return ReplicaStatus(dest="gdrive://1Abc", kind=kind, state="ok", verified=verified,
                         pending=0 if verified else 1)


def _copy(step: int, saved_at: float | None, verified_at: float) -> ReplicaCopy:
    return ReplicaCopy(step=step, name=f"ckpt-{step:09d}.pt", bytes=1, md5="0" * 32,
                       verified_at=verified_at, saved_at=saved_at)


def _risk(status: Status, now: float = NOW, offset: float = 0.0) -> WorkAtRisk:
    return work_at_risk(status, now, offset, warning_after_s=WARN_S)


# --------------------------------------------------------------------------- ages


def test_ages_count_from_the_session_clock_and_never_go_negative():
    assert age_s(NOW - 90, NOW) == 90.0
    assert age_s(NOW - 90, NOW, offset=30.0) == 60.0  # our clock 30 s ahead of the session's
    assert age_s(NOW + 5, NOW) == 0.0  # newer than now: clock skew, not the future
    assert age_s(None, NOW) is None
    assert age_s(NAN, NOW) is None and age_s(NOW, NAN) is None
    assert age_s(NOW, NOW, offset=math.inf) is None
    assert until_s(NOW + 40, NOW) == 40.0 and until_s(NOW + 40, NOW, offset=10.0) == 50.0
    assert until_s(NOW - 1, NOW) == 0.0  # passed: due now
    assert until_s(None, NOW) is None and until_s(NAN, NOW) is None


def test_the_clock_offset_is_known_over_http_only():
    assert clock_offset_s(NOW - 7, NOW, "http") == 7.0
    assert clock_offset_s(NOW - 300, NOW, "mailbox") is None  # a file's age, not skew
    assert clock_offset_s(NOW - 300, NOW, "drive") is None
    assert clock_offset_s(None, NOW, "http") is None
    assert clock_offset_s(NAN, NOW, "http") is None


# --------------------------------------------------------------------------- progress


@pytest.mark.parametrize("reported", [None, NAN, math.inf, -math.inf, 0.0, -2.0])
def test_a_throughput_that_cannot_be_used_is_none(reported):
    assert throughput(reported) is None
    assert eta_s(100, 1000, reported) is None


def test_throughput_eta_and_fraction_done():
    assert throughput(12.5) == 12.5 and throughput(0.25) == 0.25
    assert eta_s(100, 1100, 10.0) == 100.0
    assert eta_s(1200, 1000, 10.0) == 0.0  # past its total: nothing left, not negative
    assert eta_s(None, 1000, 10.0) is None and eta_s(100, None, 10.0) is None
    assert fraction_done(420, 1000) == 0.42
    assert fraction_done(1100, 1000) == 1.1  # not clamped
    assert fraction_done(5, 0) is None and fraction_done(None, 10) is None
    assert fraction_done(5, None) is None
    assert set(ENDED_STATES).isdisjoint(LIVE_STATES)


# --------------------------------------------------------------------------- work at risk


def test_no_checkpoint_yet_counts_from_the_session_start():
    risk = _risk(_status(started_at=NOW - 300))
    assert risk == WorkAtRisk("at_risk", seconds=300.0, since=NOW - 300, counted_from="start")


def test_nothing_known_is_unknown_not_zero():
    assert _risk(_status(started_at=None)) == WorkAtRisk("unknown")
    assert at_risk_since(_status(started_at=None)) is None


def test_a_local_checkpoint_bounds_it_without_a_replica():
    risk = _risk(_status(last=_ckpt(NOW - 240)))
    assert (risk.state, risk.seconds, risk.counted_from) == ("at_risk", 240.0, "checkpoint")
    assert not risk.warning


def test_a_resumed_session_has_lost_nothing_from_before_its_start():
    # the newest checkpoint is from the previous session (the one this one resumed from)
    risk = _risk(_status(started_at=NOW - 120, last=_ckpt(NOW - 7200)))
    assert (risk.seconds, risk.counted_from) == (120.0, "start")


def test_a_checkpoint_newer_than_now_is_clock_skew_and_zero_at_risk():
    risk = _risk(_status(last=_ckpt(NOW + 45)))
    assert (risk.state, risk.seconds, risk.warning) == ("at_risk", 0.0, False)
    # the offset puts it right: our clock is 60 s ahead of the session's
    assert _risk(_status(last=_ckpt(NOW - 30)), now=NOW + 60, offset=60.0).seconds == 30.0


def test_not_finite_times_are_unknown_never_nan():
    assert _risk(_status(last=_ckpt(NOW - 10)), now=NAN) == WorkAtRisk("unknown")
    assert _risk(_status(last=_ckpt(NOW - 10)), offset=NAN) == WorkAtRisk("unknown")
    # a checkpoint time that is not a time counts as nothing saved: from the start
    risk = _risk(_status(started_at=NOW - 50, last=_ckpt(NAN)))
    assert (risk.seconds, risk.counted_from) == (50.0, "start")
    assert _risk(_status(started_at=NAN, last=_ckpt(NAN))) == WorkAtRisk("unknown")


def test_the_warning_starts_at_the_threshold():
    assert not _risk(_status(last=_ckpt(NOW - WARN_S + 1))).warning
    assert _risk(_status(last=_ckpt(NOW - WARN_S))).warning
    assert _risk(_status(started_at=NOW - 7200)).warning


def test_with_a_replica_only_a_copy_verified_there_is_durable():
    local = _ckpt(NOW - 60)
    # verified on Drive 10 min ago, a checkpoint saved 15 min ago; the newer local one dies
    # with the runtime, so it does not count
    verified = _replica(_copy(1000, saved_at=NOW - 900, verified_at=NOW - 600))
    risk = _risk(_status(last=local, replica=verified))
    assert (risk.seconds, risk.counted_from) == (900.0, "replica")
    # nothing verified yet: only local, so everything since the session's start
    only_local = _risk(_status(started_at=NOW - 2000, last=local, replica=_replica(None)))
    assert (only_local.seconds, only_local.counted_from, only_local.warning) == \
        (2000.0, "start", True)
    # an older runtime sends only verified_at: that stands for the save
    older = _replica(_copy(1000, saved_at=None, verified_at=NOW - 400))
    assert _risk(_status(last=local, replica=older)).seconds == 400.0
    # a Drive mount taken over as the replica follows the same rule
    mount = _replica(_copy(1000, saved_at=NOW - 500, verified_at=NOW - 500), kind="mount")
    assert _risk(_status(last=local, replica=mount)).counted_from == "replica"


@pytest.mark.parametrize("state", ["stopped", "finished"])
def test_an_ended_run_has_nothing_at_risk(state):
    assert _risk(_status(state, last=_ckpt(NOW - 60))) == WorkAtRisk("saved")
    assert _risk(_status(state)) == WorkAtRisk("ended")  # no checkpoint ever
    # a save failed after the last good one: nothing more can be lost, not all was saved
    failed_after = _status(state, last=_ckpt(NOW - 60), last_error_at=NOW - 30)
    assert _risk(failed_after) == WorkAtRisk("ended")
    failed_before = _status(state, last=_ckpt(NOW - 60), last_error_at=NOW - 90)
    assert _risk(failed_before) == WorkAtRisk("saved")


def test_a_failed_run_lost_what_came_after_its_last_checkpoint():
    assert _risk(_status("failed", last=_ckpt(NOW - 60))) == WorkAtRisk("lost")
    assert _risk(_status("failed")) == WorkAtRisk("lost")


@pytest.mark.parametrize("state", ["running", "saving", "stopping"])
def test_live_states_are_at_risk(state):
    assert _risk(_status(state, last=_ckpt(NOW - 60))).state == "at_risk"


# --------------------------------------------------------------------------- the panel agrees


def test_the_checkpoint_block_shows_the_figure_and_its_warning():
    for status in (_status(last=_ckpt(NOW - 240)), _status(started_at=NOW - 7200),
                   _status(last=_ckpt(NOW - 60),
                           replica=_replica(_copy(1000, NOW - 1000, NOW - 900)))):
        risk = _risk(status)
        text = checkpoint_lines(status, NOW, 0.0, WARN_S / 60)
        figure = fmt_minutes(risk.seconds)
        warned = [s for s in text.spans if s.style == "bold white on dark_red"]
        assert bool(warned) == risk.warning
        if risk.warning:  # a symbol and a word besides the colour
            assert f"at risk  ⚠ {figure}  past 30m" in text.plain, text.plain
        else:
            assert f"at risk  {figure} " in text.plain and "⚠" not in text.plain
    assert "at risk — (all saved, stopped)" in \
        checkpoint_lines(_status("stopped", last=_ckpt(NOW - 60)), NOW, 0.0, 30.0).plain
    assert "lost work after step 1,200" in \
        checkpoint_lines(_status("failed", last=_ckpt(NOW - 60)), NOW, 0.0, 30.0).plain
    assert "at risk n/a" in checkpoint_lines(_status(started_at=None), NOW, 0.0, 30.0).plain
