"""The trained classifier's costs, against same-run baselines.

1. Training on 10,000 labelled messages (food-delivery reviews and complaint tweets from
   the shared corpora, repeated to 10,000 when fewer), 5-fold cross-validation and the
   choice of how model and phrases combine included; baseline: reading the same
   messages into features only.
2. Classifying in the pipeline: ``RuleSet.evaluate`` per message with the installed
   model against the same rules without one (phrases only).
3. Memory: the process's resident size before and after loading a model.

    .venv/bin/python bench/bench_classify.py
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omnidesk.model import RuleInput
from omnidesk.rules import load_rules
from omnidesk.rules.trained import Example, ModelStore, feature_names, train
from tests.rules import corpus_sets


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    if not corpus_sets.available():
        sys.exit(f"needs OMNIDESK_CORPORA to name a folder holding {', '.join(corpus_sets.NEEDS)}")
    records = list(corpus_sets.waimai()) + list(corpus_sets.twitter())
    while len(records) < 10_000:
        records += records[: 10_000 - len(records)]
    records = records[:10_000]
    examples = [Example(text=r["text"], label=r["label"]) for r in records]
    rules = load_rules(Path(__file__).resolve().parents[1] / "rules")

    t = time.perf_counter()
    for e in examples:
        feature_names("", e.text)
    features_s = time.perf_counter() - t
    rss_before = rss_mb()
    t = time.perf_counter()
    # As `classify train` does it: the phrases' verdicts let cross-validation choose
    # how model and phrases combine.
    verdicts = [rules.phrase_verdict(e.subject, e.text) for e in examples]
    model = train(examples, folds=5, phrases=verdicts)
    train_s = time.perf_counter() - t

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        store = ModelStore(Path(d))
        store.save(model, install=True)
        loaded = store.load()
        # In a fresh process: the rules alone, then the model loaded too.
        probe = (
            "import sys; from pathlib import Path; sys.path.insert(0, 'src')\n"
            "from omnidesk.rules import load_rules; from omnidesk.rules.trained import ModelStore\n"
            "def rss():\n"
            "    for l in Path('/proc/self/status').read_text().splitlines():\n"
            "        if l.startswith('VmRSS:'): return int(l.split()[1]) / 1024\n"
            "r = load_rules('rules'); a = rss()\n"
            f"m = ModelStore(Path({d!r})).load(); print(a, rss())"
        )
        out = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
        ).stdout.split()
        rss_no_model, rss_model = float(out[0]), float(out[1])
    with_model = rules.with_model(loaded)
    inputs = [
        RuleInput(channel="api", channel_type="api", sender="a@b.c", text=r["text"], language="zh")
        for r in records[:2000]
    ]
    timings = {}
    for name, rs in (("phrases only (baseline)", rules), ("with the model", with_model)):
        rs.evaluate(inputs[0])
        t = time.perf_counter()
        for inp in inputs:
            rs.evaluate(inp)
        timings[name] = (time.perf_counter() - t) / len(inputs) * 1000
    print(f"{'what':<44}{'figure':>14}")
    print(f"{'features of 10,000 messages (baseline)':<44}{features_s:>12.2f} s")
    print(f"{'training on 10,000, CV and combining incl.':<44}{train_s:>12.2f} s")
    for name, ms in timings.items():
        print(f"{'evaluate per message, ' + name:<44}{ms:>11.3f} ms")
    extra = timings["with the model"] - timings["phrases only (baseline)"]
    print(f"{'  the model adds':<44}{extra:>11.3f} ms")
    print(f"{'resident memory before training':<44}{rss_before:>11.1f} MB")
    print(f"{'resident memory, rules loaded (baseline)':<44}{rss_no_model:>11.1f} MB")
    print(f"{'  a loaded model adds':<44}{rss_model - rss_no_model:>+11.1f} MB")


if __name__ == "__main__":
    main()
