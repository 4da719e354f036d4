"""The Kaggle API layer: the dry-run client and the real one are one interface, so --dry-run cannot drift."""

import inspect

from kaggle_kit.kaggle_api import DryRunClient, KaggleCalls, KaggleClient


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")}


def test_the_dry_run_client_has_the_real_clients_methods_with_the_same_signatures():
    calls = _public_methods(KaggleCalls)
    assert set(calls) == KaggleCalls.__abstractmethods__  # every call of the interface is one each client implements
    assert "competition_submit" in calls and len(calls) == 9
    for client in (KaggleClient, DryRunClient):
        assert not client.__abstractmethods__, client
        assert _public_methods(client) == calls, client  # no extra public call, none with another signature


def test_a_drifted_signature_is_caught():
    class Drifted(DryRunClient):
        def kernels_status(self, kernel_id: str, wait: bool = False) -> tuple[str, str]:
            return "complete", ""

    assert _public_methods(Drifted) != _public_methods(KaggleCalls)
