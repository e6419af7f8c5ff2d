"""Automatic pain alerts over time (issue 17, item 3): k of the last n automatic verdicts within W s,
on time-ordered sequences and through the worker; nurse-confirmed pain alerts at once; the replay."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from tests.factories import AlertFactory, FrameFactory, png_bytes
from triage import services
from triage.management.commands.replay_alerts import Rule, Verdict, replay
from triage.models import Alert, AuditEvent, Frame, UnitSettings
from triage.services.alerts import alert_rule_fires

pytestmark = pytest.mark.django_db


def fires(sequence, *, at, k, n, window):
    return alert_rule_fires([(t, p == "P") for t, p in sequence], at=at, k=k, n=n, window=window)


@pytest.mark.django_db(False)
@pytest.mark.parametrize(
    ("sequence", "at", "expected"),
    [
        ([(0, "P")], 0, False),  # one pain verdict is not two
        ([(0, "P"), (10, "P")], 10, True),
        ([(0, "P"), (10, "N"), (20, "P")], 20, True),  # 2 of the last 3
        ([(0, "P"), (10, "N"), (20, "N"), (30, "P")], 30, False),  # the first pain is not among the last 3
        ([(0, "P"), (70, "P")], 70, False),  # 70 s apart: outside the 60 s window
        ([(0, "P"), (10, "P"), (20, "N")], 20, True),  # the rule is read at each verdict; the caller asks on pain
        ([(30, "P"), (10, "P")], 30, True),  # order of arrival does not matter, capture time does
        ([(10, "P"), (40, "P")], 10, False),  # a later keyframe does not count yet
    ],
)
def test_two_of_the_last_three_within_a_minute(sequence, at, expected):
    assert fires(sequence, at=at, k=2, n=3, window=60) is expected


@pytest.mark.django_db(False)
def test_one_of_one_is_every_pain_verdict():
    assert fires([(0, "P")], at=0, k=1, n=1, window=60)
    assert not fires([(0, "P"), (5, "N")], at=5, k=1, n=1, window=60)


def _scored(neonate, *, seconds, p_pain, fake_pipeline, start):
    data = png_bytes(seed=int(seconds * 10) + 7)
    frame = FrameFactory(
        neonate=neonate, status=Frame.Status.QUEUED, content=data, captured_at=start + timedelta(seconds=seconds)
    )
    fake_pipeline.set(data, p_pain=p_pain)
    return frame


def test_the_worker_alerts_on_the_second_pain_verdict_of_three_not_the_first(neonate, active_model, fake_pipeline):
    start = timezone.now() - timedelta(minutes=5)
    first = _scored(neonate, seconds=0, p_pain=0.95, fake_pipeline=fake_pipeline, start=start)
    calm = _scored(neonate, seconds=10, p_pain=0.05, fake_pipeline=fake_pipeline, start=start)
    second = _scored(neonate, seconds=20, p_pain=0.95, fake_pipeline=fake_pipeline, start=start)

    services.frames_process(frame_ids=[first.pk], batch_max=1)
    assert not Alert.objects.exists(), "one automatic pain verdict alone does not page"
    services.frames_process(frame_ids=[calm.pk, second.pk])  # one batch: both recorded, then the rule

    alert = Alert.objects.get()
    assert (alert.source, alert.prediction.frame_id) == ("auto", second.pk)


def test_the_timeline_shades_each_alert_span(browser_for, nurse, neonate):
    start = timezone.now() - timedelta(hours=2)
    AlertFactory(neonate=neonate, created_at=start, last_event_at=start + timedelta(minutes=30))

    page = browser_for(nurse).get(f"/neonates/{neonate.pk}/timeline/?hours=6").content.decode()

    span = page.split('class="tl-alert-span"')[1].split(">")[0]
    width = float(span.split('width="')[1].split('"')[0])
    assert 65 < width < 75, span  # 30 min of a 6 h axis 832 px wide (the NIPS panel's labels take the rest)


def test_pain_verdicts_further_apart_than_the_window_do_not_alert(neonate, active_model, fake_pipeline):
    start = timezone.now() - timedelta(minutes=5)
    frames = [_scored(neonate, seconds=s, p_pain=0.95, fake_pipeline=fake_pipeline, start=start) for s in (0, 90)]

    services.frames_process(frame_ids=[f.pk for f in frames])

    assert not Alert.objects.exists()


def test_nurse_confirmed_pain_alerts_at_once_whatever_the_rule(neonate):
    UnitSettings.objects.update_or_create(unit=neonate.unit, defaults={"alert_rule_k": 5, "alert_rule_n": 5})

    alert, created = services.alert_raise(neonate=neonate, source=Alert.Source.NURSE)

    assert created and alert.source == "nurse"


def test_the_rule_is_an_audited_unit_setting_and_k_cannot_exceed_n(client_for, unit_admin, unit):
    url = f"/api/v1/units/{unit.pk}/"
    response = client_for(unit_admin).patch(url, {"alert_rule_k": 3, "alert_rule_n": 5}, format="json")

    assert response.status_code == 200, response.json()
    settings = response.json()["settings"]
    assert (settings["alert_rule_k"], settings["alert_rule_n"], settings["alert_rule_window_seconds"]) == (3, 5, 60)
    event = AuditEvent.objects.get(action="unit_settings.updated")
    assert event.before == {"alert_rule_k": 2, "alert_rule_n": 3} and event.after == {
        "alert_rule_k": 3,
        "alert_rule_n": 5,
    }
    refused = client_for(unit_admin).patch(url, {"alert_rule_k": 6}, format="json")
    assert refused.status_code == 400 and "alert_rule_k" in refused.json()


@pytest.mark.django_db(False)
def test_replay_counts_alerts_missed_episodes_and_delay():
    # Pain episode 100-160 s (verdicts every 10 s, 100 and 120 missed by the model), one false pain at 30 s:
    # it pages, and the episode 80 s later falls inside its 10 min cooldown (counted, not paged again).
    stream = [Verdict("a", t, pain=t in (30, 110, 130, 140, 150), truth=100 <= t <= 160) for t in range(0, 3601, 10)]

    every = replay(stream, Rule(1, 1, 60), cooldown_s=600)
    two_of_three = replay(stream, Rule(2, 3, 60), cooldown_s=600)
    three_of_three = replay(stream, Rule(3, 3, 30), cooldown_s=600)

    assert (every.alerts, every.false_alerts, every.pages, every.episodes, every.missed) == (5, 1, 1, 1, 0)
    assert every.median_delay_s == 10.0
    assert (two_of_three.alerts, two_of_three.false_alerts, two_of_three.pages, two_of_three.missed) == (3, 0, 1, 0)
    assert two_of_three.median_delay_s == 30.0  # 110 alone is one; 130 makes two of 110-130
    assert (three_of_three.alerts, three_of_three.missed) == (1, 0) and three_of_three.median_delay_s == 50.0
    assert round(every.hours, 3) == 1.0


def test_the_replay_command_reads_a_csv_and_refuses_bad_input(tmp_path):
    stream = tmp_path / "stream.csv"
    stream.write_text("time_s,verdict,truth\n0,nonpain,0\n10,pain,1\n20,pain,1\n30,nonpain,0\n3600,nonpain,0\n")
    out = StringIO()

    call_command("replay_alerts", "--stream", str(stream), "--rule", "2,3,60", "--rule", "1,1,60", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0] == f"stream {stream}: 5 verdicts"
    assert lines[-2].split()[:6] == ["2", "of", "3", "in", "60", "s"]
    assert lines[-2].split()[-3:] == ["1", "0", "10"]  # one episode, caught, 10 s after it began
    assert lines[-1].split()[-3:] == ["1", "0", "0"]
    with pytest.raises(CommandError, match="k,n,W"):
        call_command("replay_alerts", "--stream", str(stream), "--rule", "two")
    with pytest.raises(CommandError, match="1 <= k <= n"):
        call_command("replay_alerts", "--stream", str(stream), "--rule", "4,3,60")
    stream.write_text("time_s,verdict,truth\n0,maybe,0\n")
    with pytest.raises(CommandError, match="line 2: verdict='maybe'"):
        call_command("replay_alerts", "--stream", str(stream))
