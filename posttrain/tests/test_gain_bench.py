"""bench/posttrain/gain.py: the arm grammar (KIND[-shuffled][@teacher]) and which arms control which."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

GAIN = Path(__file__).resolve().parents[2] / "bench" / "posttrain" / "gain.py"


@pytest.fixture(scope="module")
def gain():
    spec = importlib.util.spec_from_file_location("gain_bench", GAIN)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_arm_flags(gain):
    assert gain.arm_args("ordered", 0.5) == ["--omega", "0.5"]
    assert gain.arm_args("shuffled", 0.5) == ["--omega", "0.5", "--control", "shuffled"]
    assert gain.arm_args("omega5", 0.5) == ["--omega", "5"]
    assert gain.arm_args("omega2.5-shuffled", 0.5) == ["--omega", "2.5", "--control", "shuffled"]
    assert gain.arm_args("order", 0.5) == ["--loss", "chain_order"]
    assert gain.arm_args("order-shuffled", 0.5) == ["--loss", "chain_order", "--control", "shuffled"]
    assert gain.arm_args("ordered@teacher", 0.5, "/m/mpnet") == ["--omega", "0.5", "--teacher", "/m/mpnet"]
    assert gain.arm_args("shuffled@teacher", 0.5, "/m/mpnet") == ["--omega", "0.5", "--control", "shuffled", "--teacher", "/m/mpnet"]


@pytest.mark.parametrize("bad", ["orderd", "shuffled-shuffled", "omega", "omega-1", "ordered@mpnet", "order@teacher"])
def test_bad_arms_are_refused(gain, bad):
    with pytest.raises(SystemExit):
        gain.arm_args(bad, 0.5, "/m/mpnet")


def test_teacher_arms_need_a_teacher(gain):
    with pytest.raises(SystemExit, match="--teacher"):
        gain.arm_args("ordered@teacher", 0.5, None)


def test_controls_are_the_shuffled_twin_and_omega0_with_the_same_teacher(gain):
    arms = ["ordered", "shuffled", "omega0", "omega5", "omega5-shuffled", "order", "ordered@teacher", "shuffled@teacher"]
    assert gain.controls_of("ordered", arms) == ["shuffled", "omega0"]
    assert gain.controls_of("omega5", arms) == ["omega5-shuffled", "omega0"]
    assert gain.controls_of("order", arms) == ["omega0"]
    assert gain.controls_of("ordered@teacher", arms) == ["shuffled@teacher"]
    assert gain.controls_of("shuffled", arms) == []
    assert gain.controls_of("omega0", arms) == []
    assert gain.controls_of("omega0", [*arms, "omega0-shuffled"]) == ["omega0-shuffled"]
