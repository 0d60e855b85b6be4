import pytest

from hil.model.card import load_model

MODELS = ["qute-digits", "qute-mnist1d"]


@pytest.fixture(scope="session", params=MODELS)
def card(request):
    return load_model(request.param)
