"""Every config option composes and validates; bad keys, values and targets are refused by name."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ReadonlyConfigError

from pipeline.config import CONF_DIR
from pipeline.config.compose import (
    MAX_SWEEP_CHECKS,
    compose_config,
    stored_config,
    sweep_combinations,
    sweep_configs,
)
from pipeline.config.instantiate import safe_instantiate
from pipeline.config.validation import validate
from pipeline.errors import ConfigError

GROUPS = ("data", "model", "optimizer", "scheduler", "trainer", "tracking", "compression", "search")


def group_options() -> list[str]:
    return [
        f"{group}={path.stem}"
        for group in GROUPS
        for path in sorted((CONF_DIR / group).glob("*.yaml"))
        if not path.stem.startswith("_")
    ]


def test_defaults_compose_to_the_documented_run() -> None:
    cfg = compose_config([])
    assert cfg.data._target_ == "pipeline.data.sources.MnistSubset"
    assert cfg.model._target_ == "pipeline.models.cnn.CNN"
    assert cfg.optimizer._target_ == "torch.optim.Adam"
    assert cfg.scheduler is None
    assert OmegaConf.missing_keys(cfg) == set()


@pytest.mark.parametrize("option", group_options())
def test_every_option_composes(option: str) -> None:
    cfg = compose_config([option])
    group, name = option.split("=")
    if group == "scheduler" and name != "none":
        assert cfg.scheduler._target_.startswith("torch.optim.lr_scheduler.")


def test_scheduler_interpolations_follow_their_sources() -> None:
    cfg = compose_config(["scheduler=onecycle", "optimizer=sgd", "optimizer.lr=0.2"])
    assert cfg.scheduler.max_lr == 0.2
    assert compose_config(["scheduler=cosine", "trainer.max_epochs=7"]).scheduler.T_max == 7


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["model=nope"], "model=nope: no such option (available: cnn, mlp, rnn, transformer)"),
        (
            ["data=nope"],
            "data=nope: no such option (available: cifar10, fashion_mnist, mnist, mnist_subset, synthetic)",
        ),
        (["optimizer.lr=abc"], "optimizer.lr: Value 'abc' of type 'str' could not be converted to Float"),
        (["trainer.max_epochs=-1"], "trainer.max_epochs: must be > 0, got -1"),
        (["trainer.max_epochs=abc"], "trainer.max_epochs: Value 'abc'"),
        (["optimizer.lrr=1"], "optimizer.lrr: Key 'lrr' is not in struct"),
        (["+optimizer.lrr=1"], "optimizer.lrr: Key 'lrr' not in 'AdamConfig'"),
        (["model.dropout=1.5"], "model.dropout: must be in [0, 1)"),
        (["model=transformer", "model.num_heads=3"], "model.d_model: 128 is not divisible by model.num_heads=3"),
        (["data.batch_size=0"], "data.batch_size: must be > 0"),
        (["trainer=ddp", "data.batch_size=33"], "data.batch_size: 33 must divide evenly over the 2 DDP processes"),
        (["data=mnist", "data.dataset=svhn"], "data.dataset: unknown data set 'svhn'"),
        (["tracking.experiment=???"], "tracking.experiment: missing value"),
        (["model.downsample=half"], "model.downsample: must be 'pool' or 'stride', got 'half'"),
        (
            ["compression.student_model.CNN.downsample=half"],
            "compression.student_model.CNN.downsample: must be 'pool' or 'stride', got 'half'",
        ),
        (
            ["+compression.student_model.RNN.layers=1", "model=rnn"],
            "compression.student_model.RNN.layers: not an argument of model pipeline.models.rnn.RNN",
        ),
    ],
)
def test_bad_input_names_the_key(overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        compose_config(overrides)
    message = str(caught.value)
    assert message.startswith(expected)
    assert "\n" not in message


def stored_with(**section: dict) -> dict:
    """A config as read back from a store, with one section replaced."""
    plain = OmegaConf.to_container(compose_config([]), resolve=True)
    plain.update(section)
    return plain


def test_a_sweep_stands_as_its_first_combination_and_each_other_value_once() -> None:
    command = [
        *("hydra/sweeper=optuna", "model=cnn,mlp", "+tags.team=vision", "optimizer.lr=tag(log, interval(1e-4, 1e-2))"),
        *("seed=range(1,4)", "run_name='a b',c"),
    ]
    assert sweep_combinations(command) == [
        ["model=cnn", "+tags.team=vision", "seed=1", "run_name='a b'"],  # Hydra's keys and intervals: left out
        ["model=mlp", "+tags.team=vision", "seed=1", "run_name='a b'"],
        ["model=cnn", "+tags.team=vision", "seed=2", "run_name='a b'"],
        ["model=cnn", "+tags.team=vision", "seed=3", "run_name='a b'"],
        ["model=cnn", "+tags.team=vision", "seed=1", "run_name=c"],
    ]
    for combination in sweep_combinations(command):
        compose_config(combination)  # each one composes as a single run's overrides
    assert len(sweep_combinations([f"seed=range(0,{10 * MAX_SWEEP_CHECKS})"])) == MAX_SWEEP_CHECKS
    with pytest.raises(ConfigError, match=r"^seed=1,,2: extraneous input ',' \(Hydra's override grammar"):
        sweep_combinations(["seed=1,,2"])


@pytest.mark.parametrize(
    "command",
    [
        [
            *("model=cnn,mlp", "seed=1,2", "optimizer.lr=1e-3,0.01", "run_name=a,'b c'", "model.dropout=0.1,0.3"),
            *("trainer.max_epochs=2", "+tags.team=vision,audio", "data.augment.degrees=5.0,7.5"),
            "data.augment={enabled:true,degrees:5.0},{enabled:false}",  # a mapping: composed whole
        ],
        ["experiment=cnn_tuned", "optimizer.lr=1e-3,0.01", "optimizer.weight_decay=0,1e-4"],  # a global package
    ],
)
def test_a_sweeps_configs_are_what_composing_each_combination_gives(command: list[str]) -> None:
    """Values set in a copy of the first combination (the quick path) and whole compositions agree, key for key."""
    combinations = sweep_combinations(command)
    configs = sweep_configs(command)
    assert len(configs) == len(combinations) > 2
    for combination, config in zip(combinations, configs, strict=True):
        composed = OmegaConf.to_container(compose_config(combination), resolve=True)
        assert OmegaConf.to_container(config, resolve=True) == composed, combination


def test_a_sweeps_bad_value_is_one_line_from_the_quick_path_too() -> None:
    with pytest.raises(ConfigError, match=r"^seed: Value 'x' of type 'str' could not be converted to Integer"):
        sweep_configs(["seed=1,x"])
    with pytest.raises(ConfigError, match=r"^trainer.max_epochs: must be > 0, got 0"):
        sweep_configs(["trainer.max_epochs=1,0"])


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("seed=1,,2", "extraneous input ','"),
        ("seed=[1", "no viable alternative at input '[1'"),
        ("x=1)", "extraneous input ')'"),
        ("seed=a&b", "unexpected character '&' at position 7"),  # the lexer's own error, caret and all
    ],
)
def test_an_override_hydra_cannot_parse_is_one_line_naming_it_and_why(override: str, reason: str) -> None:
    with pytest.raises(ConfigError) as raised:
        compose_config([override])
    assert str(raised.value) == f"{override}: {reason} (Hydra's override grammar: key=value, key=a,b,c for a sweep)"


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ("data.batch_size=[1", "data.batch_size=[1: not a value YAML can read (expected ',' or ']', but got"),
        ("seed=@", "seed=@: not a value YAML can read (found character '@' that cannot start any token)"),
    ],
)
def test_a_stored_runs_override_that_cannot_be_read_is_one_line_naming_it(override: str, error: str) -> None:
    """pipeline-eval, -rerun, -compress and -explain read their overrides onto a stored config, not through Hydra."""
    stored = OmegaConf.to_yaml(compose_config([]))
    with pytest.raises(ConfigError) as raised:
        stored_config(stored, ["seed=3", override])
    assert str(raised.value).startswith(error)
    assert validate(stored_config(stored, ["seed=3", "data.batch_size=64"])).data.batch_size == 64
    odd_folder = "/tmp/runs (old) & new"  # a store's path as the commands add it: Hydra's grammar would refuse it
    assert stored_config(stored, [f"paths.output_root={odd_folder}"]).paths.output_root == odd_folder
    added = stored_config(stored, ["+compression.student_model.CNN.kernel_size=5", "++tags.note=x"])  # as in training
    assert added.compression.student_model.CNN == {"downsample": "stride", "kernel_size": 5} and added.tags.note == "x"


def test_a_model_target_in_the_optimizer_section_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"optimizer._target_: 'pipeline.models.cnn.CNN' is not allowed here"):
        validate(OmegaConf.create(stored_with(optimizer={"_target_": "pipeline.models.cnn.CNN"})))


def test_interpolated_target_is_refused() -> None:
    plain = stored_with()
    plain["tags"] = {"evil": "os.system"}
    plain["model"]["_target_"] = "${tags.evil}"
    with pytest.raises(ConfigError, match=r"model\._target_: interpolations are not allowed"):
        validate(OmegaConf.create(plain))


def test_safe_instantiate_refuses_nested_targets() -> None:
    node = OmegaConf.create(
        {"_target_": "torch.optim.Adam", "_partial_": True, "lr": {"_target_": "torch.load", "f": "x"}}
    )
    with pytest.raises(
        ConfigError, match=r"optimizer.lr._target_: target 'torch.load' is neither built in nor trusted"
    ):
        safe_instantiate(node, "optimizer")


def test_validated_config_is_read_only_and_typed() -> None:
    cfg = compose_config(["optimizer.lr=0.01"])
    assert isinstance(cfg.optimizer.lr, float)
    with pytest.raises(ReadonlyConfigError, match=r"optimizer\.lr"):
        cfg.optimizer.lr = 1.0
    assert cfg.optimizer.lr == 0.01


def test_a_stored_config_older_than_some_keys_gets_their_defaults_but_only_for_its_own_kind_of_section() -> None:
    """Reruns, resumes and compression of runs stored before a key existed (`trainer.sync_batchnorm`, the CNN's `padding`)."""
    current = OmegaConf.to_container(compose_config(["model=cnn"]))
    del current["trainer"]["sync_batchnorm"], current["callbacks"]["early_stopping"]["patience"]
    del current["model"]["padding"], current["model"]["downsample"], current["compression"]["student_model"]
    cfg = validate(stored_config(OmegaConf.to_yaml(current), []))
    assert cfg.trainer.sync_batchnorm is False and cfg.callbacks.early_stopping.patience == 3
    assert cfg.model.padding == "same" and cfg.model.downsample == "pool"  # what the CNN did before the key
    assert cfg.compression.student_model == {"CNN": {"downsample": "stride"}}

    rnn = OmegaConf.to_container(compose_config(["model=rnn"]))
    del rnn["model"]["hidden_size"]  # the default model is a CNN: its keys are no RNN's defaults
    with pytest.raises(ConfigError, match=r"^model.hidden_size: missing required argument"):
        validate(stored_config(OmegaConf.to_yaml(rnn), []))
