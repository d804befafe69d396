"""What a fresh clone needs: its own test data, a network probe that never stalls an offline run."""

from __future__ import annotations

import socket
import time

from clipscope import models


def test_the_test_data_is_inside_the_repository(mtg):
    from conftest import REPO

    assert mtg.resolve().is_relative_to(REPO.resolve())
    assert {p.name for p in mtg.glob("*.npy")} == {"features_clasp.npy", "features_clasp_random.npy",
                                                   "features_convirt.npy", "features_convirt_random.npy"}


def test_the_hub_probe_gives_up_at_its_deadline_even_when_name_lookup_stalls(monkeypatch):
    """socket timeouts do not bound getaddrinfo; a loaded offline machine must still fail fast."""
    def stalled(*args, **kwargs):
        time.sleep(5)
        raise OSError("stalled")

    monkeypatch.setattr(socket, "create_connection", stalled)
    t0 = time.perf_counter()
    assert models._hub_reachable(0.3) is False
    assert time.perf_counter() - t0 < 1.5


def test_the_hub_probe_reports_a_refused_connection_as_offline(monkeypatch):
    def refused(*args, **kwargs):
        raise ConnectionRefusedError

    monkeypatch.setattr(socket, "create_connection", refused)
    assert models._hub_reachable(1.0) is False
