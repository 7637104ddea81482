"""The executor choice as typed in a config file, on the command line or in Python: checked before any run."""

from __future__ import annotations

import pytest

from polysafe.config import load_run_set, run_options
from polysafe.engine.executor import ExecutorChoice, check_ray_address, make_units, spread
from polysafe.errors import InputError
from polysafe.types import GenerationConfig, Message


def write(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_config_file_chooses_the_executor(tmp_path):
    path = write(tmp_path, "models: [smollm2]\nbenchmarks: [{name: file}]\nexecutor: ray\nray_address: ray://head:10001\n"
                           "ray_actors: 4\n")
    options = run_options(load_run_set(path)[0])
    assert (options.executor, options.ray_address, options.ray_actors) == ("ray", "ray://head:10001", 4)
    assert options.executor_choice() == ExecutorChoice("ray", "ray://head:10001", 4)


@pytest.mark.parametrize("line, field", [("executor: spark", "executor"), ("ray_address: 'http://head:6379'", "ray_address"),
                                         ("ray_actors: 0", "ray_actors")])
def test_a_bad_executor_setting_names_its_line(tmp_path, line, field):
    path = write(tmp_path, f"models: [smollm2]\nbenchmarks: [{{name: file}}]\n{line}\n")
    with pytest.raises(InputError, match=rf"run.yaml:3 field '{field}'"):
        load_run_set(path)


@pytest.mark.parametrize("address", ["auto", "10.0.0.1:6379", "ray://head.lab:10001", "[::1]:6379"])
def test_ray_addresses_that_are_accepted(address):
    assert check_ray_address(address) == address


@pytest.mark.parametrize("address", ["head", "head:", "head:99999", "http://head:6379", "ray://user:pw@head:10001",
                                     "ray://head:10001/x", ""])
def test_ray_addresses_that_are_refused(address):
    with pytest.raises(InputError, match="ray-address"):
        ExecutorChoice("ray", address)


def test_unknown_executor_is_bad_input():
    with pytest.raises(InputError, match="unknown executor 'spark'"):
        ExecutorChoice("spark")


def test_units_cut_the_pending_work_in_order_and_spread_it_over_the_actors():
    conversations = [(Message("user", str(i)),) for i in range(7)]
    configs = [GenerationConfig(seed=i) for i in range(7)]
    units = make_units(conversations, configs, 3)
    assert [len(u.conversations) for u in units] == [3, 3, 1] and [u.index for u in units] == [0, 1, 2]
    assert [c for u in units for c in u.conversations] == conversations
    assert [c for u in units for c in u.configs] == configs
    assert spread(100, 2, 64) == 25  # two units per actor
    assert spread(1000, 2, 64) == 64  # never more than a batch
    assert spread(3, 4, 64) == 1
