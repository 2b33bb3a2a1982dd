"""Which sensor modes ``WaveSpeedPredictionSensor`` accepts (checked when the DAG is built, no I/O)."""

from __future__ import annotations

import pytest

from airflow_provider_wavespeed.sensors.wavespeed import WaveSpeedPredictionSensor


def test_reschedule_mode_without_deferral_is_refused_when_the_dag_is_built_pointing_at_deferrable():
    with pytest.raises(ValueError, match=r"mode='reschedule'.*deferrable=True.*mode='poke'"):
        WaveSpeedPredictionSensor(task_id="wait", prediction_id="p1", deferrable=False, mode="reschedule")


@pytest.mark.parametrize(
    ("deferrable", "mode"), [(False, "poke"), (True, "poke"), (True, "reschedule")], ids=lambda v: str(v)
)
def test_poke_mode_and_any_mode_of_a_deferrable_sensor_are_accepted(deferrable, mode):
    sensor = WaveSpeedPredictionSensor(task_id="wait", prediction_id="p1", deferrable=deferrable, mode=mode)
    assert sensor.deferrable is deferrable and sensor.mode == mode
