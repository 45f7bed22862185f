"""Your own backbone and DataModule (examples/), with no edit of the package: checked against their
signatures, trained, rerun bit for bit; and a stored config builds only what it trusts."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Optional

import pytest
from omegaconf import OmegaConf

from conftest import COMMAND_TIMEOUT_S, cli_env, store_client
from pipeline.config import REPO_ROOT
from pipeline.config.compose import compose_config
from pipeline.config.signatures import config_type, constructor_arguments, signature_schema
from pipeline.config.validation import validate
from pipeline.errors import ConfigError

EXAMPLES = [f"hydra.searchpath=[file://{REPO_ROOT / 'examples' / 'conf'}]"]
SCRIPTS = Path(sys.executable).parent  # the console scripts a user runs


@pytest.fixture
def examples_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """As `pipeline-train` run from the repository root makes them (pipeline.cli.import_user_code_from_here)."""
    monkeypatch.syspath_prepend(str(REPO_ROOT))


@pytest.mark.usefixtures("examples_importable")
def test_a_user_backbone_and_datamodule_are_typed_from_their_signatures() -> None:
    cfg = compose_config([*EXAMPLES, "model=resnet8", "model.blocks=2", "data=png_folder", "data.root=/images"])
    assert cfg.model.blocks == 2 and list(cfg.model.widths) == [16, 32, 64]
    assert cfg.data.color == "gray" and cfg.data.batch_size == 128  # its own key, and the pipeline's loader keys
    assert list(cfg.trusted_targets) == ["examples.resnet.ResNet8", "examples.png_folder.PngFolder"]


@pytest.mark.usefixtures("examples_importable")
@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["model=resnet8", "+model.depth=3"], "model.depth: not an argument of examples.resnet.ResNet8 (it takes: "),
        (["model=resnet8", "model.blocks=abc"], "model.blocks: Value 'abc' of type 'str' could not be converted"),
        (["model=resnet8", "+model.num_classes=3"], "model.num_classes: set by the pipeline from the data"),
        (
            ["model=resnet8", "model._target_=examples.resnet.ResNet9"],
            "model._target_: cannot import 'examples.resnet.ResNet9' ('examples.resnet' has no 'ResNet9')",
        ),
        (
            ["model=resnet8", "model._target_=examples.resnet.BasicBlock"],
            "model._target_: examples.resnet.BasicBlock must take input_shape and num_classes",
        ),
        (["data=png_folder"], "data.root: missing value"),
        (["data=png_folder", "data.root=/x", "~data.root"], "data.root: missing required argument of examples."),
        (
            ["data=png_folder", "data.root=/x", "~data.eval_batch_size"],
            "data.eval_batch_size: missing required argument of examples.png_folder.PngFolder (a data YAML takes the "
            "pipeline's loader keys with `defaults: [_loader, _self_]`)",
        ),
        (["data=png_folder", "data.root=/x", "data.color=cmyk"], "data.color: must be one of 'gray', 'rgb', got"),
        (
            ["data=png_folder", "data.root=/x", "data._target_=pytorch_lightning.LightningDataModule"],
            "data._target_: 'pytorch_lightning.LightningDataModule' is not a subclass of "
            "pipeline.data.datamodule.ImageDataModule; the pipeline reads its splits",
        ),
        (
            ["data=png_folder", "data.root=/x", "data._target_=examples.write_png_digits.main"],
            "data._target_: 'examples.write_png_digits.main' is not a subclass of "
            "pipeline.data.datamodule.ImageDataModule (it is a function, not a class)",
        ),
        (["trusted_targets=[os]"], "trusted_targets: 'os' would trust os, which is never trusted"),
        (["trusted_targets=[torch.]"], "trusted_targets: 'torch.' would trust torch.load, which is never trusted"),
        (["model._target_=subprocess.run"], "model._target_: 'subprocess.run' is never built"),
        (
            ["optimizer._target_=examples.resnet.ResNet8"],
            "optimizer._target_: 'examples.resnet.ResNet8' is not allowed",
        ),
    ],
)
def test_bad_input_for_a_user_target_is_one_line_naming_the_key(overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        compose_config([*EXAMPLES, *overrides])
    assert str(caught.value).startswith(expected)
    assert "\n" not in str(caught.value)


def stored_with(model: dict[str, Any], trusted: list[str]) -> dict:
    """A config as read back from a store, with its model section and trust list replaced."""
    plain = OmegaConf.to_container(compose_config([]), resolve=True)
    return {**plain, "model": model, "trusted_targets": trusted}


def test_a_stored_config_builds_a_user_class_only_when_it_trusts_it_and_imports_nothing_before() -> None:
    # a module that does not exist: had it been imported, the error would say "cannot import"
    untrusted = {"_target_": "nowhere_installed.Backbone", "width": 3}
    with pytest.raises(ConfigError, match=r"^model._target_: 'nowhere_installed.Backbone' is not trusted by this"):
        validate(OmegaConf.create(stored_with(untrusted, ["examples."])))
    with pytest.raises(ConfigError, match=r"^model._target_: cannot import 'nowhere_installed.Backbone'"):
        validate(OmegaConf.create(stored_with(untrusted, ["nowhere_installed"])))


@pytest.mark.parametrize("target", ["os.system", "subprocess.run", "torch.load", "torch.hub.load", "builtins.eval"])
def test_a_stored_config_never_builds_what_could_run_any_code(target: str) -> None:
    with pytest.raises(ConfigError, match=rf"^model._target_: '{target}' is never built"):
        validate(OmegaConf.create(stored_with({"_target_": target, "command": "echo pwned"}, [])))
    with pytest.raises(ConfigError, match=r"^trusted_targets: .* which is never trusted"):
        validate(OmegaConf.create(stored_with({"_target_": target, "command": "echo pwned"}, [target])))


class Backbone:
    def __init__(self, input_shape: list[int], num_classes: int, width: int, activation: type = list) -> None: ...


def test_an_argument_whose_default_yaml_cannot_hold_is_left_to_the_class_or_set_by_the_config() -> None:
    schema = signature_schema("model", Backbone, ["_target_", "width"])
    assert [field.name for field in dataclasses.fields(schema)] == ["_target_", "width"]
    schema = signature_schema("model", Backbone, ["_target_", "width", "activation"])
    typed = OmegaConf.merge(OmegaConf.structured(schema), {"_target_": "x", "width": 3, "activation": "relu"})
    assert typed.activation == "relu"


class Base:
    def __init__(self, depth: int, name: str = "base", **rest: Any) -> None: ...


class Derived(Base):
    def __init__(self, width: int | None, color: Literal["a", "b"] = "a", scales: tuple[float, ...] = (1.0,), **kw):
        super().__init__(**kw)


def test_signatures_follow_kwargs_to_the_base_class_and_type_what_omegaconf_can_check() -> None:
    assert list(constructor_arguments(Derived)) == ["width", "color", "scales", "depth", "name"]
    assert config_type(int | None) == Optional[int]  # noqa: UP045 (what OmegaConf reads)
    assert config_type(Sequence[int]) == list[int] and config_type(tuple[float, ...]) == list[float]
    assert config_type(Literal["a", "b"]) is str and config_type(Path) is str
    assert config_type(tuple[int, str]) is Any and config_type(dict[str, int]) is Any


def console(command: str, *arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPTS / command), *arguments],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if " INFO " not in line and line.strip()]


@pytest.mark.slow
def test_the_example_backbone_on_a_folder_of_pngs_trains_reruns_bit_for_bit_and_a_tampered_copy_runs_nothing(
    tmp_path: Path,
) -> None:
    images, output_root = tmp_path / "digits", tmp_path / "outputs"
    written = subprocess.run(
        [sys.executable, "examples/write_png_digits.py", str(images), "--per-class", "12"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    assert written.returncode == 0, written.stderr
    assert len(list(images.glob("*/*.png"))) == 120
    store = [f"paths.output_root={output_root}"]
    arguments = ["--config-dir", "examples/conf", "model=resnet8", "model.widths=[8,16]", "data=png_folder"]
    arguments += [f"data.root={images}", "data.batch_size=16", "trainer.max_epochs=2", "trainer.threads=1", *store]

    done = console(
        "pipeline-train", *arguments, "compression=quick", "compression.variants=[int8_static]", cwd=REPO_ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = store_client(output_root)
    (run,) = client.search_runs(["1"])
    assert run.info.status == "FINISHED"
    assert run.data.params["model._target_"] == "examples.resnet.ResNet8" and run.data.params["data.color"] == "gray"
    assert run.data.tags["data.name"] == "png_folder" and run.data.metrics["model/params"] > 0
    assert "compress/int8_static/test_acc" in run.data.metrics and "test/acc" in run.data.metrics

    again = console("pipeline-rerun", run.info.run_id, *store, cwd=REPO_ROOT)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "reproduced: every metric within tolerance 0" in again.stdout

    # a store someone else wrote: the same run, its config now naming os.system
    stored = Path(client.download_artifacts(run.info.run_id, "config/config.yaml", str(tmp_path)))
    config = OmegaConf.load(stored)
    marker = tmp_path / "executed"
    config.model = {"_target_": "os.system", "command": f"touch {marker}"}
    config_file = Path(run.info.artifact_uri.removeprefix("file://")) / "config" / "config.yaml"
    OmegaConf.save(config, config_file)
    refused = "error: model._target_: 'os.system' is never built (it could run any code)"
    rerun_refused = console("pipeline-rerun", run.info.run_id, *store, cwd=REPO_ROOT)
    assert rerun_refused.returncode == 2 and error_lines(rerun_refused) == [refused]
    resume_refused = console("pipeline-train", f"resume={run.info.run_id}", *store, cwd=REPO_ROOT)
    assert resume_refused.returncode == 1 and error_lines(resume_refused) == [refused]
    assert not marker.exists()
    runs = client.search_runs(["1"])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]  # the original and its rerun, untouched
