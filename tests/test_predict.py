"""mgspec predict: image files classified from a run, its safetensors file and its ONNX export."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import mgspec
from mgspec import predict as predicting
from mgspec.cli.app import app
from mgspec.train import data, trainer
from mgspec.train.batches import EpochBatches
from mgspec.train.recipe import recipe
from tests.conftest import SHARED_DATA, needs_cifar
from tests.synthetic import TINY_SPEC

Image = pytest.importorskip("PIL.Image", reason="Pillow (the predict extra) is not installed")
runner = CliRunner()
IMAGES = 24


def cli(*args, code: int = 0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 1-epoch, 2-batch run of the tiny spec on the CIFAR-10 subset, its ONNX export, and test PNGs."""
    root = tmp_path_factory.mktemp("predict")
    spec = root / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    config = dataclasses.replace(recipe("cifar10", SHARED_DATA, epochs=1, batch_size=64), max_batches=2)
    run = trainer.prepare(spec, [], config, root / "run")
    trainer.train(run, progress=False, log=lambda _: None)
    onnx = root / "tiny.onnx"
    cli("export", spec, "--onnx", onnx, "--run", root / "run", "--batch-size", 5)  # 24 images: a padded chunk
    cli("export", spec, "--onnx", root / "raw.onnx", "--run", root / "run", "--dynamic-batch", "--embed-normalization")
    test = data.load("cifar10", SHARED_DATA, "test")
    pngs = root / "pngs"
    pngs.mkdir()
    for i in range(IMAGES):
        Image.fromarray(test.images[i].permute(1, 2, 0).numpy()).save(pngs / f"{i:02d}.png")
    return root, test


def own_predictions(run_dir, test) -> list[int]:
    """The run's model on the first test images, batched and normalised as evaluate does."""
    stored = trainer.read_run(run_dir)
    model = mgspec.create_model(trainer.stored_spec(stored), stored["spec"]["overrides"]).eval()
    trainer.load_weights(model, run_dir, "cpu", "")
    split = data.Split(test.images[:IMAGES], test.labels[:IMAGES])
    x, _ = EpochBatches(split, data.dataset_info("cifar10"), IMAGES, train=False)[0]
    with torch.no_grad():
        return model(x).argmax(1).tolist()


@needs_cifar
@pytest.mark.slow
def test_run_safetensors_and_onnx_give_the_models_own_top1(trained):
    root, test = trained
    want = own_predictions(root / "run", test)
    for source in (root / "run", root / "run" / "model.safetensors", root / "tiny.onnx", root / "raw.onnx"):
        rows = json.loads(cli("predict", source, root / "pngs", "-f", "json", "-k", 3).stdout)
        assert [r["file"] for r in rows] == [str(root / "pngs" / f"{i:02d}.png") for i in range(IMAGES)]
        assert [r["top"][0]["index"] for r in rows] == want, source
        assert all(len(r["top"]) == 3 and r["top"][0]["probability"] >= r["top"][2]["probability"] for r in rows)
        assert all(r["top"][0]["class"] == data.DATASETS["cifar10"].class_names[r["top"][0]["index"]] for r in rows)


@needs_cifar
@pytest.mark.slow
def test_a_bad_image_is_an_error_of_its_own_and_the_others_are_classified(trained):
    root, test = trained
    bad = root / "bad.png"
    bad.write_text("not an image")
    good = root / "pngs" / "00.png"
    result = cli("predict", root / "run" / "model.safetensors", bad, good, root / "missing.jpg", "-f", "csv", code=1)
    assert f"{bad}: cannot read the image" in result.stderr and f"{root / 'missing.jpg'}: no such file" in result.stderr
    assert "Traceback" not in result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "file,rank,index,class,probability" and len(lines) == 2 and lines[1].startswith(f"{good},1,")
    assert int(lines[1].split(",")[2]) == own_predictions(root / "run", test)[0]
    table = cli("predict", root / "run", good, "-k", 2).stdout
    assert str(good) in table and "%" in table


def test_images_are_resized_to_cover_and_center_cropped(tmp_path):
    wide = np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8)  # h 32, w 40
    Image.fromarray(wide).save(tmp_path / "wide.png")
    got = predicting.read_image(tmp_path / "wide.png", (3, 32, 32))
    assert torch.equal(got, torch.from_numpy(wide[:, 4:36].transpose(2, 0, 1).copy()))
    big = np.zeros((64, 96, 3), dtype=np.uint8)
    big[:, 48:] = 255  # right half white: after halving and cropping the center 16 of 48 columns, half stays white
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=100)
    got = predicting.read_image(tmp_path / "big.jpg", (3, 32, 32))
    assert got.shape == (3, 32, 32) and got[:, :, :14].max() < 30 and got[:, :, 18:].min() > 225


def test_grayscale_and_rgb_become_the_models_channels(tmp_path):
    gray = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    rgb = predicting.read_image(tmp_path / "gray.png", (3, 28, 28))
    assert rgb.shape == (3, 28, 28) and all(torch.equal(rgb[c], torch.from_numpy(gray)) for c in range(3))
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(tmp_path / "rgb.png")
    assert torch.equal(predicting.read_image(tmp_path / "rgb.png", (1, 28, 28))[0], torch.from_numpy(gray))


def test_bad_models_and_options_are_one_message_with_status_2(tmp_path):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(image)
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"\x00junk")
    for args, message in (
        ((tmp_path / "nowhere", image), "no such run directory or model file"),
        ((tmp_path, image), "not a run directory"),
        ((junk, image), "cannot load the ONNX model"),
        ((image, image), "not a model mgspec can classify with"),
    ):
        result = cli("predict", *args, code=2)
        assert message in result.stderr and "Traceback" not in result.output


def test_without_pillow_the_message_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "PIL", None)  # as if Pillow were not installed
    result = cli("predict", tmp_path, tmp_path / "x.png", code=2)
    assert "mgspec[predict]" in result.stderr


@pytest.fixture
def untrained(tmp_path):
    """An untrained tiny model as a safetensors file with mgspec's metadata."""
    from mgspec.train import artifacts

    model = mgspec.create_model(TINY_SPEC)
    counts = mgspec.count_spec(TINY_SPEC)
    record = {"text": TINY_SPEC, "overrides": [], "weights": counts.total, "macs": counts.macs}
    meta = artifacts.metadata(record, model.graph.graph["spec"], "cifar10", 0, 0.0)
    return artifacts.save(model, tmp_path / "model.safetensors", meta)


def test_options_beyond_the_model_are_status_2(untrained, tmp_path):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(image)
    assert "-k 11: the model has 10 classes" in cli("predict", untrained, image, "-k", 11, code=2).stderr
    assert "unknown format 'xml'" in cli("predict", untrained, image, "-f", "xml", code=2).stderr


def test_an_empty_directory_and_a_fifo_are_errors_of_their_own(untrained, tmp_path):
    empty, image, fifo = tmp_path / "empty", tmp_path / "x.png", tmp_path / "fifo.png"
    empty.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(image)
    os.mkfifo(fifo)
    result = cli("predict", untrained, empty, fifo, image, "-f", "json", code=1)
    assert f"{empty}: no PNG or JPEG files" in result.stderr and f"{fifo}: not a regular file" in result.stderr
    rows = json.loads(result.stdout)
    assert [r["file"] for r in rows] == [str(empty), str(fifo), str(image)]
    assert "error" in rows[0] and "error" in rows[1] and len(rows[2]["top"]) == 1


def test_truncated_images_and_decompression_bombs_are_errors_of_their_own(untrained, tmp_path, monkeypatch):
    image, truncated = tmp_path / "x.png", tmp_path / "truncated.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(image)
    truncated.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    result = cli("predict", untrained, truncated, image, "-f", "csv", code=1)
    assert f"{truncated}: cannot read the image" in result.stderr and len(result.stdout.splitlines()) == 2
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 1,024 pixels: more than 2x the limit
    result = cli("predict", untrained, image, code=1)
    assert f"{image}: cannot read the image" in result.stderr and "Traceback" not in result.output
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 800)  # between the limit and twice it: Pillow's warning
    assert f"{image}: cannot read the image" in cli("predict", untrained, image, code=1).stderr
