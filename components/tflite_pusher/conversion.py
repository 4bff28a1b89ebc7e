"""SavedModel signature -> builtin-ops TFLite flatbuffer, and the flatbuffer surgery that shrinks it."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ondevice_rec.components.tflite_pusher import quantization as quantization_modes


def convert_to_tflite(saved_model_dir: str, signature: Union[str, Sequence[str]],
                      quantization: str = quantization_modes.FLOAT,
                      representative_inputs: Optional[List[Dict[str, np.ndarray]]] = None,
                      compact_model: bool = True) -> bytes:
    """Converts one signature, or several into one file (their constants stored once), with builtin ops only
    (conversion fails if a Flex op would be needed).

    ``quantization``: a mode of ``quantization.MODES``; a calibrated one (int8) needs
    ``representative_inputs``: input dicts of the (first) signature, or with several signatures
    ``(signature, input dict)`` pairs.
    ``compact_model``: apply ``compact`` (same results, smaller file).
    """
    import tensorflow as tf
    mode = quantization_modes.get(quantization)
    signatures = [signature] if isinstance(signature, str) else list(signature)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=signatures)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    mode.configure(converter, tf)
    if mode.calibrated:
        if not representative_inputs:
            raise ValueError(f"{quantization} quantization needs representative inputs (held-out histories)")

        def representative():
            for feed in representative_inputs:
                if isinstance(feed, tuple):
                    yield feed[0], {name: np.asarray(value) for name, value in feed[1].items()}
                else:
                    yield {name: np.asarray(value) for name, value in feed.items()}
        converter.representative_dataset = representative
    model = converter.convert()
    return compact(model) if compact_model else model


def compact(model: bytes) -> bytes:
    """Shrinks a converted model without changing what it computes (beyond one quantisation step).

    * Drops the names of internal tensors (debug strings: ~10 KB for the unrolled LSTM); the input and output
      tensors and the signature keep theirs.
    * With tied embeddings a full-integer model holds the item table twice, once for the history lookup
      (GATHER) and once as the label weights (FULLY_CONNECTED), each with its own per-tensor scale and zero
      point. When both copies are per-tensor int8 and decode to the same values (within one quantisation
      step; entries the lookup copy clipped to its calibrated range only by bound), the lookup is pointed at
      the label copy and its output scale / zero point set to match (a gather copies bytes, so its output has
      its input's parameters): 63 KB less at 3,953 movies x 16, 109 KB at 3,416 x 32.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    flat = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    # Tensors of every subgraph by buffer: a file of several signatures stores a shared constant once, so a
    # buffer may only be emptied when no other tensor reads it.
    readers: Dict[int, int] = {}
    for graph in flat.subgraphs:
        for tensor in graph.tensors:
            readers[tensor.buffer] = readers.get(tensor.buffer, 0) + 1
    for graph in flat.subgraphs:
        keep = set(graph.inputs) | set(graph.outputs)
        for index, tensor in enumerate(graph.tensors):
            if index not in keep:
                tensor.name = None
        _share_tied_tables(flat, graph, schema, readers)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(flat))


def _per_tensor_params(tensor):
    """``(scale, zero_point)`` of a per-tensor quantized tensor, else None."""
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) != 1 or q.zeroPoint is None or len(q.zeroPoint) != 1:
        return None
    return float(q.scale[0]), int(q.zeroPoint[0])


def _share_tied_tables(flat, graph, schema, readers: Dict[int, int]) -> None:
    def opcode(op):
        code = flat.operatorCodes[op.opcodeIndex]
        return max(code.builtinCode, code.deprecatedBuiltinCode)

    def raw(index):
        """The int8 values of a constant 2-D per-tensor quantized tensor, else None."""
        tensor = graph.tensors[index]
        data = flat.buffers[tensor.buffer].data
        if (tensor.type != schema.TensorType.INT8 or data is None or len(tensor.shape) != 2
                or _per_tensor_params(tensor) is None):
            return None
        return np.asarray(data, np.uint8).view(np.int8).reshape(tuple(tensor.shape))

    def decoded(index):
        """The real values of a constant int8 2-D per-tensor quantized tensor, else None."""
        values = raw(index)
        if values is None:
            return None
        scale, zero_point = _per_tensor_params(graph.tensors[index])
        return (values.astype(np.float32) - zero_point) * scale

    labels = {}  # FULLY_CONNECTED weight tensor -> its real values (weights are symmetric: zero point 0)
    for op in graph.operators:
        if opcode(op) == schema.BuiltinOperator.FULLY_CONNECTED and len(op.inputs) > 1:
            values = decoded(op.inputs[1])
            if values is not None:
                labels[op.inputs[1]] = values
    users = {}
    for op in graph.operators:
        for index in op.inputs:
            users[index] = users.get(index, 0) + 1
    for op in graph.operators:
        if opcode(op) != schema.BuiltinOperator.GATHER or op.inputs[0] in labels or users.get(op.inputs[0]) != 1:
            continue
        table, output = op.inputs[0], graph.tensors[op.outputs[0]]
        values = decoded(table)
        if values is None or _per_tensor_params(output) != _per_tensor_params(graph.tensors[table]):
            continue
        step = _per_tensor_params(graph.tensors[table])[0]
        # The lookup copy takes the range its output was calibrated on: entries outside it are clipped to
        # -128 / 127 (rows of rarely seen items, measured: docs/results.md, "Figures behind code comments"). Those are compared
        # by bound only; the label copy holds their real values, so sharing it also undoes the clipping.
        codes = raw(table)
        inside = (codes > -128) & (codes < 127)
        for weight, label_values in labels.items():
            label_scale, label_zero = _per_tensor_params(graph.tensors[weight])
            if label_values.shape != values.shape:
                continue
            tolerance = max(step, label_scale)
            agree = np.abs(label_values - values) <= tolerance
            beyond = np.where(codes <= -128, label_values <= values + tolerance, label_values >= values - tolerance)
            if np.all(np.where(inside, agree, beyond)):
                buffer = graph.tensors[table].buffer
                readers[buffer] -= 1
                if not readers[buffer]:  # another signature's lookup may read the same stored table
                    flat.buffers[buffer].data = None
                op.inputs[0] = weight
                output.quantization.scale = np.array([label_scale], np.float32)
                output.quantization.zeroPoint = np.array([label_zero], np.int64)
                break
