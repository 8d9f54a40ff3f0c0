"""The business clock (backend/services/clock.py): today is the business zone's date whatever
the process's time zone; the zone comes from GRIDPATROL_BUSINESS_TZ; a frozen clock needs an
aware instant; a business day starts at midnight in the business zone. The overdue rule in
Python (backend/services/overdue.py)."""

from __future__ import annotations

import os
import time
from datetime import UTC, date, datetime

import pytest

from backend.config import DEFAULT_BUSINESS_TZ, Settings, business_tz_from_env
from backend.services import clock, overdue

LATE_EVENING_UTC = datetime(2026, 6, 30, 20, 0, tzinfo=UTC)  # 04:00 on 1 July in Beijing


@pytest.fixture()
def shanghai():
    with clock.zone_set_to("Asia/Shanghai") as zone:
        yield zone


@pytest.mark.parametrize("process_tz", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_today_ignores_the_process_time_zone(shanghai, process_tz):
    old = os.environ.get("TZ")
    os.environ["TZ"] = process_tz
    time.tzset()
    try:
        with clock.frozen(LATE_EVENING_UTC):
            assert clock.today() == date(2026, 7, 1)
            assert clock.now() == LATE_EVENING_UTC and clock.now().tzinfo == shanghai
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_the_setting_and_its_default(monkeypatch):
    monkeypatch.delenv("GRIDPATROL_BUSINESS_TZ", raising=False)
    assert business_tz_from_env() == DEFAULT_BUSINESS_TZ == "Asia/Shanghai"
    monkeypatch.setenv("GRIDPATROL_BUSINESS_TZ", "  ")
    assert Settings.from_env().business_tz == "Asia/Shanghai"
    monkeypatch.setenv("GRIDPATROL_BUSINESS_TZ", "Europe/Berlin")
    assert Settings.from_env().business_tz == "Europe/Berlin"
    with clock.zone_set_to(Settings.from_env().business_tz), clock.frozen(LATE_EVENING_UTC):
        assert clock.today() == date(2026, 6, 30)  # 22:00 in Berlin


def test_bad_zones_and_naive_freezes_are_refused(shanghai):
    for name in ("Asia/Dongguan", "", "../etc/passwd"):
        with pytest.raises(ValueError, match="not an IANA time zone"):
            clock.configure(name)
    assert clock.zone() == shanghai
    with pytest.raises(ValueError, match="aware"), clock.frozen(datetime(2026, 1, 1)):
        pass


def test_a_business_day_starts_at_midnight_in_the_zone(shanghai):
    start = clock.start_of(date(2026, 3, 3))
    assert start.astimezone(UTC) == datetime(2026, 3, 2, 16, 0, tzinfo=UTC)
    with clock.zone_set_to("UTC"):
        assert clock.start_of(date(2026, 3, 3)) == datetime(2026, 3, 3, tzinfo=UTC)


def test_the_overdue_rule_in_python():
    today = date(2026, 3, 3)
    yesterday = date(2026, 3, 2)
    for status in ("open", "assigned", "accepted", "in_progress", "declined", "returned"):
        assert overdue.task_is_overdue(yesterday, status, today)
        assert not overdue.task_is_overdue(today, status, today)
    for status in ("submitted", "closed", "cancelled"):
        assert not overdue.task_is_overdue(yesterday, status, today)
    assert overdue.referral_is_overdue(yesterday, "in_progress", today)
    assert not overdue.referral_is_overdue(yesterday, "concluded", today)
    assert not overdue.task_is_overdue(None, "assigned", today)
