"""The trained model: training, files without pickle, explanations, the decision order
and hot reload in every holder of the rules."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from omnidesk.model import Category
from omnidesk.pipeline_proc import ParseRules
from omnidesk.rules import RulesHolder, combine, load_rules
from omnidesk.rules import holder as holder_mod
from omnidesk.rules.decide import settings
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


def test_training_with_the_phrases_chooses_how_they_combine(tmp_path: Path) -> None:
    rs = load_rules(SHIPPED_RULES)
    ex = [Example(text=r["text"], label=r["label"]) for r in examples()]
    verdicts = [rs.phrase_verdict(e.subject, e.text) for e in ex]
    m = train(ex, folds=3, phrases=verdicts)
    chosen = m.report["combination"]
    assert chosen["threshold"] in combine.THRESHOLDS and chosen["weight"] in combine.WEIGHTS
    assert chosen["macro_f1"] >= max(chosen["model_alone_macro_f1"], 0.8), chosen
    # What training chose is what the daemon uses, unless the rules say otherwise.
    assert settings(m, rs.classifier.config) == (
        chosen["threshold"],
        chosen["weight"],
        "chosen in training",
    )
    store = ModelStore(tmp_path / "m")
    store.save(m, install=True)
    loaded = store.load()
    assert loaded is not None and loaded.combination == chosen
    rules = tmp_path / "rules"
    rules.mkdir()
    text = (SHIPPED_RULES / "00-classifier.toml").read_text(encoding="utf-8")
    text = text.replace("[classifier]\n", "[classifier]\nmodel_threshold = 0.95\n", 1)
    (rules / "00.toml").write_text(text, encoding="utf-8")
    own = load_rules(rules)
    assert settings(m, own.classifier.config)[::2] == (0.95, "the rules")
    decision = own.with_model(m).evaluate(inp("the router arrived broken, terrible"))
    assert "threshold 0.95" in decision.explanation[0]


def test_a_model_defers_to_the_phrases_on_words_it_never_saw(model: TrainedModel) -> None:
    familiar = model.predict("", "thank you Bo, the phone came quickly, lovely service")
    assert familiar.familiarity == 1.0
    # Not one of these words was in its training data: whatever its weights say,
    # it has no opinion, and the phrases decide.
    strange = model.predict("", "Quatsch, völlig kaputt, unverschämt")
    assert strange.familiarity == 0.0
    v = combine.combine(
        strange.probabilities, strange.familiarity, _phrases_say_feedback(), 0.8, 0.7
    )
    assert (v.category, v.decided_by) == (Category.FEEDBACK, "combined")
    # Half the words known: half way to "no idea".
    half = combine.familiar({"complaint": 0.9, "feedback": 0.1}, 0.5)
    assert half == pytest.approx({"complaint": 0.7, "feedback": 0.3})


def _phrases_say_feedback() -> dict[Category, float]:
    return {Category.FEEDBACK: 0.8, Category.INQUIRY: 0.1, Category.COMPLAINT: 0.1}


def test_a_complaint_model_decides_complaint_or_not_and_the_phrases_the_rest() -> None:
    phrases = {Category.FEEDBACK: 0.6, Category.INQUIRY: 0.3, Category.COMPLAINT: 0.1}
    sure_not = combine.combine({"complaint": 0.05, "not_complaint": 0.95}, 1.0, phrases, 0.8, 0.7)
    assert (sure_not.category, sure_not.decided_by) == (Category.FEEDBACK, "model")
    # Unsure: 0.7 * 0.6 + 0.3 * 0.1 = 0.45 < 0.5, not a complaint...
    unsure = combine.combine({"complaint": 0.6, "not_complaint": 0.4}, 1.0, phrases, 0.8, 0.7)
    assert (unsure.category, unsure.decided_by) == (Category.FEEDBACK, "combined")
    # ...but with phrases that call it one, 0.7 * 0.6 + 0.3 * 0.9 = 0.69: a complaint.
    angry = {Category.FEEDBACK: 0.05, Category.INQUIRY: 0.05, Category.COMPLAINT: 0.9}
    v = combine.combine({"complaint": 0.6, "not_complaint": 0.4}, 1.0, angry, 0.8, 0.7)
    assert v.category is Category.COMPLAINT and v.confidence == pytest.approx(0.69)
