"""Issue 14: the commands train the facial-movement model unless told otherwise; PainNet stays one flag away.

``--features`` not given: ``motion`` (with ``--baseline neonate``), or ``cnn`` when a PainNet option
is (``--recipe paper`` trains the paper's PainNet); a PainNet option beside a face model is an error.
The trainers are replaced by recorders that stop the command once it has chosen, so no model trains.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from inference import training as tr

pytestmark = pytest.mark.django_db


class Stop(tr.DatasetError):
    """Raised by a recorder once the command has said what it trains (the command turns it into a CommandError)."""


def run(*args) -> tuple[str, str]:
    """The command's stdout and the CommandError it ended with (a recorder stops every run here)."""
    out = io.StringIO()
    with pytest.raises(CommandError) as error:
        call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue(), str(error.value)


@pytest.fixture
def trained(monkeypatch):
    """What each trainer was asked to train: ``[(trainer, kind, config)]``; every trainer stops the command."""
    import inference.face_motion
    import inference.training.actions_model
    from inference.face_actions import FaceMeshUnavailable

    calls = []

    def record(trainer):
        def recorder(crops, *, config, kind="cnn", **_):
            calls.append((trainer, kind, config))
            raise Stop(f"{trainer} stopped by the test")

        return recorder

    monkeypatch.setattr(inference.training.actions_model, "train_actions_model", record("face"))
    monkeypatch.setattr(tr, "train_model", record("painnet"))
    monkeypatch.setattr(tr, "losocv", record("painnet losocv"))
    monkeypatch.setattr(tr, "FeatureBank", lambda *a, **k: None)  # PainNet's frozen features: not computed

    def no_motion(crops, **_):
        calls.append(("motion losocv", "motion", None))
        raise FaceMeshUnavailable("motion features stopped by the test")

    monkeypatch.setattr(inference.face_motion, "crops_motion_embeddings", no_motion)
    return calls


def test_train_model_trains_the_facial_movement_model_by_default(planted, crop_cache, trained):
    out, error = run("train_model", "--dataset", str(planted), "--cache", str(crop_cache), "--no-progress")
    assert out.splitlines()[0].startswith("Model: the facial-movement model (--features motion), the default")
    assert "PainNet: --features cnn, the paper's recipe: --features cnn --recipe paper" in out.splitlines()[0]
    assert "Training the facial-movement model" in out and "Baseline per neonate" in out
    assert "face stopped by the test" in error
    [(trainer, kind, config)] = trained
    assert (trainer, kind, config.baseline, config.finetune) == ("face", "motion", "neonate", "head")


def test_train_model_actions_gets_the_neonate_baseline_without_asking(planted, crop_cache, trained):
    out, _ = run("train_model", "--dataset", str(planted), "--features", "actions", "--cache", str(crop_cache))
    assert out.splitlines()[0].startswith("Model: the facial-action model (--features actions), as asked")
    [(trainer, kind, config)] = trained
    assert (trainer, kind, config.baseline) == ("face", "actions", "neonate")


@pytest.mark.parametrize(
    ("option", "recipe", "implied_by"),
    [
        (["--recipe", "paper"], "paper", "--recipe"),
        (["--epochs", "3", "--lr", "1e-4"], "default", "--epochs"),
        (["--freeze-backbone"], "default", "--freeze-backbone"),
        (["--backbone", "fer_cnn"], "default", "--backbone"),
    ],
)
def test_a_painnet_option_without_features_trains_painnet(planted, crop_cache, trained, option, recipe, implied_by):
    out, error = run("train_model", "--dataset", str(planted), *option, "--cache", str(crop_cache), "--no-progress")
    assert out.splitlines()[0] == f"Model: PainNet (--features cnn), implied by {implied_by}"
    assert "painnet stopped by the test" in error
    [(trainer, kind, config)] = trained
    assert (trainer, config.recipe, config.baseline) == ("painnet", recipe, "none")
    assert f"(recipe {recipe}," in out


def test_the_paper_recipe_keeps_its_values_and_the_cnn_baseline_can_still_be_asked(planted, crop_cache, trained):
    run("train_model", "--dataset", str(planted), "--features", "cnn", "--recipe", "paper", "--cache", str(crop_cache))
    run(
        "train_model",
        "--dataset",
        str(planted),
        "--features",
        "cnn",
        "--baseline",
        "neonate",
        "--cache",
        str(crop_cache),
    )
    (_, _, paper), (_, _, neonate) = trained
    assert (paper.recipe, paper.lr, paper.epochs, paper.baseline, paper.backbone) == (
        "paper",
        1e-5,
        60,
        "none",
        "mobilenet_v2",
    )
    assert (neonate.recipe, neonate.baseline, neonate.finetune) == ("default", "neonate", "head")


@pytest.mark.parametrize("features", ["motion", "actions"])
@pytest.mark.parametrize(
    "option",
    [
        ["--recipe", "paper"],
        ["--backbone", "fer_cnn"],
        ["--finetune", "all"],
        ["--epochs", "3"],
        ["--lr", "1e-4"],
        ["--freeze-backbone"],
        ["--batch-size", "8"],
        ["--augment-views", "0"],
    ],
)
def test_a_painnet_option_beside_a_face_model_is_an_error(features, option, trained):
    flag = option[0]
    with pytest.raises(
        CommandError, match=f"{flag} is a PainNet option: it applies to --features cnn.*--features {features}"
    ):
        call_command("train_model", "--dataset", "/nonexistent", "--features", features, *option, stdout=io.StringIO())
    assert trained == []


@pytest.mark.parametrize("features", ["motion", "actions"])
def test_a_face_model_without_its_baseline_is_an_error(features, trained):
    with pytest.raises(CommandError, match="needs --baseline neonate.*--baseline none is for PainNet"):
        call_command("train_model", "--dataset", "/nonexistent", "--features", features, "--baseline", "none")
    assert trained == []


def test_evaluate_model_cross_validates_the_facial_movement_model_by_default(planted, crop_cache, trained):
    out, error = run("evaluate_model", "--dataset", str(planted), "--losocv", "--cache", str(crop_cache))
    assert out.splitlines()[0].startswith("Model: the facial-movement model (--features motion), the default")
    assert "no backbone could be evaluated: motion: motion features stopped by the test" in error
    assert [call[0] for call in trained] == ["motion losocv"]


def test_evaluate_model_with_the_paper_recipe_cross_validates_painnet(planted, crop_cache, trained):
    out, error = run(
        "evaluate_model", "--dataset", str(planted), "--losocv", "--recipe", "paper", "--cache", str(crop_cache)
    )
    assert out.splitlines()[0] == "Model: PainNet (--features cnn), implied by --recipe"
    [(trainer, _, config)] = trained
    assert (trainer, config.recipe, config.baseline, config.backbone) == (
        "painnet losocv",
        "paper",
        "none",
        "mobilenet_v2",
    )


def test_evaluate_model_refuses_painnet_options_its_features_do_not_use(trained):
    def evaluate(*args):
        call_command("evaluate_model", "--dataset", "/nonexistent", "--losocv", *args, stdout=io.StringIO())

    with pytest.raises(CommandError, match="--epochs is a PainNet option: it applies to --features cnn, not"):
        evaluate("--features", "motion", "--epochs", "3")
    with pytest.raises(CommandError, match="--backbone is a PainNet option.*embedding/combined.*motion actions"):
        evaluate("--features", "motion", "actions", "--backbone", "fer_cnn")
    with pytest.raises(CommandError, match="--recipe is a PainNet option"):
        evaluate("--features", "embedding", "--recipe", "paper")
    assert trained == []
    # Beside a feature they apply to, they are taken (the dataset is what fails here).
    for args in (
        ["--features", "motion", "cnn", "--epochs", "3"],
        ["--features", "embedding", "--backbone", "fer_cnn"],
    ):
        with pytest.raises(CommandError, match="nonexistent|not found|No such|does not exist"):
            evaluate(*args)
