"""Latency and size benchmark of the on-device model: TFLite p50/p90/p99 against the SavedModel, same inputs.

``run_model`` measures one published model (a version folder, or a ``.tflite`` plus its SavedModel).
``run_all`` builds the on-device models of every encoder and quantisation mode at MovieLens-1M scale (a
3,952-movie synthetic catalogue, N=10, a short training run: latency does not depend on quality) and
measures each, with its parity against the SavedModel and its recall@10 on held-out synthetic histories.
"""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ondevice_rec.benchmarks.data import temporary_work_dir
from ondevice_rec.components.tflite_pusher.publish import METADATA_FILE
from ondevice_rec.components.tflite_pusher.quantization import QUANTIZATIONS
from ondevice_rec.components.tflite_pusher.release import SERVING_FORMAT
from ondevice_rec.modules import features
from ondevice_rec.modules.encoders import ENCODERS

SIGNATURE = features.RECOMMEND_SIGNATURE
# The original 2020 solution's published models (see their README there), timed next to ours when present:
# relative to the project root, as the shared data is.
REFERENCE_MODELS_DIR = os.path.join("..", "shared", "models", "seed-2020")
REFERENCE_VOCABULARY_SIZE = 3953  # their inputs: raw MovieLens-1M movie ids 1..3952, 0 = padding


def percentiles(call: Callable[[], object], iterations: int, warmup: int) -> Dict[str, float]:
    """p50/p90/p99 and mean in microseconds of ``call`` over ``iterations`` timed calls after ``warmup``."""
    for _ in range(warmup):
        call()
    times = np.empty(iterations)
    clock = time.perf_counter_ns
    for i in range(iterations):
        start = clock()
        call()
        times[i] = clock() - start
    times /= 1e3
    return {"p50_us": float(np.percentile(times, 50)), "p90_us": float(np.percentile(times, 90)),
            "p99_us": float(np.percentile(times, 99)), "mean_us": float(times.mean()), "iterations": iterations}


def _cycle(feeds: Sequence[Dict[str, np.ndarray]], fn):
    state = {"i": 0}

    def call():
        feed = feeds[state["i"] % len(feeds)]
        state["i"] += 1
        return fn(feed)
    return call


def _direct_call(interpreter, inputs: Dict[str, int], outputs: List[int]):
    """``call(feed)``: set each named input tensor, invoke, read the outputs (no per-call allocation)."""
    set_tensor, invoke, get_tensor = interpreter.set_tensor, interpreter.invoke, interpreter.get_tensor

    def call(feed):
        for name, index in inputs.items():
            set_tensor(index, feed[name])
        invoke()
        return [get_tensor(index) for index in outputs]
    return call


def tflite_latency(model: bytes, feeds, threads: int, iterations: int, warmup: int) -> Dict[str, float]:
    """Per call: copy the inputs in, ``invoke``, copy both outputs out (what an app does). Tensors are
    allocated once, as on a device; Python's SignatureRunner re-allocates on every call (~0.3 ms here)."""
    from ondevice_rec.serving import interpreter as litert
    reference = litert(model).get_signature_runner(SIGNATURE)
    interpreter = litert(model, threads)
    interpreter.allocate_tensors()
    tensors = interpreter._get_full_signature_list()[SIGNATURE]  # pylint: disable=protected-access
    call = _direct_call(interpreter, tensors["inputs"], list(tensors["outputs"].values()))
    # The fast path computes what the signature runner does (near-ties may swap between thread counts).
    for feed in feeds[:20]:
        expected = reference(**feed)[features.TOP_IDS]
        got = call(feed)[list(tensors["outputs"]).index(features.TOP_IDS)]
        if len(set(expected[:10].tolist()) & set(got[:10].tolist())) < 8:
            raise RuntimeError(f"the direct interpreter path disagrees with the signature runner: {got[:10]} "
                               f"vs {expected[:10]}")
    return percentiles(_cycle(feeds, call), iterations, warmup)


def reference_models(folder: str, iterations: int = 2000, warmup: int = 200, seed: int = 1) -> List[dict]:
    """Every ``.tflite`` in ``folder`` (the 2020 models) timed as ``tflite_latency`` times ours: one thread,
    tensors allocated once, 256 random histories of random length (1..N) cycled, a different one every call.
    The models have no signatures; their one int32[N] input and two [K] outputs are used by index."""
    from ondevice_rec.serving import interpreter as litert
    results = []
    for name in sorted(f for f in os.listdir(folder) if f.endswith(".tflite")):
        with open(os.path.join(folder, name), "rb") as f:
            model = f.read()
        interpreter = litert(model)
        interpreter.allocate_tensors()
        (source,) = interpreter.get_input_details()
        n = int(source["shape"][-1])
        rng = np.random.default_rng(seed)
        feeds = []
        for _ in range(256):
            ids = np.zeros(n, np.int32)
            length = int(rng.integers(1, n + 1))
            ids[:length] = rng.choice(np.arange(1, REFERENCE_VOCABULARY_SIZE), size=length, replace=False)
            feeds.append({"history": ids})
        call = _direct_call(interpreter, {"history": source["index"]},
                            [o["index"] for o in interpreter.get_output_details()])
        results.append({"model": name, "tflite_bytes": len(model), "history_length": n,
                        **percentiles(_cycle(feeds, call), iterations, warmup)})
    return results


def reference_floor(vocabulary_size: int, top_k: int, iterations: int = 2000, warmup: int = 200) -> dict:
    """What any TFLite model returning the top K of V scores pays here, measured like the models: an identity
    model (set input, invoke, read output: the Python call overhead) and TOPK_V2 alone over V-1 scores
    (256 different random score vectors, cycled as the benchmark cycles histories; TOPK_V2 keeps a heap of
    K, so its cost grows with the number of heap replacements, which a fixed input would hide)."""
    import tensorflow as tf
    from ondevice_rec.serving import interpreter as litert
    n = vocabulary_size - 1
    rng = np.random.default_rng(0)
    feeds = [{"scores": rng.normal(size=n).astype(np.float32)} for _ in range(256)]

    def lite(fn) -> bytes:
        concrete = tf.function(fn).get_concrete_function(tf.TensorSpec([n], tf.float32, name="scores"))
        return tf.lite.TFLiteConverter.from_concrete_functions([concrete]).convert()

    def time_model(model: bytes) -> float:
        interpreter = litert(model)
        interpreter.allocate_tensors()
        call = _direct_call(interpreter, {"scores": interpreter.get_input_details()[0]["index"]},
                            [o["index"] for o in interpreter.get_output_details()])
        return percentiles(_cycle(feeds, call), iterations, warmup)["p50_us"]
    k = min(top_k, n)
    return {"vocabulary_size": vocabulary_size, "top_k": k,
            "identity_p50_us": time_model(lite(lambda x: x * 2.0)),
            "topk_only_p50_us": time_model(lite(lambda x: tf.math.top_k(x, k)))}


def saved_model_latency(saved_model_dir: str, feeds, iterations: int, warmup: int) -> Dict[str, float]:
    import tensorflow as tf
    fn = tf.saved_model.load(saved_model_dir).signatures[SIGNATURE]
    tensors = [{k: tf.constant(v) for k, v in feed.items()} for feed in feeds]
    return percentiles(_cycle(tensors, lambda feed: fn(**feed)), iterations, warmup)


def random_feeds(history_length: int, movie_ids: Sequence[int], uses_ratings: bool, count: int = 256,
                 seed: int = 0) -> List[Dict[str, np.ndarray]]:
    """Histories of random known items (vocabulary indices) with random lengths (1..N), padded as an app
    would."""
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(count):
        length = int(rng.integers(1, history_length + 1))
        ids = np.zeros(history_length, np.int32)
        ids[:length] = rng.choice(np.asarray(movie_ids), size=length, replace=False)
        feed = {features.CONTEXT_INDEX: ids}
        if uses_ratings:
            ratings = np.zeros(history_length, np.float32)
            ratings[:length] = rng.integers(1, 6, size=length)
            feed[features.CONTEXT_RATING] = ratings
        feeds.append(feed)
    return feeds


def measure(model: bytes, saved_model_dir: Optional[str], feeds, iterations: int = 2000, warmup: int = 200,
            threads: Sequence[int] = (1, 4), saved_model_iterations: Optional[int] = None) -> dict:
    """Latency of ``model`` per thread count and, when given, of the SavedModel on the same inputs."""
    result = {"tflite_bytes": len(model), "tflite": {}}
    for n in threads:
        # More threads than cores make the interpreter's spinning workers wait on each other (docs/results.md, "Figures behind code comments"):
        # still measured, with 20 calls, and flagged.
        oversubscribed = n > (os.cpu_count() or 1)
        result["tflite"][f"{n}_thread"] = tflite_latency(model, feeds, n, min(iterations, 20) if oversubscribed
                                                         else iterations, min(warmup, 2) if oversubscribed
                                                         else warmup)
        result["tflite"][f"{n}_thread"]["oversubscribed"] = oversubscribed
    if saved_model_dir:
        result["saved_model"] = saved_model_latency(saved_model_dir, feeds, saved_model_iterations or iterations,
                                                    min(warmup, 50))
        result["speedup_p50_1_thread"] = result["saved_model"]["p50_us"] / result["tflite"]["1_thread"]["p50_us"]
    return result


def run_model(path: str, saved_model_dir: Optional[str] = None, iterations: int = 2000, out: str = "",
              references: str = REFERENCE_MODELS_DIR, report=print) -> dict:
    """Benchmarks a published version folder (``model.tflite`` + ``metadata.json``) or a ``.tflite`` file and,
    in the same run, the models in ``references`` (when the folder exists), with the p50 ratio to each."""
    from ondevice_rec.serving import TFLiteRecommender
    if not os.path.exists(path):
        raise FileNotFoundError(f"no model at {path}")
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    if os.path.isdir(path):
        with open(os.path.join(path, METADATA_FILE)) as f:
            metadata = json.load(f)
        model_path = os.path.join(path, metadata["model_file"])
        if saved_model_dir is None and metadata.get("model_uri"):
            candidate = os.path.join(metadata["model_uri"], SERVING_FORMAT)
            saved_model_dir = candidate if os.path.isdir(candidate) else None
        with open(os.path.join(path, metadata["vocabulary_file"]), encoding="utf-8") as f:
            movie_ids = [m["index"] for m in json.load(f)["items"]]  # the model reads vocabulary indices
    else:
        model_path, metadata, movie_ids = path, {}, None
    with open(model_path, "rb") as f:
        model = f.read()
    lite = TFLiteRecommender(model, SIGNATURE)
    feeds = random_feeds(lite.history_length, movie_ids or list(range(1, 1001)), lite.uses_ratings)
    result = {"model": os.path.abspath(model_path), "encoder": metadata.get("encoder"),
              "quantization": metadata.get("quantization"), "history_length": lite.history_length,
              "saved_model_dir": saved_model_dir, "machine": _machine(),
              **measure(model, saved_model_dir, feeds, iterations)}
    report(format_table([result]))
    if references and os.path.isdir(references):
        ours = result["tflite"]["1_thread"]["p50_us"]
        result["references"] = reference_models(references, iterations)
        for entry in result["references"]:
            entry["ours_p50_ratio"] = ours / entry["p50_us"]
        report(format_references(result["references"], ours, len(model)))
    elif references:
        report(f"(no reference models at {references}: the seed's models are timed when that folder exists)")
    if saved_model_dir is None:
        report("(no SavedModel found: pass --saved-model DIR for the speed-up ratio)")
    if out:
        _write_json(result, out)
    return result


@temporary_work_dir("ondevice-rec-latency-")
def run_all(work_dir: str = "", encoders: Sequence[str] = ENCODERS,
            quantizations: Sequence[str] = QUANTIZATIONS, history_length: int = 10,
            items: int = 3952, users: int = 3000, iterations: int = 2000, top_k: int = 100,
            out: str = "benchmarks/results/latency.json",
            report=print) -> dict:
    """Every encoder x quantisation mode at MovieLens-1M catalogue size (see the module docstring)."""
    import dataclasses

    from ondevice_rec.benchmarks.data import WindowedSplit
    from ondevice_rec.components.tflite_pusher import checks, conversion, quantization as quantization_modes
    from ondevice_rec.data import synthetic
    from ondevice_rec.modules.config import ModelConfig
    from ondevice_rec.serving import TFLiteRecommender

    unknown = [e for e in encoders if e not in ENCODERS]
    for mode in quantizations:
        try:
            quantization_modes.get(mode)
        except ValueError:
            unknown.append(mode)
    if unknown:
        raise ValueError(f"unknown encoder or quantization: {', '.join(unknown)} (encoders: {', '.join(ENCODERS)}; "
                         f"quantizations: {', '.join(quantization_modes.QUANTIZATIONS)})")
    if top_k < 1 or iterations < 1:
        raise ValueError("top_k and iterations must be >= 1")

    data_dir = os.path.join(work_dir, "ml-1m")
    if not os.path.exists(os.path.join(data_dir, "ratings.dat")):
        report(f"writing a synthetic ML-1M-layout dataset with {items} movies to {data_dir}")
        data = synthetic.generate(synthetic.SyntheticConfig(users=users, items=items, mean_ratings_per_user=80,
                                                            seed=7))
        synthetic.write(data, data_dir, "ml-1m")
    windowings, results = {}, {}  # windowings by train stride
    for encoder in encoders:
        config = ModelConfig(encoder=encoder, history_length=history_length, embedding_dim=16, epochs=2,
                             batch_size=256, early_stopping_patience=5, top_k=top_k)
        stride = config.default_train_stride()
        if stride not in windowings:
            windowings[stride] = WindowedSplit(data_dir, os.path.join(work_dir, "pipeline"), config)
        split = windowings[stride]
        if "models" not in results:
            test = split.examples("test")[:500]
            holdout = [{features.CONTEXT_INDEX: [int(x) for x in e[features.CONTEXT_INDEX]],
                        features.CONTEXT_RATING: [float(x) for x in e[features.CONTEXT_RATING]]}
                       for e in test]
            labels = [int(e[features.LABEL_INDEX]) for e in test]
            movie_ids = split.popular_ids()
            results.update({"machine": _machine(), "history_length": history_length,
                            "vocabulary_size": split.vocab.size, "iterations": iterations, "models": []})
            results["reference"] = reference_floor(split.vocab.size, top_k, iterations)
            report(format_reference(results["reference"]))
        t = time.perf_counter()
        model = split.train(config)
        from ondevice_rec.modules import export
        saved_model_dir = export.export_saved_model(model, split.vocab, config,
                                                    os.path.join(work_dir, f"saved_model_{encoder}"))
        report(f"{encoder}: trained and exported in {time.perf_counter() - t:.0f}s")
        float_model = conversion.convert_to_tflite(saved_model_dir, SIGNATURE)
        lite = TFLiteRecommender(float_model, SIGNATURE)
        feeds = [lite.inputs(h[features.CONTEXT_INDEX], h[features.CONTEXT_RATING]) for h in holdout]
        parity = checks.check_parity(float_model, saved_model_dir, holdout, SIGNATURE, min_overlap=0.0)
        float_recall = checks.tflite_recall(float_model, SIGNATURE, holdout, labels)
        for quantization in quantizations:
            entry = {"encoder": encoder, "quantization": quantization,
                     "settings": {k: v for k, v in dataclasses.asdict(config).items()
                                  if k in ("embedding_dim", "hidden_layers", "use_item_categories", "use_item_numbers")},
                     "top_k": config.top_k}
            try:
                model_bytes = float_model if quantization == quantization_modes.FLOAT else \
                    conversion.convert_to_tflite(saved_model_dir, SIGNATURE, quantization, feeds[:200])
            except Exception as e:  # pylint: disable=broad-except  (reported, the other modes still run)
                entry["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
                report(f"  {encoder}/{quantization}: conversion failed: {entry['error']}")
                results["models"].append(entry)
                continue
            recall = checks.tflite_recall(model_bytes, SIGNATURE, holdout, labels)
            entry.update(measure(model_bytes, saved_model_dir if quantization == "float32" else None,
                                 random_feeds(history_length, movie_ids, config.use_ratings), iterations))
            entry["recall@10"] = recall
            entry["float_recall@10"] = float_recall
            entry["recall_relative_to_float"] = recall / float_recall if float_recall else None
            if quantization == "float32":
                entry["parity"] = parity
            results["models"].append(entry)
            report(format_table([entry], header=not any("tflite" in m for m in results["models"][:-1])))
            _write_json(results, out)
    for entry in results["models"]:  # the SavedModel figure of the encoder, for every mode's ratio
        reference = next((m for m in results["models"] if m["encoder"] == entry["encoder"] and "saved_model" in m),
                         None)
        if reference and "tflite" in entry:
            entry["speedup_p50_1_thread"] = reference["saved_model"]["p50_us"] / entry["tflite"]["1_thread"]["p50_us"]
    _write_json(results, out)
    report("\n" + format_table(results["models"]) + "\n" + format_reference(results["reference"]))
    return results


def format_references(references: Sequence[dict], ours_p50: float, ours_bytes: int) -> str:
    lines = ["", "Same run, same harness (1 thread, a different random history every call):",
             "| model | bytes | p50 µs | p90 | p99 | ours p50 / its p50 |", "|---|---|---|---|---|---|",
             f"| this model | {ours_bytes:,} | {ours_p50:.1f} | | | |"]
    for e in references:
        lines.append(f"| {e['model']} | {e['tflite_bytes']:,} | {e['p50_us']:.1f} | {e['p90_us']:.1f} | "
                     f"{e['p99_us']:.1f} | {e['ours_p50_ratio']:.2f} |")
    return "\n".join(lines)


def format_reference(reference: dict) -> str:
    return (f"reference, 1 thread: an identity model {reference['identity_p50_us']:.1f} µs p50 (call overhead); "
            f"TOPK_V2 alone, top {reference['top_k']} of {reference['vocabulary_size'] - 1} scores: "
            f"{reference['topk_only_p50_us']:.1f} µs p50")


def format_table(entries: Sequence[dict], header: bool = True) -> str:
    lines = []
    if header:
        lines += ["| encoder | quantization | size KB | p50 µs 1 thr | p90 | p99 | p50 µs 4 thr* | "
                  "SavedModel p50 µs | speed-up | recall@10 (vs float) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        if "tflite" not in e:
            lines.append(f"| {e.get('encoder')} | {e.get('quantization')} | conversion failed: {e.get('error')} |")
            continue
        one, four = e["tflite"]["1_thread"], e["tflite"].get("4_thread", {})
        saved = e.get("saved_model", {})
        speedup = e.get("speedup_p50_1_thread")
        recall = e.get("recall@10")
        relative = e.get("recall_relative_to_float")
        lines.append(
            f"| {e.get('encoder')} | {e.get('quantization')} | {e['tflite_bytes'] / 1024:.0f} | {one['p50_us']:.1f} | "
            f"{one['p90_us']:.1f} | {one['p99_us']:.1f} | {four.get('p50_us', float('nan')):.1f} | "
            f"{saved.get('p50_us', float('nan')):.0f} | {f'{speedup:.0f}x' if speedup else '–'} | "
            f"{f'{recall:.4f}' if recall is not None else '–'}"
            f"{f' ({relative:.3f})' if relative is not None else ''} |")
    return "\n".join(lines)


def _machine() -> dict:
    import tensorflow as tf
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "tensorflow": tf.__version__}


def _write_json(result: dict, out: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
