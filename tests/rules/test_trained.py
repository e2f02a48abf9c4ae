"""The trained model: training, files without pickle, explanations, the decision order
and hot reload in every holder of the rules."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from omnidesk.model import Category
from omnidesk.pipeline_proc import ParseRules
from omnidesk.rules import RulesHolder, load_rules
from omnidesk.rules import holder as holder_mod
from omnidesk.rules.trained import Example, ModelStore, TrainedModel, evaluate, train

from .conftest import SHIPPED_RULES, inp
from .synthetic import examples


@pytest.fixture(scope="module")
def model() -> TrainedModel:
    return train([Example(text=r["text"], label=r["label"]) for r in examples()], folds=3)


def test_training_reports_sizes_and_cross_validated_scores(model: TrainedModel) -> None:
    r = model.report
    assert r["examples"] == 72 and r["labels"] == {"complaint": 24, "feedback": 24, "inquiry": 24}
    cv = r["cross_validated"]
    assert cv["folds"] == 3 and set(cv["per_class"]) == {"complaint", "feedback", "inquiry"}
    assert cv["macro_f1"] > 0.8, cv


def test_a_prediction_names_the_words_that_decided_it(model: TrainedModel) -> None:
    p = model.predict("", "the router arrived broken, terrible")
    assert p.label == "complaint" and p.confidence > 0.5
    words = [w for w, _ in p.top]
    assert {"'broken'", "'terrible'"} & set(words), p.top
    assert all(weight > 0 for _, weight in p.top)


def test_saved_as_plain_arrays_and_loaded_without_pickle(
    model: TrainedModel, tmp_path: Path
) -> None:
    store = ModelStore(tmp_path / "m")
    v = store.save(model, install=True)
    assert store.current_version() == v == 1
    npz = tmp_path / "m" / "model-000001.npz"
    with zipfile.ZipFile(npz) as z:
        for name in z.namelist():  # every member is a plain array: np.load refuses pickles
            assert name.endswith(".npy")
    loaded = store.load()
    assert loaded is not None and loaded.version == 1
    assert loaded.report["cross_validated"] == model.report["cross_validated"]
    for text in ("how do I change the address for my card?", "lovely service, thank you"):
        a, b = model.predict("", text), loaded.predict("", text)
        assert a.label == b.label and a.confidence == pytest.approx(b.confidence, abs=1e-5)
    assert np.load(npz, allow_pickle=False)["classes"].tolist() == list(model.classes)


def test_decision_order_rule_then_model_then_combined(model: TrainedModel, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "00.toml").write_text(
        (SHIPPED_RULES / "00-classifier.toml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (rules / "50.toml").write_text(
        '[[rule]]\nname = "legal"\nwhen = { text.contains = "lawyer" }\n'
        'then = { category = "complaint" }\n',
        encoding="utf-8",
    )
    rs = load_rules(rules)
    assert rs.evaluate(inp("lovely service, thank you Ann")).decided_by == "phrases"
    with_model = rs.with_model(model)
    assert with_model.fingerprint != rs.fingerprint
    sure = with_model.evaluate(inp("thank you Bo, the phone came quickly, lovely service"))
    assert (sure.decided_by, sure.category) == ("model", Category.FEEDBACK)
    assert "decided by the trained model v" in sure.explanation[0] and sure.features
    # A rule that sets the category wins over a sure model.
    ruled = with_model.evaluate(inp("thank you, lovely service, my lawyer agrees"))
    assert (ruled.decided_by, ruled.category, ruled.rule) == ("rule", Category.COMPLAINT, "legal")
    # Nobody is sure enough: model and phrases are combined.
    unsure = rs.with_model(model, threshold=1.0).evaluate(inp("the weather is nice"))
    assert (
        unsure.decided_by == "combined" and "combined with the phrases" in (unsure.explanation[0])
    )


def test_every_holder_follows_the_installed_model(
    model: TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(holder_mod, "MODEL_CHECK_SECONDS", 0.0)
    models = ModelStore(tmp_path / "models")
    holder = RulesHolder(SHIPPED_RULES, model_dir=models.directory)
    parse = ParseRules(SHIPPED_RULES, models.directory)
    assert holder.current.model is None
    v1 = models.save(model, install=True)
    assert holder.current.model is not None and holder.current.model.version == v1
    # A parse process asked for rules with model v1 loads it from the same folder.
    matched = parse.matching(holder.current.fingerprint)
    assert matched is not None and matched.model is not None and matched.model.version == v1
    v2 = models.save(model, install=True)
    assert holder.current.model is not None and holder.current.model.version == v2
    # A rules reload keeps the model.
    assert holder.reload() and holder.current.model.version == v2
    models.install(v1)
    assert holder.current.model.version == v1


def test_a_model_scores_itself_on_held_out_examples(model: TrainedModel) -> None:
    held = [Example(text="what time can I pick up the phone on friday?", label="inquiry")]
    assert evaluate(model, held)["accuracy"] == 1.0
