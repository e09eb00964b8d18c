"""What ``export`` takes from ``--run``: the overrides and dataset a run or a weights file was trained with."""

from pathlib import Path


def run_overrides(run: Path | None, set_: list[str] | None) -> tuple[list[str], str | None]:
    """The --set options to build the model with (the given ones, else the run's) and its dataset."""
    overrides, dataset = list(set_ or []), None
    if run is None:
        return overrides, None
    if run.is_file() and run.suffix == ".safetensors":
        from mgspec.train import artifacts

        info = artifacts.describe_file(run)
        return overrides or list(info.get("spec_overrides") or []), info.get("dataset")
    from mgspec.train.trainer import read_run

    stored = read_run(run) if run.exists() else None
    if stored is not None:
        dataset = (stored.get("config") or {}).get("dataset")
        if not set_:
            overrides = list((stored.get("spec") or {}).get("overrides") or [])
    return overrides, dataset
