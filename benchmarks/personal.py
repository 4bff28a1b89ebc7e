"""The per-user state measured on the device model itself: each held-out user's history replayed pick by pick
through the published ``model.tflite``'s ``update_state``, then its next item predicted with and without the
state.

For every example of the run's windowed test (or eval) split: its whole history (``seen_items``, oldest
first, mapped with the published ``vocabulary.json``; keys outside it skipped, as an app drops them) goes through
``update_state`` one pick at a time from a zero state; then ``recommend`` (the history only) and
``recommend_personal`` (the history and the state) give their top K. As the app would, both lists drop the
items the user has already seen (the model itself drops the N history items) before the target's rank is
read, so the two columns differ by the state only. Timing: every ``update_state`` and ``recommend_personal``
call is timed (one thread, tensors allocated once, each call a different input: ``serving.SignatureCall``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Dict, List, Optional

import numpy as np

from ondevice_rec.components.tflite_pusher import publish
from ondevice_rec.modules import features

PLAIN, PERSONAL = "without_state", "with_state"


def rank_in(top_ids: np.ndarray, label: int, seen: set) -> int:
    """The label's rank among ``top_ids`` once the seen items are dropped; ``len(top_ids)`` when absent."""
    if label <= features.PADDING_ID:
        return len(top_ids)
    rank = 0
    for item in top_ids.tolist():
        if item == label:
            return rank
        if item not in seen:
            rank += 1
    return len(top_ids)


def replay(model_path: str, records: List[bytes], index_of: Dict[str, int], users: Optional[set] = None,
           progress_every: int = 1000) -> dict:
    """Replays each windowed example's history; ``{"ranks": {PLAIN: [...], PERSONAL: [...]}, "update_us": [...],
    "recommend_us": [...], "examples": n, "picks": m}`` (``users``: only their examples)."""
    import tensorflow as tf
    from ondevice_rec.serving import SignatureCall, interpreter
    lite = interpreter(model_path, 1)
    signatures = lite._get_full_signature_list()  # pylint: disable=protected-access
    stateful = features.UPDATE_STATE_SIGNATURE in signatures  # without: the plain column only (a model of before)
    plain = SignatureCall(lite, features.RECOMMEND_SIGNATURE)
    n = int(lite.get_signature_runner(features.RECOMMEND_SIGNATURE).get_input_details()[
        features.CONTEXT_INDEX]["shape"][0])
    if stateful:
        personal = SignatureCall(lite, features.RECOMMEND_PERSONAL_SIGNATURE)
        update = SignatureCall(lite, features.UPDATE_STATE_SIGNATURE)
        size = int(lite.get_signature_runner(features.UPDATE_STATE_SIGNATURE).get_input_details()[
            features.USER_STATE]["shape"][0])
    if features.CONTEXT_RATING in signatures[features.RECOMMEND_SIGNATURE]["inputs"]:
        raise ValueError("the replay does not feed ratings: a model with use_ratings is not supported here")
    ranks = {PLAIN: [], PERSONAL: []}
    update_us, recommend_us, picks = [], [], 0
    clock, started = time.perf_counter_ns, time.monotonic()
    for number, record in enumerate(records):
        feature = tf.train.Example.FromString(record).features.feature
        if users is not None and feature[features.USER_ID].bytes_list.value[0].decode() not in users:
            continue
        history = [index_of.get(k.decode(), 0) for k in feature[features.SEEN_ITEMS].bytes_list.value]
        context = np.array([index_of.get(k.decode(), 0) for k in feature[features.CONTEXT_ITEM].bytes_list.value][:n]
                           + [0] * max(0, n - len(feature[features.CONTEXT_ITEM].bytes_list.value)), np.int32)
        label = index_of.get(feature[features.LABEL_ITEM].bytes_list.value[0].decode(), 0)
        seen = set(history)
        ranks[PLAIN].append(rank_in(plain(context_index=context)[features.TOP_IDS], label, seen))
        if not stateful:
            continue
        state = np.zeros(size, np.float32)
        for item in history:
            if item:
                start = clock()
                state = update(user_state=state, item_index=np.array(item, np.int32))[features.USER_STATE]
                update_us.append((clock() - start) / 1e3)
                picks += 1
        start = clock()
        top = personal(context_index=context, user_state=state)[features.TOP_IDS]
        recommend_us.append((clock() - start) / 1e3)
        ranks[PERSONAL].append(rank_in(top, label, seen))
        if progress_every and (number + 1) % progress_every == 0:
            print(f"  {number + 1:,} of {len(records):,} examples replayed ({picks:,} picks, "
                  f"{time.monotonic() - started:.0f} s)", flush=True)
    return {"ranks": ranks, "update_us": update_us, "recommend_us": recommend_us,
            "examples": len(ranks[PLAIN]), "picks": picks}


def summarise(result: dict) -> dict:
    """Every ranking metric with and without the state, the relative change of each, and the timings."""
    from ondevice_rec.modules.ranking_metrics import evaluate_ranks
    metrics = {name: evaluate_ranks(np.array(ranks, np.int64)) if ranks else {}
               for name, ranks in result["ranks"].items()}
    gain = {name: (metrics[PERSONAL][name] / metrics[PLAIN][name] - 1.0)
            if metrics[PLAIN].get(name) and metrics[PERSONAL] else None for name in metrics[PLAIN]}
    plain, personal = np.array(result["ranks"][PLAIN]), np.array(result["ranks"][PERSONAL])
    return {**metrics, "relative_gain": gain, "examples": result["examples"], "picks": result["picks"],
            "only_without_hits@10": int(np.sum((plain < 10) & (personal >= 10))) if len(personal) else None,
            "only_with_hits@10": int(np.sum((plain >= 10) & (personal < 10))) if len(personal) else None,
            "update_p50_us": float(np.percentile(result["update_us"], 50)) if result["update_us"] else None,
            "update_p90_us": float(np.percentile(result["update_us"], 90)) if result["update_us"] else None,
            "recommend_personal_p50_us": float(np.percentile(result["recommend_us"], 50))
            if result["recommend_us"] else None}


def run(output_dir: str, version: str = publish.LATEST, users_file: Optional[str] = None,
        split: str = "test") -> dict:
    """The replay on ``split`` of the run that trained ``version`` in ``output_dir``: all users and, with
    ``users_file``, the listed ones (``{"all": summary, "subset": summary}`` plus the model's facts)."""
    from ondevice_rec.pipeline.evaluation import published_run, read_users
    version_dir, metadata, windowed = published_run(output_dir, version)
    with open(os.path.join(version_dir, metadata["vocabulary_file"]), encoding="utf-8") as f:
        index_of = {m["key"]: m["index"] for m in json.load(f)["items"]}
    model_path = os.path.join(version_dir, metadata["model_file"])
    records = features.read_split(windowed.uri, split)
    replayed = replay(model_path, records, index_of)
    result = {"all": summarise(replayed)}
    if users_file:
        wanted = read_users(users_file)
        result["subset"] = summarise(replay(model_path, records, index_of, wanted, progress_every=0))
        result["subset"]["users_listed"] = len(wanted)
    state = metadata.get("personal_state", {})
    return {**result, "model": model_path, "tflite_bytes": os.path.getsize(model_path), "split": split,
            "state_bytes": state.get("bytes"), "state_shape": state.get("shape"), "decay": state.get("decay"),
            "machine": platform.platform(), "cpu_count": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def table(result: dict) -> str:
    """A Markdown table: each user set's recall@10 / NDCG@10 without and with the state, and the change."""
    rows = ["| users | examples | recall@10 without | with state | change | NDCG@10 without | with state | change |",
            "|---|---|---|---|---|---|---|---|"]
    for name in ("all", "subset"):
        if name not in result:
            continue
        s = result[name]
        cells = []
        for metric in ("recall@10", "ndcg@10"):
            cells += [f"{s[PLAIN][metric]:.4f}", f"{s[PERSONAL][metric]:.4f}" if s[PERSONAL] else "–",
                      f"{s['relative_gain'][metric]:+.1%}" if s["relative_gain"][metric] is not None else "–"]
        rows.append(f"| {name} | {s['examples']:,} | " + " | ".join(cells) + " |")
    s = result["all"]
    if s["update_p50_us"] is None:
        return "\n".join(rows + ["", "(no per-user state: the model's recommend only)"])
    rows.append("")
    rows.append(f"update_state p50 {s['update_p50_us']:.1f} us (p90 {s['update_p90_us']:.1f}) over {s['picks']:,} "
                f"picks; recommend_personal p50 {s['recommend_personal_p50_us']:.1f} us; state "
                f"{result['state_bytes']} bytes; model {result['tflite_bytes']:,} bytes")
    return "\n".join(rows)


# The other kind of update, measured against the state above: gradient steps of the model's own loss on a user
# vector added to the query (q + u), the trained network frozen. One step on a pick of item i after the history
# h: u <- u - rate * L^T (softmax((q(h) + u) L^T + b) - onehot(i)), L the label embeddings (FULLY_CONNECTED,
# SOFTMAX, SUB: builtin ops too). Replayed in TensorFlow on the published model's weights (the network is the
# same; the gradient needs every score, which the device signatures do not return), batched across users.
GRADIENT_RATES = (0.01, 0.03, 0.1, 0.3, 1.0)


def rebuild(saved_model_dir: str):
    """The exported Keras model rebuilt from its config and vocabulary, its variables restored from the
    SavedModel (in tracking order, shapes checked)."""
    import tensorflow as tf
    from ondevice_rec.modules import export
    from ondevice_rec.modules.model import build_model
    from ondevice_rec.modules.vocabulary import Vocabulary
    config = export.load_export_config(saved_model_dir)
    vocab = Vocabulary.load(os.path.join(saved_model_dir, features.ASSETS_EXTRA))
    model = build_model(config, vocab)
    saved = tf.saved_model.load(saved_model_dir).model.variables
    if len(saved) != len(model.variables):
        raise ValueError(f"the rebuilt model has {len(model.variables)} variables, the SavedModel {len(saved)}")
    for new, old in zip(model.variables, saved):
        if tuple(new.shape) != tuple(old.shape):
            raise ValueError(f"variable {new.name} {new.shape} vs the SavedModel's {old.name} {old.shape}")
        new.assign(old)
    return model, config, vocab


def _user_sequences(records: List[bytes], index_of: Dict[str, int]):
    """Per example: its history indices (oldest first, unknown keys dropped) and its label index."""
    import tensorflow as tf
    found = []
    for record in records:
        feature = tf.train.Example.FromString(record).features.feature
        history = [index_of.get(k.decode(), 0) for k in feature[features.SEEN_ITEMS].bytes_list.value]
        found.append(([i for i in history if i], index_of.get(feature[features.LABEL_ITEM].bytes_list.value[0]
                                                                .decode(), 0)))
    return found


def gradient_replay(model, config, sequences, rates, max_picks: int = 0, batch: int = 4096) -> dict:
    """recall@10 / NDCG@10 of the frozen model with a user vector trained by one gradient step a pick, for each
    of ``rates`` (0: no vector, the model alone); ``max_picks``: only each user's most recent picks (0: all)."""
    import tensorflow as tf
    from ondevice_rec.modules.model import exclude, personal_view, successor_layer
    from ondevice_rec.modules.ranking_metrics import evaluate_ranks, target_rank
    view = personal_view(model)
    query_model = view[0] if view else tf.keras.Model(model.inputs, model.get_layer("scores").input)
    scores_layer = model.get_layer("scores")
    successors = successor_layer(model)
    labels_t = scores_layer.label_weights()
    n = config.history_length

    def contexts(history, upto):
        recent = history[max(0, upto - n):upto][::-1]
        return recent + [0] * (n - len(recent))

    def base_scores(context):  # [B, V]: the network's scores without a user vector (the table's included)
        context = tf.constant(context, tf.int32)
        query = query_model({features.CONTEXT_INDEX: context}, training=False)
        scores = scores_layer(query)
        if successors is not None:
            scores += successors.dense(context[:, :successors.recent])
        return query, scores

    # Every pick of every user, as (user, step) with its context: one forward pass in batches.
    picks = [(u, t) for u, (history, _) in enumerate(sequences)
             for t in range(max(1, len(history) - max_picks) if max_picks else 1, len(history))]
    dim = config.embedding_dim
    queries = np.zeros((len(picks), dim), np.float32)
    for start in range(0, len(picks), batch):
        chunk = picks[start:start + batch]
        queries[start:start + len(chunk)] = base_scores(
            [contexts(sequences[u][0], t) for u, t in chunk])[0].numpy()
    order = {}
    for row, (u, t) in enumerate(picks):
        order.setdefault(t, []).append((u, row))
    test_context = [contexts(history, len(history)) for history, _ in sequences]
    results = {}
    for rate in (0.0,) + tuple(rates):
        vectors = np.zeros((len(sequences), dim), np.float32)
        if rate:
            for t in sorted(order):  # every user's t-th pick at once: a user's steps stay in time order
                users, rows = map(np.array, zip(*order[t]))
                query = tf.constant(queries[rows] + vectors[users])
                probabilities = tf.nn.softmax(scores_layer(query)).numpy()
                targets = np.array([sequences[u][0][t] for u in users])
                probabilities[np.arange(len(users)), targets] -= 1.0
                vectors[users] -= rate * (probabilities @ labels_t.numpy())
        ranks = []
        for start in range(0, len(sequences), batch):
            context = test_context[start:start + batch]
            query, scores = base_scores(context)
            scores += tf.matmul(tf.constant(vectors[start:start + batch]), labels_t, transpose_b=True)
            seen = [sequences[u][0] for u in range(start, start + len(context))]
            width = max(1, max(len(s) for s in seen))
            scores = exclude(scores, tf.constant([s + [0] * (width - len(s)) for s in seen], tf.int32))
            labels = np.array([sequences[u][1] for u in range(start, start + len(context))])
            rank = target_rank(tf.constant(labels), scores).numpy()
            ranks.append(np.where(labels > 0, rank, 10 ** 6))
        results[rate] = evaluate_ranks(np.concatenate(ranks))
    return results


def run_gradient(output_dir: str, version: str = publish.LATEST, rates=GRADIENT_RATES, max_picks: int = 0) -> dict:
    """The gradient kind on the run's published model: the rate chosen on the eval split, then the test split
    scored with it (``{"eval": {rate: metrics}, "test": {rate: metrics}, "chosen_rate": rate}``)."""
    from ondevice_rec.pipeline.evaluation import published_run
    version_dir, metadata, windowed = published_run(output_dir, version)
    model, config, _ = rebuild(os.path.join(metadata["model_uri"], "Format-Serving"))
    with open(os.path.join(version_dir, metadata["vocabulary_file"]), encoding="utf-8") as f:
        index_of = {m["key"]: m["index"] for m in json.load(f)["items"]}
    started = time.monotonic()
    evaluation = gradient_replay(model, config, _user_sequences(features.read_split(windowed.uri, "eval"),
                                                                  index_of), rates, max_picks)
    chosen = max(evaluation, key=lambda r: (evaluation[r]["recall@10"], -r))
    test = gradient_replay(model, config, _user_sequences(features.read_split(windowed.uri, "test"), index_of),
                           (chosen,) if chosen else (), max_picks)
    return {"eval": evaluation, "test": test, "chosen_rate": chosen, "max_picks": max_picks,
            "seconds": round(time.monotonic() - started, 1)}


def gradient_table(result: dict) -> str:
    """A Markdown table of the gradient kind: eval recall@10 by rate, and test without / with the chosen rate."""
    rows = ["| gradient steps, rate | eval recall@10 | test recall@10 | test NDCG@10 |", "|---|---|---|---|"]
    for rate, metrics in result["eval"].items():
        test = result["test"].get(rate)
        rows.append(f"| {rate:g}{' (chosen)' if rate == result['chosen_rate'] and rate else ''} | "
                    f"{metrics['recall@10']:.4f} | {test['recall@10']:.4f} | {test['ndcg@10']:.4f} |" if test else
                    f"| {rate:g} | {metrics['recall@10']:.4f} | – | – |")
    return "\n".join(rows)
