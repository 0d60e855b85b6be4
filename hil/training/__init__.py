"""The QUTE training pipeline (optional extra: pip install -e '.[train]')."""

from __future__ import annotations

from pathlib import Path


def train_and_export(model_name: str, directory: Path, log=print) -> Path:
    """Train `model_name` from its seed and write its stages and model.json into `directory`."""
    try:
        from hil.training import export, train
    except ImportError as error:
        from hil.errors import BadInput

        raise BadInput(f"training needs the train extra ({error.name} missing): pip install -e '.[train]'") from None
    network, split = train.train(model_name, log=log)
    return export.export(model_name, network, split, train.settings_for(model_name), directory)
