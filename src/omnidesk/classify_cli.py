"""``omnidesk classify train|retrain|eval|models`` and ``omnidesk rules replay``.

Trained models live in the data directory (``DATA/classifier``, see
``rules/trained.py``), never in the package: a model is as redistributable as the
data it was trained on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from .config import Config, load_config
from .rules.holder import MODEL_FOLDER
from .rules.problems import did_you_mean

log = structlog.get_logger(__name__)

LABELS = ("inquiry", "feedback", "complaint", "not_complaint")


class UsageError(Exception):
    """A mistake in what the user gave (a file, a line, a value): one line, exit 2."""


# -- shared ----------------------------------------------------------------------------


def _maybe_config(args: argparse.Namespace) -> Config | None:
    path = getattr(args, "config", None)
    if path and Path(path).exists():
        return load_config(path)
    return None


def _model_dir(args: argparse.Namespace, config: Config | None) -> Path:
    if getattr(args, "models", None):
        return Path(args.models)
    if config is not None:
        return config.data_dir / MODEL_FOLDER
    return Path("data") / MODEL_FOLDER


def _rules(args: argparse.Namespace, config: Config | None) -> Any:
    from .rules import RulesError, load_rules

    directory = Path(args.rules) if getattr(args, "rules", None) else None
    if directory is None:
        directory = config.rules_dir if config is not None else Path("rules")
    try:
        return load_rules(directory)
    except RulesError as exc:
        raise UsageError(str(exc)) from None


def _model(args: argparse.Namespace, config: Config | None) -> Any:
    """The model ``--model`` names (a .npz file, a folder, or ``none``), else the one
    installed in the data directory, else None."""
    from .rules.trained import ModelStore, TrainedModel

    choice = getattr(args, "model", None)
    if choice == "none":
        return None
    try:
        if choice and Path(choice).is_file():
            return TrainedModel.load(Path(choice))
        store = ModelStore(Path(choice) if choice else _model_dir(args, config))
        if choice and store.current_version() is None:
            raise UsageError(f"{choice}: no installed model there (no CURRENT file)")
        return store.load()
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"cannot read the model: {exc}") from None


def read_jsonl(paths: Iterable[str]) -> list[dict[str, Any]]:
    """Labelled records; a malformed line is a UsageError naming file and line."""
    records: list[dict[str, Any]] = []
    for path in paths:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            why = exc.strerror or exc
            raise UsageError(f"cannot read labelled messages {path}: {why}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            at = raw.count(b"\n", 0, exc.start) + 1
            raise UsageError(f"{path}:{at}: the labelled messages must be UTF-8 text") from None
        before = len(records)
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{where}: not JSON ({exc.msg}, column {exc.colno})") from None
            if not isinstance(rec, dict) or "text" not in rec or "label" not in rec:
                raise UsageError(f'{where}: expected an object with "text" and "label"')
            if not isinstance(rec["text"], str):
                raise UsageError(f'{where}: "text" must be a string')
            if rec["label"] not in LABELS:
                hint = did_you_mean(str(rec["label"]), LABELS)
                raise UsageError(
                    f"{where}: label {rec['label']!r} is not one of {', '.join(LABELS)}{hint}"
                )
            w = rec.get("weight", 1.0)
            if not isinstance(w, int | float) or isinstance(w, bool) or w <= 0:
                raise UsageError(f"{where}: weight must be a positive number")
            records.append(rec)
        if len(records) == before:
            raise UsageError(f"{path}: no labelled messages (one JSON object a line)")
    return records


async def _with_store(config: Config, fn: Callable[[Any], Awaitable[Any]]) -> Any:
    from .store import open_store

    store = open_store(config.storage_url)
    await store.open()
    try:
        return await fn(store)
    finally:
        await store.close()


async def _in_store(config: Config, fn: Callable[..., Any], **kw: Any) -> Any:
    return await _with_store(config, lambda store: store.read(fn, **kw))


def _store_examples(config: Config, since: float = 0.0) -> list[dict[str, Any]]:
    from .store.training import training_examples

    result: list[dict[str, Any]] = asyncio.run(_in_store(config, training_examples, since=since))
    return result


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _report_lines(report: dict[str, Any]) -> list[str]:
    labels = ", ".join(f"{k} {v}" for k, v in sorted((report.get("labels") or {}).items()))
    out = [
        f"examples {report.get('examples')} ({labels})",
        f"trained in {report.get('seconds')} s",
    ]
    cv = report.get("cross_validated")
    if cv:
        out.append(
            f"{cv['folds']}-fold cross-validated: macro-F1 {cv['macro_f1']:.3f},"
            f" accuracy {cv['accuracy']:.3f}"
        )
        for label, m in cv["per_class"].items():
            out.append(
                f"  {label:<14} precision {m['precision']:.3f}  recall {m['recall']:.3f}"
                f"  F1 {m['f1']:.3f}  ({m['support']})"
            )
    chosen = report.get("combination")
    if chosen:
        out.append(
            f"with the phrases: threshold {chosen['threshold']:.2f}, model weight"
            f" {chosen['weight']:.2f} (cross-validated macro-F1 {chosen['macro_f1']:.3f};"
            f" model alone {chosen['model_alone_macro_f1']:.3f},"
            f" phrases alone {chosen['phrases_alone_macro_f1']:.3f})"
        )
    held = report.get("held_out")
    if held:
        out.append(f"held-out: {json.dumps(held)}")
    return out


# -- classify train ----------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from .learning import as_examples, train_with_phrases
    from .rules.trained import ModelStore

    config = _maybe_config(args)
    rules = _rules(args, config)
    records = read_jsonl(args.files)
    sources = list(args.files)
    until = 0.0
    if args.from_store:
        if config is None:
            raise UsageError(f"--from-store needs a config file ({args.config} not found)")
        stored = _store_examples(config)
        records += stored
        until = max((r["at"] for r in stored), default=0.0)
        sources.append(f"store: {len(stored)} corrections and confirmations")
    if not records:
        raise UsageError("nothing to train on: give JSON Lines files and/or --from-store")
    model = train_with_phrases(
        rules, as_examples(records), folds=args.folds, sources=sources, progress=_say
    )
    model.report["store_until"] = until
    store = ModelStore(_model_dir(args, config))
    version = store.save(model, install=not args.no_install)
    print("\n".join(_report_lines(model.report)))
    where = store.directory / f"model-{version:06d}.npz"
    print(f"model v{version} saved to {where}" + ("" if args.no_install else ", installed"))
    log.info("classifier.trained", version=version, examples=len(records), installed=True)
    return 0


# -- classify retrain --------------------------------------------------------------------


def retrain(
    config: Config,
    model_dir: Path,
    *,
    min_new: int | None = None,
    extra: Sequence[dict[str, Any]] = (),
    say: Callable[[str], None] = _say,
) -> dict[str, Any]:
    """``learning.Retrainer.run`` on a store of its own (the command line's);
    ``min_new`` None: the config's ``[classifier] retrain_min_new``."""
    from .learning import Retrainer

    async def run(store: Any) -> dict[str, Any]:
        retrainer = Retrainer(store, config.rules_dir, model_dir)
        need = config.retrain_min_new if min_new is None else min_new
        return await retrainer.run(min_new=need, extra=extra, say=say)

    result: dict[str, Any] = asyncio.run(_with_store(config, run))
    return result


def cmd_retrain(args: argparse.Namespace) -> int:
    config = _maybe_config(args)
    if config is None:
        raise UsageError(f"retrain needs a config file ({args.config} not found)")
    extra = read_jsonl(args.files) if args.files else []
    outcome = retrain(config, _model_dir(args, config), min_new=args.min_new, extra=extra)
    print(outcome["result"])
    return 0


# -- classify eval -----------------------------------------------------------------------


def cmd_eval(args: argparse.Namespace) -> int:
    from .cmdline import rules_of, rules_source
    from .rules import evaluate_labelled

    records = read_jsonl([args.file])
    _folder, config = rules_source(args)  # -c must name a config that loads
    ruleset = rules_of(args)
    model = _model(args, config)
    runs: list[tuple[str, Any]] = []
    if args.compare:
        runs.append(("phrases only", ruleset.with_model(None)))
        if model is None:
            raise UsageError("--compare needs a trained model (classify train, or --model)")
        runs.append(("model only", ruleset.with_model(model, threshold=0.0)))
        runs.append(("model and phrases (the daemon's decision)", ruleset.with_model(model)))
    else:
        runs.append(("model and phrases" if model else "phrases", ruleset.with_model(model)))
    reports = [(name, evaluate_labelled(rs, records)) for name, rs in runs]
    if args.json:  # one report as one object; --compare: one per way of deciding
        out = (
            {name: r.to_dict() for name, r in reports} if args.compare else reports[0][1].to_dict()
        )
        print(json.dumps(out, ensure_ascii=False))
        return 0
    if len(reports) > 1:
        print(f"{'':44}{'macro-F1':>10}{'accuracy':>10}")
        for name, r in reports:
            print(f"{name:<44}{r.macro_f1:>10.3f}{r.accuracy:>10.3f}")
        print()
    for name, r in reports:
        print(
            f"== {name}"
            + (f" (model v{model.version})" if model and name != "phrases only" else "")
        )
        print(r.format())
        print()
    return 0


# -- classify models ---------------------------------------------------------------------


def cmd_models(args: argparse.Namespace) -> int:
    from .rules.trained import ModelStore

    store = ModelStore(_model_dir(args, _maybe_config(args)))
    current = store.current_version()
    versions = store.versions()
    if not versions:
        print(f"no trained models in {store.directory}")
        return 0
    for v in versions:
        report = store.report(v)
        when = datetime.fromtimestamp(report.get("trained_at", 0), UTC).strftime("%Y-%m-%d %H:%M")
        cv = (report.get("cross_validated") or {}).get("macro_f1")
        mark = "*" if v == current else " "
        print(
            f"{mark} v{v}  {when}  {report.get('examples')} examples"
            + (f", cross-validated macro-F1 {cv:.3f}" if cv is not None else "")
        )
    if args.install:
        store.install(args.install)
        print(f"v{args.install} installed")
    return 0


# -- rules replay ------------------------------------------------------------------------


def _since(value: str) -> float:
    value = value.strip()
    try:
        if value.endswith("d") and value[:-1].isdigit():
            return (datetime.now(UTC) - timedelta(days=int(value[:-1]))).timestamp()
        when = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"--since: expected a date (2026-01-31) or days back (30d), got {value!r}"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


async def replay(
    config: Config,
    ruleset: Any,
    since: float,
    channels: Sequence[str] = (),
    *,
    apply: bool = False,
    show_progress: bool = True,
) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .rules.replay import ReplaySummary, redecide
    from .store import open_store
    from .store.replay import apply_change, conversations_since, count_since

    types = {ch.name: ch.type for ch in config.channels}
    summary = ReplaySummary()
    store = open_store(config.storage_url)
    await store.open()
    try:
        total = await store.read(count_since, since, channels)
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            disable=not show_progress,
            transient=True,
        ) as bar:
            task = bar.add_task("re-deciding", total=total)
            after = 0
            while True:
                page = await store.read(conversations_since, since, channels, after_id=after)
                if not page:
                    break
                for conv in page:
                    change = redecide(ruleset, conv, types)
                    if change is not None:
                        summary.changes.append(change)
                summary.examined += len(page)
                after = page[-1]["id"]
                bar.update(task, completed=summary.examined)
            if apply and summary.changes:
                task = bar.add_task("applying", total=len(summary.changes))
                for n, change in enumerate(summary.changes, 1):
                    await store.write(apply_change, change.conversation_id, change.to_dict())
                    bar.update(task, completed=n)
    finally:
        await store.close()
    return summary


def cmd_replay(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    ruleset = _rules(args, config).with_model(_model(args, config))
    summary = asyncio.run(
        replay(
            config,
            ruleset,
            _since(args.since),
            args.channel or (),
            apply=args.apply,
            show_progress=not args.quiet and sys.stderr.isatty(),
        )
    )
    print(summary.format(args.sample))
    if args.apply:
        print(f"applied {len(summary.changes)} changes (audited as rules_replayed)")
    elif summary.changes:
        print("nothing changed: run again with --apply to apply these changes")
    return 0


# -- the parser ----------------------------------------------------------------------------


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except UsageError as exc:
            print(f"omnidesk: {exc}", file=sys.stderr)
            return 2

    return run


def register_cli(
    sub: Any, rules_sub: Any, add_config: Callable[[argparse.ArgumentParser], None]
) -> None:
    classify = sub.add_parser("classify", help="train and measure the classification")
    csub = classify.add_subparsers(dest="classify_command", required=True)

    ev = csub.add_parser("eval", help="score against labelled messages (JSON Lines)")
    ev.add_argument("file")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--compare", action="store_true", help="phrases, model, and both, side by side")
    ev.add_argument(
        "--model", help="a model file or folder, or 'none' (default: the installed one)"
    )
    ev.add_argument("--models", help=argparse.SUPPRESS)
    ev.add_argument("--rules")
    ev.add_argument("-c", "--config", default=None)
    ev.set_defaults(func=_guarded(cmd_eval))

    tr = csub.add_parser("train", help="train a model on JSON Lines files and/or the store")
    tr.add_argument("files", nargs="*", help="JSON Lines: text, label, optional subject, weight")
    tr.add_argument(
        "--from-store", action="store_true", help="agents' corrections and confirmations"
    )
    tr.add_argument("--folds", type=int, default=5, help="cross-validation folds (0: none)")
    tr.add_argument("--no-install", action="store_true", help="save it without using it")
    tr.add_argument("--models", help="model folder (default: the data directory's)")
    tr.add_argument("--rules", help="the rules whose phrases it is combined with")
    add_config(tr)
    tr.set_defaults(func=_guarded(cmd_train))

    rt = csub.add_parser(
        "retrain", help="train on the store when enough is new; keep the better model"
    )
    rt.add_argument("files", nargs="*", help="JSON Lines files to train on besides the store")
    rt.add_argument(
        "--min-new", type=int, help="new examples needed (default: retrain_min_new, 50)"
    )
    rt.add_argument("--models", help="model folder (default: the data directory's)")
    add_config(rt)
    rt.set_defaults(func=_guarded(cmd_retrain))

    md = csub.add_parser("models", help="list the trained models (* is installed)")
    md.add_argument("--install", type=int, metavar="VERSION", help="install this version")
    md.add_argument("--models", help="model folder (default: the data directory's)")
    add_config(md)
    md.set_defaults(func=_guarded(cmd_models))

    rp = rules_sub.add_parser(
        "replay", help="re-decide stored conversations with today's rules and model"
    )
    rp.add_argument("--since", required=True, help="a date (2026-01-31) or days back (30d)")
    rp.add_argument("--channel", action="append", help="only this channel (repeatable)")
    rp.add_argument("--apply", action="store_true", help="apply the changes (default: only show)")
    rp.add_argument("--sample", type=int, default=10, help="how many changes to list")
    rp.add_argument("--model", help="a model file or folder, or 'none'")
    rp.add_argument("--models", help=argparse.SUPPRESS)
    rp.add_argument("--rules")
    rp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_config(rp)
    rp.set_defaults(func=_guarded(cmd_replay))
